"""Attention heads: ``hopfield`` and ``attention``.

Both treat the H·W positions of the last feature map as a set of tokens and pool them with
softmax attention from learned or computed queries. The scores and the softmax run in float32
with autocast off (logits of a few tens overflow nothing in fp32, but bf16's 8-bit mantissa
makes near-equal scores equal), and the scores are shifted by their maximum inside softmax.

- ``hopfield``: Hopfield pooling (Ramsauer et al. 2020, "Hopfield Networks is All You Need",
  the HopfieldPooling layer). The H·W positions are the stored patterns Y (N, HW, C); the state
  (query) patterns Q (P, d) are learned. One update of the modern Hopfield network,
  Z = softmax(β Q (Y W_K)^T) Y W_K W_V, with β = 1/√d, retrieves P pooled patterns of width d.
  Y is layer-normalised first, as the paper's layers do by default. D = num_patterns·d, where
  d = ``dim`` (default: the input width C).
- ``attention``: CLIP's attention pooling (Radford et al. 2021, "Learning Transferable Visual
  Models From Natural Language Supervision", the ResNet image encoder's last layer). The mean
  of the H·W tokens is prepended as an extra token; a learned positional embedding (one vector
  for the mean token, a ``grid`` x ``grid`` map for the positions, bilinearly resampled to the
  actual H x W) is added; one multi-head attention step with the mean token as the only query
  attends over all HW + 1 tokens; an output projection maps to ``out_dim``. D = out_dim
  (default: C).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F_
from torch import Tensor, nn

from poolbench.core.checks import check_int, check_number
from poolbench.core.errors import ConfigError
from poolbench.pooling.base import GlobalPool
from poolbench.pooling.ops import compute_dtype
from poolbench.pooling.registry import register_pool


def attend(query: Tensor, key: Tensor, value: Tensor, scale: float) -> Tensor:
    """softmax(scale · q kᵀ) v, in float32 whatever the autocast dtype.

    ``query (Tensor[..., Q, d])``, ``key (Tensor[..., T, d])``, ``value (Tensor[..., T, e])``
    -> ``Tensor[..., Q, e]`` in float32 (float64 stays float64).
    """
    with torch.autocast(device_type=query.device.type, enabled=False):
        dtype = compute_dtype(query.dtype)
        scores = scale * query.to(dtype) @ key.to(dtype).transpose(-2, -1)  # (..., Q, T)
        weights = torch.softmax(scores, dim=-1)  # softmax subtracts the row max itself
        return weights @ value.to(dtype)


def hopfield_pool(
    x: Tensor, state: Tensor, w_key: nn.Linear, w_value: nn.Linear, beta: float
) -> Tensor:
    """One Hopfield retrieval step with learned state patterns (Ramsauer et al. 2020).

    ``x (Tensor[N, HW, C])`` stored patterns (already normalised), ``state (Tensor[P, d])``
    -> ``Tensor[N, P, d]``: softmax(β · state · (x W_K)ᵀ) · (x W_K) W_V.
    """
    keys = w_key(x)  # (N, HW, d)
    values = w_value(keys)  # (N, HW, d): the paper's V = Y W_K W_V
    return attend(state.expand(x.shape[0], -1, -1), keys, values, beta)


@register_pool(
    "hopfield",
    kind="global",
    paper="Ramsauer et al. 2020 (Hopfield pooling)",
    learnable=True,
)
class HopfieldPool(GlobalPool):
    """Learned state patterns retrieve from the H·W positions; D = num_patterns·dim."""

    def __init__(
        self,
        channels: int,
        num_patterns: int = 1,
        dim: int | None = None,
        beta: float | None = None,
    ) -> None:
        super().__init__(channels)
        layer = type(self).__name__
        self.num_patterns = check_int("num_patterns", num_patterns, 1, where=layer)
        self.dim = self.channels if dim is None else check_int("dim", dim, 1, where=layer)
        self.beta = (
            1.0 / math.sqrt(self.dim)
            if beta is None
            else check_number("beta", beta, 0, low_open=True, where=layer)
        )
        self.norm = nn.LayerNorm(self.channels)
        self.w_key = nn.Linear(self.channels, self.dim)
        self.w_value = nn.Linear(self.dim, self.dim)
        # Unit-variance queries: with β = 1/√d the initial scores are of order 1.
        self.state = nn.Parameter(torch.randn(self.num_patterns, self.dim))
        self.out_features = self.num_patterns * self.dim

    def forward(self, x: Tensor) -> Tensor:
        tokens = self.norm(x.flatten(2).transpose(1, 2))  # (N, HW, C)
        z = hopfield_pool(tokens, self.state, self.w_key, self.w_value, self.beta)  # (N, P, d)
        return z.flatten(1).to(tokens.dtype)  # (N, P·d)

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, num_patterns={self.num_patterns}, dim={self.dim}, "
            f"beta={self.beta:.3g}"
        )


def resample_positions(pos: Tensor, height: int, width: int) -> Tensor:
    """A ``(C, g, g)`` positional map resampled bilinearly to ``(H·W, C)`` tokens.

    align_corners=False keeps the cells' centres where they are, so resampling to g x g is the
    identity and any other size covers the same field.
    """
    if pos.shape[-2:] != (height, width):
        pos = F_.interpolate(pos[None], size=(height, width), mode="bilinear", align_corners=False)
        pos = pos[0]
    return pos.flatten(1).transpose(0, 1)


@register_pool(
    "attention",
    kind="global",
    paper="Radford et al. 2021 (CLIP attention pooling)",
    learnable=True,
)
class AttentionPool(GlobalPool):
    """Mean token attends over the positions (CLIP); learned positions resampled; D = out_dim."""

    def __init__(
        self, channels: int, heads: int = 1, grid: int = 7, out_dim: int | None = None
    ) -> None:
        super().__init__(channels)
        layer = type(self).__name__
        self.heads = check_int("heads", heads, 1, where=layer)
        if self.channels % self.heads:
            divisors = [h for h in range(1, self.channels + 1) if self.channels % h == 0]
            raise ConfigError(
                f"{layer}: expected heads to divide channels={self.channels} "
                f"(one of {', '.join(map(str, divisors))}), got heads={heads}"
            )
        self.grid = check_int("grid", grid, 1, where=layer)
        self.out_dim = (
            self.channels if out_dim is None else check_int("out_dim", out_dim, 1, where=layer)
        )
        c = self.channels
        # CLIP's initialisation scale for the positional embedding: std 1/√C.
        self.pos_mean = nn.Parameter(torch.randn(c) / math.sqrt(c))
        self.pos_grid = nn.Parameter(torch.randn(c, self.grid, self.grid) / math.sqrt(c))
        self.q_proj = nn.Linear(c, c)
        self.k_proj = nn.Linear(c, c)
        self.v_proj = nn.Linear(c, c)
        self.c_proj = nn.Linear(c, self.out_dim)
        self.out_features = self.out_dim

    def forward(self, x: Tensor) -> Tensor:
        n, c, h, w = x.shape
        tokens = x.flatten(2).transpose(1, 2)  # (N, HW, C)
        tokens = torch.cat([tokens.mean(dim=1, keepdim=True), tokens], dim=1)  # (N, 1+HW, C)
        pos = torch.cat([self.pos_mean[None], resample_positions(self.pos_grid, h, w)])
        tokens = tokens + pos.to(tokens.dtype)
        head_dim = c // self.heads

        def split(t: Tensor) -> Tensor:  # (N, T, C) -> (N, heads, T, C/heads)
            return t.unflatten(-1, (self.heads, head_dim)).transpose(1, 2)

        q = split(self.q_proj(tokens[:, :1]))  # only the mean token asks
        k, v = split(self.k_proj(tokens)), split(self.v_proj(tokens))
        z = attend(q, k, v, 1.0 / math.sqrt(head_dim))  # (N, heads, 1, C/heads)
        z = z.transpose(1, 2).reshape(n, c).to(q.dtype)  # (N, C)
        return self.c_proj(z)  # (N, out_dim)

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, heads={self.heads}, grid={self.grid}, out_dim={self.out_dim}"
        )
