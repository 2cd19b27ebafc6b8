"""Checkpoint loading: registry, released (DDP/wrapper-prefixed) layout, model_config round trips, fixtures."""

from __future__ import annotations

import math

import pytest
import torch

from vjepa2_core.hub import (
    MODELS,
    find_checkpoint,
    get_spec,
    load_ac_model,
    load_checkpoint,
    load_encoder,
    load_encoder_and_predictor,
    load_fixture_model,
    make_random_checkpoint,
    save_ac_checkpoint,
)
from vjepa2_core.hub.loading import build_model


def _perturbed(module: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Give every parameter random non-trivial values (so loads of the wrong tensor cannot go unnoticed)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.1)
    return module.eval()


def _ac_inputs(spec, batch: int = 2, frames: int = 2, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    crop = spec.img_size
    video = torch.randn(batch, 3, 2, crop, crop, generator=g)
    tokens = (crop // spec.encoder["patch_size"]) ** 2
    x = torch.randn(batch, frames * tokens, spec.encoder["embed_dim"], generator=g)
    actions, states = torch.randn(batch, frames, 7, generator=g), torch.randn(batch, frames, 7, generator=g)
    return video, x, actions, states


def _assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        torch.testing.assert_close(sa[k], sb[k], rtol=0, atol=0, msg=k)


def test_registry_contents():
    for name in ("vit_large", "vit_huge", "vit_giant", "vit_giant_384", "vit_ac_giant", "vit_ac_tiny"):
        assert name in MODELS
    assert get_spec("vjepa2_ac_vit_giant") is MODELS["vit_ac_giant"]
    giant = MODELS["vit_giant"].encoder
    assert (giant["embed_dim"], giant["depth"], giant["num_heads"]) == (1408, 40, 22)
    assert int(giant["embed_dim"] * giant["mlp_ratio"]) == 6144
    assert MODELS["vit_giant_384"].img_size == 384 and MODELS["vit_giant_384"].predictor["img_size"] == 384
    mp = MODELS["vit_large"].predictor
    assert (mp["predictor_embed_dim"], mp["depth"], mp["num_heads"], mp["num_mask_tokens"]) == (384, 12, 12, 10)
    assert mp["use_rope"] and mp["embed_dim"] == 1024
    ac = MODELS["vit_ac_giant"]
    assert ac.predictor_kind == "ac_predictor" and ac.url == "https://dl.fbaipublicfiles.com/vjepa2/vjepa2-ac-vitg.pt"
    assert (ac.predictor["predictor_embed_dim"], ac.predictor["depth"], ac.predictor["num_heads"]) == (1024, 24, 16)
    assert ac.predictor["is_frame_causal"] and ac.predictor["action_embed_dim"] == 7
    assert not ac.predictor["use_extrinsics"] and ac.predictor["embed_dim"] == 1408
    assert MODELS["vit_huge"].url.endswith("/vith.pt") and MODELS["vit_large"].file_name == "vitl.pt"
    cfg = MODELS["vit_ac_tiny"].model_config
    cfg["encoder"]["depth"] = 99
    assert MODELS["vit_ac_tiny"].encoder["depth"] == 2, "model_config must be a copy"


def test_released_layout_loads_strictly(tmp_path):
    """Keys as the reference trainer writes them: DDP ``module.`` + wrapper ``backbone.``; a stray pos_embed."""
    spec = get_spec("vit_ac_tiny")
    encoder = _perturbed(build_model("encoder", spec.encoder), 1)
    target = _perturbed(build_model("encoder", spec.encoder), 2)
    predictor = _perturbed(build_model("ac_predictor", spec.predictor), 3)

    def released(module, extra=None):
        sd = {f"module.backbone.{k}": v for k, v in module.state_dict().items()}
        return {**sd, **(extra or {})}

    stray = {"module.backbone.pos_embed": torch.zeros(1, 4, spec.encoder["embed_dim"])}
    ckpt = {
        "encoder": released(encoder, stray),
        "target_encoder": released(target),
        "predictor": released(predictor),
        "opt": {"state": {}, "param_groups": []},
        "epoch": 3,
    }
    path = tmp_path / "released.pt"
    torch.save(ckpt, path)

    _assert_same_weights(load_encoder("vit_ac_tiny", checkpoint=path), encoder)
    _assert_same_weights(load_encoder("vit_ac_tiny", checkpoint=path, key="target_encoder"), target)
    enc, pred = load_ac_model("vit_ac_tiny", checkpoint=path)
    assert not enc.training and not pred.training
    video, x, actions, states = _ac_inputs(spec)
    with torch.no_grad():
        torch.testing.assert_close(enc(video), encoder(video), rtol=0, atol=0)
        torch.testing.assert_close(pred(x, actions, states), predictor(x, actions, states), rtol=0, atol=0)
    _, pred2 = load_encoder_and_predictor("vit_ac_tiny", checkpoint=path)
    _assert_same_weights(pred2, predictor)


def test_model_config_round_trip(tmp_path):
    path = make_random_checkpoint(tmp_path / "tiny.pt", "vit_ac_tiny", seed=5)
    ckpt = load_checkpoint(path)
    assert ckpt["model_config"] == get_spec("vit_ac_tiny").model_config
    assert {"encoder", "target_encoder", "predictor"} <= set(ckpt)
    encoder, predictor = load_ac_model(path)  # no name: architecture comes from model_config
    _assert_same_weights(encoder, load_encoder("vit_ac_tiny", checkpoint=path))

    # same seed -> same weights; other seed -> different weights
    again = load_checkpoint(make_random_checkpoint(tmp_path / "again.pt", "vit_ac_tiny", seed=5))
    other = load_checkpoint(make_random_checkpoint(tmp_path / "other.pt", "vit_ac_tiny", seed=6))
    w = "predictor_blocks.0.attn.qkv.weight"
    assert torch.equal(again["predictor"][w], ckpt["predictor"][w])
    assert not torch.equal(other["predictor"][w], ckpt["predictor"][w])

    # a modified architecture survives the round trip through model_config, in both file formats
    config = get_spec("vit_ac_tiny").model_config
    config["predictor"]["depth"] = 3
    wide_pred = _perturbed(build_model("ac_predictor", config["predictor"]), 7)
    for name in ("custom.pt", "custom.safetensors"):
        out = save_ac_checkpoint(tmp_path / name, encoder, wide_pred, config, epoch=12, note="finetuned")
        enc2, pred2 = load_ac_model(out)
        assert len(pred2.predictor_blocks) == 3
        _assert_same_weights(pred2, wide_pred)
        _assert_same_weights(enc2, encoder)
        stored = load_checkpoint(out)
        assert stored["model_config"] == config and stored["epoch"] == 12 and stored["note"] == "finetuned"
        _assert_same_weights(load_encoder(out, key="target_encoder"), encoder)


def test_mask_predictor_token_count_follows_checkpoint(tmp_path):
    spec = get_spec("vit_pretrain_tiny")
    encoder = build_model("encoder", spec.encoder)
    predictor = _perturbed(build_model("predictor", {**spec.predictor, "num_mask_tokens": 10}), 4)
    path = save_ac_checkpoint(tmp_path / "pt.pt", encoder, predictor, spec.model_config)
    _, loaded = load_encoder_and_predictor("vit_pretrain_tiny", checkpoint=path)
    _assert_same_weights(loaded, predictor)
    assert sum(k.startswith("mask_tokens.") for k in loaded.state_dict()) == 10


def test_find_checkpoint_in_configured_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("VJEPA2_CHECKPOINT_DIR", str(tmp_path))
    (tmp_path / "vitl.pt").write_bytes(b"")
    assert find_checkpoint(get_spec("vit_large")) == tmp_path / "vitl.pt"


@pytest.mark.parametrize(
    "file, kind",
    [("encoder_rope_video.pt", "encoder"), ("ac_predictor.pt", "ac_predictor"), ("predictor_rope.pt", "predictor")],
)
def test_fixture_models_match_reference(fixtures_dir, file, kind):
    model = load_fixture_model(fixtures_dir / file, kind)
    ref = torch.load(fixtures_dir / file, weights_only=True)
    inp, out = ref["inputs"], ref["outputs"]
    with torch.no_grad():
        if kind == "encoder":
            got = model(inp["x"])
        elif kind == "ac_predictor":
            got = model(inp["x"], inp["actions"], inp["states"])
        else:
            got = model(inp["x"], [inp["masks_x"]], [inp["masks_y"]], mask_index=int(inp["mask_index"]))
    torch.testing.assert_close(got, out["y"], atol=1e-4, rtol=0)
    assert math.isfinite(got.abs().max().item())


def test_hub_modules_import_without_cycles():
    """The hub's intra-package imports (module level and inside functions) form a DAG: files <- hf <- checkpoint."""
    import ast
    from pathlib import Path

    import vjepa2_core.hub as hub

    folder = Path(hub.__file__).parent
    graph = {}
    for path in folder.glob("*.py"):
        tree = ast.parse(path.read_text())
        graph[path.stem] = {
            node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.level == 1
        }
    assert graph["files"] == set() and graph["hf"] == {"files"}, graph

    def reaches(start, goal, seen=()):
        return any(dep == goal or (dep not in seen and reaches(dep, goal, (*seen, dep))) for dep in graph[start])

    cycles = [name for name in graph if name != "__init__" and reaches(name, name)]
    assert not cycles, graph
