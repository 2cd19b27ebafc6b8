"""Hugging Face video classifiers: VJEPA2ForVideoClassification directories load as our encoder + AttentiveClassifier,
and our modules export to directories transformers reads; logits agree with transformers to 1e-4."""

from __future__ import annotations

import json

import pytest
import torch

from vjepa2_core.hub import (
    CheckpointError,
    build_encoder_and_predictor,
    build_model,
    export_hf_directory,
    get_spec,
    load_checkpoint,
    load_encoder_and_predictor,
    load_video_classifier,
    make_random_checkpoint,
    with_overrides,
)

transformers = pytest.importorskip("transformers")  # a test dependency (setup.py extras "test")

CROP, FRAMES, LABELS = 64, 4, ["push", "pull", "lift", "drop", "spin"]


def _perturb(module: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Non-trivial values everywhere (zero-initialised tokens and biases would hide wrong mappings)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.1)
    return module.eval()


def _video(seed: int = 1) -> torch.Tensor:
    return torch.randn(2, FRAMES, 3, CROP, CROP, generator=torch.Generator().manual_seed(seed))  # HF [B,T,C,H,W]


@pytest.fixture(scope="module")
def hf_classifier(tmp_path_factory):
    config = transformers.VJEPA2Config(
        crop_size=CROP,
        frames_per_clip=FRAMES,
        hidden_size=96,
        num_hidden_layers=2,
        num_attention_heads=2,
        pred_hidden_size=64,
        pred_num_hidden_layers=1,
        pred_num_attention_heads=2,
        pred_num_mask_tokens=2,
        num_pooler_layers=2,
        id2label=dict(enumerate(LABELS)),
        label2id={name: i for i, name in enumerate(LABELS)},
    )
    torch.manual_seed(0)
    model = _perturb(transformers.VJEPA2ForVideoClassification(config), 2)
    out = tmp_path_factory.mktemp("hf") / "vjepa2_classifier"
    model.save_pretrained(out)
    return model, out


def test_hf_classifier_directory_matches_transformers(hf_classifier):
    model, path = hf_classifier
    encoder, classifier = load_video_classifier(path)
    assert type(classifier).__name__ == "AttentiveClassifier" and classifier.labels == LABELS
    assert len(classifier.pooler.blocks) == 2 and classifier.linear.out_features == 5
    video = _video()
    with torch.no_grad():
        want = model(pixel_values_videos=video).logits
        got = classifier(encoder(video.permute(0, 2, 1, 3, 4)))
    assert want.shape == got.shape == (2, 5) and want.std() > 0.1
    torch.testing.assert_close(got, want, atol=1e-4, rtol=0)
    # the same directory still serves the backbone loaders (encoder + mask predictor of the classifier model)
    _, predictor = load_encoder_and_predictor(path)
    assert len(predictor.predictor_blocks) == 1


def _ours(seed: int):
    """Tiny encoder + mask predictor + 3-block attentive classifier, perturbed, with their model_config."""
    config = with_overrides(get_spec("vit_pretrain_tiny").model_config, {"num_frames": FRAMES})
    config["classifier"] = {"embed_dim": 96, "num_heads": 2, "depth": 3, "num_classes": 5, "mlp_ratio": 4.0}
    encoder, predictor = build_encoder_and_predictor("vit_pretrain_tiny", {"num_frames": FRAMES}, seed=seed)
    classifier = build_model("attentive_classifier", config["classifier"])
    return config, _perturb(encoder, seed), _perturb(predictor, seed + 1), _perturb(classifier, seed + 2)


def test_export_classifier_reads_in_transformers(tmp_path):
    config, encoder, predictor, classifier = _ours(seed=4)
    out = export_hf_directory(tmp_path / "export", config, encoder, predictor, classifier, labels=LABELS)
    model, info = transformers.VJEPA2ForVideoClassification.from_pretrained(out, output_loading_info=True)
    assert not any(info[k] for k in ("missing_keys", "unexpected_keys", "mismatched_keys")), info
    assert model.config.id2label[3] == "drop" and model.config.num_pooler_layers == 2
    video = _video(seed=5)
    with torch.no_grad():
        want = classifier(encoder(video.permute(0, 2, 1, 3, 4)))
        got = model.eval()(pixel_values_videos=video).logits
    torch.testing.assert_close(got, want, atol=1e-4, rtol=0)
    # and back: the export loads into our modules with identical weights
    encoder2, classifier2 = load_video_classifier(out)
    for a, b in ((encoder, encoder2), (classifier, classifier2)):
        sa, sb = a.state_dict(), b.state_dict()
        assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_export_backbone_reads_in_transformers(tmp_path):
    config, encoder, predictor, _ = _ours(seed=7)
    del config["classifier"]
    out = export_hf_directory(tmp_path / "backbone", config, encoder, predictor)
    assert json.loads((out / "config.json").read_text())["architectures"] == ["VJEPA2Model"]
    model, info = transformers.VJEPA2Model.from_pretrained(out, output_loading_info=True)
    assert not any(info[k] for k in ("missing_keys", "unexpected_keys", "mismatched_keys")), info
    video = _video(seed=8)
    n = (FRAMES // 2) * (CROP // 16) ** 2
    context, target = torch.arange(10).expand(2, -1), torch.arange(10, n).expand(2, -1)
    with torch.no_grad():
        ref = model.eval()(pixel_values_videos=video, context_mask=[context], target_mask=[target])
        tokens = encoder(video.permute(0, 2, 1, 3, 4))
        pred = predictor(tokens[:, :10], [context], [target], mask_index=1)
    torch.testing.assert_close(ref.last_hidden_state, tokens, atol=1e-4, rtol=0)
    torch.testing.assert_close(ref.predictor_output.last_hidden_state, pred, atol=1e-4, rtol=0)
    assert load_checkpoint(out)["predictor"]["mask_tokens.1"].shape == (1, 1, 64)


def test_export_refuses_what_hf_cannot_hold(tmp_path):
    path = make_random_checkpoint(tmp_path / "ac.pt", "vit_ac_tiny")
    ckpt = load_checkpoint(path)
    with pytest.raises(CheckpointError, match="no action-conditioned predictor"):
        export_hf_directory(tmp_path / "ac", ckpt["model_config"], ckpt["encoder"], ckpt["predictor"])
    config, encoder, predictor, classifier = _ours(seed=1)
    config["classifier"]["num_heads"] = 4
    with pytest.raises(CheckpointError, match="encoder's head count"):
        export_hf_directory(tmp_path / "heads", config, encoder, predictor, classifier)
    assert not (tmp_path / "ac").exists() and not (tmp_path / "heads").exists()
