"""Frozen-encoder evaluations: attentive probes on video, image and anticipation tasks (reference `evals/`)."""

from .anticipation import AnticipativeWrapper
from .metrics import ClassMeanRecall, token_spread, top1_correct, view_averaged_probs
from .probe import (
    AnticipativeClassifier,
    build_head_optimizers,
    load_ek100_probe,
    load_probe,
    load_probe_states,
    probe_state,
)
from .wrappers import ClipAggregation, ImageAsVideo

__all__ = [
    "AnticipativeClassifier",
    "AnticipativeWrapper",
    "ClassMeanRecall",
    "ClipAggregation",
    "ImageAsVideo",
    "build_head_optimizers",
    "load_ek100_probe",
    "load_probe",
    "load_probe_states",
    "probe_state",
    "token_spread",
    "top1_correct",
    "view_averaged_probs",
]
