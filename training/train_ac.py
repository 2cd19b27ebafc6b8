"""Action-conditioned post-training of the V-JEPA 2 predictor on DROID-format data (reference `app/vjepa_droid`).

    python training/train_ac.py --config config/train/ac_tiny_cpu.yaml --set data.datasets=[my/trajectories.csv]
    torchrun --nproc-per-node 8 training/train_ac.py --config config/train/droid-256px-8f.yaml [--resume]
    python training/train_ac.py --config ... --slurm --partition P [--account A --qos Q --time 3-00:00 --nodes N]

The config is a reference-layout YAML; `vjepa2_core/training/ac_run.py` holds its SCHEMA (every key: reference keys
are required, the extensions have defaults), its checks and the data pieces this loop uses.

One optimisation step = frozen encoder on each frame -> teacher-forcing + rollout L1 loss on the AC predictor ->
AdamW with a warmup-stable-decay learning rate and cosine weight decay. With `meta.finetune_encoder` the encoder
trains too (predictor inputs with gradients, targets from its EMA copy, which is the checkpoint's `target_encoder`
that the planner loads; `ac.ACObjective` holds both trained modules, so under torchrun one DDP averages both
gradients and every rank keeps the same weights). Resume state, checkpoint cadence, train.csv / val.csv and exit
codes are the engine's, the same as pretraining (`vjepa2_core/training/engine.py`).
"""

from __future__ import annotations

import argparse
import sys
import time

from vjepa2_core.data.droid import DROIDDataError
from vjepa2_core.training import ac, engine
from vjepa2_core.training.ac_run import (
    TRAIN_COLUMNS,
    VAL_COLUMNS,
    batch_losses,
    evaluate,
    load,
    loader_factory,
    log,
    make_data,
)
from vjepa2_core.training.config import training_arg_parser
from vjepa2_core.training.distributed import ResumableSampler, all_reduce_sum, broadcast_module, wrap_ddp
from vjepa2_core.training.optim import autocast, build_adamw, make_grad_scaler, optimizer_step
from vjepa2_core.training.pretrain_step import ema_momentum, ema_update
from vjepa2_core.training.schedules import build_scheduler
from vjepa2_core.training.slurm import add_launch_arguments


# ------------------------------------------------------------------------------------------------------ train
def train(cfg: dict, resume: bool = False) -> dict:
    """AC post-training as `cfg` says; returns the run summary (step, loss, skipped, folder)."""
    run = engine.start_run(cfg)
    opt_cfg, bs = cfg["optimization"], cfg["data"]["batch_size"]
    mcfg = ac.model_config(cfg)
    encoder, predictor = (m.to(run.device) for m in ac.build_models(cfg, mcfg))  # frozen encoder, trained predictor
    broadcast_module(encoder)  # targets (the EMA copy when fine-tuning) start equal on every rank
    objective = ac.build_objective(cfg, encoder, predictor)
    online = objective.encoder  # the fine-tuned encoder (meta.finetune_encoder) or None; `encoder` is its EMA copy
    model = wrap_ddp(objective, run.dist, static_graph=True)  # one DDP: gradients of predictor and encoder averaged
    groups = [(predictor, 1.0)] + ([(online, opt_cfg["enc_lr_scale"])] if online is not None else [])
    optimizer = build_adamw(groups, betas=tuple(opt_cfg["betas"]), eps=opt_cfg["eps"])
    scaler = make_grad_scaler(run.device, run.dtype)
    schedule = build_scheduler(optimizer, opt_cfg, "wsd")
    train_ds, val_ds, cache, cond = make_data(cfg, mcfg)
    sampler = ResumableSampler(len(train_ds), run.dist.rank, run.dist.world_size, True, cfg["meta"]["seed"], bs)
    eng = engine.Engine(run, optimizer, schedule, scaler, opt_cfg["ipe"], bs, TRAIN_COLUMNS, VAL_COLUMNS)
    source = engine.resume_source(run, resume)
    if source is not None:
        loaders = {"predictor": predictor.load_state_dict}
        if online is not None:
            loaders |= {"encoder": online.load_state_dict, "target_encoder": encoder.load_state_dict}
        eng.resume(source, loaders)
    log.info(
        "AC post-training: %d train / %d held-out episodes, batch %d x %d ranks, %d steps on %s (%s)",
        len(train_ds), len(val_ds) if val_ds else 0, bs, run.dist.world_size, eng.total, run.device, run.dtype,
    )  # fmt: skip

    def weights() -> dict:
        trained = online if online is not None else encoder  # the EMA target is `encoder` either way
        return ac.checkpoint_state(trained, predictor, mcfg, target_encoder=encoder, config=cfg)

    predictor.train()
    for batch in eng.batches(loader_factory(cfg, run, train_ds, sampler), len(sampler) // bs):
        lr, wd = schedule.step()
        with autocast(run.device, run.dtype):
            jloss, sloss = batch_losses(model, encoder, batch, train_ds, cache, cond, cfg, run.device)
            loss = jloss + sloss
        _, j, s = eng.check_finite(loss, jloss, sloss)  # means over ranks; NonFiniteLoss (exit 4) before the update
        optimizer_step(loss, optimizer, scaler)
        if online is not None:
            ema_update(encoder, online, ema_momentum(eng.step, opt_cfg["ema"], eng.total))
        eng.skipped += int(all_reduce_sum(batch["skipped"].sum().to(run.device)))
        row = dict(loss=eng.loss, jloss=j, sloss=s, lr=lr, wd=wd, skipped=eng.skipped, time=time.time())
        eng.step_done(bs, row)
        if val_ds is not None and eng.eval_due():
            eng.validate(lambda: evaluate(predictor, encoder, val_ds, cfg, run.device, run.dtype, cond))
        if eng.checkpoint_due():
            eng.save(weights)
    return eng.finish()


def build_parser() -> argparse.ArgumentParser:
    parser = add_launch_arguments(training_arg_parser(__doc__.splitlines()[0]))
    parser.prog = "train_ac.py"
    return parser


def main(argv: list[str] | None = None) -> int:
    return engine.console_main(build_parser(), argv, load, train, usage_errors=(DROIDDataError,))


if __name__ == "__main__":
    sys.exit(main())
