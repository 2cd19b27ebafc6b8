"""AdamW parameter groups (biases and 1-D tensors get no weight decay) and mixed-precision helpers."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable

import torch
from torch import nn

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def param_groups(modules: Iterable[tuple[nn.Module, float]]) -> list[dict]:
    """Reference grouping: per module, {weights with ndim > 1} and {biases and 1-D tensors, wd 0, WD_exclude}.

    `modules` is a list of (module, lr_scale); frozen parameters (requires_grad False) are left out.
    """
    groups = []
    for module, lr_scale in modules:
        decay, no_decay = [], []
        for name, p in module.named_parameters():
            if not p.requires_grad:
                continue
            (no_decay if name.endswith(".bias") or p.ndim == 1 else decay).append(p)
        if decay:
            groups.append({"params": decay, "lr_scale": lr_scale})
        if no_decay:
            groups.append({"params": no_decay, "lr_scale": lr_scale, "WD_exclude": True, "weight_decay": 0.0})
    if not groups:
        raise ValueError("no trainable parameters")
    return groups


def build_adamw(
    modules: Iterable[tuple[nn.Module, float]],
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
) -> torch.optim.AdamW:
    """AdamW over `param_groups`; lr and weight decay are set by the scheduler every step.

    Fused (one kernel for all parameters) when every parameter is on CUDA; PyTorch's default implementation else.
    """
    groups = param_groups(modules)
    on_cuda = all(p.is_cuda for g in groups for p in g["params"])
    return torch.optim.AdamW(groups, betas=betas, eps=eps, **({"fused": True} if on_cuda else {}))


def optimizer_step(loss: torch.Tensor, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler) -> None:
    """One update of a training loop: fresh gradients of `loss` (scaled under fp16/bf16 on CUDA), then the step."""
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """Config dtype -> compute dtype. Low precision only on CUDA: the CPU path trains in fp32."""
    if name not in DTYPES:
        raise ValueError(f"dtype {name!r} not one of {sorted(DTYPES)}")
    return DTYPES[name] if device.type == "cuda" else torch.float32


def autocast(device: torch.device, dtype: torch.dtype) -> contextlib.AbstractContextManager:
    """bf16/fp16 autocast on CUDA, a no-op in fp32."""
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def make_grad_scaler(device: torch.device, dtype: torch.dtype) -> torch.amp.GradScaler:
    """GradScaler enabled under CUDA low precision (as the reference does for bf16), disabled otherwise."""
    return torch.amp.GradScaler(device.type, enabled=device.type == "cuda" and dtype != torch.float32)
