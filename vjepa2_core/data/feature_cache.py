"""On-disk cache of frozen-encoder features, one HDF5 file per (episode, camera view), one dataset per frame.

The encoder is frozen during AC post-training and the training crop is deterministic, so a frame's features never
change: later epochs read them instead of running the encoder. Files live under a folder named by a hash of the
encoder/transform description (`tag`), so a different encoder or crop never reads stale features. Readers take a
shared and writers an exclusive `flock`, so DataLoader workers and several ranks can share a cache folder.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch

DTYPES = {"float16": np.float16, "float32": np.float32}


def cache_key(episode: str | Path, view: str) -> str:
    return hashlib.sha1(f"{Path(episode).resolve()}|{view}".encode()).hexdigest()[:20]


class FeatureCache:
    def __init__(self, folder: str | Path, tag: Mapping[str, Any], dtype: str = "float16"):
        if dtype not in DTYPES:
            raise ValueError(f"feature cache dtype {dtype!r} not one of {sorted(DTYPES)}")
        text = json.dumps(tag, sort_keys=True, default=str)
        self.folder = Path(folder) / hashlib.sha1(text.encode()).hexdigest()[:12]
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / "tag.json").write_text(text)
        self.dtype = DTYPES[dtype]

    def _file(self, key: str) -> Path:
        return self.folder / f"{key}.h5"

    @contextlib.contextmanager
    def _locked(self, key: str, exclusive: bool) -> Iterator[None]:
        with open(self.folder / f"{key}.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def get(self, key: str, indices: Sequence[int]) -> torch.Tensor | None:
        """Features [T,...] as float32 when every frame is cached, else None."""
        path = self._file(key)
        if not path.exists():
            return None
        with self._locked(key, exclusive=False):
            try:
                with h5py.File(path, "r") as h5:
                    names = [str(int(i)) for i in indices]
                    if not all(n in h5 for n in names):
                        return None
                    return torch.from_numpy(np.stack([h5[n][()] for n in names]).astype(np.float32))
            except OSError:
                return None  # unreadable (e.g. an interrupted first write): recompute

    def put(self, key: str, indices: Sequence[int], features: torch.Tensor) -> None:
        """Store features [T,...] of the given frame indices (existing frames are kept)."""
        feats = features.detach().float().cpu().numpy().astype(self.dtype)
        with self._locked(key, exclusive=True):
            try:
                h5 = h5py.File(self._file(key), "a")
            except OSError:  # torn by a crash during an earlier write: start the file again
                self._file(key).unlink()
                h5 = h5py.File(self._file(key), "a")
            with h5:
                for i, f in zip(indices, feats, strict=True):
                    name = str(int(i))
                    if name not in h5:
                        h5.create_dataset(name, data=f)
