"""torchrun entry for the DDP tests of `training/train_ac.py`: the script's own run, plus every rank's trained
weights written at each checkpoint (`latest.pt` holds rank 0's only), so a test can compare the ranks.

    torchrun --standalone --nproc-per-node 2 tests/ac_ddp_worker.py OUT_DIR [--seed-per-rank] --config ... [--set ...]

`--seed-per-rank` seeds rank r with meta.seed + r, so every rank starts from different random weights: the run
must still agree (DDP broadcasts what it wraps, the EMA target is broadcast by the script).
"""

from __future__ import annotations

import os
import runpy
import sys
from pathlib import Path

import torch

from vjepa2_core.training import engine
from vjepa2_core.training.checkpoint import seed_everything

SCRIPT = Path(__file__).resolve().parents[1] / "training" / "train_ac.py"
WEIGHT_KEYS = ("encoder", "target_encoder", "predictor")


def main(argv: list[str]) -> int:
    out, script_argv = Path(argv[0]), argv[1:]
    out.mkdir(parents=True, exist_ok=True)
    if script_argv[:1] == ["--seed-per-rank"]:
        script_argv, rank = script_argv[1:], int(os.environ["RANK"])
        engine.seed_everything = lambda seed: seed_everything(seed + rank)
    save = engine.Engine.save

    def save_every_rank(eng: engine.Engine, weights) -> None:
        state = weights()
        torch.save({k: state[k] for k in WEIGHT_KEYS}, out / f"rank{eng.run.dist.rank}.pt")
        save(eng, weights)

    engine.Engine.save = save_every_rank
    sys.argv = [str(SCRIPT), *script_argv]
    try:  # the script itself, run as `python training/train_ac.py ...` runs it, in this patched process
        runpy.run_path(str(SCRIPT), run_name="__main__")
    except SystemExit as done:
        return done.code or 0
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
