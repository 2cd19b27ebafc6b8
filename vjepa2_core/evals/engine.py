"""The pieces of one probe step shared by `training/eval_probe.py`, the benchmark and the simulator probe:
frozen features of a batch, the per-head losses, and the evaluation pass (top-1 or mean-class recall@5).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vjepa2_core.evals.metrics import ClassMeanRecall, top1_correct
from vjepa2_core.training.distributed import all_reduce_sum
from vjepa2_core.training.optim import autocast

ANTICIPATION = "action_anticipation_frozen"
IMAGE = "image_classification_frozen"


def move_batch(batch: Sequence[Any], eval_name: str, device: torch.device) -> tuple[Any, Any, Tensor | dict]:
    """Loader batch -> (inputs, clip indices or None, labels) on `device`."""
    if eval_name == ANTICIPATION:
        views = [v.to(device, non_blocking=True) for v in batch[0]]
        labels = {k: t.to(device) for k, t in zip(("verb", "noun", "action"), batch[1:4])}
        return views, None, labels
    if eval_name == IMAGE:
        return [v.to(device, non_blocking=True) for v in batch[0]], None, batch[1].to(device)
    clips = [[v.to(device, non_blocking=True) for v in seg] for seg in batch[0]]
    return clips, [i.to(device) for i in batch[2]], batch[1].to(device)


@torch.no_grad()
def frozen_features(model: nn.Module, inputs: Any, clip_indices: Any, eval_name: str) -> list[Tensor]:
    """Per-view probe tokens [B, N, D] from the frozen wrapper (video: one call for all segments and views)."""
    if eval_name in (ANTICIPATION, IMAGE):
        return [model(v) for v in inputs]
    return model(inputs, clip_indices)


def head_loss(outputs: list[Any], labels: Tensor | dict, eval_name: str) -> Tensor:
    """Reference losses: CE summed over views; anticipation: CE(verb) + CE(noun) + CE(action)."""
    if eval_name == ANTICIPATION:
        return sum(F.cross_entropy(o[k], labels[k]) for o in outputs for k in ("verb", "noun", "action"))
    return sum(F.cross_entropy(o, labels) for o in outputs)


def head_outputs(classifiers: Sequence[nn.Module], feats: list[Tensor]) -> list[list[Any]]:
    return [[c(f) for f in feats] for c in classifiers]


def _reduce(x: Tensor) -> Tensor:
    """Sum over ranks (on the GPU when the process group is NCCL, which cannot reduce CPU tensors)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        if torch.distributed.get_backend() == "nccl":
            return all_reduce_sum(x.cuda()).cpu()
    return all_reduce_sum(x)


class ScoreBoard:
    """Per head: top-1 (%) for classification, or verb/noun/action mean-class recall@5 (%) for anticipation."""

    def __init__(self, num_heads: int, eval_name: str, class_sizes: Sequence[int] | None = None) -> None:
        self.eval_name, self.num_heads = eval_name, num_heads
        self.correct = torch.zeros(num_heads, dtype=torch.float64)
        self.total = torch.zeros((), dtype=torch.float64)
        self.recalls = [[ClassMeanRecall(n) for n in class_sizes] for _ in range(num_heads)] if class_sizes else []

    def update(self, outputs: list[list[Any]], labels: Tensor | dict) -> None:
        if self.eval_name == ANTICIPATION:  # one view for anticipation: the reference's single clip
            for meters, outs in zip(self.recalls, outputs):
                for meter, k in zip(meters, ("verb", "noun", "action")):
                    meter.update(torch.stack([o[k] for o in outs]).softmax(-1).mean(0), labels[k])
            return
        for h, outs in enumerate(outputs):
            self.correct[h] += top1_correct(outs, labels)
        self.total += len(labels)

    def scores(self) -> dict[str, list[float]]:
        """All-reduced over ranks: {'top1': [...]} or {'verb': [...], 'noun': [...], 'action': [...]}."""
        if self.eval_name == ANTICIPATION:
            out: dict[str, list[float]] = {}
            for j, k in enumerate(("verb", "noun", "action")):
                out[k] = [m[j].value(_reduce(m[j].state())) for m in self.recalls]
            return out
        correct, total = _reduce(self.correct.clone()), _reduce(self.total.clone())
        return {"top1": (100.0 * correct / total.clamp(min=1)).tolist()}

    def main_scores(self) -> list[float]:
        s = self.scores()
        return s["action"] if self.eval_name == ANTICIPATION else s["top1"]


@torch.no_grad()
def evaluate(
    model: nn.Module,
    classifiers: Sequence[nn.Module],
    loader: Any,
    eval_name: str,
    device: torch.device,
    dtype: torch.dtype,
    class_sizes: Sequence[int] | None = None,
) -> ScoreBoard:
    """One pass over `loader`, probabilities averaged over views, scores per head."""
    for c in classifiers:
        c.eval()
    board = ScoreBoard(len(classifiers), eval_name, class_sizes)
    for batch in loader:
        inputs, indices, labels = move_batch(batch, eval_name, device)
        with autocast(device, dtype):
            feats = frozen_features(model, inputs, indices, eval_name)
            board.update(head_outputs(classifiers, feats), labels)
    return board
