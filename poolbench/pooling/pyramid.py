"""Pyramid heads: ``spp`` and ``adaptive_feature``.

- ``spp``: spatial pyramid pooling (He, Zhang, Ren & Sun 2014, "Spatial Pyramid Pooling in
  Deep Convolutional Networks for Visual Recognition"). Each level l splits the map into an
  l x l grid of bins and pools each bin (max in the paper; avg optional); the bins of every
  level are concatenated, so D = C·Σ l² whatever the input size.

  The paper sizes bins with a pooling window win = ceil(a/n) and stride floor(a/n) for an a x a
  map and n x n bins. That gives floor((a - win)/stride) + 1 windows, which is not n for some
  sizes (a = 7, n = 4: win 2, stride 1, 6 windows) and is undefined when a < n (stride 0). We
  use the adaptive formulation instead: bin i along a side covers [floor(i·a/n), ceil((i+1)·a/n)),
  exactly n bins for every a >= 1 (bins repeat pixels when a < n), as ``adaptive_max_pool2d``.

- ``adaptive_feature``: PANet's adaptive feature pooling (Liu, Qi, Qin, Shi & Jia 2018, "Path
  Aggregation Network for Instance Segmentation"), used here on whole images instead of
  proposals: the feature map of *every* stage is pooled to the same grid (adaptive max), passed
  through its own learned layer that maps it to a common width (a 1x1 convolution, i.e. a linear
  layer per grid cell), and the stages are fused by an element-wise max, so each output feature
  comes from whichever level responds most. D = width·h·w.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F_
from torch import Tensor, nn

from poolbench.core.checks import check_choice, check_int, check_int_list
from poolbench.core.errors import ShapeError
from poolbench.pooling.base import GlobalPool
from poolbench.pooling.global_ import parse_grid
from poolbench.pooling.registry import register_pool

SPP_MODES = ("max", "avg")


def spatial_pyramid_pool(x: Tensor, levels: Sequence[int], mode: str = "max") -> Tensor:
    """Spatial pyramid pooling with adaptive bins (He et al. 2014).

    ``x (Tensor[N, C, H, W]) -> Tensor[N, C·Σ l²]``: for each level l (in order), bin (i, j)
    pools rows [floor(i·H/l), ceil((i+1)·H/l)) and columns [floor(j·W/l), ceil((j+1)·W/l));
    each level's (N, C, l, l) output is flattened channel-major, then the levels are
    concatenated. Works for every H, W >= 1, including maps smaller than the finest level.
    """
    pool = F_.adaptive_max_pool2d if mode == "max" else F_.adaptive_avg_pool2d
    return torch.cat([pool(x, level).flatten(1) for level in levels], dim=1)


@register_pool("spp", kind="global", paper="He et al. 2014 (SPP-net)")
class SpatialPyramidPool(GlobalPool):
    """Pool an l x l grid of adaptive bins for each level and concatenate; D = C·Σ l²."""

    def __init__(self, channels: int, levels: Sequence[int] = (1, 2, 4), mode: str = "max") -> None:
        super().__init__(channels)
        layer = type(self).__name__
        self.levels = tuple(check_int_list("levels", levels, 1, where=layer))
        self.mode = check_choice("mode", mode, SPP_MODES, where=layer)
        self.out_features = self.channels * sum(level * level for level in self.levels)

    def forward(self, x: Tensor) -> Tensor:
        # (N, C, H, W) -> (N, C·Σ l²)
        return spatial_pyramid_pool(x, self.levels, self.mode)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, levels={list(self.levels)}, mode={self.mode}"


@register_pool(
    "adaptive_feature",
    kind="global",
    paper="Liu et al. 2018 (PANet adaptive feature pooling)",
    learnable=True,
)
class AdaptiveFeaturePool(GlobalPool):
    """Every stage pooled to one grid, projected to ``width``, fused by element-wise max.

    Built with ``stage_channels`` (the width of every stage, last = ``channels``) and called with
    the list of every stage's feature map. D = width·h·w (``width`` defaults to ``channels``).
    """

    takes_stages = True

    def __init__(
        self,
        channels: int,
        stage_channels: Sequence[int],
        output_size: int | Sequence[int] = 1,
        width: int | None = None,
    ) -> None:
        super().__init__(channels)
        layer = type(self).__name__
        self.stage_channels = check_int_list("stage_channels", stage_channels, 1, where=layer)
        self.output_size = parse_grid("output_size", output_size, layer)
        self.width = self.channels if width is None else check_int("width", width, 1, where=layer)
        # One learned projection per stage (PANet: one parameter layer per feature level).
        self.project = nn.ModuleList(nn.Conv2d(c, self.width, 1) for c in self.stage_channels)
        self.out_features = self.width * self.output_size[0] * self.output_size[1]

    def forward(self, stages: Sequence[Tensor]) -> Tensor:
        if isinstance(stages, Tensor) or len(stages) != len(self.project):
            got = "one tensor" if isinstance(stages, Tensor) else f"{len(stages)} maps"
            raise ShapeError(
                f"adaptive_feature: expected the list of all {len(self.project)} stage maps, "
                f"got {got}"
            )
        fused = None
        for x, project in zip(stages, self.project, strict=True):
            # (N, C_i, H_i, W_i) -> (N, C_i, h, w) -> (N, width, h, w)
            z = project(F_.adaptive_max_pool2d(x, self.output_size))
            fused = z if fused is None else torch.maximum(fused, z)
        assert fused is not None
        return fused.flatten(1)  # (N, width·h·w)

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, stage_channels={self.stage_channels}, "
            f"output_size={list(self.output_size)}, width={self.width}"
        )
