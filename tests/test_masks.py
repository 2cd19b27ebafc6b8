"""Multi-block 3-D masks: block sizes, context/target statistics, truncation, options and seeding (spec §4)."""

from __future__ import annotations

import math

import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from vjepa2_core.masks import VJEPA2_MASK_CFGS, MaskConfig, MultiBlockMaskGenerator, MultiSeqMaskCollator, apply_masks

A, B = VJEPA2_MASK_CFGS


def spec_block_size(seed: int, cfg: dict, duration: int, grid: int) -> tuple[int, int, int]:
    """Block size written out from the spec text: three uniform draws from a generator seeded with `seed`."""
    g = torch.Generator().manual_seed(seed)
    u_t, u_s, u_a = (torch.rand(1, generator=g).item() for _ in range(3))
    (t0, t1), (s0, s1), (a0, a1) = cfg["temporal_scale"], cfg["spatial_scale"], cfg["aspect_ratio"]
    t = max(1, int(duration * (t0 + u_t * (t1 - t0))))
    keep = int(grid * grid * (s0 + u_s * (s1 - s0)))
    ar = a0 + u_a * (a1 - a0)
    # Documented deviation: blocks are at least 1x1 (the reference would give empty targets on tiny grids).
    return t, max(1, min(grid, round(math.sqrt(keep * ar)))), max(1, min(grid, round(math.sqrt(keep / ar))))


def coords(idx: torch.Tensor, grid: int) -> torch.Tensor:
    return torch.stack([idx // (grid * grid), (idx % (grid * grid)) // grid, idx % grid], dim=-1)


def test_reference_keep_counts_at_256():
    # spec: A keeps int(256 * 0.15) = 38 patches per block, B int(256 * 0.7) = 179.
    for cfg, keep in ((A, 38), (B, 179)):
        gen = MultiBlockMaskGenerator(cfg, crop_size=256, num_frames=16)
        assert (gen.duration, gen.height, gen.width) == (8, 16, 16)
        for seed in range(20):
            t, h, w = gen.block_size(torch.Generator().manual_seed(seed))
            assert t == 8
            ar_lo, ar_hi = cfg["aspect_ratio"]
            assert round(math.sqrt(keep * ar_lo)) <= h <= round(math.sqrt(keep * ar_hi))
            assert (t, h, w) == spec_block_size(seed, cfg, 8, 16)


def test_single_block_is_an_exact_box_with_the_seeded_size():
    cfg = dict(spatial_scale=(0.1, 0.4), temporal_scale=(0.25, 0.75), aspect_ratio=(0.5, 2.0), num_blocks=1)
    gen = MultiBlockMaskGenerator(cfg, crop_size=128, num_frames=16)
    torch.manual_seed(0)
    for call in range(6):
        ctx, tgt = gen(3)
        t, h, w = spec_block_size(call, cfg, 8, 8)  # call k uses seed k
        assert tgt.shape == (3, t * h * w) and ctx.shape == (3, 8 * 64 - t * h * w)
        for row in tgt:
            c = coords(row, 8)
            extent = (c.max(0).values - c.min(0).values + 1).tolist()
            assert extent == [t, h, w]


@pytest.mark.parametrize("cfg", [A, B], ids=["A", "B"])
def test_context_and_targets_partition_the_grid(cfg):
    gen = MultiBlockMaskGenerator(cfg, crop_size=256, num_frames=16)
    n = 8 * 16 * 16
    torch.manual_seed(1)
    for _ in range(5):
        ctx, tgt = gen(1)  # a batch of one is never truncated
        assert ctx.dtype == tgt.dtype == torch.int64
        assert ctx.shape[1] + tgt.shape[1] == n
        assert torch.equal(torch.sort(torch.cat([ctx[0], tgt[0]])).values, torch.arange(n))
        assert torch.all(ctx[0][1:] > ctx[0][:-1]) and torch.all(tgt[0][1:] > tgt[0][:-1])


def spec_masked_fraction(h: int, w: int, num_blocks: int, grid: int) -> float:
    """Expected masked fraction of a grid x grid map under num_blocks uniformly placed h x w boxes (full time)."""
    total = 0.0
    for i in range(grid):
        p_row = sum(1 for top in range(grid - h + 1) if top <= i < top + h) / (grid - h + 1)
        for j in range(grid):
            p_col = sum(1 for left in range(grid - w + 1) if left <= j < left + w) / (grid - w + 1)
            total += 1 - (1 - p_row * p_col) ** num_blocks
    return total / grid**2


@pytest.mark.parametrize("cfg", [A, B], ids=["A", "B"])
def test_target_ratio_matches_spec_expectation(cfg):
    gen = MultiBlockMaskGenerator(cfg, crop_size=256, num_frames=16)
    torch.manual_seed(2)
    measured, expected = [], []
    for call in range(40):
        ctx, tgt = gen(1)
        _, h, w = spec_block_size(call, cfg, 8, 16)
        measured.append(tgt.shape[1] / 2048)
        expected.append(spec_masked_fraction(h, w, cfg["num_blocks"], 16))
        assert h * w / 256 - 1e-9 <= measured[-1] <= min(1.0, cfg["num_blocks"] * h * w / 256)
    mean_m, mean_e = sum(measured) / 40, sum(expected) / 40
    assert abs(mean_m - mean_e) < 0.03, (mean_m, mean_e)


@pytest.mark.parametrize("cfg", [A, B], ids=["A", "B"])
def test_truncated_batches_stay_disjoint(cfg):
    gen = MultiBlockMaskGenerator(cfg, crop_size=256, num_frames=16)
    torch.manual_seed(3)
    ctx, tgt = gen(4)
    for c, t in zip(ctx, tgt):
        assert not set(c.tolist()) & set(t.tolist())


def test_batch_truncation_to_minimum():
    gen = MultiBlockMaskGenerator(A, crop_size=256, num_frames=16)
    torch.manual_seed(3)
    ctx, tgt = gen(6)
    assert ctx.shape[0] == tgt.shape[0] == 6
    # Each row is the head of that sample's full (ascending) list, so rows differ yet have equal length.
    assert len({tuple(r.tolist()) for r in tgt}) == 6
    assert ctx.shape[1] + tgt.shape[1] <= 2048


def test_options_max_temporal_keep_max_keep_complements_and_inversion():
    base = dict(spatial_scale=(0.2, 0.2), aspect_ratio=(1.0, 1.0), num_blocks=2)
    torch.manual_seed(4)
    ctx, tgt = MultiBlockMaskGenerator({**base, "max_temporal_keep": 0.5}, 64, 16)(4)
    assert int((ctx // 16).max()) < 4  # duration 8 -> context only in the first 4 temporal slots
    ctx, _ = MultiBlockMaskGenerator({**base, "max_keep": 20}, 64, 16)(4)
    assert ctx.shape[1] == 20
    ctx, tgt = MultiBlockMaskGenerator({**base, "max_keep": 20, "full_complement": True}, 64, 16)(4)
    assert ctx.shape[1] + tgt.shape[1] == 128
    ctx, tgt = MultiBlockMaskGenerator({**base, "pred_full_complement": True}, 64, 16)(4)
    assert ctx.shape[1] + tgt.shape[1] == 128
    torch.manual_seed(5)
    a = MultiBlockMaskGenerator(base, 64, 16)(3)
    torch.manual_seed(5)
    b = MultiBlockMaskGenerator({**base, "inv_block": True}, 64, 16)(3)
    assert torch.equal(a[0], b[1]) and torch.equal(a[1], b[0])


def test_masks_are_a_function_of_the_call_index():
    def draw(start):
        coll = MultiSeqMaskCollator(VJEPA2_MASK_CFGS, dataset_fpcs=[16], crop_size=128)
        coll.set_step(start)
        return [coll.generators[16][k](3) for _ in range(3) for k in (0, 1)]

    torch.manual_seed(0)
    first = draw(0)
    torch.manual_seed(123)  # the global RNG plays no part
    again, shifted = draw(0), draw(1)
    for (c1, t1), (c2, t2) in zip(first, again):
        assert torch.equal(c1, c2) and torch.equal(t1, t2)
    # Resuming at call 1 reproduces the second call of the first run, for both generators.
    for (c1, t1), (c2, t2) in zip(first[2:4], shifted[:2]):
        assert torch.equal(c1, c2) and torch.equal(t1, t2)
    assert not torch.equal(first[0][1], first[2][1]) or first[0][1].shape != first[2][1].shape


def _sample(fpc: int, label: int = 0):
    return [torch.zeros(3, fpc, 32, 32)], label, [torch.arange(fpc)]


def test_collator_groups_clip_lengths_and_attaches_every_mask_config():
    coll = MultiSeqMaskCollator(VJEPA2_MASK_CFGS, dataset_fpcs=[16, 4], crop_size=64)
    torch.manual_seed(0)
    out = coll([_sample(4, 1), _sample(16, 2), _sample(16, 3)])
    assert [entry[0][0][0].shape for entry in out] == [(2, 3, 16, 32, 32), (1, 3, 4, 32, 32)]
    batch16, ctxs, tgts = out[0]
    assert batch16[1].tolist() == [2, 3] and batch16[2][0].shape == (2, 16)
    assert len(ctxs) == len(tgts) == 2 and ctxs[0].shape[0] == 2
    assert int(tgts[0].max()) < 8 * 16 and int(out[1][2][0].max()) < 2 * 16
    with pytest.raises(ValueError, match="frames per clip"):
        coll([_sample(8)])


def test_tiny_grid_still_masks_at_least_one_patch():
    ctx, tgt = MultiBlockMaskGenerator(A, crop_size=32, num_frames=4)(2)  # 2x2 grid: int(4 * 0.15) = 0 patches
    assert tgt.shape[1] >= 1 and ctx.shape[1] >= 1


def test_bad_configs_are_rejected_clearly():
    with pytest.raises(ValueError, match="unknown mask config keys"):
        MaskConfig.from_dict({"num_blok": 3})
    with pytest.raises(ValueError, match="spatial_scale"):
        MaskConfig.from_dict({"spatial_scale": [0.8, 0.2]})
    with pytest.raises(ValueError, match="multiple of patch"):
        MultiBlockMaskGenerator(A, crop_size=100)


class _Clips(Dataset):
    def __len__(self):
        return 12

    def __getitem__(self, i):
        return _sample(4, i)


def test_worker_masks_follow_the_batch_index():
    cfg = dict(spatial_scale=(0.05, 0.6), aspect_ratio=(0.5, 2.0), num_blocks=2)
    coll = MultiSeqMaskCollator([cfg], dataset_fpcs=[4], crop_size=64)
    coll.set_step(10)  # e.g. resuming at iteration 10
    loader = DataLoader(_Clips(), batch_size=2, num_workers=2, collate_fn=coll)
    got = [out[0][1][0] for out in loader] + [out[0][2][0] for out in loader]
    # Batch k (built by worker k % 2) gets seed 10 + k, exactly what the main process draws for that call.
    ref = MultiSeqMaskCollator([cfg], dataset_fpcs=[4], crop_size=64).generators[4][0]
    ref.set_step(10)
    expected = [ref(2) for _ in range(6)]
    for k, (ctx, tgt) in enumerate(expected):
        assert torch.equal(got[k], ctx) and torch.equal(got[6 + k], tgt)
        _, h, w = spec_block_size(10 + k, {**MaskConfig().__dict__, **cfg}, 2, 4)
        assert 2 * h * w <= tgt.shape[1] <= 2 * 2 * h * w  # t = duration = 2


def test_apply_masks_gathers_rows_per_mask():
    x = torch.arange(2 * 5 * 3, dtype=torch.float32).view(2, 5, 3)
    m = [torch.tensor([[0, 4], [1, 2]]), torch.tensor([[3, 3], [0, 1]])]
    y = apply_masks(x, m)
    assert y.shape == (4, 2, 3)
    assert torch.equal(y[1, 1], x[1, 2]) and torch.equal(y[2, 0], x[0, 3])
