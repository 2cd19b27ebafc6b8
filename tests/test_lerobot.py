"""LeRobotDataset v3.0 / v2.1: the real library's fixtures read exactly, another layout through the key mapping
alone, our export matching the real library's files and read back, training on it, and clear errors."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import av
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from conftest import SHARED, config_argv, script_summary

from vjepa2_core.data.droid import DROIDDataError, write_episode
from vjepa2_core.data.lerobot.av_video import AV1Writer
from vjepa2_core.data.lerobot.cli import main as lerobot_main
from vjepa2_core.data.lerobot.datasets import LeRobotClipDataset, LeRobotVideoDataset
from vjepa2_core.data.lerobot.mapping import KeyMapping, LeRobotError
from vjepa2_core.data.lerobot.reader import LeRobotSource
from vjepa2_core.data.video import VideoError
from vjepa2_core.planning.poses import euler_to_quat, pose_diff
from vjepa2_core.training import pretrain_run

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "config" / "train" / "ac_tiny_cpu.yaml"
V30, V21 = SHARED / "data" / "lerobot_tiny", SHARED / "data" / "lerobot_tiny_v21"
TRUTH = SHARED / "data" / "lerobot_tiny_truth.npz"
CAMERA = "observation.images.exterior_1_left"


def _dump(tmp_path: Path, root: Path, *sets: str) -> tuple[int, dict]:
    out = tmp_path / f"{root.name}.npz"
    argv = ["dump", "--config", str(TINY), "--set", f"data.datasets=[{root}]", "--out", str(out)]
    for s in ("data.camera_views=[exterior_1_left]", *sets):
        argv += ["--set", s]
    rc = lerobot_main(argv)
    return rc, dict(np.load(out)) if out.exists() else {}


@pytest.mark.parametrize("root", [V30, V21], ids=["v3.0", "v2.1"])
def test_dump_of_the_real_library_fixtures_equals_the_truth(tmp_path, root, capsys):
    rc, seen = _dump(tmp_path, root)
    assert rc == 0, capsys.readouterr().err
    truth = np.load(TRUTH)
    assert sorted(seen) == sorted([f"states_{e}" for e in range(3)] + [f"frames_{e}" for e in range(3)])
    for e, length in enumerate(truth["lengths"]):
        assert seen[f"states_{e}"].shape == (length, 7)
        np.testing.assert_allclose(seen[f"states_{e}"], truth[f"states_{e}"], atol=1e-5)
        frames, want = seen[f"frames_{e}"], truth[f"frames_{CAMERA}_{e}"]
        assert frames.shape == want.shape and frames.dtype == np.uint8
        per_frame = np.abs(frames.astype(float) - want).mean(axis=(1, 2, 3))
        assert per_frame.max() < 3.0, per_frame
    assert "'episodes': 3" in capsys.readouterr().out


def test_train_ac_trains_on_the_fixture(tmp_path):
    sets = [
        "data.format=lerobot",
        f"data.datasets=[{V30}]",
        f"data.val_datasets=[{V21}]",
        "data.camera_views=[exterior_1_left]",
        "data.batch_size=3",
        "model.normalize_conditioning=true",
        "meta.max_steps=4",
        "meta.eval_freq=2",
        f"folder={tmp_path / 'run'}",
    ]
    summary = script_summary("training/train_ac.py", config_argv(TINY, sets))
    assert summary["step"] == 4
    with open(tmp_path / "run" / "train.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4]
    assert all(np.isfinite(float(r["loss"])) and int(r["skipped"]) == 0 for r in rows)
    assert (tmp_path / "run" / "val.csv").is_file() and (tmp_path / "run" / "latest.pt").is_file()


def test_pretrain_trains_on_the_fixture_frames(tmp_path):
    sets = ["data.format=lerobot", f"data.datasets=[{V30}]", "data.frame_step=2", "data.batch_size=2"]
    sets += ["data.num_workers=0", "meta.max_steps=2", f"folder={tmp_path / 'pre'}"]
    config = REPO / "config" / "train" / "pretrain_tiny_cpu.yaml"
    cfg = pretrain_run.load(config, sets)
    assert isinstance(pretrain_run.make_dataset(cfg, cfg["data"]["datasets"], [8]), LeRobotVideoDataset)
    summary = script_summary("training/pretrain.py", config_argv(config, sets))
    assert summary["step"] == 2 and np.isfinite(summary["loss"])


def test_clip_dataset_gives_the_fixture_states_and_frames():
    ds = LeRobotClipDataset(V30, frames_per_clip=4, fps=5, crop_size=64, camera_views=["exterior_1_left"])
    truth = np.load(TRUTH)
    assert len(ds) == 3
    for i in range(3):
        sample = ds[i]
        e, idx = int(ds.paths[int(sample["episode"])].index), sample["indices"].numpy()
        assert np.all(np.diff(idx) == 2)  # fps 10 video sampled at 5
        states = truth[f"states_{e}"][idx]
        np.testing.assert_allclose(sample["states"].numpy(), states, atol=1e-5)
        want = pose_diff(torch.as_tensor(states[:-1]), torch.as_tensor(states[1:])).numpy()
        np.testing.assert_allclose(sample["actions"].numpy(), want, atol=1e-5)
        assert tuple(sample["frames"].shape) == (3, 4, 64, 64) and int(sample["skipped"]) == 0


def test_pretraining_dataset_reads_frames_only():
    """Frames only: a mapping that names keys this dataset does not have is not even looked at."""
    ds = LeRobotVideoDataset([V21], [8], lambda f, rng: torch.as_tensor(f), frame_step=2, camera_views=[])
    assert len(ds) == 3 and ds.fpcs == [8]
    clips, label, indices = ds[2]
    truth = np.load(TRUTH)[f"frames_{CAMERA}_2"][indices[0]]
    assert clips[0].shape == (8, 96, 96, 3) and np.all(np.diff(indices[0]) == 2)
    assert np.abs(clips[0].numpy().astype(float) - truth).mean() < 3.0


# --------------------------------------------------------------------------------- another layout, mapping only
def _frames(t: int, h: int, w: int, shift: int) -> np.ndarray:
    """Smooth frames whose brightness steps 6 grey levels per frame (a frame off by one fails the check)."""
    v, u = np.mgrid[0:h, 0:w]
    base = np.stack([40 + 60 * u / w, 50 + 50 * v / h, np.full((h, w), 90.0)], axis=-1)
    return np.stack([np.clip(base + 6 * k + shift, 0, 255) for k in range(t)]).astype(np.uint8)


def _write_other_layout(root: Path, lengths=(14, 17), fps: int = 30, seed: int = 3) -> dict:
    """A v3.0 dataset laid out unlike the fixture: two cameras of other sizes, fps 30, the pose as xyz + a wxyz
    quaternion (sign flipped on odd frames) in `observation.eef_pose`, the gripper as element 6 of a joint vector
    with 0.08 = open and 0.0 = closed. Written here with pyarrow and PyAV, not with our writer."""
    rng = np.random.default_rng(seed)
    cams = {"observation.images.top": (48, 64), "observation.images.wrist": (32, 40)}
    truth, rows, episodes, start = {}, [], [], 0
    writers = {c: AV1Writer(root / f"videos/{c}/chunk-000/file-000.mp4", fps, w, h) for c, (h, w) in cams.items()}
    for e, n in enumerate(lengths):
        euler = np.c_[np.pi - 0.3 + 0.05 * rng.standard_normal(n), 0.1 * rng.standard_normal((n, 2))]
        xyz, grip = 0.4 + 0.02 * np.cumsum(rng.standard_normal((n, 3)), 0), rng.uniform(0, 1, n)
        q = euler_to_quat(torch.as_tensor(euler)).numpy()[:, [3, 0, 1, 2]] * np.where(np.arange(n) % 2, -1, 1)[:, None]
        joints = np.c_[rng.standard_normal((n, 6)), 0.08 * (1 - grip)]
        truth[e] = {"states": np.c_[xyz, euler, grip], "frames": {}}
        video = {}
        for c, (h, w) in cams.items():
            clip = _frames(n, h, w, shift=10 * e)
            video |= {f"videos/{c}/chunk_index": 0, f"videos/{c}/file_index": 0}
            video[f"videos/{c}/from_timestamp"] = writers[c].frames_written / fps + 1e-7  # not exact, as in LeRobot
            writers[c].write(clip)
            video[f"videos/{c}/to_timestamp"] = writers[c].frames_written / fps
            truth[e]["frames"][c] = clip
        for t in range(n):
            rows.append({"observation.eef_pose": np.r_[xyz[t], q[t]].astype(np.float32).tolist(),
                         "observation.joints": joints[t].astype(np.float32).tolist(),
                         "timestamp": t / fps, "frame_index": t, "episode_index": e, "index": start + t})  # fmt: skip
        episodes.append({"episode_index": e, "length": n, "data/chunk_index": 0, "data/file_index": 0,
                         "dataset_from_index": start, "dataset_to_index": start + n, **video})  # fmt: skip
        start += n
    for w in writers.values():
        w.close()
    vec7 = pa.list_(pa.float32(), 7)
    columns = [("observation.eef_pose", vec7), ("observation.joints", vec7), ("timestamp", pa.float32())]
    schema = pa.schema(columns + [(k, pa.int64()) for k in ("frame_index", "episode_index", "index")])
    (root / "data/chunk-000").mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), root / "data/chunk-000/file-000.parquet")
    (root / "meta/episodes/chunk-000").mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(episodes), root / "meta/episodes/chunk-000/file-000.parquet")
    feats = {"observation.eef_pose": {"dtype": "float32", "shape": [7]},
             "observation.joints": {"dtype": "float32", "shape": [7]}}  # fmt: skip
    feats |= {c: {"dtype": "video", "shape": [h, w, 3]} for c, (h, w) in cams.items()}
    info = {"codebase_version": "v3.0", "fps": fps, "features": feats, "chunks_size": 1000,
            "data_path": "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet",
            "video_path": "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"}  # fmt: skip
    (root / "meta/info.json").write_text(json.dumps(info))
    return truth


OTHER_MAPPING = dict(
    pose_key="observation.eef_pose",
    rotation="quat_wxyz",
    gripper_key="observation.joints",
    gripper_index=6,
    gripper_range=(0.08, 0.0),
)


def test_another_layout_read_through_the_mapping_alone(tmp_path):
    truth = _write_other_layout(tmp_path / "other")
    src = LeRobotSource(tmp_path / "other", KeyMapping(**OTHER_MAPPING))
    assert src.fps == 30 and len(src) == 2
    for e, want in truth.items():
        for cam in ("top", "wrist"):
            ep = src.episode(e, cam)
            np.testing.assert_allclose(ep.states(), want["states"], atol=1e-5)
            frames = ep.frames(np.arange(ep.num_frames))
            err = np.abs(frames.astype(float) - want["frames"][f"observation.images.{cam}"]).mean(axis=(1, 2, 3))
            assert err.max() < 3.0, (e, cam, err)
    ds = LeRobotClipDataset(
        tmp_path / "other", mapping=KeyMapping(**OTHER_MAPPING), camera_views=["wrist", "top"],
        frames_per_clip=3, fps=10, crop_size=32,
    )  # fmt: skip
    for i in range(len(ds)):
        sample = ds[i]
        idx = sample["indices"].numpy()
        assert np.all(np.diff(idx) == 3) and tuple(sample["frames"].shape) == (3, 3, 32, 32)
        np.testing.assert_allclose(sample["states"].numpy(), truth[i]["states"][idx], atol=1e-5)


def test_mapping_through_config_overrides_in_dump(tmp_path):
    _write_other_layout(tmp_path / "other")
    sets = [f"data.lerobot.{k}={list(v) if isinstance(v, tuple) else v}" for k, v in OTHER_MAPPING.items()]
    rc, seen = _dump(tmp_path, tmp_path / "other", "data.camera_views=[wrist]", *sets)
    assert rc == 0 and seen["frames_1"].shape == (17, 32, 40, 3)
    assert seen["states_0"][:, 6].min() >= 0 and seen["states_0"][:, 6].max() <= 1


# --------------------------------------------------------------------------------- export
def _droid_episodes(root: Path, lengths=(12, 9), fps: float = 10.0) -> Path:
    rng = np.random.default_rng(0)
    for e, n in enumerate(lengths):
        cart = np.c_[0.5 + 0.01 * np.cumsum(rng.standard_normal((n, 3)), 0), np.pi - 0.2 + 0.01 * rng.random((n, 1)),
                     0.05 * rng.standard_normal((n, 2))]  # fmt: skip
        frames = {"left_mp4_path": _frames(n, 64, 80, 20 * e), "wrist_mp4_path": _frames(n, 32, 32, 5 * e)}
        write_episode(root, frames, cart, rng.uniform(0, 1, n), fps=fps)
    return root / "trajectories.csv"


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("export")
    index = _droid_episodes(tmp / "droid")
    assert lerobot_main(["export", "--datasets", str(index), "--out", str(tmp / "lerobot"), "--task", "reach"]) == 0
    return index, tmp / "lerobot"


def test_export_reads_back_through_the_reader(exported):
    index, out = exported
    from vjepa2_core.data.droid import load_clip, open_episode, read_index

    src = LeRobotSource(out)
    assert len(src) == 2 and src.cameras == ["observation.images.left", "observation.images.wrist"]
    for e, path in enumerate(read_index(index)):
        for view in ("left_mp4_path", "wrist_mp4_path"):  # the DROID view key finds the exported camera
            droid = open_episode(path, view)
            clip = load_clip(droid, np.arange(droid.num_frames))
            ep = src.episode(e, view)
            np.testing.assert_allclose(ep.states(), clip["states"].numpy(), atol=1e-5)
            err = np.abs(ep.frames(np.arange(ep.num_frames)).astype(float) - clip["frames"]).mean()
            assert err < 3.0, (e, view, err)
    data = pq.read_table(out / "data/chunk-000/file-000.parquet")
    states = np.stack(data.column("observation.state").to_pylist())
    act = np.stack(data.column("action").to_pylist())
    want = pose_diff(torch.as_tensor(states[:11], dtype=torch.float64), torch.as_tensor(states[1:12])).numpy()
    np.testing.assert_allclose(act[:11], want, atol=1e-5)  # action = our state difference
    assert np.all(act[11] == 0) and data.column("task_index").to_pylist() == [0] * 21


def test_export_files_match_the_real_library(exported):
    _, out = exported
    ref, ours = json.loads((V30 / "meta/info.json").read_text()), json.loads((out / "meta/info.json").read_text())
    assert set(ours) == set(ref) and ours["codebase_version"] == "v3.0"
    assert ours["data_path"] == ref["data_path"] and ours["video_path"] == ref["video_path"]
    assert (ours["total_episodes"], ours["total_frames"], ours["total_tasks"], ours["fps"]) == (2, 21, 1, 10)
    for key in ("observation.state.cartesian_position", "observation.state.gripper_position", "timestamp", "index"):
        assert ours["features"][key] == ref["features"][key]
    cam, ref_cam = ours["features"]["observation.images.left"], ref["features"][CAMERA]
    assert set(cam) == set(ref_cam) and set(cam["info"]) == set(ref_cam["info"])
    assert cam["shape"] == [64, 80, 3] and cam["info"]["video.codec"] == "av1" and cam["names"] == ref_cam["names"]

    ref_schema = pq.read_schema(V30 / "data/chunk-000/file-000.parquet")
    schema = pq.read_schema(out / "data/chunk-000/file-000.parquet")
    shared = [n for n in ref_schema.names if n in schema.names]
    assert len(shared) == 15 and [n for n in schema.names if n in shared] == shared
    ours_7d = ("observation.state", "action")  # our 7-D state and action where the port has joints + gripper [8]
    shared = [n for n in shared if n not in ours_7d]
    assert all(schema.field(n).type == ref_schema.field(n).type for n in shared)
    assert all(schema.field(n).type == pa.list_(pa.float32(), 7) for n in ours_7d)
    ref_hf = json.loads(ref_schema.metadata[b"huggingface"])["info"]["features"]
    hf = json.loads(schema.metadata[b"huggingface"])["info"]["features"]
    assert all(hf[n] == ref_hf[n] for n in shared)
    assert pq.read_schema(out / "meta/tasks.parquet").names == pq.read_schema(V30 / "meta/tasks.parquet").names

    ref_eps = pq.read_table(V30 / "meta/episodes/chunk-000/file-000.parquet")
    eps = pq.read_table(out / "meta/episodes/chunk-000/file-000.parquet")
    rename = {
        n.replace(CAMERA, "observation.images.left"): t for n, t in zip(ref_eps.schema.names, ref_eps.schema.types)
    }
    names = ["episode_index", "tasks", "length", "dataset_from_index", "videos/observation.images.left/from_timestamp"]
    names += ["stats/observation.images.left/mean", "stats/observation.state.cartesian_position/q99"]
    for name in names:
        assert eps.schema.field(name).type == rename[name], name
    assert eps.column("videos/observation.images.left/from_timestamp").to_pylist() == [0.0, 1.2]
    assert eps.column("dataset_from_index").to_pylist() == [0, 12]

    for path, ref_path in [(out / "videos/observation.images.left/chunk-000/file-000.mp4",
                            V30 / f"videos/{CAMERA}/chunk-000/file-000.mp4")]:  # fmt: skip
        with av.open(str(path)) as c, av.open(str(ref_path)) as r:
            s, rs = c.streams.video[0], r.streams.video[0]
            assert (s.codec_context.name, s.time_base, s.average_rate) == ("libdav1d", rs.time_base, 10)
            assert s.codec_context.pix_fmt == rs.codec_context.pix_fmt == "yuv420p"
            pts = [f.pts for f in c.decode(s)]
            assert pts == [1024 * k for k in range(21)] and s.frames == 21


def test_bag2droid_writes_lerobot_directly(tmp_path, capsys):
    from vjepa2_ros.bags.bag2droid import main
    from vjepa2_ros.bags.synthetic import synthetic_trajectory
    from vjepa2_ros.bags.writer import write_trajectory_bag

    frames, states, actions = synthetic_trajectory(30, seed=2, size=64)
    bag = write_trajectory_bag(tmp_path / "bag", frames, states, storage="sqlite3", actions=actions, rate=15.0)
    assert main([str(bag), "--out", str(tmp_path / "lr"), "--rate", "15", "--format", "lerobot"]) == 0
    src = LeRobotSource(tmp_path / "lr")
    ep = src.episode(0, "left_mp4_path")
    assert len(src) == 1 and src.fps == 15 and ep.num_frames == 31
    np.testing.assert_allclose(ep.states(), states, atol=1e-5)
    assert np.abs(ep.frames(np.arange(31)).astype(float) - frames).mean() < 4.0
    assert main([str(bag), "--out", str(tmp_path / "x"), "--rate", "7.5", "--format", "lerobot"]) == 2
    assert "whole fps" in capsys.readouterr().err


def test_sim_collect_writes_lerobot_directly(tmp_path):
    from vjepa2_ros.sim.collect import main

    assert main(["--episodes", "2", "--steps", "6", "--image-size", "32", "--out", str(tmp_path / "lr"),
                 "--format", "lerobot"]) == 0  # fmt: skip
    ds = LeRobotClipDataset(tmp_path / "lr", frames_per_clip=4, fps=4, crop_size=32, camera_views=["left_mp4_path"])
    sample = ds[1]
    assert len(ds) == 2 and tuple(sample["frames"].shape) == (3, 4, 32, 32) and int(sample["skipped"]) == 0
    assert json.loads((tmp_path / "lr/meta/info.json").read_text())["total_frames"] == 14


# --------------------------------------------------------------------------------- errors
def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    for p in dst.rglob("*"):
        p.chmod(0o755 if p.is_dir() else 0o644)
    return dst


def test_errors_name_the_file_and_the_key(tmp_path):
    with pytest.raises(LeRobotError, match=r"info.json: no feature 'observation.eef'"):
        LeRobotSource(V30, KeyMapping(pose_key="observation.eef"))
    with pytest.raises(LeRobotError, match=r"'observation.state.cartesian_position' has shape \[6\], rotation"):
        LeRobotSource(V30, KeyMapping(rotation="quat_xyzw"))
    with pytest.raises(LeRobotError, match=r"gripper_index 1 is outside"):
        LeRobotSource(V30, KeyMapping(gripper_index=1))
    with pytest.raises(
        LeRobotError, match=r"no camera 'top' \(video features: \['observation.images.exterior_1_left'"
    ):
        LeRobotSource(V30).episode(0, "top")
    with pytest.raises(LeRobotError, match=r"data.lerobot.rotation"):
        KeyMapping(rotation="euler_zyx")
    old = _copy(V21, tmp_path / "v1")
    info = json.loads((old / "meta/info.json").read_text())
    (old / "meta/info.json").write_text(json.dumps({**info, "codebase_version": "v1.6"}))
    with pytest.raises(LeRobotError, match=r"v1/meta/info.json: codebase_version 'v1.6' is not supported"):
        LeRobotSource(old)
    with pytest.raises(LeRobotError, match=r"no meta/info.json"):
        LeRobotSource(tmp_path)
    listed = _copy(V30, tmp_path / "listed")  # info.json lists a key that the data parquet does not have
    info = json.loads((listed / "meta/info.json").read_text())
    info["features"]["observation.eef"] = {"dtype": "float32", "shape": [6]}
    (listed / "meta/info.json").write_text(json.dumps(info))
    with pytest.raises(LeRobotError, match=r"listed/data/chunk-000/file-000.parquet: no column 'observation.eef'"):
        LeRobotSource(listed, KeyMapping(pose_key="observation.eef")).episode(0, "exterior_1_left").states()
    trunc = _copy(V30, tmp_path / "trunc")
    data = trunc / "data/chunk-000/file-000.parquet"
    data.write_bytes(data.read_bytes()[:5000])
    with pytest.raises(LeRobotError, match=r"trunc/data/chunk-000/file-000.parquet: unreadable parquet"):
        LeRobotSource(trunc).episode(1, "exterior_1_left").states()
    video = _copy(V30, tmp_path / "vid") / f"videos/{CAMERA}/chunk-000/file-000.mp4"
    video.write_bytes(video.read_bytes()[: len(video.read_bytes()) // 2])
    with pytest.raises(VideoError, match=r"vid/videos/observation.images.exterior_1_left/chunk-000/file-000.mp4"):
        LeRobotSource(video.parents[3]).episode(2, "exterior_1_left").frames(np.arange(30))


def test_unreadable_episodes_are_skipped_and_counted(tmp_path, capsys):
    root = _copy(V21, tmp_path / "broken")
    (root / "data/chunk-000/episode_000001.parquet").write_bytes(b"PAR1 truncated")
    video = root / f"videos/chunk-000/{CAMERA}/episode_000002.mp4"
    video.write_bytes(video.read_bytes()[:300])
    ds = LeRobotClipDataset(
        root, frames_per_clip=4, fps=5, crop_size=64, camera_views=["exterior_1_left"], max_retries=60
    )
    samples = [ds[i] for i in range(3)]
    assert ds.num_skipped == 2 and sorted(ds.bad) == [1, 2]
    assert "episode_000001.parquet: unreadable parquet" in ds.bad[1] and "episode_000002.mp4" in ds.bad[2]
    assert all(int(s["episode"]) == 0 for s in samples) and sum(int(s["skipped"]) for s in samples) >= 2
    rc, seen = _dump(tmp_path, root)
    err = capsys.readouterr().err
    assert rc == 1 and sorted(seen) == ["frames_0", "states_0"]
    assert "episode_000001.parquet: unreadable parquet" in err and "episode_000002.mp4" in err


def test_cli_bad_arguments_exit_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        lerobot_main(["dump", "--config", str(TINY), "--out", str(tmp_path / "x.npz"), "--set", "data.lerobot.oops=1"])
    assert exc.value.code == 2 and "error: unknown config key 'data.lerobot.oops'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        lerobot_main(["export", "--out", str(tmp_path)])
    assert exc.value.code == 2 and "--datasets" in capsys.readouterr().err
    assert lerobot_main(["export", "--datasets", str(tmp_path / "none.csv"), "--out", str(tmp_path / "o")]) == 1
    assert "none.csv does not exist" in capsys.readouterr().err
    with pytest.raises(DROIDDataError):
        LeRobotClipDataset(V30, camera_views=["exterior_1_left"], camera_frame=True)


def test_a_partial_download_trains_on_the_episodes_it_has(tmp_path, caplog):
    root = _copy(V21, tmp_path / "partial")
    (root / f"videos/chunk-000/{CAMERA}/episode_000001.mp4").unlink()
    ds = LeRobotClipDataset(root, frames_per_clip=4, fps=5, crop_size=64, camera_views=["exterior_1_left"])
    assert [ref.index for ref in ds.paths] == [0, 2] and ds.num_skipped == 0
    assert "1 of 3 episodes have missing files and are left out" in caplog.text


def test_a_seek_into_a_shared_video_gives_the_frames_of_a_full_decode():
    src = LeRobotSource(V30)
    for e in range(3):
        ep = src.episode(e, "exterior_1_left")
        full = ep.frames(np.arange(ep.num_frames))
        for idx in ([1, 2, 3], [7, 11, 19], [ep.num_frames - 1]):
            np.testing.assert_array_equal(ep.frames(idx), full[idx])
