"""``inception``: a small GoogLeNet-style network (Szegedy et al. 2014, "Going Deeper with
Convolutions") whose inception blocks' pooling branch follows ``pool=``.

Each inception block concatenates four branches: 1x1; 1x1 -> 3x3; 1x1 -> 5x5; and
pool -> 1x1. GoogLeNet's pooling branch is a 3x3 max pool with stride 1 and padding 1, which
keeps the map size so the branches can be concatenated: here that branch is ``pool=`` with
F=3, S=1, padding=1 forced (the other pool parameters, such as ``p``, pass through). Between
blocks the map is downsampled by ``pool=`` as given (GoogLeNet: 3x3 stride-2 max pools).

Layout for small input: a 3x3 stem + pool, two inception blocks + pool, two inception
blocks, then ``head=`` and a linear classifier (16 px: 16 -> 8 -> 4; 32 px: 32 -> 16 -> 8).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from poolbench.config import PoolSpec
from poolbench.errors import ConfigError
from poolbench.models import register_model
from poolbench.models.vgg import StagedNet, check_dropout, conv_bn_relu, make_pool

# The pooling branch must keep the map size: F=3, S=1, P=1 gives floor((W - 3 + 2)/1) + 1 = W.
BRANCH_WINDOW = {"F": 3, "S": 1, "padding": 1}


def conv1x1(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU())


class InceptionBlock(nn.Module):
    """Four parallel branches concatenated on channels: ``width * 3`` maps out."""

    def __init__(self, c_in: int, width: int, pool: PoolSpec) -> None:
        super().__init__()
        half, quarter = max(1, width // 2), max(1, width // 4)
        self.branch1 = conv1x1(c_in, width)
        self.branch3 = nn.Sequential(conv1x1(c_in, half), conv_bn_relu(half, width))
        self.branch5 = nn.Sequential(
            conv1x1(c_in, quarter),
            nn.Conv2d(quarter, half, 5, padding=2, bias=False),
            nn.BatchNorm2d(half),
            nn.ReLU(),
        )
        # The branch geometry is fixed by the concatenation; pool.F/S are for downsampling.
        branch_pool = make_pool(PoolSpec(pool.name, {**pool.params, **BRANCH_WINDOW}), c_in)
        self.branch_pool = nn.Sequential(branch_pool, conv1x1(c_in, half))
        self.out_channels = width + width + half + half

    def forward(self, x: Tensor) -> Tensor:
        branches = (self.branch1, self.branch3, self.branch5, self.branch_pool)
        return torch.cat([b(x) for b in branches], dim=1)  # (N, out_channels, H, W)


@register_model(
    "inception", description="small GoogLeNet-style net; the inception pooling branch follows pool="
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
    if isinstance(width, bool) or not isinstance(width, int) or width < 4:
        raise ConfigError(f"inception: expected width to be an integer >= 4, got {width!r}")
    check_dropout("inception", dropout)
    stem = nn.Sequential(conv_bn_relu(in_channels, width), make_pool(pool, width))
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
