"""vjepa2-extract-embeddings throughput (clips/s) with the tiny encoder on CPU, on generated MP4 files.

    .venv/bin/python bench/embeddings_bench.py [--videos 8] [--frames 96] [--threads 1] [--json out.json]

End to end (decode, eval preprocessing, encoder, HDF5 writes) at 16-frame clips every 4th frame (the reference
eval clip) on 180x320 30 fps videos, for batch sizes 1 and 8, pooled only and with tokens; also without the
start-up (a run on an empty folder) and the encoder alone on the same batches, to show how much of the time is
decoding and preprocessing.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
import torch

from vjepa2_core.data.video import write_mp4
from vjepa2_core.embeddings import main as extract
from vjepa2_core.hub import load_encoder, make_random_checkpoint


def make_videos(root: Path, n: int, frames: int) -> Path:
    rng = np.random.default_rng(0)
    folder = root / "videos"
    folder.mkdir()
    for i in range(n):
        base = rng.integers(0, 255, (180, 320, 3), dtype=np.uint8)
        write_mp4(folder / f"v{i:03d}.mp4", np.stack([np.roll(base, 4 * t, axis=1) for t in range(frames)]), 30.0)
    return folder


def run(folder: Path, ckpt: Path, out: Path, batch: int, tokens: bool, threads: int) -> tuple[float, int]:
    argv = [str(folder), "--checkpoint", str(ckpt), "--out", str(out), "--batch-size", str(batch), "--quiet"]
    argv += ["--threads", str(threads)] + (["--tokens"] if tokens else [])
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        assert extract(argv) == 0
    wall = time.perf_counter() - start
    with h5py.File(out) as h5:
        clips = sum(len(g["pooled"]) for g in h5["videos"].values())
    return wall, clips


def encoder_only(ckpt: Path, batch: int, reps: int = 4) -> float:
    encoder = load_encoder(ckpt)
    x = torch.randn(batch, 3, 16, 64, 64)
    with torch.inference_mode():
        encoder(x)
        start = time.perf_counter()
        for _ in range(reps):
            encoder(x)
    return batch * reps / (time.perf_counter() - start)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--videos", type=int, default=8)
    p.add_argument("--frames", type=int, default=320, help="frames per video (320: 5 clips of 16 frames x step 4)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        folder = make_videos(root, args.videos, args.frames)
        ckpt = make_random_checkpoint(root / "tiny.pt", "vit_pretrain_tiny")
        (root / "none").mkdir()
        startup, _ = run(root / "none", ckpt, root / "none.h5", 1, False, args.threads)
        print(f"start-up (imports done; model load, checkpoint hash, empty input): {startup:.2f} s")
        for batch in (1, 8):
            for tokens in (False, True):
                wall, clips = run(folder, ckpt, root / f"b{batch}_{tokens}.h5", batch, tokens, args.threads)
                row = {"batch": batch, "tokens": tokens, "clips": clips, "wall_s": round(wall, 3)}
                row["clips_per_s"] = round(clips / wall, 2)
                row["clips_per_s_after_startup"] = round(clips / max(wall - startup, 1e-6), 2)
                row["encoder_only_clips_per_s"] = round(encoder_only(ckpt, batch), 2)
                results.append(row)
                print(
                    f"batch {batch:2d} tokens {str(tokens):5s}: {clips} clips in {wall:5.2f} s = "
                    f"{row['clips_per_s']:6.2f} clips/s end to end, {row['clips_per_s_after_startup']:6.2f} after "
                    f"start-up (encoder alone {row['encoder_only_clips_per_s']:.1f})"
                )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
