"""Export a trained AC checkpoint as the small inference file shipped in the repository (safetensors).

Keeps the frozen encoder, the AC predictor and `model_config` (so `WorldModel.from_checkpoint(path)` needs no
name); drops optimiser, scheduler and RNG state. Checks that the exported file loads and gives the same outputs.

    .venv/bin/python -m vjepa2_ros.sim.export runs/sim_reach/ac/latest.pt vjepa2_ros/models/sim_reach.safetensors
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

MAX_SHIPPED_MB = 20.0


def export(checkpoint: str | Path, out: str | Path, note: str = "") -> dict:
    from vjepa2_core.hub import CheckpointError, load_checkpoint
    from vjepa2_core.hub.loading import save_ac_checkpoint
    from vjepa2_core.planning import WorldModel

    ckpt = load_checkpoint(checkpoint)
    missing = [k for k in ("encoder", "predictor", "model_config") if k not in ckpt]
    if missing:
        raise CheckpointError(f"{checkpoint} has no {missing}: is it an AC training checkpoint?")
    enc_key = "target_encoder" if "target_encoder" in ckpt else "encoder"
    extra = {"source": str(checkpoint), "step": int(ckpt.get("step", -1)), "note": note}
    if isinstance(ckpt.get("config"), dict):
        extra["train_config"] = json.dumps(ckpt["config"])
    out = save_ac_checkpoint(out, ckpt[enc_key], ckpt["predictor"], ckpt["model_config"], **extra)

    # the exported file must plan exactly like the training checkpoint with the encoder exported (with a fine-tuned
    # encoder: its EMA target, not the online copy under "encoder")
    a = WorldModel.from_checkpoint(None, checkpoint={**ckpt, "encoder": ckpt[enc_key]})
    b = WorldModel.from_checkpoint(str(out))
    size = a.crop_size
    image = torch.randint(0, 256, (size, size, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    state, action = torch.zeros(1, 7), torch.full((1, 1, 7), 0.01)
    ra, rb = a.encode(image), b.encode(image)
    pa, pb = a.rollout(ra, state, action)[0], b.rollout(rb, state, action)[0]
    if not (torch.equal(ra, rb) and torch.allclose(pa, pb, atol=1e-6)):
        raise CheckpointError(f"exported {out} does not reproduce {checkpoint}")
    params = {
        "encoder": sum(p.numel() for p in b.encoder.parameters()),
        "predictor": sum(p.numel() for p in b.predictor.parameters()),
    }
    mb = out.stat().st_size / 2**20
    return {"path": str(out), "size_mb": round(mb, 2), "parameters": params, "step": extra["step"]}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m vjepa2_ros.sim.export", description=__doc__.split("\n")[0])
    p.add_argument("checkpoint", help="AC training checkpoint (latest.pt)")
    p.add_argument("out", help="output .safetensors path")
    p.add_argument("--note", default="", help="free text stored in the file's metadata")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.out.endswith(".safetensors"):
        parser.error("the output must be a .safetensors file")
    try:
        info = export(args.checkpoint, args.out, args.note)
    except (OSError, RuntimeError, ValueError) as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(info, indent=1))
    if info["size_mb"] > MAX_SHIPPED_MB:
        print(f"{parser.prog}: error: {info['size_mb']} MB is over the {MAX_SHIPPED_MB} MB limit", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
