"""A toy world model with known dynamics, for testing planners without a trained V-JEPA 2 model.

The representation of a state is a fixed random linear map of [x, y, z, gripper] (plus a bias), shaped like patch
tokens [N, D]. The toy therefore has exactly the planner-facing interface of `WorldModel` (`rollout`, `device`,
`tokens_per_frame`, `embed_dim`) but its optimum is known in closed form: the action that reaches the goal pose.
"""

from __future__ import annotations

import torch

from vjepa2_core.planning.poses import compose_pose


class ToyWorldModel:
    """rep(state) = sum_k W_k * [x, y, z, gripper]_k + b, with W [4, N, D] random; rollout uses `compose_pose`."""

    def __init__(self, num_tokens: int = 16, embed_dim: int = 8, seed: int = 0, device: str | torch.device = "cpu"):
        gen = torch.Generator().manual_seed(seed)
        self.device = torch.device(device)
        self.tokens_per_frame = num_tokens
        self.embed_dim = embed_dim
        self.weight = torch.randn(4, num_tokens, embed_dim, generator=gen).to(self.device)
        self.bias = torch.randn(num_tokens, embed_dim, generator=gen).to(self.device)
        self.rollout_calls = 0

    def encode_state(self, states: torch.Tensor) -> torch.Tensor:
        """States [..., 7] -> representations [..., N, D] (the toy's stand-in for encoding a camera image)."""
        states = torch.as_tensor(states, dtype=torch.float32, device=self.device)
        feats = torch.cat([states[..., :3], states[..., 6:7]], dim=-1)
        return torch.einsum("...k,knd->...nd", feats, self.weight) + self.bias

    def rollout(
        self,
        reps: torch.Tensor,
        states: torch.Tensor,
        actions: torch.Tensor,
        cached: bool = True,
        last_only: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(reps [B|1,N,D], states [B|1,7], actions [B,H,7]) -> (pred reps [B,H,N,D], states [B,H,7]).

        The current reps are not needed (the toy's state is fully observed); `cached` has no effect here.
        """
        if actions.ndim != 3 or actions.shape[-1] != 7:
            raise ValueError(f"actions must be [B,H,7], got {tuple(actions.shape)}")
        self.rollout_calls += 1
        state = states.reshape(-1, 7).to(self.device, torch.float32).expand(actions.shape[0], 7)
        out_states = []
        for h in range(actions.shape[1]):
            state = compose_pose(state, actions[:, h])
            out_states.append(state)
        out_states = torch.stack(out_states, dim=1)
        pred = self.encode_state(out_states[:, -1:] if last_only else out_states)
        return pred, out_states
