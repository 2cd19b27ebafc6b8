"""Offline replay of a robot bag through the world model and the planner.

For each control step t of the aligned bag: roll the recorded actions out open-loop for k = 1..K and compare the
predicted latents with the encoded future frames; then run one step of the planner node's closed-loop controller
toward the frame at t + k and compare the command it would send with the recorded action. Writes
replay_steps.csv, replay_summary.json and two PNG plots.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections import Counter, deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from vjepa2_core.hub import CheckpointError
from vjepa2_core.planning.cem import GRIPPER
from vjepa2_core.planning.controller import ClosedLoopController
from vjepa2_ros.bags import report
from vjepa2_ros.bags.reader import BagError
from vjepa2_ros.bags.replay_config import ModelConfig, ReplayConfig, load_config
from vjepa2_ros.bags.trajectory import AlignedBag, load_aligned


@dataclass
class ReplayModel:
    """A world model for planning plus how to turn a step's frame (and state, for the toy) into a representation."""

    world_model: Any
    kind: str

    @classmethod
    def from_config(cls, cfg: ModelConfig) -> ReplayModel:
        if cfg.kind == "toy":
            from vjepa2_core.planning.toy import ToyWorldModel

            return cls(ToyWorldModel(cfg.toy_tokens, cfg.toy_dim, cfg.toy_seed, cfg.device), "toy")
        from vjepa2_core.planning.world_model import WorldModel

        return cls(WorldModel.from_checkpoint(cfg.checkpoint, device=cfg.device, crop_size=cfg.crop_size), "ac")

    @torch.no_grad()
    def encode(self, frames: list[np.ndarray], states: np.ndarray) -> torch.Tensor:
        """[B] frames + states [B,7] -> reps [B,N,D]; the toy encodes the (fully observed) state instead."""
        if self.kind == "toy":
            return self.world_model.encode_state(torch.as_tensor(states, dtype=torch.float32))
        return self.world_model.encode(np.stack(frames))


def compare_actions(planned: np.ndarray, recorded: np.ndarray, gripper: float) -> dict[str, float]:
    """Position error (m), direction cosine of the xyz parts, and gripper agreement.

    The gripper agrees when both actions leave it in the same open/closed half after clamping to [0, 1] from the
    current `gripper` value: "open further" while already open is the same command as "hold".
    """
    if not np.isfinite(recorded).all():
        return {"pos_err": math.nan, "cos": math.nan, "grip_agree": math.nan}
    dp, dr = planned[:3], recorded[:3]
    norms = float(np.linalg.norm(dp) * np.linalg.norm(dr))
    closed = [np.clip(gripper + a[GRIPPER], 0.0, 1.0) >= 0.5 for a in (planned, recorded)]
    return {
        "pos_err": float(np.linalg.norm(dp - dr)),
        "cos": float(dp @ dr / norms) if norms > 1e-12 else math.nan,
        "grip_agree": float(closed[0] == closed[1]),
    }


class Replayer:
    """Streams the aligned bag once, keeping only the representations of the K + 1 frames a step needs."""

    def __init__(self, aligned: AlignedBag, model: ReplayModel, cfg: ReplayConfig):
        self.bag, self.model, self.cfg = aligned, model, cfg
        self.controller = None
        if cfg.plan:
            p = cfg.planning()
            self.controller = ClosedLoopController(model.world_model, p.cem, p.limits, p.rules)
        self.reach = max([cfg.horizon, *cfg.goal_offsets])
        self.reps: dict[int, torch.Tensor] = {}
        self.rows: list[dict[str, Any]] = []
        self.step_skips: Counter = Counter()
        self.horizon_skips: Counter = Counter()
        self.plan_skips: Counter = Counter()

    def steps(self) -> list[int]:
        steps = list(range(0, len(self.bag), self.cfg.stride))
        return steps[: self.cfg.max_steps] if self.cfg.max_steps is not None else steps

    def run(self, progress: bool = True) -> None:
        steps = self.steps()
        needed = sorted({t + k for t in steps for k in range(self.reach + 1) if t + k < len(self.bag)})
        pending = deque(steps)
        batch: list[tuple[int, np.ndarray]] = []
        bar = tqdm(total=len(steps), desc="replay", unit="step", disable=None if progress else True)
        for step, frame in self.bag.frames(needed):
            batch.append((step, frame))
            if len(batch) >= self.cfg.batch_size:
                self._encode(batch)
                batch = []
                self._evaluate_ready(pending, upto=step, bar=bar)
        self._encode(batch)
        self._evaluate_ready(pending, upto=math.inf, bar=bar)
        bar.close()

    def _encode(self, batch: list[tuple[int, np.ndarray]]) -> None:
        if batch:
            idx = [s for s, _ in batch]
            reps = self.model.encode([f for _, f in batch], self.bag.states[idx])
            self.reps.update(zip(idx, reps))

    def _evaluate_ready(self, pending: deque, upto: float, bar: tqdm) -> None:
        while pending and pending[0] + self.reach <= upto:
            self.rows.append(self._evaluate(pending.popleft()))
            bar.update(1)
            first_needed = pending[0] if pending else math.inf
            for s in [s for s in self.reps if s < first_needed]:
                del self.reps[s]

    def _evaluate(self, t: int) -> dict[str, Any]:
        bag, cfg = self.bag, self.cfg
        row: dict[str, Any] = {"step": t, "time_s": (bag.times[t] - bag.times[0]) / 1e9}
        recorded = bag.actions[t]
        row.update({f"rec_a{i}": float(v) for i, v in enumerate(recorded)})
        if t not in self.reps:
            reason = bag.skip_reasons[t] or "bad_image"
            self.step_skips[reason] += 1
            row["skip_reason"] = reason
            return row
        row["skip_reason"] = ""
        state = torch.as_tensor(bag.states[t], dtype=torch.float32)
        kmax = self._usable_horizon(t)
        if kmax > 0:
            acts = torch.as_tensor(bag.actions[t : t + kmax], dtype=torch.float32)[None]
            with torch.no_grad():
                pred, _ = self.model.world_model.rollout(self.reps[t][None], state[None], acts)
            for k in range(1, kmax + 1):
                row[f"rollout_l1_{k}"] = float((pred[0, k - 1] - self.reps[t + k]).abs().mean())
        if self.controller is not None:
            for k in cfg.goal_offsets:
                self._plan(t, k, state, recorded, row)
        return row

    def _usable_horizon(self, t: int) -> int:
        """Largest k <= K with frames t+1..t+k and recorded actions t..t+k-1; the rest is counted as skipped."""
        for k in range(1, self.cfg.horizon + 1):
            if t + k >= len(self.bag):
                reason = "end_of_bag"
            elif not np.isfinite(self.bag.actions[t + k - 1]).all():
                reason = "no_action"
            elif t + k not in self.reps:
                reason = f"gap_{self.bag.skip_reasons[t + k] or 'bad_image'}"
            else:
                continue
            self.horizon_skips[reason] += self.cfg.horizon - k + 1
            return k - 1
        return self.cfg.horizon

    def _plan(self, t: int, k: int, state: torch.Tensor, recorded: np.ndarray, row: dict[str, Any]) -> None:
        if t + k >= len(self.bag) or t + k not in self.reps:
            self.plan_skips["end_of_bag" if t + k >= len(self.bag) else "no_goal_frame"] += 1
            return
        self.controller.start_reps([self.reps[t + k]])
        decision = self.controller.step_rep(self.reps[t], state.numpy(), seed=self.cfg.seed + t)
        if decision.plan is None or decision.action is None:
            self.plan_skips[decision.status] += 1
            return
        result, first = decision.plan, decision.action  # the command the node would send
        cmp = compare_actions(first, recorded, float(state[GRIPPER]))
        if not np.isfinite(recorded).all():
            self.plan_skips["no_action"] += 1
        row.update({f"plan{k}_{name}": v for name, v in cmp.items()})
        row[f"plan{k}_energy"] = float(result.energy)
        row.update({f"plan{k}_a{i}": float(first[i]) for i in (0, 1, 2, GRIPPER)})
        row[f"plan{k}_time_s"] = float(result.wall_time)

    def summary(self, wall_time: float) -> dict[str, Any]:
        cfg = self.cfg

        def stats(key: str) -> dict[str, Any]:
            vals = np.array([r[key] for r in self.rows if key in r and np.isfinite(r[key])], dtype=float)
            if vals.size == 0:
                return {"count": 0, "mean": None, "std": None}
            return {"count": int(vals.size), "mean": float(vals.mean()), "std": float(vals.std())}

        rollout = {}
        for k in range(1, cfg.horizon + 1):
            s = stats(f"rollout_l1_{k}")
            rollout[str(k)] = {"count": s["count"], "l1_mean": s["mean"], "l1_std": s["std"]}
        planning = {}
        for k in cfg.goal_offsets if cfg.plan else []:
            planning[str(k)] = {
                "count": stats(f"plan{k}_energy")["count"],
                "pos_err_m": stats(f"plan{k}_pos_err")["mean"],
                "direction_cos": stats(f"plan{k}_cos")["mean"],
                "gripper_agreement": stats(f"plan{k}_grip_agree")["mean"],
                "energy": stats(f"plan{k}_energy")["mean"],
                "plan_time_s": stats(f"plan{k}_time_s")["mean"],
            }
        evaluated = sum(1 for r in self.rows if not r["skip_reason"])
        return {
            "bag": str(self.bag.path),
            "model": cfg.model.kind,
            "checkpoint": cfg.model.checkpoint,
            "rate_hz": cfg.rate,
            "tolerance_s": cfg.tolerance,
            "horizon": cfg.horizon,
            "goal_offsets": list(cfg.goal_offsets),
            "topics": vars(cfg.topics),
            "action_source": self.bag.action_source,
            "grid_steps": len(self.bag),
            "steps_replayed": len(self.rows),
            "steps_evaluated": evaluated,
            "rollout": rollout,
            "planning": planning,
            "skipped_steps": dict(self.step_skips),
            "skipped_rollout_horizons": dict(self.horizon_skips),
            "skipped_plans": dict(self.plan_skips),
            "bad_messages": dict(self.bag.bad_messages),
            "wall_time_s": wall_time,
            "steps_per_s": evaluated / wall_time if wall_time > 0 else None,
        }


def run_replay(bag: str | Path, cfg: ReplayConfig, out: str | Path | None = None, progress: bool = True) -> dict:
    """Replay `bag` with `cfg`; writes the CSV, JSON and plots into `out` (when given) and returns the summary."""
    torch.manual_seed(cfg.seed)
    aligned = load_aligned(bag, cfg.topics, cfg.rate, cfg.tolerance, cfg.stamps)
    model = ReplayModel.from_config(cfg.model)
    replayer = Replayer(aligned, model, cfg)
    start = time.perf_counter()
    replayer.run(progress=progress)
    summary = replayer.summary(time.perf_counter() - start)
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        report.write_csv(out / "replay_steps.csv", replayer.rows)
        report.write_json(out / "replay_summary.json", summary)
        report.plot_error_vs_horizon(out / "error_vs_horizon.png", summary["rollout"])
        report.plot_energy(out / "energy.png", replayer.rows, list(cfg.goal_offsets) if cfg.plan else [])
        summary["outputs"] = str(out)
    return summary


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vjepa2-replay", description=__doc__.splitlines()[0])
    p.add_argument("bag", help="rosbag2 directory (MCAP or sqlite3)")
    p.add_argument("--config", required=True, help="YAML: model, cem, topics, rate, tolerance, horizon, ...")
    p.add_argument("--out", default="replay_out", help="output directory (CSV, JSON, PNG)")
    p.add_argument("--json", action="store_true", help="print the summary JSON to stdout")
    p.add_argument("--image-topic", dest="topics.image", metavar="TOPIC", help="Image or CompressedImage")
    p.add_argument("--pose-topic", dest="topics.pose", metavar="TOPIC", help="PoseStamped end-effector pose")
    p.add_argument("--gripper-topic", dest="topics.gripper", metavar="TOPIC", help='Float64 closedness ("" = none)')
    p.add_argument("--action-topic", dest="topics.action", metavar="TOPIC", help="Float64MultiArray or PoseStamped")
    p.add_argument("--gripper-command-topic", dest="topics.gripper_command", metavar="TOPIC", help="Float64 targets")
    p.add_argument("--stamps", choices=("receive", "header"), help="align on bag receive time or header stamps")
    p.add_argument("--rate", type=float, help="control rate (Hz) of the model")
    p.add_argument("--tolerance", type=float, help="max time distance (s) of a sample from its grid step")
    p.add_argument("--horizon", type=int, help="K, rollout steps")
    p.add_argument("--max-steps", type=int, dest="max_steps")
    p.add_argument("--stride", type=int)
    p.add_argument("--no-plan", action="store_false", dest="plan", default=None, help="rollouts only")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    args = vars(build_parser().parse_args(argv))
    bag, config, out, as_json, quiet = (args.pop(k) for k in ("bag", "config", "out", "json", "quiet"))
    try:
        cfg = load_config(config, **args)
        summary = run_replay(bag, cfg, out, progress=not quiet)
    except (BagError, CheckpointError, ValueError, FileNotFoundError) as err:
        print(f"vjepa2-replay: error: {err}", file=sys.stderr)
        return 2
    if as_json:
        print(json.dumps(report._json_safe(summary), indent=2))
    else:
        print(f"replayed {summary['steps_evaluated']}/{summary['grid_steps']} steps; outputs in {out}")
        for k, r in summary["rollout"].items():
            print(f"  rollout k={k}: latent L1 {r['l1_mean']} over {r['count']} steps")
    return 0


if __name__ == "__main__":
    sys.exit(main())
