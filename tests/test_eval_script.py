"""training/eval_probe.py end to end on generated videos: multihead training, the reference checkpoint layout,
resume, --val-only (own file, a released-layout single-head file and a released-layout EK100 file) and config
errors."""

import json
from pathlib import Path

import pytest
import torch
from conftest import run_script

from vjepa2_core.data.motion_direction import write_direction_dataset, write_ek100_toy
from vjepa2_core.evals import probe_state
from vjepa2_core.hub import make_random_checkpoint
from vjepa2_core.models.attentive_pooler import AttentiveClassifier, AttentivePooler
from vjepa2_core.training.metrics import read_csv

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "config" / "eval" / "tiny_cpu" / "video_shapes.yaml"
EK100_CONFIG = ROOT / "config" / "eval" / "tiny_cpu" / "ek100_toy.yaml"


class _Script:
    """training/eval_probe.py run as a user runs it: `main(argv)` gives the exit code, `out` / `err` the output."""

    out = err = ""

    def main(self, argv: list[str]) -> int:
        proc = run_script("training/eval_probe.py", argv)
        self.out, self.err = proc.stdout, proc.stderr
        return proc.returncode


def _script() -> _Script:
    return _Script()


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("probe")
    train = write_direction_dataset(root / "train", 8, num_frames=8, seed=1)
    val = write_direction_dataset(root / "val", 4, num_frames=8, seed=2)
    ckpt = make_random_checkpoint(root / "enc.pt", "vit_pretrain_tiny")
    base = [
        f"model_kwargs.checkpoint={ckpt}",
        f"experiment.data.dataset_train={train}",
        f"experiment.data.dataset_val={val}",
        f"folder={root / 'out'}",
        "experiment.data.num_segments=1",
        "experiment.optimization.batch_size=4",
        "experiment.optimization.num_epochs=1",
    ]
    return _script(), root, base


def _args(base, *extra):
    out = ["--config", str(CONFIG)]
    for item in [*base, *extra]:
        out += ["--set", item]
    return out


def test_train_resume_and_val_only(setup):
    script, root, base = setup
    assert script.main(_args(base)) == 0
    folder = root / "out" / "video_classification_frozen" / "shapes-direction-8f"
    ckpt = torch.load(folder / "latest.pt", weights_only=True)
    assert ckpt["epoch"] == 1 and len(ckpt["classifiers"]) == 4 and len(ckpt["opt"]) == 4
    assert all(k.startswith("module.") for k in ckpt["classifiers"][0])
    assert script.main(_args(base, "experiment.optimization.num_epochs=2") + ["--resume"]) == 0
    ckpt2 = torch.load(folder / "latest.pt", weights_only=True)
    assert ckpt2["epoch"] == 2 and [r["epoch"] for r in read_csv(folder / "log.csv")] == ["1", "2"]
    assert not torch.equal(
        ckpt["classifiers"][0]["module.linear.weight"], ckpt2["classifiers"][0]["module.linear.weight"]
    )
    trained = json.loads((folder / "results.json").read_text())
    assert 1.0 <= trained["effective_rank"] <= 96.0 and trained["token_std"] > 0  # the collapse check is reported
    assert script.main(_args(base) + ["--val-only"]) == 0
    assert "val top-1" in script.out
    result = json.loads((folder / "results.json").read_text())
    # --val-only scores the stored heads: exactly the numbers the training run reported for them
    assert len(result["top1"]) == 4 and result["top1"] == trained["top1"] and 0.0 <= result["best"] <= 100.0


def test_val_every_validates_every_kth_epoch_and_the_last(setup):
    script, root, base = setup
    argv = _args(base, "experiment.optimization.num_epochs=3", "meta.val_every=2", "tag=every2")
    assert script.main(argv) == 0
    folder = root / "out" / "video_classification_frozen" / "every2"
    assert [r["epoch"] for r in read_csv(folder / "log.csv")] == ["2", "3"]
    assert torch.load(folder / "latest.pt", weights_only=True)["epoch"] == 3  # saved every epoch all the same


def test_val_only_reads_a_released_layout_probe(setup):
    script, root, base = setup
    probe = AttentiveClassifier(embed_dim=96, num_heads=2, depth=1, num_classes=8)
    path = root / "released.pt"
    torch.save({"classifiers": [probe_state(probe)]}, path)
    assert script.main(_args(base, f"probe_checkpoint={path}", "tag=released") + ["--val-only"]) == 0
    result = json.loads((root / "out" / "video_classification_frozen" / "released" / "results.json").read_text())
    assert len(result["top1"]) == 1
    wrong = AttentiveClassifier(embed_dim=96, num_heads=2, depth=1, num_classes=5)
    torch.save({"classifiers": [probe_state(wrong)]}, path)
    assert script.main(_args(base, f"probe_checkpoint={path}", "tag=released") + ["--val-only"]) == 3
    assert "linear.weight: checkpoint (5, 96) vs model (8, 96)" in script.err


@pytest.mark.parametrize(
    "extra, message",
    [
        (["experiment.data.num_classes=null"], "num_classes: required"),
        (["experiment.optimization.multihead_kwargs=[]"], "needs at least one head"),
        (["experiment.data.frames_per_clipp=8"], "did you mean 'frames_per_clip'"),
        (["tag=nothing-here"], "--val-only needs a probe file"),
        (["meta.val_every=0"], "meta.val_every: must be >= 1"),
    ],
)
def test_bad_configs_exit_2_with_the_key(setup, extra, message):
    script, _, base = setup
    argv = _args(base, *extra) + (["--val-only"] if extra[0].startswith("tag=") else [])
    assert script.main(argv) == 2
    err = script.err
    assert err.startswith("eval_probe.py: error:") and message in err


def test_ek100_probe_trains_and_val_only_reads_a_released_layout_file(tmp_path):
    script = _script()
    for split, n, seed in (("train", 8, 1), ("validation", 6, 2)):
        write_ek100_toy(tmp_path / "ek", split, n, seed=seed)
    ckpt = make_random_checkpoint(tmp_path / "enc.pt", "vit_pretrain_tiny")
    base = [
        f"model_kwargs.checkpoint={ckpt}",
        f"experiment.data.base_path={tmp_path / 'ek'}",
        f"experiment.data.dataset_train={tmp_path / 'ek' / 'EPIC_100_train.csv'}",
        f"experiment.data.dataset_val={tmp_path / 'ek' / 'EPIC_100_validation.csv'}",
        f"folder={tmp_path / 'out'}",
        "experiment.optimization.num_epochs=1",
    ]
    argv = ["--config", str(EK100_CONFIG)] + [a for item in base for a in ("--set", item)]
    assert script.main(argv) == 0
    trained = torch.load(
        tmp_path / "out" / "action_anticipation_frozen" / "ek100-toy" / "latest.pt", weights_only=True
    )
    v, n, a = (trained["classifiers"][0][f"module.{h}_classifier.weight"].shape[0] for h in ("verb", "noun", "action"))
    # a file written in the released layout by key name: 3-query pooler + verb/noun/action heads, `module.` prefix
    pooler = AttentivePooler(num_queries=3, embed_dim=96, num_heads=2, depth=1)
    state = {f"module.pooler.{k}": t for k, t in pooler.state_dict().items()}
    for head, rows in (("verb", v), ("noun", n), ("action", a)):
        state.update({f"module.{head}_classifier.weight": torch.zeros(rows, 96)})
        state.update({f"module.{head}_classifier.bias": torch.arange(rows, dtype=torch.float32)})  # ranks by bias
    torch.save({"classifiers": [state]}, tmp_path / "ek100-released.pt")
    assert script.main(argv + ["--set", f"probe_checkpoint={tmp_path / 'ek100-released.pt'}", "--val-only"]) == 0
    assert "action mean-class recall@5" in script.out
    result = json.loads((tmp_path / "out" / "action_anticipation_frozen" / "ek100-toy" / "results.json").read_text())
    assert len(result["action"]) == 1 and 0.0 <= result["action"][0] <= 100.0
    state["module.noun_classifier.weight"] = torch.zeros(n + 1, 96)
    state["module.noun_classifier.bias"] = torch.zeros(n + 1)
    torch.save({"classifiers": [state]}, tmp_path / "ek100-wrong.pt")
    assert script.main(argv + ["--set", f"probe_checkpoint={tmp_path / 'ek100-wrong.pt'}", "--val-only"]) == 3
    assert f"noun_classifier.weight: checkpoint ({n + 1}, 96) vs model ({n}, 96)" in script.err
