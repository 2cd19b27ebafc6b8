"""Offline replay: exact toy world model (zero rollout error, planner recovers the recorded action) and the tiny
V-JEPA 2-AC model on the real Franka frames, through the `vjepa2-replay` command line."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from vjepa2_core.hub import make_random_checkpoint
from vjepa2_ros.bags.replay import main, run_replay
from vjepa2_ros.bags.replay_config import load_config
from vjepa2_ros.bags.synthetic import synthetic_trajectory
from vjepa2_ros.bags.writer import write_trajectory_bag

TOY_CONFIG = """
model: {kind: toy}
# gripper_max 1 (reference: 0.75) so that the recorded full gripper close is reachable and the optimum is exact
cem: {horizon: 1, samples: 64, topk: 8, iterations: 8, gripper_max: 1.0}
horizon: 3
goal_offsets: [1, 2]
rate: 5.0
"""


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Many tiny ops: one thread avoids thread-pool overhead on a loaded 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def toy_config(tmp_path_factory):
    path = tmp_path_factory.mktemp("cfg") / "toy.yaml"
    path.write_text(TOY_CONFIG)
    return path


@pytest.mark.parametrize("storage,fmt,recorded", [("mcap", "jpeg", True), ("sqlite3", "rgb8", False)])
def test_toy_replay_is_exact(tmp_path, toy_config, storage, fmt, recorded):
    frames, states, actions = synthetic_trajectory(16, seed=7, gripper_at=8)
    bag = write_trajectory_bag(
        tmp_path / "bag",
        frames,
        states,
        storage=storage,
        image_format=fmt,
        rate=5.0,
        actions=actions if recorded else None,
        drop={"image": [12]},
    )
    out = tmp_path / "out"
    assert main([str(bag), "--config", str(toy_config), "--out", str(out), "--quiet"]) == 0
    summary = json.loads((out / "replay_summary.json").read_text())
    assert summary["action_source"] == ("recorded" if recorded else "states")
    assert summary["grid_steps"] == 17 and summary["steps_evaluated"] == 16
    assert summary["skipped_steps"] == {"no_image": 1}
    # step 12 is missing: rollouts from 9, 10, 11 stop before it, and the last steps run out of bag
    assert summary["skipped_rollout_horizons"]["gap_no_image"] == 1 + 2 + 3
    assert summary["skipped_rollout_horizons"]["end_of_bag"] == 1 + 2 + 3
    for k in ("1", "2", "3"):
        assert summary["rollout"][k]["count"] > 8
        assert summary["rollout"][k]["l1_mean"] < 1e-5  # the toy's prediction is exact
    plan1 = summary["planning"]["1"]
    assert plan1["count"] == 14 and plan1["pos_err_m"] < 2e-3 and plan1["direction_cos"] > 0.99
    assert plan1["gripper_agreement"] == 1.0 and plan1["energy"] < 1e-2
    assert summary["planning"]["2"]["count"] == 13

    rows = list(csv.DictReader(open(out / "replay_steps.csv")))
    assert len(rows) == 17 and rows[12]["skip_reason"] == "no_image"
    close = rows[8]  # the recorded gripper close: the planner closes too
    assert float(close["rec_a6"]) > 0.5 and float(close["plan1_a6"]) > 0.25 and close["plan1_grip_agree"] == "1.0"
    planned = np.array([[float(r[f"plan1_a{i}"]) for i in range(3)] for r in rows if r["plan1_a0"]])
    recorded_xyz = np.array([[float(r[f"rec_a{i}"]) for i in range(3)] for r in rows if r["plan1_a0"]])
    np.testing.assert_allclose(planned, recorded_xyz, atol=2e-3)
    for png in ("error_vs_horizon.png", "energy.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_tiny_model_on_franka_frames(tmp_path, franka_npz, capsys):
    data = np.load(franka_npz)
    frames, states = data["observations"][0], data["states"][0].astype(np.float64)
    # the robot holds still for 3 steps, then moves to the second pose and holds: real frames, real states
    idx = [0, 0, 0, 1, 1, 1]
    bag = write_trajectory_bag(tmp_path / "bag", frames[idx], states[idx], storage="sqlite3", image_format="jpeg")
    ckpt = make_random_checkpoint(tmp_path / "tiny.pt", "vit_ac_tiny")
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(
        f"model: {{kind: ac, checkpoint: {ckpt}}}\ncem: {{horizon: 1, samples: 12, topk: 3, iterations: 2}}\n"
    )
    rc = main([str(bag), "--config", str(cfg), "--out", str(tmp_path / "out"), "--json", "--quiet", "--horizon", "2"])
    assert rc == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["model"] == "ac" and summary["horizon"] == 2 and summary["steps_evaluated"] == 6
    for k, n in (("1", 5), ("2", 4)):
        r = summary["rollout"][k]
        assert r["count"] == n and np.isfinite(r["l1_mean"]) and 0 < r["l1_mean"] < 10  # layer-normed latents
    plan = summary["planning"]["1"]
    assert plan["count"] == 5 and np.isfinite(plan["energy"]) and 0 <= plan["gripper_agreement"] <= 1
    assert plan["pos_err_m"] <= 2 * np.sqrt(3) * 0.05 + np.linalg.norm(states[1, :3] - states[0, :3])
    assert summary["steps_per_s"] > 0


def test_config_and_input_errors(tmp_path, toy_config, capsys):
    frames, states, actions = synthetic_trajectory(4, seed=1)
    bag = write_trajectory_bag(tmp_path / "bag", frames, states, actions=actions)
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: {kind: toy}\nhorizn: 3\n")
    assert main([str(bag), "--config", str(bad)]) == 2
    assert "unknown key(s) ['horizn']" in capsys.readouterr().err
    assert main([str(bag), "--config", str(toy_config), "--image-topic", "/nope", "--out", str(tmp_path / "o")]) == 2
    assert "topic '/nope' not in bag" in capsys.readouterr().err
    assert main([str(tmp_path / "nobag"), "--config", str(toy_config)]) == 2
    assert "bag not found" in capsys.readouterr().err
    missing = tmp_path / "ac.yaml"
    missing.write_text(f"model: {{kind: ac, checkpoint: {tmp_path / 'none.pt'}}}\n")
    assert main([str(bag), "--config", str(missing), "--out", str(tmp_path / "o2")]) == 2
    assert "none.pt" in capsys.readouterr().err
    with pytest.raises(ValueError, match="checkpoint is required"):
        load_config(None)


def test_no_plan_and_stride(tmp_path, toy_config):
    frames, states, actions = synthetic_trajectory(10, seed=2)
    bag = write_trajectory_bag(tmp_path / "bag", frames, states, actions=actions, rate=5.0)
    cfg = load_config(toy_config, plan=False, stride=2, max_steps=4)
    summary = run_replay(bag, cfg, out=None, progress=False)
    assert summary["planning"] == {} and summary["steps_replayed"] == 4
    assert summary["rollout"]["1"]["count"] == 4 and summary["rollout"]["1"]["l1_mean"] < 1e-5


def test_console_entry_point(tmp_path, toy_config):
    frames, states, actions = synthetic_trajectory(6, seed=3)
    bag = write_trajectory_bag(tmp_path / "bag", frames, states, actions=actions, rate=5.0)
    exe = str(Path(sys.executable).parent / "vjepa2-replay")
    res = subprocess.run(
        [exe, str(bag), "--config", str(toy_config), "--out", str(tmp_path / "out"), "--json", "--quiet"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout)
    assert summary["steps_evaluated"] == 7 and summary["rollout"]["1"]["l1_mean"] < 1e-5
    assert (tmp_path / "out" / "replay_steps.csv").is_file()
