"""``allcnn``: the Model C family of Springenberg, Dosovitskiy, Brox & Riedmiller 2014,
"Striving for Simplicity: The All Convolutional Net" (ICLR 2015 workshop).

``variant`` picks the row of the paper's Table 2 (Model C column):

- ``base`` (Model C): 3x3 conv, 3x3 conv, pool; 3x3 conv, 3x3 conv, pool; then 3x3, 1x1, 1x1.
- ``strided`` (Strided-CNN-C): no pool; the conv before each pool gets stride 2.
- ``convpool`` (ConvPool-C): an extra 3x3 conv before each pool (same depth as All-CNN-C,
  pooling kept): the control that separates "more layers" from "no pooling".
- ``allcnn`` (All-CNN-C): each pool replaced by a 3x3 conv with stride 2.

The paper pools with F=3, S=2 ("3x3 max-pooling stride 2"); as for ``alexnet_small`` that is
the model's default window for every pool that has one (``pool.F``/``pool.S`` on the command
line win). ``pool=`` only matters for ``base`` and ``convpool``. Deviations: padding 1 on
every 3x3 conv (so 16 px input works), BatchNorm after each conv (the paper trains without
it, with dropout and a tuned lr), and the last 1x1 conv keeps ``width2`` maps and feeds
``head=`` and a linear classifier instead of giving 10 maps to a fixed global average.
"""

from __future__ import annotations

from torch import nn

from poolbench.core.checks import check_choice, check_int
from poolbench.core.config import PoolSpec
from poolbench.models.blocks import StagedNet, check_dropout, conv_norm_act, make_pool
from poolbench.models.registry import register_model

VARIANTS = ("base", "strided", "convpool", "allcnn")
PAPER_WINDOW = {"F": 3, "S": 2}


def conv(c_in: int, c_out: int, kernel: int = 3, stride: int = 1) -> nn.Sequential:
    return conv_norm_act(c_in, c_out, kernel, stride=stride)


def block(variant: str, c_in: int, width: int, pool: PoolSpec) -> nn.Sequential:
    """One downsampling block of Model C in the given variant."""
    if variant == "base":
        return nn.Sequential(
            conv(c_in, width), conv(width, width), make_pool(pool, width, **PAPER_WINDOW)
        )
    if variant == "strided":
        return nn.Sequential(conv(c_in, width), conv(width, width, stride=2))
    if variant == "convpool":
        return nn.Sequential(
            conv(c_in, width),
            conv(width, width),
            conv(width, width),
            make_pool(pool, width, **PAPER_WINDOW),
        )
    return nn.Sequential(conv(c_in, width), conv(width, width), conv(width, width, stride=2))


@register_model(
    "allcnn",
    description="Springenberg et al. 2014 Model C: variant=base|strided|convpool|allcnn",
)
def allcnn(
    num_classes: int,
    in_channels: int,
    pool: PoolSpec,
    head: PoolSpec,
    variant: str = "base",
    width1: int = 96,
    width2: int = 192,
    dropout: float = 0.0,
) -> StagedNet:
    """Model C (``width1``/``width2`` = the paper's 96/192 maps) in ``variant``."""
    check_choice("variant", variant, VARIANTS, where="allcnn")
    width1 = check_int("width1", width1, 1, where="allcnn")
    width2 = check_int("width2", width2, 1, where="allcnn")
    check_dropout("allcnn", dropout)
    stages = [
        block(variant, in_channels, width1, pool),
        block(variant, width1, width2, pool),
        nn.Sequential(conv(width2, width2), conv(width2, width2, 1), conv(width2, width2, 1)),
    ]
    return StagedNet(stages, [width1, width2, width2], head, num_classes, dropout)
