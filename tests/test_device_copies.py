"""No host-to-device copy inside a plan: counted on the CPU by watching the calls that would copy on a GPU.

On CUDA a copy from the host (a `.to(device)` of a CPU tensor, `torch.tensor(data, device=...)`) blocks the
planning loop. Here every call that names a device, every tensor built from Python/numpy data and every float64
source is recorded (on the CPU they are no-ops or cheap, on a GPU each is a blocking upload), so a call added per
rollout step, per CEM iteration or per image shows up as a count that grows with the steps.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.overrides import TorchFunctionMode

from vjepa2_core.data.transforms import ac_preprocess
from vjepa2_core.models.conditioning import Conditioning
from vjepa2_core.planning.cem import CEMConfig, CEMPlanner
from vjepa2_core.planning.world_model import WorldModel

STATS = Conditioning([0.02] * 7, [0.4, 0.0, 0.3, 0.0, 0.0, 0.0, 0.5], [0.1] * 7)  # a project-trained model's map
_MOVES = (torch.Tensor.to, torch.Tensor.cuda, torch.Tensor.copy_)
_FROM_DATA = (torch.tensor, torch.as_tensor, torch.from_numpy)


def _names_device(args: tuple, kwargs: dict) -> bool:
    targets = list(args[1:]) + [kwargs.get("device"), kwargs.get("other")]
    return any(isinstance(t, (torch.device, str, torch.Tensor)) for t in targets)


class HostCopies(TorchFunctionMode):
    """Records (what, source dtype) of every call that may cross from the host to a GPU: moves that name a device
    (`.to(device)`, `.cuda()`), copies and conversions from float64 (host-side statistics) and tensors built from
    Python or numpy data. `host_data` lists the last two kinds: inside a plan there must be none at all."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, torch.dtype | None]] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        src = args[1] if func is torch.Tensor.copy_ else (args[0] if args else None)
        dtype = src.dtype if isinstance(src, torch.Tensor) else None
        if func in _MOVES and (
            dtype == torch.float64 or (func is not torch.Tensor.copy_ and _names_device(args, kwargs))
        ):
            self.calls.append((func.__name__, dtype))
        elif func in _FROM_DATA:
            self.calls.append((func.__name__, None))
        return func(*args, **kwargs)

    @property
    def host_data(self) -> list[tuple[str, torch.dtype | None]]:
        return [c for c in self.calls if c[1] == torch.float64 or c[0] in ("tensor", "as_tensor", "from_numpy")]


@pytest.fixture(scope="module")
def wm() -> WorldModel:
    return WorldModel.random("vit_ac_tiny", seed=0, conditioning=STATS)


def _rollout_calls(wm: WorldModel, horizon: int) -> list:
    reps, state = torch.zeros(1, wm.tokens_per_frame, 96), torch.zeros(1, 7)
    actions = torch.full((5, horizon, 7), 0.01)
    with HostCopies() as seen:
        wm.rollout(reps, state, actions)
    return seen.calls


@pytest.mark.parametrize("cached", [True, False])
def test_rollout_steps_copy_nothing_from_the_host(wm, cached):
    one, five = _rollout_calls(wm, 1), _rollout_calls(wm, 5)
    assert [dtype for _, dtype in five if dtype == torch.float64] == [], five  # the conditioning's stored statistics
    assert len(five) == len(one), (one, five)  # only the rollout's input checks, none per step


def test_a_cem_search_copies_nothing_from_the_host(wm):
    image = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    rep = wm.encode(image)
    planner = CEMPlanner(wm, CEMConfig(horizon=2, samples=12, topk=3, iterations=3))
    gen = torch.Generator().manual_seed(0)
    with HostCopies() as seen:
        planner.search(rep, torch.zeros(1, 7), rep, gen)
    assert seen.host_data == [], seen.calls


def test_images_are_uploaded_as_uint8_and_normalised_on_the_device():
    image = np.random.default_rng(1).integers(0, 256, (1, 80, 96, 3), dtype=np.uint8)
    with HostCopies() as seen:
        x = ac_preprocess(image, 64, device="cpu")
    uploads = [c for c in seen.calls if c[0] == "to"]
    assert uploads == [("to", torch.uint8)], seen.calls  # one upload, a quarter of the float bytes
    assert not [c for c in seen.calls if c[0] == "tensor"], seen.calls  # constants made on the device
    assert x.dtype == torch.float32 and x.shape == (3, 1, 64, 64)
    assert torch.equal(x, ac_preprocess(image, 64))  # the same numbers as without a device


def test_conditioning_constants_are_made_once_per_device_and_dtype():
    cond = Conditioning([0.5] * 7, [1.0] * 7, [2.0] * 7)
    x = torch.ones(3, 7)
    first = cond.constants(x.device, x.dtype)
    assert cond.constants(x.device, x.dtype)[0] is first[0]
    assert torch.allclose(cond.actions(x), x / 0.5) and torch.allclose(cond.states(x), torch.zeros(3, 7))
    assert cond.constants(x.device, torch.float64)[0].dtype == torch.float64  # another dtype: its own copy
