"""Reading and writing checkpoint files safely, and strict state-dict loading with readable errors.

``.pt`` files are read with ``torch.load(weights_only=True)``, so a pickle that tries to build arbitrary objects is
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

__all__ = [
    "CheckpointError",
    "load_checkpoint",
    "save_checkpoint",
    "clean_state_dict",
    "check_state_dict",
    "load_state_dict_strict",
]

_PARTS = ("encoder", "target_encoder", "predictor")
_FORMAT_TAG = "vjepa2_ros"
_MAX_LISTED = 8


class CheckpointError(RuntimeError):
    """A checkpoint could not be read or does not fit the model; the message says which file and why."""


def _unpickling_detail(exc: Exception) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    for line in lines:
        if "GLOBAL" in line or "Unsupported" in line:
            return line
    return lines[0] if lines else type(exc).__name__


def _read_pt(path: Path) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
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


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Load a checkpoint into a dict on the CPU without ever executing pickled code.

    Files: ``.safetensors`` via safetensors, anything else via ``torch.load(weights_only=True)``. A Hugging Face
    VJEPA2 directory (``config.json`` + ``model.safetensors``) is converted to the reference layout
    (``encoder``, ``predictor``, ``model_config``).
    """
    path = Path(path).expanduser()
    if path.is_dir():
        from .hf import load_hf_directory

        return load_hf_directory(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint file not found: {path}")
    ckpt = _read_safetensors(path) if path.suffix == ".safetensors" else _read_pt(path)
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{path} holds a {type(ckpt).__name__}, expected a dict of state dicts")
    return ckpt


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


def _listing(keys: list[str]) -> str:
    shown = ", ".join(keys[:_MAX_LISTED])
    return shown + (f", ... ({len(keys) - _MAX_LISTED} more)" if len(keys) > _MAX_LISTED else "")


def check_state_dict(module: nn.Module, state_dict: Mapping[str, torch.Tensor], what: str) -> dict[str, torch.Tensor]:
    """Clean ``state_dict`` for ``module`` (works on a meta-device module too) or raise one ``CheckpointError``
    naming the missing/unexpected keys and the shape mismatches."""
    own = module.state_dict()
    drop = {k for k in ("pos_embed", "predictor_pos_embed") if k not in own}
    state_dict = clean_state_dict(state_dict, drop=drop)
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    shapes = [
        f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)}"
        for k, v in state_dict.items()
        if k in own and tuple(v.shape) != tuple(own[k].shape)
    ]
    problems = []
    if missing:
        problems.append(f"missing keys ({len(missing)}): {_listing(missing)}")
    if unexpected:
        problems.append(f"unexpected keys ({len(unexpected)}): {_listing(unexpected)}")
    if shapes:
        problems.append(f"shape mismatches ({len(shapes)}): {_listing(shapes)}")
    if problems:
        raise CheckpointError(f"{what} does not match {type(module).__name__}: " + "; ".join(problems))
    return state_dict


def load_state_dict_strict(module: nn.Module, state_dict: Mapping[str, torch.Tensor], what: str) -> None:
    """Load strictly after ``check_state_dict`` (so a mismatch never surfaces as a bare torch traceback)."""
    module.load_state_dict(check_state_dict(module, state_dict, what), strict=True)
