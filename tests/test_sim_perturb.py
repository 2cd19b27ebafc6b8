"""Visual perturbations of the sim scene (`vjepa2-sim-eval --perturb`): pixels change, physics and goals do not."""

from __future__ import annotations

import json

import numpy as np
import pytest

from vjepa2_ros.sim.env import SimConfig, SimError
from vjepa2_ros.sim.evaluate import main
from vjepa2_ros.sim.perturb import PERTURBATIONS, make_sim, parse_perturbation

SEED = 1000


def _scene(spec: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    sim = make_sim(SimConfig(task="reach", image_size=48), spec, seed=0)
    try:
        state = sim.reset(seed=SEED)
        return state, sim.goal_state(), sim.render().astype(float), sim.goal_image().astype(float)
    finally:
        sim.close()


def test_every_perturbation_changes_the_images_but_not_the_episode():
    state, goal, image, goal_image = _scene("")
    again = _scene("")
    assert np.array_equal(again[2], image), "the unperturbed scene must render identically"
    for name in [*PERTURBATIONS, "light=1.4", "camera_azimuth=-5"]:
        p_state, p_goal, p_image, p_goal_image = _scene(name)
        assert np.allclose(p_state, state) and np.allclose(p_goal, goal), f"{name} changed the episode"
        assert np.abs(p_image - image).mean() > 3.0, f"{name} barely changed the current image"
        assert np.abs(p_goal_image - goal_image).mean() > 3.0, f"{name} barely changed the goal image"


@pytest.mark.parametrize(
    "spec, message",
    [
        ("fog", "unknown perturbation"),
        ("light=dark", "not a number"),
        ("light=0", "scale"),
        ("light=nan", "finite"),
        ("table=2", "fraction"),
        ("camera_shift=1.0", "not a small shift"),
    ],
)
def test_bad_perturbations_are_refused_clearly(spec, message):
    with pytest.raises(SimError, match=message):
        parse_perturbation(spec)


def test_defaults_and_amounts_parse():
    assert parse_perturbation("") is None
    assert parse_perturbation("light") == ("light", PERTURBATIONS["light"].default)
    assert parse_perturbation(" camera_elevation = -3 ") == ("camera_elevation", -3.0)


def test_sim_eval_runs_perturbed_and_rejects_bad_specs(tmp_path, capsys):
    out = tmp_path / "ev"
    args = ["--episodes", "1", "--max-steps", "3", "--policies", "oracle", "--json", "--out", str(out)]
    assert main(args + ["--perturb", "table"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["config"]["perturb"] == "table"
    assert report["summaries"][0]["episodes"] == 1
    for bad in (["--perturb", "fog"], ["--perturb", "light", "--via-ros"]):
        with pytest.raises(SystemExit) as exit_info:
            main(args + bad)
        assert exit_info.value.code == 2
        assert "vjepa2-sim-eval: error" in capsys.readouterr().err
