"""``resnet18``: ResNet-18 (He, Zhang, Ren & Sun 2015) in its CIFAR form, with pooling
wherever a ResNet variant pools.

Which downsampling follows ``pool=``, exactly:

- ``shortcut="pool"`` (default): each stage-entry shortcut (64->128, 128->256, 256->512) is
  ``pool=`` then a 1x1 conv, the ResNet-D shortcut of He et al. 2019 ("Bag of Tricks", there a
  2x2 average pool). ``shortcut="conv"`` is the 2015 paper's projection (1x1 conv, stride 2),
  and then ``pool=`` plays no part at ``stem="cifar"``.
- ``stem="imagenet"``: the 2015 ImageNet stem, 7x7 stride-2 conv then the 3x3 stride-2 max
  pool, which follows ``pool=`` at the paper's window (F=3, S=2, padding 1) unless
  ``pool.F``/``pool.S``/``pool.padding`` are set.
  ``stem="cifar"`` (default) is a 3x3 stride-1 conv and no pool, as for 32 px input.
- The residual branch's first 3x3 conv keeps stride 2 in every variant: it is a convolution,
  not a pool, in both papers.

The residual branch and the shortcut must agree on the map size: the branch gives ceil(W/2)
(3x3 conv, stride 2, padding 1) and a pool floor((W - F + 2P)/S) + 1, so the shortcut pads
its input at the bottom and right (repeating the edge) by the fewest rows and columns, fewer
than the stride, that make the pool give ceil(W/2) (overlapping F=3, S=2 at 32 px: one;
2x2 at an odd size: one). A stride other than 2 fails before training, naming both sizes.
``pool=none`` (no pooling anywhere) makes each stage-entry shortcut the 2015 projection,
a 1x1 conv with stride 2. ``pool=fractional`` is refused with ``shortcut=pool``: its output
side ceil(ratio * W) can only meet the branch's ceil(W/2) at ratio 0.5, where its regions are
all 2 wide and it is plain 2x2 max pooling; it fits the ImageNet stem
(``stem=imagenet shortcut=conv``).
"""

from __future__ import annotations

from torch import Tensor, nn

from poolbench.core.checks import check_choice
from poolbench.core.config import PoolSpec
from poolbench.core.errors import ConfigError, ShapeError
from poolbench.models.blocks import (
    StagedNet,
    check_widths,
    conv_norm_act,
    make_pool,
    pad_to_output,
)
from poolbench.models.registry import register_model

STEM_WINDOW = {"F": 3, "S": 2, "padding": 1}  # He et al. 2015, Table 1: 3x3 max pool, stride 2
FRACTIONAL_SHORTCUT = (
    "its output side ceil(ratio * W) cannot meet the residual branch's ceil(W/2) (at ratio 0.5 "
    "it is plain 2x2 max pooling); it fits the ImageNet stem: stem=imagenet shortcut=conv"
)


def bn_conv(c_in: int, c_out: int, kernel: int, stride: int = 1) -> nn.Sequential:
    return conv_norm_act(c_in, c_out, kernel, stride=stride, act=None)


class BasicBlock(nn.Module):
    """Two 3x3 convs with an identity (or downsampling) shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: int, pool: PoolSpec, shortcut: str) -> None:
        super().__init__()
        self.branch = nn.Sequential(
            bn_conv(c_in, c_out, 3, stride), nn.ReLU(inplace=True), bn_conv(c_out, c_out, 3)
        )
        self.pool: nn.Module | None = None
        if stride == 1 and c_in == c_out:
            self.shortcut: nn.Module = nn.Identity()
        elif shortcut == "conv" or stride == 1 or pool.name == "none":
            self.shortcut = bn_conv(c_in, c_out, 1, stride)
        else:
            self.pool = make_pool(pool, c_in)
            self.shortcut = bn_conv(c_in, c_out, 1)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        out = self.branch(x)
        if self.pool is None:
            return self.relu(out + self.shortcut(x))
        pooled = self.pool(pad_to_output(self.pool, x, out.shape[-2:]))
        skip = self.shortcut(pooled)
        if out.shape[-2:] != skip.shape[-2:]:
            pool = self.pool
            raise ShapeError(
                f"resnet18 shortcut pool {type(pool).__name__}({pool.extra_repr()}) gives "
                f"{skip.shape[-2]}x{skip.shape[-1]} from {x.shape[-2]}x{x.shape[-1]}, the "
                f"stride-2 conv branch gives {out.shape[-2]}x{out.shape[-1]} = ceil(W/2) "
                f"(pool output side = floor((W1 - F + 2P)/S) + 1; the shortcut pads fewer than S "
                f"rows: use S=2)"
            )
        return self.relu(out + skip)


@register_model(
    "resnet18",
    description="CIFAR-style ResNet-18; ResNet-D shortcut pools (ImageNet stem pool) follow pool=",
    limits={"pool=fractional as shortcut": FRACTIONAL_SHORTCUT},
)
def resnet18(
    num_classes: int,
    in_channels: int,
    pool: PoolSpec,
    head: PoolSpec,
    widths: tuple[int, int, int, int] = (64, 128, 256, 512),
    stem: str = "cifar",
    shortcut: str = "pool",
) -> StagedNet:
    """ResNet-18: stem, four stages of two basic blocks at ``widths``."""
    widths = check_widths("resnet18", widths, count=4)
    check_choice("stem", stem, ("cifar", "imagenet"), where="resnet18")
    check_choice("shortcut", shortcut, ("pool", "conv"), where="resnet18")
    if shortcut == "pool" and pool.name == "fractional":
        raise ConfigError(f"resnet18 with pool=fractional: {FRACTIONAL_SHORTCUT}")
    if stem == "cifar":
        stem_layers = nn.Sequential(bn_conv(in_channels, widths[0], 3), nn.ReLU(inplace=True))
    else:
        stem_layers = nn.Sequential(
            bn_conv(in_channels, widths[0], 7, stride=2),
            nn.ReLU(inplace=True),
            make_pool(pool, widths[0], **STEM_WINDOW),
        )
    stages: list[nn.Module] = [stem_layers]
    c_in = widths[0]
    for i, width in enumerate(widths):
        stride = 1 if i == 0 else 2
        stages.append(
            nn.Sequential(
                BasicBlock(c_in, width, stride, pool, shortcut),
                BasicBlock(width, width, 1, pool, shortcut),
            )
        )
        c_in = width
    return StagedNet(stages, [widths[0], *widths], head, num_classes)
