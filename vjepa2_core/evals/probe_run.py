"""The frozen-encoder probe's config and run pieces: the schema with its checks, the run builder (frozen model,
loaders, heads with their optimizers, restored from a probe file), the collapse check, the reference-layout
`latest.pt` and the per-validation report. `training/eval_probe.py` keeps the visible loop and `main`.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from types import SimpleNamespace

import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from vjepa2_core.evals.build import EVAL_NAMES, build_classifiers, build_datasets, build_feature_model
from vjepa2_core.evals.engine import ANTICIPATION, evaluate, frozen_features, move_batch
from vjepa2_core.evals.metrics import token_spread
from vjepa2_core.evals.probe import build_head_optimizers, load_probe_states, probe_state
from vjepa2_core.hub import load_checkpoint
from vjepa2_core.training.checkpoint import save_training_checkpoint
from vjepa2_core.training.config import ConfigError, Field, load_config
from vjepa2_core.training.distributed import ResumableSampler
from vjepa2_core.training.metrics import CSVLogger
from vjepa2_core.training.optim import autocast, make_grad_scaler

OPTIONAL = dict(default=None, nullable=True)
HEAD_SCHEMA = {k: Field(float) for k in ("lr", "start_lr", "final_lr", "warmup", "weight_decay", "final_weight_decay")}
SCHEMA = {
    "eval_name": Field(str, choices=EVAL_NAMES),
    "folder": Field(str, doc="output root; the run lives in <folder>/<eval_name>/<tag>"),
    "tag": Field(str, **OPTIONAL),
    "resume_checkpoint": Field(bool, False),
    "val_only": Field(bool, False),
    "probe_checkpoint": Field(str, **OPTIONAL),  # extension: the probe file --val-only reads
    "num_workers": Field(int, 0),
    "nodes": Field(int, 1),  # launcher fields (SLURM); unused by the loop
    "tasks_per_node": Field(int, 1),
    "cpus_per_task": Field(int, **OPTIONAL),
    "mem_per_gpu": Field(str, **OPTIONAL),
    "max_workers": Field(int, **OPTIONAL),
    "experiment": {
        "classifier": {"num_heads": Field(int, 16), "num_probe_blocks": Field(int, 4)},
        "data": {
            "dataset_type": Field(str, "VideoDataset"),
            "dataset": Field(str, **OPTIONAL),  # EK100 name
            "dataset_train": Field(str),
            "dataset_val": Field(str),
            "base_path": Field(str, **OPTIONAL),
            "num_classes": Field(int, **OPTIONAL),
            "resolution": Field(int, 256),
            "frames_per_clip": Field(int, 16),
            "frame_step": Field(int, 4),
            "num_segments": Field(int, 1),
            "num_views_per_segment": Field(int, 1),
            "clip_start_multiple": Field(int, 1),  # extension: training clip starts rounded down to a multiple
            "frames_per_second": Field(float, 8.0),
            "anticipation_time_sec": Field((float, list), 1.0),
            "train_anticipation_time_sec": Field((float, list), 1.0),
            "auto_augment": Field(bool, True),
            "motion_shift": Field(bool, False),
            "reprob": Field(float, 0.25),
            "horizontal_flip": Field(bool, False),
            "random_resize_scale": Field(list, [0.08, 1.0]),
            "random_resize_aspect_ratio": Field(list, [0.75, 4 / 3]),
            "file_format": Field(int, 1),
            "num_workers": Field(int, **OPTIONAL),
            "pin_memory": Field(bool, False),
        },
        "optimization": {
            "batch_size": Field(int),
            "num_epochs": Field(int),
            "use_bfloat16": Field(bool, False),
            "use_pos_embed": Field(bool, False),
            "use_focal_loss": Field(bool, False),
            "multihead_kwargs": Field(list, items=HEAD_SCHEMA, doc="one probe head per lr x wd setting"),
        },
    },
    "model_kwargs": {
        "checkpoint": Field(str),
        "module_name": Field(str, **OPTIONAL),
        "random_init": Field(bool, False),  # extension: random-encoder baseline
        "random_seed": Field(int, 0),
        "pretrain_kwargs": {"encoder": Field(dict), "predictor": Field(dict, **OPTIONAL)},
        "wrapper_kwargs": Field(dict, {}),
    },
    "meta": {
        "device": Field(str, "auto"),
        "seed": Field(int, 0),
        "log_every": Field(int, 10),
        "val_every": Field(int, 1, doc="epochs between validations (the last epoch is always validated)"),
    },
}
LOG_COLUMNS = (
    "step",
    "epoch",
    "train_loss",
    "val_score",
    "best_head",
    "verb_recall",
    "noun_recall",
    "clips_per_s",
    "time_s",
)


def check_config(cfg: dict) -> None:
    data, opt = cfg["experiment"]["data"], cfg["experiment"]["optimization"]
    if not opt["multihead_kwargs"]:
        raise ConfigError("experiment.optimization.multihead_kwargs: needs at least one head")
    if cfg["eval_name"] != ANTICIPATION and not data["num_classes"]:
        raise ConfigError("experiment.data.num_classes: required for classification probes")
    if cfg["eval_name"] == ANTICIPATION and not data["base_path"]:
        raise ConfigError("experiment.data.base_path: the EK100 video root is required")
    if cfg["meta"]["val_every"] < 1:
        raise ConfigError(f"meta.val_every: must be >= 1 (epochs), got {cfg['meta']['val_every']}")
    if opt["use_focal_loss"]:
        raise ConfigError("experiment.optimization.use_focal_loss: not supported (the released configs use CE)")


def load(path: str | Path, overrides: list[str] = ()) -> dict:
    """The validated config of an eval run."""
    cfg = load_config(path, SCHEMA, overrides)
    check_config(cfg)
    return cfg


def make_loader(dataset, batch_size: int, dist, training: bool, seed: int, workers: int) -> tuple[DataLoader, object]:
    sampler = ResumableSampler(len(dataset), dist.rank, dist.world_size, shuffle=training, seed=seed)
    return DataLoader(dataset, batch_size, sampler=sampler, num_workers=workers, drop_last=False), sampler


class ProbeRun(SimpleNamespace):
    """Everything one eval run holds: frozen model, loaders, heads with their optimizers and schedules."""


def build_run(cfg: dict, val_only: bool, resume: bool, dist) -> ProbeRun:
    """Models, data and heads; restores heads (and, when resuming, optimizers and epoch) from a probe file."""
    exp, name = cfg["experiment"], cfg["eval_name"]
    opt_cfg, seed = exp["optimization"], cfg["meta"]["seed"]
    device = dist.device
    run = ProbeRun(name=name, device=device, folder=Path(cfg["folder"]) / name / (cfg["tag"] or ""), start_epoch=0)
    run.dtype = torch.bfloat16 if opt_cfg["use_bfloat16"] and device.type == "cuda" else torch.float32
    run.latest = run.folder / "latest.pt"
    run.model = build_feature_model(cfg).to(device)
    run.train_set, run.val_set, classes = build_datasets(cfg, seed=seed)
    run.class_sizes = (len(classes.verbs), len(classes.nouns), len(classes.actions)) if classes else None
    probe_file = Path(cfg["probe_checkpoint"]) if val_only and cfg["probe_checkpoint"] else run.latest
    stored = load_checkpoint(probe_file) if (val_only or resume) and probe_file.is_file() else None
    if val_only and stored is None:
        raise FileNotFoundError(f"--val-only needs a probe file: {probe_file} does not exist")
    run.heads = opt_cfg["multihead_kwargs"]
    if val_only:
        run.heads = run.heads[:1] * len(stored["classifiers"])  # a released file holds one head
    run.classifiers = [c.to(device) for c in build_classifiers(cfg, run.model.embed_dim, classes, len(run.heads))]
    workers = exp["data"]["num_workers"] if exp["data"]["num_workers"] is not None else cfg["num_workers"]
    run.batch_size = opt_cfg["batch_size"]
    run.train_loader, run.train_sampler = make_loader(run.train_set, run.batch_size, dist, True, seed, workers)
    run.val_loader, _ = make_loader(run.val_set, run.batch_size, dist, False, seed, workers)
    run.ipe = len(run.train_loader)
    run.optimizers, run.schedulers = build_head_optimizers(run.classifiers, run.heads, run.ipe, opt_cfg["num_epochs"])
    run.scaler = make_grad_scaler(device, run.dtype)
    if stored is not None:
        load_probe_states(run.classifiers, stored["classifiers"], str(probe_file))
        if not val_only:
            for o, state in zip(run.optimizers, stored["opt"], strict=True):
                o.load_state_dict(state)
            run.start_epoch = int(stored["epoch"])
            for sched in run.schedulers:
                sched.load_state_dict({"step": run.start_epoch * run.ipe})
    if dist.distributed:
        ddp = dict(device_ids=[device.index]) if device.type == "cuda" else {}
        run.classifiers = [DistributedDataParallel(c, static_graph=True, **ddp) for c in run.classifiers]
    return run


@torch.no_grad()
def feature_spread(run: ProbeRun) -> dict[str, float]:
    """Token std and effective rank of the frozen features of the first validation batch (a collapse check)."""
    inputs, indices, _ = move_batch(next(iter(run.val_loader)), run.name, run.device)
    with autocast(run.device, run.dtype):
        feats = frozen_features(run.model, inputs, indices, run.name)
    return token_spread(feats[0].float())


def save(run: ProbeRun, epoch: int, world_size: int) -> None:
    """`latest.pt` in the reference layout (heads with the `module.` prefix, one optimizer state per head)."""
    state = {
        "classifiers": [probe_state(c) for c in run.classifiers],
        "opt": [o.state_dict() for o in run.optimizers],
        "scaler": [run.scaler.state_dict()] if run.scaler.is_enabled() else None,
        "epoch": epoch,
        "batch_size": run.batch_size,
        "world_size": world_size,
    }
    save_training_checkpoint(run.latest, state)


def report(run: ProbeRun, epoch: int, train_loss: float, rate: float, logger: CSVLogger, is_main: bool) -> dict:
    """Validate every head; log and print the best one; write results.json."""
    board = evaluate(run.model, run.classifiers, run.val_loader, run.name, run.device, run.dtype, run.class_sizes)
    scores, all_scores = board.main_scores(), board.scores()
    best = max(range(len(scores)), key=scores.__getitem__)
    row = dict(
        step=epoch, epoch=epoch, train_loss=train_loss, val_score=scores[best], best_head=best, clips_per_s=rate
    )
    if run.name == ANTICIPATION:
        row.update(verb_recall=all_scores["verb"][best], noun_recall=all_scores["noun"][best])
    logger.log({**row, "time_s": time.perf_counter() - run.t0})
    metric = "action mean-class recall@5" if run.name == ANTICIPATION else "top-1"
    lr, wd = run.heads[best]["lr"], run.heads[best]["weight_decay"]
    result = {"epoch": epoch, "best_head": best, "best": scores[best], **all_scores, **run.spread}
    if is_main:
        print(f"[epoch {epoch}] val {metric} {scores[best]:.2f}% (best head {best}: lr {lr:g} wd {wd:g})", flush=True)
        (run.folder / "results.json").write_text(json.dumps(result))
    return result
