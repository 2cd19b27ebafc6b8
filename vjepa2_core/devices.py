"""Check a torch device name before any model is built on it, so a wrong device is a configuration error.

Without this, `device: cuda` on a CPU-only torch first fails deep inside `Module.to` with "Torch not compiled with
CUDA enabled" (an AssertionError traceback); the node, the tools and the training scripts call `check_device`
while they validate their settings and report the reason in one line instead.
"""

from __future__ import annotations

import torch


class DeviceError(ValueError):
    """The device name is not a torch device, or this machine's torch cannot use it."""


def check_device(name: str | torch.device) -> torch.device:
    """`name` as a torch.device that this process can allocate on; DeviceError saying why not otherwise."""
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError, ValueError) as exc:
        raise DeviceError(f"{name!r} is not a torch device ({exc}); use cpu, cuda, cuda:N or mps") from None
    if device.type == "cpu":
        return device
    if device.type == "cuda":
        if not torch.backends.cuda.is_built():
            raise DeviceError(f"device {name!r}: this torch ({torch.__version__}) was built without CUDA; use cpu")
        count = torch.cuda.device_count()
        if count == 0:
            raise DeviceError(f"device {name!r}: torch has CUDA but no GPU is visible (CUDA_VISIBLE_DEVICES?)")
        if device.index is not None and device.index >= count:
            raise DeviceError(f"device {name!r}: only {count} GPU(s) visible (cuda:0..cuda:{count - 1})")
        return device
    if device.type == "mps":
        if not torch.backends.mps.is_available():
            raise DeviceError(f"device {name!r}: MPS is not available on this machine; use cpu")
        return device
    raise DeviceError(f"device {name!r}: type {device.type!r} is not supported; use cpu, cuda, cuda:N or mps")


# glibc mallopt parameters (malloc.h; values are C ints); the mmap threshold cannot exceed 32 MiB on 64-bit glibc
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_MMAP_THRESHOLD, _TRIM_THRESHOLD = 32 << 20, 2**31 - 1
_CPU_ALLOCATOR_TUNED: bool | None = None


def keep_freed_cpu_memory() -> bool:
    """Make glibc keep freed blocks of up to 32 MiB for reuse instead of returning them to the kernel.

    Why: by default glibc serves and frees blocks of a few MiB and more with mmap/munmap, so every rollout step's
    fresh activations (20 MB for 100 samples of the 192-wide predictor) are page-faulted in and zeroed by the
    kernel again: ~300k minor faults and ~1 s of system time in a 4-5 s plan on this CPU. With the heap kept,
    steady-state planning faults no pages at all. The process then holds on to its peak heap (what it needed
    once, no more). Process-wide and idempotent; False where the C library is not glibc.
    """
    global _CPU_ALLOCATOR_TUNED
    if _CPU_ALLOCATOR_TUNED is None:
        try:
            import ctypes

            libc = ctypes.CDLL("libc.so.6")
            ok = libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD) == 1
            _CPU_ALLOCATOR_TUNED = ok and libc.mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD) == 1
        except (OSError, AttributeError):
            _CPU_ALLOCATOR_TUNED = False
    return _CPU_ALLOCATOR_TUNED


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA only; a no-op elsewhere), so a timer reads finished work."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
