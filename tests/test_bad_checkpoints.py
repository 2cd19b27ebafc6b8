"""Bad checkpoints fail with one clear CheckpointError, and a malicious pickle is never executed."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
import torch

from vjepa2_core.hub import (
    CheckpointError,
    get_spec,
    load_ac_model,
    load_checkpoint,
    load_encoder,
    make_random_checkpoint,
    save_ac_checkpoint,
)
from vjepa2_core.hub.loading import build_model


class _WritesFile:
    """Unpickling this would create ``target`` (the payload of a classic pickle attack)."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):
        return (Path.touch, (self.target,))


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory) -> Path:
    return make_random_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pt", "vit_ac_tiny", seed=1)


def test_missing_file_names_the_path(tmp_path):
    missing = tmp_path / "nope.pt"
    with pytest.raises(CheckpointError, match="not found.*nope.pt"):
        load_checkpoint(missing)
    with pytest.raises(CheckpointError, match="nope.pt"):
        load_ac_model(checkpoint=missing)


def test_missing_released_weights_give_url_and_never_download(tmp_path, monkeypatch):
    monkeypatch.setenv("VJEPA2_CHECKPOINT_DIR", str(tmp_path / "weights"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    with pytest.raises(CheckpointError) as info:
        load_ac_model("vjepa2_ac_vit_giant")
    msg = str(info.value)
    assert "vjepa2-ac-vitg.pt" in msg and get_spec("vit_ac_giant").url in msg and str(tmp_path / "weights") in msg
    assert not any(tmp_path.rglob("*.pt")), "nothing may be downloaded"
    with pytest.raises(CheckpointError, match="not found.*elsewhere.pt.*dl.fbaipublicfiles.com/vjepa2/vitl.pt"):
        load_encoder("vit_large", checkpoint=tmp_path / "elsewhere.pt")


def test_unknown_name_lists_choices():
    with pytest.raises(CheckpointError, match="vit_ac_tiny"):
        load_encoder("vit_enormous")


@pytest.mark.parametrize("how", ["zip", "legacy"])
def test_malicious_pickle_is_rejected_not_executed(tmp_path, how):
    victim = tmp_path / "pwned"
    path = tmp_path / f"evil_{how}.pt"
    payload = {"encoder": {"w": torch.zeros(2)}, "hook": _WritesFile(victim)}
    if how == "zip":
        torch.save(payload, path)
    else:
        with open(path, "wb") as f:
            pickle.dump(payload, f, protocol=2)  # the protocol torch.load expects, so GLOBAL is reached
    with pytest.raises(CheckpointError, match="refused to load.*weights_only"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="refused"):
        load_ac_model("vit_ac_tiny", checkpoint=path)
    assert not victim.exists()


def test_truncated_files(tmp_path, tiny_ckpt):
    data = tiny_ckpt.read_bytes()
    for cut in (len(data) // 2, 40, 0):
        path = tmp_path / f"cut{cut}.pt"
        path.write_bytes(data[:cut])
        with pytest.raises(CheckpointError, match="truncated|corrupt") as info:
            load_checkpoint(path)
        assert str(path) in str(info.value)
    save_ac_checkpoint(tmp_path / "w.safetensors", *load_ac_model(tiny_ckpt), get_spec("vit_ac_tiny").model_config)
    blob = (tmp_path / "w.safetensors").read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(blob[: len(blob) - 100])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint(tmp_path / "cut.safetensors")


def test_random_bytes_and_non_dict(tmp_path):
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(os.urandom(4096))
    with pytest.raises(CheckpointError):
        load_checkpoint(garbage)
    listed = tmp_path / "list.pt"
    torch.save([torch.zeros(1)], listed)
    with pytest.raises(CheckpointError, match="expected a dict"):
        load_checkpoint(listed)


def test_wrong_keys_are_named(tmp_path, tiny_ckpt):
    ckpt = load_checkpoint(tiny_ckpt)
    enc = dict(ckpt["encoder"])
    enc.pop("blocks.1.mlp.fc2.bias")
    enc["module.backbone.blocks.7.attn.qkv.weight"] = torch.zeros(3)
    ckpt["encoder"] = enc
    torch.save(ckpt, tmp_path / "keys.pt")
    with pytest.raises(CheckpointError) as info:
        load_encoder(checkpoint=tmp_path / "keys.pt")
    msg = str(info.value)
    assert "missing keys (1): blocks.1.mlp.fc2.bias" in msg
    assert "unexpected keys (1): blocks.7.attn.qkv.weight" in msg
    assert "keys.pt" in msg and "[encoder]" in msg


def test_wrong_shapes_are_named(tmp_path, tiny_ckpt):
    ckpt = load_checkpoint(tiny_ckpt)
    ckpt["predictor"]["predictor_proj.weight"] = torch.zeros(95, 64)
    ckpt["predictor"]["action_encoder.weight"] = torch.zeros(64, 6)
    torch.save(ckpt, tmp_path / "shapes.pt")
    with pytest.raises(CheckpointError) as info:
        load_ac_model(tmp_path / "shapes.pt")
    msg = str(info.value)
    assert "shape mismatches (2)" in msg
    assert "predictor_proj.weight: checkpoint (95, 64) vs model (96, 64)" in msg
    assert "action_encoder.weight: checkpoint (64, 6) vs model (64, 7)" in msg


def test_wrong_architecture_name_for_file(tiny_ckpt):
    """A tiny checkpoint loaded as ViT-L: one error with the shape mismatches, not a torch traceback."""
    with pytest.raises(CheckpointError, match="shape mismatches"):
        load_encoder("vit_large", checkpoint=tiny_ckpt)


def test_mask_predictor_refused_as_ac_model(tmp_path):
    path = make_random_checkpoint(tmp_path / "pt.pt", "vit_pretrain_tiny")
    with pytest.raises(CheckpointError, match="not an action-conditioned"):
        load_ac_model(path)


def test_missing_model_config_and_parts(tmp_path):
    spec = get_spec("vit_ac_tiny")
    encoder = build_model("encoder", spec.encoder)
    torch.save({"encoder": encoder.state_dict()}, tmp_path / "bare.pt")
    with pytest.raises(CheckpointError, match="no model_config"):
        load_encoder(checkpoint=tmp_path / "bare.pt")
    with pytest.raises(CheckpointError, match="no 'predictor' state dict"):
        load_ac_model("vit_ac_tiny", checkpoint=tmp_path / "bare.pt")
    with pytest.raises(CheckpointError, match="no 'target_encoder'"):
        load_encoder("vit_ac_tiny", checkpoint=tmp_path / "bare.pt", key="target_encoder")
