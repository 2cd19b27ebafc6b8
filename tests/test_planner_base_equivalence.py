"""The planners give the same plans at the same seeds as before the planner-base refactor (issue 29, part 1).

`tests/data/planner_equivalence.json` holds plans, energies and sample counts recorded with the planners of commit
e6afbf7 (every planner a `CEMPlanner` subclass) for each registered planner at fixed seeds: on the toy world model
(plain, warm-started twice, bounded by pins and a workspace box, chunked rollouts, the CEM extensions) and on the
tiny random V-JEPA 2-AC model (plain, chunked, from images). Regenerate only on purpose:
`python tests/test_planner_base_equivalence.py --write` (what it records is what this test compares).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from vjepa2_core.planning import CEMConfig, PlanResult, WorldModel
from vjepa2_core.planning.budget import rollout_bytes_per_sample
from vjepa2_core.planning.planners import PLANNERS
from vjepa2_core.planning.poses import compose_pose
from vjepa2_core.planning.toy import ToyWorldModel

REFERENCE = Path(__file__).parent / "data" / "planner_equivalence.json"
RECORDED = ["cem", "icem", "mppi", "gradient", "cem_grad"]  # the planners that existed when it was recorded
START = torch.tensor([0.4, 0.0, 0.3, 0.0, 0.0, 0.0, 0.1])
SMALL = dict(horizon=2, samples=32, topk=4, iterations=4, grad_restarts=3, grad_steps=3)
BOX = dict(
    horizon=3,
    maxnorm=0.03,
    rotation=True,
    rot_maxnorm=0.05,
    axis={"y": 0.01},
    close_gripper=2,
    workspace=((0.35, -0.1, 0.2), (0.45, 0.1, 0.4)),
)
TOY_CASES = {
    "plain": dict(config=SMALL, delta=[0.04, -0.03, 0.02, 0, 0, 0, 0.3], seed=5),
    "warm": dict(config={**SMALL, "warm_start": True}, delta=[0.06, 0.02, -0.01, 0, 0, 0, 0], seed=9),
    "bounded": dict(config={**SMALL, **BOX}, delta=[0.3, 0, 0, 0, 0, 0, 0], seed=2),
    "chunked": dict(config=SMALL, delta=[0.02, 0.03, 0.0, 0, 0, 0, 0], seed=4, chunk=7),
    "extensions": dict(
        config={**SMALL, "elite_reuse": 0.5, "population_decay": 0.7, "energy": "l2", "energy_frames": "all"},
        delta=[0.03, 0.0, 0.03, 0, 0, 0, 0],
        seed=1,
    ),
}
REAL = dict(horizon=2, samples=8, topk=2, iterations=2, grad_restarts=2, grad_steps=2)


def _summary(result: PlanResult) -> dict:
    return {
        "actions": result.actions.tolist(),
        "energy": result.energy,
        "energy_history": list(result.energy_history),
        "predicted_states": result.predicted_states.tolist(),
        "samples_evaluated": result.samples_evaluated,
    }


def _memory_limit(world_model, horizon: int, chunk: int | None) -> int | None:
    """A limit that lets about `chunk` samples roll out at once (None: no chunking)."""
    return None if chunk is None else rollout_bytes_per_sample(world_model, horizon) * chunk + 2**12


def toy_plans(name: str) -> dict:
    toy = ToyWorldModel(num_tokens=16, embed_dim=8, seed=0)
    out = {}
    for case, spec in TOY_CASES.items():
        cfg = CEMConfig(planner=name, **spec["config"])
        planner = PLANNERS[name](toy, cfg, memory_limit=_memory_limit(toy, cfg.horizon, spec.get("chunk")) or 2**40)
        goal = toy.encode_state(compose_pose(START, torch.tensor(spec["delta"])))
        first = planner.plan(toy.encode_state(START), START, goal, seed=spec["seed"])
        out[case] = _summary(first)
        if case == "warm":  # the planner's own last plan (config.warm_start), then an explicit previous plan
            again = planner.plan(toy.encode_state(START), START, goal, seed=spec["seed"] + 1)
            explicit = torch.cat([torch.full((1, 7), 0.01), first.actions])
            third = planner.plan(toy.encode_state(START), START, goal, seed=spec["seed"] + 2, warm_start=explicit)
            out["warm_again"], out["warm_explicit"] = _summary(again), _summary(third)
    return out


def real_plans(name: str) -> dict:
    torch.manual_seed(0)
    wm = WorldModel.random("vit_ac_tiny", seed=0)
    images = np.random.default_rng(0).integers(0, 256, size=(2, 64, 64, 3), dtype=np.uint8)
    rep, goal = wm.encode(images[:1]), wm.encode(images[1:])
    cfg = CEMConfig(planner=name, **REAL)
    out = {"plain": _summary(PLANNERS[name](wm, cfg, memory_limit=2**40).plan(rep, START, goal, seed=3))}
    if name in ("cem", "icem", "mppi"):  # the samplers: their populations roll out in chunks of 3
        chunked = PLANNERS[name](wm, cfg, memory_limit=_memory_limit(wm, cfg.horizon, 3))
        out["chunked"] = _summary(chunked.plan(rep, START, goal, seed=3))
    if name == "cem":
        result = PLANNERS[name](wm, cfg, memory_limit=2**40).plan_images(images[0], START, images[1], seed=6)
        out["images"] = _summary(result)
    return out


def record() -> dict:
    torch.set_num_threads(1)
    return {name: {"toy": toy_plans(name), "real": real_plans(name)} for name in RECORDED}


@pytest.fixture(scope="module")
def reference() -> dict:
    return json.loads(REFERENCE.read_text())


def _assert_same(got: dict, want: dict, where: str) -> None:
    assert got.keys() == want.keys(), where
    for case in want:
        g, w = got[case], want[case]
        assert g["samples_evaluated"] == w["samples_evaluated"], (where, case)
        for key in ("actions", "predicted_states", "energy_history", "energy"):
            np.testing.assert_allclose(g[key], w[key], rtol=0, atol=1e-6, err_msg=f"{where} {case} {key}")


@pytest.fixture
def one_thread():
    """The reference was recorded on one thread (a GEMM's thread split can round an energy's last bit)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("name", RECORDED)
def test_same_seed_same_plan_as_before_the_refactor_on_the_toy(reference, one_thread, name):
    _assert_same(toy_plans(name), reference[name]["toy"], f"{name} toy")


@pytest.mark.parametrize("name", RECORDED)
def test_same_seed_same_plan_as_before_the_refactor_on_a_tiny_real_model(reference, one_thread, name):
    _assert_same(real_plans(name), reference[name]["real"], f"{name} real")


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        print(f"usage: {sys.argv[0]} --write   (records {REFERENCE} from the planners of this checkout)")
        sys.exit(2)
    REFERENCE.parent.mkdir(exist_ok=True)
    REFERENCE.write_text(json.dumps(record()))
    print(f"wrote {REFERENCE}")
