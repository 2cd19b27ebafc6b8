"""V-JEPA pretraining on generated MP4s: loss falls, EMA rule, hub round trip, exact resume after kill -9, cooldown,
a 2-process gloo run, config errors. Runs training/pretrain.py as a real subprocess."""

from __future__ import annotations

import copy
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import config_argv, run_script, script_summary

from vjepa2_core.data.synthetic_videos import moving_shape_frames, write_moving_shapes_dataset, write_video
from vjepa2_core.hub import load_checkpoint, load_encoder, load_encoder_and_predictor
from vjepa2_core.masks import VJEPA2_MASK_CFGS, MultiSeqMaskCollator
from vjepa2_core.training import pretrain_run
from vjepa2_core.training.config import load_config
from vjepa2_core.training.metrics import read_csv
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
from vjepa2_core.training.schedules import linear_decay

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "training" / "pretrain.py"
TINY = REPO / "config" / "train" / "pretrain_tiny_cpu.yaml"
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> Path:
    csv, _ = write_moving_shapes_dataset(tmp_path_factory.mktemp("videos"), 12, num_frames=24, size=64)
    broken = csv.parent / "broken.mp4"
    broken.write_bytes(b"not an mp4" * 10)
    short = write_video(csv.parent / "short.mp4", moving_shape_frames(4, 64)[0])
    with open(csv, "a") as f:  # one unreadable and one too-short video: skipped and counted, never fatal
        f.write(f"{broken} 0\n{short} 0\n")
    return csv


def args_for(folder: Path, videos: Path, *sets: str) -> list[str]:
    cmd = [
        sys.executable,
        str(SCRIPT),
        "--config",
        str(TINY),
        "--set",
        f"folder={folder}",
        "--set",
        f"data.datasets=[{videos}]",
        "--set",
        "data.batch_size=4",
    ]
    for s in sets:
        cmd += ["--set", s]
    return cmd


def run(folder: Path, videos: Path, *sets: str, extra: tuple[str, ...] = (), timeout: int = 240):
    proc = subprocess.run(
        args_for(folder, videos, *sets) + list(extra), env=ENV, capture_output=True, text=True, timeout=timeout
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def losses(folder: Path) -> list[float]:
    return [float(r["loss"]) for r in read_csv(folder / "train.csv")]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, videos) -> Path:
    """100 steps (2 epochs x 50) of the tiny config, two data-loader workers."""
    folder = tmp_path_factory.mktemp("run100")
    run(folder, videos, "data.num_workers=2", "meta.log_every=5")
    return folder


@pytest.mark.slow
def test_loss_falls_over_100_steps(trained):
    rows = read_csv(trained / "train.csv")
    assert int(rows[-1]["step"]) == 100 and len(rows) == 20
    loss = losses(trained)
    first, last = sum(loss[:2]) / 2, sum(loss[-4:]) / 4
    assert last < 0.6 * first, loss
    assert all(float(r["lr"]) > 0 and 0.99 <= float(r["momentum"]) < 0.999 for r in rows)
    assert int(rows[-1]["skipped_videos"]) > 0
    assert (trained / "e1.pt").is_file() and (trained / "e2.pt").is_file() and (trained / "config.yaml").is_file()


@pytest.mark.slow
def test_checkpoint_layout_and_hub_round_trip(trained):
    ckpt = load_checkpoint(trained / "latest.pt")
    for key in (
        "encoder",
        "predictor",
        "target_encoder",
        "opt",
        "scaler",
        "epoch",
        "loss",
        "batch_size",
        "world_size",
        "lr",
        "model_config",
    ):
        assert key in ckpt, key
    assert ckpt["epoch"] == 2 and ckpt["world_size"] == 1 and ckpt["batch_size"] == 4
    encoder, predictor = load_encoder_and_predictor(trained / "latest.pt")
    for name, value in ckpt["encoder"].items():
        assert torch.equal(encoder.state_dict()[name], value)
    assert len(predictor.mask_tokens) == 2  # 2 mask configs x 1 clip length
    target = load_encoder(checkpoint=trained / "latest.pt", key="target_encoder")
    x = torch.randn(1, 3, 8, 64, 64)
    with torch.no_grad():
        a, b = encoder(x), target(x)
    assert a.shape == b.shape == (1, 4 * 16, 96)
    assert not torch.allclose(a, b)  # the EMA target lags the online encoder


def _tiny_models():
    cfg = load_config(TINY, pretrain_run.SCHEMA)
    torch.manual_seed(0)
    return build_models(model_configs(cfg["model"], 64, 8, num_mask_tokens=2))


def test_target_encoder_follows_the_ema_rule():
    encoder, predictor, target = _tiny_models()
    coll = MultiSeqMaskCollator(VJEPA2_MASK_CFGS, dataset_fpcs=[8], crop_size=64)
    samples = [([torch.randn(3, 8, 64, 64)], 0, [torch.arange(8)]) for _ in range(2)]
    batch = MaskedBatch.from_collator(coll(samples))
    opt = torch.optim.AdamW(list(encoder.parameters()) + list(predictor.parameters()), lr=1e-2)
    for step in range(2):
        loss = jepa_loss(
            predict_targets(encoder, predictor, batch), target_features(target, batch.clips), batch.masks_pred
        )
        opt.zero_grad()
        loss.backward()
        opt.step()
        before = copy.deepcopy(target.state_dict())
        m = ema_momentum(step, (0.9, 0.99), total_steps=10)
        assert m == pytest.approx(0.9 + step * 0.009)
        ema_update(target.backbone, encoder.backbone, m)
        online = encoder.state_dict()
        for name, value in target.state_dict().items():
            torch.testing.assert_close(value, m * before[name] + (1 - m) * online[name], rtol=1e-6, atol=1e-7)
    assert not any(p.requires_grad for p in target.parameters())
    assert ema_momentum(50, (0.99925, 0.99925), 100) == 0.99925


def test_loss_is_l1_on_layer_normed_target_tokens():
    h = [torch.randn(2, 6, 4)]
    tgt = [[torch.tensor([[1, 4], [0, 5]])]]
    z = [[torch.randn(2, 2, 4)]]
    expected = torch.stack([(z[0][0][b] - h[0][b, tgt[0][0][b]]).abs().mean() for b in range(2)]).mean()
    torch.testing.assert_close(jepa_loss(z, h, tgt), expected)
    torch.testing.assert_close(
        jepa_loss(z, h, tgt, loss_exp=2.0),
        torch.stack([((z[0][0][b] - h[0][b, tgt[0][0][b]]) ** 2).mean() for b in range(2)]).mean() / 2,
    )
    encoder, _, target = _tiny_models()
    feats = target_features(target, [torch.randn(1, 3, 8, 64, 64)])[0]
    torch.testing.assert_close(feats.mean(-1), torch.zeros(1, 64), atol=1e-5, rtol=0)


@pytest.mark.slow
def test_exact_resume_after_kill(tmp_path, videos):
    # Two clip lengths mixed by weight: exercises per-length mask seeds and the weighted sampler on resume.
    sets = (
        "optimization.ipe=8",
        "optimization.epochs=3",
        "meta.checkpoint_every_steps=3",
        "meta.log_every=1",
        f"data.datasets=[{videos},{videos}]",
        "data.dataset_fpcs=[8,4]",
        "data.datasets_weights=[0.5,0.5]",
        f"data.val_datasets=[{videos}]",
        "data.val_clips=4",
        "meta.eval_freq=8",
    )
    run(tmp_path / "full", videos, *sets)
    proc = subprocess.Popen(
        args_for(tmp_path / "cut", videos, *sets), env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    latest = tmp_path / "cut" / "latest.pt"
    deadline = time.time() + 180
    while not latest.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    cut = load_checkpoint(latest)
    assert cut["step"] == cut["epoch"] * 8 + cut["itr"] and cut["step"] % 3 == 0
    assert cut["step"] < 24, "the run finished before it could be killed"
    run(tmp_path / "cut", videos, *sets, extra=("--resume",))
    a, b = load_checkpoint(tmp_path / "full" / "latest.pt"), load_checkpoint(latest)
    for key in ("encoder", "predictor", "target_encoder"):
        for name, value in a[key].items():
            assert torch.equal(value, b[key][name]), f"{key}.{name} differs after resume"
    for pid, state in a["opt"]["state"].items():
        assert torch.equal(state["exp_avg"], b["opt"]["state"][pid]["exp_avg"])
    assert losses(tmp_path / "full") == losses(tmp_path / "cut")  # log rows past the checkpoint are redone
    val = [[(r["step"], r["val_loss"]) for r in read_csv(tmp_path / f / "val.csv")] for f in ("full", "cut")]
    assert [s for s, _ in val[0]] == ["8", "16", "24"] and val[0] == val[1]


@pytest.mark.slow
def test_cooldown_from_checkpoint_uses_linear_decay(tmp_path, trained, videos):
    sets = (
        "optimization.is_anneal=true",
        f"optimization.anneal_ckpt={trained / 'latest.pt'}",
        "optimization.epochs=1",
        "optimization.ipe=4",
        "optimization.final_lr=1.0e-6",
        "meta.log_every=1",
    )
    run(tmp_path, videos, *sets, "meta.max_steps=2")  # interrupted cooldown ...
    run(tmp_path, videos, *sets, "optimization.resume_anneal=true")  # ... continued from its own latest.pt
    rows = read_csv(tmp_path / "train.csv")
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4]  # epoch counter reset, then resumed at step 2
    for r in rows:
        assert float(r["lr"]) == pytest.approx(linear_decay(int(r["step"]), ref=1e-3, final=1e-6, t_max=4))
    # Started from the pretrained weights, so the first loss is far below a fresh start's.
    assert float(rows[0]["loss"]) < 0.8 * losses(trained)[0]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_process_gloo_run(tmp_path, videos):
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        "--master_addr=127.0.0.1",
        f"--master_port={_free_port()}",
    ] + args_for(
        tmp_path, videos, "optimization.ipe=3", "optimization.epochs=1", "data.batch_size=2", "meta.log_every=1"
    )[
        1:
    ]
    proc = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ckpt = load_checkpoint(tmp_path / "latest.pt")
    assert ckpt["world_size"] == 2 and ckpt["epoch"] == 1
    rows = read_csv(tmp_path / "train.csv")
    assert len(rows) == 3 and all(float(r["loss"]) > 0 for r in rows)
    enc, _ = load_encoder_and_predictor(tmp_path / "latest.pt")
    assert all(torch.isfinite(p).all() for p in enc.parameters())


def test_config_errors_are_clear(tmp_path, videos):
    for bad, message in (
        ("optimization.lrr=1", "unknown config key 'optimization.lrr'"),
        ("optimization.is_anneal=true", "optimization.is_anneal needs optimization.anneal_ckpt"),
        ("mask=[{num_blocks: 0}]", "mask[0]"),
    ):
        proc = run_script("training/pretrain.py", args_for(tmp_path, videos, bad)[2:])
        assert proc.returncode == 2
        err = proc.stderr
        assert "pretrain.py: error: " in err and message in err, err


def test_reference_configs_validate():
    names = sorted(
        p.name for p in (REPO / "config" / "train").glob("*.yaml") if p.name.startswith(("pretrain_vit", "cooldown_"))
    )
    assert len(names) == 7
    for name in names:
        cfg = load_config(REPO / "config" / "train" / name, pretrain_run.SCHEMA)
        pretrain_run.check_config(cfg)
        mc = model_configs(cfg["model"], cfg["data"]["crop_size"], max(cfg["data"]["dataset_fpcs"]), 6)
        width = {"vit_large": 1024, "vit_huge": 1280, "vit_giant": 1408}[cfg["model"]["model_name"]]
        assert mc["encoder"]["embed_dim"] == width and mc["predictor"]["predictor_embed_dim"] == 384
        assert mc["predictor"]["depth"] == 12 and cfg["optimization"]["ema"] == [0.99925, 0.99925]
        assert [m["num_blocks"] for m in cfg["mask"]] == [8, 2]
        assert cfg["optimization"]["is_anneal"] == name.startswith("cooldown_")


def test_activation_checkpointing_gives_the_same_loss_and_gradients():
    cfg = load_config(TINY, pretrain_run.SCHEMA)["model"]
    coll = MultiSeqMaskCollator(VJEPA2_MASK_CFGS, dataset_fpcs=[8], crop_size=64)
    batch = MaskedBatch.from_collator(coll([([torch.randn(3, 8, 64, 64)], 0, [torch.arange(8)]) for _ in range(2)]))
    results = []
    for ckpt in (False, True):
        torch.manual_seed(0)
        mc = model_configs({**cfg, "use_activation_checkpointing": ckpt}, 64, 8, num_mask_tokens=2)
        encoder, predictor, target = build_models(mc)
        assert mc["encoder"]["use_activation_checkpointing"] is ckpt
        loss = jepa_loss(
            predict_targets(encoder, predictor, batch), target_features(target, batch.clips), batch.masks_pred
        )
        loss.backward()
        results.append((loss.detach(), [p.grad.clone() for p in encoder.parameters()]))
    torch.testing.assert_close(results[0][0], results[1][0])
    for g0, g1 in zip(results[0][1], results[1][1]):
        torch.testing.assert_close(g0, g1, rtol=1e-5, atol=1e-6)


# Keys of a checkpoint written by pretrain.py before the unified resume state (recorded from one such file).
OLD_PRETRAIN_KEYS = {"batch_size", "encoder", "epoch", "itr", "loss", "lr", "model_config", "opt", "predictor", "rng",
                     "scaler", "target_encoder", "world_size"}  # fmt: skip


@pytest.mark.slow
def test_an_old_checkpoint_and_old_config_keys_still_resume(tmp_path, videos):
    """A checkpoint in the old layout (epoch + itr + one RNG state, no step/scheduler), named by the old key
    `meta.read_checkpoint`, resumes into the same losses as an uninterrupted run."""
    sets = ("optimization.ipe=4", "optimization.epochs=2", "meta.log_every=1", "data.batch_size=2")
    run(tmp_path / "straight", videos, *sets, "meta.max_steps=6")
    run(tmp_path / "old", videos, *sets, "meta.max_steps=3")
    new = load_checkpoint(tmp_path / "old" / "latest.pt")
    assert (new["step"], new["epoch"], new["itr"], new["scheduler"]) == (3, 0, 3, {"step": 3})
    old = {k: v for k, v in new.items() if k in OLD_PRETRAIN_KEYS}
    old["rng"] = new["rng"][0]
    assert set(old) == OLD_PRETRAIN_KEYS
    torch.save(old, tmp_path / "old.pt")
    proc = run(tmp_path / "resumed", videos, *sets, "meta.max_steps=6", f"meta.read_checkpoint={tmp_path / 'old.pt'}",
               "meta.save_every_steps=2")  # fmt: skip
    assert "'meta.read_checkpoint' is deprecated: use 'meta.resume_checkpoint'" in proc.stderr
    assert "'meta.save_every_steps' is deprecated: use 'meta.checkpoint_every_steps'" in proc.stderr
    rows = read_csv(tmp_path / "resumed" / "train.csv")
    assert [int(r["step"]) for r in rows] == [4, 5, 6]
    assert [float(r["loss"]) for r in rows] == losses(tmp_path / "straight")[3:]
    assert load_checkpoint(tmp_path / "resumed" / "latest.pt")["step"] == 6


def test_non_finite_loss_stops_with_exit_4_and_writes_nothing(tmp_path, videos):
    argv = ["--config", str(TINY)]
    huge = ("optimization.lr=1.0e+30", "optimization.start_lr=1.0e+30", "optimization.final_lr=1.0e+30")
    for s in (f"folder={tmp_path}", f"data.datasets=[{videos}]", "data.batch_size=2", "optimization.ipe=4", *huge):
        argv += ["--set", s]
    proc = run_script("training/pretrain.py", argv)
    assert proc.returncode == 4
    assert re.search(r"pretrain.py: stopped: loss is (nan|inf|-inf) at step \d", proc.stderr)
    rows = read_csv(tmp_path / "train.csv")
    assert not (tmp_path / "latest.pt").exists() and len(rows) <= 1


@pytest.mark.slow
def test_submitit_tasks_pretrain_as_a_distributed_job(tmp_path, videos):
    """The `--slurm` code path (submitit tasks exporting the torch.distributed variables) run as local processes."""
    sets = [f"folder={tmp_path}", f"data.datasets=[{videos}]", "data.batch_size=2", "optimization.ipe=2",
            "optimization.epochs=1", "tasks_per_node=2", "meta.log_every=1"]  # fmt: skip
    local_job = ["--slurm", "--cluster", "local", "--time", "5"]  # the script waits and prints the task results
    results = script_summary("training/pretrain.py", config_argv(TINY, sets, *local_job))
    assert [r["step"] for r in results] == [2, 2] and results[0]["loss"] == results[1]["loss"]
    ckpt = load_checkpoint(tmp_path / "latest.pt")
    assert ckpt["world_size"] == 2 and len(ckpt["rng"]) == 2 and ckpt["step"] == 2
