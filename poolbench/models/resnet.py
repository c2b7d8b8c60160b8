"""``resnet18``: ResNet-18 (He, Zhang, Ren & Sun 2015) in its CIFAR form, with pooling
wherever a ResNet variant pools.

Which downsampling follows ``pool=``, exactly:

- ``shortcut="pool"`` (default): each stage-entry shortcut (64->128, 128->256, 256->512) is
  ``pool=`` then a 1x1 conv, the ResNet-D shortcut of He et al. 2019 ("Bag of Tricks", there a
  2x2 average pool). ``shortcut="conv"`` is the 2015 paper's projection (1x1 conv, stride 2),
  and then ``pool=`` plays no part at ``stem="cifar"``.
- ``stem="imagenet"``: the 2015 ImageNet stem, 7x7 stride-2 conv then the 3x3 stride-2 max
  pool, which follows ``pool=`` (set ``pool.F=3 pool.padding=1`` for the paper's window).
  ``stem="cifar"`` (default) is a 3x3 stride-1 conv and no pool, as for 32 px input.
- The residual branch's first 3x3 conv keeps stride 2 in every variant: it is a convolution,
  not a pool, in both papers.

The residual branch and the shortcut must agree on the map size: the branch gives
ceil(W/2) (3x3 conv, stride 2, padding 1) and a pool gives floor((W - F + 2P)/S) + 1; the
stride is taken from the pool spec, so a stride other than 2 fails before training.
"""

from __future__ import annotations

from torch import Tensor, nn

from poolbench.config import PoolSpec
from poolbench.errors import ConfigError, ShapeError
from poolbench.models import register_model
from poolbench.models.vgg import StagedNet, check_widths, make_pool


def bn_conv(c_in: int, c_out: int, kernel: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(c_out),
    )


class BasicBlock(nn.Module):
    """Two 3x3 convs with an identity (or downsampling) shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: int, pool: PoolSpec, shortcut: str) -> None:
        super().__init__()
        self.branch = nn.Sequential(
            bn_conv(c_in, c_out, 3, stride), nn.ReLU(inplace=True), bn_conv(c_out, c_out, 3)
        )
        if stride == 1 and c_in == c_out:
            self.shortcut: nn.Module = nn.Identity()
        elif shortcut == "conv" or stride == 1:
            self.shortcut = bn_conv(c_in, c_out, 1, stride)
        else:
            self.shortcut = nn.Sequential(make_pool(pool, c_in), bn_conv(c_in, c_out, 1))
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        out = self.branch(x)
        skip = self.shortcut(x)
        if out.shape[-2:] != skip.shape[-2:]:
            pool = self.shortcut[0]
            raise ShapeError(
                f"resnet18 shortcut pool {type(pool).__name__}({pool.extra_repr()}) gives "
                f"{skip.shape[-2]}x{skip.shape[-1]} from {x.shape[-2]}x{x.shape[-1]}, the "
                f"stride-2 conv branch gives {out.shape[-2]}x{out.shape[-1]} = ceil(W/2) "
                f"(pool output side = floor((W1 - F + 2P)/S) + 1; use S=2, and F=3 P=1 for odd W)"
            )
        return self.relu(out + skip)


@register_model(
    "resnet18",
    description="CIFAR-style ResNet-18; ResNet-D shortcut pools (ImageNet stem pool) follow pool=",
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
    if stem not in ("cifar", "imagenet"):
        raise ConfigError(f"resnet18: expected stem to be one of cifar, imagenet, got {stem!r}")
    if shortcut not in ("pool", "conv"):
        raise ConfigError(f"resnet18: expected shortcut to be one of pool, conv, got {shortcut!r}")
    if stem == "cifar":
        stem_layers = nn.Sequential(bn_conv(in_channels, widths[0], 3), nn.ReLU(inplace=True))
    else:
        stem_layers = nn.Sequential(
            bn_conv(in_channels, widths[0], 7, stride=2),
            nn.ReLU(inplace=True),
            make_pool(pool, widths[0]),
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
