"""Native CPU kernels, compiled on first use with the machine's C compiler and loaded with ctypes.

Why compiled here rather than shipped: ``-march=native`` gives each machine its own vector width (AVX-512 where
present), and plain C with OpenMP needs no PyTorch headers, so a build takes about a second. The shared library is
cached under ``$VJEPA2_CACHE_DIR`` (default ``~/.cache/vjepa2_ros/native``), keyed by the source, the compiler, the
flags and the CPU, so a home directory shared by different machines never loads a build for another CPU. Where no
compiler works the callers keep their PyTorch paths (``library()`` returns None and says why once, in a warning).
``VJEPA2_NATIVE_KERNELS=0`` switches the kernels off.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import warnings
from functools import cache
from pathlib import Path

SOURCE = Path(__file__).with_name("frame_attention.c")
FLAGS = ("-O3", "-fopenmp", "-std=gnu11", "-shared", "-fPIC")
# What a build targets: "native" (every planner), or a named ISA level such as "x86-64-v3" (AVX2), which the tests
# build as well so that the AVX2 code path is exercised on AVX-512 machines too (docs/DESIGN.md, native kernels).
NATIVE_ARCH = "native"
BUILD_TIMEOUT_S = 120.0


class NativeLibrary:
    """The loaded kernels with their ctypes signatures."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lib = ctypes.CDLL(str(path))
        self._lib.frame_attention_vector_width.restype = ctypes.c_int
        self.vector_width = int(self._lib.frame_attention_vector_width())
        self.scratch_bytes = self._lib.frame_attention_scratch_bytes
        self.scratch_bytes.restype = ctypes.c_size_t
        self.scratch_bytes.argtypes = [ctypes.c_int] * 4
        args = [ctypes.c_void_p] * 6 + [ctypes.c_int] * 6 + [ctypes.c_float, ctypes.c_int]
        self.frame_attention = self._lib.frame_attention
        self.frame_attention_bf16 = self._lib.frame_attention_bf16
        for fn in (self.frame_attention, self.frame_attention_bf16):
            fn.restype = ctypes.c_int
            fn.argtypes = args


def cache_dir() -> Path:
    return Path(os.environ.get("VJEPA2_CACHE_DIR") or Path.home() / ".cache" / "vjepa2_ros") / "native"


def compiler() -> str | None:
    return os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")


def _cpu_signature() -> str:
    """The CPU's model and feature flags (what -march=native compiles for)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor()
    lines = [line for line in text.splitlines() if line.startswith(("model name", "flags", "Features", "CPU part"))]
    return "\n".join(sorted(set(lines)))


def _compiler_version(cc: str) -> str:
    try:
        return subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return ""


def build(cc: str, out_dir: Path, arch: str = NATIVE_ARCH) -> Path:
    """Compile the kernels for ``-march=arch`` into ``out_dir`` (atomically: concurrent builders never see a
    half-written file)."""
    flags = (*FLAGS, f"-march={arch}")
    source = SOURCE.read_bytes()
    key = hashlib.sha256(
        b"\0".join(
            [
                source,
                " ".join(flags).encode(),
                _compiler_version(cc).encode(),
                _cpu_signature().encode(),
                platform.machine().encode(),
            ]
        )
    ).hexdigest()[:16]
    target = out_dir / f"frame_attention-{key}.so"
    if target.exists():
        return target
    out_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=out_dir)
    os.close(fd)
    try:
        proc = subprocess.run(
            [cc, *flags, str(SOURCE), "-o", tmp], capture_output=True, text=True, timeout=BUILD_TIMEOUT_S
        )
        if proc.returncode:
            raise RuntimeError(f"{cc} failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


@cache
def library() -> NativeLibrary | None:
    """The native kernels, built on first call; None (with one warning saying why) where they cannot be used."""
    if os.environ.get("VJEPA2_NATIVE_KERNELS", "1") == "0":
        return None
    if platform.system() != "Linux":
        return None
    cc = compiler()
    if cc is None:
        warnings.warn("no C compiler found: native CPU kernels off, PyTorch kernels are used", stacklevel=2)
        return None
    fallback = Path(tempfile.gettempdir()) / f"vjepa2_ros-native-{os.getuid()}"  # e.g. a read-only home
    error: Exception | None = None
    for out_dir in (cache_dir(), fallback):
        try:
            return NativeLibrary(build(cc, out_dir))
        except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
            error = exc
    warnings.warn(f"native CPU kernels unavailable, PyTorch kernels are used: {error}", stacklevel=2)
    return None
