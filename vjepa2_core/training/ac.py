"""AC post-training pieces (spec section 6): models from a config, frozen-encoder targets, and the losses.

The loss is teacher forcing on all frames plus an `auto_steps` auto-regressive rollout from the first frame, both
L1 (|.|^p / p) on layer-normed representations. The diagnostics compare the model with the "copy the current
frame" baseline and with itself fed all-zero actions.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vjepa2_core.hub import build_model, load_checkpoint, load_state_dict_strict
from vjepa2_core.hub.loading import copy_model_config
from vjepa2_core.models.conditioning import Conditioning
from vjepa2_core.models.vision_transformer import ENCODER_SIZES


def model_config(cfg: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Reference constructor kwargs {"encoder": ..., "predictor": ...} from a training config.

    Stored in every checkpoint as `model_config`, so `vjepa2_core.hub.load_ac_model(path)` needs no name.
    """
    data, model = cfg["data"], cfg["model"]
    name = model["model_name"]
    if name not in ENCODER_SIZES:
        raise ValueError(f"model.model_name {name!r} is not one of {sorted(ENCODER_SIZES)}")
    fpc = max(data["dataset_fpcs"])
    video = {
        "img_size": data["crop_size"],
        "patch_size": data["patch_size"],
        "num_frames": max(64, 2 * fpc),  # as the hub models; the AC predictor then takes up to num_frames/2 frames
        "tubelet_size": data["tubelet_size"],
        "use_rope": model["use_rope"],
    }
    sizes = {k: model[k] for k in ("embed_dim", "depth", "num_heads") if model.get(k) is not None}
    encoder = {**video, **ENCODER_SIZES[name], **sizes}
    predictor = {
        **video,
        "embed_dim": encoder["embed_dim"],
        "predictor_embed_dim": model["pred_embed_dim"],
        "depth": model["pred_depth"],
        "num_heads": model["pred_num_heads"],
        "mlp_ratio": 4.0,
        "is_frame_causal": model["pred_is_frame_causal"],
        "action_embed_dim": 7,
        "use_extrinsics": model["use_extrinsics"],
        "uniform_power": model["uniform_power"],
    }
    return {"encoder": encoder, "predictor": predictor}


def fit_conditioning(dataset: Any) -> Conditioning:
    """Action/state statistics over every transition of a DROIDDataset's episodes (states only, no video decoding)."""
    from vjepa2_core.data.droid import DROIDDataError

    actions, states = [], []
    for i in range(len(dataset.paths)):
        for view in dataset.camera_views:
            try:
                ep = dataset.open_episode(i, view)
            except DROIDDataError:
                continue  # the dataset skips unusable episodes too
            for step in dataset.clip_steps(ep.video_fps):  # multi-step moves set the action scale too
                idx = np.arange(0, ep.num_frames, step)
                if len(idx) < 2:
                    continue
                clip = dataset.load_clip(ep, idx, decode=False)
                actions.append(clip["actions"])
                states.append(clip["states"])
            break  # states do not depend on the view unless camera_frame; one view is enough for statistics
    if not actions:
        raise ValueError("no usable episodes to compute conditioning statistics from")
    return Conditioning.fit(torch.cat(actions), torch.cat(states))


def build_models(cfg: Mapping[str, Any], mcfg: Mapping[str, dict]) -> tuple[nn.Module, nn.Module]:
    """(frozen target encoder, trainable AC predictor). Pretrained weights come from `meta.pretrain_checkpoint`."""
    meta = cfg["meta"]
    encoder = build_model("encoder", mcfg["encoder"])
    predictor = build_model(
        "ac_predictor",
        {**mcfg["predictor"], "use_activation_checkpointing": cfg["model"]["use_activation_checkpointing"]},
    )
    if meta["pretrain_checkpoint"]:
        ckpt = load_checkpoint(meta["pretrain_checkpoint"])
        key = meta["target_encoder_key"] if meta["target_encoder_key"] in ckpt else "encoder"
        load_state_dict_strict(encoder, ckpt[key], f"{meta['pretrain_checkpoint']} [{key}]")
        if meta["load_predictor"]:
            load_state_dict_strict(predictor, ckpt["predictor"], f"{meta['pretrain_checkpoint']} [predictor]")
    encoder.requires_grad_(False).eval()
    return encoder, predictor


def layer_norm(x: Tensor) -> Tensor:
    """The reference's representation normalisation: LayerNorm over features, no affine, eps 1e-5."""
    return F.layer_norm(x, (x.size(-1),))


def encode_frames(
    encoder: nn.Module, frames: Tensor, tubelet: int = 2, normalize: bool = True, grad: bool = False
) -> Tensor:
    """Each frame separately, repeated into a tubelet: [B,3,T,H,W] -> [B,T,g2,D]; `grad` when the encoder trains."""
    b, c, t, h, w = frames.shape
    x = frames.permute(0, 2, 1, 3, 4).reshape(b * t, c, 1, h, w).repeat(1, 1, tubelet, 1, 1)
    with torch.set_grad_enabled(grad and torch.is_grad_enabled()):
        z = encoder(x)
    z = layer_norm(z) if normalize else z
    return z.reshape(b, t, z.shape[1], z.shape[2])


def _l1(pred: Tensor, target: Tensor, p: float) -> Tensor:
    return torch.mean(torch.abs(pred - target) ** p) / p


def predict(
    predictor: nn.Module, z: Tensor, actions: Tensor, states: Tensor, extrinsics: Tensor | None, normalize: bool
) -> Tensor:
    """One predictor pass on flattened frames z [B,T*g2,D] -> next-frame predictions [B,T*g2,D]."""
    out = predictor(z, actions, states, extrinsics) if extrinsics is not None else predictor(z, actions, states)
    return layer_norm(out) if normalize else out


def ac_losses(
    predictor: nn.Module,
    h: Tensor,
    actions: Tensor,
    states: Tensor,
    extrinsics: Tensor | None = None,
    auto_steps: int = 2,
    loss_exp: float = 1.0,
    normalize: bool = True,
    context: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """(teacher-forcing loss, rollout loss) for targets h [B,T,g2,D], actions [B,T-1,7], states [B,T,7].

    The predictor's inputs are `context` (a trained encoder's features of the same frames) when given, else h.
    """
    b, t, g2, d = h.shape
    if not 1 <= auto_steps <= t - 1:
        raise ValueError(f"auto_steps must be in [1, {t - 1}] for {t}-frame clips, got {auto_steps}")
    if context is not None and context.shape != h.shape:
        raise ValueError(f"context features {tuple(context.shape)} must match the targets {tuple(h.shape)}")
    flat = h.reshape(b, t * g2, d)
    inputs = flat if context is None else context.reshape(b, t * g2, d)
    ext = extrinsics[:, :-1] if extrinsics is not None else None
    z_tf = predict(predictor, inputs[:, :-g2], actions, states[:, :-1], ext, normalize)
    jloss = _l1(z_tf, flat[:, g2:], loss_exp)
    seq = torch.cat([inputs[:, :g2], z_tf[:, :g2]], dim=1)
    for n in range(1, auto_steps):
        ext = extrinsics[:, : n + 1] if extrinsics is not None else None
        nxt = predict(predictor, seq, actions[:, : n + 1], states[:, : n + 1], ext, normalize)[:, -g2:]
        seq = torch.cat([seq, nxt], dim=1)
    sloss = _l1(seq[:, g2:], flat[:, g2 : g2 * (auto_steps + 1)], loss_exp)
    return jloss, sloss


class ACObjective(nn.Module):
    """The AC training loss of one batch as one module: the predictor and, when fine-tuned, the encoder feeding it.

    One call per step returns (teacher-forcing loss, rollout loss), so a single DistributedDataParallel around
    this module averages the gradients of both (an encoder trained outside DDP drifts apart on every rank).
    """

    def __init__(
        self,
        predictor: nn.Module,
        encoder: nn.Module | None = None,
        tubelet: int = 2,
        auto_steps: int = 2,
        loss_exp: float = 1.0,
        normalize: bool = True,
    ) -> None:
        super().__init__()
        self.predictor, self.encoder = predictor, encoder
        self.tubelet, self.auto_steps, self.loss_exp, self.normalize = tubelet, auto_steps, loss_exp, normalize

    def forward(
        self,
        h: Tensor,
        actions: Tensor,
        states: Tensor,
        extrinsics: Tensor | None = None,
        frames: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Losses for targets h [B,T,g2,D]; with a trained encoder its features of `frames` [B,3,T,H,W] are the
        predictor's inputs."""
        context = None
        if self.encoder is not None:
            if frames is None:
                raise ValueError("a fine-tuned encoder needs the batch's frames")
            context = encode_frames(self.encoder, frames, self.tubelet, self.normalize, grad=True)
        args = (self.auto_steps, self.loss_exp, self.normalize)
        return ac_losses(self.predictor, h, actions, states, extrinsics, *args, context=context)


def finetune_copy(encoder: nn.Module, checkpointing: bool) -> nn.Module:
    """A trainable copy of the frozen encoder; `checkpointing` recomputes each block in the backward pass
    (the activations of a ViT-g on a reference batch would not fit one GPU otherwise)."""
    online = copy.deepcopy(encoder).requires_grad_(True).train()
    if getattr(online, "pos_embed", None) is not None:
        online.pos_embed.requires_grad_(False)  # the fixed sin-cos table (models without RoPE) stays fixed
    online.use_activation_checkpointing = checkpointing
    return online


def build_objective(cfg: Mapping[str, Any], encoder: nn.Module, predictor: nn.Module) -> ACObjective:
    """The trained modules of a run: the predictor, plus a fine-tuned encoder copy with `meta.finetune_encoder`
    (then `encoder` stays its EMA target)."""
    online = None
    if cfg["meta"]["finetune_encoder"]:
        online = finetune_copy(encoder, cfg["model"]["encoder_activation_checkpointing"])
    loss = cfg["loss"]
    return ACObjective(
        predictor, online, cfg["data"]["tubelet_size"], loss["auto_steps"], loss["loss_exp"], loss["normalize_reps"]
    )


@torch.no_grad()
def diagnostics(
    predictor: nn.Module,
    h: Tensor,
    actions: Tensor,
    states: Tensor,
    extrinsics: Tensor | None = None,
    auto_steps: int = 2,
    loss_exp: float = 1.0,
    normalize: bool = True,
) -> dict[str, float]:
    """Held-out numbers a user needs to trust a model: its losses, the copy-current-frame baseline, zero actions.

    A model that does not beat `copy_loss` or barely differs from `zero_action_loss` has not learned
    action-conditioned dynamics. All three are one-step (teacher-forcing) losses, so they compare directly.
    """
    b, t, g2, d = h.shape
    flat = h.reshape(b, t * g2, d)
    jloss, sloss = ac_losses(predictor, h, actions, states, extrinsics, auto_steps, loss_exp, normalize)
    ext = extrinsics[:, :-1] if extrinsics is not None else None
    z0 = predict(predictor, flat[:, :-g2], torch.zeros_like(actions), states[:, :-1], ext, normalize)
    return {
        "val_loss": float(jloss + sloss),
        "val_jloss": float(jloss),
        "val_copy_loss": float(_l1(flat[:, :-g2], flat[:, g2:], loss_exp)),
        "val_zero_action_loss": float(_l1(z0, flat[:, g2:], loss_exp)),
    }


def checkpoint_state(
    encoder: nn.Module,
    predictor: nn.Module,
    mcfg: Mapping[str, dict],
    target_encoder: nn.Module | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """Reference checkpoint layout (`encoder`, `target_encoder`, `predictor`, ...) plus `model_config`.

    `target_encoder` is the EMA copy when the encoder was fine-tuned (what the planner loads), else the encoder.
    """
    return {
        "encoder": encoder.state_dict(),
        "target_encoder": (encoder if target_encoder is None else target_encoder).state_dict(),
        "predictor": predictor.state_dict(),
        "model_config": copy_model_config(mcfg),
        **extra,
    }
