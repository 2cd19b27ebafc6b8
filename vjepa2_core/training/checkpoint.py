"""Training checkpoints: atomic writes, periodic snapshots, and the RNG state needed for an exact resume.

Writing goes through `vjepa2_core.hub.save_checkpoint` (temporary file + os.replace, modules stored as state dicts),
so a crash, even kill -9, leaves the previous or the new file, never a torn one. Reading goes through
`hub.load_checkpoint` (weights_only=True). Everything stored here is weights_only-loadable.
"""

from __future__ import annotations

import os
import random
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vjepa2_core.hub import CheckpointError, load_checkpoint, save_checkpoint

__all__ = [
    "CheckpointError",
    "save_training_checkpoint",
    "load_training_checkpoint",
    "rng_state",
    "set_rng_state",
    "seed_everything",
    "unwrap",
]


def unwrap(module: torch.nn.Module) -> torch.nn.Module:
    """The plain module inside DDP / torch.compile wrappers (so state-dict keys carry no `module.` prefix)."""
    module = getattr(module, "module", module)
    return getattr(module, "_orig_mod", module)


def save_training_checkpoint(path: str | Path, state: Mapping[str, Any], snapshot: str | Path | None = None) -> Path:
    """Write `state` atomically to `path`; with `snapshot`, also keep a periodic copy (a hard link when possible)."""
    path = save_checkpoint(path, state)
    if snapshot is not None:
        snapshot = Path(snapshot)
        tmp = snapshot.with_name(f".{snapshot.name}.tmp")
        if tmp.exists():
            tmp.unlink()
        try:
            os.link(path, tmp)  # latest.pt is replaced by rename later, so the link keeps this version
        except OSError:
            shutil.copyfile(path, tmp)
        os.replace(tmp, snapshot)
    return path


def load_training_checkpoint(path: str | Path, required: Iterable[str] = ()) -> dict:
    """Read a checkpoint and check that it holds the entries a resume needs."""
    ckpt = load_checkpoint(path)
    missing = [k for k in required if k not in ckpt]
    if missing:
        raise CheckpointError(f"{path} cannot be resumed from: missing {missing} (has {sorted(ckpt)})")
    return ckpt


def rng_state() -> dict:
    """torch (CPU and CUDA), numpy and python RNG states, in weights_only-loadable types."""
    np_state = np.random.get_state(legacy=False)
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {
            "bit_generator": np_state["bit_generator"],
            "key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)),
            "pos": int(np_state["state"]["pos"]),
            "has_gauss": int(np_state["has_gauss"]),
            "gauss": float(np_state["gauss"]),
        },
        "python": _to_lists(random.getstate()),
    }


def set_rng_state(state: Mapping) -> None:
    """Restore what `rng_state` captured."""
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    n = state["numpy"]
    np.random.set_state(
        {
            "bit_generator": n["bit_generator"],
            "state": {"key": n["key"].numpy().astype(np.uint32), "pos": n["pos"]},
            "has_gauss": n["has_gauss"],
            "gauss": n["gauss"],
        }
    )
    random.setstate(_to_tuples(state["python"]))


def _to_lists(x: Any) -> Any:
    return [_to_lists(v) for v in x] if isinstance(x, tuple | list) else x


def _to_tuples(x: Any) -> Any:
    return tuple(_to_tuples(v) for v in x) if isinstance(x, list) else x


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
