"""AC post-training's config and run pieces: the schema with its checks, datasets, loaders, targets, held-out
diagnostics. `training/train_ac.py` keeps the visible loop and `main`; tests and benches import these.

Every key of the reference-layout YAML is in SCHEMA (reference keys are required, the extensions have defaults).
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from vjepa2_core.data.droid import DROIDDataset, collate, read_index, split_episodes
from vjepa2_core.data.feature_cache import FeatureCache
from vjepa2_core.data.lerobot.config import LEROBOT_SCHEMA, format_field
from vjepa2_core.models.conditioning import Conditioning
from vjepa2_core.training import ac, engine
from vjepa2_core.training.config import ConfigError, Field
from vjepa2_core.training.distributed import ResumableSampler
from vjepa2_core.training.optim import autocast

# ----------------------------------------------------------------------------------------------------- config
Num = (int, float)
SCHEMA = {
    "app": Field(str, choices=("vjepa_droid",)),
    "folder": Field(str, doc="output folder: latest.pt, e<epoch>.pt, train.csv, val.csv"),
    **engine.LAUNCH_SCHEMA,
    "data": {
        "batch_size": Field(int),
        "camera_views": Field(list),
        "crop_size": Field(int),
        "datasets": Field(list, doc="CSV files listing trajectory directories (format lerobot: dataset roots)"),
        "dataset_fpcs": Field(list),
        "fps": Field(Num),
        "num_workers": Field(int),
        "patch_size": Field(int),
        "pin_mem": Field(bool),
        "stereo_view": Field(bool),
        "tubelet_size": Field(int),
        # extensions
        "format": format_field("droid", ("droid", "lerobot")),
        "lerobot": LEROBOT_SCHEMA,
        "val_datasets": Field(list, default=[], doc="held-out CSVs; default: hold out val_fraction of episodes"),
        "val_fraction": Field(float, default=0.01),
        "val_clips": Field(int, default=64),
        "camera_frame": Field(bool, default=False),
        "max_retries": Field(int, default=10),
        "frame_steps": Field(
            list, default=None, doc="per-clip frame step drawn from this list (overrides fps): multi-step moves"
        ),
        "feature_cache": Field(str, default=None, doc="folder for cached frozen-encoder features (HDF5)"),
        "feature_cache_dtype": Field(str, default="float16", choices=("float16", "float32")),
    },
    "data_aug": {
        "auto_augment": Field(bool),
        "horizontal_flip": Field(bool),
        "motion_shift": Field(bool),
        "random_resize_aspect_ratio": Field(list),
        "random_resize_scale": Field(list),
        "reprob": Field(Num),
    },
    "loss": {"auto_steps": Field(int), "loss_exp": Field(Num), "normalize_reps": Field(bool), "reg_coeff": Field(Num)},
    "meta": {
        **engine.RUN_META_SCHEMA,
        "load_predictor": Field(bool),
        "pretrain_checkpoint": Field(str, nullable=True, doc="frozen encoder weights; null: random (tests)"),
        "finetune_encoder": Field(
            bool,
            default=False,
            doc="train the encoder with the predictor (lr x optimization.enc_lr_scale); targets from its EMA copy",
        ),
        "context_encoder_key": Field(str),
        "target_encoder_key": Field(str),
    },
    "model": {
        "model_name": Field(str),
        "pred_depth": Field(int),
        "pred_embed_dim": Field(int),
        "pred_is_frame_causal": Field(bool),
        "pred_num_heads": Field(int),
        "uniform_power": Field(bool),
        "use_activation_checkpointing": Field(bool),
        "encoder_activation_checkpointing": Field(
            bool, default=True, doc="recompute the fine-tuned encoder's blocks in the backward pass (less memory)"
        ),
        "use_extrinsics": Field(bool),
        "use_rope": Field(bool),
        "normalize_conditioning": Field(
            bool, default=False, doc="scale actions/states before the predictor with training-episode statistics"
        ),
        # extensions: override the encoder size of model_name (small CPU configs)
        "embed_dim": Field(int, default=None),
        "depth": Field(int, default=None),
        "num_heads": Field(int, default=None),
    },
    "optimization": {
        "anneal": Field(Num),
        "epochs": Field(int),
        "final_lr": Field(Num),
        "final_weight_decay": Field(Num),
        "ipe": Field(int, doc="iterations per epoch"),
        "lr": Field(Num),
        "start_lr": Field(Num),
        "warmup": Field(Num),
        "weight_decay": Field(Num),
        "betas": Field(list, default=[0.9, 0.999]),
        "eps": Field(float, default=1e-8),
        "enc_lr_scale": Field(Num, default=1.0),
        "ema": Field(list, default=[0.998, 0.998], doc="target-encoder EMA momentum [start, end] (finetune_encoder)"),
    },
}
UNSUPPORTED = {  # reference options this implementation refuses rather than ignores
    "data.stereo_view": True,
    "data_aug.auto_augment": True,
    "data_aug.motion_shift": True,
}
TRAIN_COLUMNS = ["loss", "jloss", "sloss", "lr", "wd", "clips_per_s", "skipped", "time"]
VAL_COLUMNS = ["val_loss", "val_jloss", "val_copy_loss", "val_zero_action_loss"]
log = logging.getLogger("train_ac")


def check_config(cfg: dict) -> dict:
    """Semantic checks beyond the schema, with the key path in every message."""
    for key, bad in UNSUPPORTED.items():
        section, name = key.split(".")
        if cfg[section][name] == bad:
            raise ConfigError(f"{key}: {bad} is not supported by this implementation")
    if cfg["data_aug"]["reprob"] > 0:
        raise ConfigError("data_aug.reprob: random erasing is not supported (use 0.0)")
    if len(cfg["data"]["dataset_fpcs"]) != 1:
        raise ConfigError("data.dataset_fpcs: exactly one clip length is supported")
    if not 1 <= cfg["loss"]["auto_steps"] < cfg["data"]["dataset_fpcs"][0]:
        raise ConfigError("loss.auto_steps: must be at least 1 and below the clip length")
    if cfg["meta"]["finetune_encoder"] and cfg["data"]["feature_cache"]:
        raise ConfigError("data.feature_cache: must be null with meta.finetune_encoder (the features change)")
    if len(cfg["optimization"]["ema"]) != 2:
        raise ConfigError(f"optimization.ema must be [start, end], got {cfg['optimization']['ema']}")
    if not cfg["data"]["datasets"]:
        raise ConfigError("data.datasets: list at least one CSV of trajectory directories")
    return cfg


# ------------------------------------------------------------------------------------------------------ data
def make_datasets(cfg: dict, feature_shape: tuple[int, int] | None, cache: FeatureCache | None):
    d, aug, seed = cfg["data"], cfg["data_aug"], cfg["meta"]["seed"]
    make, read = DROIDDataset, read_index
    if d["format"] == "lerobot":  # LeRobotDataset roots, read through the data.lerobot key mapping
        from vjepa2_core.data.lerobot.datasets import clip_dataset_factory

        make, read = clip_dataset_factory(d["lerobot"], d["camera_views"])
    train_eps = read(d["datasets"])
    if d["val_datasets"]:
        val_eps = read(d["val_datasets"])
    else:
        train_eps, val_eps = split_episodes(train_eps, d["val_fraction"], seed)
    kw = dict(
        frames_per_clip=d["dataset_fpcs"][0],
        fps=d["fps"],
        crop_size=d["crop_size"],
        camera_views=d["camera_views"],
        random_resize_scale=tuple(aug["random_resize_scale"]),
        random_resize_aspect_ratio=tuple(aug["random_resize_aspect_ratio"]),
        camera_frame=d["camera_frame"],
        max_retries=d["max_retries"],
        frame_steps=d["frame_steps"],
        seed=seed,
    )
    train = make(
        d["datasets"],
        episodes=train_eps,
        horizontal_flip=aug["horizontal_flip"],
        feature_cache=cache,
        feature_shape=feature_shape if cache else None,
        **kw,
    )
    val = make(d["datasets"], episodes=val_eps, **kw) if val_eps else None
    return train, val


def make_loader(ds, sampler, cfg: dict, device: torch.device, data_pass: int) -> torch.utils.data.DataLoader:
    """Loader over the rest of one pass. Its own seeded generator keeps the global torch RNG untouched."""
    d = cfg["data"]
    return torch.utils.data.DataLoader(
        ds,
        batch_size=d["batch_size"],
        sampler=sampler,
        num_workers=d["num_workers"],
        collate_fn=collate,
        pin_memory=d["pin_mem"] and device.type == "cuda",
        drop_last=True,
        generator=torch.Generator().manual_seed(cfg["meta"]["seed"] + data_pass),
    )


def targets(batch, encoder, cache: FeatureCache | None, ds: DROIDDataset, cfg: dict, device) -> torch.Tensor:
    """Frozen-encoder features [B,T,g2,D] of the batch, from the cache where possible."""
    tubelet, normalize = cfg["data"]["tubelet_size"], cfg["loss"]["normalize_reps"]
    if cache is None:
        return ac.encode_frames(encoder, batch["frames"].to(device, non_blocking=True), tubelet, normalize)
    h = batch["features"].to(device)
    miss = (~batch["cached"]).nonzero().flatten().tolist()
    if miss:
        fresh = ac.encode_frames(encoder, batch["frames"][miss].to(device), tubelet, normalize).float()
        h[miss] = fresh
        for row, feats in zip(miss, fresh, strict=True):
            key = ds.cache_key(int(batch["episode"][row]), int(batch["view"][row]))
            cache.put(key, batch["indices"][row].tolist(), feats)
    return h


@torch.no_grad()
def evaluate(
    predictor, encoder, val: DROIDDataset, cfg: dict, device, dtype, cond: Conditioning | None = None
) -> dict[str, float]:
    """Held-out diagnostics on a fixed set of clips (the same every time), the predictor in eval mode."""
    cond, was_training = cond or Conditioning(), predictor.training
    predictor.eval()
    val.set_epoch(0)
    n = min(len(val), cfg["data"]["val_clips"])
    sums: dict[str, float] = {}
    bs = cfg["data"]["batch_size"]
    for start in range(0, n, bs):
        batch = collate([val[i] for i in range(start, min(n, start + bs))])
        with autocast(device, dtype):
            h = ac.encode_frames(encoder, batch["frames"].to(device), cfg["data"]["tubelet_size"], True)
            ext = batch["extrinsics"].to(device) if cfg["model"]["use_extrinsics"] else None
            out = ac.diagnostics(
                predictor,
                h,
                cond.actions(batch["actions"].to(device)),
                cond.states(batch["states"].to(device)),
                ext,
                cfg["loss"]["auto_steps"],
                cfg["loss"]["loss_exp"],
                cfg["loss"]["normalize_reps"],
            )
        for k, v in out.items():
            sums[k] = sums.get(k, 0.0) + v * len(batch)
    predictor.train(was_training)
    return {k: v / n for k, v in sums.items()}


def batch_losses(model, encoder, batch, ds: DROIDDataset, cache: FeatureCache | None, cond: Conditioning, cfg, device):
    """(teacher-forcing, rollout) losses of one batch: frozen-encoder targets, normalised actions and states.

    `model` is the (DDP-wrapped) `ac.ACObjective`; with a fine-tuned encoder inside it, `encoder` is its EMA copy.
    """
    h = targets(batch, encoder, cache, ds, cfg, device)
    frames = batch["frames"].to(device, non_blocking=True) if cfg["meta"]["finetune_encoder"] else None
    ext = batch["extrinsics"].to(device) if cfg["model"]["use_extrinsics"] else None
    actions, states = cond.actions(batch["actions"].to(device)), cond.states(batch["states"].to(device))
    return model(h, actions, states, ext, frames)


def make_cache(cfg: dict, mcfg: dict) -> FeatureCache | None:
    """The frozen-encoder feature cache (`data.feature_cache`), keyed by everything the features depend on."""
    d = cfg["data"]
    if not d["feature_cache"]:
        return None
    key = {
        "encoder": mcfg["encoder"],
        "weights": cfg["meta"]["pretrain_checkpoint"],
        "seed": cfg["meta"]["seed"],
        "crop": d["crop_size"],
        "aug": cfg["data_aug"],
        "normalize": cfg["loss"]["normalize_reps"],
    }
    return FeatureCache(d["feature_cache"], key, d["feature_cache_dtype"])


def make_data(cfg: dict, mcfg: dict):
    """(train set, held-out set or None, feature cache, conditioning); a fitted normaliser goes into mcfg."""
    d = cfg["data"]
    cache = make_cache(cfg, mcfg)
    g2 = (d["crop_size"] // d["patch_size"]) ** 2
    train_ds, val_ds = make_datasets(cfg, (g2, mcfg["encoder"]["embed_dim"]), cache)
    cond = Conditioning()
    if cfg["model"]["normalize_conditioning"]:  # stored in every checkpoint's model_config, used by the planner
        cond = ac.fit_conditioning(train_ds)
        mcfg["conditioning"] = cond.to_config()
        log.info("conditioning normaliser from %d training episodes: %s", len(train_ds), cond)
    return train_ds, val_ds, cache, cond


def loader_factory(cfg: dict, run: engine.Run, ds: DROIDDataset, sampler: ResumableSampler):
    """`make(data_pass, offset)`: one clip per trajectory per pass, resumed at any batch."""

    def make(data_pass: int, offset: int) -> torch.utils.data.DataLoader:
        sampler.set_epoch(data_pass, offset * cfg["data"]["batch_size"])
        ds.set_epoch(data_pass)
        return make_loader(ds, sampler, cfg, run.device, data_pass)

    return make


def load(path: str | Path, overrides: list[str] = ()) -> dict:
    """The validated config of a run (old key names accepted with a warning)."""
    return check_config(engine.load_run_config(path, SCHEMA, overrides))
