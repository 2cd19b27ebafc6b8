"""The planner base's structure: one base, no planner built on CEMPlanner, options from the flat config, one guard."""

from __future__ import annotations

import ast
import time
from pathlib import Path

import pytest
import torch

from vjepa2_core.planning import PLANNERS, CEMConfig, CEMPlanner, PlanCancelled, Planner
from vjepa2_core.planning.action_space import ActionSpace
from vjepa2_core.planning.base import Iterations, Problem
from vjepa2_core.planning.settings import settings_from_values

PLANNING = Path(__file__).resolve().parents[1] / "vjepa2_core" / "planning"


def test_every_planner_is_a_planner_and_none_is_built_on_cem():
    for name, cls in PLANNERS.items():
        assert issubclass(cls, Planner), name
        assert cls is CEMPlanner or not issubclass(cls, CEMPlanner), name


def test_the_config_imports_no_planner():
    """`CEMConfig.validate` and the registry used to import each other; the config now sits below the planners."""
    tree = ast.parse((PLANNING / "config.py").read_text())
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    planner_modules = {f"vjepa2_core.planning.{m}" for m in ("planners", "cem", "icem", "mppi", "gradient", "base")}
    assert not imported & planner_modules, imported


def test_both_flat_elite_knob_pairs_are_read_by_their_planners():
    values = {"cem.elite_reuse": 0.5, "cem.population_decay": 0.7}
    cem = settings_from_values({**values, "cem.icem_elite_fraction": 0.2, "cem.icem_population_decay": 0.9}).cem
    assert (cem.cem_options("cem").elite_fraction, cem.cem_options("cem").population_decay) == (0.5, 0.7)
    icem = cem.icem_options().cem
    assert (icem.elite_fraction, icem.population_decay) == (0.2, 0.9) and icem.return_best and icem.score_mean_last
    defaults = CEMConfig()
    assert defaults.cem_options("icem").elite_fraction == 0.3 and defaults.cem_options().elite_fraction == 0.0
    assert defaults.cem_options("cem_grad") == defaults.cem_options("cem")  # every other CEM search: the default pair


def test_the_action_space_is_the_flat_configs():
    cfg = CEMConfig(horizon=3, maxnorm=0.02, rotation=True, axis={"z": 0.0}, close_gripper=1)
    space = cfg.action_space()
    assert space == ActionSpace(3, maxnorm=0.02, rotation=True, axis={"z": 0.0}, close_gripper=1)
    assert CEMPlanner(None, cfg).space == space
    with pytest.raises(ValueError, match="workspace"):
        ActionSpace(2, workspace=((0, 0, 1), (1, 1, 0))).validate()


def _problem(should_stop=None, deadline=None) -> Problem:
    rep, space = torch.zeros(1, 2, 3), ActionSpace(2)
    options = CEMConfig().search_options()
    return Problem(rep, torch.zeros(1, 7), rep, space, space.bounds(rep.device), options, should_stop, deadline)


def test_the_guard_records_history_best_and_count():
    guard = Iterations(_problem(), 4, torch.zeros(2, 7))
    for it, energy in zip(guard, [3.0, 1.0, 2.0, 5.0]):
        guard.record(torch.tensor(energy), torch.full((2, 7), float(it)), 10)
    out = guard.outcome(torch.ones(2, 7))
    assert out.history.tolist() == [3.0, 1.0, 2.0, 5.0] and out.evaluated == 40
    assert torch.equal(out.best, torch.full((2, 7), 1.0))  # the sample of the lowest energy


def test_the_guard_stops_when_asked_and_when_out_of_time():
    with pytest.raises(PlanCancelled, match="after 0 of 4"):
        next(iter(Iterations(_problem(should_stop=lambda: True), 4, torch.zeros(2, 7))))
    late = Iterations(_problem(deadline=time.perf_counter() - 1.0), 4, torch.zeros(2, 7))
    assert [it for it in late] == [0]  # the first iteration always runs, none after the deadline
