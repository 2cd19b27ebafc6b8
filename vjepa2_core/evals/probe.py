"""Attentive probes: strict loading of released probe files, the reference checkpoint layout, and the multihead
optimizers (one AdamW with its own warmup-cosine lr and cosine wd per lr x wd setting).

Released probe files (`ssv2-vitl-16x2x3.pt`, ...) hold `{"classifiers": [state_dict, ...]}` whose keys carry the
DDP `module.` prefix; this project writes its own probe checkpoints the same way so either loads the other's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from vjepa2_core.hub import CheckpointError, load_checkpoint, load_state_dict_strict
from vjepa2_core.models.attentive_pooler import AttentiveClassifier, AttentivePooler
from vjepa2_core.training.checkpoint import unwrap
from vjepa2_core.training.schedules import Scheduler, cosine_wd, warmup_cosine

OPT_KEYS = ("lr", "start_lr", "final_lr", "warmup", "weight_decay", "final_weight_decay")


class AnticipativeClassifier(nn.Module):
    """EK100 probe: one pooler with three queries (verb, noun, action), a linear head on each."""

    def __init__(
        self, embed_dim: int, num_heads: int, depth: int, num_verbs: int, num_nouns: int, num_actions: int
    ) -> None:
        super().__init__()
        self.pooler = AttentivePooler(num_queries=3, embed_dim=embed_dim, num_heads=num_heads, depth=depth)
        self.verb_classifier = nn.Linear(embed_dim, num_verbs)
        self.noun_classifier = nn.Linear(embed_dim, num_nouns)
        self.action_classifier = nn.Linear(embed_dim, num_actions)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        q = self.pooler(x)
        return {
            "verb": self.verb_classifier(q[:, 0]),
            "noun": self.noun_classifier(q[:, 1]),
            "action": self.action_classifier(q[:, 2]),
        }


def probe_state(module: nn.Module) -> dict[str, Tensor]:
    """A classifier's state dict with the `module.` prefix the reference (DDP) writes."""
    module = unwrap(module)
    return {f"module.{k}": v.detach().cpu() for k, v in module.state_dict().items()}


def _classifier_states(path: str | Path) -> list[Mapping[str, Tensor]]:
    ckpt = load_checkpoint(path)
    states = ckpt.get("classifiers")
    if not isinstance(states, list | tuple) or not states or not all(isinstance(s, Mapping) for s in states):
        raise CheckpointError(
            f"{path} is not a probe file: expected a non-empty list under 'classifiers', has {sorted(ckpt)}"
        )
    return list(states)


def _classifier_state(path: str | Path, index: int) -> Mapping[str, Tensor]:
    states = _classifier_states(path)
    if not 0 <= index < len(states):
        raise CheckpointError(f"{path} holds {len(states)} classifiers; index {index} is out of range")
    return states[index]


def load_probe(
    path: str | Path,
    embed_dim: int,
    num_classes: int,
    num_heads: int = 16,
    depth: int = 4,
    index: int = 0,
) -> AttentiveClassifier:
    """`AttentiveClassifier` loaded strictly from `classifiers[index]` of a released (or own) probe file."""
    state = _classifier_state(path, index)
    if _head_rows(state, "action_classifier") is not None:
        raise CheckpointError(f"{path} is an EK100 anticipation probe (verb/noun/action heads): use load_ek100_probe")
    rows = _head_rows(state, "linear")
    if rows is not None and rows != num_classes:
        raise CheckpointError(f"{path}: the probe has {rows} classes, {num_classes} were asked for")
    probe = AttentiveClassifier(embed_dim=embed_dim, num_heads=num_heads, depth=depth, num_classes=num_classes)
    load_state_dict_strict(probe, state, f"{path} [classifiers][{index}]")
    return probe.eval()


def _head_rows(state: Mapping[str, Tensor], head: str) -> int | None:
    """Output classes of the linear head `head` in a (possibly `module.`-prefixed) state dict, or None."""
    weight = next((v for k, v in state.items() if k.replace("module.", "") == f"{head}.weight"), None)
    return None if weight is None else int(weight.shape[0])


def load_ek100_probe(
    path: str | Path,
    embed_dim: int,
    num_verbs: int,
    num_nouns: int,
    num_actions: int,
    num_heads: int = 16,
    depth: int = 4,
    index: int = 0,
) -> AnticipativeClassifier:
    """`AnticipativeClassifier` loaded strictly from a released EK100 probe file (`ek100-vitl-256.pt` layout:
    `classifiers[index]` with `module.pooler.*` (3 queries), `verb_classifier`, `noun_classifier`,
    `action_classifier`); class counts are checked per head before the load."""
    state, where = _classifier_state(path, index), f"{path} [classifiers][{index}]"
    if _head_rows(state, "linear") is not None:
        raise CheckpointError(f"{where} is a single-head classification probe (linear.*), not an EK100 probe")
    heads = [h for h in ("verb_classifier", "noun_classifier") if _head_rows(state, h) is not None]
    if _head_rows(state, "action_classifier") is not None and not heads:
        raise CheckpointError(f"{where} is an action-only EK100 probe (no verb/noun heads); not supported")
    asked = {"verb_classifier": num_verbs, "noun_classifier": num_nouns, "action_classifier": num_actions}
    rows = {h: _head_rows(state, h) for h in asked}
    wrong = [f"{h} has {rows[h]} classes, {n} were asked for" for h, n in asked.items() if rows[h] not in (None, n)]
    if wrong:  # an absent head is left to the strict load, which names the missing keys
        raise CheckpointError(f"{where}: " + "; ".join(wrong))
    probe = AnticipativeClassifier(embed_dim, num_heads, depth, num_verbs, num_nouns, num_actions)
    load_state_dict_strict(probe, state, where)
    return probe.eval()


def load_probe_states(classifiers: Sequence[nn.Module], states: Sequence[Mapping[str, Tensor]], where: str) -> None:
    """Strictly load one state dict per head (for resume and --val-only with own multi-head files)."""
    if len(states) != len(classifiers):
        raise CheckpointError(f"{where} holds {len(states)} classifiers, the config builds {len(classifiers)}")
    for i, (c, s) in enumerate(zip(classifiers, states)):
        load_state_dict_strict(unwrap(c), s, f"{where} [classifiers][{i}]")


def build_head_optimizers(
    classifiers: Sequence[nn.Module], multihead_kwargs: Sequence[Mapping[str, Any]], ipe: int, num_epochs: int
) -> tuple[list[torch.optim.AdamW], list[Scheduler]]:
    """One AdamW per head (all parameters weight-decayed, as the reference) with its lr/wd schedule."""
    if len(classifiers) != len(multihead_kwargs):
        raise ValueError(f"{len(classifiers)} classifiers for {len(multihead_kwargs)} multihead_kwargs")
    t_max = int(num_epochs * ipe)
    optimizers, schedulers = [], []
    for c, kw in zip(classifiers, multihead_kwargs):
        opt = torch.optim.AdamW([{"params": list(c.parameters())}], lr=kw["start_lr"], weight_decay=kw["weight_decay"])
        warmup = int(kw["warmup"] * ipe)

        def lr_fn(k: int, kw: Mapping = kw, warmup: int = warmup) -> float:
            return warmup_cosine(
                k, warmup=warmup, start=kw["start_lr"], ref=kw["lr"], final=kw["final_lr"], t_max=t_max
            )

        def wd_fn(k: int, kw: Mapping = kw) -> float:
            return cosine_wd(k, ref=kw["weight_decay"], final=kw["final_weight_decay"], t_max=t_max)

        optimizers.append(opt)
        schedulers.append(Scheduler(opt, lr_fn, wd_fn))
    return optimizers, schedulers
