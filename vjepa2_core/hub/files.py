"""Checkpoint files on disk: weights-only ``.pt`` reading, safetensors in both layouts, atomic writes.

The lowest layer of the hub (no model or Hugging Face knowledge), so every other hub module can import it.
``.pt`` files are read with ``torch.load(weights_only=True)``: a pickle that tries to build arbitrary objects is
rejected before anything runs. ``.safetensors`` files hold either a flat state dict (Hugging Face) or this
project's layout flattened as ``<part>.<param>`` with ``model_config`` in the metadata.
"""

from __future__ import annotations

import json
import os
import pickle
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

__all__ = ["CheckpointError", "clean_state_dict", "read_weights_file", "save_checkpoint"]

_FORMAT_TAG = "vjepa2_ros"


class CheckpointError(RuntimeError):
    """A checkpoint could not be read or does not fit the model; the message says which file and why."""


def _unpickling_detail(exc: Exception) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    for line in lines:
        if "GLOBAL" in line or "Unsupported" in line:
            return line
    return lines[0] if lines else type(exc).__name__


def _read_pt(path: Path) -> Any:
    """Tensors memory-mapped from the file (zip format, what torch.save writes): nothing is read until used and
    the model can take the mapped tensors as its weights, so a 1B-parameter model never has two host copies."""
    try:
        try:
            return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as exc:
            if "mmap can only be used" not in str(exc):
                raise
            return torch.load(path, map_location="cpu", weights_only=True)  # the legacy (pre-zip) format
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"refused to load {path}: weights_only loading rejected it (nothing in it was executed). It is either "
            f"corrupt or holds pickled objects other than tensors and plain containers, e.g. code; only load files "
            f"from a trusted source. Detail: {_unpickling_detail(exc)}"
        ) from exc
    except Exception as exc:  # truncated zip / legacy stream: RuntimeError, EOFError, struct.error, ...
        raise CheckpointError(
            f"cannot read {path} ({path.stat().st_size} bytes): the file is truncated, corrupt or not a torch "
            f"checkpoint ({type(exc).__name__}: {_unpickling_detail(exc)})"
        ) from exc


def _read_safetensors(path: Path) -> dict[str, Any]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            meta = handle.metadata() or {}
            flat = {key: handle.get_tensor(key) for key in handle.keys()}
    except Exception as exc:  # safetensors raises its own error types (SafetensorError, OSError, ...)
        raise CheckpointError(
            f"cannot read {path} ({path.stat().st_size} bytes) as safetensors: the file is truncated or corrupt "
            f"({type(exc).__name__}: {exc})"
        ) from exc
    if meta.get("format") != _FORMAT_TAG:
        return flat
    ckpt: dict[str, Any] = json.loads(meta.get("extra", "{}"))
    if "model_config" in meta:
        ckpt["model_config"] = json.loads(meta["model_config"])
    for key, tensor in flat.items():
        part, _, name = key.partition(".")
        ckpt.setdefault(part, {})[name] = tensor
    return ckpt


def read_weights_file(path: Path) -> Any:
    """One ``.safetensors`` or ``.pt`` file as loaded (a dict for every valid checkpoint), never executing code."""
    return _read_safetensors(path) if path.suffix == ".safetensors" else _read_pt(path)


def _state_dict(obj: nn.Module | Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    sd = obj.state_dict() if isinstance(obj, nn.Module) else dict(obj)
    return {k: v.detach().cpu() for k, v in sd.items()}


def save_checkpoint(path: str | os.PathLike, parts: Mapping[str, Any]) -> Path:
    """Write ``parts`` atomically (temp file + rename). Modules are stored as their state dicts.

    ``.safetensors``: the tensor parts are flattened as ``<part>.<param>`` (shared tensors are cloned) and
    ``model_config`` plus any JSON-serialisable extras go into the metadata.
    """
    path = Path(path).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {k: _state_dict(v) if isinstance(v, nn.Module) else v for k, v in parts.items()}
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        if path.suffix == ".safetensors":
            _write_safetensors(Path(tmp), payload)
        else:
            torch.save(payload, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def _write_safetensors(path: Path, payload: Mapping[str, Any]) -> None:
    from safetensors.torch import save_file

    tensors, extra = {}, {}
    for part, value in payload.items():
        if part == "model_config":
            continue
        if isinstance(value, Mapping) and value and all(isinstance(t, torch.Tensor) for t in value.values()):
            tensors.update({f"{part}.{k}": t.contiguous().clone() for k, t in value.items()})
        else:
            extra[part] = value
    try:
        meta = {"format": _FORMAT_TAG, "extra": json.dumps(extra)}
        if "model_config" in payload:
            meta["model_config"] = json.dumps(payload["model_config"])
    except TypeError as exc:
        raise CheckpointError(f"safetensors metadata must be JSON-serialisable: {exc}") from exc
    save_file(tensors, str(path), metadata=meta)


def clean_state_dict(
    state_dict: Mapping[str, torch.Tensor], drop: Iterable[str] = ("pos_embed", "predictor_pos_embed")
) -> dict[str, torch.Tensor]:
    """Strip the DDP ``module.`` and wrapper ``backbone.`` prefixes (anywhere in the key) and drop ``drop`` keys.

    Released RoPE models have no position table, so a stray ``pos_embed`` is removed rather than reported.
    """
    drop = set(drop)
    out = {}
    for key, value in state_dict.items():
        key = key.replace("module.", "").replace("backbone.", "")
        if key not in drop:
            out[key] = value
    return out
