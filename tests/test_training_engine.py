"""The shared training engine: config validation, schedules, param groups, checkpoints, RNG, sampler, CSV."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch
from torch import nn

from vjepa2_core.training.checkpoint import (
    CheckpointError,
    load_training_checkpoint,
    rng_state,
    save_training_checkpoint,
    set_rng_state,
)
from vjepa2_core.training.config import REQUIRED, ConfigError, Field, apply_overrides, load_config, validate
from vjepa2_core.training.distributed import ResumableSampler, init_distributed
from vjepa2_core.training.metrics import CSVLogger, read_csv
from vjepa2_core.training.optim import build_adamw, make_grad_scaler, param_groups, resolve_dtype
from vjepa2_core.training.schedules import build_scheduler, cosine_wd, linear_decay, warmup_cosine, wsd

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
