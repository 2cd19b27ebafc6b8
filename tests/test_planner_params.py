"""Planner settings are written once: node parameters are generated from the core dataclasses and read back."""

from __future__ import annotations

import dataclasses

import pytest

from vjepa2_core.planning.cem import CEMConfig
from vjepa2_core.planning.controller import ControllerConfig
from vjepa2_core.planning.safety import SafetyLimits
from vjepa2_core.planning.settings import DERIVED, parameter_table, parse_axis, settings_from_values


def test_every_field_of_the_core_configs_is_a_parameter_with_its_default():
    table = parameter_table()
    for prefix, cls in (("cem.", CEMConfig), ("safety.", SafetyLimits), ("", ControllerConfig)):
        for f in dataclasses.fields(cls):
            name = prefix + f.name
            if name in DERIVED:
                continue
            assert name in table, f"{name} is not a node parameter"
            default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
            if default is None:
                assert table[name][0] == -1
            elif isinstance(default, tuple):
                assert table[name][0] == list(default)
            elif not isinstance(default, dict):
                assert table[name][0] == default and type(table[name][0]) is type(default), name
            assert table[name][1] and table[name][1] != f.name.replace("_", " "), f"{name} has no description"


def test_defaults_round_trip_to_the_dataclass_defaults():
    values = {name: default for name, (default, _) in parameter_table().items()}
    s = settings_from_values(values)
    assert dataclasses.replace(s.cem, workspace=None) == CEMConfig()
    assert s.limits == SafetyLimits() and s.rules == ControllerConfig()
    assert settings_from_values({}) == s


def test_encodings_and_validation():
    s = settings_from_values({"cem.axis": "gripper=0, z=0.1", "cem.seed": 7, "cem.close_gripper": 1})
    assert s.cem.axis == {"gripper": 0.0, "z": 0.1} and s.cem.seed == 7 and s.cem.close_gripper == 1
    assert parse_axis("3=1.0") == {3: 1.0}
    for bad, match in [
        ({"cem.horizon": 0}, "horizon"),
        ({"safety.max_translation": -1.0}, "max_translation"),
        ({"hold_margin": float("nan")}, "hold_margin"),
        ({"cem.energy": "l7"}, "energy must be one of"),
        ({"nonsense": 1}, "unknown planner setting"),
    ]:
        with pytest.raises(ValueError, match=match):
            settings_from_values(bad)
