"""torch.hub entry points: every reference name builds the released architecture; pretrained loads come from the hub
checkpoint folder; the preprocessor is the spec's eval transform (spec sections 8 and 11)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from vjepa2_core.hub import MODELS, get_spec, load_checkpoint, make_random_checkpoint

REPO = str(Path(__file__).resolve().parents[1])


def hub(name: str, **kwargs):
    return torch.hub.load(REPO, name, source="local", trust_repo=True, **kwargs)


def _shapes(module: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


# name -> (embed dim, depth, heads, MLP hidden, crop, approximate encoder parameters) from the released models
RELEASED = {
    "vjepa2_vit_large": (1024, 24, 16, 4096, 256, 0.30e9),
    "vjepa2_vit_huge": (1280, 32, 16, 5120, 256, 0.63e9),
    "vjepa2_vit_giant": (1408, 40, 22, 6144, 256, 1.01e9),
    "vjepa2_vit_giant_384": (1408, 40, 22, 6144, 384, 1.01e9),
    "vjepa2_ac_vit_giant": (1408, 40, 22, 6144, 256, 1.01e9),
}


@pytest.mark.parametrize("name", sorted(RELEASED))
def test_entries_build_released_shapes(name):
    """pretrained=False on the meta device: the full giant architectures without allocating their weights."""
    dim, depth, heads, hidden, crop, n_params = RELEASED[name]
    with torch.device("meta"):
        encoder, predictor = hub(name, pretrained=False)
    enc = _shapes(encoder)
    assert enc["patch_embed.proj.weight"] == (dim, 3, 2, 16, 16)  # tubelet 2, patch 16
    assert len(encoder.blocks) == depth and encoder.num_heads == heads and "pos_embed" not in enc  # RoPE
    assert enc[f"blocks.{depth - 1}.mlp.fc1.weight"] == (hidden, dim)
    assert enc["blocks.0.attn.qkv.weight"] == (3 * dim, dim) and enc["norm.weight"] == (dim,)
    assert (encoder.img_height, encoder.img_width, encoder.num_frames) == (crop, crop, 64)
    assert abs(sum(v.numel() for v in encoder.parameters()) / n_params - 1) < 0.02
    pred = _shapes(predictor)
    if name.startswith("vjepa2_ac"):
        assert pred["predictor_embed.weight"] == (1024, dim) and len(predictor.predictor_blocks) == 24
        assert pred["action_encoder.weight"] == (1024, 7) and pred["state_encoder.weight"] == (1024, 7)
        assert pred["extrinsics_encoder.weight"] == (1024, 6) and predictor.is_frame_causal
        assert predictor.num_heads == 16 and pred["predictor_proj.weight"] == (dim, 1024)
    else:
        assert pred["predictor_embed.weight"] == (384, dim) and len(predictor.predictor_blocks) == 12
        assert sorted(k for k in pred if k.startswith("mask_tokens.")) == [f"mask_tokens.{i}" for i in range(10)]
        assert pred["mask_tokens.0"] == (1, 1, 384) and pred["predictor_proj.weight"] == (dim, 384)
        assert predictor.num_heads == 12 and predictor.grid == (32, crop // 16, crop // 16)


def test_keyword_overrides_reach_encoder_and_predictor():
    with torch.device("meta"):
        encoder, predictor = hub("vjepa2_vit_large", pretrained=False, num_frames=16, img_size=224)
    assert encoder.num_frames == 16 and encoder.grid == (8, 14, 14)
    assert predictor.grid == (8, 14, 14)
    with torch.device("meta"):
        encoder, predictor = hub("vjepa2_ac_vit_giant", pretrained=False, num_frames=8)
    assert encoder.grid == (4, 16, 16) and predictor.grid_depth == 4


def test_preprocessor_is_the_spec_eval_transform():
    """Spec section 8 on a non-square generated clip: short side -> int(crop*256/224) (long side truncated),
    bilinear (cv2), centre crop at round((W-crop)/2), /255, ImageNet mean/std, [3,T,crop,crop] in a list."""
    rng = np.random.default_rng(0)
    for crop, (h, w) in ((64, (90, 160)), (256, (90, 160)), (384, (500, 281))):
        clip = rng.integers(0, 256, size=(3, h, w, 3), dtype=np.uint8)
        out = hub("vjepa2_preprocessor", crop_size=crop)(clip)
        short = int(crop * 256 / 224)
        new_h, new_w = (short, int(short * w / h)) if h <= w else (int(short * h / w), short)
        frames = np.stack([cv2.resize(f, (new_w, new_h), interpolation=cv2.INTER_LINEAR) for f in clip])
        top, left = round((new_h - crop) / 2), round((new_w - crop) / 2)
        x = torch.from_numpy(frames[:, top : top + crop, left : left + crop]).permute(3, 0, 1, 2).float() / 255
        mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
        want = (x - mean.view(3, 1, 1, 1)) / std.view(3, 1, 1, 1)
        assert isinstance(out, list) and len(out) == 1 and out[0].shape == (3, 3, crop, crop)
        torch.testing.assert_close(out[0], want, atol=1e-6, rtol=0)


@pytest.fixture
def hub_dir(tmp_path, monkeypatch):
    """An empty torch hub folder (TORCH_HOME) and no VJEPA2_CHECKPOINT_DIR."""
    monkeypatch.delenv("VJEPA2_CHECKPOINT_DIR", raising=False)
    monkeypatch.delenv("VJEPA2_OFFLINE", raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    folder = Path(torch.hub.get_dir()) / "checkpoints"
    assert folder == tmp_path / "torch_home" / "hub" / "checkpoints"
    return folder


def _released_layout(path: Path, seed: int) -> Path:
    """A tiny AC checkpoint as the reference trainer writes it (DDP + wrapper prefixes, no model_config)."""
    ckpt = load_checkpoint(make_random_checkpoint(path.with_suffix(".src.pt"), "vit_ac_tiny", seed=seed))
    prefixed = {k: {f"module.backbone.{n}": t for n, t in ckpt[k].items()} for k in ("encoder", "predictor")}
    torch.save({**prefixed, "epoch": 3}, path)
    return path


def test_pretrained_loads_from_hub_checkpoint_folder(hub_dir, monkeypatch):
    path = _released_layout(hub_dir / "ac-tiny.pt", seed=3)
    hub_dir.joinpath("ac-tiny.src.pt").unlink()
    monkeypatch.setitem(MODELS, "vit_ac_tiny", dataclasses.replace(get_spec("vit_ac_tiny"), file_name="ac-tiny.pt"))
    encoder, predictor = hub("vjepa2_ac_vit_tiny", pretrained=True, download=False)
    stored = torch.load(path, weights_only=True)
    for module, part in ((encoder, "encoder"), (predictor, "predictor")):
        sd = module.state_dict()
        assert sd.keys() == {k.removeprefix("module.backbone.") for k in stored[part]}
        for key, value in stored[part].items():
            assert torch.equal(sd[key.removeprefix("module.backbone.")], value), key
    # a keyword override with pretrained weights: RoPE models load strictly at any clip length
    encoder, _ = hub("vjepa2_ac_vit_tiny", pretrained=True, download=False, num_frames=8)
    with torch.no_grad():
        assert encoder(torch.zeros(1, 3, 8, 64, 64)).shape == (1, 4 * 16, 96)


def test_pretrained_loading_stays_strict(tmp_path):
    wrong = make_random_checkpoint(tmp_path / "ac.pt", "vit_ac_tiny")  # an AC file for the mask-predictor entry
    with pytest.raises(
        Exception, match=r"ac\.pt holds a predictor of kind 'ac_predictor', but 'vit_pretrain_tiny' needs 'predictor'"
    ):
        hub("vjepa2_vit_tiny", pretrained=True, checkpoint=str(wrong))


def test_released_weights_without_download_name_file_and_url(hub_dir, monkeypatch):
    with pytest.raises(Exception, match=r"vitl\.pt.*not downloaded \(download=False\).*dl\.fbaipublicfiles\.com"):
        hub("vjepa2_vit_large", download=False)
    monkeypatch.setenv("VJEPA2_OFFLINE", "1")
    with pytest.raises(Exception, match=r"vjepa2-ac-vitg\.pt.*VJEPA2_OFFLINE.*/vjepa2-ac-vitg\.pt"):
        hub("vjepa2_ac_vit_giant")
    assert not hub_dir.exists() or not any(hub_dir.iterdir())


def test_shipped_sim_model_entry():
    encoder, predictor = hub("vjepa2_sim_reach")
    assert not encoder.training and type(predictor).__name__ == "ACPredictor"
