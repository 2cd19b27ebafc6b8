"""Probe files: the released layout ({"classifiers": [{"module.pooler...": ...}]}) loads strictly; wrong ones fail
with messages naming the problem; the multihead schedules follow the reference warmup-cosine / cosine-wd."""

import math

import pytest
import torch

from vjepa2_core.evals import ClassMeanRecall, build_head_optimizers, load_probe, probe_state, view_averaged_probs
from vjepa2_core.evals.metrics import chance_recall
from vjepa2_core.hub import CheckpointError
from vjepa2_core.models.attentive_pooler import AttentiveClassifier


def _released_file(path, probe):
    torch.save({"classifiers": [probe_state(probe)], "epoch": 20}, path)
    return path


def test_fixture_probe_loads_from_released_layout_and_reproduces_reference(tmp_path, fixtures_dir):
    fx = torch.load(fixtures_dir / "attentive_classifier.pt", weights_only=True)
    cfg = fx["config"]
    state = {f"module.{k}": v for k, v in fx["state_dict"].items()}
    path = tmp_path / "ssv2-tiny.pt"
    torch.save({"classifiers": [state]}, path)
    probe = load_probe(path, cfg["embed_dim"], cfg["num_classes"], num_heads=cfg["num_heads"], depth=cfg["depth"])
    with torch.no_grad():
        y = probe(fx["inputs"]["x"])
    torch.testing.assert_close(y, fx["outputs"]["y"], atol=1e-4, rtol=0)


def test_released_depth4_layout_keys_and_round_trip(tmp_path):
    probe = AttentiveClassifier(embed_dim=32, num_heads=16, depth=4, num_classes=7)
    keys = set(probe_state(probe))
    assert (
        "module.pooler.blocks.2.mlp.fc2.weight" in keys
        and "module.pooler.cross_attention_block.xattn.kv.weight" in keys
    )
    assert "module.linear.weight" in keys and not any(".blocks.3." in k for k in keys)
    loaded = load_probe(_released_file(tmp_path / "p.pt", probe), embed_dim=32, num_classes=7)
    x = torch.randn(2, 10, 32)
    torch.testing.assert_close(loaded(x), probe.eval()(x))


def test_wrong_probe_files_fail_clearly(tmp_path):
    probe = AttentiveClassifier(embed_dim=32, num_heads=16, depth=4, num_classes=7)
    path = _released_file(tmp_path / "p.pt", probe)
    with pytest.raises(CheckpointError, match="7 classes, 10 were asked"):
        load_probe(path, embed_dim=32, num_classes=10)
    with pytest.raises(CheckpointError, match=r"unexpected keys \(\d+\): pooler.blocks.2"):
        load_probe(path, embed_dim=32, num_classes=7, depth=3)
    with pytest.raises(CheckpointError, match="shape mismatches"):
        load_probe(path, embed_dim=48, num_classes=7)
    state = probe_state(probe)
    del state["module.pooler.query_tokens"]
    torch.save({"classifiers": [state]}, tmp_path / "q.pt")
    with pytest.raises(CheckpointError, match="missing keys.*pooler.query_tokens"):
        load_probe(tmp_path / "q.pt", embed_dim=32, num_classes=7)
    torch.save({"encoder": probe.state_dict()}, tmp_path / "enc.pt")
    with pytest.raises(CheckpointError, match="not a probe file"):
        load_probe(tmp_path / "enc.pt", embed_dim=32, num_classes=7)


def test_head_schedules_follow_reference_warmup_cosine_and_cosine_wd():
    heads = [AttentiveClassifier(embed_dim=16, num_heads=2, depth=1, num_classes=3) for _ in range(2)]
    kw = [
        dict(lr=1e-3, start_lr=1e-4, final_lr=0.0, warmup=1.0, weight_decay=0.01, final_weight_decay=0.1),
        dict(lr=5e-3, start_lr=5e-3, final_lr=1e-5, warmup=0.0, weight_decay=0.4, final_weight_decay=0.4),
    ]
    opts, scheds = build_head_optimizers(heads, kw, ipe=10, num_epochs=4)  # T_max 40, warmup 10 / 0
    for _ in range(25):
        lrs = [s.step()[0] for s in scheds]
    assert lrs[0] == pytest.approx(1e-3 * 0.5 * (1 + math.cos(math.pi * 15 / 30)))
    assert lrs[1] == pytest.approx(1e-5 + (5e-3 - 1e-5) * 0.5 * (1 + math.cos(math.pi * 25 / 40)))
    assert opts[0].param_groups[0]["weight_decay"] == pytest.approx(
        0.1 + (0.01 - 0.1) * 0.5 * (1 + math.cos(math.pi * 25 / 40))
    )
    assert opts[1].param_groups[0]["weight_decay"] == pytest.approx(0.4)
    assert len(opts[0].param_groups) == 1  # the reference decays every probe parameter


def test_view_average_and_mean_class_recall():
    a = torch.tensor([[2.0, 0.0], [0.0, 0.1]])
    b = torch.tensor([[0.0, 2.5], [0.0, 3.0]])
    probs = view_averaged_probs([a, b])
    torch.testing.assert_close(probs, (a.softmax(-1) + b.softmax(-1)) / 2)
    m = ClassMeanRecall(num_classes=4, k=2)
    logits = torch.tensor([[5.0, 4, 0, 0], [0, 0, 5, 4], [0, 0, 5, 4], [5.0, 0, 0, 4]])
    m.update(logits, torch.tensor([1, 3, 0, 3]))  # hits: class1 yes, class3 yes+yes, class0 no
    assert m.value() == pytest.approx(100 * (1 + 1 + 0) / 3)
    assert chance_recall(24) == pytest.approx(100 * 5 / 24) and chance_recall(3) == 100.0
