"""Strip pooling: ``strip`` (Hou, Zhang, Cheng & Feng, "Strip Pooling: Rethinking Spatial
Pooling for Scene Parsing", CVPR 2020, Sec. 3.2, the strip pooling module).

The module averages each row (an H x 1 map, Eq. 1) and each column (1 x W, Eq. 2), modulates
both with a 1D convolution of kernel 3, expands them back to H x W and sums them
(y_ij = y^h_i + y^v_j), then gates the input: z = x * sigmoid(f(y)) with f a 1x1
convolution. The module keeps the shape, so in a downsampling slot it is followed by F x F
max pooling with stride S (the seeds' default pool), giving the output rule
floor((W - F) / S) + 1.

Because f is linear and y is a row term plus a column term, f(y) = f'(y^h) + f'(y^v) + bias
(f' without bias): we apply f to the strips and never build y at full resolution.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F_
from torch import Tensor, nn

from poolbench.core.checks import check_int
from poolbench.pooling.base import LocalPool
from poolbench.pooling.registry import register_pool


def strip_gate(
    x: Tensor,
    row_conv: Tensor,
    col_conv: Tensor,
    fuse: Tensor,
    fuse_bias: Tensor,
) -> Tensor:
    """The strip pooling gate logits f(y) for ``x (Tensor[N, C, H, W])`` -> (N, C, H, W).

    ``row_conv``/``col_conv`` (C, C, 3) are the 1D convolutions (padding 1) along H and W,
    ``fuse`` (C, C) and ``fuse_bias`` (C,) the 1x1 convolution f.
    """
    rows = F_.conv1d(x.mean(dim=3), row_conv, padding=1)  # (N, C, H): y^h
    cols = F_.conv1d(x.mean(dim=2), col_conv, padding=1)  # (N, C, W): y^v
    rows = torch.einsum("dc,nch->ndh", fuse, rows) + fuse_bias.view(1, -1, 1)
    cols = torch.einsum("dc,ncw->ndw", fuse, cols)
    return rows.unsqueeze(3) + cols.unsqueeze(2)


@register_pool(
    "strip",
    kind="local",
    paper="Hou et al. 2020 (CVPR), + F x F max pool",
    learnable=True,
)
class StripPool(LocalPool):
    """x * sigmoid(f(conv1d(row means) + conv1d(column means))), then max pool F x F, stride S."""

    def __init__(self, channels: int, F: int = 2, S: int = 2) -> None:
        super().__init__(F, S)
        self.channels = check_int("channels", channels, 1, where="StripPool")
        row = nn.Conv1d(channels, channels, 3, bias=False)
        col = nn.Conv1d(channels, channels, 3, bias=False)
        fuse = nn.Conv2d(channels, channels, 1)
        self.row_conv = nn.Parameter(row.weight.detach().clone())
        self.col_conv = nn.Parameter(col.weight.detach().clone())
        self.fuse = nn.Parameter(fuse.weight.detach().view(channels, channels).clone())
        self.fuse_bias = nn.Parameter(fuse.bias.detach().clone())

    def forward(self, x: Tensor) -> Tensor:
        logits = strip_gate(x, self.row_conv, self.col_conv, self.fuse, self.fuse_bias)
        gated = x * torch.sigmoid(logits).to(x.dtype)  # (N, C, H, W)
        return F_.max_pool2d(gated, self.F, self.S)  # (N, C, H', W')
