"""V-JEPA 2 models: video ViT encoder, mask-feature predictor, action-conditioned predictor, attentive probe.

All classes take the reference constructor argument names and load reference state dicts with ``strict=True``.
"""

from __future__ import annotations

from torch import nn

from .ac_cache import ACCache
from .ac_predictor import ACPredictor, vit_ac_predictor
from .attentive_pooler import AttentiveClassifier, AttentivePooler, CrossAttention, CrossAttentionBlock
from .predictor import MaskedPredictor, vit_predictor
from .vision_transformer import (
    ENCODER_SIZES,
    VisionTransformer,
    vit_base,
    vit_giant,
    vit_giant_384,
    vit_giant_xformers,
    vit_huge,
    vit_large,
    vit_small,
    vit_tiny,
)

MODEL_KINDS = {
    "encoder": VisionTransformer,
    "predictor": vit_predictor,
    "ac_predictor": vit_ac_predictor,
    "attentive_classifier": AttentiveClassifier,
}


def build_reference_model(kind: str, **reference_kwargs) -> nn.Module:
    """Build a model from reference constructor kwargs (e.g. the ``config`` of a fixture or ``model_config``).

    Encoder and predictors use LayerNorm eps 1e-6 (as every reference size function), the probe eps 1e-5.
    """
    if kind not in MODEL_KINDS:
        raise ValueError(f"unknown model kind {kind!r}; expected one of {sorted(MODEL_KINDS)}")
    return MODEL_KINDS[kind](**reference_kwargs)


__all__ = [
    "ACCache",
    "ACPredictor",
    "AttentiveClassifier",
    "AttentivePooler",
    "CrossAttention",
    "CrossAttentionBlock",
    "ENCODER_SIZES",
    "MODEL_KINDS",
    "MaskedPredictor",
    "VisionTransformer",
    "build_reference_model",
    "vit_ac_predictor",
    "vit_base",
    "vit_giant",
    "vit_giant_384",
    "vit_giant_xformers",
    "vit_huge",
    "vit_large",
    "vit_predictor",
    "vit_small",
    "vit_tiny",
]
