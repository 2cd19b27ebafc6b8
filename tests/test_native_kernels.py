"""The native frame-attention kernel (RoPE, cache append, attention) equals the PyTorch path; its build is cached."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings

import pytest
import torch
import torch.nn.functional as F

from vjepa2_core.models import native
from vjepa2_core.models.ac_cache import ACCache
from vjepa2_core.models.cpu_inference import token_major_rope
from vjepa2_core.models.cpu_kernels import (
    frame_attention,
    onednn_bf16_available,
    reference_kernels,
    without_native_kernels,
)
from vjepa2_core.models.modules import apply_rope, rope_tables
from vjepa2_core.planning.world_model import WorldModel


def cpu_has(flag: str) -> bool:
    return flag in open("/proc/cpuinfo").read().split()


def test_the_library_builds_here_and_reports_its_vector_width():
    lib = native.library()
    assert lib is not None, "a C compiler is present, so the native kernels must build"
    assert lib.vector_width in (8, 16)
    assert lib.vector_width == (16 if cpu_has("avx512f") else 8)
    assert lib.path.is_file() and lib.path.parent == native.cache_dir()


@pytest.fixture(scope="module", params=[native.NATIVE_ARCH, "x86-64-v3"])
def kernel_build(request, tmp_path_factory) -> native.NativeLibrary:
    """Each build the equivalence tests run on: the planner's own (-march=native) and the AVX2 one (x86-64-v3), so
    the AVX2 code path is tested on every x86 CI machine class, AVX-512 ones included (the AVX-512 path, and the
    AVX512-BF16 rounding instruction, only where the CPU has them)."""
    if request.param == native.NATIVE_ARCH:
        return native.library()
    return native.NativeLibrary(native.build(native.compiler(), tmp_path_factory.mktemp("isa"), request.param))


def test_the_avx2_build_has_eight_lanes(tmp_path):
    assert native.NativeLibrary(native.build(native.compiler(), tmp_path, "x86-64-v3")).vector_width == 8


def step_inputs(B: int, N: int, H: int, D: int, past: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    qkv = torch.randn(B, N, 3, H, D, generator=g)
    pos = torch.randint(0, 9, (N, 3), generator=g).float()
    rotate = torch.rand(N, 3, generator=g) > 0.3
    rope = rope_tables(pos, D, torch.float32, rotate)
    cache = ACCache(depth=1, max_frames=None)
    if past:
        cache._extend(0, torch.randn(B, H, past, D, generator=g), torch.randn(B, H, past, D, generator=g))
        cache._commit(1, past)
    return qkv, rope, cache


def eager_step(qkv, rope, cache: ACCache):
    """The reference path of Attention.forward with a K/V hook: RoPE, append, SDPA, token-major output."""
    B, N, _, H, D = qkv.shape
    qk = apply_rope(qkv[:, :, :2], token_major_rope(rope))
    q, k, v = qk[:, :, 0].transpose(1, 2), qk[:, :, 1].transpose(1, 2), qkv[:, :, 2].transpose(1, 2)
    k, v = cache.layer(0)(k, v)
    return F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(B, N, H * D)


@pytest.mark.parametrize(
    "B,N,H,D,past",
    [
        (100, 66, 6, 32, 132),  # the 192-wide benchmark predictor, third step
        (3, 66, 6, 32, 0),
        (1, 1, 16, 64, 0),
        (5, 17, 2, 64, 40),
        (8, 7, 3, 48, 5),
        (4, 258, 2, 64, 258),  # the released predictor's frame (2 + 16 x 16 tokens), second step
    ],
)
def test_frame_attention_equals_rope_append_and_sdpa(B, N, H, D, past, kernel_build):
    qkv, rope, cache = step_inputs(B, N, H, D, past)
    twin = cache.clone()
    with torch.inference_mode():
        want = eager_step(qkv, rope, twin)
        got = frame_attention(qkv, rope, cache.layer(0), kernel_build)
    if D % kernel_build.vector_width:
        assert got is None and cache.keys[0].shape[2] == past  # left to PyTorch, cache untouched
        return
    assert got is not None and got.shape == (B, N, H * D)
    torch.testing.assert_close(got, want, atol=2e-6, rtol=1e-5)
    need = past + N  # the kernel appended this step's rotated keys and values after the cached ones
    torch.testing.assert_close(cache.keys[0][:, :, :need], twin.keys[0][:, :, :need], atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(cache.values[0][:, :, :need], twin.values[0][:, :, :need], atol=0, rtol=0)


def bf16_cache(cache: ACCache) -> ACCache:
    out = cache.clone()
    if out.keys[0] is not None:
        out.keys, out.values = [k.bfloat16() for k in out.keys], [v.bfloat16() for v in out.values]
    return out


@pytest.mark.parametrize(
    "B,N,H,D,past",
    [(100, 66, 6, 32, 132), (3, 66, 6, 32, 0), (5, 17, 2, 64, 40), (2, 258, 2, 64, 258), (1, 1, 2, 32, 0)],
)
def test_bf16_frame_attention_matches_the_pytorch_bf16_path(B, N, H, D, past, kernel_build):
    """bf16 qkv (bf16 autocast): bf16 cache and output, fp32 arithmetic inside, so no worse than PyTorch's path."""
    qkv, rope, cache = step_inputs(B, N, H, D, past)
    exact_cache, eager_cache, native_cache = cache.clone(), bf16_cache(cache), bf16_cache(cache)
    with torch.inference_mode():
        exact = eager_step(qkv.bfloat16().float(), rope, exact_cache)  # fp32 on the same rounded inputs
        eager = eager_step(qkv.bfloat16(), rope, eager_cache)
        got = frame_attention(qkv.bfloat16(), rope, native_cache.layer(0), kernel_build)
    assert got is not None and got.dtype == torch.bfloat16 and got.shape == (B, N, H * D)
    eager_error = (eager.float() - exact).abs().max().item()
    assert (got.float() - exact).abs().max().item() <= max(eager_error, 1e-2)
    need = past + N
    assert native_cache.keys[0].dtype == torch.bfloat16
    torch.testing.assert_close(native_cache.keys[0][:, :, :need], eager_cache.keys[0][:, :, :need], atol=0, rtol=8e-3)
    assert torch.equal(native_cache.values[0][:, :, :need], eager_cache.values[0][:, :, :need])


def test_frame_attention_is_repeatable_across_thread_counts():
    qkv, rope, cache = step_inputs(9, 66, 6, 32, 66)
    outs = []
    before = torch.get_num_threads()
    try:
        for threads in (1, 2, 1):
            torch.set_num_threads(threads)
            with torch.inference_mode():
                outs.append(frame_attention(qkv, rope, cache.clone().layer(0)))
    finally:
        torch.set_num_threads(before)
    assert torch.equal(outs[0], outs[1]) and torch.equal(outs[0], outs[2])


def test_frame_attention_leaves_long_contexts_to_sdpa():
    qkv, rope, cache = step_inputs(1, 256, 1, 16, 16384)  # scores of 256 x 16640 exceed the scratch bound
    with torch.inference_mode():
        assert frame_attention(qkv, rope, cache.layer(0)) is None
    assert cache.keys[0].shape[2] == 16384


def test_frame_attention_steps_aside_for_grad_fp16_and_reference_kernels():
    qkv, rope, cache = step_inputs(4, 10, 2, 32, 10)
    assert frame_attention(qkv.half(), rope, cache.layer(0)) is None
    assert frame_attention(qkv.requires_grad_(), rope, cache.layer(0)) is None
    with torch.inference_mode(), reference_kernels():
        assert frame_attention(qkv.detach(), rope, cache.layer(0)) is None
    with torch.inference_mode(), without_native_kernels():
        assert frame_attention(qkv.detach(), rope, cache.layer(0)) is None
    with torch.inference_mode():
        assert frame_attention(qkv.detach(), rope, cache.clone().layer(0)) is not None  # switched on again
    assert cache.keys[0].shape[2] == 10  # nothing was reserved or written
    with torch.inference_mode():  # a plain callable K/V hook (no reserve) keeps the PyTorch path
        assert frame_attention(qkv.detach(), rope, lambda k, v: (k, v)) is None


def test_frame_attention_grows_a_cache_view_without_touching_its_source():
    qkv, rope, cache = step_inputs(1, 12, 2, 32, 12)
    source = cache.keys[0].clone()
    view = cache.expand(5)  # batch-1 context shared by 5 samples, as in the planner
    with torch.inference_mode():
        got = frame_attention(qkv.expand(5, -1, -1, -1, -1), rope, view.layer(0))
        want = eager_step(qkv.expand(5, -1, -1, -1, -1), rope, cache.expand(5))
    torch.testing.assert_close(got, want, atol=2e-6, rtol=1e-5)
    assert torch.equal(cache.keys[0], source)


def test_world_model_rollout_on_the_native_kernel_equals_the_uncached_reference():
    wm = WorldModel.random("vit_ac_tiny", seed=3)
    torch.manual_seed(0)
    reps = torch.randn(1, wm.tokens_per_frame, wm.predictor.embed_dim)
    state, actions = torch.zeros(1, 7), torch.randn(20, 3, 7) * 0.05
    fast = wm.rollout(reps, state, actions)[0]
    with reference_kernels():
        ref = wm.rollout(reps, state, actions, cached=False)[0]
    torch.testing.assert_close(fast, ref, atol=1e-5, rtol=1e-5)


def test_bf16_world_model_rollout_on_the_native_kernel_matches_its_pytorch_path():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        wm = WorldModel.random("vit_ac_tiny", seed=3, precision="bf16")
    slow = [w for w in caught if "emulated and slower than fp32" in str(w.message)]
    assert len(slow) == (not onednn_bf16_available())  # said once, and only where the CPU lacks bf16 matmuls
    torch.manual_seed(0)
    reps = torch.randn(1, wm.tokens_per_frame, wm.predictor.embed_dim)
    state, actions = torch.zeros(1, 7), torch.randn(20, 3, 7) * 0.05
    fast = wm.rollout(reps, state, actions)[0]
    with without_native_kernels():
        eager = wm.rollout(reps, state, actions)[0]
    exact = WorldModel.random("vit_ac_tiny", seed=3).rollout(reps, state, actions)[0]
    assert fast.dtype == torch.float32 and torch.isfinite(fast).all()
    assert (fast - exact).abs().max() <= 1.5 * (eager - exact).abs().max() + 1e-2


def test_build_is_cached_by_content_and_a_broken_compiler_falls_back(tmp_path):
    fresh = native.build(native.compiler(), tmp_path / "fresh")  # a build from scratch, as on a new machine
    built_at = fresh.stat().st_mtime_ns
    assert native.build(native.compiler(), tmp_path / "fresh") == fresh  # same source, compiler, CPU: reused
    assert fresh.stat().st_mtime_ns == built_at and len(list((tmp_path / "fresh").iterdir())) == 1
    assert native.NativeLibrary(fresh).vector_width == native.library().vector_width
    script = (
        "import warnings, torch\n"
        "from vjepa2_core.models import native\n"
        "from vjepa2_core.planning.world_model import WorldModel\n"
        "with warnings.catch_warnings(record=True) as w:\n"
        "    warnings.simplefilter('always')\n"
        "    assert native.library() is None\n"
        "    wm = WorldModel.random('vit_ac_tiny', seed=3)\n"
        "    out = wm.rollout(torch.zeros(1, wm.tokens_per_frame, wm.predictor.embed_dim), torch.zeros(1, 7),"
        " torch.zeros(4, 2, 7))[0]\n"
        "assert torch.isfinite(out).all()\n"
        "print('|'.join(str(x.message) for x in w))\n"
    )
    env = {**os.environ, "CC": "false", "VJEPA2_CACHE_DIR": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "native CPU kernels unavailable" in proc.stdout
    env = {**os.environ, "VJEPA2_NATIVE_KERNELS": "0", "VJEPA2_CACHE_DIR": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert not list((tmp_path / "native").rglob("*.so"))  # switched off (or no compiler): nothing was built


def test_an_unwritable_cache_dir_falls_back_to_the_temp_dir(tmp_path):
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("a file where the cache directory should be")
    script = (
        "from vjepa2_core.models import native\n"
        "lib = native.library()\n"
        "assert lib is not None\n"
        "print(lib.path)\n"
    )
    env = {**os.environ, "VJEPA2_CACHE_DIR": str(blocker)}
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "vjepa2_ros-native-" in proc.stdout and str(blocker) not in proc.stdout
