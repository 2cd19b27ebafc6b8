"""What a CEM budget costs on a given world model, so a request that cannot fit is refused before it starts.

Per-field caps (horizon <= 31, samples <= 100000, ...) let through a product that asks for gigabytes: the CEM
search rolls every sample of an iteration through the AC predictor at once, so memory grows with
samples x horizon x tokens per frame x predictor width x depth (the K/V cache), and time with that times the
iterations. `plan_cost` estimates both from the model's own dimensions; `budget_refusal` turns the estimate into
a one-line reason against the memory this process can have and the plan deadline.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

_BYTES = {torch.float32: 4, torch.float16: 2, torch.bfloat16: 2, torch.float64: 8}
# Live activations of one predictor layer beyond its K/V (q, attention output, MLP hidden at ratio 4, residual),
# in units of (samples x tokens x width); a deliberate over-estimate.
_ACTIVATION_FACTOR = 12
MEMORY_FRACTION = 0.5  # of the memory available now that one plan may use


@dataclass(frozen=True)
class PlanCost:
    """Estimated peak bytes of one CEM iteration and predictor token-frames of the whole search (a time unit)."""

    peak_bytes: int
    token_frames: int


def _model_dims(world_model: Any) -> tuple[int, int, int, int, int]:
    """(tokens per frame incl. action/state tokens, predictor width, depth, encoder width, bytes per value)."""
    predictor = getattr(world_model, "predictor", None)
    tokens = int(world_model.tokens_per_frame)
    if predictor is None:  # the toy model: no transformer, representation-sized work
        width = int(getattr(world_model, "embed_dim", 1))
        return tokens, width, 1, width, 4
    param = next(predictor.parameters())
    width = int(getattr(predictor, "predictor_embed_dim", param.shape[-1]))
    depth = int(getattr(predictor, "depth", 1))
    enc_width = int(getattr(predictor, "embed_dim", width))
    return tokens + 2, width, depth, enc_width, _BYTES.get(param.dtype, 4)


def plan_cost(world_model: Any, horizon: int, samples: int, iterations: int) -> PlanCost:
    """Cost of `iterations` CEM iterations of `samples` rollouts over `horizon` steps on `world_model`."""
    tokens, width, depth, enc_width, nbytes = _model_dims(world_model)
    context = horizon * tokens  # every frame of the rollout is cached and attended to
    kv_cache = samples * context * width * 2 * depth * nbytes
    activations = samples * tokens * width * _ACTIVATION_FACTOR * nbytes
    scores = samples * tokens * context * 4  # attention weights of one layer, one new frame (math kernel)
    # predicted reps kept for the energy (float32): the per-step list, the stacked copy, the energy's difference
    frames = 3 * samples * horizon * (tokens * enc_width * 4 + 7 * 8)
    token_frames = iterations * samples * sum(h * tokens for h in range(1, horizon + 1))
    return PlanCost(peak_bytes=int(kv_cache + activations + scores + frames), token_frames=int(token_frames))


def available_bytes(device: torch.device | str) -> int:
    """Memory a plan may take now: a fraction of the free GPU memory, or of the machine's available RAM."""
    device = torch.device(device)
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free * MEMORY_FRACTION)
    return int(_ram_available() * MEMORY_FRACTION)


def _ram_available() -> int:
    """MemAvailable from /proc/meminfo (Linux), else free physical pages."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def budget_refusal(
    cost: PlanCost, memory_limit: int, seconds_per_token_frame: float | None = None, deadline: float | None = None
) -> str | None:
    """Why a plan of this cost must not start (None: it may), given memory and the measured speed, if known."""
    if cost.peak_bytes > memory_limit:
        return (
            f"budget needs about {cost.peak_bytes / 2**30:.2f} GiB per CEM iteration, more than the "
            f"{memory_limit / 2**30:.2f} GiB a plan may use here: lower samples or horizon"
        )
    if seconds_per_token_frame and deadline:
        expected = cost.token_frames * seconds_per_token_frame
        if expected > deadline:
            return (
                f"budget would take about {expected:.1f} s at the measured speed, more than the plan deadline "
                f"({deadline:g} s): lower samples, iterations or horizon"
            )
    return None
