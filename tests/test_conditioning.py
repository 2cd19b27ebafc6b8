"""The action/state normaliser in front of the AC predictor: identity by default, same map in training and planning,
and its statistics travel with the weights (training checkpoint -> hub -> WorldModel -> exported safetensors)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_train_ac import make_episodes, tiny_cfg, train_tiny

from vjepa2_core.hub import load_checkpoint, resolve_checkpoint
from vjepa2_core.hub.loading import make_random_checkpoint
from vjepa2_core.models.conditioning import Conditioning
from vjepa2_core.planning.poses import compose_pose
from vjepa2_core.planning.world_model import WorldModel
from vjepa2_core.training import ac, ac_run
from vjepa2_ros.sim.export import export

STATS = {
    "action_scale": [0.02, 0.01, 0.03, 0.1, 0.2, 0.3, 1.0],
    "state_mean": [1.3, 0.7, 0.5, 0.0, 0.1, -0.1, 0.5],
    "state_scale": [0.1, 0.2, 0.05, 0.5, 0.5, 0.5, 2.0],
}
STATE = torch.tensor([[1.35, 0.72, 0.55, 0.01, 0.02, -0.03, 0.5]])


@pytest.fixture(scope="module")
def wm() -> WorldModel:
    return WorldModel.random("vit_ac_tiny", seed=0)


@pytest.fixture(scope="module")
def reps(wm) -> torch.Tensor:
    image = np.random.default_rng(0).integers(0, 256, size=(64, 64, 3), dtype=np.uint8)
    return wm.encode(image)


def test_absent_means_identity(wm):
    x = torch.randn(3, 7)
    for cfg in (None, {}, {"encoder": {}, "predictor": {}}, {"encoder": {}, "conditioning": None}):
        cond = Conditioning.from_config(cfg)
        assert cond.identity and cond.to_config() is None
        assert cond.actions(x) is x and cond.states(x) is x
    assert wm.conditioning.identity  # a checkpoint without the entry plans exactly as before


def test_config_round_trip_and_the_map():
    cond = Conditioning.from_config({"encoder": {}, "conditioning": STATS})
    assert Conditioning.from_config(cond.to_config()).to_config() == STATS
    a, s = torch.randn(5, 7), torch.randn(5, 7)
    torch.testing.assert_close(cond.actions(a), a / torch.tensor(STATS["action_scale"]))
    expected = (s - torch.tensor(STATS["state_mean"])) / torch.tensor(STATS["state_scale"])
    torch.testing.assert_close(cond.states(s), expected)


@pytest.mark.parametrize(
    "bad, match",
    [
        ({"action_scale": [1.0] * 6}, "7 finite numbers"),
        ({"state_scale": [1.0] * 6 + [0.0]}, "positive"),
        ({"state_mean": [float("nan")] * 7}, "finite"),
        ({"action_scale": [1.0] * 7, "typo": 1}, "unknown keys"),
    ],
)
def test_bad_stats_are_clear_errors(bad, match):
    with pytest.raises(ValueError, match=match):
        Conditioning.from_config({"conditioning": bad})


def test_fit_uses_std_and_keeps_constant_dimensions_at_scale_one():
    gen = torch.Generator().manual_seed(0)
    actions = torch.randn(500, 7, generator=gen) * torch.tensor([0.02, 0.01, 0.03, 0, 0, 0, 0])
    states = torch.randn(400, 7, generator=gen) * 0.1 + torch.tensor([1.3, 0.7, 0.5, 0, 0, 0, 1])
    states[:, 6] = 1.0
    cfg = Conditioning.fit(actions, states).to_config()
    np.testing.assert_allclose(cfg["action_scale"][:3], actions[:, :3].double().std(0).numpy(), rtol=1e-6)
    assert cfg["action_scale"][3:] == [1.0] * 4 and cfg["state_scale"][6] == 1.0
    np.testing.assert_allclose(cfg["state_mean"], states.double().mean(0).numpy(), rtol=1e-6)


def test_predictor_sees_normalised_inputs_and_poses_stay_physical(wm, reps):
    cond = Conditioning.from_config(STATS)
    normed = WorldModel(wm.encoder, wm.predictor, crop_size=64, conditioning=cond)
    actions = torch.tensor([[[0.02, -0.01, 0.015, 0, 0, 0, 0.0], [0.01, 0.02, -0.01, 0, 0, 0, 0.0]]])
    out, states = normed.rollout(reps, STATE, actions)
    # one step = the identity model fed the manually pre-scaled inputs
    manual, _ = wm.rollout(reps, cond.states(STATE), cond.actions(actions[:, :1]))
    torch.testing.assert_close(out[:, :1], manual)
    assert not torch.allclose(out[:, :1], wm.rollout(reps, STATE, actions[:, :1])[0])  # the map changes the output
    # the pose update composes physical states and actions, not the normalised ones
    first = compose_pose(STATE, actions[:, 0])
    torch.testing.assert_close(states[:, 0], first)
    torch.testing.assert_close(states[:, 1], compose_pose(first, actions[:, 1]))
    # the second step sees the normalised physical pose; the uncached path agrees
    manual2 = wm.predictor(
        torch.cat([reps, manual[:, 0]], dim=1), cond.actions(actions), cond.states(torch.stack([STATE, first], 1))
    )[:, -wm.tokens_per_frame :]
    torch.testing.assert_close(out[:, 1], torch.nn.functional.layer_norm(manual2, (manual2.shape[-1],)))
    torch.testing.assert_close(normed.rollout(reps, STATE, actions, cached=False)[0], out, atol=1e-5, rtol=1e-5)


def test_registry_name_keeps_the_files_conditioning(tmp_path):
    ckpt = load_checkpoint(make_random_checkpoint(tmp_path / "r.pt", "vit_ac_tiny"))
    ckpt["model_config"]["conditioning"] = STATS
    config, _, _ = resolve_checkpoint("vit_ac_tiny", ckpt)
    assert config["conditioning"] == STATS
    assert "conditioning" not in resolve_checkpoint("vit_ac_tiny", load_checkpoint(tmp_path / "r.pt"))[0]


def test_training_stores_stats_that_survive_hub_and_export(tmp_path):
    csv_path = make_episodes(tmp_path / "episodes", 6, seed=3)
    cfg = tiny_cfg(csv_path, tmp_path / "run", "meta.max_steps=3", "model.normalize_conditioning=true")
    train_tiny(csv_path, tmp_path / "run", "meta.max_steps=3", "model.normalize_conditioning=true")
    train_ds, _ = ac_run.make_datasets(cfg, None, None)
    expected = ac.fit_conditioning(train_ds).to_config()
    assert expected["action_scale"][:3] != [1.0] * 3  # real statistics of the training episodes
    ckpt = load_checkpoint(tmp_path / "run" / "latest.pt")
    assert ckpt["model_config"]["conditioning"] == expected
    assert WorldModel.from_checkpoint(str(tmp_path / "run" / "latest.pt")).conditioning.to_config() == expected
    info = export(tmp_path / "run" / "latest.pt", tmp_path / "m.safetensors")  # export checks equal rollouts
    assert load_checkpoint(info["path"])["model_config"]["conditioning"] == expected
    assert WorldModel.from_checkpoint(info["path"]).conditioning.to_config() == expected
    # without the flag nothing is stored
    train_tiny(csv_path, tmp_path / "plain", "meta.max_steps=1")
    assert "conditioning" not in load_checkpoint(tmp_path / "plain" / "latest.pt")["model_config"]
