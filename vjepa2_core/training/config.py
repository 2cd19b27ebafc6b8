"""YAML training configs: `--set key.path=value` overrides and validation against a schema.

A schema is a nested dict whose leaves are `Field`s. Reference keys are required, so a typo in a user's reference
config is reported with its key path (and the closest valid name) instead of being silently ignored; extension
keys of this project carry defaults, so a reference config runs unchanged.
"""

from __future__ import annotations

import argparse
import copy
import difflib
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REQUIRED = object()


class ConfigError(ValueError):
    """A config problem, always naming the key path."""


class RenamedKeyWarning(DeprecationWarning):
    """A config used a key's old name; it still works, under the new name."""


warnings.filterwarnings("default", category=RenamedKeyWarning)  # shown even outside __main__, once per place


@dataclass(frozen=True)
class Field:
    """One config leaf: accepted types, default (REQUIRED if none), optional choices, short doc."""

    types: type | tuple[type, ...]
    default: Any = REQUIRED
    choices: tuple | None = None
    nullable: bool = False
    doc: str = ""
    items: Mapping | None = None  # schema of each element when the value is a list of mappings

    def check(self, value: Any, path: str) -> Any:
        if value is None:
            if self.nullable or self.default is None:
                return None
            raise ConfigError(f"{path}: must not be null")
        types = self.types if isinstance(self.types, tuple) else (self.types,)
        if float in types and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if isinstance(value, bool) and bool not in types:
            raise ConfigError(f"{path}: expected {_names(types)}, got bool {value!r}")
        if not isinstance(value, types):
            raise ConfigError(f"{path}: expected {_names(types)}, got {type(value).__name__} {value!r}")
        if self.choices is not None and value not in self.choices:
            raise ConfigError(f"{path}: {value!r} is not one of {list(self.choices)}")
        if self.items is not None:
            return [validate(item, self.items, f"{path}[{i}]") for i, item in enumerate(value)]
        return value


def _names(types: tuple[type, ...]) -> str:
    return " or ".join(t.__name__ for t in types)


Schema = Mapping[str, "Field | Schema"]


def validate(cfg: Mapping, schema: Schema, path: str = "") -> dict:
    """Check `cfg` against `schema`, fill defaults, and return a new dict. Raises ConfigError naming the key."""
    if not isinstance(cfg, Mapping):
        raise ConfigError(f"{path or '<root>'}: expected a mapping, got {type(cfg).__name__}")
    out: dict = {}
    for key in cfg:
        if key not in schema:
            where = f"{path}.{key}" if path else str(key)
            close = difflib.get_close_matches(str(key), [str(k) for k in schema], n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else f" (valid keys: {sorted(schema)})"
            raise ConfigError(f"unknown config key {where!r}{hint}")
    for key, spec in schema.items():
        where = f"{path}.{key}" if path else key
        if isinstance(spec, Mapping):
            out[key] = validate(cfg.get(key, {}) if cfg.get(key) is not None else {}, spec, where)
        elif key in cfg:
            out[key] = spec.check(cfg[key], where)
        elif spec.default is REQUIRED:
            raise ConfigError(f"missing config key {where!r}" + (f" ({spec.doc})" if spec.doc else ""))
        else:
            out[key] = copy.deepcopy(spec.default)
    return out


def apply_overrides(cfg: dict, overrides: Sequence[str]) -> dict:
    """Apply `a.b.c=value` overrides (value parsed as YAML: numbers, lists, null, ...) to a copy of `cfg`."""
    cfg = copy.deepcopy(cfg)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set expects key.path=value, got {item!r}")
        key, raw = item.split("=", 1)
        parts = key.strip().split(".")
        if not all(parts):
            raise ConfigError(f"--set: bad key path {key!r}")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError as e:
            raise ConfigError(f"--set {key}: cannot parse value {raw!r} ({e})") from e
        node = cfg
        for i, part in enumerate(parts[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"--set {key}: {'.'.join(parts[: i + 1])} is not a section")
            node = child
        node[parts[-1]] = value
    return cfg


def load_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: invalid YAML ({e})") from e
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections")
    return data


def rename_keys(cfg: Mapping, renamed: Mapping[str, str]) -> dict:
    """Move old dotted keys to their new names (`{"meta.read_checkpoint": "meta.resume_checkpoint"}`), warning.

    A null old value next to a set new one is dropped; two different set values are an error naming both keys.
    """
    cfg = copy.deepcopy(dict(cfg))
    for old, new in renamed.items():
        *old_parents, old_leaf = old.split(".")
        node = cfg
        for part in old_parents:
            node = node.get(part) if isinstance(node, Mapping) else None
        if not isinstance(node, dict) or old_leaf not in node:
            continue
        warnings.warn(f"config key {old!r} is deprecated: use {new!r}", RenamedKeyWarning, stacklevel=3)
        value = node.pop(old_leaf)
        *new_parents, new_leaf = new.split(".")
        target = cfg
        for part in new_parents:
            target = target.setdefault(part, {})
        if new_leaf in target and value is not None and target[new_leaf] not in (None, value):
            raise ConfigError(f"{old!r} (deprecated) and {new!r} are both set: keep only {new!r}")
        if value is not None or new_leaf not in target:
            target[new_leaf] = value
    return cfg


def load_config(
    path: str | Path, schema: Schema, overrides: Sequence[str] = (), renamed: Mapping[str, str] | None = None
) -> dict:
    """Read YAML, apply overrides, accept `renamed` old keys, validate. Every schema key is present in the result."""
    try:
        return validate(rename_keys(apply_overrides(load_yaml(path), overrides), renamed or {}), schema)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None


def get(cfg: Mapping, dotted: str) -> Any:
    """cfg['a']['b'] as get(cfg, 'a.b')."""
    node: Any = cfg
    for part in dotted.split("."):
        node = node[part]
    return node


def dump_config(cfg: Mapping, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(dict(cfg), sort_keys=False))


def training_arg_parser(description: str) -> argparse.ArgumentParser:
    """The command line shared by the training entry points."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--config", required=True, help="YAML config (reference layout)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set optimization.lr=1e-4 (repeatable)",
    )
    p.add_argument("--resume", action="store_true", help="continue from <folder>/latest.pt if it exists")
    return p
