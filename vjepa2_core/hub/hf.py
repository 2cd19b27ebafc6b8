"""Hugging Face ``transformers`` VJEPA2 directories <-> the reference checkpoint layout, in both directions.

``save_pretrained`` writes ``config.json`` and ``model.safetensors`` (or shards plus an index). One table of key
rules serves reading and writing: fused reference ``attn.qkv`` <-> query/key/value thirds, the probe's fused
``xattn.kv`` <-> k/v halves, one ``mask_tokens.k`` per row of the stacked HF mask-token tensor. A
``VJEPA2ForVideoClassification`` directory also yields the attentive probe (``classifier`` part, built as our
``AttentiveClassifier``). transformers itself is not needed for either direction.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .files import CheckpointError, clean_state_dict, read_weights_file

__all__ = [
    "is_hf_directory",
    "hf_config_to_model_config",
    "model_config_to_hf_config",
    "convert_hf_state_dict",
    "to_hf_state_dict",
    "load_hf_directory",
    "export_hf_directory",
]

_BACKBONE = "vjepa2."  # prefix of the VJEPA2Model inside VJEPA2ForVideoClassification
_MASK_TOKENS = "predictor.embeddings.mask_tokens"
_HF_WEIGHTS = "model.safetensors"


@dataclass(frozen=True)
class _Rule:
    """``part``/``ref`` prefix <-> HF prefix(es); several HF prefixes = the reference tensor split along dim 0."""

    part: str
    ref: str
    hf: tuple[str, ...]

    def _regex(self, template: str) -> re.Pattern[str]:
        return re.compile("^" + re.escape(template).replace(r"\{i\}", r"(\d+)") + r"(.*)$")

    def match_hf(self, key: str) -> tuple[int, str] | None:
        """(slot, reference key) if ``key`` is one of this rule's HF tensors."""
        for slot, template in enumerate(self.hf):
            m = self._regex(template).match(key)
            if m:
                *idx, tail = m.groups()
                return slot, self.ref.replace("{i}", idx[0]) + tail if idx else self.ref + tail
        return None

    def match_ref(self, key: str) -> list[str] | None:
        """The HF keys a reference key of this part maps to (one per slot)."""
        m = self._regex(self.ref).match(key)
        if not m:
            return None
        *idx, tail = m.groups()
        return [(t.replace("{i}", idx[0]) if idx else t) + tail for t in self.hf]


def _block_rules(part: str, ref: str, hf: str) -> list[_Rule]:
    """The rules of one backbone transformer block (encoder and predictor share the inner names)."""
    attn = tuple(f"{hf}.{{i}}.attention.{n}." for n in ("query", "key", "value"))
    same = [(f"{ref}.{{i}}.{n}.", (f"{hf}.{{i}}.{n}.",)) for n in ("norm1", "norm2", "mlp.fc1", "mlp.fc2")]
    return [
        _Rule(part, f"{ref}.{{i}}.attn.qkv.", attn),
        _Rule(part, f"{ref}.{{i}}.attn.proj.", (f"{hf}.{{i}}.attention.proj.",)),
        *(_Rule(part, r, h) for r, h in same),
    ]


_POOL_SA, _POOL_CA = "pooler.self_attention_layers.{i}.", "pooler.cross_attention_layer."
_RULES: list[_Rule] = [
    _Rule("encoder", "patch_embed.proj.", ("encoder.embeddings.patch_embeddings.proj.",)),
    *_block_rules("encoder", "blocks", "encoder.layer"),
    _Rule("encoder", "norm.", ("encoder.layernorm.",)),
    _Rule("predictor", "predictor_embed.", ("predictor.embeddings.predictor_embeddings.",)),
    *_block_rules("predictor", "predictor_blocks", "predictor.layer"),
    _Rule("predictor", "predictor_norm.", ("predictor.layernorm.",)),
    _Rule("predictor", "predictor_proj.", ("predictor.proj.",)),
    _Rule("classifier", "pooler.query_tokens", ("pooler.query_tokens",)),
    _Rule("classifier", "pooler.blocks.{i}.norm1.", (_POOL_SA + "layer_norm1.",)),
    _Rule("classifier", "pooler.blocks.{i}.norm2.", (_POOL_SA + "layer_norm2.",)),
    _Rule("classifier", "pooler.blocks.{i}.attn.qkv.", tuple(_POOL_SA + f"self_attn.{n}_proj." for n in "qkv")),
    _Rule("classifier", "pooler.blocks.{i}.attn.proj.", (_POOL_SA + "self_attn.out_proj.",)),
    _Rule("classifier", "pooler.blocks.{i}.mlp.", (_POOL_SA + "mlp.",)),
    _Rule("classifier", "pooler.cross_attention_block.norm1.", (_POOL_CA + "layer_norm1.",)),
    _Rule("classifier", "pooler.cross_attention_block.norm2.", (_POOL_CA + "layer_norm2.",)),
    _Rule("classifier", "pooler.cross_attention_block.xattn.q.", (_POOL_CA + "cross_attn.q_proj.",)),
    _Rule(
        "classifier", "pooler.cross_attention_block.xattn.kv.", tuple(_POOL_CA + f"cross_attn.{n}_proj." for n in "kv")
    ),
    _Rule("classifier", "pooler.cross_attention_block.mlp.", (_POOL_CA + "mlp.",)),
    _Rule("classifier", "linear.", ("classifier.",)),
]


def _listing(keys: list[str]) -> str:
    return ", ".join(keys[:8]) + (f" ... ({len(keys) - 8} more)" if len(keys) > 8 else "")


def convert_hf_state_dict(state_dict: Mapping[str, torch.Tensor]) -> dict[str, dict[str, torch.Tensor]]:
    """HF VJEPA2 keys -> ``{"encoder", "predictor"[, "classifier"]}`` state dicts with reference keys.

    Works for ``VJEPA2Model`` and ``VJEPA2ForVideoClassification`` (backbone under ``vjepa2.``). Keys no rule knows
    raise a ``CheckpointError`` listing them, so nothing is silently dropped.
    """
    parts: dict[str, dict[str, torch.Tensor]] = {}
    pieces: dict[tuple[str, str], dict[int, torch.Tensor]] = {}
    unknown = []
    for key, value in state_dict.items():
        key = key.removeprefix(_BACKBONE)
        if key == _MASK_TOKENS:
            parts.setdefault("predictor", {}).update({f"mask_tokens.{k}": value[k].clone() for k in range(len(value))})
            continue
        for rule in _RULES:
            hit = rule.match_hf(key)
            if hit is not None:
                slot, ref = hit
                pieces.setdefault((rule.part, ref), {})[slot] = value
                n_slots = len(rule.hf)
                break
        else:
            unknown.append(key)
            continue
        got = pieces[(rule.part, ref)]
        if len(got) == n_slots:
            tensor = got[0] if n_slots == 1 else torch.cat([got[s] for s in range(n_slots)], dim=0)
            parts.setdefault(rule.part, {})[ref] = tensor
            del pieces[(rule.part, ref)]
    if pieces:
        raise CheckpointError(f"incomplete split weights (query/key/value or k/v): {_listing([r for _, r in pieces])}")
    if unknown:
        raise CheckpointError(f"unsupported Hugging Face VJEPA2 keys ({len(unknown)}): {_listing(unknown)}")
    return parts


def to_hf_state_dict(parts: Mapping[str, Mapping[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Reference ``{"encoder", "predictor"[, "classifier"]}`` state dicts -> HF keys (the inverse of the above).

    With a classifier the backbone keys get the ``vjepa2.`` prefix of ``VJEPA2ForVideoClassification``.
    """
    backbone = _BACKBONE if parts.get("classifier") else ""
    out: dict[str, torch.Tensor] = {}
    unknown = []
    tokens = sorted(
        (int(k.split(".")[1]), v) for k, v in parts.get("predictor", {}).items() if k.startswith("mask_tokens.")
    )
    if tokens:
        out[backbone + _MASK_TOKENS] = torch.stack([v for _, v in tokens]).contiguous()
    for part, state in parts.items():
        rules = [r for r in _RULES if r.part == part]
        for key, value in state.items():
            if part == "predictor" and key.startswith("mask_tokens."):
                continue
            for rule in rules:
                names = rule.match_ref(key)
                if names is not None:
                    prefix = "" if part == "classifier" else backbone
                    for name, chunk in zip(names, value.chunk(len(names), dim=0)):
                        out[prefix + name] = chunk.contiguous().clone()
                    break
            else:
                unknown.append(f"{part}.{key}")
    if unknown:
        raise CheckpointError(f"no Hugging Face name for ({len(unknown)}): {_listing(unknown)}")
    return out


def is_hf_directory(path: str | Path) -> bool:
    path = Path(path)
    return path.is_dir() and (path / "config.json").is_file()


def _is_classifier(cfg: Mapping[str, Any]) -> bool:
    return "VJEPA2ForVideoClassification" in (cfg.get("architectures") or [])


def hf_config_to_model_config(cfg: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """A ``VJEPA2Config`` dict -> reference constructor kwargs: encoder, mask predictor and, for a
    ``VJEPA2ForVideoClassification`` config, the attentive classifier (HF pools with the encoder's head count)."""
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
    config: dict[str, dict[str, Any]] = {"encoder": encoder, "predictor": predictor}
    if _is_classifier(cfg):
        labels = cfg.get("id2label") or {}
        config["classifier"] = {
            "embed_dim": encoder["embed_dim"],
            "num_heads": encoder["num_heads"],
            "mlp_ratio": 4.0,  # HF's pooler MLP ignores config.mlp_ratio
            "depth": int(cfg.get("num_pooler_layers", 3)) + 1,
            "qkv_bias": True,
            "num_classes": int(cfg.get("num_labels", len(labels) or 2)),
        }
    return config


def _require(cond: bool, what: str) -> None:
    if not cond:
        raise CheckpointError(f"cannot export to Hugging Face VJEPA2: {what}")


def model_config_to_hf_config(
    model_config: Mapping[str, Mapping[str, Any]], labels: list[str] | None = None
) -> dict[str, Any]:
    """Reference kwargs -> ``config.json`` of ``VJEPA2Model`` (or ``VJEPA2ForVideoClassification`` when
    ``model_config`` has a ``classifier``); refuses what HF cannot represent (AC predictor, no RoPE, SiLU, ...)."""
    enc, pred, head = model_config["encoder"], model_config["predictor"], model_config.get("classifier")
    img = enc.get("img_size", 224)
    img = img if isinstance(img, int) else (img[0] if img[0] == img[1] else None)
    _require(img is not None, f"the crop must be square, got img_size {enc.get('img_size')}")
    _require(bool(enc.get("use_rope")) and bool(pred.get("use_rope")), "HF models always use RoPE")
    _require(not enc.get("use_silu") and not pred.get("use_silu"), "HF models use GELU MLPs")
    _require("action_embed_dim" not in pred, "transformers has no action-conditioned predictor")
    for key in ("patch_size", "num_frames", "tubelet_size", "embed_dim"):
        _require(pred.get(key, enc.get(key)) == enc.get(key), f"encoder and predictor differ in {key}")
    cfg: dict[str, Any] = {
        "model_type": "vjepa2",
        "architectures": ["VJEPA2ForVideoClassification" if head else "VJEPA2Model"],
        "crop_size": int(img),
        "patch_size": int(enc.get("patch_size", 16)),
        "frames_per_clip": int(enc.get("num_frames", 1)),
        "tubelet_size": int(enc.get("tubelet_size", 2)),
        "in_chans": int(enc.get("in_chans", 3)),
        "hidden_size": int(enc["embed_dim"]),
        "num_hidden_layers": int(enc["depth"]),
        "num_attention_heads": int(enc["num_heads"]),
        "mlp_ratio": float(enc.get("mlp_ratio", 4.0)),
        "qkv_bias": bool(enc.get("qkv_bias", True)),
        "layer_norm_eps": 1e-6,
        "hidden_act": "gelu",
        "pred_hidden_size": int(pred["predictor_embed_dim"]),
        "pred_num_hidden_layers": int(pred["depth"]),
        "pred_num_attention_heads": int(pred["num_heads"]),
        "pred_mlp_ratio": float(pred.get("mlp_ratio", 4.0)),
        "pred_num_mask_tokens": int(pred.get("num_mask_tokens", 2)),
        "pred_zero_init_mask_tokens": bool(pred.get("zero_init_mask_tokens", True)),
    }
    if head:
        _require(head["embed_dim"] == enc["embed_dim"], "the classifier width differs from the encoder's")
        _require(head["num_heads"] == enc["num_heads"], "HF pools with the encoder's head count")
        _require(float(head.get("mlp_ratio", 4.0)) == 4.0, "HF's pooler MLP ratio is fixed at 4")
        names = labels or [f"LABEL_{k}" for k in range(head["num_classes"])]
        _require(len(names) == head["num_classes"], f"{len(names)} labels for {head['num_classes']} classes")
        cfg["num_pooler_layers"] = int(head["depth"]) - 1
        cfg["id2label"] = {str(k): name for k, name in enumerate(names)}
        cfg["label2id"] = {name: k for k, name in enumerate(names)}
    return cfg


def _read_hf_weights(path: Path) -> dict[str, torch.Tensor]:
    single = path / _HF_WEIGHTS
    index = path / "model.safetensors.index.json"
    if single.is_file():
        return read_weights_file(single)
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        weights: dict[str, torch.Tensor] = {}
        for shard in shards:
            weights.update(read_weights_file(path / shard))
        return weights
    raise CheckpointError(f"{path} has a config.json but no {_HF_WEIGHTS} (or sharded index) next to it")


def load_hf_directory(path: str | Path) -> dict[str, Any]:
    """A ``save_pretrained`` VJEPA2 directory as ``{"encoder", "predictor"[, "classifier", "labels"],
    "model_config", "source"}``."""
    path = Path(path)
    if not is_hf_directory(path):
        raise CheckpointError(f"{path} is a directory without config.json; expected a Hugging Face VJEPA2 export")
    try:
        cfg = json.loads((path / "config.json").read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"cannot parse {path / 'config.json'}: {exc}") from exc
    model_config = hf_config_to_model_config(cfg)
    ckpt: dict[str, Any] = convert_hf_state_dict(_read_hf_weights(path))
    if "classifier" in model_config:
        if "classifier" not in ckpt:
            raise CheckpointError(f"{path}: config.json names a classifier but the weights hold no pooler/classifier")
        id2label = cfg.get("id2label") or {}
        ckpt["labels"] = [id2label.get(str(k), f"LABEL_{k}") for k in range(model_config["classifier"]["num_classes"])]
    ckpt["model_config"] = model_config
    ckpt["source"] = "huggingface"
    return ckpt


def _state(obj: nn.Module | Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    sd = obj.state_dict() if isinstance(obj, nn.Module) else obj
    return {k: v.detach().cpu() for k, v in clean_state_dict(sd).items()}


def export_hf_directory(
    out: str | Path,
    model_config: Mapping[str, Mapping[str, Any]],
    encoder: nn.Module | Mapping[str, torch.Tensor],
    predictor: nn.Module | Mapping[str, torch.Tensor],
    classifier: nn.Module | Mapping[str, torch.Tensor] | None = None,
    labels: list[str] | None = None,
) -> Path:
    """Write ``config.json`` + ``model.safetensors`` that ``VJEPA2Model.from_pretrained`` (or, with a classifier,
    ``VJEPA2ForVideoClassification.from_pretrained``) reads with no missing or unexpected keys.

    ``model_config`` holds the reference kwargs (``encoder``, ``predictor`` and, with a classifier, ``classifier``).
    """
    from safetensors.torch import save_file

    if classifier is not None and "classifier" not in model_config:
        raise CheckpointError("a classifier needs model_config['classifier'] (AttentiveClassifier kwargs)")
    config = {k: v for k, v in model_config.items() if k != "classifier" or classifier is not None}
    hf_cfg = model_config_to_hf_config(config, labels)
    parts = {"encoder": _state(encoder), "predictor": _state(predictor)}
    if classifier is not None:
        parts["classifier"] = _state(classifier)
    weights = to_hf_state_dict(parts)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    save_file(weights, str(out / _HF_WEIGHTS), metadata={"format": "pt"})
    (out / "config.json").write_text(json.dumps(hf_cfg, indent=2) + "\n")
    return out
