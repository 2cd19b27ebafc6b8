"""AC post-training on generated DROID episodes (real HDF5 + MP4): learning, crash + resume, torchrun, configs."""

from __future__ import annotations

import csv
import functools
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import config_argv, run_script, script_summary

from vjepa2_core.data.droid import DROIDDataset, collate, write_episode
from vjepa2_core.data.feature_cache import FeatureCache
from vjepa2_core.hub import MODELS, load_ac_model
from vjepa2_core.training import ac, ac_run
from vjepa2_core.training.checkpoint import load_training_checkpoint, seed_everything
from vjepa2_core.training.config import ConfigError, load_config, validate

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "config" / "train" / "ac_tiny_cpu.yaml"
REFERENCE = REPO / "config" / "train" / "droid-256px-8f.yaml"
VENV_BIN = Path(sys.executable).parent
LOCAL_JOB = ("--slurm", "--cluster", "local", "--time", "5")
SCRIPT = "training/train_ac.py"


def make_episodes(root: Path, n: int, seed: int = 0) -> Path:
    """Episodes whose frames follow the states: a square moves with the end-effector's x, y."""
    rng = np.random.default_rng(seed)
    for _ in range(n):
        t = 30
        xyz = np.cumsum(rng.normal(0, 0.012, (t, 3)), axis=0)
        cart = np.c_[xyz, np.cumsum(rng.normal(0, 0.02, (t, 3)), axis=0)]
        frames = np.zeros((t, 72, 128, 3), np.uint8)
        for k in range(t):
            cx, cy = int(64 + xyz[k, 0] * 400) % 128, int(36 + xyz[k, 1] * 400) % 72
            frames[k, max(0, cy - 8) : cy + 8, max(0, cx - 8) : cx + 8] = (255, 128, 0)
        write_episode(root, frames, cart, rng.uniform(0, 1, t))
    return root / "trajectories.csv"


@pytest.fixture(scope="module")
def dataset_csv(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ac_episodes")
    csv_path = make_episodes(root, 10)
    bad = write_episode(root, np.zeros((30, 72, 128, 3), np.uint8), np.zeros((30, 6)), np.zeros(30))
    next((bad / "recordings" / "MP4").glob("*.mp4")).write_bytes(b"\x00" * 100)  # corrupt video
    return csv_path


def overrides(csv_path: Path, folder: Path, *extra: str) -> list[str]:
    return [f"data.datasets=[{csv_path}]", f"folder={folder}", *extra]


def tiny_cfg(csv_path: Path, folder: Path, *extra: str) -> dict:
    return ac_run.check_config(load_config(TINY, ac_run.SCHEMA, overrides(csv_path, folder, *extra)))


def train_tiny(csv_path: Path, folder: Path, *extra: str, resume: bool = False) -> dict:
    """`training/train_ac.py` on the tiny config with these overrides; its summary (step, loss, skipped, folder)."""
    flags = ["--resume"] if resume else []
    return script_summary(SCRIPT, config_argv(TINY, overrides(csv_path, folder, *extra), *flags))


def losses(folder: Path) -> list[tuple[int, str]]:
    with open(folder / "train.csv", newline="") as f:
        return [(int(r["step"]), r["loss"]) for r in csv.DictReader(f)]


def test_tiny_run_learns_and_writes_a_loadable_checkpoint(dataset_csv, tmp_path):
    out = tmp_path / "run"
    summary = train_tiny(dataset_csv, out, "meta.max_steps=50")
    assert summary["step"] == 50
    values = [float(v) for _, v in losses(out)]
    assert len(values) == 50
    first, last = np.mean(values[:5]), np.mean(values[-5:])
    assert last < 0.5 * first, (first, last)
    rows = list(csv.DictReader(open(out / "train.csv")))
    assert int(rows[-1]["skipped"]) >= 1  # the corrupt episode was met and skipped
    val = list(csv.DictReader(open(out / "val.csv")))
    assert [int(r["step"]) for r in val] == [25, 50]
    for r in val:
        assert float(r["val_copy_loss"]) > 0 and float(r["val_zero_action_loss"]) > 0
    # reference layout + model_config: the planner loads it without a name
    ckpt = load_training_checkpoint(out / "latest.pt")
    assert {"encoder", "target_encoder", "predictor", "opt", "scaler", "epoch", "loss", "batch_size", "world_size",
            "lr", "model_config"} <= set(ckpt)  # fmt: skip
    assert {"step", "itr", "scheduler", "rng", "skipped"} <= set(ckpt)  # the resume state pretraining writes too
    assert (ckpt["step"], ckpt["epoch"], ckpt["itr"], ckpt["scheduler"]) == (50, 5, 0, {"step": 50})
    assert (out / "e5.pt").is_file()
    encoder, predictor = load_ac_model(out / "latest.pt")
    assert torch.equal(predictor.state_dict()["predictor_proj.weight"], ckpt["predictor"]["predictor_proj.weight"])
    assert encoder.embed_dim == 96


def _run(args: list[str], **kw) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)


@pytest.mark.slow
def test_kill_9_then_resume_reproduces_the_uninterrupted_losses(dataset_csv, tmp_path):
    extra = ("meta.max_steps=30", "meta.checkpoint_every_steps=4", "meta.eval_freq=0")
    straight = tmp_path / "straight"
    train_tiny(dataset_csv, straight, *extra)
    expected = losses(straight)

    crashed = tmp_path / "crashed"
    cmd = [sys.executable, "training/train_ac.py", "--config", str(TINY)]
    for o in overrides(dataset_csv, crashed, *extra):
        cmd += ["--set", o]
    proc = _run(cmd)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if (crashed / "train.csv").is_file() and len(losses(crashed)) >= 14:
            os.kill(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.02)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, proc.stdout.read()
    done = len(losses(crashed))
    assert 14 <= done < 30
    assert load_training_checkpoint(crashed / "latest.pt")["step"] in range(12, done + 1, 4)

    resumed = _run(cmd + ["--resume"])
    output, _ = resumed.communicate(timeout=180)
    assert resumed.returncode == 0, output
    assert "resumed from" in output
    assert losses(crashed) == expected  # same steps, bit-identical losses


@pytest.mark.slow
def test_two_process_gloo_torchrun(dataset_csv, tmp_path):
    out = tmp_path / "ddp"
    cmd = [str(VENV_BIN / "torchrun"), "--standalone", "--nproc-per-node", "2", "training/train_ac.py"]
    cmd += ["--config", str(TINY)]
    for o in overrides(dataset_csv, out, "meta.max_steps=6", "data.batch_size=2", "meta.eval_freq=3"):
        cmd += ["--set", o]
    proc = _run(cmd)
    output, _ = proc.communicate(timeout=240)
    assert proc.returncode == 0, output
    rows = losses(out)
    assert [s for s, _ in rows] == list(range(1, 7)) and all(np.isfinite(float(v)) for _, v in rows)
    ckpt = load_training_checkpoint(out / "latest.pt")
    assert ckpt["world_size"] == 2 and ckpt["step"] == 6 and len(ckpt["rng"]) == 2
    assert not any(k.startswith("module.") for k in ckpt["predictor"])


@pytest.mark.slow
def test_two_ranks_finetuning_the_encoder_stay_identical(dataset_csv, tmp_path):
    """meta.finetune_encoder under torchrun (gloo, each rank its own clips, each its own seed): after the steps
    both ranks hold the same encoder, EMA target and predictor, bit for bit (rank 0's are what latest.pt saves)."""
    out, ranks = tmp_path / "ft_ddp", tmp_path / "ranks"
    cmd = [str(VENV_BIN / "torchrun"), "--standalone", "--nproc-per-node", "2", "tests/ac_ddp_worker.py", str(ranks)]
    cmd += ["--seed-per-rank", "--config", str(TINY)]
    sets = ("meta.max_steps=3", "data.batch_size=2", "meta.eval_freq=0", "meta.finetune_encoder=true")
    for o in overrides(dataset_csv, out, *sets, "optimization.ema=[0.9,0.9]"):
        cmd += ["--set", o]
    proc = _run(cmd)
    output, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, output
    r0, r1 = (torch.load(ranks / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    for part in ("encoder", "target_encoder", "predictor"):
        assert r0[part].keys() == r1[part].keys()
        differ = [k for k in r0[part] if not torch.equal(r0[part][k], r1[part][k])]
        assert not differ, f"{part} differs between the ranks in {differ[:3]}"
    cfg = tiny_cfg(dataset_csv, out, *sets)
    seed_everything(cfg["meta"]["seed"])
    start = ac.build_models(cfg, ac.model_config(cfg))[0].state_dict()  # rank 0's initial weights
    key = "blocks.0.mlp.fc1.weight"
    online, target = r0["encoder"][key], r0["target_encoder"][key]
    assert not torch.equal(online, start[key]) and not torch.equal(target, start[key])  # both moved from rank 0's
    assert (target - start[key]).norm() < (online - start[key]).norm()  # ... the EMA copy lagging behind
    assert torch.equal(load_training_checkpoint(out / "latest.pt")["encoder"][key], r0["encoder"][key])


def _count_saved(sizes: list[int], t: torch.Tensor) -> torch.Tensor:
    sizes.append(t.numel() * t.element_size())
    return t


def test_finetuned_encoder_is_checkpointed_by_default_with_the_same_gradients(dataset_csv, tmp_path):
    """The trained encoder copy recomputes its blocks in backward (less saved activation memory), and the losses
    and gradients are those of the plain encoder; model.encoder_activation_checkpointing=false turns it off."""
    cfg = tiny_cfg(dataset_csv, tmp_path, "meta.finetune_encoder=true")
    encoder, predictor = ac.build_models(cfg, ac.model_config(cfg))
    checkpointed = ac.build_objective(cfg, encoder, predictor)
    plain = ac.build_objective(
        tiny_cfg(dataset_csv, tmp_path, "meta.finetune_encoder=true", "model.encoder_activation_checkpointing=false"),
        encoder,
        predictor,
    )
    assert checkpointed.encoder.use_activation_checkpointing and not plain.encoder.use_activation_checkpointing
    assert checkpointed.encoder is not encoder and all(p.requires_grad for p in checkpointed.encoder.parameters())
    assert ac.build_objective(tiny_cfg(dataset_csv, tmp_path), encoder, predictor).encoder is None
    no_rope = tiny_cfg(dataset_csv, tmp_path, "model.use_rope=false")
    sincos = ac.finetune_copy(ac.build_models(no_rope, ac.model_config(no_rope))[0], checkpointing=True)
    assert not sincos.pos_embed.requires_grad and sincos.blocks[0].attn.qkv.weight.requires_grad
    torch.manual_seed(0)
    frames = torch.randn(2, 3, 4, 64, 64)
    h = ac.encode_frames(encoder, frames)
    actions, states = torch.randn(2, 3, 7) * 0.05, torch.randn(2, 4, 7)
    results = []
    for objective in (checkpointed, plain):
        objective.zero_grad(set_to_none=True)
        saved: list[int] = []  # bytes of every tensor the forward keeps for the backward
        pack = functools.partial(_count_saved, saved)
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            jloss, sloss = objective(h, actions, states, None, frames)
        (jloss + sloss).backward()
        grads = [p.grad.clone() for p in objective.encoder.parameters()]
        results.append((float(jloss.detach()), float(sloss.detach()), grads, sum(saved)))
    (j0, s0, g0, bytes0), (j1, s1, g1, bytes1) = results
    assert (j0, s0) == pytest.approx((j1, s1), abs=1e-6)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(g0, g1, strict=True))
    assert bytes0 < bytes1  # the checkpointed encoder's blocks kept only their inputs


def test_reference_config_validates_and_matches_the_released_architecture():
    cfg = ac_run.check_config(load_config(REFERENCE, ac_run.SCHEMA))
    assert cfg["optimization"]["ipe"] == 300 and cfg["meta"]["dtype"] == "bfloat16"
    mcfg = ac.model_config(cfg)
    released = MODELS["vit_ac_giant"].model_config
    assert mcfg["encoder"] == released["encoder"]
    assert {k: mcfg["predictor"][k] for k in released["predictor"]} == released["predictor"]


def test_typo_in_a_reference_config_is_a_clear_error(tmp_path):
    text = REFERENCE.read_text().replace("  warmup: 15", "  warmpu: 15")
    (tmp_path / "typo.yaml").write_text(text)
    proc = run_script(SCRIPT, ["--config", str(tmp_path / "typo.yaml")])
    assert proc.returncode == 2
    err = proc.stderr
    assert "unknown config key 'optimization.warmpu'" in err and "did you mean 'warmup'" in err
    with pytest.raises(ConfigError, match="missing config key 'loss.auto_steps'"):
        data = yaml.safe_load(REFERENCE.read_text())
        del data["loss"]["auto_steps"]
        (tmp_path / "missing.yaml").write_text(yaml.safe_dump(data))
        load_config(tmp_path / "missing.yaml", ac_run.SCHEMA)
    proc = run_script(SCRIPT, ["--config", str(REFERENCE), "--set", "data_aug.auto_augment=true"])
    assert proc.returncode == 2
    assert "data_aug.auto_augment: True is not supported" in proc.stderr


def test_losses_match_their_definition():
    torch.manual_seed(0)
    cfg = yaml.safe_load(TINY.read_text())
    cfg = ac_run.check_config(validate(cfg, ac_run.SCHEMA))
    encoder, predictor = ac.build_models(cfg, ac.model_config(cfg))
    h = ac.layer_norm(torch.randn(2, 4, 16, 96))
    actions, states = torch.randn(2, 3, 7), torch.randn(2, 4, 7)
    jloss, sloss1 = ac.ac_losses(predictor, h, actions, states, auto_steps=1)
    flat = h.reshape(2, 64, 96)
    pred = ac.layer_norm(predictor(flat[:, :48], actions, states[:, :3]))
    assert torch.allclose(jloss, (pred - flat[:, 16:]).abs().mean())
    assert torch.allclose(sloss1, (pred[:, :16] - flat[:, 16:32]).abs().mean())  # one rollout step = first TF frame
    _, sloss2 = ac.ac_losses(predictor, h, actions, states, auto_steps=2)
    seq = torch.cat([flat[:, :16], pred[:, :16]], dim=1)
    nxt = ac.layer_norm(predictor(seq, actions[:, :2], states[:, :2]))[:, -16:]
    expected = (torch.cat([pred[:, :16], nxt], 1) - flat[:, 16:48]).abs().mean()
    assert torch.allclose(sloss2, expected, atol=1e-6)
    diag = ac.diagnostics(predictor, h, actions, states)
    assert diag["val_copy_loss"] == pytest.approx(float((flat[:, :48] - flat[:, 16:]).abs().mean()), rel=1e-5)
    assert diag["val_jloss"] == pytest.approx(float(jloss.detach()), rel=1e-5)
    assert diag["val_zero_action_loss"] != pytest.approx(diag["val_jloss"], rel=1e-6)
    # with use_extrinsics the camera poses of the context frames are fed too
    cfg["model"]["use_extrinsics"] = True
    _, with_extr = ac.build_models(cfg, ac.model_config(cfg))
    extr = torch.randn(2, 4, 6)
    j1, _ = ac.ac_losses(with_extr, h, actions, states, extr, auto_steps=2)
    j0, _ = ac.ac_losses(with_extr, h, actions, states, torch.zeros_like(extr), auto_steps=2)
    assert torch.isfinite(j1) and not torch.allclose(j1, j0)


def test_feature_cache_serves_later_epochs(dataset_csv, tmp_path):
    cfg = tiny_cfg(dataset_csv, tmp_path / "run", f"data.feature_cache={tmp_path / 'cache'}")
    encoder, _ = ac.build_models(cfg, ac.model_config(cfg))
    cache = FeatureCache(tmp_path / "cache", {"test": 1}, "float16")
    kw = dict(frames_per_clip=4, fps=5, crop_size=64, seed=1)
    ds = DROIDDataset(dataset_csv, feature_cache=cache, feature_shape=(16, 96), **kw)
    batch = collate([ds[i] for i in range(4)])
    assert not batch["cached"].any()
    fresh = ac_run.targets(batch, encoder, cache, ds, cfg, torch.device("cpu"))
    again = collate([ds[i] for i in range(4)])  # same epoch -> same clips, now from the cache, not decoded
    assert again["cached"].all() and again["frames"].abs().sum() == 0
    cached = ac_run.targets(again, None, cache, ds, cfg, torch.device("cpu"))  # no encoder needed
    assert torch.allclose(cached, fresh, atol=2e-3)
    with pytest.raises(ValueError, match="deterministic crop"):
        DROIDDataset(dataset_csv, feature_cache=cache, feature_shape=(16, 96), horizontal_flip=True, **kw)


@pytest.mark.slow
def test_submitit_tasks_train_as_a_distributed_job(dataset_csv, tmp_path):
    out = tmp_path / "submitit"
    sets = ["meta.max_steps=3", "meta.eval_freq=0", "tasks_per_node=2", "data.batch_size=2"]
    # SLURM's code path (the script's --slurm), run as local processes; the script waits and prints the results
    results = script_summary(SCRIPT, config_argv(TINY, overrides(dataset_csv, out, *sets), *LOCAL_JOB))
    assert [r["step"] for r in results] == [3, 3] and results[0]["loss"] == results[1]["loss"]
    assert load_training_checkpoint(out / "latest.pt")["world_size"] == 2


# Keys of a checkpoint written by train_ac.py before the unified resume state (recorded from one such file).
OLD_AC_KEYS = {"batch_size", "config", "encoder", "epoch", "loss", "lr", "model_config", "opt", "predictor", "rng",
               "scaler", "scheduler", "skipped", "step", "target_encoder", "world_size"}  # fmt: skip


def test_an_old_checkpoint_resumes_through_resume_checkpoint(dataset_csv, tmp_path):
    """A checkpoint in the old AC layout (no `itr`), given as meta.resume_checkpoint, continues bit-identically."""
    extra = ("meta.eval_freq=0", "data.batch_size=2", "optimization.ipe=4")
    train_tiny(dataset_csv, tmp_path / "straight", *extra, "meta.max_steps=6")
    train_tiny(dataset_csv, tmp_path / "first", *extra, "meta.max_steps=3")
    new = load_training_checkpoint(tmp_path / "first" / "latest.pt")
    old = {k: v for k, v in new.items() if k in OLD_AC_KEYS}
    assert set(old) == OLD_AC_KEYS and set(new) - set(old) == {"itr"}
    torch.save(old, tmp_path / "old.pt")
    resumed = tmp_path / "resumed"
    old_path = f"meta.resume_checkpoint={tmp_path / 'old.pt'}"
    summary = train_tiny(dataset_csv, resumed, *extra, "meta.max_steps=6", old_path)
    assert summary["step"] == 6
    assert losses(resumed) == losses(tmp_path / "straight")[3:]
    # a resume path that does not exist is an error (exit 3), not a silent fresh start
    missing = f"meta.resume_checkpoint={tmp_path / 'missing.pt'}"
    argv = config_argv(TINY, overrides(dataset_csv, tmp_path / "x", missing))
    assert run_script(SCRIPT, argv).returncode == 3


def test_non_finite_loss_stops_with_exit_4_and_writes_nothing(dataset_csv, tmp_path):
    huge = ("optimization.lr=1.0e+30", "optimization.start_lr=1.0e+30", "optimization.final_lr=1.0e+30")
    sets = (*huge, "meta.eval_freq=0")
    proc = run_script(SCRIPT, config_argv(TINY, overrides(dataset_csv, tmp_path, *sets)))
    assert proc.returncode == 4
    assert re.search(r"train_ac.py: stopped: loss is (nan|inf|-inf) at step \d", proc.stderr)
    assert not (tmp_path / "latest.pt").exists()
    # library callers get the exception: tests/test_training_engine.py (Engine.check_finite raises NonFiniteLoss)


def test_finetuned_encoder_trains_with_an_ema_target_and_resumes(dataset_csv, tmp_path):
    """meta.finetune_encoder: the encoder moves, its EMA copy lags it, both are saved and resume exactly."""
    extra = ("meta.finetune_encoder=true", "optimization.enc_lr_scale=0.5", "optimization.ema=[0.9,0.9]")
    out = tmp_path / "ft"
    cfg = tiny_cfg(dataset_csv, out, "meta.max_steps=20", *extra)
    start, _ = ac.build_models(cfg, ac.model_config(cfg))
    train_tiny(dataset_csv, out, "meta.max_steps=20", *extra)
    ckpt = load_training_checkpoint(out / "latest.pt")
    key = "blocks.0.mlp.fc1.weight"
    w0, online, target = start.state_dict()[key], ckpt["encoder"][key], ckpt["target_encoder"][key]
    assert not torch.equal(online, w0) and not torch.equal(target, w0)  # both moved from the initial weights
    assert not torch.equal(online, target)  # the target is an EMA copy, not the online encoder
    assert (target - w0).norm() < (online - w0).norm()  # ... and lags behind it
    encoder, _ = load_ac_model(out / "latest.pt", key="target_encoder")  # what vjepa2_ros.sim.export ships
    assert torch.equal(encoder.state_dict()[key], target)
    # resume from step 10 reproduces the uninterrupted losses and weights
    short = tmp_path / "short"
    train_tiny(dataset_csv, short, "meta.max_steps=10", "meta.save_every_freq=1", *extra)
    train_tiny(dataset_csv, short, "meta.max_steps=20", *extra, resume=True)
    assert losses(short)[-10:] == losses(out)[-10:]
    again = load_training_checkpoint(short / "latest.pt")
    assert torch.equal(again["target_encoder"][key], target) and torch.equal(again["encoder"][key], online)


def test_finetuned_encoder_refuses_a_feature_cache(dataset_csv, tmp_path):
    with pytest.raises(ConfigError, match="feature_cache"):
        tiny_cfg(dataset_csv, tmp_path / "r", "meta.finetune_encoder=true", f"data.feature_cache={tmp_path / 'c'}")
