"""vjepa2-extract-embeddings on real MP4 files (one corrupt) and a rosbag camera topic: values, timing, resume."""

from __future__ import annotations

import hashlib

import h5py
import numpy as np
import pytest
import torch

from vjepa2_core.data.transforms import eval_video_transform
from vjepa2_core.data.video import read_frames, write_mp4
from vjepa2_core.embeddings import main
from vjepa2_core.hub import load_encoder, make_random_checkpoint
from vjepa2_ros.bags.messages import image_msg
from vjepa2_ros.bags.writer import write_bag

FPS = 10.0
LENGTHS = {"long.mp4": 33, "mid.mp4": 17, "short.mp4": 5}  # clips of 4 frames, step 2 -> 4, 2 and 1 (padded)
CLIP_ARGS = ["--frames-per-clip", "4", "--frame-step", "2", "--batch-size", "3", "--quiet"]


def _frames(n: int, seed: int, size=(72, 120)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, (1, *size, 3), dtype=np.uint8)
    return np.stack([np.roll(base[0], 3 * t, axis=1) for t in range(n)])  # moving content the codec keeps


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("emb")
    videos = root / "videos"
    videos.mkdir()
    for seed, (name, n) in enumerate(LENGTHS.items()):
        write_mp4(videos / name, _frames(n, seed), FPS)
    (videos / "corrupt.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)
    whole = (videos / "long.mp4").read_bytes()
    (videos / "truncated.mp4").write_bytes(whole[: len(whole) // 2])  # a copy cut off mid-transfer
    (videos / "notes.txt").write_text("not a video")
    ckpt = make_random_checkpoint(root / "tiny.pt", "vit_pretrain_tiny", seed=2)
    return root, videos, ckpt


def _expected(encoder, path, ids: np.ndarray) -> np.ndarray:
    """The clip built directly: seek-read its frames, the hub preprocessor on the whole clip, encoder, mean."""
    transform = eval_video_transform(64)
    out = []
    for row in ids:
        uniq = sorted(set(row.tolist()))
        frames = read_frames(path, uniq)
        clip = frames[[uniq.index(i) for i in row]]
        with torch.no_grad():
            out.append(encoder(transform(clip)[0][None]).mean(1)[0].numpy())
    return np.stack(out)


def test_folder_to_hdf5_values_timing_and_bad_file(data, tmp_path, capsys):
    root, videos, ckpt = data
    out = tmp_path / "emb.h5"
    rc = main([str(videos), "--checkpoint", str(ckpt), "--out", str(out), "--tokens", *CLIP_ARGS])
    captured = capsys.readouterr()
    assert rc == 1, "a bad file is reported in the exit status"
    assert "wrote 3 videos (7 clips)" in captured.out and "2 bad" in captured.out
    assert "corrupt.mp4" in captured.err and "truncated.mp4" in captured.err
    encoder = load_encoder(ckpt)
    with h5py.File(out) as h5:
        assert h5.attrs["checkpoint_sha256"] == hashlib.sha256(ckpt.read_bytes()).hexdigest()
        assert h5.attrs["model"] == "tiny.pt" and h5.attrs["crop_size"] == 64 and h5.attrs["embed_dim"] == 96
        assert "corrupt.mp4" in h5.attrs["bad_files"] and "truncated.mp4" in h5.attrs["bad_files"]
        groups = {g.attrs["source"].rsplit("/", 1)[-1]: g for g in h5["videos"].values()}
        assert sorted(groups) == sorted(LENGTHS)
        for name, n_clips in (("long.mp4", 4), ("mid.mp4", 2), ("short.mp4", 1)):
            g = groups[name]
            ids = g["frame_indices"][:]
            assert g.attrs["complete"] and g.attrs["num_clips"] == n_clips == len(g["pooled"])
            assert ids[0].tolist() == ([0, 2, 4, 4] if name == "short.mp4" else [0, 2, 4, 6])
            assert g.attrs["padded"] == (name == "short.mp4")
            np.testing.assert_allclose(g["clip_start_s"][:], ids[:, 0] / FPS)
            np.testing.assert_allclose(g["clip_end_s"][:], ids[:, -1] / FPS)
            assert g["tokens"].shape == (n_clips, 2 * 16, 96) and g["tokens"].dtype == np.float16
            np.testing.assert_allclose(g["pooled"][:], _expected(encoder, videos / name, ids), atol=1e-5, rtol=0)
            np.testing.assert_allclose(g["tokens"][:].astype(np.float32).mean(1), g["pooled"][:], atol=2e-3)
        assert groups["long.mp4"]["frame_indices"][:, 0].tolist() == [0, 8, 16, 24]


def test_resume_skips_finished_and_redoes_interrupted(data, tmp_path, capsys):
    root, videos, ckpt = data
    out = tmp_path / "emb.h5"
    args = [str(videos), "--checkpoint", str(ckpt), "--out", str(out), *CLIP_ARGS]
    main(args)
    with h5py.File(out, "a") as h5:
        names = sorted(h5["videos"])
        before = {n: h5["videos"][n]["pooled"][:] for n in names}
        h5["videos"][names[0]].attrs["complete"] = False  # as if killed while writing this video
        del h5["videos"][names[1]]
    capsys.readouterr()
    assert main(args) == 1  # the corrupt files are still bad
    assert "wrote 2 videos (6 clips)" in (summary := capsys.readouterr().out) and "1 already done, 2 bad" in summary
    with h5py.File(out) as h5:
        assert sorted(h5["videos"]) == names
        for n in names:
            assert h5["videos"][n].attrs["complete"]
            np.testing.assert_allclose(h5["videos"][n]["pooled"][:], before[n], atol=1e-6)
    main(args)
    assert "wrote 0 videos (0 clips)" in capsys.readouterr().out
    with pytest.raises(SystemExit) as info:  # other clip settings cannot be mixed into the same file
        main([*args, "--frame-step", "3"])
    assert info.value.code == 2 and "vjepa2-extract-embeddings: error:" in capsys.readouterr().err


def test_csv_list_with_labels(data, tmp_path):
    root, videos, ckpt = data
    listing = tmp_path / "list.csv"
    listing.write_text(f"{videos / 'mid.mp4'} 7\n{videos / 'short.mp4'} 2\n")
    out = tmp_path / "list.h5"
    assert main([str(listing), "--checkpoint", str(ckpt), "--out", str(out), *CLIP_ARGS]) == 0
    with h5py.File(out) as h5:
        labels = sorted(g.attrs["label"] for g in h5["videos"].values())
    assert labels == ["2", "7"]


def test_rosbag_camera_topic(data, tmp_path):
    _, _, ckpt = data
    frames = _frames(12, seed=9, size=(64, 80))
    stamps = [1_000_000_000 + int(i * 0.1e9) for i in range(len(frames))]
    records = [("/cam/image", t, *image_msg(f, t)) for f, t in zip(frames, stamps)]
    bag = write_bag(tmp_path / "bag", records)
    out = tmp_path / "bag.h5"
    assert main([str(bag), "--topic", "/cam/image", "--checkpoint", str(ckpt), "--out", str(out), *CLIP_ARGS]) == 0
    with h5py.File(out) as h5:
        (g,) = h5["videos"].values()
        assert g.attrs["source"].endswith("bag#/cam/image") and g.attrs["topic"] == "/cam/image"
        assert g["frame_indices"][:, 0].tolist() == [0]  # 12 frames: one clip of frames 0, 2, 4, 6
        np.testing.assert_allclose(g["clip_end_s"][:], [0.6], atol=1e-9)
        transform, encoder = eval_video_transform(64), load_encoder(ckpt)
        with torch.no_grad():
            want = encoder(transform(frames[[0, 2, 4, 6]])[0][None]).mean(1).numpy()
        np.testing.assert_allclose(g["pooled"][:], want, atol=1e-5)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["VIDEOS", "--out", "x.h5"], "--model NAME and/or --checkpoint"),
        (["VIDEOS", "--out", "x.h5", "--model", "vit_enormous"], "is neither a registered model"),
        (["nowhere", "--out", "x.h5", "--model", "vit_large"], "nowhere does not exist"),
        (["VIDEOS", "--out", "x.h5", "--model", "vit_large", "--frame-step", "0"], "--frame-step must be >= 1"),
        (["VIDEOS", "--out", "x.h5", "--model", "vit_large"], "vitl.pt) not found"),
    ],
)
def test_bad_arguments_exit_2(data, argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("VJEPA2_CHECKPOINT_DIR", str(tmp_path / "empty"))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as info:
        main([str(data[1]) if a == "VIDEOS" else a for a in argv])
    err = capsys.readouterr().err
    assert info.value.code == 2 and "vjepa2-extract-embeddings: error: " in err and message in err
