"""One AC training step at the released ViT-g shapes, timed and its memory measured (`bench/gpu_check.py` (e)).

Both steps run the code `training/train_ac.py` runs: `ac.ACObjective` (the losses), `ac.encode_frames` (targets),
`optim.build_adamw` (fused on CUDA), `optim.optimizer_step` and, when the encoder trains, the EMA update.
- `ac_predictor`: the `vit_ac_giant` AC predictor (1024 wide, 24 blocks, 16 heads, 256 px) on random encoder
  features (the frozen encoder is not part of this step), batch 8 clips x 8 frames.
- `encoder_finetune`: `meta.finetune_encoder`, the ViT-g encoder (1408 wide, 40 blocks) trained with that
  predictor; its EMA copy encodes the targets. Batch 8 clips x 8 frames (the reference's per-GPU batch): weights,
  gradients and AdamW moments of 1.3 B parameters plus the EMA copy are ~25 GB; the tensors saved for backward,
  counted on the CPU in fp32 at 1 clip x 2 frames and scaled, are ~5 GiB with checkpointing (~230 GiB without),
  so with one block's recomputation it fits an 80 GB card.
Both in bf16 autocast (fp32 on the CPU, as training there) with activation checkpointing in every trained module.
`tiny=True` runs the same code with the `vit_ac_tiny` registry models at batch 2 x 4 (a quick CPU check). It
imports neither tensordict nor rosbags (the GPU image lacks them).
"""

from __future__ import annotations

import gc
import math
import statistics
import time
from typing import Any

import torch
from torch import nn

from vjepa2_core.devices import synchronize
from vjepa2_core.hub import build_model, get_spec
from vjepa2_core.training import ac
from vjepa2_core.training.optim import autocast, build_adamw, make_grad_scaler, optimizer_step, resolve_dtype
from vjepa2_core.training.pretrain_step import ema_update

BATCH, TINY_BATCH = (8, 8), (2, 4)  # clips, frames per clip (tiny: a quick CPU check of the same code)
WARMUP_STEPS, TIMED_STEPS = 1, 3
STEP_KEYS = (
    "batch_clips", "frames_per_clip", "trainable_params", "dtype", "activation_checkpointing", "optimizer",
    "seconds_per_step", "step_seconds", "peak_memory_gib", "peak_memory_note", "loss", "loss_finite", "error",
)  # fmt: skip


def _inputs(spec, device: torch.device, shape: tuple[int, int], frames: bool) -> dict[str, torch.Tensor]:
    """A random batch: targets h [B,T,g2,D] (layer-normed, as the encoder's), actions, states, and frames."""
    (b, t), size = shape, spec.img_size
    g2, d = (size // spec.encoder["patch_size"]) ** 2, spec.encoder["embed_dim"]
    gen = torch.Generator(device=device).manual_seed(0)
    batch = {
        "h": ac.layer_norm(torch.randn(b, t, g2, d, device=device, generator=gen)),
        "actions": torch.randn(b, t - 1, 7, device=device, generator=gen) * 0.05,
        "states": torch.randn(b, t, 7, device=device, generator=gen),
    }
    if frames:
        batch["frames"] = torch.randn(b, 3, t, size, size, device=device, generator=gen)
    return batch


def _run_steps(objective: ac.ACObjective, target: nn.Module | None, batch: dict, device: torch.device) -> dict:
    """Warm-up then timed steps of forward, loss, update (and EMA): seconds and the last loss."""
    groups = [(objective.predictor, 1.0)] + ([(objective.encoder, 1.0)] if objective.encoder is not None else [])
    optimizer = build_adamw(groups)
    dtype = resolve_dtype("bfloat16", device)
    scaler = make_grad_scaler(device, dtype)
    times, loss = [], math.nan
    for _ in range(WARMUP_STEPS + TIMED_STEPS):
        start = time.perf_counter()
        with autocast(device, dtype):
            h = batch["h"] if target is None else ac.encode_frames(target, batch["frames"], objective.tubelet)
            jloss, sloss = objective(h, batch["actions"], batch["states"], None, batch.get("frames"))
            total = jloss + sloss
        optimizer_step(total, optimizer, scaler)
        if target is not None:
            ema_update(target, objective.encoder, 0.998)
        loss = float(total.detach())  # waits for the step
        synchronize(device)
        times.append(time.perf_counter() - start)
    return {
        "dtype": str(dtype).removeprefix("torch."),
        "optimizer": "AdamW (fused)" if optimizer.defaults.get("fused") else "AdamW",
        "seconds_per_step": statistics.median(times[WARMUP_STEPS:]),
        "step_seconds": times,
        "loss": loss,
        "loss_finite": math.isfinite(loss),
    }


def _measure(device: torch.device, tiny: bool, finetune: bool) -> dict[str, Any]:
    """One step kind on fresh models; the peak counts weights, gradients, optimizer state and activations."""
    spec, shape = (get_spec("vit_ac_tiny"), TINY_BATCH) if tiny else (get_spec("vit_ac_giant"), BATCH)
    report: dict[str, Any] = dict.fromkeys(STEP_KEYS)
    report.update(batch_clips=shape[0], frames_per_clip=shape[1], activation_checkpointing=True, loss_finite=False)
    if device.type == "cuda":
        gc.collect()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    else:
        report["peak_memory_note"] = f"no allocator peak on {device.type}: torch.cuda.max_memory_allocated is CUDA's"
    try:
        predictor = build_model("ac_predictor", {**spec.predictor, "use_activation_checkpointing": True}, device)
        target = build_model("encoder", spec.encoder, device).requires_grad_(False).eval() if finetune else None
        online = ac.finetune_copy(target, checkpointing=True) if finetune else None
        objective = ac.ACObjective(predictor.train(), online, spec.encoder["tubelet_size"])
        report["trainable_params"] = sum(p.numel() for p in objective.parameters() if p.requires_grad)
        report.update(_run_steps(objective, target, _inputs(spec, device, shape, finetune), device))
    except torch.cuda.OutOfMemoryError as exc:  # the report keeps the other step and says what did not fit
        report["error"] = f"out of memory: {str(exc).splitlines()[0]}"
    if device.type == "cuda":
        report["peak_memory_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
    return report


def train_step_report(device: torch.device, tiny: bool) -> dict[str, Any]:
    """{"device", "model", "ac_predictor": {STEP_KEYS...}, "encoder_finetune": {STEP_KEYS...}} (module docstring)."""
    return {
        "device": str(device),
        "model": "vit_ac_tiny" if tiny else "vit_ac_giant",
        "ac_predictor": _measure(device, tiny, finetune=False),
        "encoder_finetune": _measure(device, tiny, finetune=True),
    }
