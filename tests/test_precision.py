"""precision="auto": bf16 on CUDA GPUs with bf16 matmuls, fp32 elsewhere; TF32 for fp32 on CUDA, inside the model only.

The GPU's properties are faked (torch.cuda's capability queries); the TF32 scope is checked on a CPU model told that
it runs on a GPU in fp32, by reading the matmul precision from inside its predictor.
"""

from __future__ import annotations

import pytest
import torch

from vjepa2_core.planning.world_model import WorldModel


@pytest.mark.parametrize(
    "capability, has_bf16, expected",
    [((9, 0), True, "bf16"), ((8, 6), True, "bf16"), ((7, 5), False, "fp32")],
)
def test_auto_precision_follows_the_gpu(monkeypatch, capability, has_bf16, expected):
    from vjepa2_core.planning.world_model import DEFAULT_PRECISION, resolve_precision

    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: has_bf16)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Tesla T4")
    assert DEFAULT_PRECISION == "auto"
    assert resolve_precision("auto", "cuda:0") == expected
    assert resolve_precision("auto", "cpu") == "fp32"  # the CPU keeps the reference numerics
    assert resolve_precision("fp32", "cuda:0") == "fp32"
    if expected == "fp32":
        with pytest.raises(ValueError, match="Tesla T4 .* has no bf16 matmuls"):
            resolve_precision("bf16", "cuda:0")
    else:
        assert resolve_precision("bf16", "cuda:0") == "bf16"


def test_tf32_is_set_inside_the_models_calls_only():
    wm = WorldModel.random("vit_ac_tiny", seed=0)
    assert wm.precision == "fp32" and wm.tf32 is False  # the CPU: nothing changes
    wm.tf32 = True  # what fp32 on a CUDA device sets
    seen = []
    forward_frame = wm.predictor.forward_frame

    def spy(*args, **kwargs):
        seen.append(torch.get_float32_matmul_precision())
        return forward_frame(*args, **kwargs)

    wm.predictor.forward_frame = spy
    before = torch.get_float32_matmul_precision()
    wm.rollout(torch.zeros(1, wm.tokens_per_frame, 96), torch.zeros(1, 7), torch.zeros(3, 2, 7))
    assert seen == ["high", "high"]  # TF32 matmuls in every step
    assert torch.get_float32_matmul_precision() == before  # and the process-wide setting is left as it was
