"""Energy landscape: the planning energy on a grid of xyz actions, to see whether the world model's optimum is sane.

`energy_landscape` evaluates one-step actions [dx, dy, dz, 0, 0, 0, 0] on a cubic grid (the reference notebook uses
5 x 5 x 5 in [-0.075, 0.075]); `plot_landscape` draws two 2-D slices through the best point; the console command
`vjepa2-energy-landscape` does both for an image pair and writes the PNG and the numbers as JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vjepa2_core.planning.cem import RolloutModel
from vjepa2_core.planning.energies import trajectory_energy

AXES = ("dx", "dy", "dz")


def energy_landscape(
    world_model: RolloutModel,
    current_rep: torch.Tensor,
    current_state: torch.Tensor,
    goal_rep: torch.Tensor,
    grid_size: int = 5,
    extent: float = 0.075,
    energy: str = "l1",
    batch_size: int = 256,
) -> dict[str, Any]:
    """Energy of every one-step action on a grid_size^3 xyz grid in [-extent, extent]^3 (JSON-friendly dict).

    `energy` [i][j][k] belongs to (values[i], values[j], values[k]) = (dx, dy, dz).
    """
    if grid_size < 2 or extent <= 0:
        raise ValueError(f"need grid_size >= 2 and extent > 0, got {grid_size}, {extent}")
    device = world_model.device
    values = torch.linspace(-extent, extent, grid_size, device=device)
    grid = torch.stack(torch.meshgrid(values, values, values, indexing="ij"), dim=-1).reshape(-1, 3)
    actions = torch.zeros(grid.shape[0], 1, 7, device=device)
    actions[:, 0, :3] = grid
    rep = torch.as_tensor(current_rep).reshape(1, *current_rep.shape[-2:]).to(device)
    state = torch.as_tensor(current_state, dtype=torch.float32).reshape(1, 7).to(device)
    goal = torch.as_tensor(goal_rep).reshape(current_rep.shape[-2:]).to(device)
    chunks = []
    for start in range(0, actions.shape[0], batch_size):
        pred, _ = world_model.rollout(rep, state, actions[start : start + batch_size], last_only=True)
        chunks.append(trajectory_energy(pred, goal, energy, "last"))
    energies = torch.cat(chunks).reshape(grid_size, grid_size, grid_size).cpu()
    best = int(energies.argmin())
    best_index = np.unravel_index(best, energies.shape)
    return {
        "energy_name": energy,
        "axes": list(AXES),
        "values": values.cpu().tolist(),
        "energy": energies.tolist(),
        "best_index": [int(i) for i in best_index],
        "best_action": grid[best].cpu().tolist(),
        "best_energy": float(energies.min()),
        "zero_action_energy": float(energies[tuple(int(i) for i in _zero_index(grid_size))]),
    }


def _zero_index(grid_size: int) -> tuple[int, int, int]:
    mid = grid_size // 2  # exact zero only for odd grids; the nearest point otherwise
    return mid, mid, mid


def plot_landscape(result: dict[str, Any], path: str | Path) -> Path:
    """Heat maps dx-dy (at the best dz) and dx-dz (at the best dy), best point marked; written as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    energy = np.asarray(result["energy"])
    values = np.asarray(result["values"])
    i, j, k = result["best_index"]
    slices = [
        (energy[:, :, k], "dy", j, f"dz = {values[k]:+.3f}"),
        (energy[:, j, :], "dz", k, f"dy = {values[j]:+.3f}"),
    ]
    half = (values[1] - values[0]) / 2  # cells centred on the grid values
    lim = (values[0] - half, values[-1] + half)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2), constrained_layout=True)
    vmin, vmax = energy.min(), energy.max()
    for ax, (plane, ylabel, best_y, title) in zip(axes, slices):
        # rows of `plane` are dx: transpose so dx runs along the horizontal axis
        im = ax.imshow(plane.T, origin="lower", extent=(*lim, *lim), cmap="viridis", vmin=vmin, vmax=vmax)
        ax.plot(values[i], values[best_y], marker="*", color="red", markersize=14)
        ax.set(xlabel="dx (m)", ylabel=f"{ylabel} (m)", title=f"{result['energy_name']} energy, {title}")
    fig.colorbar(im, ax=axes, label="energy")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


# -- console command


def _read_image(path: str) -> np.ndarray:
    import cv2

    img = cv2.imread(path, cv2.IMREAD_COLOR)
    if img is None:
        raise ValueError(f"cannot read image {path!r}")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def _load_inputs(args: argparse.Namespace) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(current image, goal image, current state) from --npz or --current/--goal/--state."""
    if args.npz:
        data = np.load(args.npz)
        for key in ("observations", "states"):
            if key not in data:
                raise ValueError(f"{args.npz} has no {key!r} array (keys: {sorted(data.files)})")
        obs = data["observations"].reshape(-1, *data["observations"].shape[-3:])
        states = data["states"].reshape(-1, 7)
        if obs.shape[0] < 2:
            raise ValueError(f"{args.npz} needs at least two frames, got {obs.shape[0]}")
        goal_i = args.goal_index if args.goal_index is not None else obs.shape[0] - 1
        return obs[args.current_index], obs[goal_i], states[args.current_index]
    if not (args.current and args.goal):
        raise ValueError("give --npz FILE or both --current IMAGE and --goal IMAGE")
    state = np.asarray(args.state if args.state else [0.0] * 7, dtype=np.float32)
    if state.shape != (7,):
        raise ValueError("--state needs 7 numbers: x y z roll pitch yaw gripper")
    return _read_image(args.current), _read_image(args.goal), state


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vjepa2-energy-landscape", description=__doc__.splitlines()[0])
    p.add_argument("--model", default="vit_ac_tiny", help="registry name or checkpoint path")
    p.add_argument("--checkpoint", default=None, help="weights for a registry name")
    p.add_argument("--random-weights", action="store_true", help="random weights for --model (no checkpoint needed)")
    p.add_argument("--npz", help="trajectory with observations [.., T, H, W, 3] and states [.., T, 7]")
    p.add_argument("--current-index", type=int, default=0)
    p.add_argument("--goal-index", type=int, default=None, help="default: the last frame")
    p.add_argument("--current", help="current image file")
    p.add_argument("--goal", help="goal image file")
    p.add_argument("--state", type=float, nargs=7, help="current end-effector state (with --current)")
    p.add_argument("--grid-size", type=int, default=5)
    p.add_argument("--extent", type=float, default=0.075)
    p.add_argument("--energy", default="l1", choices=["l1", "l2", "cosine"])
    p.add_argument("--device", default="cpu")
    p.add_argument("--out-dir", default="energy_landscape")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from vjepa2_core.hub import CheckpointError
    from vjepa2_core.planning.world_model import WorldModel

    try:
        current, goal, state = _load_inputs(args)
        if args.random_weights:
            wm = WorldModel.random(args.model, device=args.device)
        else:
            wm = WorldModel.from_checkpoint(args.model, checkpoint=args.checkpoint, device=args.device)
        result = energy_landscape(
            wm,
            wm.encode(current),
            torch.as_tensor(state),
            wm.encode_goal(goal),
            args.grid_size,
            args.extent,
            args.energy,
        )
    except (ValueError, OSError, KeyError, CheckpointError) as exc:
        print(f"vjepa2-energy-landscape: error: {exc}", file=sys.stderr)
        return 2
    out = Path(args.out_dir)
    png = plot_landscape(result, out / "energy_landscape.png")
    result["model"] = args.model
    (out / "energy_landscape.json").write_text(json.dumps(result, indent=1))
    print(f"best action {np.round(result['best_action'], 4).tolist()} energy {result['best_energy']:.5f}")
    print(f"wrote {png} and {out / 'energy_landscape.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
