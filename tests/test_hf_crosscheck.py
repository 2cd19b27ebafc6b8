"""A transformers VJEPA2Model export loads into our modules and reproduces transformers' outputs."""

from __future__ import annotations

import json

import pytest
import torch

from vjepa2_core.hub import CheckpointError, load_checkpoint, load_encoder, load_encoder_and_predictor

transformers = pytest.importorskip("transformers")  # a test dependency (setup.py extras "test")

CROP, PATCH, FRAMES = 64, 16, 4


@pytest.fixture(scope="module")
def hf_export(tmp_path_factory):
    """A small random VJEPA2Model (non-trivial weights everywhere) written with save_pretrained."""
    config = transformers.VJEPA2Config(
        crop_size=CROP,
        patch_size=PATCH,
        frames_per_clip=FRAMES,
        tubelet_size=2,
        hidden_size=96,
        num_hidden_layers=2,
        num_attention_heads=2,
        mlp_ratio=4.0,
        pred_hidden_size=64,
        pred_num_hidden_layers=2,
        pred_num_attention_heads=2,
        pred_num_mask_tokens=3,
        pred_zero_init_mask_tokens=False,
    )
    torch.manual_seed(0)
    model = transformers.VJEPA2Model(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    out = tmp_path_factory.mktemp("hf") / "vjepa2_tiny"
    model.save_pretrained(out)
    return model, out


def test_export_converts_to_reference_keys(hf_export):
    _, path = hf_export
    ckpt = load_checkpoint(path)
    assert ckpt["model_config"]["encoder"]["embed_dim"] == 96
    assert ckpt["model_config"]["predictor"]["num_mask_tokens"] == 3
    assert ckpt["encoder"]["blocks.1.attn.qkv.weight"].shape == (3 * 96, 96)
    assert ckpt["predictor"]["mask_tokens.2"].shape == (1, 1, 64)
    assert "patch_embed.proj.weight" in ckpt["encoder"] and "predictor_proj.weight" in ckpt["predictor"]


def test_encoder_and_predictor_match_transformers(hf_export):
    hf_model, path = hf_export
    encoder, predictor = load_encoder_and_predictor(path)
    g = torch.Generator().manual_seed(1)
    video = torch.randn(2, FRAMES, 3, CROP, CROP, generator=g)  # HF layout [B, T, C, H, W]
    n_tokens = (FRAMES // 2) * (CROP // PATCH) ** 2
    perm = torch.stack([torch.randperm(n_tokens, generator=g) for _ in range(2)])
    context, target = perm[:, :20].sort(1).values, perm[:, 20:].sort(1).values
    with torch.no_grad():
        ref = hf_model(pixel_values_videos=video, context_mask=[context], target_mask=[target])
        ours = encoder(video.permute(0, 2, 1, 3, 4))
        ctx_tokens = torch.gather(ours, 1, context[..., None].expand(-1, -1, ours.shape[-1]))
        pred = predictor(ctx_tokens, [context], [target], mask_index=1)
    assert ours.shape == ref.last_hidden_state.shape == (2, n_tokens, 96)
    torch.testing.assert_close(ours, ref.last_hidden_state, atol=1e-4, rtol=0)
    assert pred.shape == ref.predictor_output.last_hidden_state.shape == (2, n_tokens - 20, 96)
    torch.testing.assert_close(pred, ref.predictor_output.last_hidden_state, atol=1e-4, rtol=0)
    assert ref.last_hidden_state.std() > 0.1  # the comparison is not between near-constant tensors


def test_hf_directory_errors(hf_export, tmp_path):
    _, path = hf_export
    bad = tmp_path / "bad"
    bad.mkdir()
    cfg = json.loads((path / "config.json").read_text())
    (bad / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="no model.safetensors"):
        load_encoder(bad)
    (bad / "config.json").write_text(json.dumps({**cfg, "hidden_act": "relu"}))
    (bad / "model.safetensors").write_bytes((path / "model.safetensors").read_bytes())
    with pytest.raises(CheckpointError, match="hidden_act"):
        load_encoder(bad)
