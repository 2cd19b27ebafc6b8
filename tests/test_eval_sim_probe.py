"""vjepa2-probe-sim on real DROID-layout episodes (MP4 + trajectory.h5): episode split, the mean-position baseline
computed from the h5 states, a finite probe error; bad input exits 2. (A translating disc is not a readable
target for a RoPE encoder - its tokens carry no absolute position - so the measured claim lives on the simulator,
whose arm changes appearance with its position.)"""

import json

import numpy as np

from vjepa2_core.data.droid import write_episode
from vjepa2_core.data.synthetic_videos import moving_shape_frames
from vjepa2_core.hub import make_random_checkpoint
from vjepa2_ros.sim import probe


def test_probe_reads_position_from_episodes(tmp_path, capsys):
    for i in range(6):
        frames, centres = moving_shape_frames(12, 64, seed=i)
        cart = np.zeros((12, 6))
        cart[:, :2] = centres * 0.5  # metres: the disc centre is the "end effector"
        write_episode(tmp_path / "eps", frames, cart, np.zeros(12), fps=4.0, name=f"ep{i}")
    model = make_random_checkpoint(tmp_path / "wm.pt", "vit_ac_tiny")
    out = tmp_path / "r.json"
    argv = ["--data", str(tmp_path / "eps"), "--model", str(model), "--epochs", "2", "--out", str(out)]
    assert probe.main(argv) == 0
    result = json.loads(out.read_text())
    assert result["episodes"] == 6 and result["holdout_episodes"] == 1 and result["frames"] == 72
    held_out = np.stack([np.r_[c, 0.0] for c in moving_shape_frames(12, 64, seed=5)[1] * 0.5])
    train_mean = np.concatenate(
        [np.c_[moving_shape_frames(12, 64, seed=i)[1] * 0.5, np.zeros(12)] for i in range(5)]
    ).mean(0)
    expected = 100 * np.linalg.norm(train_mean - held_out, axis=1).mean()
    assert abs(result["ee_mean_baseline_cm"] - expected) < 1e-3  # the last episode (sorted) is held out
    assert np.isfinite(result["ee_error_cm"]) and result["ee_error_cm"] > 0
    assert probe.main(["--data", str(tmp_path / "nothing"), "--model", str(model)]) == 2
    assert "vjepa2-probe-sim: error:" in capsys.readouterr().err
