"""``spp_net``: conv stages + a spatial pyramid pooling head (He, Zhang, Ren & Sun 2014,
"Spatial Pyramid Pooling in Deep Convolutional Networks for Visual Recognition").

SPP pools the last feature map into a fixed pyramid of bins (levels 1, 2, 4: 1 + 4 + 16 = 21
bins per channel, D = 21C), so the classifier's input size no longer depends on the image
size and the network takes any input at least as large as its pools need. The conv stages
downsample with ``pool=``; the head is ``head=``, which must be ``spp``
(``configs/model/spp_net.yaml`` selects it).
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from poolbench.core.config import PoolSpec
from poolbench.core.errors import ConfigError
from poolbench.models.blocks import (
    StagedNet,
    check_dropout,
    check_widths,
    conv_norm_act,
    make_pool,
)
from poolbench.models.registry import register_model


@register_model(
    "spp_net",
    description="conv stages + spatial pyramid pooling head (He et al. 2014): any input size",
    limits={"head= other than spp": "the model is defined by its pyramid head"},
)
def spp_net(
    num_classes: int,
    in_channels: int,
    pool: PoolSpec,
    head: PoolSpec,
    widths: Sequence[int] = (32, 64, 128),
    dropout: float = 0.0,
) -> StagedNet:
    """Conv-BN-ReLU stages at ``widths`` (a pool after all but the last), then the SPP head."""
    if head.name != "spp":
        raise ConfigError(
            f"spp_net: expected head=spp (the model is defined by its pyramid head), got "
            f"head={head.name}; use model=vgg to pair these stages with other heads"
        )
    widths = check_widths("spp_net", widths)
    check_dropout("spp_net", dropout)
    stages = []
    c_in = in_channels
    for i, width in enumerate(widths):
        layers: list[nn.Module] = [conv_norm_act(c_in, width), conv_norm_act(width, width)]
        # The last stage keeps its resolution for the pyramid's finest level.
        if i < len(widths) - 1:
            layers.append(make_pool(pool, width))
        stages.append(nn.Sequential(*layers))
        c_in = width
    return StagedNet(stages, widths, head, num_classes, dropout)
