"""``vgg``: a small VGG-style network (Simonyan & Zisserman 2015) for small images.

Stages of 3x3 conv + BatchNorm + ReLU, each ending in a downsampling pool built from
``pool=``; then the ``head=`` global pool and a linear classifier sized from the head's D.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from poolbench.core.checks import check_int, check_int_list
from poolbench.core.config import PoolSpec
from poolbench.models.blocks import (
    StagedNet,
    check_dropout,
    check_widths,
    conv_norm_act,
    make_pool,
)
from poolbench.models.registry import register_model


@register_model(
    "vgg", description="small VGG-style CNN: conv-BN-ReLU stages, each ending in a pool"
)
def vgg(
    num_classes: int,
    in_channels: int,
    pool: PoolSpec,
    head: PoolSpec,
    widths: Sequence[int] = (32, 64, 128),
    convs_per_stage: int | Sequence[int] = 1,
    dropout: float = 0.0,
) -> StagedNet:
    """A VGG-style CNN with ``len(widths)`` pooling stages (depth = number of stages).

    ``convs_per_stage`` is one count for every stage or one per stage: VGG-11's pattern at
    CIFAR width is ``widths=[64,128,256,512,512] convs_per_stage=[1,1,2,2,2]``.
    """
    widths = check_widths("vgg", widths)
    if isinstance(convs_per_stage, int) and not isinstance(convs_per_stage, bool):
        counts = [check_int("convs_per_stage", convs_per_stage, 1, where="vgg")] * len(widths)
    else:
        counts = check_int_list("convs_per_stage", convs_per_stage, 1, len(widths), where="vgg")
    check_dropout("vgg", dropout)
    stages = []
    c_in = in_channels
    for width, count in zip(widths, counts, strict=True):
        layers: list[nn.Module] = []
        for _ in range(count):
            layers.append(conv_norm_act(c_in, width))
            c_in = width
        layers.append(make_pool(pool, width))
        stages.append(nn.Sequential(*layers))
    return StagedNet(stages, widths, head, num_classes, dropout)
