"""``inception``: a small GoogLeNet-style network (Szegedy et al. 2014, "Going Deeper with
Convolutions") whose inception blocks' pooling branch follows ``pool=``.

Each inception block concatenates four branches: 1x1; 1x1 -> 3x3; 1x1 -> 5x5; and
pool -> 1x1. GoogLeNet's pooling branch is a 3x3 max pool with stride 1 and padding 1, which
keeps the map size so the branches can be concatenated: here that branch is ``pool=`` at
F=3, S=1, padding=1 (the other pool parameters, such as ``p``, pass through; a pool without
padding of its own gets replicate padding, see :class:`~poolbench.models.blocks.PaddedPool`).
``pool=none`` makes the branch the identity. A pool without a window cannot keep the size
(``wavelet`` halves each side, ``fractional`` shrinks by its ratio): with those the branch
keeps GoogLeNet's own 3x3/1 max pool, and the pool is used between the blocks only. Between
blocks the map is downsampled by ``pool=`` as given (GoogLeNet: 3x3 stride-2 max pools).

Layout for small input: a 3x3 stem + pool, two inception blocks + pool, two inception
blocks, then ``head=`` and a linear classifier (16 px: 16 -> 8 -> 4; 32 px: 32 -> 16 -> 8).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from poolbench.core.checks import check_int
from poolbench.core.config import PoolSpec
from poolbench.models.blocks import (
    FIXED,
    StagedNet,
    check_dropout,
    conv_norm_act,
    fixed_window_pool,
    make_pool,
)
from poolbench.models.registry import register_model
from poolbench.pooling import create_for_slot

# The pooling branch must keep the map size: F=3, S=1, P=1 gives floor((W - 3 + 2)/1) + 1 = W.
BRANCH_WINDOW = {"F": 3, "S": 1, "padding": 1}
WINDOWLESS_BRANCH = (
    "no window, so they cannot keep the pooling branch's size: GoogLeNet's 3x3/1 max stands "
    "in there; between the blocks pool= runs as given"
)


def branch_pool(pool: PoolSpec, channels: int) -> nn.Module:
    """``pool=`` at the size-keeping branch window, or GoogLeNet's max pool (see module)."""
    module = fixed_window_pool(pool, channels, **BRANCH_WINDOW)
    if module is None:
        module = create_for_slot("max", "local", channels, **BRANCH_WINDOW)
        module.slot = FIXED
    return module


class InceptionBlock(nn.Module):
    """Four parallel branches concatenated on channels: ``width * 3`` maps out."""

    def __init__(self, c_in: int, width: int, pool: PoolSpec) -> None:
        super().__init__()
        half, quarter = max(1, width // 2), max(1, width // 4)
        self.branch1 = conv_norm_act(c_in, width, 1)
        self.branch3 = nn.Sequential(conv_norm_act(c_in, half, 1), conv_norm_act(half, width))
        self.branch5 = nn.Sequential(
            conv_norm_act(c_in, quarter, 1), conv_norm_act(quarter, half, 5)
        )
        self.branch_pool = nn.Sequential(branch_pool(pool, c_in), conv_norm_act(c_in, half, 1))
        self.out_channels = width + width + half + half

    def forward(self, x: Tensor) -> Tensor:
        branches = (self.branch1, self.branch3, self.branch5, self.branch_pool)
        return torch.cat([b(x) for b in branches], dim=1)  # (N, out_channels, H, W)


@register_model(
    "inception",
    description="small GoogLeNet-style net; the inception pooling branch follows pool=",
    limits={"pool=wavelet, fractional in the branch": WINDOWLESS_BRANCH},
)
def inception(
    num_classes: int,
    in_channels: int,
    pool: PoolSpec,
    head: PoolSpec,
    width: int = 32,
    dropout: float = 0.0,
) -> StagedNet:
    """Stem (``width`` maps), two blocks of ``width``, two of ``2 * width`` branch maps."""
    width = check_int("width", width, 4, where="inception")
    check_dropout("inception", dropout)
    stem = nn.Sequential(conv_norm_act(in_channels, width), make_pool(pool, width))
    a = InceptionBlock(width, width, pool)
    b = InceptionBlock(a.out_channels, width, pool)
    c = InceptionBlock(b.out_channels, 2 * width, pool)
    d = InceptionBlock(c.out_channels, 2 * width, pool)
    stages = [
        stem,
        nn.Sequential(a, b, make_pool(pool, b.out_channels)),
        nn.Sequential(c, d),
    ]
    return StagedNet(stages, [width, b.out_channels, d.out_channels], head, num_classes, dropout)
