"""Classic window pooling: ``max`` and ``avg``.

- ``max``: window maximum; keeps the argmax "switches" (Zeiler & Fergus 2014, the seeds'
  backward rule: the gradient flows only to the input that won) for unpooling.
- ``avg``: window mean; the gradient is spread evenly, 1/F^2 to each input.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F_
from torch import Tensor

from poolbench.pooling import register_pool
from poolbench.pooling.base import LocalPool


@register_pool("max", kind="local", paper="Ranzato et al. 2007; Jarrett et al. 2009")
class MaxPool(LocalPool):
    """Window maximum; ``return_indices`` keeps the switches for ``unpool``."""

    def __init__(
        self,
        channels: int,
        F: int = 2,
        S: int = 2,
        padding: int = 0,
        ceil_mode: bool = False,
        return_indices: bool = False,
    ) -> None:
        super().__init__(F, S, padding, ceil_mode)
        self.return_indices = bool(return_indices)
        self.switches: Tensor | None = None

    def forward(self, x: Tensor) -> Tensor:
        # (N, C, H, W) -> (N, C, H', W')
        if not self.return_indices:
            return F_.max_pool2d(x, self.F, self.S, self.padding, ceil_mode=self.ceil_mode)
        out, self.switches = F_.max_pool2d(
            x, self.F, self.S, self.padding, ceil_mode=self.ceil_mode, return_indices=True
        )
        return out

    def unpool(self, y: Tensor, output_size: torch.Size | None = None) -> Tensor:
        """Place ``y`` back at the recorded switch positions (zeros elsewhere)."""
        if self.switches is None:
            raise RuntimeError("unpool needs a forward pass with return_indices=True first")
        return F_.max_unpool2d(
            y, self.switches, self.F, self.S, self.padding, output_size=output_size
        )


@register_pool("avg", kind="local", paper="LeCun et al. 1998 (subsampling layers)")
class AvgPool(LocalPool):
    """Window mean (zero padding is not counted in the mean)."""

    def __init__(
        self, channels: int, F: int = 2, S: int = 2, padding: int = 0, ceil_mode: bool = False
    ) -> None:
        super().__init__(F, S, padding, ceil_mode)

    def forward(self, x: Tensor) -> Tensor:
        # (N, C, H, W) -> (N, C, H', W')
        return F_.avg_pool2d(
            x, self.F, self.S, self.padding, ceil_mode=self.ceil_mode, count_include_pad=False
        )
