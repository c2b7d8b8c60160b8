"""``alexnet_small``: AlexNet (Krizhevsky, Sutskever & Hinton 2012) scaled for 32-64 px input.

Five conv layers (5x5, 5x5, 3x3, 3x3, 3x3) with a pool after the first, second and fifth, as
in AlexNet; then the global ``head=``, dropout and a linear classifier. AlexNet's point about
pooling is *overlapping* windows (F=3, S=2: "z=3, s=2" in section 3.4, which lowered top-1
error by 0.4 points against F=S=2), so that is this model's default geometry.

This window is the model's default for every pool that has one (``pool.F``/``pool.S`` left
unset, as in ``configs/pool/*.yaml``): ``model=alexnet_small pool=avg`` is overlapping average
pooling, ``pool.F=2 pool.S=2`` on the command line wins, and pools without a window
(``none``, ``wavelet``, ``fractional``) ignore it. The record's ``F``/``S`` columns show the
window that ran. LRN is replaced by BatchNorm.
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

OVERLAPPING = {"F": 3, "S": 2}


@register_model(
    "alexnet_small",
    description="AlexNet-style CNN for 32-64 px, overlapping pooling (F=3, S=2) by default",
)
def alexnet_small(
    num_classes: int,
    in_channels: int,
    pool: PoolSpec,
    head: PoolSpec,
    widths: tuple[int, int, int, int, int] = (64, 192, 384, 256, 256),
    dropout: float = 0.5,
) -> StagedNet:
    """AlexNet's five conv layers at ``widths``; pools after conv 1, 2 and 5."""
    w = check_widths("alexnet_small", widths, count=5)
    check_dropout("alexnet_small", dropout)
    stages = [
        nn.Sequential(conv_norm_act(in_channels, w[0], 5), make_pool(pool, w[0], **OVERLAPPING)),
        nn.Sequential(conv_norm_act(w[0], w[1], 5), make_pool(pool, w[1], **OVERLAPPING)),
        nn.Sequential(
            conv_norm_act(w[1], w[2], 3),
            conv_norm_act(w[2], w[3], 3),
            conv_norm_act(w[3], w[4], 3),
            make_pool(pool, w[4], **OVERLAPPING),
        ),
    ]
    return StagedNet(stages, [w[0], w[1], w[4]], head, num_classes, dropout)
