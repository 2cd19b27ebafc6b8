"""vjepa2-extract-embeddings: frozen V-JEPA 2 encoder embeddings of video clips, written to one HDF5 file.

    vjepa2-extract-embeddings videos/ --model vit_large --out emb.h5             # a folder of videos
    vjepa2-extract-embeddings list.csv --checkpoint ckpt.pt --out emb.h5 --tokens  # "path [label]" lines
    vjepa2-extract-embeddings bag_dir --topic /camera/image_raw --model vit_large --out emb.h5

Each video (or bag camera topic) is cut into clips of ``--frames-per-clip`` frames taken every ``--frame-step``
frames, a clip starting every ``--clip-stride`` frames; each clip gets the hub preprocessor (the reference eval
transform) and the encoder. Per video the file holds ``pooled`` [C,D] (mean of the encoder's output tokens),
optionally ``tokens`` [C,N,D] (float16), ``frame_indices`` [C,T] and ``clip_start_s``/``clip_end_s`` [C] (times
of the first and last frame, from the first frame of the source); the root attributes name the model, checkpoint
and its SHA-256 and the clip settings. Clips of several videos share a batch. A video is marked ``complete`` only
after its last clip, so a rerun skips finished videos and redoes an interrupted one; unreadable videos are
skipped, counted and listed (exit status 1 when there were any, after everything else is written).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import h5py
import numpy as np
import torch
from tqdm import tqdm

from vjepa2_core.data.images import ImageDecodeError
from vjepa2_core.data.transforms import eval_video_transform
from vjepa2_core.data.video import VideoError
from vjepa2_core.data.video_dataset import VIDEO_EXTS, read_list
from vjepa2_core.hub import CheckpointError, file_sha256, find_checkpoint, get_spec, load_encoder

PROG = "vjepa2-extract-embeddings"
Frames = Iterator[tuple[float, Callable[[], np.ndarray]]]  # (time in s, getter of the RGB uint8 [H,W,3] frame)
# the settings a resumed file must share with the run that started it
SETTINGS = ("model", "checkpoint_sha256", "crop_size", "frames_per_clip", "frame_step", "clip_stride", "tokens")


@dataclass(frozen=True)
class ClipSpec:
    """Which frames make a clip: ``frames`` frames ``step`` apart, a new clip every ``stride`` frames."""

    frames: int = 16
    step: int = 4
    stride: int | None = None  # default: frames * step (back-to-back clips)

    @property
    def every(self) -> int:
        return self.stride or self.frames * self.step

    @property
    def span(self) -> int:
        return (self.frames - 1) * self.step

    def used(self, index: int, first_open: int) -> bool:
        """Whether frame ``index`` belongs to a clip numbered ``first_open`` or later."""
        lo = max(first_open, math.ceil((index - self.span) / self.every))
        return any((index - k * self.every) % self.step == 0 for k in range(lo, index // self.every + 1))


@dataclass
class Source:
    """One video or bag camera topic: a key unique in the file and a way to stream its frames (``open(self)``, which
    may record attributes such as the fps in ``attrs``)."""

    key: str
    open: Callable[[Source], Frames]
    label: str | None = None
    attrs: dict[str, object] = field(default_factory=dict)


def video_frames(path: Path, source: Source) -> Frames:
    """Decode a video (MP4 or anything OpenCV reads) front to back; times are frame index / header fps. A frame is
    converted to RGB only when its getter is called (before the next frame), so skipped frames cost a grab only."""
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise VideoError(f"cannot open video {path}")
        fps = float(cap.get(cv2.CAP_PROP_FPS))
        if not fps > 0:
            raise VideoError(f"video {path} reports {fps} fps")
        source.attrs.update(fps=fps, frames_reported=int(cap.get(cv2.CAP_PROP_FRAME_COUNT)))

        def retrieve() -> np.ndarray:
            ok, frame = cap.retrieve()
            if not ok or frame is None:
                raise VideoError(f"{path}: could not retrieve frame {index}")
            return cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)

        index = 0
        while cap.grab():
            yield index / fps, retrieve
            index += 1
        if index == 0:
            raise VideoError(f"no frame of {path} could be decoded")
        source.attrs["frames_decoded"] = index
    finally:
        cap.release()


def clips(frames: Frames, spec: ClipSpec, transform: Callable) -> Iterator[tuple]:
    """(frame indices, times, clip [3,T,crop,crop]) in order, from a frame stream with bounded memory.

    Each frame is preprocessed on arrival (the eval transform acts frame by frame, so this equals transforming the
    whole clip) and kept only while an unfinished clip needs it. A stream shorter than one clip gives one clip
    padded with its last sampled frame.
    """
    kept: dict[int, tuple[float, torch.Tensor]] = {}
    first_open, last = 0, -1
    for index, (t, frame) in enumerate(frames):
        if spec.used(index, first_open):
            kept[index] = (t, transform(frame()[None])[0][:, 0])
            last = index
        while first_open * spec.every + spec.span <= index:
            ids = [first_open * spec.every + j * spec.step for j in range(spec.frames)]
            yield ids, [kept[i][0] for i in ids], torch.stack([kept[i][1] for i in ids], dim=1)
            first_open += 1
            for i in [i for i in kept if i < first_open * spec.every]:
                del kept[i]
    if first_open == 0 and last >= 0:
        ids = [min(j * spec.step, last) for j in range(spec.frames)]
        ids = [i if i in kept else last for i in ids]
        yield ids, [kept[i][0] for i in ids], torch.stack([kept[i][1] for i in ids], dim=1)


def _group_name(key: str) -> str:
    return urllib.parse.quote(key, safe="")


class EmbeddingFile:
    """The HDF5 output: root attributes with the run settings, one group per video under ``videos/``."""

    def __init__(self, path: Path, settings: dict[str, object], store_tokens: bool) -> None:
        self.h5 = h5py.File(path, "a")
        self.store_tokens = store_tokens
        if "videos" in self.h5:
            theirs = {k: self.h5.attrs.get(k) for k in SETTINGS}
            ours = {k: settings[k] for k in SETTINGS}
            clash = {k: (theirs[k], ours[k]) for k in SETTINGS if str(theirs[k]) != str(ours[k])}
            if clash:
                self.h5.close()
                detail = ", ".join(f"{k}: file {a!r} vs now {b!r}" for k, (a, b) in clash.items())
                raise ValueError(f"{path} was written with other settings ({detail}); choose another --out")
        else:
            self.h5.attrs.update({k: v for k, v in settings.items() if v is not None})
            self.h5.create_group("videos")
        self.videos = self.h5["videos"]
        for name in [n for n, g in self.videos.items() if not g.attrs.get("complete", False)]:
            del self.videos[name]  # an interrupted video is redone from its start

    def is_done(self, key: str) -> bool:
        return _group_name(key) in self.videos

    def append(self, source: Source, ids, starts, ends, pooled: np.ndarray, tokens: np.ndarray | None) -> None:
        name = _group_name(source.key)
        if name not in self.videos:
            g = self.videos.create_group(name)
            g.attrs.update(source=source.key, complete=False, **({"label": source.label} if source.label else {}))
            d = pooled.shape[-1]
            g.create_dataset("pooled", (0, d), "f4", maxshape=(None, d), chunks=(64, d))
            g.create_dataset("frame_indices", (0, ids.shape[1]), "i8", maxshape=(None, ids.shape[1]))
            for col in ("clip_start_s", "clip_end_s"):
                g.create_dataset(col, (0,), "f8", maxshape=(None,))
            if tokens is not None:
                n = tokens.shape[1:]
                g.create_dataset("tokens", (0, *n), "f2", maxshape=(None, *n), chunks=(1, *n))
        g = self.videos[name]
        for col, rows in (("pooled", pooled), ("frame_indices", ids), ("clip_start_s", starts), ("clip_end_s", ends)):
            self._extend(g[col], rows)
        if tokens is not None:
            self._extend(g["tokens"], tokens.astype(np.float16))

    @staticmethod
    def _extend(ds: h5py.Dataset, rows: np.ndarray) -> None:
        ds.resize(ds.shape[0] + len(rows), axis=0)
        ds[-len(rows) :] = rows

    def finish(self, source: Source, padded: bool) -> int:
        g = self.videos[_group_name(source.key)]
        g.attrs.update({k: v for k, v in source.attrs.items() if v is not None})
        g.attrs.update(padded=padded, num_clips=len(g["pooled"]), complete=True)
        self.h5.flush()
        return len(g["pooled"])

    def drop(self, source: Source) -> None:
        if _group_name(source.key) in self.videos:
            del self.videos[_group_name(source.key)]

    def record_bad(self, bad: dict[str, str]) -> None:
        self.h5.attrs["bad_files"] = json.dumps(bad)

    def close(self) -> None:
        self.h5.close()


@dataclass
class Report:
    videos: int = 0
    clips: int = 0
    skipped_done: int = 0
    bad: dict[str, str] = field(default_factory=dict)


class Extractor:
    """Batches clips across videos through the encoder and appends the results to their videos' groups.

    A video whose clips are all read waits in ``finished`` until its last clip has been encoded and written.
    """

    def __init__(self, encoder: torch.nn.Module, out: EmbeddingFile, batch_size: int, device: torch.device) -> None:
        self.encoder, self.out, self.batch_size, self.device = encoder, out, batch_size, device
        self.pending: list[tuple[Source, list[int], list[float], torch.Tensor]] = []
        self.finished: list[tuple[Source, bool]] = []

    @torch.inference_mode()
    def _encode(self) -> None:
        tokens = self.encoder(torch.stack([c for *_, c in self.pending]).to(self.device)).float()
        pooled = tokens.mean(dim=1).cpu().numpy()
        kept = tokens.cpu().numpy() if self.out.store_tokens else None
        start = 0
        while start < len(self.pending):  # consecutive rows of one source go in one write
            src, end = self.pending[start][0], start
            while end < len(self.pending) and self.pending[end][0] is src:
                end += 1
            rows = self.pending[start:end]
            ids = np.array([r[1] for r in rows], dtype=np.int64)
            starts, ends = np.array([r[2][0] for r in rows]), np.array([r[2][-1] for r in rows])
            self.out.append(src, ids, starts, ends, pooled[start:end], None if kept is None else kept[start:end])
            start = end
        self.pending.clear()

    def flush(self, report: Report) -> None:
        if self.pending:
            self._encode()
        for source, padded in self.finished:
            report.clips += self.out.finish(source, padded)
            report.videos += 1
        self.finished.clear()

    def run(self, sources: list[Source], spec: ClipSpec, transform: Callable, progress: bool) -> Report:
        report = Report()
        for source in tqdm(sources, unit="video", desc=PROG, disable=not progress):
            if self.out.is_done(source.key):
                report.skipped_done += 1
                continue
            count, padded = 0, False
            try:
                for ids, times, clip in clips(source.open(source), spec, transform):
                    self.pending.append((source, ids, times, clip))
                    count, padded = count + 1, padded or len(set(ids)) < len(ids)
                    if len(self.pending) >= self.batch_size:
                        self.flush(report)
                if count == 0:
                    raise VideoError(f"{source.key} has no frames")
            except (VideoError, ImageDecodeError, cv2.error) as err:
                self.pending = [p for p in self.pending if p[0] is not source]
                self.out.drop(source)
                report.bad[source.key] = f"{type(err).__name__}: {err}"
                continue
            self.finished.append((source, padded))
            if not self.pending:  # its clips are all written already
                self.flush(report)
        self.flush(report)
        return report


def _bag_sources(bag: Path, topic: str) -> list[Source]:
    from vjepa2_ros.bags.camera_frames import camera_frames  # noqa: PLC0415 - rosbag support is optional here

    key = f"{bag.resolve()}#{topic}"
    return [Source(key, lambda _source: camera_frames(bag, topic), attrs={"topic": topic})]


def gather_sources(inputs: list[str], topic: str | None) -> list[Source]:
    """Videos from folders (their video files), CSV/list files ("path [label]") and single files; bag folders
    (``metadata.yaml``) give their ``topic`` camera stream."""
    sources: list[Source] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir() and (path / "metadata.yaml").is_file():
            if not topic:
                raise ValueError(f"{path} is a rosbag: give its camera topic with --topic")
            sources.extend(_bag_sources(path, topic))
            continue
        if not path.exists():
            raise ValueError(f"input {path} does not exist")
        entries = read_list(path)
        if path.is_dir():
            entries = [(p, lab) for p, lab in entries if Path(p).suffix.lower() in VIDEO_EXTS]
        labelled = path.is_file() and path.suffix.lower() not in VIDEO_EXTS
        for video, label in entries:
            video_path = Path(video).resolve()
            opener = lambda source, p=video_path: video_frames(p, source)  # noqa: E731
            sources.append(Source(str(video_path), opener, str(label) if labelled else None))
    keys = [s.key for s in sources]
    if len(set(keys)) != len(keys):
        raise ValueError("an input video is listed twice")
    return sources


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    p.add_argument("inputs", nargs="+", help="video folders, CSV/list files, video files or rosbag folders")
    p.add_argument("--out", required=True, help="HDF5 file to write or resume")
    p.add_argument("--model", help="registry name (vjepa2_core.hub.MODELS), e.g. vit_large")
    p.add_argument("--checkpoint", help="checkpoint file or Hugging Face directory (with or without --model)")
    p.add_argument("--download", action="store_true", help="fetch the registry weights into the hub folder")
    p.add_argument("--key", default="encoder", choices=("encoder", "target_encoder"))
    p.add_argument("--topic", help="camera topic of rosbag inputs (sensor_msgs/Image or CompressedImage)")
    p.add_argument("--crop-size", type=int, help="default: the model's training resolution")
    p.add_argument("--frames-per-clip", type=int, default=16)
    p.add_argument("--frame-step", type=int, default=4, help="take every n-th frame")
    p.add_argument("--clip-stride", type=int, help="frames between clip starts (default frames-per-clip*step)")
    p.add_argument("--tokens", action="store_true", help="also store token-level embeddings (float16)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def _checkpoint_identity(args: argparse.Namespace) -> tuple[str, str]:
    """(model name, SHA-256 of the weights file or directory) for the provenance attributes."""
    path = Path(args.checkpoint) if args.checkpoint else find_checkpoint(get_spec(args.model), download=False)
    return args.model or path.name, file_sha256(path)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.model and not args.checkpoint:
        parser.error("give --model NAME and/or --checkpoint PATH")
    for name in ("frames_per_clip", "frame_step", "batch_size"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.clip_stride is not None and args.clip_stride < 1:
        parser.error("--clip-stride must be >= 1")
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        sources = gather_sources(args.inputs, args.topic)
        encoder = load_encoder(args.model, args.checkpoint, key=args.key, device=args.device, download=args.download)
        model, digest = _checkpoint_identity(args)
    except (ValueError, FileNotFoundError, CheckpointError, KeyError) as err:
        parser.error(str(err))
    crop = args.crop_size or int(encoder.img_height)  # the resolution the model was trained at
    if args.frames_per_clip % encoder.tubelet_size:
        parser.error(f"--frames-per-clip must be a multiple of the tubelet size {encoder.tubelet_size}")
    spec = ClipSpec(args.frames_per_clip, args.frame_step, args.clip_stride)
    settings = {
        "model": model,
        "checkpoint": str(args.checkpoint or ""),
        "checkpoint_sha256": digest,
        "crop_size": crop,
        "frames_per_clip": spec.frames,
        "frame_step": spec.step,
        "clip_stride": spec.every,
        "tokens": bool(args.tokens),
        "pooling": "mean of the encoder output tokens",
        "embed_dim": int(encoder.embed_dim),
        "tool": PROG,
    }
    try:
        out = EmbeddingFile(Path(args.out), settings, args.tokens)
    except (ValueError, OSError) as err:
        parser.error(str(err))
    try:
        extractor = Extractor(encoder, out, args.batch_size, torch.device(args.device))
        report = extractor.run(sources, spec, eval_video_transform(crop), progress=not args.quiet)
        out.record_bad(report.bad)
    finally:
        out.close()
    for key, why in report.bad.items():
        print(f"{PROG}: skipped bad video {key}: {why}", file=sys.stderr)
    print(
        f"{PROG}: wrote {report.videos} videos ({report.clips} clips) to {args.out}; {report.skipped_done} already "
        f"done, {len(report.bad)} bad"
    )
    return 1 if report.bad else 0


if __name__ == "__main__":
    sys.exit(main())
