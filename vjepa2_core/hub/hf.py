"""Read a Hugging Face ``transformers`` VJEPA2 directory into the reference checkpoint layout.

``save_pretrained`` writes ``config.json`` and ``model.safetensors`` (or shards plus an index). The keys are renamed
to the reference names (fused ``attn.qkv`` from the query/key/value thirds, one ``mask_tokens.k`` per row of the
stacked mask-token tensor, ...) so the same strict loaders serve both sources. transformers itself is not needed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from .checkpoint import CheckpointError

__all__ = ["is_hf_directory", "hf_config_to_model_config", "convert_hf_state_dict", "load_hf_directory"]

_INNER = [  # HF block sub-module -> reference block sub-module
    (r"attention\.proj\.", "attn.proj."),
    (r"norm1\.", "norm1."),
    (r"norm2\.", "norm2."),
    (r"mlp\.fc1\.", "mlp.fc1."),
    (r"mlp\.fc2\.", "mlp.fc2."),
]
_SIMPLE = [  # whole-key renames (after the block loops)
    (r"^encoder\.embeddings\.patch_embeddings\.proj\.", "encoder", "patch_embed.proj."),
    (r"^encoder\.layernorm\.", "encoder", "norm."),
    (r"^predictor\.embeddings\.predictor_embeddings\.", "predictor", "predictor_embed."),
    (r"^predictor\.layernorm\.", "predictor", "predictor_norm."),
    (r"^predictor\.proj\.", "predictor", "predictor_proj."),
]
_BLOCK = re.compile(r"^(encoder|predictor)\.layer\.(\d+)\.(.+)$")
_QKV = re.compile(r"^attention\.(query|key|value)\.(weight|bias)$")


def is_hf_directory(path: str | Path) -> bool:
    path = Path(path)
    return path.is_dir() and (path / "config.json").is_file()


def hf_config_to_model_config(cfg: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Translate a ``VJEPA2Config`` dict into reference constructor kwargs for the encoder and mask predictor."""
    if cfg.get("model_type") not in (None, "vjepa2"):
        raise CheckpointError(f"config.json describes a {cfg.get('model_type')!r} model, expected 'vjepa2'")
    if cfg.get("hidden_act", "gelu") != "gelu":
        raise CheckpointError(f"hidden_act {cfg['hidden_act']!r} is not supported (reference models use GELU)")
    if abs(float(cfg.get("layer_norm_eps", 1e-6)) - 1e-6) > 1e-12:
        raise CheckpointError(f"layer_norm_eps {cfg['layer_norm_eps']} differs from the reference 1e-6")
    patch = cfg.get("patch_size", 16)
    patch = patch[0] if isinstance(patch, (list, tuple)) else patch
    video = {
        "img_size": int(cfg.get("crop_size", 256)),
        "patch_size": int(patch),
        "num_frames": int(cfg.get("frames_per_clip", 64)),
        "tubelet_size": int(cfg.get("tubelet_size", 2)),
        "use_rope": True,
    }
    encoder = {
        **video,
        "in_chans": int(cfg.get("in_chans", 3)),
        "embed_dim": int(cfg.get("hidden_size", 1024)),
        "depth": int(cfg.get("num_hidden_layers", 24)),
        "num_heads": int(cfg.get("num_attention_heads", 16)),
        "mlp_ratio": float(cfg.get("mlp_ratio", 4.0)),
        "qkv_bias": bool(cfg.get("qkv_bias", True)),
    }
    predictor = {
        **video,
        "embed_dim": encoder["embed_dim"],
        "predictor_embed_dim": int(cfg.get("pred_hidden_size", 384)),
        "depth": int(cfg.get("pred_num_hidden_layers", 12)),
        "num_heads": int(cfg.get("pred_num_attention_heads", 12)),
        "mlp_ratio": float(cfg.get("pred_mlp_ratio", 4.0)),
        "qkv_bias": encoder["qkv_bias"],
        "use_mask_tokens": True,
        "num_mask_tokens": int(cfg.get("pred_num_mask_tokens", 10)),
        "zero_init_mask_tokens": bool(cfg.get("pred_zero_init_mask_tokens", True)),
    }
    return {"encoder": encoder, "predictor": predictor}


def convert_hf_state_dict(state_dict: Mapping[str, torch.Tensor]) -> dict[str, dict[str, torch.Tensor]]:
    """HF ``VJEPA2Model`` keys -> ``{"encoder": {...}, "predictor": {...}}`` with reference keys.

    The ``vjepa2.`` prefix of a ``VJEPA2ForVideoClassification`` export is stripped, but its attentive-pooler and
    classifier keys are not converted: they raise a ``CheckpointError`` listing them.
    """
    parts: dict[str, dict[str, torch.Tensor]] = {"encoder": {}, "predictor": {}}
    qkv: dict[tuple[str, str], dict[str, torch.Tensor]] = {}
    unknown = []
    for key, value in state_dict.items():
        key = key.removeprefix("vjepa2.")
        block = _BLOCK.match(key)
        if block:
            part, idx, rest = block.groups()
            prefix = "blocks" if part == "encoder" else "predictor_blocks"
            fused = _QKV.match(rest)
            if fused:
                qkv.setdefault((part, f"{prefix}.{idx}.attn.qkv.{fused.group(2)}"), {})[fused.group(1)] = value
                continue
            for pattern, repl in _INNER:
                if re.match(pattern, rest):
                    parts[part][f"{prefix}.{idx}." + re.sub("^" + pattern, repl, rest)] = value
                    break
            else:
                unknown.append(key)
            continue
        if key == "predictor.embeddings.mask_tokens":
            for k in range(value.shape[0]):
                parts["predictor"][f"mask_tokens.{k}"] = value[k].clone()
            continue
        for pattern, part, repl in _SIMPLE:
            if re.match(pattern, key):
                parts[part][re.sub(pattern, repl, key)] = value
                break
        else:
            unknown.append(key)
    for (part, name), thirds in qkv.items():
        if set(thirds) != {"query", "key", "value"}:
            raise CheckpointError(f"incomplete attention weights for {part}.{name}: only {sorted(thirds)}")
        parts[part][name] = torch.cat([thirds["query"], thirds["key"], thirds["value"]], dim=0)
    if unknown:
        shown = ", ".join(unknown[:8]) + (" ..." if len(unknown) > 8 else "")
        raise CheckpointError(f"unsupported Hugging Face VJEPA2 keys ({len(unknown)}): {shown}")
    return {part: sd for part, sd in parts.items() if sd}


def _read_hf_weights(path: Path) -> dict[str, torch.Tensor]:
    from .checkpoint import load_checkpoint

    single = path / "model.safetensors"
    index = path / "model.safetensors.index.json"
    if single.is_file():
        return load_checkpoint(single)
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        weights: dict[str, torch.Tensor] = {}
        for shard in shards:
            weights.update(load_checkpoint(path / shard))
        return weights
    raise CheckpointError(f"{path} has a config.json but no model.safetensors (or sharded index) next to it")


def load_hf_directory(path: str | Path) -> dict[str, Any]:
    """Load a ``save_pretrained`` VJEPA2 directory as ``{"encoder", "predictor", "model_config", "source"}``."""
    path = Path(path)
    if not is_hf_directory(path):
        raise CheckpointError(f"{path} is a directory without config.json; expected a Hugging Face VJEPA2 export")
    try:
        cfg = json.loads((path / "config.json").read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"cannot parse {path / 'config.json'}: {exc}") from exc
    model_config = hf_config_to_model_config(cfg)
    ckpt: dict[str, Any] = convert_hf_state_dict(_read_hf_weights(path))
    ckpt["model_config"] = model_config
    ckpt["source"] = "huggingface"
    return ckpt
