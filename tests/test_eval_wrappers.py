"""ClipAggregation / ImageAsVideo / AnticipativeWrapper: shapes and the segment / view bookkeeping, checked
against running the encoder on each clip separately."""

import pytest
import torch

from vjepa2_core.evals import AnticipativeWrapper, ClipAggregation, ImageAsVideo
from vjepa2_core.hub import build_encoder_and_predictor
from vjepa2_core.models.modules import sincos_1d


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    encoder, predictor = build_encoder_and_predictor("vit_pretrain_tiny", seed=0)
    return encoder, predictor


def _clips(segments, views, b=2, t=4, size=32):
    g = torch.Generator().manual_seed(1)
    return [[torch.randn(b, 3, t, size, size, generator=g) for _ in range(views)] for _ in range(segments)]


def test_segments_concatenate_along_time_per_view(tiny):
    encoder, _ = tiny
    clips = _clips(segments=3, views=2)
    agg = ClipAggregation(encoder, tubelet_size=2)
    out = agg(clips)
    S = (32 // 16) ** 2
    assert len(out) == 2 and out[0].shape == (2, 3 * 2 * S, encoder.embed_dim)
    with torch.no_grad():
        for v in range(2):
            expected = torch.cat([encoder(clips[s][v]) for s in range(3)], dim=1)
            torch.testing.assert_close(out[v], expected, atol=1e-5, rtol=1e-5)
    assert not any(p.requires_grad for p in agg.parameters())
    with pytest.raises(ValueError, match="every segment needs 2 views"):
        agg([clips[0], clips[1][:1]])


def test_temporal_pos_embed_indexed_by_frame_index(tiny):
    encoder, _ = tiny
    clips = _clips(segments=2, views=1, b=1)
    indices = [torch.tensor([[0, 1, 2, 3]]), torch.tensor([[10, 11, 12, 13]])]
    plain = ClipAggregation(encoder)(clips)[0]
    with_pos = ClipAggregation(encoder, max_frames=32, use_pos_embed=True)(clips, indices)[0]
    table = sincos_1d(encoder.embed_dim, torch.arange(16)).float()
    S = 4
    rows = torch.tensor([0, 2, 10, 12]).repeat_interleave(S)  # first frame of every tubelet, repeated over space
    torch.testing.assert_close(with_pos - plain, table[rows].unsqueeze(0), atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="outside the 2-slot"):
        ClipAggregation(encoder, max_frames=4, use_pos_embed=True)(clips, indices)


def test_multilevel_concatenates_layers_and_image_wrapper_repeats_frames(tiny):
    encoder, _ = tiny
    depth = len(encoder.blocks)
    agg = ClipAggregation(encoder, out_layers=[0, depth - 1])
    assert agg.embed_dim == 2 * encoder.embed_dim
    out = agg(_clips(1, 1))[0]
    assert out.shape[-1] == 2 * encoder.embed_dim
    encoder.out_layers = None
    with pytest.raises(ValueError, match="out_layers"):
        ClipAggregation(encoder, out_layers=[depth])
    images = torch.randn(3, 3, 32, 32)
    tokens = ImageAsVideo(encoder, img_as_video_nframes=2)(images)
    with torch.no_grad():
        expected = encoder(images.unsqueeze(2).repeat(1, 1, 2, 1, 1))
    torch.testing.assert_close(tokens, expected)


def test_anticipative_wrapper_appends_predicted_tubelet(tiny):
    encoder, predictor = tiny
    encoder.out_layers = None
    clip = torch.randn(2, 3, 4, 64, 64)
    wrapper = AnticipativeWrapper(encoder, predictor, tubelet_size=2, num_future=1)
    out = wrapper(clip)
    S = 16
    assert out.shape == (2, 3 * S, encoder.embed_dim)
    with torch.no_grad():
        torch.testing.assert_close(out[:, : 2 * S], encoder(clip))
    with pytest.raises(ValueError, match="exceed the predictor"):
        AnticipativeWrapper(encoder, predictor, num_future=predictor.grid[0])(clip)
