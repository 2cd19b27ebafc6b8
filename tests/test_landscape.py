"""Energy landscape on the toy model (known optimum) and the console command on the example trajectory."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from vjepa2_core.planning.landscape import energy_landscape, main
from vjepa2_core.planning.poses import compose_pose
from vjepa2_core.planning.toy import ToyWorldModel


def test_landscape_minimum_is_the_known_optimum():
    toy = ToyWorldModel(num_tokens=8, embed_dim=4, seed=1)
    state = torch.tensor([0.4, 0.0, 0.3, 0.0, 0.0, 0.0, 0.5])
    delta = torch.tensor([0.0375, -0.075, 0.0, 0, 0, 0, 0])  # a grid point of the 5-point grid
    goal = toy.encode_state(compose_pose(state, delta))
    result = energy_landscape(toy, toy.encode_state(state), state, goal, grid_size=5, extent=0.075, batch_size=7)
    assert result["best_index"] == [3, 0, 2]
    torch.testing.assert_close(torch.tensor(result["best_action"]), delta[:3])
    assert result["best_energy"] < 1e-5
    energy = np.asarray(result["energy"])
    assert energy.shape == (5, 5, 5) and energy.min() == result["best_energy"]
    assert result["zero_action_energy"] == pytest.approx(energy[2, 2, 2])
    json.dumps(result)


def test_landscape_rejects_bad_grid():
    toy = ToyWorldModel()
    rep = toy.encode_state(torch.zeros(7))
    with pytest.raises(ValueError, match="grid_size"):
        energy_landscape(toy, rep, torch.zeros(7), rep, grid_size=1)


def test_console_command_writes_png_and_json(tmp_path, franka_npz):
    rc = main(["--random-weights", "--npz", str(franka_npz), "--grid-size", "3", "--out-dir", str(tmp_path)])
    assert rc == 0
    png = (tmp_path / "energy_landscape.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    data = json.loads((tmp_path / "energy_landscape.json").read_text())
    assert np.asarray(data["energy"]).shape == (3, 3, 3)
    assert data["best_energy"] == pytest.approx(np.min(data["energy"]))


def test_console_command_reports_bad_input(tmp_path, capsys):
    assert main(["--random-weights", "--npz", str(tmp_path / "missing.npz"), "--out-dir", str(tmp_path)]) == 2
    assert "error" in capsys.readouterr().err
    assert main(["--random-weights", "--out-dir", str(tmp_path)]) == 2
    assert "--current" in capsys.readouterr().err
