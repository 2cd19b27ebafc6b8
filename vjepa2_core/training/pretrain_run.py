"""Pretraining's config and run pieces: the schema with its checks, dataset, mask collator, sampler, loaders, model
config, start weights (resume or cooldown) and the held-out loss. `training/pretrain.py` keeps the visible loop and
`main`; tests and benches import these.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch.utils.data import DataLoader

from vjepa2_core.data.lerobot.config import format_field
from vjepa2_core.data.video_dataset import VideoDataset, VideoTrainTransform
from vjepa2_core.data.weighted_sampler import WeightedResumableSampler
from vjepa2_core.masks import MaskConfig, MultiSeqMaskCollator
from vjepa2_core.training import engine
from vjepa2_core.training.checkpoint import CheckpointError, load_training_checkpoint, unwrap
from vjepa2_core.training.config import ConfigError, Field
from vjepa2_core.training.distributed import ResumableSampler
from vjepa2_core.training.optim import autocast
from vjepa2_core.training.pretrain_step import (
    MaskedBatch,
    jepa_loss,
    model_configs,
    predict_targets,
    target_features,
)

# ---------------------------------------------------------------------------------------------------------------
# Config: the reference pretrain/cooldown yaml layout plus a few defaulted extension keys.
# ---------------------------------------------------------------------------------------------------------------
OPTIONAL = dict(default=None, nullable=True)
MASK_SCHEMA = {  # one multi-block generator; omitted keys take the reference generator defaults
    "spatial_scale": Field(list, [0.2, 0.8]),
    "temporal_scale": Field(list, [1.0, 1.0]),
    "aspect_ratio": Field(list, [0.3, 3.0]),
    "num_blocks": Field(int, 1),
    "max_temporal_keep": Field(float, 1.0),
    "max_keep": Field(int, **OPTIONAL),
    "full_complement": Field(bool, False),
    "pred_full_complement": Field(bool, False),
    "inv_block": Field(bool, False),
}
SCHEMA = {
    "app": Field(str, "vjepa"),
    "folder": Field(str, doc="output folder: latest.pt, e{epoch}.pt, train.csv, val.csv"),
    **engine.LAUNCH_SCHEMA,
    "data": {
        "dataset_type": Field(str, "VideoDataset", choices=("VideoDataset", "videodataset")),
        "datasets": Field(list, doc="CSV lists ('path label' per line), video files or image folders"),
        "datasets_weights": Field(list, **OPTIONAL),
        "dataset_fpcs": Field(list, doc="frames per clip, one per dataset"),
        "batch_size": Field(int),
        "crop_size": Field(int, 256),
        "patch_size": Field(int, 16),
        "tubelet_size": Field(int, 2),
        "fps": Field((int, float), **OPTIONAL),
        "frame_step": Field(int, 4, doc="used when fps is null"),
        "num_clips": Field(int, 1),
        "num_workers": Field(int, 8),
        "persistent_workers": Field(bool, True),
        "pin_mem": Field(bool, True),
        "val_datasets": Field(list, [], doc="held-out video lists for val.csv (none: no validation)"),
        "val_clips": Field(int, 64, doc="held-out clips per validation"),
        "format": format_field("video", ("video", "lerobot")),
        "camera_views": Field(list, [], doc="format lerobot: cameras to use (default: every video feature)"),
    },
    "data_aug": {
        "auto_augment": Field(bool, False),
        "motion_shift": Field(bool, False),
        "random_resize_aspect_ratio": Field(list, [0.75, 1.35]),
        "random_resize_scale": Field(list, [0.3, 1.0]),
        "reprob": Field(float, 0.0),
        "horizontal_flip": Field(bool, True),
    },
    "loss": {"loss_exp": Field(float, 1.0)},
    "mask": Field(list, items=MASK_SCHEMA, doc="list of mask generator configs"),
    "meta": {**engine.RUN_META_SCHEMA},
    "model": {
        "model_name": Field(str, "vit_large"),
        "embed_dim": Field(int, **OPTIONAL),
        "depth": Field(int, **OPTIONAL),
        "num_heads": Field(int, **OPTIONAL),
        "pred_depth": Field(int, 12),
        "pred_embed_dim": Field(int, 384),
        "pred_num_heads": Field(int, **OPTIONAL),
        "uniform_power": Field(bool, True),
        "use_activation_checkpointing": Field(bool, False),
        "use_mask_tokens": Field(bool, True),
        "use_rope": Field(bool, True),
        "zero_init_mask_tokens": Field(bool, True),
        "use_silu": Field(bool, False),
        "use_pred_silu": Field(bool, False),
        "wide_silu": Field(bool, True),
    },
    "optimization": {
        "ema": Field(list, [0.99925, 0.99925]),
        "epochs": Field(int),
        "final_lr": Field(float),
        "final_weight_decay": Field(float),
        "ipe": Field(int, 300, doc="iterations per epoch"),
        "ipe_scale": Field(float, 1.25),
        "is_anneal": Field(bool, False),
        "anneal_ckpt": Field(str, **OPTIONAL),
        "resume_anneal": Field(bool, False, doc="a cooldown continues from folder/latest.pt when it exists"),
        "lr": Field(float),
        "start_lr": Field(float),
        "warmup": Field(float, 0.0),
        "weight_decay": Field(float),
    },
}
STATE_KEYS = ("encoder", "predictor", "target_encoder")
TRAIN_COLUMNS = ["loss", "lr", "wd", "momentum", "clips_per_s", "time_s", "skipped_videos"]
VAL_COLUMNS = ["val_loss"]


def check_config(cfg: dict) -> None:
    """Cross-field checks the schema cannot express (clear errors instead of failures deep in the loop)."""
    data, aug, opt = cfg["data"], cfg["data_aug"], cfg["optimization"]
    if aug["auto_augment"] or aug["motion_shift"] or aug["reprob"] > 0:
        raise ConfigError(
            "data_aug: auto_augment, motion_shift and reprob are not supported (the V-JEPA 2 configs keep them off)"
        )
    if len(data["datasets"]) != len(data["dataset_fpcs"]):
        raise ConfigError(f"data.dataset_fpcs needs one entry per dataset ({len(data['datasets'])})")
    if data["datasets_weights"] is not None and len(data["datasets_weights"]) != len(data["datasets"]):
        raise ConfigError(f"data.datasets_weights needs one entry per dataset ({len(data['datasets'])})")
    if data["crop_size"] % data["patch_size"]:
        raise ConfigError(f"data.crop_size {data['crop_size']} is not a multiple of patch_size {data['patch_size']}")
    if opt["is_anneal"] and not opt["anneal_ckpt"]:
        raise ConfigError("optimization.is_anneal needs optimization.anneal_ckpt (the checkpoint to cool down)")
    if len(opt["ema"]) != 2:
        raise ConfigError(f"optimization.ema must be [start, end], got {opt['ema']}")
    if not cfg["mask"]:
        raise ConfigError("mask: at least one mask generator config is needed")
    for i, m in enumerate(cfg["mask"]):
        try:
            MaskConfig.from_dict(m)
        except ValueError as exc:
            raise ConfigError(f"mask[{i}]: {exc}") from None


def load(path: str | Path, overrides: list[str] = ()) -> dict:
    """The validated config of a run (old key names accepted with a warning)."""
    cfg = engine.load_run_config(path, SCHEMA, overrides)
    check_config(cfg)
    return cfg


# ---------------------------------------------------------------------------------------------------------------
# Data and models: every random draw is keyed by (seed, epoch, index) or by the step, so resume replays it exactly
# ---------------------------------------------------------------------------------------------------------------
def make_dataset(cfg: dict, datasets: list[str], fpcs: list[int]) -> VideoDataset:
    data, aug = cfg["data"], cfg["data_aug"]
    transform = VideoTrainTransform(
        data["crop_size"], aug["random_resize_scale"], aug["random_resize_aspect_ratio"], aug["horizontal_flip"]
    )
    kind, extra = VideoDataset, {}
    if data["format"] == "lerobot":  # LeRobotDataset roots: each (episode, camera) is one video
        from vjepa2_core.data.lerobot.datasets import LeRobotVideoDataset

        kind, extra = LeRobotVideoDataset, {"camera_views": data["camera_views"]}
    return kind(
        datasets,
        fpcs,
        transform,
        fps=data["fps"],
        frame_step=data["frame_step"],
        num_clips=data["num_clips"],
        tubelet_size=data["tubelet_size"],
        seed=cfg["meta"]["seed"],
        **extra,
    )


def make_collator(cfg: dict, dataset: VideoDataset, rank: int = 0) -> MultiSeqMaskCollator:
    data = cfg["data"]
    return MultiSeqMaskCollator(
        cfg["mask"], dataset.fpcs, data["crop_size"], data["patch_size"], data["tubelet_size"], rank=rank
    )


def make_sampler(cfg: dict, dataset: VideoDataset, run: engine.Run):
    """At least ipe batches per rank per epoch; weighted by dataset when `data.datasets_weights` is set."""
    data, seed, (rank, world) = cfg["data"], cfg["meta"]["seed"], (run.dist.rank, run.dist.world_size)
    per_rank = cfg["optimization"]["ipe"] * data["batch_size"]
    if data["datasets_weights"]:
        weights = dataset.sample_weights(data["datasets_weights"])
        return WeightedResumableSampler(weights, per_rank, rank, world, seed=seed)
    return ResumableSampler(len(dataset), rank, world, shuffle=True, seed=seed, min_per_rank=per_rank)


def loader_factory(cfg: dict, run: engine.Run, dataset: VideoDataset, collator: MultiSeqMaskCollator, sampler):
    """`make(epoch, itr)`: the loader over the rest of that epoch (one data pass per epoch)."""
    data, ipe = cfg["data"], cfg["optimization"]["ipe"]

    def make(epoch: int, itr: int) -> DataLoader:
        dataset.set_epoch(epoch)
        sampler.set_epoch(epoch, start_sample=itr * data["batch_size"])
        collator.set_step(epoch * ipe + itr)
        return DataLoader(
            dataset,
            batch_size=data["batch_size"],
            sampler=sampler,
            collate_fn=collator,
            drop_last=True,
            num_workers=data["num_workers"],
            pin_memory=data["pin_mem"] and run.device.type == "cuda",
        )

    return make


def model_config_of(cfg: dict, dataset: VideoDataset) -> dict:
    """num_mask_tokens = mask configs x clip lengths, as in the reference."""
    data = cfg["data"]
    tokens = len(cfg["mask"]) * max(len(data["dataset_fpcs"]), len(dataset.fpcs))
    return model_configs(
        cfg["model"], data["crop_size"], max(dataset.fpcs), tokens, data["patch_size"], data["tubelet_size"]
    )


def start_weights(eng: engine.Engine, resume: bool, models: tuple) -> None:
    """Resume (latest.pt or meta.resume_checkpoint), or start a cooldown from `optimization.anneal_ckpt`."""
    opt = eng.run.cfg["optimization"]
    loaders = {key: unwrap(m).backbone.load_state_dict for key, m in zip(STATE_KEYS, models)}
    source = engine.resume_source(eng.run, resume or (opt["is_anneal"] and opt["resume_anneal"]))
    if source is not None:
        eng.resume(source, loaders)
    elif opt["is_anneal"]:  # weights and optimizer moments from the pretrained run; epoch and schedule restart
        ckpt = load_training_checkpoint(opt["anneal_ckpt"], required=STATE_KEYS)
        try:
            for key, load_state in loaders.items():
                load_state(ckpt[key])
            if ckpt.get("opt") is not None:
                eng.optimizer.load_state_dict(ckpt["opt"])
        except (KeyError, RuntimeError, ValueError) as exc:
            raise CheckpointError(f"cannot cool down from {opt['anneal_ckpt']}: {exc}") from exc


@torch.no_grad()
def evaluate(encoder, predictor, target, val: VideoDataset, collator, cfg: dict, run: engine.Run) -> dict[str, float]:
    """Held-out JEPA loss on the same clips and masks every time (epoch 0 clips, collator step 0)."""
    encoder, predictor = unwrap(encoder).eval(), unwrap(predictor).eval()
    val.set_epoch(0)
    collator.set_step(0)
    n, bs, total = min(len(val), cfg["data"]["val_clips"]), cfg["data"]["batch_size"], 0.0
    for start in range(0, n, bs):
        batch = MaskedBatch.from_collator(collator([val[i] for i in range(start, min(n, start + bs))]), run.device)
        with autocast(run.device, run.dtype):
            loss = jepa_loss(
                predict_targets(encoder, predictor, batch),
                target_features(target, batch.clips),
                batch.masks_pred,
                cfg["loss"]["loss_exp"],
            )
        total += float(loss) * batch.size
    encoder.train(), predictor.train()
    return {"val_loss": total / n}
