"""Visual perturbations of the simulated scene: what changes in a real lab between recording and deployment.

`vjepa2-sim-eval --perturb NAME[=AMOUNT]` builds the scene with one of these applied to every image (current and
goal alike), so a model trained on the default scene is measured under dimmer or brighter light, another table
colour, or a camera moved by a few degrees or centimetres. Physics, states and goals are untouched: only the pixels
change, so the rates compare directly with the unperturbed ones on the same seeds.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from vjepa2_ros.sim.env import FetchSim, SimConfig, SimError
from vjepa2_ros.sim.tasks import get_task


@dataclass(frozen=True)
class Perturbation:
    """One named change and its default amount (what `--perturb NAME` alone applies)."""

    name: str
    default: float
    unit: str
    help: str


PERTURBATIONS = {
    p.name: p
    for p in (
        Perturbation("light", 0.6, "x", "scale of every light's diffuse and ambient colour (1 = unchanged)"),
        Perturbation("table", 0.25, "", "table colour moved toward brown by this fraction (0 = grey as trained)"),
        Perturbation("camera_azimuth", 5.0, "deg", "camera turned about the vertical through its look-at point"),
        Perturbation("camera_elevation", 5.0, "deg", "camera tilted (positive: flatter view)"),
        Perturbation("camera_shift", 0.03, "m", "camera look-at point moved along the table's x axis"),
    )
}
_BROWN = np.array([0.55, 0.38, 0.22, 1.0])


def parse_perturbation(spec: str) -> tuple[str, float] | None:
    """ "" -> None; "light" -> ("light", 0.6); "light=0.8" -> ("light", 0.8). Raises SimError on a bad spec."""
    spec = spec.strip()
    if not spec:
        return None
    name, _, value = spec.partition("=")
    name = name.strip()
    if name not in PERTURBATIONS:
        raise SimError(f"unknown perturbation {name!r}; choose one of {sorted(PERTURBATIONS)}")
    if not value.strip():
        return name, PERTURBATIONS[name].default
    try:
        amount = float(value)
    except ValueError:
        raise SimError(f"perturbation {name}: amount {value!r} is not a number") from None
    if not np.isfinite(amount):
        raise SimError(f"perturbation {name}: amount must be finite, got {value!r}")
    if name == "light" and not 0.0 < amount <= 3.0:
        raise SimError(f"perturbation light: scale must be in (0, 3], got {amount}")
    if name == "table" and not 0.0 <= amount <= 1.0:
        raise SimError(f"perturbation table: fraction must be in [0, 1], got {amount}")
    if name.startswith("camera") and abs(amount) > (0.2 if name == "camera_shift" else 30.0):
        raise SimError(f"perturbation {name}: {amount} is not a small shift")
    return name, amount


def perturbed_config(config: SimConfig, perturbation: tuple[str, float] | None) -> SimConfig:
    """The scene config with a camera perturbation applied (other perturbations act on the built scene)."""
    if perturbation is None or not perturbation[0].startswith("camera"):
        return config
    name, amount = perturbation
    camera = dict(config.camera if config.camera is not None else get_task(config.task).camera)
    if name == "camera_azimuth":
        camera["azimuth"] = float(camera["azimuth"]) + amount
    elif name == "camera_elevation":
        camera["elevation"] = float(camera["elevation"]) + amount
    else:
        lookat = [float(v) for v in camera["lookat"]]
        camera["lookat"] = [lookat[0] + amount, *lookat[1:]]
    return replace(config, camera=camera)


def apply_scene_perturbation(sim: FetchSim, perturbation: tuple[str, float] | None) -> None:
    """Lighting and table colour act on the MuJoCo model of a built scene (in place)."""
    if perturbation is None:
        return
    name, amount = perturbation
    model = sim.model
    if name == "light":
        model.light_diffuse[:] = np.clip(model.light_diffuse * amount, 0.0, 1.0)
        model.light_ambient[:] = np.clip(model.light_ambient * amount, 0.0, 1.0)
        model.vis.headlight.diffuse[:] = np.clip(model.vis.headlight.diffuse * amount, 0.0, 1.0)
        model.vis.headlight.ambient[:] = np.clip(model.vis.headlight.ambient * amount, 0.0, 1.0)
    elif name == "table":
        table = model.body("table0").id
        for g in np.flatnonzero(model.geom_bodyid == table):
            mat = model.geom_matid[g]
            if mat >= 0:
                model.mat_rgba[mat] = (1 - amount) * model.mat_rgba[mat] + amount * _BROWN
            model.geom_rgba[g] = (1 - amount) * model.geom_rgba[g] + amount * _BROWN


def make_sim(config: SimConfig, perturbation: str = "", seed: int | None = None) -> FetchSim:
    """A scene with `perturbation` ("" = none, "NAME" or "NAME=AMOUNT", see PERTURBATIONS) applied."""
    parsed = parse_perturbation(perturbation)
    sim = FetchSim(perturbed_config(config, parsed), seed=seed)
    apply_scene_perturbation(sim, parsed)
    return sim
