"""Named architectures of the released V-JEPA 2 predictors (reference constructor kwargs), used by the hub."""

from __future__ import annotations

_HUB_GRID = dict(img_size=256, patch_size=16, num_frames=64, tubelet_size=2)

# Mask-feature predictors shipped next to each released encoder (torch.hub / HF): 384 wide, 12 blocks, 12 heads,
# 10 mask tokens, RoPE. Keyed by the encoder size name.
_MASK_PREDICTOR = dict(
    predictor_embed_dim=384,
    depth=12,
    num_heads=12,
    use_mask_tokens=True,
    num_mask_tokens=10,
    zero_init_mask_tokens=True,
    use_rope=True,
    uniform_power=True,
)
PREDICTOR_CONFIGS: dict[str, dict] = {
    "vit_large": {**_HUB_GRID, **_MASK_PREDICTOR, "embed_dim": 1024},
    "vit_huge": {**_HUB_GRID, **_MASK_PREDICTOR, "embed_dim": 1280},
    "vit_giant": {**_HUB_GRID, **_MASK_PREDICTOR, "embed_dim": 1408},
    "vit_giant_384": {**_HUB_GRID, **_MASK_PREDICTOR, "embed_dim": 1408, "img_size": 384},
    # test size pairing with vit_tiny (192 wide); not a release
    "vit_tiny": {
        **_HUB_GRID,
        **_MASK_PREDICTOR,
        "embed_dim": 192,
        "predictor_embed_dim": 96,
        "depth": 2,
        "num_heads": 4,
    },
}

# Action-conditioned predictors. "vit_ac_giant" is the released V-JEPA 2-AC predictor (on the 22-head ViT-g).
AC_PREDICTOR_CONFIGS: dict[str, dict] = {
    "vit_ac_giant": dict(
        **_HUB_GRID,
        embed_dim=1408,
        predictor_embed_dim=1024,
        depth=24,
        num_heads=16,
        action_embed_dim=7,
        use_extrinsics=False,
        is_frame_causal=True,
        use_rope=True,
        uniform_power=True,
    ),
}
AC_PREDICTOR_CONFIGS["vjepa2_ac_vit_giant"] = AC_PREDICTOR_CONFIGS["vit_ac_giant"]
# test size pairing with vit_tiny (192 wide); not a release
AC_PREDICTOR_CONFIGS["vit_ac_tiny"] = {
    **AC_PREDICTOR_CONFIGS["vit_ac_giant"],
    "embed_dim": 192,
    "predictor_embed_dim": 96,
    "depth": 2,
    "num_heads": 4,
}
