"""Probe files: the released layout ({"classifiers": [{"module.pooler...": ...}]}) loads strictly; wrong ones fail
with messages naming the problem; the multihead schedules follow the reference warmup-cosine / cosine-wd."""

import math

import pytest
import torch

from vjepa2_core.evals import (
    ClassMeanRecall,
    build_head_optimizers,
    load_ek100_probe,
    load_probe,
    probe_state,
    token_spread,
    view_averaged_probs,
)
from vjepa2_core.evals.metrics import chance_recall
from vjepa2_core.hub import CheckpointError
from vjepa2_core.models.attentive_pooler import AttentiveClassifier, AttentivePooler


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


def _ek100_released_state(embed_dim=32, depth=2, sizes=(5, 4, 9)):
    """A state dict in the released EK100 layout, keyed by the reference names (not by our class): a 3-query
    pooler plus `verb_classifier`, `noun_classifier`, `action_classifier`, all under `module.`."""
    torch.manual_seed(0)
    pooler = AttentivePooler(num_queries=3, embed_dim=embed_dim, num_heads=4, depth=depth)
    state = {f"module.pooler.{k}": v for k, v in pooler.state_dict().items()}
    for head, n in zip(("verb", "noun", "action"), sizes):
        state[f"module.{head}_classifier.weight"] = torch.randn(n, embed_dim)
        state[f"module.{head}_classifier.bias"] = torch.randn(n)
    return pooler.eval(), state


def test_released_layout_ek100_probe_loads_strictly_and_computes_three_heads(tmp_path):
    pooler, state = _ek100_released_state()
    assert state["module.pooler.query_tokens"].shape == (1, 3, 32)
    torch.save({"classifiers": [state], "epoch": 20}, tmp_path / "ek100-tiny.pt")
    probe = load_ek100_probe(tmp_path / "ek100-tiny.pt", 32, 5, 4, 9, num_heads=4, depth=2)
    assert set(probe_state(probe)) == set(state)  # same keys both ways: our writer emits the released layout
    x = torch.randn(3, 12, 32)
    with torch.no_grad():
        out, q = probe(x), pooler(x)
    for i, head in enumerate(("verb", "noun", "action")):  # query i feeds head i
        w, b = state[f"module.{head}_classifier.weight"], state[f"module.{head}_classifier.bias"]
        torch.testing.assert_close(out[head], q[:, i] @ w.T + b)


def test_wrong_ek100_probe_files_fail_clearly(tmp_path):
    _, state = _ek100_released_state()
    torch.save({"classifiers": [state]}, tmp_path / "ek.pt")
    with pytest.raises(CheckpointError, match="noun_classifier has 4 classes, 3 were asked for"):
        load_ek100_probe(tmp_path / "ek.pt", 32, 5, 3, 9, num_heads=4, depth=2)
    with pytest.raises(CheckpointError, match="EK100 anticipation probe.*load_ek100_probe"):
        load_probe(tmp_path / "ek.pt", 32, 9, num_heads=4, depth=2)
    with pytest.raises(CheckpointError, match=r"unexpected keys \(\d+\): pooler.blocks.0"):
        load_ek100_probe(tmp_path / "ek.pt", 32, 5, 4, 9, num_heads=4, depth=1)
    action_only = {k: v for k, v in state.items() if not k.startswith(("module.verb", "module.noun"))}
    torch.save({"classifiers": [action_only]}, tmp_path / "action_only.pt")
    with pytest.raises(CheckpointError, match="action-only"):
        load_ek100_probe(tmp_path / "action_only.pt", 32, 5, 4, 9, num_heads=4, depth=2)
    renamed = {k.replace("verb_classifier", "verb_head"): v for k, v in state.items()}
    torch.save({"classifiers": [renamed]}, tmp_path / "renamed.pt")
    with pytest.raises(
        CheckpointError, match=r"missing keys \(2\): verb_classifier.weight.*unexpected keys \(2\): verb_head"
    ):
        load_ek100_probe(tmp_path / "renamed.pt", 32, 5, 4, 9, num_heads=4, depth=2)
    single = AttentiveClassifier(embed_dim=32, num_heads=4, depth=2, num_classes=9)
    with pytest.raises(CheckpointError, match="single-head classification probe"):
        load_ek100_probe(_released_file(tmp_path / "ssv2.pt", single), 32, 5, 4, 9, num_heads=4, depth=2)


def test_token_spread_tells_collapsed_from_spread_features():
    torch.manual_seed(0)
    spread = token_spread(torch.randn(4, 500, 16))
    assert 15.0 < spread["effective_rank"] <= 16.0 and spread["token_std"] == pytest.approx(1.0, abs=0.05)
    line = torch.randn(2000, 1) * torch.randn(1, 16) + 3.0  # every token on one line through a common offset
    assert token_spread(line)["effective_rank"] == pytest.approx(1.0, abs=1e-3)
    two = torch.cat([torch.randn(1000, 2) * torch.tensor([3.0, 1.0]), torch.zeros(1000, 14)], dim=1)
    assert 1.5 < token_spread(two)["effective_rank"] < 2.0  # two directions, unequal variance
