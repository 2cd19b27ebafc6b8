"""Multi-block 3-D masks and the multi-clip-length collator used by V-JEPA pretraining."""

from vjepa2_core.masks.multiblock3d import (
    VJEPA2_MASK_CFGS,
    MaskConfig,
    MultiBlockMaskGenerator,
    MultiSeqMaskCollator,
    clip_length,
)
from vjepa2_core.masks.utils import apply_masks

__all__ = [
    "VJEPA2_MASK_CFGS",
    "MaskConfig",
    "MultiBlockMaskGenerator",
    "MultiSeqMaskCollator",
    "apply_masks",
    "clip_length",
]
