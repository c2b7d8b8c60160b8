"""``lenet5``: LeNet-5 (LeCun, Bottou, Bengio & Haffner 1998), pooling stages swappable.

C1 (5x5 conv, 6 maps) -> S2 pool -> C3 (5x5 conv, 16 maps) -> S4 pool -> C5 (5x5 conv, 120)
-> global ``head=`` -> F6 (84) -> output. S2 and S4, the paper's 2x2 "subsampling" layers
(a trainable average), are built from ``pool=``. With ``conv_padding=0`` and 32 px input the
geometry is the paper's (32 -> 28 -> 14 -> 10 -> 5 -> 1); the default ``conv_padding=2`` keeps
maps the size of the input so that 16 px digits work too (16 -> 8 -> 4).
"""

from __future__ import annotations

from torch import nn

from poolbench.config import PoolSpec
from poolbench.errors import ConfigError
from poolbench.models import register_model
from poolbench.models.vgg import StagedNet, check_widths, make_pool

ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU}


@register_model("lenet5", description="LeNet-5 (LeCun et al. 1998): S2 and S4 follow pool=")
def lenet5(
    num_classes: int,
    in_channels: int,
    pool: PoolSpec,
    head: PoolSpec,
    widths: tuple[int, int, int] = (6, 16, 120),
    hidden: int = 84,
    conv_padding: int = 2,
    activation: str = "relu",
) -> StagedNet:
    """LeNet-5 with ``widths`` = (C1, C3, C5) maps and an F6 layer of ``hidden`` units."""
    c1, c3, c5 = check_widths("lenet5", widths, count=3)
    if activation not in ACTIVATIONS:
        raise ConfigError(
            f"lenet5: expected activation to be one of {', '.join(ACTIVATIONS)}, got {activation!r}"
        )
    if isinstance(conv_padding, bool) or conv_padding not in (0, 1, 2):
        raise ConfigError(f"lenet5: expected conv_padding in 0..2, got {conv_padding!r}")
    if isinstance(hidden, bool) or not isinstance(hidden, int) or hidden < 1:
        raise ConfigError(f"lenet5: expected hidden to be an integer >= 1, got {hidden!r}")
    act = ACTIVATIONS[activation]
    pad = conv_padding
    stages = [
        nn.Sequential(nn.Conv2d(in_channels, c1, 5, padding=pad), act(), make_pool(pool, c1)),
        nn.Sequential(nn.Conv2d(c1, c3, 5, padding=pad), act(), make_pool(pool, c3)),
        # C5 keeps padding so that any map >= 1 px survives; at the paper's geometry it is 5x5
        # in, 1x1 out, and the global head is the identity.
        nn.Sequential(nn.Conv2d(c3, c5, 5, padding=2), act()),
    ]
    model = StagedNet(stages, [c1, c3, c5], head, num_classes, classifier=nn.Identity())
    model.classifier = nn.Sequential(
        nn.Linear(model.head.out_features, hidden), act(), nn.Linear(hidden, num_classes)
    )
    return model
