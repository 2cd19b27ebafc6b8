"""Learning-rate and weight-decay schedules (reference semantics, spec section 5) as pure functions of the step.

`Scheduler` applies them to an optimizer's param groups once per iteration; its only state is the step counter,
which makes exact resume trivial. The counter starts at 0 and the first `step()` uses k = 1, as in the reference.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch


def warmup_cosine(k: int, *, warmup: int, start: float, ref: float, final: float, t_max: int) -> float:
    """Linear warmup start->ref over `warmup` steps, then cosine ref->final until `t_max` (never below final)."""
    if k < warmup:
        return start + (k / max(1, warmup)) * (ref - start)
    progress = (k - warmup) / max(1, t_max - warmup)
    return max(final, final + (ref - final) * 0.5 * (1.0 + math.cos(math.pi * progress)))


def wsd(k: int, *, warmup: int, anneal: int, start: float, ref: float, final: float, t_max: int) -> float:
    """Warmup-stable-decay: linear warmup, constant `ref`, then linear ref->final over the last `anneal` steps."""
    if k < warmup:
        return start + (k / max(1, warmup)) * (ref - start)
    decay_start = t_max - anneal
    if k < decay_start:
        return ref
    progress = min(1.0, (k - decay_start) / max(1, anneal))
    return ref + progress * (final - ref)


def linear_decay(k: int, *, ref: float, final: float, t_max: int) -> float:
    """Cooldown: linear ref->final over `t_max` steps (held at final afterwards)."""
    return ref + min(1.0, k / max(1, t_max)) * (final - ref)


def cosine_wd(k: int, *, ref: float, final: float, t_max: int) -> float:
    """Cosine weight decay ref->final over `t_max` steps, clamped at final."""
    wd = final + (ref - final) * 0.5 * (1.0 + math.cos(math.pi * k / max(1, t_max)))
    return max(final, wd) if final <= ref else min(final, wd)


class Scheduler:
    """Sets `lr` (times each group's `lr_scale`) and `weight_decay` (unless `WD_exclude`) on every step."""

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        lr_fn: Callable[[int], float],
        wd_fn: Callable[[int], float] | None = None,
    ):
        self.optimizer, self.lr_fn, self.wd_fn = optimizer, lr_fn, wd_fn
        self.k = 0
        self.lr = lr_fn(0)
        self.wd = wd_fn(0) if wd_fn else None

    def step(self) -> tuple[float, float | None]:
        self.k += 1
        self.lr = self.lr_fn(self.k)
        self.wd = self.wd_fn(self.k) if self.wd_fn else None
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr * group.get("lr_scale", 1.0)
            if self.wd is not None and not group.get("WD_exclude", False):
                group["weight_decay"] = self.wd
        return self.lr, self.wd

    def state_dict(self) -> dict:
        return {"step": self.k}

    def load_state_dict(self, state: dict) -> None:
        self.k = int(state["step"])
        self.lr = self.lr_fn(self.k)
        self.wd = self.wd_fn(self.k) if self.wd_fn else None


def build_scheduler(optimizer: torch.optim.Optimizer, opt_cfg: dict, kind: str, ipe_scale: float = 1.0) -> Scheduler:
    """Scheduler from a reference `optimization` section (warmup/anneal/epochs in epochs of `ipe` steps).

    kind: "wsd" (AC post-training), "warmup_cosine" (pretraining) or "linear_decay" (cooldown).
    """
    ipe = int(opt_cfg["ipe"])
    t_max = int(ipe_scale * opt_cfg["epochs"] * ipe)
    warmup = int(opt_cfg.get("warmup", 0) * ipe)
    start, ref, final = opt_cfg.get("start_lr", opt_cfg["lr"]), opt_cfg["lr"], opt_cfg["final_lr"]
    if kind == "wsd":
        anneal = int(opt_cfg["anneal"] * ipe)

        def lr_fn(k: int) -> float:
            return wsd(k, warmup=warmup, anneal=anneal, start=start, ref=ref, final=final, t_max=t_max)

    elif kind == "warmup_cosine":

        def lr_fn(k: int) -> float:
            return warmup_cosine(k, warmup=warmup, start=start, ref=ref, final=final, t_max=t_max)

    elif kind == "linear_decay":

        def lr_fn(k: int) -> float:
            return linear_decay(k, ref=ref, final=final, t_max=t_max)

    else:
        raise ValueError(f"unknown lr schedule {kind!r} (wsd, warmup_cosine, linear_decay)")
    wd_ref, wd_final = opt_cfg["weight_decay"], opt_cfg["final_weight_decay"]

    def wd_fn(k: int) -> float:
        return cosine_wd(k, ref=wd_ref, final=wd_final, t_max=t_max)

    return Scheduler(optimizer, lr_fn, wd_fn)
