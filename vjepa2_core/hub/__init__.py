"""Offline checkpoint loading for V-JEPA 2: registry of released models, safe file I/O, HF conversion."""

from .checkpoint import (
    CheckpointError,
    check_state_dict,
    clean_state_dict,
    load_checkpoint,
    load_state_dict_strict,
    save_checkpoint,
)
from .hf import convert_hf_state_dict, hf_config_to_model_config, is_hf_directory, load_hf_directory
from .loading import (
    build_model,
    checkpoint_search_dirs,
    find_checkpoint,
    load_ac_model,
    load_encoder,
    load_encoder_and_predictor,
    load_fixture_model,
    make_random_checkpoint,
    resolve_checkpoint,
    save_ac_checkpoint,
)
from .registry import ALIASES, BASE_URL, MODELS, ModelSpec, available_models, get_spec

__all__ = [
    "ALIASES",
    "BASE_URL",
    "MODELS",
    "CheckpointError",
    "ModelSpec",
    "available_models",
    "build_model",
    "checkpoint_search_dirs",
    "check_state_dict",
    "clean_state_dict",
    "convert_hf_state_dict",
    "find_checkpoint",
    "get_spec",
    "hf_config_to_model_config",
    "is_hf_directory",
    "load_ac_model",
    "load_checkpoint",
    "load_encoder",
    "load_encoder_and_predictor",
    "load_fixture_model",
    "load_hf_directory",
    "load_state_dict_strict",
    "make_random_checkpoint",
    "resolve_checkpoint",
    "save_ac_checkpoint",
    "save_checkpoint",
]
