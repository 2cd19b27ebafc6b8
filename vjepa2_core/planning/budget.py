"""What a CEM budget costs on a given world model, so a request that cannot fit is refused before it starts.

A rollout's memory grows with samples x horizon x tokens per frame x predictor width x depth (the K/V cache): the
ViT-g AC predictor at the reference budget (400 samples, horizon 2) needs ~19 GiB of K/V in bf16. The samplers
therefore score an iteration's samples in chunks (`chunk_samples`) sized so that one chunk fits the memory a plan
may use; `plan_cost` estimates a plan's peak with that chunking (so memory bounds the chunk, not the samples) and
its time (token-frames, which chunking does not change). `plan_budget_refusal` is the one check of "may this budget
run on this world model here" (the node's configure, requests and live `cem.*` changes); `budget_refusal` turns a
cost into a one-line reason against the memory this process can have and the plan deadline; `PlanSpeed` remembers
the fastest search speed measured, the time bound of that check once a plan has run.
"""

from __future__ import annotations

import math
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

_BYTES = {torch.float32: 4, torch.float16: 2, torch.bfloat16: 2, torch.float64: 8}
# Live activations of one predictor layer beyond its K/V (q, attention output, MLP hidden at ratio 4, residual),
# in units of (samples x tokens x width); a deliberate over-estimate.
_ACTIVATION_FACTOR = 12
MEMORY_FRACTION = 0.5  # of the memory available now that one plan may use
_POPULATION_BYTES = 8 * 7 * 4  # per sample and step, held for all samples: candidates, noise and their temporaries


@dataclass(frozen=True)
class PlanCost:
    """Estimated peak bytes of one CEM iteration (its samples scored `chunk` at a time), predictor token-frames
    of the whole search (a time unit) and the chunk (samples per rollout; 0: not even one sample fits)."""

    peak_bytes: int
    token_frames: int
    chunk: int = 0


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
    nbytes = 2 if getattr(world_model, "precision", None) == "bf16" else _BYTES.get(param.dtype, 4)
    return tokens + 2, width, depth, enc_width, nbytes


def rollout_bytes_per_sample(world_model: Any, horizon: int) -> int:
    """Peak bytes one sample adds to a rollout of `horizon` steps (and its energy) on `world_model`."""
    tokens, width, depth, enc_width, nbytes = _model_dims(world_model)
    context = horizon * tokens  # every frame of the rollout is cached and attended to
    kv_cache = context * width * 2 * depth * nbytes
    activations = tokens * width * _ACTIVATION_FACTOR * nbytes
    scores = tokens * context * 4  # attention weights of one layer, one new frame (math kernel)
    # predicted reps kept for the energy (float32): the per-step list, the stacked copy, the energy's difference
    frames = 3 * horizon * (tokens * enc_width * 4 + 7 * 8)
    return int(kv_cache + activations + scores + frames)


def chunk_samples(world_model: Any, horizon: int, samples: int, memory_limit: int | None) -> int:
    """Samples per rollout so that one rollout fits `memory_limit` bytes: `samples` when all fit (or no limit),
    else the largest even split of them that fits; 0 when not even one sample fits."""
    if memory_limit is None:
        return samples
    room = memory_limit - samples * horizon * _POPULATION_BYTES
    fits = max(0, room // rollout_bytes_per_sample(world_model, horizon))
    if fits >= samples or fits == 0:
        return min(fits, samples)
    return math.ceil(samples / math.ceil(samples / fits))  # balanced chunks, none larger than `fits`


def plan_cost(
    world_model: Any, horizon: int, samples: int, iterations: int, memory_limit: int | None = None
) -> PlanCost:
    """Cost of `iterations` CEM iterations of `samples` rollouts over `horizon` steps on `world_model`, scored in
    the chunks a plan under `memory_limit` bytes uses (None: all samples at once)."""
    chunk = chunk_samples(world_model, horizon, samples, memory_limit)
    per_sample = rollout_bytes_per_sample(world_model, horizon)
    peak = max(chunk, 1) * per_sample + samples * horizon * _POPULATION_BYTES
    tokens = _model_dims(world_model)[0]
    token_frames = iterations * samples * sum(h * tokens for h in range(1, horizon + 1))
    return PlanCost(peak_bytes=int(peak), token_frames=int(token_frames), chunk=chunk)


def plan_budget_refusal(
    world_model: Any,
    horizon: int,
    samples: int,
    iterations: int,
    seconds_per_token_frame: float | None = None,
    deadline: float | None = None,
) -> str | None:
    """Why a plan of this budget must not run on `world_model` now (None: it may): the check the planner node
    applies at configure, to every request and to live `cem.*` changes. Memory is checked against what a plan may
    use on the model's device (`available_bytes`), with the search's chunking; time once a speed was measured."""
    limit = available_bytes(world_model.device)
    cost = plan_cost(world_model, horizon, samples, iterations, limit)
    return budget_refusal(cost, limit, seconds_per_token_frame, deadline)


def available_bytes(device: torch.device | str) -> int:
    """Memory a plan may take now: a fraction of what the device can still give this process. On CUDA that is the
    free memory plus what PyTorch's caching allocator holds but no tensor uses (a previous plan's cache is ours
    to reuse); on the CPU the machine's available RAM."""
    device = torch.device(device)
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        cached = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
        return int((free + max(0, cached)) * MEMORY_FRACTION)
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


class PlanSpeed:
    """The fastest search speed measured on one world model, in seconds per predictor token-frame (`plan_cost`).

    The fastest, not the latest: a plan slowed by a busy machine must not make the node refuse budgets it can run.
    Before any plan was timed there is no speed, and only memory bounds a budget. Thread-safe.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.seconds_per_token_frame: float | None = None

    def record(self, world_model: Any, horizon: int, samples: int, iterations: int, search_seconds: float) -> float:
        """A search of this budget took `search_seconds` (encoding excluded); returns its speed."""
        cost = plan_cost(world_model, horizon, samples, iterations)
        speed = search_seconds / max(1, cost.token_frames)
        with self._lock:
            if self.seconds_per_token_frame is None or speed < self.seconds_per_token_frame:
                self.seconds_per_token_frame = speed
        return speed

    def refusal(
        self,
        world_model: Any,
        horizon: int,
        samples: int,
        iterations: int,
        deadline: float | None,
        measured: bool = True,
    ) -> str | None:
        """`plan_budget_refusal` at the fastest speed measured (`measured=False`: memory only)."""
        speed = self.seconds_per_token_frame if measured else None
        return plan_budget_refusal(world_model, horizon, samples, iterations, speed, deadline)
