"""V-JEPA pretraining pieces (spec §5): models from the reference config, masked latent prediction loss, EMA.

The loop itself lives in `training/pretrain.py`; these functions keep it short and are shared with tests and the
benchmark.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vjepa2_core.masks import apply_masks


@dataclass
class MaskedBatch:
    """One collated batch: per clip-length group i, its clips and one (context, target) pair per mask config j."""

    clips: list[Tensor]  # [B_i, 3, T_i, H, W]
    masks_enc: list[list[Tensor]]  # [i][j] -> [B_i, Kc_ij]
    masks_pred: list[list[Tensor]]  # [i][j] -> [B_i, Kt_ij]

    @classmethod
    def from_collator(cls, groups: Sequence[tuple], device: torch.device | str = "cpu") -> MaskedBatch:
        """From `MultiSeqMaskCollator` output: [(samples, [ctx_j], [tgt_j]), ...] with samples[0][0] the clips."""
        dev = torch.device(device)
        nb = dev.type == "cuda"
        return cls(
            clips=[g[0][0][0].to(dev, non_blocking=nb) for g in groups],
            masks_enc=[[m.to(dev, non_blocking=nb) for m in g[1]] for g in groups],
            masks_pred=[[m.to(dev, non_blocking=nb) for m in g[2]] for g in groups],
        )

    @property
    def size(self) -> int:
        return sum(c.shape[0] for c in self.clips)


def model_configs(
    model: Mapping[str, Any],
    crop_size: int,
    max_frames: int,
    num_mask_tokens: int,
    patch_size: int = 16,
    tubelet_size: int = 2,
) -> dict[str, dict[str, Any]]:
    """Reference constructor kwargs of encoder and predictor from a pretrain yaml's `model` section.

    `model_name` picks a size from `ENCODER_SIZES`; `embed_dim`/`depth`/`num_heads` override it (tiny configs).
    Returned as `{"encoder": {...}, "predictor": {...}}`, the `model_config` entry the hub reads back.
    """
    from vjepa2_core.models.vision_transformer import ENCODER_SIZES

    name = model.get("model_name", "vit_large")
    if name not in ENCODER_SIZES:
        raise ValueError(f"model.model_name {name!r} unknown; choose one of {sorted(ENCODER_SIZES)}")
    common = dict(
        img_size=int(crop_size),
        patch_size=int(patch_size),
        num_frames=int(max_frames),
        tubelet_size=int(tubelet_size),
        uniform_power=bool(model.get("uniform_power", False)),
        use_rope=bool(model.get("use_rope", True)),
        use_activation_checkpointing=bool(model.get("use_activation_checkpointing", False)),
        wide_silu=bool(model.get("wide_silu", True)),
    )
    size = {
        **ENCODER_SIZES[name],
        **{k: model[k] for k in ("embed_dim", "depth", "num_heads") if model.get(k) is not None},
    }
    encoder = {**common, **size, "use_silu": bool(model.get("use_silu", False))}
    predictor = {
        **common,
        "embed_dim": size["embed_dim"],
        "predictor_embed_dim": int(model.get("pred_embed_dim", 384)),
        "depth": int(model.get("pred_depth", 12)),
        "num_heads": int(model.get("pred_num_heads") or size["num_heads"]),
        "mlp_ratio": 4.0,
        "use_mask_tokens": bool(model.get("use_mask_tokens", True)),
        "num_mask_tokens": int(num_mask_tokens),
        "zero_init_mask_tokens": bool(model.get("zero_init_mask_tokens", True)),
        "use_silu": bool(model.get("use_pred_silu", False)),
    }
    return {"encoder": encoder, "predictor": predictor}


class MultiSeqEncoder(nn.Module):
    """Runs the encoder on every clip-length group (and every context mask), inside one module call.

    Wrapping this (not the bare encoder) in DDP keeps one forward per step however many masks there are.
    """

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone

    def forward(self, clips: Sequence[Tensor], masks: Sequence[Sequence[Tensor]] | None = None):
        if masks is None:
            return [self.backbone(x) for x in clips]
        return [[self.backbone(x, masks=[m]) for m in ms] for x, ms in zip(clips, masks)]


class MultiSeqPredictor(nn.Module):
    """Predicts the targets of every (group i, mask j) pair; group i uses mask token i (reference wrapper)."""

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone

    def forward(self, z, masks_x, masks_y) -> list[list[Tensor]]:
        return [
            [self.backbone(zij, [mx], [my], mask_index=i) for zij, mx, my in zip(zi, mxi, myi)]
            for i, (zi, mxi, myi) in enumerate(zip(z, masks_x, masks_y))
        ]


def build_models(model_config: Mapping[str, Mapping[str, Any]]) -> tuple[nn.Module, nn.Module, nn.Module]:
    """(encoder, predictor, target_encoder) multi-sequence wrappers; the target is a frozen copy of the encoder."""
    from vjepa2_core.models import build_reference_model

    encoder = build_reference_model("encoder", **model_config["encoder"])
    predictor = build_reference_model("predictor", **model_config["predictor"])
    target = copy.deepcopy(encoder)
    for p in target.parameters():
        p.requires_grad_(False)
    return MultiSeqEncoder(encoder), MultiSeqPredictor(predictor), MultiSeqEncoder(target)


@torch.no_grad()
def target_features(target_encoder: nn.Module, clips: Sequence[Tensor]) -> list[Tensor]:
    """Layer-normed (no affine, eps 1e-5) target-encoder features of every full clip: [B_i, N_i, D]."""
    return [F.layer_norm(h, (h.shape[-1],)) for h in target_encoder(clips)]


def predict_targets(encoder: nn.Module, predictor: nn.Module, batch: MaskedBatch) -> list[list[Tensor]]:
    """Context encoding of each (group i, mask j), then prediction of its target tokens."""
    return predictor(encoder(batch.clips, batch.masks_enc), batch.masks_enc, batch.masks_pred)


def jepa_loss(
    preds: list[list[Tensor]], targets: list[Tensor], masks_pred: list[list[Tensor]], loss_exp: float = 1.0
) -> Tensor:
    """Mean over (group, mask) pairs of mean(|pred - target|^p) / p on the target tokens (p = 1: plain L1)."""
    terms = []
    for zi, hi, mi in zip(preds, targets, masks_pred):
        for zij, mij in zip(zi, mi):
            terms.append(torch.mean(torch.abs(zij - apply_masks(hi, [mij]).to(zij.dtype)) ** loss_exp) / loss_exp)
    if not terms:
        raise ValueError("empty batch: no (group, mask) pairs to compute the loss on")
    return torch.stack(terms).mean()


def ema_momentum(step: int, ema: Sequence[float], total_steps: int) -> float:
    """Reference momentum schedule m_k = ema0 + k (ema1 - ema0) / total_steps (constant when ema0 == ema1)."""
    e0, e1 = float(ema[0]), float(ema[1])
    return e0 + min(step, total_steps) * (e1 - e0) / max(1, total_steps)


@torch.no_grad()
def ema_update(target: nn.Module, online: nn.Module, momentum: float) -> None:
    """theta_target <- m * theta_target + (1 - m) * theta_online, parameter by parameter (after optimizer.step)."""
    t_params, o_params = list(target.parameters()), list(online.parameters())
    if len(t_params) != len(o_params):
        raise ValueError("target and online encoders have different parameter lists")
    torch._foreach_mul_(t_params, momentum)
    torch._foreach_add_(t_params, [p.detach() for p in o_params], alpha=1.0 - momentum)
