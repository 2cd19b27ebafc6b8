"""V-JEPA 2 self-supervised video pretraining and cooldown (spec §4-§5), on the shared training engine.

    python training/pretrain.py --config config/train/pretrain_tiny_cpu.yaml [--set optimization.epochs=2 ...]
    torchrun --nproc_per_node=8 training/pretrain.py --config config/train/pretrain_vitl16_256px_16f.yaml --resume

An encoder sees only the context tokens of multi-block masked clips; a predictor fills in the features of the
masked tokens; the target is the layer-normed output of an EMA copy of the encoder on the full clip; loss L1.
Checkpoints (`folder/latest.pt`, `folder/e{epoch}.pt`) use the reference keys plus `model_config`, so
`vjepa2_core.hub.load_encoder_and_predictor(path)` reads them back. A cooldown (`optimization.is_anneal`) starts
from `optimization.anneal_ckpt` with the linear-decay schedule.
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from vjepa2_core.data.video_dataset import VideoDataset, VideoTrainTransform
from vjepa2_core.data.weighted_sampler import WeightedResumableSampler
from vjepa2_core.masks import MaskConfig, MultiSeqMaskCollator
from vjepa2_core.training.checkpoint import (
    CheckpointError,
    load_training_checkpoint,
    rng_state,
    save_training_checkpoint,
    seed_everything,
    set_rng_state,
    unwrap,
)
from vjepa2_core.training.config import ConfigError, Field, dump_config, load_config, training_arg_parser
from vjepa2_core.training.distributed import ResumableSampler, all_reduce_mean, cleanup, init_distributed
from vjepa2_core.training.metrics import CSVLogger, Throughput
from vjepa2_core.training.optim import autocast, build_adamw, make_grad_scaler, resolve_dtype
from vjepa2_core.training.pretrain_step import (
    MaskedBatch,
    build_models,
    ema_momentum,
    ema_update,
    jepa_loss,
    model_configs,
    predict_targets,
    target_features,
)
from vjepa2_core.training.schedules import build_scheduler

# ---------------------------------------------------------------------------------------------------------------
# Config: the reference pretrain/cooldown yaml layout (required keys) plus a few defaulted extension keys.
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
    "folder": Field(str, doc="output folder for checkpoints and log.csv"),
    "nodes": Field(int, 1),  # launcher fields (SLURM); unused by the loop
    "tasks_per_node": Field(int, 1),
    "cpus_per_task": Field(int, **OPTIONAL),
    "mem_per_gpu": Field(str, **OPTIONAL),
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
    "meta": {
        "dtype": Field(str, "bfloat16", choices=("float32", "bfloat16", "float16")),
        "eval_freq": Field(int, 100),
        "load_checkpoint": Field(bool, False, doc="resume from folder/latest.pt (same as --resume)"),
        "read_checkpoint": Field(str, **OPTIONAL),
        "save_every_freq": Field(int, 50, doc="keep e{epoch}.pt every this many epochs"),
        "seed": Field(int, 234),
        "use_sdpa": Field(bool, True),
        "device": Field(str, "auto", choices=("auto", "cpu", "cuda")),
        "save_every_steps": Field(int, 0, doc="also write latest.pt every N steps (0: only at epoch ends)"),
        "log_every": Field(int, 10),
        "max_steps": Field(int, **OPTIONAL),
    },
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
LOG_COLUMNS = ["step", "epoch", "itr", "loss", "lr", "wd", "momentum", "clips_per_s", "time_s", "skipped_videos"]


def check_config(cfg: dict) -> None:
    """Cross-field checks the schema cannot express (clear errors instead of failures deep in the loop)."""
    data, aug, opt = cfg["data"], cfg["data_aug"], cfg["optimization"]
    if aug["auto_augment"] or aug["motion_shift"] or aug["reprob"] > 0:
        raise ConfigError(
            "data_aug: auto_augment, motion_shift and reprob are not supported (the V-JEPA 2 configs " "keep them off)"
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


def load_states(ckpt: dict, encoder, predictor, target) -> None:
    for key, module in zip(STATE_KEYS, (encoder, predictor, target)):
        unwrap(module).backbone.load_state_dict(ckpt[key])


def main(argv: list[str] | None = None) -> int:
    args = training_arg_parser("V-JEPA 2 pretraining / cooldown").parse_args(argv)
    try:
        cfg = load_config(args.config, SCHEMA, args.overrides)
        check_config(cfg)
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 2
    data, meta, opt = cfg["data"], cfg["meta"], cfg["optimization"]
    dist = init_distributed(meta["device"])
    device = dist.device
    folder = Path(cfg["folder"])
    latest = folder / "latest.pt"
    if dist.is_main:
        folder.mkdir(parents=True, exist_ok=True)
        dump_config(cfg, folder / "config.yaml")
    seed_everything(meta["seed"])
    dtype = resolve_dtype(meta["dtype"], device)

    # -- data: every random draw is keyed by (seed, epoch, index) or by the step, so resume replays it exactly
    transform = VideoTrainTransform(
        data["crop_size"],
        cfg["data_aug"]["random_resize_scale"],
        cfg["data_aug"]["random_resize_aspect_ratio"],
        cfg["data_aug"]["horizontal_flip"],
    )
    dataset = VideoDataset(
        data["datasets"],
        data["dataset_fpcs"],
        transform,
        fps=data["fps"],
        frame_step=data["frame_step"],
        num_clips=data["num_clips"],
        tubelet_size=data["tubelet_size"],
        seed=meta["seed"],
    )
    collator = MultiSeqMaskCollator(
        cfg["mask"], dataset.fpcs, data["crop_size"], data["patch_size"], data["tubelet_size"], rank=dist.rank
    )
    batch_size, ipe = data["batch_size"], opt["ipe"]
    if data["datasets_weights"]:
        weights = dataset.sample_weights(data["datasets_weights"])
        sampler = WeightedResumableSampler(weights, ipe * batch_size, dist.rank, dist.world_size, seed=meta["seed"])
    else:
        sampler = ResumableSampler(
            len(dataset), dist.rank, dist.world_size, shuffle=True, seed=meta["seed"], min_per_rank=ipe * batch_size
        )

    # -- models, optimizer, schedules (num_mask_tokens = mask configs x clip lengths, as in the reference)
    model_config = model_configs(
        cfg["model"],
        data["crop_size"],
        max(dataset.fpcs),
        len(cfg["mask"]) * max(len(data["dataset_fpcs"]), len(dataset.fpcs)),
        data["patch_size"],
        data["tubelet_size"],
    )
    encoder, predictor, target = (m.to(device) for m in build_models(model_config))
    optimizer = build_adamw([(encoder, 1.0), (predictor, 1.0)])
    scheduler = build_scheduler(
        optimizer, opt, "linear_decay" if opt["is_anneal"] else "warmup_cosine", ipe_scale=opt["ipe_scale"]
    )
    scaler = make_grad_scaler(device, dtype)
    total_steps = int(ipe * opt["epochs"] * opt["ipe_scale"])

    start_epoch = start_itr = 0
    resuming = args.resume or meta["load_checkpoint"] or (opt["is_anneal"] and opt["resume_anneal"])
    resume_from = latest if resuming and latest.is_file() else None
    if resume_from is None and meta["read_checkpoint"]:
        resume_from = Path(meta["read_checkpoint"])
    try:
        if resume_from is not None:
            ckpt = load_training_checkpoint(resume_from, required=(*STATE_KEYS, "opt", "epoch"))
            load_states(ckpt, encoder, predictor, target)
            optimizer.load_state_dict(ckpt["opt"])
            if ckpt.get("scaler") is not None:
                scaler.load_state_dict(ckpt["scaler"])
            start_epoch, start_itr = int(ckpt["epoch"]), int(ckpt.get("itr", 0))
            scheduler.load_state_dict({"step": start_epoch * ipe + start_itr})
            if ckpt.get("rng") is not None:
                set_rng_state(ckpt["rng"])
        elif opt["is_anneal"]:
            ckpt = load_training_checkpoint(opt["anneal_ckpt"], required=STATE_KEYS)
            load_states(ckpt, encoder, predictor, target)
            if ckpt.get("opt") is not None:
                optimizer.load_state_dict(ckpt["opt"])  # epoch and schedule start again at 0
    except (CheckpointError, KeyError, RuntimeError, ValueError) as exc:
        print(f"cannot start from checkpoint: {exc}", file=sys.stderr)
        return 3
    if dist.distributed:
        ddp = dict(device_ids=[device.index]) if device.type == "cuda" else {}
        encoder = DistributedDataParallel(encoder, **ddp)
        # mask tokens of clip lengths absent from a batch get no gradient
        predictor = DistributedDataParallel(predictor, find_unused_parameters=True, **ddp)

    def save(epoch: int, itr: int, loss: float) -> None:
        if not dist.is_main:
            return
        state = {
            "encoder": unwrap(encoder).backbone,
            "predictor": unwrap(predictor).backbone,
            "target_encoder": target.backbone,
            "opt": optimizer.state_dict(),
            "scaler": scaler.state_dict() if scaler.is_enabled() else None,
            "epoch": epoch,
            "itr": itr,
            "loss": loss,
            "batch_size": batch_size,
            "world_size": dist.world_size,
            "lr": scheduler.lr,
            "model_config": model_config,
            "rng": rng_state(),
        }
        every = meta["save_every_freq"]
        snapshot = folder / f"e{epoch}.pt" if itr == 0 and every > 0 and epoch % every == 0 else None
        save_training_checkpoint(latest, state, snapshot=snapshot)

    logger = CSVLogger(
        folder / "log.csv",
        LOG_COLUMNS,
        enabled=dist.is_main,
        resume_step=start_epoch * ipe + start_itr if resume_from is not None else None,
    )
    meter, t0 = Throughput(), time.perf_counter()
    step, loss_value = start_epoch * ipe + start_itr, math.nan
    encoder.train()
    predictor.train()

    # -- the loop: `ipe` iterations per epoch, EMA after every optimizer step
    for epoch in range(start_epoch, opt["epochs"]):
        dataset.set_epoch(epoch)
        sampler.set_epoch(epoch, start_sample=start_itr * batch_size)
        collator.set_step(epoch * ipe + start_itr)
        loader = DataLoader(
            dataset,
            batch_size=batch_size,
            sampler=sampler,
            collate_fn=collator,
            drop_last=True,
            num_workers=data["num_workers"],
            pin_memory=data["pin_mem"] and device.type == "cuda",
        )
        for itr, groups in zip(range(start_itr, ipe), loader):
            batch = MaskedBatch.from_collator(groups, device)
            lr, wd = scheduler.step()
            with autocast(device, dtype):
                h = target_features(target, batch.clips)
                z = predict_targets(encoder, predictor, batch)
                loss = jepa_loss(z, h, batch.masks_pred, cfg["loss"]["loss_exp"])
            if not torch.isfinite(loss):
                print(f"non-finite loss {loss.item()} at step {step}; stopping", file=sys.stderr)
                return 4
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            momentum = ema_momentum(step, opt["ema"], total_steps)
            ema_update(target.backbone, unwrap(encoder).backbone, momentum)
            step += 1
            meter.update(batch.size * dist.world_size)
            if step % meta["log_every"] == 0 or itr == ipe - 1:
                loss_value = float(all_reduce_mean(loss.detach()))
                logger.log(
                    dict(
                        step=step,
                        epoch=epoch,
                        itr=itr + 1,
                        loss=loss_value,
                        lr=lr,
                        wd=wd,
                        momentum=momentum,
                        clips_per_s=meter.rate(),
                        time_s=time.perf_counter() - t0,
                        skipped_videos=sum(dataset.skipped.values()),  # unreadable + too short, so far
                    )
                )
            if meta["save_every_steps"] and step % meta["save_every_steps"] == 0 and itr + 1 < ipe:
                save(epoch, itr + 1, loss_value)
            if meta["max_steps"] is not None and step >= meta["max_steps"]:
                save(epoch, itr + 1, loss_value) if itr + 1 < ipe else save(epoch + 1, 0, loss_value)
                logger.close()
                cleanup()
                return 0
        start_itr = 0
        save(epoch + 1, 0, loss_value)
    logger.close()
    cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
