"""Fast CPU inference kernels for the planner's rollouts: oneDNN linears on prepacked weights, chunked attention.

Why: through ``F.linear`` (MKL: weight re-laid-out per call, bias copied into the output first, GELU a separate
pass) the predictor's linear layers run at 90-150 GFLOP/s on this CPU; through oneDNN on a weight prepacked once,
bias and exact (erf) GELU in the GEMM's epilogue, at 160-195 GFLOP/s, equal to fp32 rounding. ``PackedLinear`` is an
``nn.Linear`` (same parameters, same state dict) that takes that path only where it is valid: fp32, or bf16 weights
under bf16 autocast, on the CPU with oneDNN and no autograd (gradient planners differentiate through F.linear); the
packed copy is rebuilt when the weight changes (load_state_dict, an optimiser step). ``small_attention`` replaces
SDPA for short unmasked inference attention. ``reference_kernels()`` switches both off (F.linear and SDPA, the
reference's kernels) so that benchmarks and tests compare the two in one process (bench/plan_bench.py). The
switches are context variables: a block switches them for its own thread (or task) only, so a planning worker
thread and the main thread never see each other's choice. ``cpu_inference.prepare_cpu_inference`` puts these
kernels into a model.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from functools import cache

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import native

_MIN_ROWS = 32  # measured: 1 row 0.4x, 16 rows 0.9x, 66 rows 1.1x, 256+ rows 1.1-1.8x of F.linear
_FAST = ContextVar("vjepa2_fast_cpu_kernels", default=True)  # off: F.linear and SDPA (reference_kernels())
_NATIVE = ContextVar("vjepa2_native_kernels", default=True)  # off: the PyTorch fast paths (without_native_kernels())


@cache
def onednn_linear_available() -> bool:
    """Whether this torch has the oneDNN CPU linear kernels (x86 builds do)."""
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


@cache
def onednn_bf16_available() -> bool:
    """Whether oneDNN runs bf16 here: it needs AVX-512 (BW/VL/DQ) or AVX-NE-CONVERT; AVX2-only CPUs lack both."""
    return onednn_linear_available() and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


@cache
def fused_gelu_pays() -> bool:
    """Whether oneDNN's erf-GELU epilogue beats the GEMM plus PyTorch's in-place GELU. Measured (fc1 of the 192-wide
    predictor, 6600 x 192 -> 768): on AVX-512 fused 11.8 ms vs 12.1 ms; on AVX2 (Zen 2) 22.8 ms vs 20.3 ms."""
    return torch.backends.cpu.get_cpu_capability() == "AVX512"


class PackedLinear(nn.Linear):
    """nn.Linear with a oneDNN inference path on a prepacked weight; ``forward(x, activation="gelu")`` fuses GELU."""

    def forward(self, x: Tensor, activation: str = "none") -> Tensor:
        dtype = self._fast_dtype(x)
        if dtype is None:
            y = F.linear(x, self.weight, self.bias)
            return F.gelu(y) if activation == "gelu" else y
        return self._onednn(x, dtype, activation)

    def _onednn(self, x: Tensor, dtype: torch.dtype, activation: str, residual: Tensor | None = None) -> Tensor:
        """oneDNN on the packed weight: GELU (exact erf) or a residual added in the epilogue."""
        x = x.to(dtype).contiguous()
        if residual is not None:
            return torch.ops.mkldnn._linear_pointwise.binary(
                x, residual.contiguous(), self._packed(x), self.bias, "add"
            )
        gelu_after = activation == "gelu" and not fused_gelu_pays()
        epilogue = "none" if gelu_after else activation
        algorithm = "none" if epilogue == "gelu" else ""  # oneDNN's name for the exact (erf) GELU
        y = torch.ops.mkldnn._linear_pointwise(x, self._packed(x), self.bias, epilogue, [], algorithm)
        return torch.ops.aten.gelu_(y) if gelu_after else y  # in place on the GEMM's fresh output: no autograd here

    def _fast_dtype(self, x: Tensor) -> torch.dtype | None:
        """The dtype F.linear would compute in where the oneDNN path gives the same result; None elsewhere."""
        if not _FAST.get() or x.device.type != "cpu" or not onednn_linear_available():
            return None
        if x.numel() < _MIN_ROWS * x.shape[-1]:  # a few rows: oneDNN's call overhead exceeds the GEMM
            return None
        if torch.is_grad_enabled() and (x.requires_grad or self.weight.requires_grad):
            return None
        if self.weight.is_inference():  # made under inference_mode: no version counter, in-place edits go unseen
            return None
        dtype = torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else x.dtype
        if dtype not in (torch.float32, torch.bfloat16) or self.weight.dtype != dtype:
            return None  # e.g. fp32 weights under bf16 autocast: F.linear casts them on every call
        if dtype == torch.bfloat16 and not onednn_bf16_available():
            return None
        if self.bias is not None and self.bias.dtype != dtype:
            return None
        return dtype

    def _packed(self, x: Tensor) -> Tensor:
        key = (self.weight.data_ptr(), self.weight._version)
        cached = self.__dict__.get("_packed_weight")
        if cached is not None and cached[0] == key:
            return cached[1]
        rows = max(1, x.numel() // max(1, x.shape[-1]))
        with torch.no_grad():
            packed = torch.ops.mkldnn._reorder_linear_weight(self.weight.detach(), rows)
        self.__dict__["_packed_weight"] = (key, packed)  # not a buffer: never saved, never moved by .to()
        return packed

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state.pop("_packed_weight", None)  # oneDNN tensors cannot be pickled or deep-copied; rebuilt on first use
        return state

    @classmethod
    def from_linear(cls, layer: nn.Linear) -> PackedLinear:
        """A PackedLinear sharing ``layer``'s parameters (no copy)."""
        out = cls.__new__(cls)
        nn.Module.__init__(out)
        out.in_features, out.out_features = layer.in_features, layer.out_features
        out.weight, out.bias = layer.weight, layer.bias
        return out


def pack_linears(module: nn.Module, max_bytes: int | None = None) -> tuple[int, int]:
    """Replace plain nn.Linear layers inside ``module`` by PackedLinears sharing their parameters.

    Each packed layer later holds a oneDNN copy of its weight (as large as the weight), so at most ``max_bytes`` of
    weights are packed, in module order (the rest stay plain). Returns (layers packed, weight bytes packed).
    """
    count, used = 0, 0
    for parent in module.modules():
        for name, child in list(parent.named_children()):
            if type(child) is not nn.Linear:
                continue
            size = child.weight.numel() * child.weight.element_size()
            if max_bytes is None or used + size <= max_bytes:
                setattr(parent, name, PackedLinear.from_linear(child))
                count, used = count + 1, used + size
    return count, used


def _fast_dtype(layer: nn.Module, x: Tensor) -> torch.dtype | None:
    return layer._fast_dtype(x) if isinstance(layer, PackedLinear) else None


def linear_gelu(layer: nn.Module, x: Tensor) -> Tensor | None:
    """gelu(layer(x)) in one fused pass where ``layer`` can do it; None where the caller must run the two steps."""
    dtype = _fast_dtype(layer, x)
    return None if dtype is None else layer._onednn(x, dtype, "gelu")


def linear_add(layer: nn.Module, x: Tensor, residual: Tensor) -> Tensor | None:
    """residual + layer(x) with the addition in the GEMM's epilogue (a block's residual connection: one pass over
    the activations fewer); None where the caller must add (not a packed inference layer, other dtype or shape)."""
    dtype = _fast_dtype(layer, x)
    if dtype is None or residual.dtype != dtype or x.shape[-1] != layer.in_features:
        return None  # (a wrong width gets F.linear's clear error from the caller's path)
    if residual.shape != (*x.shape[:-1], layer.out_features):
        return None
    return layer._onednn(x, dtype, "none", residual)


@contextmanager
def _switched_off(switch: ContextVar[bool]) -> Iterator[None]:
    token = switch.set(False)
    try:
        yield
    finally:
        switch.reset(token)


def reference_kernels():
    """Inside this block (this thread or task only) PackedLinear runs F.linear and attention runs SDPA, the
    reference's kernels."""
    return _switched_off(_FAST)


def without_native_kernels():
    """Inside this block (this thread or task only) the native C kernels are not used (the PyTorch fast paths are)."""
    return _switched_off(_NATIVE)


def fast_kernels_enabled() -> bool:
    """Whether the fast CPU kernels may run here (False inside ``reference_kernels()`` of this thread or task)."""
    return _FAST.get()


_CHUNK_SCORES = 1 << 18  # floats of attention scores per chunk of small_attention (1 MiB: stays in a 2 MiB L2)


def small_attention(q: Tensor, k: Tensor, v: Tensor) -> Tensor | None:
    """softmax(q k^T / sqrt(d)) v for short inference attention on the CPU as batched GEMMs over L2-sized chunks.

    Why: at the planner's shapes (66 queries of head dim 32 against 66-200 cached keys, hundreds of heads) the CPU
    flash kernel runs at 35-50 GFLOP/s; bmm on chunks whose scores fit in L2 runs 1.3-1.6x faster (bench/
    plan_bench.py). Returns [B, H, N, d] as a transposed view of a token-major buffer (so the caller's
    ``transpose(1, 2).reshape`` is free), or None where SDPA should run (GPU, autograd, masks, long sequences,
    fewer than 16 heads in all: 0.4-0.7x there).
    """
    if not _FAST.get() or q.device.type != "cpu" or q.dtype != torch.float32 or q.ndim != 4:
        return None
    if torch.is_grad_enabled() and (q.requires_grad or k.requires_grad or v.requires_grad):
        return None
    B, H, N, D = q.shape
    L = k.shape[2]
    if k.shape != (B, H, L, D) or v.shape[:3] != (B, H, L) or k.dtype != q.dtype or v.dtype != q.dtype or L == 0:
        return None  # broadcast batches, mixed dtypes, no keys: SDPA's rules apply
    if N > 128 or L > 1024 or B * H < 16:  # measured: SDPA wins on long queries (encoders) and on a few heads
        return None
    out = q.new_empty(B, N, H, D)
    step = max(1, _CHUNK_SCORES // (H * N * L))
    for i in range(0, B, step):
        j = min(B, i + step)
        scores = torch.bmm((q[i:j] * D**-0.5).flatten(0, 1), k[i:j].flatten(0, 1).transpose(1, 2))
        mixed = torch.bmm(scores.softmax(-1), v[i:j].flatten(0, 1))
        out[i:j] = mixed.view(j - i, H, N, D).transpose(1, 2)
    return out.transpose(1, 2)


_MAX_SCRATCH_BYTES = 16 << 20  # per thread: q^T of a task's heads and the scores of one head (native kernel)


def frame_attention(
    qkv: Tensor, rope: tuple[Tensor, Tensor], cache_layer, lib: native.NativeLibrary | None = None
) -> Tensor | None:
    """One cached rollout step's attention in the native kernel: RoPE on q/k, the new keys/values appended to
    ``cache_layer``'s buffers, attention over all cached tokens. Returns [B, N, heads * head_dim] (token-major,
    ready for the output projection), or None where the caller must run the PyTorch path (the cache is untouched).

    ``qkv`` is the fused projection [B, N, 3, heads, head_dim]; ``rope`` the fp32 (cos, sin) tables [N, head_dim];
    the kernel runs for CPU inference with head_dim a multiple of the machine's vector width, on fp32 or bf16 qkv
    (bf16 autocast: the cache and the output are bf16 too, the arithmetic fp32).
    """
    if not (_FAST.get() and _NATIVE.get()) or qkv.device.type != "cpu" or qkv.ndim != 5:
        return None
    if qkv.dtype not in (torch.float32, torch.bfloat16):
        return None
    if torch.is_grad_enabled() and qkv.requires_grad:
        return None
    B, N, three, H, D = qkv.shape
    cos, sin = rope
    if three != 3 or cos.shape != (N, D) or sin.shape != (N, D) or {cos.dtype, sin.dtype} != {torch.float32}:
        return None
    if not hasattr(cache_layer, "reserve"):
        return None  # a plain K/V hook: the caller appends
    lib = lib or native.library()  # (tests hand in a build for another ISA level)
    if lib is None or D % lib.vector_width:
        return None
    past = cache_layer.length
    if lib.scratch_bytes(H, N, past + N, D) > _MAX_SCRATCH_BYTES:
        return None  # long contexts: SDPA's tiled kernels suit them better than one scores block per head
    keys, values = cache_layer.reserve(qkv[:, :, 1].transpose(1, 2))
    qkv, cos, sin = qkv.contiguous(), cos.contiguous(), sin.contiguous()
    out = qkv.new_empty(B, N, H * D)
    args = [
        qkv.data_ptr(), cos.data_ptr(), sin.data_ptr(), keys.data_ptr(), values.data_ptr(), out.data_ptr(),
        B, N, H, D, keys.shape[2], past, D**-0.5, torch.get_num_threads(),
    ]  # fmt: skip
    rc = (lib.frame_attention if qkv.dtype == torch.float32 else lib.frame_attention_bf16)(*args)
    if rc:
        raise RuntimeError(f"native frame_attention failed ({rc}) for B={B} N={N} heads={H} head_dim={D}")
    return out
