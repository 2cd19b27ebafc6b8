"""check_device: a device this torch cannot use is one clear DeviceError, not a traceback from Module.to."""

from __future__ import annotations

import pytest
import torch

from vjepa2_core.devices import DeviceError, check_device


def test_cpu_is_accepted():
    assert check_device("cpu") == torch.device("cpu")
    assert check_device(torch.device("cpu")).type == "cpu"


@pytest.mark.parametrize("name, match", [("gpu", "not a torch device"), ("", "not a torch device"), ("xla", "not")])
def test_names_that_are_no_usable_device_are_refused(name, match):
    with pytest.raises(DeviceError, match=match):
        check_device(name)


def test_cuda_is_checked_against_this_machine():
    count = torch.cuda.device_count() if torch.backends.cuda.is_built() else 0
    if count:
        assert check_device("cuda").type == "cuda"
        torch.zeros(1, device=check_device(f"cuda:{count - 1}"))
        with pytest.raises(DeviceError, match=f"only {count} GPU"):
            check_device(f"cuda:{count}")
    else:
        with pytest.raises(DeviceError, match="without CUDA|no GPU is visible") as err:
            check_device("cuda:0")
        assert isinstance(err.value, ValueError)
        with pytest.raises((AssertionError, RuntimeError)):  # what the check saves the user from
            torch.nn.Linear(1, 1).to("cuda")
