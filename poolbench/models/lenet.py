"""``lenet5``: LeNet-5 (LeCun, Bottou, Bengio & Haffner 1998), pooling stages swappable.

C1 (5x5 conv, 6 maps) -> S2 pool -> C3 (5x5 conv, 16 maps) -> S4 pool -> C5 (5x5 conv, 120)
-> global ``head=`` -> F6 (84) -> output. S2 and S4, the paper's 2x2 "subsampling" layers
(a trainable average), are built from ``pool=``. With ``conv_padding=0`` and 32 px input the
geometry is the paper's (32 -> 28 -> 14 -> 10 -> 5 -> 1); the default ``conv_padding=2`` keeps
maps the size of the input so that 16 px digits work too (16 -> 8 -> 4).
"""

from __future__ import annotations

from torch import nn

from poolbench.core.checks import check_choice, check_int
from poolbench.core.config import PoolSpec
from poolbench.models.blocks import StagedNet, check_widths, conv_norm_act, make_pool
from poolbench.models.registry import register_model

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
    act = ACTIVATIONS[check_choice("activation", activation, ACTIVATIONS, where="lenet5")]
    pad = check_int("conv_padding", conv_padding, 0, 2, where="lenet5")
    hidden = check_int("hidden", hidden, 1, where="lenet5")

    def conv(c_in: int, c_out: int, padding: int) -> nn.Sequential:  # no BatchNorm in 1998
        return conv_norm_act(c_in, c_out, 5, padding=padding, norm=False, act=act)

    stages = [
        nn.Sequential(conv(in_channels, c1, pad), make_pool(pool, c1)),
        nn.Sequential(conv(c1, c3, pad), make_pool(pool, c3)),
        # C5 keeps padding so that any map >= 1 px survives; at the paper's geometry it is 5x5
        # in, 1x1 out, and the global head is the identity.
        conv(c3, c5, 2),
    ]
    model = StagedNet(stages, [c1, c3, c5], head, num_classes, classifier=nn.Identity())
    model.classifier = nn.Sequential(
        nn.Linear(model.head.out_features, hidden), act(), nn.Linear(hidden, num_classes)
    )
    init_weights(model, activation)
    return model


def init_weights(model: nn.Module, activation: str) -> None:
    """Without BatchNorm the start decides whether LeNet trains: with torch's default
    (Kaiming-uniform with a = sqrt(5), a gain of 1/sqrt(3)) the signal shrinks through the five
    layers, and on digits the model ended at 33% test accuracy. ReLU: He et al. 2015's
    N(0, 2 / fan_in); tanh: Glorot & Bengio 2010's uniform with tanh's gain 5/3. Biases start
    at 0. Learned pooling layers keep their own initialisation."""
    from poolbench.pooling.base import GlobalPool, LocalPool

    pooling = (LocalPool, GlobalPool)
    in_pools = {id(p) for m in model.modules() if isinstance(m, pooling) for p in m.parameters()}
    for module in model.modules():
        if not isinstance(module, (nn.Conv2d, nn.Linear)) or id(module.weight) in in_pools:
            continue
        if activation == "relu":
            nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
        else:
            nn.init.xavier_uniform_(module.weight, gain=nn.init.calculate_gain("tanh"))
        nn.init.zeros_(module.bias)
