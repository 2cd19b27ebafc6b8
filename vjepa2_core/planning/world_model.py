"""The V-JEPA 2-AC world model used for planning: image encoding and batched action-conditioned rollouts.

Encoding follows the reference planning wrapper: AC transform, each image as a 2-frame tubelet, frozen encoder,
layer norm without affine. Rollouts use the predictor's incremental K/V cache so each planning step runs the
predictor on one new frame instead of re-running the whole history (the uncached path is kept for checks and
benchmarks: it is the reference's recomputation). Pose updates use `compose_pose` on the device.
"""

from __future__ import annotations

import hashlib
import tempfile
import time
import warnings
from collections import OrderedDict
from collections.abc import Sequence
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vjepa2_core import devices
from vjepa2_core.data.transforms import ac_preprocess
from vjepa2_core.models.conditioning import Conditioning
from vjepa2_core.models.cpu_inference import CPUInference, prepare_cpu_inference
from vjepa2_core.models.cpu_kernels import onednn_bf16_available
from vjepa2_core.planning.budget import available_bytes
from vjepa2_core.planning.poses import compose_pose

PACKED_WEIGHTS_FRACTION = 0.25  # of the RAM a plan may use (budget.available_bytes) that packed weight copies may take

ImageBatch = np.ndarray | torch.Tensor | Sequence[np.ndarray | torch.Tensor]


# "auto" (the default) is bf16 on a CUDA GPU with bf16 matmuls (tensor cores: about 2x fp32+TF32, half the K/V
# memory) and fp32 everywhere else (the reference's numerics; CPUs without AMX emulate bf16 slowly). fp32 on CUDA
# runs its matmuls in TF32. bf16 is also worth asking for on CPUs with AMX (oneDNN's bf16 GEMMs, the native kernel).
PRECISIONS = ("auto", "fp32", "bf16")
DEFAULT_PRECISION = "auto"


def cuda_bf16_matmuls(device: torch.device) -> bool:
    """True when the CUDA GPU `device` multiplies bf16 natively (compute capability 8.0+, not emulated)."""
    return torch.cuda.get_device_capability(device)[0] >= 8 and torch.cuda.is_bf16_supported(including_emulation=False)


def resolve_precision(precision: str, device: str | torch.device) -> str:
    """The precision a world model on `device` runs in: "fp32" or "bf16" ("auto" picks); ValueError if impossible."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    device = torch.device(device)
    bf16_gpu = device.type == "cuda" and cuda_bf16_matmuls(device)
    if precision == "auto":
        return "bf16" if bf16_gpu else "fp32"
    if precision == "bf16" and device.type == "cuda" and not bf16_gpu:
        name = torch.cuda.get_device_name(device)
        raise ValueError(
            f"precision bf16: {name} ({device}) has no bf16 matmuls (they need compute capability 8.0+, Ampere or "
            f"newer); use precision fp32 or auto"
        )
    return precision


class WorldModel:
    """Frozen encoder + AC predictor with the planner-facing API `encode`, `encode_goal` and `rollout`.

    `precision="bf16"` runs both under bf16 autocast with their matmul weights converted to bf16 in place (GPUs,
    and CPUs with AMX/AVX-512 BF16); norms, representations between steps and energies stay fp32. `"auto"` is bf16
    on a CUDA GPU that has bf16 matmuls, fp32 elsewhere (`self.precision` holds the resolved one). fp32 on CUDA
    runs its matmuls in TF32 (`tf32=False`: full fp32, for numerical checks), only inside this model's calls.
    """

    def __init__(
        self,
        encoder: nn.Module,
        predictor: nn.Module,
        crop_size: int = 256,
        device: str | torch.device = "cpu",
        normalize_reps: bool = True,
        goal_cache_size: int = 8,
        conditioning: Conditioning | None = None,
        precision: str = DEFAULT_PRECISION,
        tf32: bool = True,
    ):
        self.device = torch.device(device)
        self.precision = precision = resolve_precision(precision, self.device)
        self.tf32 = tf32 and self.device.type == "cuda" and precision == "fp32"
        self.encoder = encoder.to(self.device).eval().requires_grad_(False)
        self.predictor = predictor.to(self.device).eval().requires_grad_(False)
        if precision == "bf16":  # in place: autocast re-casts frozen fp32 weights on every call, bf16 ones never
            for module in (*self.encoder.modules(), *self.predictor.modules()):
                if isinstance(module, nn.Linear | nn.Conv2d | nn.Conv3d):
                    module.to(torch.bfloat16)
        self.cpu_inference: CPUInference | None = None  # what the CPU fast path's substitution did (CPU only)
        if self.device.type == "cpu":
            if precision == "bf16" and not onednn_bf16_available():
                warnings.warn(
                    "precision bf16 on a CPU without oneDNN's bf16 matmuls (they need AVX-512 or AVX-NE-CONVERT): "
                    "they are emulated and slower than fp32; use precision fp32 here",
                    stacklevel=2,
                )
            budget = int(available_bytes("cpu") * PACKED_WEIGHTS_FRACTION)  # packed copies double the weights
            # the fast path swapped in: fused blocks, packed GEMMs (the rollout's hot path first), the C kernel
            self.cpu_inference = prepare_cpu_inference(self.predictor, self.encoder, packed_weight_bytes=budget)
        self.crop_size = int(crop_size)
        self.normalize_reps = normalize_reps
        self.conditioning = conditioning or Conditioning()  # maps only the predictor's inputs; CEM stays physical
        # on the device once (as tensors on it name it, e.g. cuda:0): no host copy in any rollout step
        self.conditioning.constants(torch.empty(0, device=self.device).device)
        self.goal_cache_size = goal_cache_size
        self._goal_cache: OrderedDict[str, torch.Tensor] = OrderedDict()
        patch = int(getattr(encoder, "patch_size", 16))
        if self.crop_size % patch:
            raise ValueError(f"crop_size {crop_size} is not a multiple of the encoder patch size {patch}")
        self.tokens_per_frame = (self.crop_size // patch) ** 2
        expected = getattr(predictor, "tokens_per_frame", self.tokens_per_frame)
        if expected != self.tokens_per_frame:
            raise ValueError(
                f"crop_size {crop_size} gives {self.tokens_per_frame} tokens per frame but the predictor was built "
                f"for {expected}: use the predictor's img_size as crop_size"
            )
        self.profile = False
        self.stats: dict[str, float] = {}
        self.reset_stats()

    @classmethod
    def from_checkpoint(
        cls,
        name_or_path: str,
        checkpoint: Any = None,
        device: str | torch.device = "cpu",
        crop_size: int | None = None,
        **kwargs: Any,
    ) -> WorldModel:
        """Load (encoder, AC predictor) with `vjepa2_core.hub`; the crop defaults to the predictor's img_size and
        the action/state normaliser comes from model_config["conditioning"] (identity when absent)."""
        from vjepa2_core.hub import load_ac_model, resolve_checkpoint
        from vjepa2_core.hub.registry import ALIASES, MODELS

        config, ckpt, _ = resolve_checkpoint(name_or_path, checkpoint)
        name = name_or_path if name_or_path in MODELS or name_or_path in ALIASES else None
        encoder, predictor = load_ac_model(name, checkpoint=ckpt, device=device)
        if crop_size is None:
            size = config["predictor"].get("img_size", config["encoder"].get("img_size", 256))
            crop_size = size[0] if isinstance(size, (tuple, list)) else int(size)
        kwargs.setdefault("conditioning", Conditioning.from_config(config))
        return cls(encoder, predictor, crop_size=crop_size, device=device, **kwargs)

    @classmethod
    def random(cls, name: str = "vit_ac_tiny", seed: int = 0, device: str | torch.device = "cpu", **kwargs: Any):
        """A world model with random weights of registry architecture `name`, written to and loaded from a real
        checkpoint file (demos, self-checks and tests; nothing is downloaded)."""
        from vjepa2_core.hub import make_random_checkpoint

        with tempfile.TemporaryDirectory(prefix="vjepa2_random_") as tmp:
            path = make_random_checkpoint(Path(tmp) / f"{name}.pt", name, seed=seed)
            return cls.from_checkpoint(str(path), device=device, **kwargs)

    # -- encoding

    @contextmanager
    def _autocast(self):
        """bf16 autocast of encoder and predictor (`precision="bf16"`: bf16 matmul weights, fp32 norms/energies);
        TF32 matmuls for fp32 on CUDA, set for this call only (the process-wide setting is restored after it)."""
        bf16 = self.precision == "bf16"
        with torch.autocast(self.device.type, dtype=torch.bfloat16) if bf16 else nullcontext():
            if not self.tf32:
                yield
                return
            before = torch.get_float32_matmul_precision()
            torch.set_float32_matmul_precision("high")
            try:
                yield
            finally:
                torch.set_float32_matmul_precision(before)

    def _input_dtype(self, module: nn.Module) -> torch.dtype:
        """fp32 under bf16 autocast (it casts for the matmuls), else the weights' dtype (fp32, or a half model)."""
        return torch.float32 if self.precision == "bf16" else next(module.parameters()).dtype

    def _norm(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float()
        return F.layer_norm(x, (x.shape[-1],)) if self.normalize_reps else x

    @torch.inference_mode()
    def encode(self, images: ImageBatch) -> torch.Tensor:
        """uint8 RGB image [H,W,3], batch [B,H,W,3] or a list of images (any sizes) -> reps [B, tokens, D]."""
        frames = _as_image_list(images)
        clips = [ac_preprocess(f[None], self.crop_size, device=self.device) for f in frames]  # [3,1,crop,crop] each
        clip = torch.stack(clips).expand(-1, -1, 2, -1, -1)  # each frame as a 2-frame tubelet
        dtype = self._input_dtype(self.encoder)
        with self._timed("encoder_s"), self._autocast():
            reps = self.encoder(clip.to(dtype))
        return self._norm(reps)

    def encode_goal(self, image: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Encode one goal image [H,W,3] -> [1, tokens, D], cached by content (a goal is encoded once)."""
        frame = _as_image_list(image)
        if len(frame) != 1:
            raise ValueError(f"encode_goal takes one image, got {len(frame)}")
        array = np.ascontiguousarray(frame[0].cpu().numpy() if isinstance(frame[0], torch.Tensor) else frame[0])
        key = f"{array.shape}:{hashlib.blake2b(array.tobytes(), digest_size=16).hexdigest()}"
        if key in self._goal_cache:
            self._goal_cache.move_to_end(key)
            return self._goal_cache[key]
        rep = self.encode(array)
        self._goal_cache[key] = rep
        while len(self._goal_cache) > self.goal_cache_size:
            self._goal_cache.popitem(last=False)
        return rep

    # -- rollout

    @torch.inference_mode()
    def rollout(
        self,
        reps: torch.Tensor,
        states: torch.Tensor,
        actions: torch.Tensor,
        cached: bool = True,
        last_only: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(reps [B|1,N,D], states [B|1,7], actions [B,H,7]) -> (predicted reps [B,H,N,D], states [B,H,7]).

        Frame h+1 is predicted from frames 0..h (the first one encoded, the rest predicted and layer-normed) with
        actions/states 0..h, like the reference rollout. A batch-1 rep/state is shared by all B rows without copies.
        `last_only` returns only the final predicted frame ([B,1,N,D]) to save memory.
        """
        return self._rollout(reps, states, actions, cached, last_only)

    def rollout_differentiable(
        self,
        reps: torch.Tensor,
        states: torch.Tensor,
        actions: torch.Tensor,
        cached: bool = True,
        last_only: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """`rollout` with autograd on (gradient planners differentiate the energy with respect to `actions`)."""
        with torch.inference_mode(False), torch.enable_grad():
            return self._rollout(reps.clone(), states.clone(), actions, cached, last_only)

    def _rollout(self, reps, states, actions, cached: bool, last_only: bool) -> tuple[torch.Tensor, torch.Tensor]:
        actions, reps, states = self._check_rollout_inputs(reps, states, actions)
        batch, horizon = actions.shape[:2]
        dtype = self._input_dtype(self.predictor)
        x = reps.to(dtype).expand(batch, -1, -1)
        state = states.expand(batch, 7)
        cond = self.conditioning
        actions_p = cond.actions(actions).to(dtype)
        frames, out_states = [], []
        cache = self.predictor.new_cache(max_frames=horizon) if cached else None
        history_x, history_s = [x], [state]
        for h in range(horizon):
            with self._timed("predictor_s"), self._autocast():
                if cached:
                    out = self.predictor.forward_frame(x, actions_p[:, h], cond.states(state).to(dtype), cache)
                else:
                    seq = torch.cat(history_x, dim=1)
                    out = self.predictor(seq, actions_p[:, : h + 1], cond.states(torch.stack(history_s, 1)).to(dtype))
                    out = out[:, -self.tokens_per_frame :]
            x = self._norm(out).to(dtype)
            state = compose_pose(state, actions[:, h])
            if not cached:
                history_x.append(x)
                history_s.append(state)
            if not last_only or h == horizon - 1:
                frames.append(x.float())
            out_states.append(state)
        return torch.stack(frames, dim=1), torch.stack(out_states, dim=1)

    def _check_rollout_inputs(self, reps: torch.Tensor, states: torch.Tensor, actions: torch.Tensor):
        if actions.ndim != 3 or actions.shape[-1] != 7 or actions.shape[1] < 1:
            raise ValueError(f"actions must be [B,H,7] with H >= 1, got {tuple(actions.shape)}")
        if reps.ndim != 3 or reps.shape[1] != self.tokens_per_frame:
            raise ValueError(f"reps must be [B,{self.tokens_per_frame},D], got {tuple(reps.shape)}")
        states = states.reshape(-1, 7) if states.ndim == 1 else states
        if states.ndim != 2 or states.shape[-1] != 7:
            raise ValueError(f"states must be [B,7], got {tuple(states.shape)}")
        batch = actions.shape[0]
        for name, t in (("reps", reps), ("states", states)):
            if t.shape[0] not in (1, batch):
                raise ValueError(f"{name} batch {t.shape[0]} must be 1 or match the actions batch {batch}")
        dev = self.device
        return actions.to(dev, torch.float32), reps.to(dev), states.to(dev, torch.float32)

    # -- profiling (the benchmark's time split)

    def reset_stats(self) -> None:
        self.stats = {"encoder_s": 0.0, "predictor_s": 0.0, "predictor_calls": 0}

    @contextmanager
    def _timed(self, key: str):
        if not self.profile:
            yield
            return
        devices.synchronize(self.device)
        start = time.perf_counter()
        yield
        devices.synchronize(self.device)
        self.stats[key] += time.perf_counter() - start
        if key == "predictor_s":
            self.stats["predictor_calls"] += 1


def _as_image_list(images: ImageBatch) -> list[np.ndarray | torch.Tensor]:
    """Validate uint8 RGB images and return them as a list of [H,W,3] arrays/tensors."""
    if isinstance(images, (np.ndarray, torch.Tensor)):
        if images.ndim == 3:
            images = [images]
        elif images.ndim == 4:
            images = list(images)
        else:
            raise ValueError(f"expected an image [H,W,3] or a batch [B,H,W,3], got shape {tuple(images.shape)}")
    images = list(images)
    if not images:
        raise ValueError("no images given")
    for i, img in enumerate(images):
        if not isinstance(img, (np.ndarray, torch.Tensor)):
            raise TypeError(f"image {i} is a {type(img).__name__}, expected a numpy array or torch tensor")
        if img.ndim != 3 or img.shape[-1] != 3 or min(img.shape[:2]) < 1:
            raise ValueError(f"image {i} must be RGB [H,W,3], got shape {tuple(img.shape)}")
        if img.dtype not in (np.uint8, torch.uint8):
            raise ValueError(f"image {i} must be uint8 (0..255), got {img.dtype}")
    return images
