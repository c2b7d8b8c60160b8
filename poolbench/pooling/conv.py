"""Learned downsampling: ``strided_conv`` (Springenberg, Dosovitskiy, Brox & Riedmiller 2014,
"Striving for simplicity: the all convolutional net").

The All-Convolutional Net replaces each pooling layer by a convolution with the same window
and stride, channels -> channels, whose weights are learned with the rest of the network.

Cost, heavy by design: a dense convolution, C * F * F multiply-adds per output value where
max pooling makes F * F comparisons.
"""

from __future__ import annotations

from torch import Tensor, nn

from poolbench.core.checks import check_bool, check_int
from poolbench.pooling.base import LocalPool
from poolbench.pooling.registry import register_pool


@register_pool(
    "strided_conv", kind="local", paper="Springenberg et al. 2014 (All-CNN)", learnable=True
)
class StridedConvPool(LocalPool):
    """A learned F x F convolution at stride S (channels -> channels) in place of pooling.

    No non-linearity of its own: in poolbench's models the next stage's convolution and
    activation follow. PyTorch's default (Kaiming-uniform) initialisation; zero padding.
    """

    def __init__(
        self, channels: int, F: int = 2, S: int = 2, padding: int = 0, bias: bool = True
    ) -> None:
        super().__init__(F, S, padding)
        layer = type(self).__name__
        channels = check_int("channels", channels, 1, where=layer)
        bias = check_bool("bias", bias, where=layer)
        self.conv = nn.Conv2d(channels, channels, F, S, padding, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        # (N, C, H, W) -> (N, C, H', W')
        return self.conv(x)
