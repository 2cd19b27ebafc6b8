"""The shared training engine: config validation and renamed keys, schedules, param groups, checkpoints, RNG,
sampler, CSV, the run engine (resume state, cadence, stop rule) and `--slurm` for both stages."""

from __future__ import annotations

import argparse
import math
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import run_script
from torch import nn

from vjepa2_core.training import ac_run, pretrain_run
from vjepa2_core.training.checkpoint import (
    CheckpointError,
    load_training_checkpoint,
    rng_state,
    save_training_checkpoint,
    set_rng_state,
)
from vjepa2_core.training.config import (
    REQUIRED,
    ConfigError,
    Field,
    apply_overrides,
    load_config,
    load_yaml,
    rename_keys,
    training_arg_parser,
    validate,
)
from vjepa2_core.training.distributed import ResumableSampler, init_distributed
from vjepa2_core.training.engine import (
    EXIT_CHECKPOINT,
    EXIT_NON_FINITE,
    EXIT_OK,
    EXIT_USAGE,
    RENAMED_KEYS,
    RUN_META_SCHEMA,
    Engine,
    NonFiniteLoss,
    Run,
    rank_rng,
    resume_source,
    resume_step,
)
from vjepa2_core.training.metrics import CSVLogger, read_csv
from vjepa2_core.training.optim import build_adamw, make_grad_scaler, param_groups, resolve_dtype
from vjepa2_core.training.schedules import build_scheduler, cosine_wd, linear_decay, warmup_cosine, wsd
from vjepa2_core.training.slurm import add_launch_arguments, executor_parameters, make_executor, time_minutes

REPO = Path(__file__).resolve().parents[1]

SCHEMA = {
    "app": Field(str),
    "optimization": {
        "lr": Field(float),
        "epochs": Field(int),
        "betas": Field(list, default=[0.9, 0.999]),
    },
    "meta": {"seed": Field(int, default=0), "dtype": Field(str, default="float32", choices=("float32", "bfloat16"))},
    "folder": Field(str, default=None),
    "mask": Field(
        list, default=[], items={"num_blocks": Field(int), "spatial_scale": Field(list, default=[0.2, 0.8])}
    ),
}


def test_config_load_overrides_and_defaults(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("app: vjepa_droid\noptimization:\n  lr: 1\n  epochs: 3\n")
    cfg = load_config(path, SCHEMA, ["optimization.lr=2.5e-4", "meta.dtype=bfloat16", "folder=/x"])
    assert cfg["optimization"] == {"lr": 2.5e-4, "epochs": 3, "betas": [0.9, 0.999]}
    assert cfg["meta"] == {"seed": 0, "dtype": "bfloat16"} and cfg["folder"] == "/x"
    assert isinstance(
        validate({"app": "a", "optimization": {"lr": 1, "epochs": 1}}, SCHEMA)["optimization"]["lr"], float
    )


@pytest.mark.parametrize(
    "text,overrides,message",
    [
        (
            "app: a\noptimization: {lr: 1, epcohs: 3}\n",
            [],
            r"unknown config key 'optimization.epcohs' \(did you mean 'epochs'",
        ),
        ("app: a\noptimization: {lr: 1}\n", [], "missing config key 'optimization.epochs'"),
        ("app: a\noptimization: {lr: 1, epochs: 3.5}\n", [], r"optimization.epochs: expected int, got float"),
        ("app: a\noptimization: {lr: 1, epochs: 3}\n", ["meta.dtype=fp8"], r"meta.dtype: 'fp8' is not one of"),
        ("app: a\noptimization: {lr: 1, epochs: 3}\n", ["meta.sed=1"], r"unknown config key 'meta.sed'"),
        ("app: a\noptimization: {lr: 1, epochs: 3}\n", ["meta"], r"--set expects key.path=value"),
        ("- just a list\n", [], "top level must be a mapping"),
        ("app: a\noptimization: {lr: 1, epochs: true}\n", [], "expected int, got bool"),
        (
            "app: a\noptimization: {lr: 1, epochs: 3}\nmask: [{num_blocks: 2}, {num_blocs: 8}]\n",
            [],
            r"'mask\[1\].num_blocs'",
        ),
    ],
)
def test_config_errors_name_the_key(tmp_path, text, overrides, message):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(path, SCHEMA, overrides)


def test_overrides_parse_yaml_values():
    cfg = apply_overrides({"a": {"b": 1}}, ["a.b=[1, 2]", "a.c=null", "d.e=true"])
    assert cfg == {"a": {"b": [1, 2], "c": None}, "d": {"e": True}}
    assert Field(int).default is REQUIRED


def test_wsd_schedule_reference_droid_numbers():
    # droid-256px-8f.yaml: warmup 15, anneal 15, epochs 315, ipe 300
    kw = dict(warmup=4500, anneal=4500, start=7.5e-5, ref=4.25e-4, final=0.0, t_max=94500)
    assert wsd(0, **kw) == pytest.approx(7.5e-5)
    assert wsd(2250, **kw) == pytest.approx((7.5e-5 + 4.25e-4) / 2)
    assert wsd(4500, **kw) == wsd(90000 - 1, **kw) == pytest.approx(4.25e-4)
    assert wsd(92250, **kw) == pytest.approx(4.25e-4 / 2)
    assert wsd(94500, **kw) == pytest.approx(0.0) and wsd(99999, **kw) == pytest.approx(0.0)


def test_pretrain_and_cooldown_schedules():
    kw = dict(warmup=12000, start=1e-4, ref=5.25e-4, final=5.25e-4, t_max=300000)
    assert warmup_cosine(6000, **kw) == pytest.approx(3.125e-4)
    assert warmup_cosine(100000, **kw) == pytest.approx(5.25e-4)  # final == ref: constant after warmup
    cos = dict(warmup=10, start=0.0, ref=1.0, final=0.1, t_max=110)
    assert warmup_cosine(60, **cos) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    # cooldown with epochs 40, ipe 300, ipe_scale 1.25: 80 % of the ramp travelled
    t_max = int(1.25 * 40 * 300)
    assert linear_decay(12000, ref=5.25e-4, final=1e-6, t_max=t_max) == pytest.approx(1.058e-4, rel=1e-3)
    assert cosine_wd(5, ref=0.04, final=0.04, t_max=10) == pytest.approx(0.04)
    assert cosine_wd(5, ref=0.04, final=0.4, t_max=10) == pytest.approx(0.22)


def test_param_groups_and_scheduler_apply_lr_scale_and_wd_exclusion():
    enc, pred = nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4)), nn.Linear(4, 2)
    frozen = nn.Linear(3, 3).requires_grad_(False)
    groups = param_groups([(enc, 0.5), (pred, 1.0), (frozen, 1.0)])
    assert [len(g["params"]) for g in groups] == [1, 3, 1, 1]
    assert groups[1]["WD_exclude"] and groups[1]["weight_decay"] == 0.0 and groups[1]["lr_scale"] == 0.5
    opt = build_adamw([(enc, 0.5), (pred, 1.0)])
    opt_cfg = dict(ipe=10, epochs=10, warmup=1, anneal=2, start_lr=0.1, lr=1.0, final_lr=0.0)
    sched = build_scheduler(opt, {**opt_cfg, "weight_decay": 0.04, "final_weight_decay": 0.4}, "wsd")
    for _ in range(50):
        lr, wd = sched.step()
    assert lr == 1.0 and opt.param_groups[0]["lr"] == 0.5 and opt.param_groups[2]["lr"] == 1.0
    assert opt.param_groups[0]["weight_decay"] == pytest.approx(wd) and wd == pytest.approx(0.22)
    assert opt.param_groups[1]["weight_decay"] == 0.0
    other = build_scheduler(opt, {**opt_cfg, "weight_decay": 0.04, "final_weight_decay": 0.4}, "wsd")
    other.load_state_dict(sched.state_dict())
    assert other.step() == sched.step()
    with pytest.raises(ValueError, match="unknown lr schedule"):
        build_scheduler(opt, {**opt_cfg, "weight_decay": 0.0, "final_weight_decay": 0.0}, "cosine")


def test_precision_is_fp32_on_cpu():
    cpu = torch.device("cpu")
    assert resolve_dtype("bfloat16", cpu) == torch.float32
    assert not make_grad_scaler(cpu, torch.float32).is_enabled()
    with pytest.raises(ValueError, match="dtype"):
        resolve_dtype("fp8", cpu)


def test_checkpoint_is_atomic_and_snapshots_survive(tmp_path):
    path = tmp_path / "latest.pt"
    save_training_checkpoint(path, {"epoch": 1, "w": torch.ones(3)}, snapshot=tmp_path / "e1.pt")
    save_training_checkpoint(path, {"epoch": 2, "w": torch.zeros(3)})
    assert load_training_checkpoint(tmp_path / "e1.pt")["epoch"] == 1
    assert load_training_checkpoint(path, required=["epoch"])["epoch"] == 2

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        save_training_checkpoint(path, {"epoch": 3, "bad": Unpicklable()})
    assert load_training_checkpoint(path)["epoch"] == 2  # the failed write left the old file intact
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    with pytest.raises(CheckpointError, match="missing"):
        load_training_checkpoint(path, required=["opt"])
    (tmp_path / "torn.pt").write_bytes(path.read_bytes()[:100])
    with pytest.raises(CheckpointError):
        load_training_checkpoint(tmp_path / "torn.pt")


def test_rng_state_round_trip_through_a_weights_only_file(tmp_path):
    torch.manual_seed(1), np.random.seed(2), random.seed(3)
    np.random.normal()  # leaves a cached gaussian
    save_training_checkpoint(tmp_path / "r.pt", {"rng": rng_state()})
    expected = (torch.rand(3), np.random.rand(3), np.random.normal(), random.random())
    set_rng_state(load_training_checkpoint(tmp_path / "r.pt")["rng"])
    got = (torch.rand(3), np.random.rand(3), np.random.normal(), random.random())
    assert torch.equal(expected[0], got[0]) and np.array_equal(expected[1], got[1])
    assert expected[2:] == got[2:]


def test_sampler_shards_and_resumes_mid_epoch():
    shards = [ResumableSampler(10, rank=r, world_size=3, seed=4) for r in range(3)]
    for s in shards:
        s.set_epoch(2)
    seen = [i for s in shards for i in s]
    assert len(seen) == 12 and set(seen) == set(range(10))
    full = list(shards[1])
    shards[1].set_epoch(2, start_sample=2)
    assert list(shards[1]) == full[2:] and len(shards[1]) == 2
    shards[1].set_epoch(3)
    assert list(shards[1]) != full
    small = ResumableSampler(3, min_per_rank=8, seed=0)
    assert len(list(small)) == 8 and set(small) == {0, 1, 2}


def test_single_process_needs_no_environment(monkeypatch):
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID"):
        monkeypatch.delenv(var, raising=False)
    info = init_distributed("cpu")
    assert (info.rank, info.world_size, info.is_main, info.device.type) == (0, 1, True, "cpu")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    with pytest.raises(RuntimeError, match="MASTER_ADDR is not set"):
        init_distributed("cpu")


def test_csv_logger_drops_rows_past_the_resume_step(tmp_path):
    log = CSVLogger(tmp_path / "m.csv", ["step", "loss"])
    for s in range(1, 6):
        log.log({"step": s, "loss": 1.0 / s})
    log.close()
    again = CSVLogger(tmp_path / "m.csv", ["step", "loss"], resume_step=3)
    again.log({"step": 4, "loss": 0.5})
    rows = read_csv(tmp_path / "m.csv")
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4] and float(rows[1]["loss"]) == 0.5
    with pytest.raises(KeyError, match="not CSV columns"):
        again.log({"step": 5, "acc": 1.0})
    CSVLogger(tmp_path / "other.csv", ["step"], enabled=False).log({"step": 1})
    assert not (tmp_path / "other.csv").exists()


# ---------------------------------------------------------------------------------------------------- the engine
RUN_CONFIGS = {"pretrain": pretrain_run, "train_ac": ac_run}  # each stage's schema, checks and `load`


def test_renamed_keys_still_load_with_a_warning_naming_the_new_key(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("meta:\n  read_checkpoint: /a.pt\n  save_every_steps: 5\n")
    with pytest.warns(DeprecationWarning) as record:
        cfg = rename_keys(load_yaml(path), RENAMED_KEYS)
    assert [str(w.message) for w in record] == [
        "config key 'meta.read_checkpoint' is deprecated: use 'meta.resume_checkpoint'",
        "config key 'meta.save_every_steps' is deprecated: use 'meta.checkpoint_every_steps'",
    ]
    assert cfg["meta"] == {"resume_checkpoint": "/a.pt", "checkpoint_every_steps": 5}
    with pytest.warns(DeprecationWarning, match="meta.save_every_steps"):
        assert rename_keys({"meta": {"save_every_steps": None, "checkpoint_every_steps": 3}}, RENAMED_KEYS) == {
            "meta": {"checkpoint_every_steps": 3}
        }
    with pytest.warns(DeprecationWarning), pytest.raises(ConfigError, match="both set: keep only 'meta.resume"):
        rename_keys({"meta": {"read_checkpoint": "/a.pt", "resume_checkpoint": "/b.pt"}}, RENAMED_KEYS)
    # both stages read the same keys: one schema entry each for cadence, resume path and the launcher
    pre, ac = pretrain_run, ac_run
    for key in ("checkpoint_every_steps", "resume_checkpoint", "load_checkpoint", "save_every_freq", "eval_freq"):
        assert pre.SCHEMA["meta"][key] is ac.SCHEMA["meta"][key] is RUN_META_SCHEMA[key]
    for key in ("nodes", "tasks_per_node", "cpus_per_task", "mem_per_gpu"):
        assert pre.SCHEMA[key] is ac.SCHEMA[key]
    assert not {"read_checkpoint", "save_every_steps"} & (set(pre.SCHEMA["meta"]) | set(ac.SCHEMA["meta"]))


def test_resume_state_of_old_layouts():
    assert resume_step({"step": 7, "epoch": 0}, ipe=4) == 7
    assert resume_step({"epoch": 2, "itr": 3}, ipe=4) == 11  # pretraining before `step`
    assert resume_step({"epoch": 2}, ipe=4) == 8
    with pytest.raises(CheckpointError, match="neither 'step' nor 'epoch'"):
        resume_step({"opt": {}}, ipe=4)
    a, b = {"torch": 1}, {"torch": 2}
    assert rank_rng([a, b], 1) is b and rank_rng([a], 3) is a  # more ranks now than when saved: rank 0's
    assert rank_rng(a, 1) is a and rank_rng(None, 0) is None  # one state for all (old pretraining)


def _engine(tmp_path, **meta) -> Engine:
    meta = {**validate({}, RUN_META_SCHEMA), "device": "cpu", **meta}
    cfg = {"folder": str(tmp_path), "meta": meta, "optimization": {"epochs": 3}}
    run = Run(cfg, init_distributed("cpu"), torch.float32, tmp_path)
    model = nn.Linear(2, 1)
    opt = build_adamw([(model, 1.0)])
    sched = build_scheduler(opt, dict(ipe=4, epochs=3, lr=1.0, final_lr=0.0, weight_decay=0.0, final_weight_decay=0.0),
                            "warmup_cosine")  # fmt: skip
    return Engine(run, opt, sched, make_grad_scaler(run.device, run.dtype), 4, 1, ["loss"], ["val_loss"])


def test_engine_cadence_logs_and_checkpoints(tmp_path):
    eng = _engine(tmp_path, checkpoint_every_steps=3, eval_freq=5, log_every=2, max_steps=10, save_every_freq=2)
    saved, evaluated = [], []
    for _ in eng.batches(lambda p, offset: range(offset, 4), per_pass=4):
        eng.scheduler.step()
        eng.check_finite(torch.tensor(0.5))
        eng.step_done(1, {"loss": eng.loss})
        if eng.eval_due():
            eng.validate(lambda: {"val_loss": 0.25})
            evaluated.append(eng.step)
        if eng.checkpoint_due():
            eng.save(lambda: {"w": torch.ones(1)})
            saved.append(eng.step)
    summary = eng.finish()
    assert summary["step"] == 10 and saved == [3, 4, 6, 8, 9, 10] and evaluated == [5, 10]
    rows = read_csv(tmp_path / "train.csv")
    assert [(r["step"], r["epoch"], r["itr"]) for r in rows] == [
        ("2", "0", "2"), ("4", "0", "4"), ("6", "1", "2"), ("8", "1", "4"), ("10", "2", "2")]  # fmt: skip
    assert [r["step"] for r in read_csv(tmp_path / "val.csv")] == ["5", "10"]
    ckpt = load_training_checkpoint(tmp_path / "latest.pt")
    assert (ckpt["step"], ckpt["epoch"], ckpt["itr"], ckpt["scheduler"], len(ckpt["rng"])) == (
        10,
        2,
        2,
        {"step": 10},
        1,
    )
    assert load_training_checkpoint(tmp_path / "e2.pt")["step"] == 8 and not (tmp_path / "e1.pt").exists()
    # resume: the same step, schedule and place in the data
    again = _engine(tmp_path, max_steps=12)
    again.resume(tmp_path / "latest.pt", {"w": lambda w: None})
    assert again.step == 10 and again.scheduler.k == 10
    starts = []
    for _ in again.batches(lambda p, offset: starts.append((p, offset)) or range(offset, 4), per_pass=4):
        again.scheduler.step()
        again.check_finite(torch.tensor(1.0))
        again.step_done(1, {"loss": 1.0})
    again.finish()
    assert starts == [(2, 2)] and [r["step"] for r in read_csv(tmp_path / "train.csv")][-2:] == ["10", "12"]


def test_non_finite_loss_raises_before_the_update(tmp_path):
    eng = _engine(tmp_path)
    assert eng.check_finite(torch.tensor(2.0), torch.tensor(3.0)) == [2.0, 3.0]
    with pytest.raises(NonFiniteLoss, match="loss is nan at step 1; lower optimization.lr"):
        eng.check_finite(torch.tensor(float("nan")))
    assert issubclass(NonFiniteLoss, FloatingPointError)
    assert (EXIT_OK, EXIT_USAGE, EXIT_CHECKPOINT, EXIT_NON_FINITE) == (0, 2, 3, 4)


def test_resume_source_prefers_the_runs_own_latest(tmp_path):
    eng = _engine(tmp_path / "run", resume_checkpoint=str(tmp_path / "start.pt"))
    with pytest.raises(CheckpointError, match="meta.resume_checkpoint .* does not exist"):
        resume_source(eng.run, resume=True)
    save_training_checkpoint(tmp_path / "start.pt", {"step": 1})
    assert resume_source(eng.run, resume=True) == tmp_path / "start.pt"
    save_training_checkpoint(tmp_path / "run" / "latest.pt", {"step": 2})
    assert resume_source(eng.run, resume=True) == tmp_path / "run" / "latest.pt"  # a requeued job continues itself
    assert resume_source(eng.run, resume=False) == tmp_path / "start.pt"
    assert resume_source(_engine(tmp_path / "fresh").run, resume=True) is None


# ------------------------------------------------------------------------------------------------------- --slurm
def test_slurm_time_limits():
    assert [time_minutes(t) for t in ("90", "2:00:00", "1-00:00", "1-2", "30:30", "0:10:01")] == [90, 120, 1440, 1560,
                                                                                                  31, 11]  # fmt: skip
    for bad in ("0", "soon", "1:2:3:4"):
        with pytest.raises(argparse.ArgumentTypeError):
            time_minutes(bad)


@pytest.mark.parametrize(
    "name,config",
    [("pretrain", "pretrain_vitl16_256px_16f.yaml"), ("train_ac", "droid-256px-8f.yaml")],
)
def test_both_stages_submit_with_the_same_slurm_options(name, config, tmp_path):
    argv = ["--config", str(REPO / "config" / "train" / config), "--set", f"folder={tmp_path / 'run'}", "--slurm"]
    argv += ["--partition", "gpu", "--account", "vision", "--qos", "high", "--time", "1-00:00", "--nodes", "2"]
    args = add_launch_arguments(training_arg_parser(name)).parse_args(argv)  # the parser both scripts build
    cfg = RUN_CONFIGS[name].load(args.config, args.overrides)
    params = executor_parameters(cfg, args)
    gpus = cfg["tasks_per_node"]
    assert params == {
        "name": f"{cfg['app']}-run",
        "nodes": 2,
        "tasks_per_node": gpus,
        "gpus_per_node": gpus,
        "timeout_min": 1440,
        "cpus_per_task": cfg["cpus_per_task"],
        "mem_gb": int(cfg["mem_per_gpu"].rstrip("G")) * gpus,
        "slurm_partition": "gpu",
        "slurm_account": "vision",
        "slurm_qos": "high",
    }
    executor = make_executor(cfg, args, cluster="debug")  # submitit accepts every parameter (no cluster needed)
    assert executor._executor.parameters["timeout_min"] == 1440
    proc = run_script(f"training/{name}.py", [*argv, "--dry-run"])
    assert proc.returncode == 0
    sbatch = proc.stdout
    for line in ("--partition=gpu", "--account=vision", "--qos=high", "--time=1440", "--nodes=2",
                 f"--ntasks-per-node={gpus}", f"--gpus-per-node={gpus}", f"--job-name={cfg['app']}-run"):  # fmt: skip
        assert f"#SBATCH {line}\n" in sbatch, line


@pytest.mark.parametrize("name", ["pretrain", "train_ac"])
def test_both_stages_refuse_bad_launch_options(name, tmp_path):
    config = str(REPO / "config" / "train" / ("pretrain_tiny_cpu.yaml" if name == "pretrain" else "ac_tiny_cpu.yaml"))
    for argv, message in (
        (["--config", config, "--partition", "gpu"], "--partition only apply with --slurm"),
        (["--config", config, "--slurm", "--nodes", "0"], "--nodes must be at least 1"),
        (["--config", config, "--slurm", "--time", "soon"], "argument --time: time must be minutes"),
    ):
        proc = run_script(f"training/{name}.py", argv)
        assert proc.returncode == 2
        assert f"{name}.py: error: {message}" in proc.stderr
    proc = run_script(f"training/{name}.py", ["--config", config, "--set", "optimization.lrr=1"])
    assert proc.returncode == 2
    err = proc.stderr
    assert f"{name}.py: error: " in err and "unknown config key 'optimization.lrr'" in err
