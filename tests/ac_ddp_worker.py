"""torchrun entry for the DDP tests of `training/train_ac.py`: the script's own run, plus every rank's trained
weights written at each checkpoint (`latest.pt` holds rank 0's only), so a test can compare the ranks.

    torchrun --standalone --nproc-per-node 2 tests/ac_ddp_worker.py OUT_DIR --config ... [--set ...]
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import torch

from vjepa2_core.training import engine

REPO = Path(__file__).resolve().parents[1]
WEIGHT_KEYS = ("encoder", "target_encoder", "predictor")


def main(argv: list[str]) -> int:
    out, script_argv = Path(argv[0]), argv[1:]
    out.mkdir(parents=True, exist_ok=True)
    save = engine.Engine.save

    def save_every_rank(eng: engine.Engine, weights) -> None:
        state = weights()
        torch.save({k: state[k] for k in WEIGHT_KEYS}, out / f"rank{eng.run.dist.rank}.pt")
        save(eng, weights)

    engine.Engine.save = save_every_rank
    spec = importlib.util.spec_from_file_location("train_ac", REPO / "training" / "train_ac.py")
    train_ac = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(train_ac)
    return train_ac.main(script_argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
