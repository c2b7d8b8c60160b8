"""Global pooling heads: ``global_avg``.

A head maps ``(N, C, H, W) -> (N, D)`` before the classifier (Lin et al. 2013, Network in
Network, introduced global average pooling in place of fully connected layers).
"""

from __future__ import annotations

from torch import Tensor

from poolbench.pooling import register_pool
from poolbench.pooling.base import GlobalPool


@register_pool("global_avg", kind="global", paper="Lin et al. 2013 (Network in Network)")
class GlobalAvgPool(GlobalPool):
    """Mean over all H x W positions; D = C."""

    def forward(self, x: Tensor) -> Tensor:
        # (N, C, H, W) -> (N, C)
        return x.mean(dim=(2, 3))
