"""Loading checkpoints (files or Hugging Face directories) and strict state-dict loading with readable errors.

File I/O lives in ``files.py`` and the Hugging Face conversion in ``hf.py``; this module sits above both, so the
import graph has no cycle (files <- hf <- checkpoint).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .files import CheckpointError, clean_state_dict, read_weights_file, save_checkpoint
from .hf import load_hf_directory

__all__ = [
    "CheckpointError",
    "load_checkpoint",
    "save_checkpoint",
    "clean_state_dict",
    "check_state_dict",
    "load_state_dict_strict",
]

_MAX_LISTED = 8


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Load a checkpoint into a dict on the CPU without ever executing pickled code.

    Files: ``.safetensors`` via safetensors, anything else via ``torch.load(weights_only=True)``. A Hugging Face
    VJEPA2 directory (``config.json`` + ``model.safetensors``) is converted to the reference layout
    (``encoder``, ``predictor``, ``model_config``).
    """
    path = Path(path).expanduser()
    if path.is_dir():
        return load_hf_directory(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint file not found: {path}")
    ckpt = read_weights_file(path)
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{path} holds a {type(ckpt).__name__}, expected a dict of state dicts")
    return ckpt


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


def load_state_dict_strict(
    module: nn.Module, state_dict: Mapping[str, torch.Tensor], what: str, assign: bool = False
) -> None:
    """Load strictly after ``check_state_dict`` (so a mismatch never surfaces as a bare torch traceback).

    ``assign``: the module takes the checkpoint's tensors as its own (a meta-device skeleton gets its weights
    without allocating a second copy); a tensor of another dtype than the module's is converted first.
    """
    state_dict = check_state_dict(module, state_dict, what)
    if assign:
        own = module.state_dict()
        state_dict = {k: v if v.dtype == own[k].dtype else v.to(own[k].dtype) for k, v in state_dict.items()}
    module.load_state_dict(state_dict, strict=True, assign=assign)
