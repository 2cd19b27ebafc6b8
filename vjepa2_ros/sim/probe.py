"""`vjepa2-probe-sim`: what does a frozen encoder know about the simulated scene? An attentive probe on the
encoder features of simulator frames regresses the end-effector position (and, for push episodes, the block's);
the held-out error in cm measures the encoder any world model we ship plans with.

    vjepa2-sim-collect --episodes 40 --steps 40 --seed 3 --out runs/sim_probe/episodes
    vjepa2-probe-sim --data runs/sim_probe/episodes [--model vjepa2_ros/models/sim_reach.safetensors] [--random]

Features are exactly the planner's (`WorldModel.encode`: each frame a 2-frame tubelet, layer-normed tokens).
Episodes are split, not frames, so the probe is scored on trajectories it never saw. The "mean" baseline
predicts the training-set mean position.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn

from vjepa2_core.data.droid import DROIDDataError, load_clip, open_episode, read_index
from vjepa2_core.models.attentive_pooler import AttentivePooler

SHIPPED = Path(__file__).resolve().parents[1] / "models" / "sim_reach.safetensors"


class PositionProbe(nn.Module):
    """Attentive pooler (one query) + linear head to `outputs` numbers."""

    def __init__(self, embed_dim: int, outputs: int = 3, num_heads: int = 4, depth: int = 1) -> None:
        super().__init__()
        self.pooler = AttentivePooler(1, embed_dim, num_heads, depth=depth)
        self.linear = nn.Linear(embed_dim, outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.pooler(x).squeeze(1))


def episode_targets(path: Path, view: str = "left_mp4_path") -> tuple[np.ndarray, np.ndarray]:
    """(frames uint8 [T,H,W,3], targets [T,3 or 6]): end-effector xyz, plus the block xyz for push episodes."""
    ep = open_episode(path, view)
    clip = load_clip(ep, np.arange(ep.num_frames))
    targets = clip["states"][:, :3].numpy()
    meta = json.loads(sorted(path.glob("*.json"))[0].read_text())
    if "block_position" in meta:
        targets = np.concatenate([targets, np.asarray(meta["block_position"], np.float32)[: len(targets), :3]], 1)
    return clip["frames"], targets


@torch.no_grad()
def encode_frames(world_model, frames: np.ndarray, batch: int = 64) -> torch.Tensor:
    return torch.cat([world_model.encode(frames[i : i + batch]) for i in range(0, len(frames), batch)])


def train_probe(x_train, y_train, epochs: int, seed: int, lr: float = 1e-3, batch: int = 64) -> PositionProbe:
    """Adam on standardised targets, cosine lr, `epochs` passes."""
    torch.manual_seed(seed)
    probe = PositionProbe(x_train.shape[-1], y_train.shape[1])
    opt = torch.optim.AdamW(probe.parameters(), lr=lr, weight_decay=0.01)
    steps = epochs * -(-len(x_train) // batch)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        for idx in torch.randperm(len(x_train), generator=gen).split(batch):
            loss = nn.functional.mse_loss(probe(x_train[idx]), y_train[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    return probe.eval()


def probe_errors_cm(
    feats: list[torch.Tensor], targets: list[np.ndarray], holdout: int, epochs: int, seed: int
) -> dict:
    """Train on all but the last `holdout` episodes; mean Euclidean error (cm) per target point and the
    mean-position baseline."""
    x_tr, x_te = torch.cat(feats[:-holdout]), torch.cat(feats[-holdout:])
    y_tr, y_te = (
        torch.as_tensor(np.concatenate(t), dtype=torch.float32) for t in (targets[:-holdout], targets[-holdout:])
    )
    mu, sd = y_tr.mean(0), y_tr.std(0) + 1e-6
    probe = train_probe(x_tr, (y_tr - mu) / sd, epochs, seed)
    with torch.no_grad():
        pred = probe(x_te) * sd + mu
    out = {}
    for k, name in enumerate(("ee", "block")[: y_te.shape[1] // 3]):
        sl = slice(3 * k, 3 * k + 3)
        out[f"{name}_error_cm"] = float(100 * (pred[:, sl] - y_te[:, sl]).norm(dim=1).mean())
        out[f"{name}_mean_baseline_cm"] = float(100 * (mu[sl] - y_te[:, sl]).norm(dim=1).mean())
    return out


def load_world_model(model: str, random_seed: int | None):
    """The shipped (or given) world model; with `random_seed`, its encoder re-initialised (same architecture)."""
    from vjepa2_core.planning.world_model import WorldModel

    wm = WorldModel.from_checkpoint(model)
    if random_seed is not None:
        torch.manual_seed(random_seed)
        wm.encoder.reset_parameters()
    return wm


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vjepa2-probe-sim", description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="vjepa2-sim-collect output folder (DROID layout)")
    p.add_argument("--model", default=str(SHIPPED), help="world-model checkpoint whose encoder is probed")
    p.add_argument("--random", type=int, default=None, metavar="SEED", help="probe a random encoder (this seed)")
    p.add_argument("--holdout", type=float, default=0.2, help="fraction of episodes held out")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=None, help="write the result JSON here")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    torch.set_num_threads(args.threads)
    data = Path(args.data)
    try:
        paths = read_index(data / "trajectories.csv") if (data / "trajectories.csv").is_file() else [data]
        paths = sorted(p for p in paths if (p / "trajectory.h5").is_file()) or sorted(data.glob("*/trajectory.h5"))
        paths = [p.parent if p.name == "trajectory.h5" else p for p in paths]
        if len(paths) < 2:
            raise ValueError(f"{data}: need at least 2 episodes, found {len(paths)}")
        wm = load_world_model(args.model, args.random)
        episodes = [episode_targets(p) for p in paths]
    except (DROIDDataError, OSError, ValueError) as exc:
        print(f"vjepa2-probe-sim: error: {exc}", file=sys.stderr)
        return 2
    feats = [encode_frames(wm, frames) for frames, _ in episodes]
    holdout = max(1, int(round(args.holdout * len(paths))))
    result = probe_errors_cm(feats, [t for _, t in episodes], holdout, args.epochs, args.seed)
    result.update(encoder="random" if args.random is not None else "checkpoint", model=args.model)
    result.update(episodes=len(paths), holdout_episodes=holdout, frames=sum(len(f) for f in feats))
    print(json.dumps(result, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
