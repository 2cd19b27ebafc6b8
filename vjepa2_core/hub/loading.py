"""Build V-JEPA 2 encoders and predictors and load their weights strictly, offline.

A model is named either by a registry entry (``vit_ac_giant``; the weights file is then looked up locally) or by a
checkpoint path: a ``.pt``/``.safetensors`` file written by this project (it carries ``model_config``) or a Hugging
Face VJEPA2 directory. Nothing is downloaded unless ``download=True`` (the torch.hub entries in ``hubconf.py`` pass
it): a missing file error names the file and the URL to fetch.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .checkpoint import (
    CheckpointError,
    check_state_dict,
    clean_state_dict,
    load_checkpoint,
    load_state_dict_strict,
    save_checkpoint,
)
from .download import checkpoint_search_dirs, find_checkpoint
from .registry import ALIASES, MODELS, get_spec

__all__ = [
    "checkpoint_search_dirs",
    "find_checkpoint",
    "resolve_checkpoint",
    "build_model",
    "build_encoder_and_predictor",
    "load_encoder",
    "load_encoder_and_predictor",
    "load_ac_model",
    "load_video_classifier",
    "load_fixture_model",
    "save_ac_checkpoint",
    "make_random_checkpoint",
]

PathLike = str | os.PathLike


def _is_name(value: Any) -> bool:
    return isinstance(value, str) and (value in MODELS or value in ALIASES)


def copy_model_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """A plain-dict copy of a model_config: its sections (encoder, predictor, conditioning) copied one level deep."""
    return {k: dict(v) if isinstance(v, Mapping) else v for k, v in config.items()}


def with_overrides(config: Mapping[str, Any], overrides: Mapping[str, Any] | None) -> dict[str, Any]:
    """``config`` with ``overrides`` (e.g. ``num_frames``) set in its encoder and predictor kwargs alike, as the
    reference hub entries pass their keyword arguments to both constructors."""
    config = copy_model_config(config)
    for section in ("encoder", "predictor"):
        if overrides and isinstance(config.get(section), dict):
            config[section].update(overrides)
    return config


def resolve_checkpoint(
    name_or_path: PathLike | None,
    checkpoint: PathLike | Mapping[str, Any] | None = None,
    download: bool = False,
    progress: bool = True,
    overrides: Mapping[str, Any] | None = None,
) -> tuple[dict[str, dict[str, Any]], dict[str, Any], str]:
    """Return ``(model_config, checkpoint dict, description)`` for a registry name and/or a checkpoint.

    A registry name fixes the architecture (its ``model_config`` wins over the one stored in the file); without a
    name the checkpoint's own ``model_config`` is used. ``checkpoint`` may also be an already loaded dict. Without
    a checkpoint the registry file is looked up (and fetched if ``download``); ``overrides`` change constructor
    kwargs of both encoder and predictor (weights must still fit strictly).
    """
    spec = get_spec(name_or_path) if _is_name(name_or_path) else None
    if spec is None and name_or_path is not None:
        if checkpoint is not None:
            raise CheckpointError(f"unknown model name {name_or_path!r} (and a checkpoint was given as well)")
        if not Path(name_or_path).expanduser().exists():
            raise CheckpointError(
                f"{name_or_path!r} is neither a registered model ({', '.join(sorted(MODELS))}) nor an existing file "
                f"or Hugging Face directory"
            )
        checkpoint = name_or_path
    if checkpoint is None:
        if spec is None:
            raise CheckpointError("give a registered model name or checkpoint=PATH")
        checkpoint = find_checkpoint(spec, download=download, progress=progress)
    if isinstance(checkpoint, Mapping):
        ckpt, where = dict(checkpoint), "checkpoint dict"
    else:
        try:
            ckpt, where = load_checkpoint(checkpoint), str(checkpoint)
        except CheckpointError as exc:
            if spec is not None and spec.url and not Path(checkpoint).expanduser().exists():
                raise CheckpointError(f"{exc} (released weights for {spec.name!r}: {spec.url})") from exc
            raise
    config = ckpt.get("model_config")
    if spec is not None:  # the name fixes the architecture; the file's input normaliser (if any) still applies
        stored = config.get("conditioning") if isinstance(config, Mapping) else None
        config = {**spec.model_config, **({"conditioning": dict(stored)} if stored else {})}
        return with_overrides(config, overrides), ckpt, where
    if not isinstance(config, Mapping) or "encoder" not in config:
        raise CheckpointError(
            f"{where} carries no model_config (keys: {', '.join(sorted(map(str, ckpt))[:10])}); pass a registered "
            f"model name as well, e.g. load_ac_model('vit_ac_giant', checkpoint=PATH)"
        )
    return with_overrides(config, overrides), ckpt, where


def _predictor_kind(kwargs: Mapping[str, Any], state_dict: Mapping[str, Any] | None) -> str:
    if state_dict is not None:
        keys = clean_state_dict(state_dict)
        if "action_encoder.weight" in keys:
            return "ac_predictor"
        if any(k.startswith("mask_tokens.") or k.startswith("predictor_blocks.") for k in keys):
            return "predictor"
    return "ac_predictor" if "action_embed_dim" in kwargs or "is_frame_causal" in kwargs else "predictor"


def build_model(kind: str, kwargs: Mapping[str, Any], device: str | torch.device | None = None) -> nn.Module:
    """Instantiate a reference-compatible module (imported lazily so the hub can be used for file I/O alone)."""
    from vjepa2_core.models import build_reference_model

    try:
        if device is None:
            return build_reference_model(kind, **kwargs)
        with torch.device(device):
            return build_reference_model(kind, **kwargs)
    except TypeError as exc:
        raise CheckpointError(f"cannot build {kind} from model_config {dict(kwargs)}: {exc}") from exc


def _has_meta_tensors(module: nn.Module) -> bool:
    """True if a tensor kept as a plain attribute (not a parameter/buffer) was created on the meta device."""
    return any(
        isinstance(value, torch.Tensor) and value.is_meta for mod in module.modules() for value in vars(mod).values()
    ) or any(t.is_meta for t in module.buffers())


def _build_and_load(kind: str, kwargs: Mapping[str, Any], state: Mapping[str, torch.Tensor], what: str) -> nn.Module:
    """Build weightless on the meta device, check keys and shapes, then give it the checkpoint's tensors.

    A wrong file for a 1B-parameter model thus fails in milliseconds, and a right one skips the random init that
    the checkpoint overwrites anyway; the (memory-mapped) checkpoint tensors become the weights, so the host never
    holds a second copy and a GPU model is copied once, by `.to(device)`. Models holding meta tensors outside
    their state dict are rebuilt normally.
    """
    try:
        skeleton = build_model(kind, kwargs, device="meta")
    except CheckpointError:
        raise
    except Exception:  # a constructor that needs real tensors: build normally
        skeleton = None
    if skeleton is not None:
        check_state_dict(skeleton, state, what)
        if not _has_meta_tensors(skeleton):
            load_state_dict_strict(skeleton, state, what, assign=True)
            return skeleton
    model = build_model(kind, kwargs)
    load_state_dict_strict(model, state, what)
    return model


def _part(ckpt: Mapping[str, Any], key: str, where: str) -> dict[str, torch.Tensor]:
    value = ckpt.get(key)
    if not isinstance(value, Mapping):
        available = [k for k, v in ckpt.items() if isinstance(v, Mapping) and k != "model_config"]
        raise CheckpointError(f"{where} has no {key!r} state dict (available: {', '.join(map(str, available))})")
    return dict(value)


def _finish(module: nn.Module, device: str | torch.device) -> nn.Module:
    return module.to(device).eval()


def _load_encoder_from(config: Mapping[str, Any], ckpt: Mapping[str, Any], where: str, key: str) -> nn.Module:
    if key not in ckpt and key == "target_encoder" and ckpt.get("source") == "huggingface":
        key = "encoder"  # HF exports hold a single encoder
    return _build_and_load("encoder", config["encoder"], _part(ckpt, key, where), f"{where} [{key}]")


def _load_predictor_from(config: Mapping[str, Any], ckpt: Mapping[str, Any], where: str) -> tuple[nn.Module, str]:
    if "predictor" not in config:
        raise CheckpointError(f"model_config of {where} has no 'predictor' entry")
    state = _part(ckpt, "predictor", where)
    kwargs = dict(config["predictor"])
    kind = _predictor_kind(kwargs, state)
    if kind == "predictor":
        # Releases hold 10 mask tokens while training configs use fewer: trust the checkpoint (reference recipe).
        n_tokens = sum(1 for k in clean_state_dict(state) if k.startswith("mask_tokens."))
        if n_tokens:
            kwargs["num_mask_tokens"] = n_tokens
    return _build_and_load(kind, kwargs, state, f"{where} [predictor]"), kind


def load_encoder(
    name: PathLike | None = None,
    checkpoint: PathLike | Mapping[str, Any] | None = None,
    key: str = "encoder",
    device: str | torch.device = "cpu",
    download: bool = False,
    progress: bool = True,
    overrides: Mapping[str, Any] | None = None,
) -> nn.Module:
    """The encoder of a checkpoint, strictly loaded, in eval mode.

    ``key`` picks ``encoder`` (what torch.hub and HF use) or ``target_encoder`` (the EMA weights the reference
    evaluations and AC post-training start from).
    """
    if key not in ("encoder", "target_encoder"):
        raise ValueError(f"key must be 'encoder' or 'target_encoder', got {key!r}")
    config, ckpt, where = resolve_checkpoint(name, checkpoint, download, progress, overrides)
    return _finish(_load_encoder_from(config, ckpt, where, key), device)


def load_encoder_and_predictor(
    name_or_path: PathLike | None = None,
    checkpoint: PathLike | Mapping[str, Any] | None = None,
    key: str = "encoder",
    device: str | torch.device = "cpu",
    download: bool = False,
    progress: bool = True,
    overrides: Mapping[str, Any] | None = None,
) -> tuple[nn.Module, nn.Module]:
    """``(encoder, predictor)``; the predictor is a mask predictor or an AC predictor, whichever the file holds
    (with a registry name it must be the kind the name stands for)."""
    config, ckpt, where = resolve_checkpoint(name_or_path, checkpoint, download, progress, overrides)
    return _encoder_and_predictor(config, ckpt, where, key, device, name_or_path, ac_only=False)


def load_ac_model(
    name_or_path: PathLike | None = None,
    checkpoint: PathLike | Mapping[str, Any] | None = None,
    key: str = "encoder",
    device: str | torch.device = "cpu",
    download: bool = False,
    progress: bool = True,
    overrides: Mapping[str, Any] | None = None,
) -> tuple[nn.Module, nn.Module]:
    """``(encoder, ac_predictor)`` for planning; refuses a checkpoint whose predictor is not action-conditioned."""
    config, ckpt, where = resolve_checkpoint(name_or_path, checkpoint, download, progress, overrides)
    return _encoder_and_predictor(config, ckpt, where, key, device, name_or_path, ac_only=True)


def _encoder_and_predictor(
    config: Mapping[str, Any], ckpt: Mapping[str, Any], where: str, key: str, device, name: Any, ac_only: bool
) -> tuple[nn.Module, nn.Module]:
    """The two public pair loaders in one: with `ac_only` the predictor's kind is checked before the encoder is
    read (a mask-feature predictor is refused first); with a registry name the kind must be the name's."""
    encoder = None if ac_only else _load_encoder_from(config, ckpt, where, key)
    predictor, kind = _load_predictor_from(config, ckpt, where)
    if ac_only and kind != "ac_predictor":
        raise CheckpointError(f"{where} holds a mask-feature predictor, not an action-conditioned one")
    expected = get_spec(name).predictor_kind if _is_name(name) else kind
    if kind != expected:
        raise CheckpointError(f"{where} holds a predictor of kind {kind!r}, but {name!r} needs {expected!r}")
    if encoder is None:
        encoder = _load_encoder_from(config, ckpt, where, key)
    return _finish(encoder, device), _finish(predictor, device)


def load_video_classifier(
    path: PathLike | Mapping[str, Any], key: str = "encoder", device: str | torch.device = "cpu"
) -> tuple[nn.Module, nn.Module]:
    """``(encoder, AttentiveClassifier)`` of a checkpoint with a ``classifier`` part, e.g. a Hugging Face
    ``VJEPA2ForVideoClassification`` directory; the class names (if stored) are set as ``classifier.labels``."""
    config, ckpt, where = resolve_checkpoint(None, path)
    if "classifier" not in config:
        raise CheckpointError(f"{where} holds no video classifier (model_config has no 'classifier' entry)")
    classifier = _build_and_load("attentive_classifier", config["classifier"], _part(ckpt, "classifier", where), where)
    classifier.labels = list(ckpt.get("labels") or [])
    return _finish(_load_encoder_from(config, ckpt, where, key), device), _finish(classifier, device)


def build_encoder_and_predictor(
    name: str, overrides: Mapping[str, Any] | None = None, seed: int | None = None
) -> tuple[nn.Module, nn.Module]:
    """Randomly initialised ``(encoder, predictor)`` of registry model ``name`` (``pretrained=False`` of the hub
    entries); build under ``torch.device("meta")`` to inspect a giant architecture without allocating it."""
    spec = get_spec(name)
    config = with_overrides(spec.model_config, overrides)
    with torch.random.fork_rng(devices=[], enabled=seed is not None):
        if seed is not None:
            torch.manual_seed(seed)
        encoder = build_model("encoder", config["encoder"])
        predictor = build_model(spec.predictor_kind, config["predictor"])
    return encoder.eval(), predictor.eval()


def load_fixture_model(path: PathLike, kind: str) -> nn.Module:
    """Build and strictly load a model stored as ``{config, state_dict, ...}`` (the reference fixture format)."""
    data = load_checkpoint(path)
    if "config" not in data or "state_dict" not in data:
        raise CheckpointError(f"{path} is not a fixture file: expected 'config' and 'state_dict', got {sorted(data)}")
    return _build_and_load(kind, data["config"], data["state_dict"], str(path)).eval()


def save_ac_checkpoint(
    path: PathLike,
    encoder: nn.Module | Mapping[str, torch.Tensor],
    predictor: nn.Module | Mapping[str, torch.Tensor],
    model_config: Mapping[str, Mapping[str, Any]],
    **extra: Any,
) -> Path:
    """Write a checkpoint in the reference layout (``encoder``, ``target_encoder``, ``predictor``) + ``model_config``.

    ``target_encoder`` defaults to the encoder weights; pass ``target_encoder=...`` in ``extra`` to store others.
    Extra entries (epoch, optimizer state, ...) are stored as given. ``.safetensors`` paths get the flat format.
    """
    if not isinstance(model_config, Mapping) or not {"encoder", "predictor"} <= set(model_config):
        raise ValueError("model_config must be {'encoder': {...}, 'predictor': {...}} (reference kwargs)")
    parts: dict[str, Any] = {"encoder": encoder, "target_encoder": extra.pop("target_encoder", encoder)}
    parts["predictor"] = predictor
    parts["model_config"] = copy_model_config(model_config)
    parts.update(extra)
    return save_checkpoint(path, parts)


def make_random_checkpoint(path: PathLike, name: str = "vit_ac_tiny", seed: int = 0) -> Path:
    """Write randomly initialised weights of registry model ``name`` (default the tiny AC model) for tests/demos."""
    spec = get_spec(name)
    encoder, predictor = build_encoder_and_predictor(name, seed=seed)
    return save_ac_checkpoint(path, encoder, predictor, spec.model_config, source=f"random:{spec.name}:{seed}")
