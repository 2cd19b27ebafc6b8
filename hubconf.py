"""torch.hub entry points with the reference repository's names, so ``torch.hub.load(<this repo>, name)`` works.

    encoder, predictor = torch.hub.load("/path/to/vjepa2_ros", "vjepa2_vit_large", source="local")
    preprocess = torch.hub.load("/path/to/vjepa2_ros", "vjepa2_preprocessor", source="local", crop_size=256)

Every model entry takes ``pretrained`` (released weights, strictly loaded, weights-only; fetched into
``torch.hub.get_dir()/checkpoints`` or ``$VJEPA2_CHECKPOINT_DIR`` when absent), ``download`` (False: never fetch,
error naming file and URL instead; ``$VJEPA2_OFFLINE`` does the same), ``progress``, ``checkpoint`` (a local file
or Hugging Face directory instead of the registry file) and the reference's keyword overrides such as
``num_frames`` or ``img_size``, applied to encoder and predictor alike. The registry is ``vjepa2_core.hub.MODELS``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

dependencies = ["torch", "numpy", "cv2", "safetensors", "tqdm"]

_SIM_MODEL = Path(__file__).resolve().parent / "vjepa2_ros" / "models" / "sim_reach.safetensors"


def _models(name: str, pretrained: bool, ac: bool, kwargs: dict[str, Any]) -> tuple[Any, Any]:
    """(encoder, predictor) of registry entry ``name``: random init, or the strictly loaded weights."""
    from vjepa2_core.hub import build_encoder_and_predictor, load_ac_model, load_encoder_and_predictor

    download = bool(kwargs.pop("download", True))
    progress = bool(kwargs.pop("progress", True))
    checkpoint = kwargs.pop("checkpoint", None)
    if not pretrained:
        if checkpoint is not None:
            raise ValueError("checkpoint= needs pretrained=True")
        return build_encoder_and_predictor(name, overrides=kwargs)
    loader = load_ac_model if ac else load_encoder_and_predictor
    return loader(name, checkpoint=checkpoint, download=download, progress=progress, overrides=kwargs or None)


def vjepa2_preprocessor(pretrained: bool = True, crop_size: int = 256, **kwargs: Any):
    """The reference eval transform: uint8 clip [T,H,W,3] -> [tensor [3,T,crop,crop]] (``pretrained`` unused)."""
    from vjepa2_core.data.transforms import eval_video_transform

    return eval_video_transform(crop_size=crop_size, num_views=int(kwargs.pop("num_views", 1)))


def vjepa2_vit_large(pretrained: bool = True, **kwargs: Any):
    """ViT-L/16 encoder (1024 wide, 24 blocks) at 256 px + mask-feature predictor."""
    return _models("vit_large", pretrained, False, kwargs)


def vjepa2_vit_huge(pretrained: bool = True, **kwargs: Any):
    """ViT-H/16 encoder (1280 wide, 32 blocks) at 256 px + mask-feature predictor."""
    return _models("vit_huge", pretrained, False, kwargs)


def vjepa2_vit_giant(pretrained: bool = True, **kwargs: Any):
    """ViT-g/16 encoder (1408 wide, 40 blocks) at 256 px + mask-feature predictor."""
    return _models("vit_giant", pretrained, False, kwargs)


def vjepa2_vit_giant_384(pretrained: bool = True, **kwargs: Any):
    """ViT-g/16 encoder at 384 px + mask-feature predictor."""
    return _models("vit_giant_384", pretrained, False, kwargs)


def vjepa2_ac_vit_giant(pretrained: bool = True, **kwargs: Any):
    """V-JEPA 2-AC: ViT-g/16 encoder + action-conditioned predictor (1024 wide, 24 blocks) for planning."""
    return _models("vit_ac_giant", pretrained, True, kwargs)


def vjepa2_vit_tiny(pretrained: bool = False, **kwargs: Any):
    """Tiny test encoder + mask predictor (this project's; no released weights, so random unless checkpoint=)."""
    return _models("vit_pretrain_tiny", pretrained, False, kwargs)


def vjepa2_ac_vit_tiny(pretrained: bool = False, **kwargs: Any):
    """Tiny test encoder + AC predictor (this project's; no released weights, so random unless checkpoint=)."""
    return _models("vit_ac_tiny", pretrained, True, kwargs)


def vjepa2_sim_reach(pretrained: bool = True, **kwargs: Any):
    """The small AC world model shipped for the simulator demo (``vjepa2_ros/models``, see its model card)."""
    from vjepa2_core.hub import load_ac_model

    if not pretrained:
        raise ValueError("vjepa2_sim_reach is only available with its shipped weights (pretrained=True)")
    return load_ac_model(_SIM_MODEL, overrides=kwargs or None)
