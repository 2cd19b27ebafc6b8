"""Frozen-encoder attentive-probe evaluation (reference `evals/*_frozen`).

    python training/eval_probe.py --config config/eval/tiny_cpu/video_shapes.yaml [--set k=v ...] [--val-only]
    torchrun --nproc_per_node=8 training/eval_probe.py --config config/eval/vitl/ssv2.yaml

The encoder (and, for anticipation, the predictor) stays frozen; every `multihead_kwargs` entry is a probe head
with its own AdamW, warmup-cosine lr and cosine wd, and all heads train in one pass over the same features. Video
probes read the tokens of all segments of a view; predictions are softmax-averaged over views; the best head's
top-1 (or EK100 action mean-class recall@5) is reported. `folder/<eval_name>/<tag>/latest.pt` holds
`classifiers`, `opt`, `scaler`, `epoch` as the reference writes them; `--val-only` evaluates the probe in it (or
the file `probe_checkpoint` names, e.g. a released `ssv2-vitl-16x2x3.pt`). The config's SCHEMA, its checks and the
run builder are in `vjepa2_core/evals/probe_run.py`. The epoch loop below is its own, not the training engine's
(docs/DESIGN.md says why: one optimizer per head, the reference probe-file layout, validation on every rank); the
exit codes are the engine's (0 done, 2 bad arguments/config/data, 3 encoder or probe file that does not fit).
"""

from __future__ import annotations

import argparse
import sys
import time

from vjepa2_core.evals.engine import frozen_features, head_loss, head_outputs, move_batch
from vjepa2_core.evals.probe_run import LOG_COLUMNS, build_run, feature_spread, load, report, save
from vjepa2_core.hub import CheckpointError
from vjepa2_core.training.checkpoint import seed_everything
from vjepa2_core.training.config import ConfigError, dump_config
from vjepa2_core.training.distributed import cleanup, init_distributed
from vjepa2_core.training.engine import EXIT_CHECKPOINT, EXIT_OK, EXIT_USAGE
from vjepa2_core.training.metrics import CSVLogger, Throughput
from vjepa2_core.training.optim import autocast

PROG = "eval_probe.py"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    p.add_argument("--config", required=True, help="eval YAML (reference layout)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="override")
    p.add_argument("--val-only", action="store_true", help="evaluate the stored / released probe, no training")
    p.add_argument("--resume", action="store_true", help="continue from latest.pt (= resume_checkpoint: true)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        cfg = load(args.config, args.overrides)
    except ConfigError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    val_only = args.val_only or cfg["val_only"]
    dist = init_distributed(cfg["meta"]["device"])
    seed_everything(cfg["meta"]["seed"])
    try:
        run = build_run(cfg, val_only, args.resume or cfg["resume_checkpoint"], dist)
    except CheckpointError as exc:  # an encoder or probe file that does not fit
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return EXIT_CHECKPOINT
    except (OSError, ValueError, KeyError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if dist.is_main:
        run.folder.mkdir(parents=True, exist_ok=True)
        dump_config(cfg, run.folder / "config.yaml")
    log_name = "log_val_only.csv" if val_only else "log.csv"
    resume_step = run.start_epoch if run.start_epoch and not val_only else None
    logger = CSVLogger(run.folder / log_name, LOG_COLUMNS, enabled=dist.is_main, resume_step=resume_step)
    run.t0, name = time.perf_counter(), run.name
    run.spread = feature_spread(run)
    if dist.is_main:
        std, rank, dim = run.spread["token_std"], run.spread["effective_rank"], run.model.embed_dim
        print(f"frozen features: token std {std:.3f}, effective rank {rank:.1f} of {dim}", flush=True)
    if val_only:
        report(run, run.start_epoch, float("nan"), 0.0, logger, dist.is_main)
        cleanup()
        return EXIT_OK

    # -- the loop: frozen features once per batch, every head trained on them
    num_epochs = cfg["experiment"]["optimization"]["num_epochs"]
    for epoch in range(run.start_epoch, num_epochs):
        run.train_sampler.set_epoch(epoch)
        run.train_set.set_epoch(epoch)
        for c in run.classifiers:
            c.train()
        total_loss, n, meter = 0.0, 0, Throughput()  # clips/s of this epoch's training alone
        for itr, batch in enumerate(run.train_loader):
            for sched in run.schedulers:
                sched.step()
            inputs, indices, labels = move_batch(batch, name, run.device)
            with autocast(run.device, run.dtype):
                feats = frozen_features(run.model, inputs, indices, name)
                losses = [head_loss(outs, labels, name) for outs in head_outputs(run.classifiers, feats)]
            for o in run.optimizers:
                o.zero_grad(set_to_none=True)
            run.scaler.scale(sum(losses)).backward()  # the heads share no parameters: one backward trains all
            for o in run.optimizers:
                run.scaler.step(o)
            run.scaler.update()
            total_loss, n = total_loss + float(sum(losses).detach()) / len(losses), n + 1
            meter.update(len(feats[0]) * dist.world_size)
            if dist.is_main and (itr + 1) % cfg["meta"]["log_every"] == 0:
                print(f"[epoch {epoch} itr {itr + 1}/{run.ipe}] mean head loss {total_loss / n:.4f}", flush=True)
        if dist.is_main:
            save(run, epoch + 1, dist.world_size)
        if (epoch + 1) % cfg["meta"]["val_every"] == 0 or epoch + 1 == num_epochs:
            report(run, epoch + 1, total_loss / max(n, 1), meter.rate(), logger, dist.is_main)
    logger.close()
    cleanup()
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
