"""Registry of the released V-JEPA 2 checkpoints and of tiny test architectures.

Each entry holds the reference constructor kwargs of the encoder and of its predictor, so a checkpoint can be
rebuilt and loaded strictly without guessing, and where its file comes from. ``MODELS`` is a plain dict read at
call time: a mirror (or a test) swaps an entry with ``dataclasses.replace(spec, download_url=..., sha256=...)``.
The released files publish no hash, so their entries carry none; downloads are then checked against the length
the server announces.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from vjepa2_core.models.vision_transformer import ENCODER_SIZES

__all__ = ["ModelSpec", "MODELS", "ALIASES", "BASE_URL", "get_spec", "available_models"]

BASE_URL = "https://dl.fbaipublicfiles.com/vjepa2"

# Common to every released model: 3-D patch embed (tubelet 2), 64 pretraining frames, RoPE, GELU MLP.
_VIDEO = {"patch_size": 16, "num_frames": 64, "tubelet_size": 2, "use_rope": True}


@dataclass(frozen=True)
class ModelSpec:
    """One loadable model: encoder kwargs, predictor kwargs and where its weights live."""

    name: str
    encoder: dict[str, Any]
    predictor: dict[str, Any]
    predictor_kind: str  # "predictor" (mask-feature) or "ac_predictor"
    img_size: int
    file_name: str | None = None
    description: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    download_url: str | None = None  # overrides BASE_URL/file_name (a mirror, or a file:// URL in tests)
    sha256: str | None = None  # checked after a download when known
    size: int | None = None  # bytes; checked after a download and on the local file when known

    @property
    def url(self) -> str | None:
        if self.download_url:
            return self.download_url
        return f"{BASE_URL}/{self.file_name}" if self.file_name else None

    @property
    def model_config(self) -> dict[str, dict[str, Any]]:
        """The ``model_config`` entry written into checkpoints of this project (deep copy, safe to edit)."""
        return {"encoder": copy.deepcopy(self.encoder), "predictor": copy.deepcopy(self.predictor)}


def _encoder(width: str, img_size: int) -> dict[str, Any]:
    return {"img_size": img_size, **_VIDEO, **ENCODER_SIZES[width]}


def _mask_predictor(encoder: dict[str, Any]) -> dict[str, Any]:
    return {
        "img_size": encoder["img_size"],
        **_VIDEO,
        "embed_dim": encoder["embed_dim"],
        "predictor_embed_dim": 384,
        "depth": 12,
        "num_heads": 12,
        "mlp_ratio": 4.0,
        "use_mask_tokens": True,
        "num_mask_tokens": 10,
        "zero_init_mask_tokens": True,
    }


def _ac_predictor(encoder: dict[str, Any], width: int = 1024, depth: int = 24, heads: int = 16) -> dict[str, Any]:
    return {
        "img_size": encoder["img_size"],
        **_VIDEO,
        "embed_dim": encoder["embed_dim"],
        "predictor_embed_dim": width,
        "depth": depth,
        "num_heads": heads,
        "mlp_ratio": 4.0,
        "is_frame_causal": True,
        "action_embed_dim": 7,
        "use_extrinsics": False,
    }


def _released(name: str, width: str, img_size: int, file_name: str, ac: bool = False) -> ModelSpec:
    enc = _encoder(width, img_size)
    pred, kind = (_ac_predictor(enc), "ac_predictor") if ac else (_mask_predictor(enc), "predictor")
    return ModelSpec(name, enc, pred, kind, img_size, file_name, f"released V-JEPA 2 {width} @ {img_size}px")


def _tiny(name: str, ac: bool) -> ModelSpec:
    """Small random-weight architectures for CPU tests and demos (crop 64 -> 4x4 patches per frame)."""
    enc = {"img_size": 64, **_VIDEO, "embed_dim": 96, "depth": 2, "num_heads": 2, "mlp_ratio": 4.0}
    if ac:
        return ModelSpec(name, enc, _ac_predictor(enc, width=64, depth=2, heads=2), "ac_predictor", 64)
    pred = {**_mask_predictor(enc), "predictor_embed_dim": 64, "depth": 2, "num_heads": 2, "num_mask_tokens": 2}
    return ModelSpec(name, enc, pred, "predictor", 64, description="tiny test encoder + mask predictor")


MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        _released("vit_large", "vit_large", 256, "vitl.pt"),
        _released("vit_huge", "vit_huge", 256, "vith.pt"),
        _released("vit_giant", "vit_giant", 256, "vitg.pt"),
        _released("vit_giant_384", "vit_giant", 384, "vitg-384.pt"),
        _released("vit_ac_giant", "vit_giant", 256, "vjepa2-ac-vitg.pt", ac=True),
        _tiny("vit_ac_tiny", ac=True),
        _tiny("vit_pretrain_tiny", ac=False),
    )
}
ALIASES: dict[str, str] = {"vjepa2_ac_vit_giant": "vit_ac_giant"}
ALIASES.update({f"vjepa2_{name}": name for name in ("vit_large", "vit_huge", "vit_giant", "vit_giant_384")})


def available_models() -> list[str]:
    return sorted([*MODELS, *ALIASES])


def get_spec(name: str) -> ModelSpec:
    """Look a model up by registry name or alias; unknown names raise a KeyError listing the choices."""
    key = ALIASES.get(name, name)
    if key not in MODELS:
        raise KeyError(f"unknown V-JEPA 2 model {name!r}; known: {', '.join(available_models())}")
    return MODELS[key]
