"""Frozen-encoder attentive-probe evaluation (reference `evals/*_frozen`), on the shared training engine.

    python training/eval_probe.py --config config/eval/tiny_cpu/video_shapes.yaml [--set k=v ...] [--val-only]
    torchrun --nproc_per_node=8 training/eval_probe.py --config config/eval/vitl/ssv2.yaml

The encoder (and, for anticipation, the predictor) stays frozen; every `multihead_kwargs` entry is a probe head
with its own AdamW, warmup-cosine lr and cosine wd, and all heads train in one pass over the same features. Video
probes read the tokens of all segments of a view; predictions are softmax-averaged over views; the best head's
top-1 (or EK100 action mean-class recall@5) is reported. `folder/<eval_name>/<tag>/latest.pt` holds
`classifiers`, `opt`, `scaler`, `epoch` as the reference writes them; `--val-only` evaluates the probe in it (or
the file `probe_checkpoint` names, e.g. a released `ssv2-vitl-16x2x3.pt`).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from vjepa2_core.evals.build import EVAL_NAMES, build_classifiers, build_datasets, build_feature_model
from vjepa2_core.evals.engine import ANTICIPATION, evaluate, frozen_features, head_loss, head_outputs, move_batch
from vjepa2_core.evals.probe import build_head_optimizers, load_probe_states, probe_state
from vjepa2_core.hub import CheckpointError, load_checkpoint
from vjepa2_core.training.checkpoint import save_training_checkpoint, seed_everything
from vjepa2_core.training.config import ConfigError, Field, dump_config, load_config
from vjepa2_core.training.distributed import ResumableSampler, cleanup, init_distributed
from vjepa2_core.training.metrics import CSVLogger, Throughput
from vjepa2_core.training.optim import autocast, make_grad_scaler

PROG = "eval_probe.py"
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
    "meta": {"device": Field(str, "auto"), "seed": Field(int, 0), "log_every": Field(int, 10)},
}
LOG_COLUMNS = ("epoch", "train_loss", "val_score", "best_head", "verb_recall", "noun_recall", "clips_per_s", "time_s")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    p.add_argument("--config", required=True, help="eval YAML (reference layout)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="override")
    p.add_argument("--val-only", action="store_true", help="evaluate the stored / released probe, no training")
    p.add_argument("--resume", action="store_true", help="continue from latest.pt (= resume_checkpoint: true)")
    return p


def check_config(cfg: dict) -> None:
    data, opt = cfg["experiment"]["data"], cfg["experiment"]["optimization"]
    if not opt["multihead_kwargs"]:
        raise ConfigError("experiment.optimization.multihead_kwargs: needs at least one head")
    if cfg["eval_name"] != ANTICIPATION and not data["num_classes"]:
        raise ConfigError("experiment.data.num_classes: required for classification probes")
    if cfg["eval_name"] == ANTICIPATION and not data["base_path"]:
        raise ConfigError("experiment.data.base_path: the EK100 video root is required")
    if opt["use_focal_loss"]:
        raise ConfigError("experiment.optimization.use_focal_loss: not supported (the released configs use CE)")


def make_loader(dataset, batch_size: int, dist, training: bool, seed: int, workers: int) -> tuple[DataLoader, object]:
    sampler = ResumableSampler(len(dataset), dist.rank, dist.world_size, shuffle=training, seed=seed)
    return DataLoader(dataset, batch_size, sampler=sampler, num_workers=workers, drop_last=False), sampler


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        cfg = load_config(args.config, SCHEMA, args.overrides)
        check_config(cfg)
    except ConfigError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    val_only = args.val_only or cfg["val_only"]
    exp, meta = cfg["experiment"], cfg["meta"]
    opt_cfg, name = exp["optimization"], cfg["eval_name"]
    dist = init_distributed(meta["device"])
    device = dist.device
    dtype = torch.bfloat16 if opt_cfg["use_bfloat16"] and device.type == "cuda" else torch.float32
    folder = Path(cfg["folder"]) / name / (cfg["tag"] or "")
    latest = folder / "latest.pt"
    if dist.is_main:
        folder.mkdir(parents=True, exist_ok=True)
        dump_config(cfg, folder / "config.yaml")
    seed_everything(meta["seed"])

    # -- frozen features, data, heads
    try:
        model = build_feature_model(cfg).to(device)
        train_set, val_set, classes = build_datasets(cfg, seed=meta["seed"])
    except (CheckpointError, OSError, ValueError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    class_sizes = (len(classes.verbs), len(classes.nouns), len(classes.actions)) if classes else None
    probe_file = Path(cfg["probe_checkpoint"]) if val_only and cfg["probe_checkpoint"] else latest
    stored = (
        load_checkpoint(probe_file)
        if (val_only or args.resume or cfg["resume_checkpoint"]) and probe_file.is_file()
        else None
    )
    if val_only and stored is None:
        print(f"{PROG}: error: --val-only needs a probe file: {probe_file} does not exist", file=sys.stderr)
        return 2
    heads = opt_cfg["multihead_kwargs"]
    if val_only:
        heads = heads[:1] * len(stored["classifiers"])  # a released file holds one head
    classifiers = [c.to(device) for c in build_classifiers(cfg, model.embed_dim, classes, len(heads))]
    workers = exp["data"]["num_workers"] if exp["data"]["num_workers"] is not None else cfg["num_workers"]
    bs = opt_cfg["batch_size"]
    train_loader, train_sampler = make_loader(train_set, bs, dist, True, meta["seed"], workers)
    val_loader, _ = make_loader(val_set, bs, dist, False, meta["seed"], workers)
    ipe = len(train_loader)
    optimizers, schedulers = build_head_optimizers(classifiers, heads, ipe, opt_cfg["num_epochs"])
    scaler = make_grad_scaler(device, dtype)

    start_epoch = 0
    try:
        if stored is not None:
            load_probe_states(classifiers, stored["classifiers"], str(probe_file))
            if not val_only:
                for o, s in zip(optimizers, stored["opt"], strict=True):
                    o.load_state_dict(s)
                start_epoch = int(stored["epoch"])
                for s in schedulers:
                    s.load_state_dict({"step": start_epoch * ipe})
    except (CheckpointError, KeyError, ValueError) as exc:
        print(f"{PROG}: error: cannot start from {probe_file}: {exc}", file=sys.stderr)
        return 3
    if dist.distributed:
        ddp = dict(device_ids=[device.index]) if device.type == "cuda" else {}
        classifiers = [DistributedDataParallel(c, static_graph=True, **ddp) for c in classifiers]

    def save(epoch: int) -> None:
        if dist.is_main:
            state = {
                "classifiers": [probe_state(c) for c in classifiers],
                "opt": [o.state_dict() for o in optimizers],
                "scaler": [scaler.state_dict()] if scaler.is_enabled() else None,
                "epoch": epoch,
                "batch_size": bs,
                "world_size": dist.world_size,
            }
            save_training_checkpoint(latest, state)

    def report(epoch: int, train_loss: float, rate: float) -> list[float]:
        board = evaluate(model, classifiers, val_loader, name, device, dtype, class_sizes)
        scores, all_scores = board.main_scores(), board.scores()
        best = max(range(len(scores)), key=scores.__getitem__)
        row = dict(epoch=epoch, train_loss=train_loss, val_score=scores[best], best_head=best, clips_per_s=rate)
        if name == ANTICIPATION:
            row.update(verb_recall=all_scores["verb"][best], noun_recall=all_scores["noun"][best])
        logger.log({**row, "time_s": time.perf_counter() - t0})
        metric = "action mean-class recall@5" if name == ANTICIPATION else "top-1"
        lr, wd = heads[best]["lr"], heads[best]["weight_decay"]
        print(f"[epoch {epoch}] val {metric} {scores[best]:.2f}% (best head {best}: lr {lr:g} wd {wd:g})", flush=True)
        if dist.is_main:
            (folder / "results.json").write_text(json.dumps({"epoch": epoch, "best_head": best, **all_scores}))
        return scores

    logger = CSVLogger(folder / ("log_val_only.csv" if val_only else "log.csv"), LOG_COLUMNS, enabled=dist.is_main)
    t0, meter = time.perf_counter(), Throughput()
    if val_only:
        report(start_epoch, float("nan"), 0.0)
        cleanup()
        return 0

    # -- the loop: frozen features once per batch, every head trained on them
    for epoch in range(start_epoch, opt_cfg["num_epochs"]):
        train_sampler.set_epoch(epoch)
        train_set.set_epoch(epoch)
        for c in classifiers:
            c.train()
        total_loss, n = 0.0, 0
        for itr, batch in enumerate(train_loader):
            for s in schedulers:
                s.step()
            inputs, indices, labels = move_batch(batch, name, device)
            with autocast(device, dtype):
                feats = frozen_features(model, inputs, indices, name)
                losses = [head_loss(outs, labels, name) for outs in head_outputs(classifiers, feats)]
            for o in optimizers:
                o.zero_grad(set_to_none=True)
            scaler.scale(sum(losses)).backward()  # heads share no parameters: one backward trains all
            for o in optimizers:
                scaler.step(o)
            scaler.update()
            total_loss, n = total_loss + float(sum(losses)) / len(losses), n + 1
            meter.update(len(feats[0]) * dist.world_size)
            if (itr + 1) % meta["log_every"] == 0:
                print(f"[epoch {epoch} itr {itr + 1}/{ipe}] mean head loss {total_loss / n:.4f}", flush=True)
        save(epoch + 1)
        report(epoch + 1, total_loss / max(n, 1), meter.rate())
    logger.close()
    cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
