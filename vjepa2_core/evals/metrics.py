"""Probe metrics: top-1 of the view-averaged softmax, mean-class recall@k (the EK100 anticipation score), and a
collapse check of the frozen features themselves."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def view_averaged_probs(logits_per_view: Sequence[Tensor]) -> Tensor:
    """Softmax of each view's logits, averaged over views: [B, C]."""
    return torch.stack([lg.float().softmax(dim=-1) for lg in logits_per_view]).mean(0)


def top1_correct(logits_per_view: Sequence[Tensor], labels: Tensor) -> int:
    return int((view_averaged_probs(logits_per_view).argmax(-1) == labels).sum())


class ClassMeanRecall:
    """Accumulates, per class, how often the true class is in the top-k; `value()` averages over seen classes."""

    def __init__(self, num_classes: int, k: int = 5) -> None:
        self.k = min(k, num_classes)
        self.hits = torch.zeros(num_classes, dtype=torch.float64)
        self.counts = torch.zeros(num_classes, dtype=torch.float64)

    def update(self, logits: Tensor, labels: Tensor) -> None:
        topk = logits.float().topk(self.k, dim=-1).indices.cpu()
        labels = labels.cpu()
        hit = (topk == labels[:, None]).any(-1).double()
        self.hits.index_add_(0, labels, hit)
        self.counts.index_add_(0, labels, torch.ones_like(hit))

    def state(self) -> Tensor:
        """[2, C] (hits, counts), summable over ranks."""
        return torch.stack([self.hits, self.counts])

    def value(self, state: Tensor | None = None) -> float:
        hits, counts = self.state() if state is None else state
        seen = counts > 0
        return float(100.0 * (hits[seen] / counts[seen]).mean()) if seen.any() else 0.0


def chance_recall(num_classes: int, k: int = 5) -> float:
    """Mean-class recall@k (%) of rankings drawn uniformly at random: k / C."""
    return 100.0 * min(k, num_classes) / num_classes


def token_spread(tokens: Tensor) -> dict[str, float]:
    """Collapse check of frozen tokens [..., D]: the mean per-dimension std over all tokens, and the effective rank
    (RankMe: exp of the entropy of the normalised singular values of the centred tokens; D when every direction
    carries equal variance, 1 when all tokens lie on one line). A pretrained encoder far below its random
    initialisation has concentrated its features in few directions."""
    x = tokens.reshape(-1, tokens.shape[-1]).double()
    x = x - x.mean(0)
    sv = torch.linalg.svdvals(x)
    p = sv / sv.sum().clamp_min(1e-12)
    entropy = -(p * p.clamp_min(1e-12).log()).sum()
    return {"token_std": float(x.std(0).mean()), "effective_rank": float(entropy.exp())}
