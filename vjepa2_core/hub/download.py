"""Released weights in the hub checkpoint folder: find them, or download them there atomically.

A download streams into a hidden ``.<name>.*.partial`` file in the target folder and is renamed to its final name
only after the length (the server's Content-Length and the registry size) and the registry SHA-256 check out, so
an interrupted or corrupt download never sits under a name the loaders look for. Nothing is fetched when
``download=False`` or ``$VJEPA2_OFFLINE`` is set: the error then names the file, the folders and the URL.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO

import torch
from tqdm import tqdm

from .files import CheckpointError
from .registry import ModelSpec

__all__ = ["OFFLINE_ENV", "checkpoint_search_dirs", "download_file", "file_sha256", "find_checkpoint", "is_offline"]

OFFLINE_ENV = "VJEPA2_OFFLINE"
_CHUNK = 1 << 20


def checkpoint_search_dirs() -> list[Path]:
    """Where released weights are looked for: ``$VJEPA2_CHECKPOINT_DIR`` (os.pathsep-separated), then torch hub's
    checkpoint folder. Downloads go to the first."""
    dirs = [Path(p).expanduser() for p in os.environ.get("VJEPA2_CHECKPOINT_DIR", "").split(os.pathsep) if p]
    return dirs + [Path(torch.hub.get_dir()) / "checkpoints"]


def is_offline() -> bool:
    return os.environ.get(OFFLINE_ENV, "").strip().lower() not in ("", "0", "false", "no")


def _open_url(url: str) -> IO[bytes]:
    """The response stream for ``url`` (http(s) or file://); a seam for tests that cut a download short."""
    return urllib.request.urlopen(urllib.request.Request(url, headers={"User-Agent": "vjepa2_ros"}), timeout=60)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def download_file(
    url: str, dest: str | os.PathLike, sha256: str | None = None, size: int | None = None, progress: bool = True
) -> Path:
    """Fetch ``url`` to ``dest`` through a temp file + rename, with a tqdm bar; checks length and hash first."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".partial")
    tmp, digest, done = Path(tmp_name), hashlib.sha256(), 0
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                response = _open_url(url)
            except (urllib.error.URLError, OSError, ValueError) as exc:
                raise CheckpointError(f"cannot download {url}: {exc}; nothing was written to {dest}") from exc
            with response:
                announced = response.headers.get("Content-Length") if hasattr(response, "headers") else None
                total = int(announced) if announced else size
                bar_kw = {"unit": "B", "unit_scale": True, "unit_divisor": 1024, "disable": not progress}
                with tqdm(total=total, desc=dest.name, **bar_kw) as bar:
                    try:
                        while chunk := response.read(_CHUNK):
                            out.write(chunk)
                            digest.update(chunk)
                            done += len(chunk)
                            bar.update(len(chunk))
                    except OSError as exc:  # dropped connection, timeout
                        raise CheckpointError(f"download of {url} interrupted after {done} bytes: {exc}") from exc
            out.flush()
            os.fsync(out.fileno())
        for expected, what in ((total, "announced"), (size, "registered")):
            if expected is not None and done != expected:
                raise CheckpointError(f"download of {url} is incomplete: {done} of {expected} {what} bytes")
        if sha256 and digest.hexdigest() != sha256.lower():
            raise CheckpointError(f"download of {url} has SHA-256 {digest.hexdigest()}, expected {sha256.lower()}")
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def find_checkpoint(spec: ModelSpec, download: bool = False, progress: bool = True) -> Path:
    """Local path of ``spec``'s weights; downloaded into the first search folder when absent and ``download``."""
    if spec.url is None:
        raise CheckpointError(
            f"{spec.name!r} is a test architecture without released weights: pass checkpoint=PATH, e.g. one written "
            f"by vjepa2_core.hub.make_random_checkpoint(PATH, {spec.name!r})"
        )
    file_name = spec.file_name or spec.url.rsplit("/", 1)[-1]
    dirs = checkpoint_search_dirs()
    for folder in dirs:
        path = folder / file_name
        if path.is_file():
            if spec.size is not None and path.stat().st_size != spec.size:
                raise CheckpointError(
                    f"{path} has {path.stat().st_size} bytes, the registry says {spec.size}: delete it (it is not "
                    f"the released file) and download {spec.url} again"
                )
            return path
    if not download or is_offline():
        why = f"${OFFLINE_ENV} is set" if download else "download=False"
        raise CheckpointError(
            f"weights for {spec.name!r} ({file_name}) not found in {', '.join(map(str, dirs))} and not downloaded "
            f"({why}): fetch {spec.url} into one of these folders (or set VJEPA2_CHECKPOINT_DIR), or pass "
            f"checkpoint=PATH"
        )
    return download_file(spec.url, dirs[0] / file_name, sha256=spec.sha256, size=spec.size, progress=progress)


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of a checkpoint file (or of every file of a directory, in name order), for provenance records."""
    path = Path(path)
    if not path.is_dir():
        return _sha256(path)
    digest = hashlib.sha256()
    for item in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(item.relative_to(path).as_posix().encode() + b"\0" + _sha256(item).encode())
    return digest.hexdigest()
