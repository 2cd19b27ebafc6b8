"""V-JEPA 2 self-supervised video pretraining and cooldown (spec §4-§5), on the shared training engine.

    python training/pretrain.py --config config/train/pretrain_tiny_cpu.yaml [--set optimization.epochs=2 ...]
    torchrun --nproc_per_node=8 training/pretrain.py --config config/train/pretrain_vitl16_256px_16f.yaml --resume
    python training/pretrain.py --config ... --slurm --partition P [--account A --qos Q --time 3-00:00 --nodes N]

An encoder sees only the context tokens of multi-block masked clips; a predictor fills in the features of the
masked tokens; the target is the layer-normed output of an EMA copy of the encoder on the full clip; loss L1.
Checkpoints (`folder/latest.pt`, `folder/e{epoch}.pt`) use the reference keys plus `model_config`, so
`vjepa2_core.hub.load_encoder_and_predictor(path)` reads them back. A cooldown (`optimization.is_anneal`) starts
from `optimization.anneal_ckpt` with the linear-decay schedule. Resume state, checkpoint cadence, train.csv /
val.csv and exit codes are the engine's, the same as AC post-training (`vjepa2_core/training/engine.py`). The config's
SCHEMA, its checks and the data, model-config and start-weight builders are in `vjepa2_core/training/pretrain_run.py`.
"""

from __future__ import annotations

import argparse
import sys

from vjepa2_core.training import engine
from vjepa2_core.training.checkpoint import unwrap
from vjepa2_core.training.config import training_arg_parser
from vjepa2_core.training.distributed import broadcast_module, wrap_ddp
from vjepa2_core.training.optim import autocast, build_adamw, make_grad_scaler, optimizer_step
from vjepa2_core.training.pretrain_run import (
    STATE_KEYS,
    TRAIN_COLUMNS,
    VAL_COLUMNS,
    evaluate,
    load,
    loader_factory,
    make_collator,
    make_dataset,
    make_sampler,
    model_config_of,
    start_weights,
)
from vjepa2_core.training.pretrain_step import (
    MaskedBatch,
    build_models,
    ema_momentum,
    ema_update,
    jepa_loss,
    predict_targets,
    target_features,
)
from vjepa2_core.training.schedules import build_scheduler
from vjepa2_core.training.slurm import add_launch_arguments


# ---------------------------------------------------------------------------------------------------------------
# The loop: `ipe` iterations per epoch, EMA after every optimizer step
# ---------------------------------------------------------------------------------------------------------------
def train(cfg: dict, resume: bool = False) -> dict:
    """Pretrain (or cool down) as `cfg` says; returns the run summary (step, loss, skipped, folder)."""
    run = engine.start_run(cfg)
    data, opt, loss_exp = cfg["data"], cfg["optimization"], cfg["loss"]["loss_exp"]
    dataset = make_dataset(cfg, data["datasets"], data["dataset_fpcs"])
    collator, sampler = make_collator(cfg, dataset, run.dist.rank), make_sampler(cfg, dataset, run)
    val = val_collator = None
    if data["val_datasets"]:
        val = make_dataset(cfg, data["val_datasets"], [max(dataset.fpcs)] * len(data["val_datasets"]))
        val_collator = make_collator(cfg, val)
    model_config = model_config_of(cfg, dataset)
    encoder, predictor, target = (m.to(run.device) for m in build_models(model_config))
    optimizer = build_adamw([(encoder, 1.0), (predictor, 1.0)])
    kind = "linear_decay" if opt["is_anneal"] else "warmup_cosine"
    schedule = build_scheduler(optimizer, opt, kind, ipe_scale=opt["ipe_scale"])
    scaler = make_grad_scaler(run.device, run.dtype)
    eng = engine.Engine(run, optimizer, schedule, scaler, opt["ipe"], data["batch_size"], TRAIN_COLUMNS, VAL_COLUMNS)
    start_weights(eng, resume, (encoder, predictor, target))
    encoder = wrap_ddp(encoder, run.dist)
    predictor = wrap_ddp(predictor, run.dist, find_unused_parameters=True)  # mask tokens of absent clip lengths
    broadcast_module(target)  # the EMA target starts from rank 0's weights, as DDP makes the encoder
    ema_steps, skipped_before = int(opt["ipe"] * opt["epochs"] * opt["ipe_scale"]), eng.skipped

    def weights() -> dict:
        modules = (unwrap(encoder).backbone, unwrap(predictor).backbone, target.backbone)
        return {**dict(zip(STATE_KEYS, modules)), "model_config": model_config, "config": cfg}

    encoder.train(), predictor.train()
    for groups in eng.batches(loader_factory(cfg, run, dataset, collator, sampler), opt["ipe"]):
        batch = MaskedBatch.from_collator(groups, run.device)
        lr, wd = schedule.step()
        with autocast(run.device, run.dtype):
            h = target_features(target, batch.clips)
            z = predict_targets(encoder, predictor, batch)
            loss = jepa_loss(z, h, batch.masks_pred, loss_exp)
        eng.check_finite(loss)  # mean over ranks; NonFiniteLoss (exit 4) before the update
        optimizer_step(loss, optimizer, scaler)
        momentum = ema_momentum(eng.step, opt["ema"], ema_steps)
        ema_update(target.backbone, unwrap(encoder).backbone, momentum)
        eng.skipped = skipped_before + sum(dataset.skipped.values())  # unreadable + too short, so far
        row = dict(loss=eng.loss, lr=lr, wd=wd, momentum=momentum, time_s=eng.elapsed, skipped_videos=eng.skipped)
        eng.step_done(batch.size, row)
        if val_collator is not None and eng.eval_due():
            eng.validate(lambda: evaluate(encoder, predictor, target, val, val_collator, cfg, run))
        if eng.checkpoint_due():
            eng.save(weights)
    return eng.finish()


def build_parser() -> argparse.ArgumentParser:
    parser = add_launch_arguments(training_arg_parser("V-JEPA 2 pretraining / cooldown"))
    parser.prog = "pretrain.py"
    return parser


def main(argv: list[str] | None = None) -> int:
    return engine.console_main(build_parser(), argv, load, train)


if __name__ == "__main__":
    sys.exit(main())
