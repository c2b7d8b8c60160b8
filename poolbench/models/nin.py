"""``nin``: Network in Network (Lin, Chen & Yan 2013).

Three "mlpconv" blocks (a spatial conv followed by two 1x1 convs, i.e. a small MLP shared
over positions), the first two ending in a pool from ``pool=`` (the paper's CIFAR-10 model
uses 3x3 stride-2 pools; as in ``alexnet_small`` that is the model's default window for
every pool that has one, and ``pool.F``/``pool.S`` on the command line win) and dropout.
The last 1x1 conv gives one feature map per class and the global ``head=`` (the paper's
global average pooling) turns them into the logits directly; only a head whose D differs
from the number of classes (e.g. spp) gets a linear layer after it.
"""

from __future__ import annotations

from torch import nn

from poolbench.core.config import PoolSpec
from poolbench.models.blocks import (
    StagedNet,
    check_dropout,
    check_widths,
    conv_norm_act,
    make_pool,
)
from poolbench.models.registry import register_model

PAPER_WINDOW = {"F": 3, "S": 2}


def mlpconv(c_in: int, widths: tuple[int, int, int], kernel: int) -> list[nn.Module]:
    """A spatial conv, then two 1x1 convs (each conv-BN-ReLU)."""
    a, b, c = widths
    return [
        conv_norm_act(cin, cout, k) for cin, cout, k in ((c_in, a, kernel), (a, b, 1), (b, c, 1))
    ]


@register_model(
    "nin", description="Network in Network (Lin et al. 2013): mlpconv blocks, 1x1 convs"
)
def nin(
    num_classes: int,
    in_channels: int,
    pool: PoolSpec,
    head: PoolSpec,
    widths: tuple[int, int, int] = (192, 160, 96),
    dropout: float = 0.5,
) -> StagedNet:
    """NIN for CIFAR-sized input; ``widths`` = the first block's (5x5, 1x1, 1x1) maps."""
    w1, w2, w3 = check_widths("nin", widths, count=3)
    check_dropout("nin", dropout)
    drop = [nn.Dropout(dropout)] if dropout > 0 else []
    stages = [
        nn.Sequential(
            *mlpconv(in_channels, (w1, w2, w3), 5), make_pool(pool, w3, **PAPER_WINDOW), *drop
        ),
        nn.Sequential(*mlpconv(w3, (w1, w1, w1), 5), make_pool(pool, w1, **PAPER_WINDOW), *drop),
        nn.Sequential(*mlpconv(w1, (w1, w1, num_classes), 3)),
    ]
    model = StagedNet(stages, [w3, w1, num_classes], head, num_classes, classifier=nn.Identity())
    if model.head.out_features != num_classes:
        model.classifier = nn.Linear(model.head.out_features, num_classes)
    return model
