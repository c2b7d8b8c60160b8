"""``allcnn``: the Model C family of Springenberg, Dosovitskiy, Brox & Riedmiller 2014,
"Striving for Simplicity: The All Convolutional Net" (ICLR 2015 workshop).

``variant`` picks the row of the paper's Table 2 (Model C column):

- ``base`` (Model C): 3x3 conv, 3x3 conv, pool; 3x3 conv, 3x3 conv, pool; then 3x3, 1x1, 1x1.
- ``strided`` (Strided-CNN-C): no pool; the conv before each pool gets stride 2.
- ``convpool`` (ConvPool-C): an extra 3x3 conv before each pool (same depth as All-CNN-C,
  pooling kept): the control that separates "more layers" from "no pooling".
- ``allcnn`` (All-CNN-C): each pool replaced by a 3x3 conv with stride 2.

The paper pools with F=3, S=2 ("3x3 max-pooling stride 2"); as for ``alexnet_small`` that is
the model's default window (``{F: 3, S: 2} | pool.params``, and ``configs/model/allcnn.yaml``
sets ``pool.F``/``pool.S`` so that the command line still wins). ``pool=`` only matters for
``base`` and ``convpool``. Deviations: padding 1 on every 3x3 conv (so 16 px input works),
BatchNorm after each conv (the paper trains without it, with dropout and a tuned lr), and the
last 1x1 conv keeps ``width2`` maps and feeds ``head=`` and a linear classifier instead of
giving 10 maps to a fixed global average.
"""

from __future__ import annotations

from torch import nn

from poolbench.config import PoolSpec
from poolbench.errors import ConfigError
from poolbench.models import register_model
from poolbench.models.vgg import StagedNet, check_dropout, make_pool

VARIANTS = ("base", "strided", "convpool", "allcnn")
PAPER_WINDOW = {"F": 3, "S": 2}


def conv(c_in: int, c_out: int, kernel: int = 3, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


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
    if variant not in VARIANTS:
        raise ConfigError(
            f"allcnn: expected variant to be one of {', '.join(VARIANTS)}, got {variant!r}"
        )
    for key, value in (("width1", width1), ("width2", width2)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"allcnn: expected {key} to be an integer >= 1, got {value!r}")
    check_dropout("allcnn", dropout)
    stages = [
        block(variant, in_channels, width1, pool),
        block(variant, width1, width2, pool),
        nn.Sequential(conv(width2, width2), conv(width2, width2, 1), conv(width2, width2, 1)),
    ]
    return StagedNet(stages, [width1, width2, width2], head, num_classes, dropout)
