"""`train_step_report`: the training-step measurement `bench/gpu_check.py` runs, checked here on the CPU."""

from __future__ import annotations

import math
import subprocess
import sys

import torch

from vjepa2_core.training.gpu_steps import STEP_KEYS, TINY_BATCH, train_step_report


def test_tiny_train_step_report_has_every_field():
    report = train_step_report(torch.device("cpu"), tiny=True)
    assert set(report) == {"device", "model", "ac_predictor", "encoder_finetune"}
    assert (report["device"], report["model"]) == ("cpu", "vit_ac_tiny")
    pred, enc = report["ac_predictor"], report["encoder_finetune"]
    for step in (pred, enc):
        assert tuple(step) == STEP_KEYS
        assert step["error"] is None
        assert (step["batch_clips"], step["frames_per_clip"]) == TINY_BATCH
        assert step["loss_finite"] and math.isfinite(step["loss"]) and step["loss"] > 0
        assert step["seconds_per_step"] > 0 and len(step["step_seconds"]) == 4
        assert step["seconds_per_step"] in step["step_seconds"][1:]  # the median of the steps after the warm-up
        assert step["activation_checkpointing"] and step["dtype"] == "float32"  # the CPU trains in fp32
        assert step["optimizer"] == "AdamW"  # fused only on CUDA
        assert step["peak_memory_gib"] is None and "CUDA" in step["peak_memory_note"]
    # the fine-tuning step trains the encoder too: more parameters than the predictor alone
    assert enc["trainable_params"] > pred["trainable_params"] > 0


def test_imports_without_tensordict_or_rosbags():
    """The GPU image has neither: importing the module with both blocked must work."""
    code = (
        "import sys\n"
        "sys.modules['tensordict'] = None\n"
        "sys.modules['rosbags'] = None\n"
        "from vjepa2_core.training.gpu_steps import train_step_report\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr
