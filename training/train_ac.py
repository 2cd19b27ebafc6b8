"""Action-conditioned post-training of the V-JEPA 2 predictor on DROID-format data (reference `app/vjepa_droid`).

    python training/train_ac.py --config config/train/ac_tiny_cpu.yaml --set data.datasets=[my/trajectories.csv]
    torchrun --nproc-per-node 8 training/train_ac.py --config config/train/droid-256px-8f.yaml [--resume]
    python training/train_ac.py --config ... --slurm        # submit with submitit (nodes x tasks_per_node)

The config is a reference-layout YAML; SCHEMA below lists every key (reference keys are required, the extensions
have defaults). One optimisation step = frozen encoder on each frame -> teacher-forcing + rollout L1 loss on the
AC predictor -> AdamW with a warmup-stable-decay learning rate and cosine weight decay.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

import torch
from tqdm import tqdm

from vjepa2_core.data.droid import DROIDDataError, DROIDDataset, collate, read_index, split_episodes
from vjepa2_core.data.feature_cache import FeatureCache
from vjepa2_core.hub import CheckpointError
from vjepa2_core.models.conditioning import Conditioning
from vjepa2_core.training import ac
from vjepa2_core.training.checkpoint import (
    load_training_checkpoint,
    rng_state,
    save_training_checkpoint,
    seed_everything,
    set_rng_state,
    unwrap,
)
from vjepa2_core.training.config import ConfigError, Field, dump_config, load_config, training_arg_parser
from vjepa2_core.training.distributed import (
    ResumableSampler,
    all_reduce_mean,
    all_reduce_sum,
    barrier,
    cleanup,
    gather_objects,
    init_distributed,
)
from vjepa2_core.training.metrics import CSVLogger, Throughput
from vjepa2_core.training.optim import autocast, build_adamw, make_grad_scaler, resolve_dtype
from vjepa2_core.training.schedules import build_scheduler

# ----------------------------------------------------------------------------------------------------- config
Num = (int, float)
SCHEMA = {
    "app": Field(str, choices=("vjepa_droid",)),
    "folder": Field(str, doc="output folder: latest.pt, e<epoch>.pt, train.csv, val.csv"),
    "nodes": Field(int, default=1),
    "tasks_per_node": Field(int, default=1),
    "cpus_per_task": Field(int, default=8),
    "mem_per_gpu": Field(str, default="64G"),
    "data": {
        "batch_size": Field(int),
        "camera_views": Field(list),
        "crop_size": Field(int),
        "datasets": Field(list, doc="CSV files listing trajectory directories"),
        "dataset_fpcs": Field(list),
        "fps": Field(Num),
        "num_workers": Field(int),
        "patch_size": Field(int),
        "pin_mem": Field(bool),
        "stereo_view": Field(bool),
        "tubelet_size": Field(int),
        # extensions
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
        "dtype": Field(str, choices=("float32", "bfloat16", "float16")),
        "eval_freq": Field(int, doc="steps between held-out diagnostics"),
        "resume_checkpoint": Field(str, default=None),
        "load_predictor": Field(bool),
        "pretrain_checkpoint": Field(str, nullable=True, doc="frozen encoder weights; null: random (tests)"),
        "context_encoder_key": Field(str),
        "target_encoder_key": Field(str),
        "save_every_freq": Field(int, doc="keep e<epoch>.pt every this many epochs"),
        "seed": Field(int),
        "use_sdpa": Field(bool),
        # extensions
        "device": Field(str, default="auto", choices=("auto", "cpu", "cuda")),
        "num_threads": Field(int, default=None),
        "checkpoint_every_steps": Field(int, default=0, doc="also write latest.pt every N steps (0: per epoch)"),
        "log_every": Field(int, default=1),
        "max_steps": Field(int, default=None, doc="stop after this many steps (the schedule is unchanged)"),
    },
    "model": {
        "model_name": Field(str),
        "pred_depth": Field(int),
        "pred_embed_dim": Field(int),
        "pred_is_frame_causal": Field(bool),
        "pred_num_heads": Field(int),
        "uniform_power": Field(bool),
        "use_activation_checkpointing": Field(bool),
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
    },
}
UNSUPPORTED = {  # reference options this implementation refuses rather than ignores
    "data.stereo_view": True,
    "data_aug.auto_augment": True,
    "data_aug.motion_shift": True,
}
TRAIN_COLUMNS = ["step", "epoch", "loss", "jloss", "sloss", "lr", "wd", "clips_per_s", "skipped", "time"]
VAL_COLUMNS = ["step", "epoch", "val_loss", "val_jloss", "val_copy_loss", "val_zero_action_loss"]
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
    if not cfg["data"]["datasets"]:
        raise ConfigError("data.datasets: list at least one CSV of trajectory directories")
    return cfg


# ------------------------------------------------------------------------------------------------------ data
def make_datasets(cfg: dict, feature_shape: tuple[int, int] | None, cache: FeatureCache | None):
    d, aug, seed = cfg["data"], cfg["data_aug"], cfg["meta"]["seed"]
    train_eps = read_index(d["datasets"])
    if d["val_datasets"]:
        val_eps = read_index(d["val_datasets"])
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
    train = DROIDDataset(
        d["datasets"],
        episodes=train_eps,
        horizontal_flip=aug["horizontal_flip"],
        feature_cache=cache,
        feature_shape=feature_shape if cache else None,
        **kw,
    )
    val = DROIDDataset(d["datasets"], episodes=val_eps, **kw) if val_eps else None
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
    """Held-out diagnostics on a fixed set of clips (the same every time)."""
    cond = cond or Conditioning()
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
    return {k: v / n for k, v in sums.items()}


# ------------------------------------------------------------------------------------------------------ train
def train(cfg: dict, resume: bool = False) -> dict:
    meta, opt_cfg, data_cfg, loss_cfg = cfg["meta"], cfg["optimization"], cfg["data"], cfg["loss"]
    info = init_distributed(meta["device"])
    device, is_main = info.device, info.is_main
    logging.basicConfig(level=logging.INFO if is_main else logging.WARNING, format="%(asctime)s %(message)s")
    if meta["num_threads"]:
        torch.set_num_threads(meta["num_threads"])
    seed_everything(meta["seed"])
    folder = Path(cfg["folder"])
    if is_main:
        folder.mkdir(parents=True, exist_ok=True)
        dump_config(cfg, folder / "config.yaml")
    dtype = resolve_dtype(meta["dtype"], device)

    # models: frozen encoder + trainable AC predictor
    mcfg = ac.model_config(cfg)
    encoder, predictor = ac.build_models(cfg, mcfg)
    encoder, predictor = encoder.to(device), predictor.to(device)
    g2 = (data_cfg["crop_size"] // data_cfg["patch_size"]) ** 2
    model = predictor
    if info.distributed:
        model = torch.nn.parallel.DistributedDataParallel(
            predictor, device_ids=[device.index] if device.type == "cuda" else None, static_graph=True
        )
    optimizer = build_adamw([(predictor, 1.0)], betas=tuple(opt_cfg["betas"]), eps=opt_cfg["eps"])
    scaler = make_grad_scaler(device, dtype)
    scheduler = build_scheduler(optimizer, opt_cfg, "wsd")

    # data: one clip per trajectory per pass; a pass is resumable at any batch
    cache = None
    if data_cfg["feature_cache"]:
        cache = FeatureCache(
            data_cfg["feature_cache"],
            {
                "encoder": mcfg["encoder"],
                "weights": meta["pretrain_checkpoint"],
                "seed": meta["seed"],
                "crop": data_cfg["crop_size"],
                "aug": cfg["data_aug"],
                "normalize": loss_cfg["normalize_reps"],
            },
            data_cfg["feature_cache_dtype"],
        )
    train_ds, val_ds = make_datasets(cfg, (g2, mcfg["encoder"]["embed_dim"]), cache)
    cond = Conditioning()
    if cfg["model"]["normalize_conditioning"]:  # stored in every checkpoint's model_config, used by the planner
        cond = ac.fit_conditioning(train_ds)
        mcfg["conditioning"] = cond.to_config()
        log.info("conditioning normaliser from %d training episodes: %s", len(train_ds), cond)
    bs = data_cfg["batch_size"]
    sampler = ResumableSampler(len(train_ds), info.rank, info.world_size, True, meta["seed"], min_per_rank=bs)
    batches_per_pass = len(sampler) // bs

    # resume: model, optimiser, scaler, schedule step, sampler position (= step), RNG
    step, skipped_total = 0, 0
    ckpt_path = Path(meta["resume_checkpoint"]) if meta["resume_checkpoint"] else folder / "latest.pt"
    if (resume or meta["resume_checkpoint"]) and ckpt_path.is_file():
        ckpt = load_training_checkpoint(ckpt_path, required=("predictor", "opt", "step", "scheduler", "rng"))
        predictor.load_state_dict(ckpt["predictor"])
        optimizer.load_state_dict(ckpt["opt"])
        if ckpt.get("scaler") is not None and scaler.is_enabled():
            scaler.load_state_dict(ckpt["scaler"])
        scheduler.load_state_dict(ckpt["scheduler"])
        step, skipped_total = int(ckpt["step"]), int(ckpt.get("skipped", 0))
        rngs = ckpt["rng"]
        set_rng_state(rngs[info.rank] if info.rank < len(rngs) else rngs[0])
        log.info("resumed from %s at step %d (epoch %d)", ckpt_path, step, step // opt_cfg["ipe"])
    elif resume:
        log.info("no checkpoint at %s: starting from scratch", ckpt_path)
    resumed_at = step if step else None
    train_log = CSVLogger(folder / "train.csv", TRAIN_COLUMNS, is_main, resume_step=resumed_at or 0)
    val_log = CSVLogger(folder / "val.csv", VAL_COLUMNS, is_main, resume_step=resumed_at or 0)

    def save(snapshot: Path | None = None) -> None:
        rngs = gather_objects(rng_state())
        if is_main:
            state = ac.checkpoint_state(
                encoder, unwrap(model), mcfg,
                opt=optimizer.state_dict(), scaler=scaler.state_dict() if scaler.is_enabled() else None,
                epoch=step // opt_cfg["ipe"], loss=last_loss, batch_size=bs, world_size=info.world_size,
                lr=scheduler.lr, step=step, scheduler=scheduler.state_dict(), rng=rngs, skipped=skipped_total,
                config=cfg,
            )  # fmt: skip
            save_training_checkpoint(folder / "latest.pt", state, snapshot)
        barrier()

    total = opt_cfg["epochs"] * opt_cfg["ipe"]
    if meta["max_steps"] is not None:
        total = min(total, meta["max_steps"])
    log.info(
        "AC post-training: %d train / %d held-out episodes, batch %d x %d ranks, %d steps on %s (%s)",
        len(train_ds), len(val_ds) if val_ds else 0, bs, info.world_size, total, device, dtype,
    )  # fmt: skip
    predictor.train()
    last_loss, meter = float("nan"), Throughput()
    bar = tqdm(total=total, initial=step, disable=not is_main, dynamic_ncols=True, mininterval=1.0)
    while step < total:
        data_pass, offset = divmod(step, batches_per_pass)
        sampler.set_epoch(data_pass, offset * bs)
        train_ds.set_epoch(data_pass)
        for batch in make_loader(train_ds, sampler, cfg, device, data_pass):
            lr, wd = scheduler.step()
            with autocast(device, dtype):
                h = targets(batch, encoder, cache, train_ds, cfg, device)
                ext = batch["extrinsics"].to(device) if cfg["model"]["use_extrinsics"] else None
                jloss, sloss = ac.ac_losses(
                    model,
                    h,
                    cond.actions(batch["actions"].to(device)),
                    cond.states(batch["states"].to(device)),
                    ext,
                    loss_cfg["auto_steps"],
                    loss_cfg["loss_exp"],
                    loss_cfg["normalize_reps"],
                )
                loss = jloss + sloss
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            step += 1
            meter.update(bs * info.world_size)
            stats = all_reduce_mean(torch.stack([loss.detach(), jloss.detach(), sloss.detach()]).float().cpu())
            skipped_total += int(all_reduce_sum(batch["skipped"].sum()))
            last_loss = float(stats[0])
            if not torch.isfinite(stats[0]):
                raise FloatingPointError(f"loss is {last_loss} at step {step}; lower optimization.lr")
            if step % meta["log_every"] == 0 or step == total:
                rate = meter.rate()
                train_log.log(
                    {"step": step, "epoch": step // opt_cfg["ipe"], "loss": last_loss, "jloss": float(stats[1]),
                     "sloss": float(stats[2]), "lr": lr, "wd": wd, "clips_per_s": rate, "skipped": skipped_total,
                     "time": time.time()}
                )  # fmt: skip
                bar.set_postfix(loss=f"{last_loss:.4f}", clips_s=f"{rate:.1f}", lr=f"{lr:.2e}")
            bar.update(1)
            if val_ds is not None and meta["eval_freq"] > 0 and (step % meta["eval_freq"] == 0 or step == total):
                if is_main:
                    diag = evaluate(unwrap(model).eval(), encoder, val_ds, cfg, device, dtype, cond)
                    unwrap(model).train()
                    val_log.log({"step": step, "epoch": step // opt_cfg["ipe"], **diag})
                    log.info("step %d held-out: %s", step, {k: round(v, 4) for k, v in diag.items()})
                barrier()
            epoch_end = step % opt_cfg["ipe"] == 0
            if (
                epoch_end
                or step == total
                or (meta["checkpoint_every_steps"] and step % meta["checkpoint_every_steps"] == 0)
            ):
                epoch = step // opt_cfg["ipe"]
                keep = epoch_end and epoch % meta["save_every_freq"] == 0
                save(folder / f"e{epoch}.pt" if keep else None)
            if step >= total:
                break
    bar.close()
    if device.type == "cuda":
        log.info("peak GPU memory %.1f GiB", torch.cuda.max_memory_allocated(device) / 2**30)
    train_log.close()
    val_log.close()
    cleanup()
    return {"step": step, "loss": last_loss, "skipped": skipped_total, "folder": str(folder)}


def main(argv: list[str] | None = None) -> int:
    parser = training_arg_parser(__doc__.splitlines()[0])
    parser.add_argument("--slurm", action="store_true", help="submit to SLURM with submitit (nodes x tasks_per_node)")
    args = parser.parse_args(argv)
    try:
        cfg = check_config(load_config(args.config, SCHEMA, args.overrides))
        if args.slurm:
            from vjepa2_core.training.slurm import submit

            print(f"submitted SLURM job {submit(train, cfg, resume=True).job_id}")
            return 0
        train(cfg, resume=args.resume)
    except (ConfigError, DROIDDataError, CheckpointError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
