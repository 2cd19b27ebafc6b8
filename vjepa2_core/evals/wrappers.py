"""Frozen-encoder wrappers that turn evaluation inputs into probe tokens (reference `modelcustom` modules).

`ClipAggregation` runs every temporal segment and spatial view of a batch through the encoder in one call and
regroups the tokens per view, segments concatenated along time, so one probe sees the whole video. `ImageAsVideo`
repeats an image along time for a video encoder. Both can read several `out_layers` (tokens concatenated along
the feature dimension: the multi-level probes).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from vjepa2_core.models.modules import sincos_1d


def _set_out_layers(encoder: nn.Module, out_layers: Sequence[int] | None) -> int:
    """Point the encoder at `out_layers` (or its last layer) and return the probe's token width."""
    depth = len(encoder.blocks)
    if out_layers is not None:
        bad = [i for i in out_layers if not 0 <= i < depth]
        if bad or not out_layers:
            raise ValueError(f"out_layers {list(out_layers)} must be non-empty block indices in [0, {depth})")
        encoder.out_layers = list(out_layers)
        return encoder.embed_dim * len(out_layers)
    return encoder.embed_dim


def _run(encoder: nn.Module, x: Tensor) -> Tensor:
    out = encoder(x)
    return torch.cat(out, dim=-1) if isinstance(out, list) else out


class ClipAggregation(nn.Module):
    """`forward(clips, clip_indices)`: clips[segment][view] [B,3,T,H,W] -> per view [B, segments*T'*S, D].

    The encoder is frozen (no grad, eval mode). With `use_pos_embed`, a fixed 1-D sin-cos table over
    `max_frames // tubelet_size` temporal slots is added, indexed by each segment's frame indices.
    """

    def __init__(
        self,
        encoder: nn.Module,
        tubelet_size: int = 2,
        max_frames: int = 128,
        use_pos_embed: bool = False,
        out_layers: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        self.encoder = encoder.eval().requires_grad_(False)
        self.tubelet_size = tubelet_size
        self.embed_dim = _set_out_layers(encoder, out_layers)
        self.use_pos_embed = use_pos_embed
        self.max_t = max_frames // tubelet_size
        table = sincos_1d(self.embed_dim, torch.arange(self.max_t)).float() if use_pos_embed else torch.zeros(0)
        self.register_buffer("pos_embed", table, persistent=False)

    def train(self, mode: bool = True) -> ClipAggregation:
        super().train(mode)
        self.encoder.eval()  # frozen: dropout/drop-path never on
        return self

    @torch.no_grad()
    def forward(self, clips: Sequence[Sequence[Tensor]], clip_indices: Sequence[Tensor] | None = None) -> list[Tensor]:
        num_segments, num_views = len(clips), len(clips[0])
        if any(len(seg) != num_views for seg in clips):
            raise ValueError(f"every segment needs {num_views} views, got {[len(s) for s in clips]}")
        B, _, T, _, _ = clips[0][0].shape
        # order: segment-major, then view, then batch (one encoder call for everything)
        tokens = _run(self.encoder, torch.cat([torch.cat(list(seg), dim=0) for seg in clips], dim=0))
        t = T // self.tubelet_size
        S, D = tokens.shape[1] // t, tokens.shape[2]
        tokens = tokens.view(num_segments, num_views, B, t, S, D)
        per_view = tokens.permute(1, 2, 0, 3, 4, 5).reshape(num_views, B, num_segments * t * S, D)
        if self.use_pos_embed and clip_indices is not None:
            pos = self._temporal_embedding(clip_indices, S).to(per_view.dtype)
            per_view = per_view + pos.unsqueeze(0)
        return list(per_view.unbind(0))

    def _temporal_embedding(self, clip_indices: Sequence[Tensor], S: int) -> Tensor:
        """[B, segments*T'*S, D]: the table row of every tubelet's first frame index, repeated over space."""
        idx = torch.cat([c[:, :: self.tubelet_size].long() for c in clip_indices], dim=1)
        if int(idx.max()) >= self.max_t or int(idx.min()) < 0:
            raise ValueError(f"frame index {int(idx.max())} outside the {self.max_t}-slot temporal table")
        return self.pos_embed.to(idx.device)[idx].repeat_interleave(S, dim=1)


class ImageAsVideo(nn.Module):
    """Images [B,3,H,W] -> encoder tokens [B, N, D] by repeating each image `img_as_video_nframes` times."""

    def __init__(
        self, encoder: nn.Module, img_as_video_nframes: int = 2, out_layers: Sequence[int] | None = None
    ) -> None:
        super().__init__()
        self.encoder = encoder.eval().requires_grad_(False)
        self.nframes = img_as_video_nframes
        self.embed_dim = _set_out_layers(encoder, out_layers)

    def train(self, mode: bool = True) -> ImageAsVideo:
        super().train(mode)
        self.encoder.eval()
        return self

    @torch.no_grad()
    def forward(self, images: Tensor) -> Tensor:
        if images.ndim != 4:
            raise ValueError(f"ImageAsVideo expects images [B,3,H,W], got {tuple(images.shape)}")
        return _run(self.encoder, images.unsqueeze(2).expand(-1, -1, self.nframes, -1, -1))
