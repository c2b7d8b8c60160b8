"""Base classes shared by every pooling layer.

A *local* pool maps ``(N, C, H, W) -> (N, C, H', W')`` with window ``F`` and stride ``S``; with
padding ``P`` and floor rounding its output side is the seeds' rule

    W2 = floor((W1 - F + 2P) / S) + 1

A *global* pool maps ``(N, C, H, W) -> (N, D)`` and states ``out_features`` (D), so the
classifier after it can be sized without running it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from poolbench.core.checks import check_bool, check_int, check_number
from poolbench.core.errors import ShapeError


def register_power(module: nn.Module, p: float, learnable: bool) -> None:
    """Set ``module.p``: a learned parameter (GeM's trainable norm, Radenovic et al. 2018) or a
    fixed buffer, so that it follows the module across devices and into checkpoints either way."""
    if learnable:
        module.p = nn.Parameter(torch.tensor(float(p)))
    else:
        module.register_buffer("p", torch.tensor(float(p)))


# The exponents GeM computes with. A configured p must lie in this range; a learned p that
# leaves it is held at the nearer bound in forward (torch.clamp: no gradient from the pool
# while it is outside). Below 0.1 the 1/p root magnifies float32's rounding of the mean (and
# p -> 0 divides by 0; p < 0 is no longer a mean between average and max); above 1000 the
# output is the window max within a factor (window size)^(1/1000), and p = inf is NaN.
GEM_P_RANGE = (0.1, 1000.0)


def gem_exponent(p: torch.Tensor | float, dtype: torch.dtype) -> torch.Tensor:
    """GeM's exponent as the forward pass uses it: ``p`` (a tensor keeps its graph) in
    ``dtype``, clamped to :data:`GEM_P_RANGE`."""
    exponent = p.to(dtype) if isinstance(p, torch.Tensor) else torch.tensor(p, dtype=dtype)
    return exponent.clamp(*GEM_P_RANGE)


def init_gem(module: nn.Module, p: float, eps: float, learnable_p: bool) -> None:
    """Validate and set GeM's ``p`` (learned or fixed, see :func:`register_power`), ``eps`` and
    ``learnable_p`` on ``module`` (the local and the global GeM share them)."""
    layer = type(module).__name__
    p = check_number("p", p, *GEM_P_RANGE, where=layer)
    module.eps = check_number("eps", eps, 0, low_open=True, where=layer)
    module.learnable_p = check_bool("learnable_p", learnable_p, where=layer)
    register_power(module, p, module.learnable_p)


def pooled_size(size: int, F: int, S: int, padding: int = 0, ceil_mode: bool = False) -> int:
    """Output side of a window-F, stride-S pool: floor((size - F + 2P) / S) + 1.

    With ``ceil_mode`` the division rounds up, except that (as in torch) the last window must
    start inside the padded input.
    """
    span = size + 2 * padding - F
    if span < 0:
        return 0
    if not ceil_mode:
        return span // S + 1
    out = -(-span // S) + 1
    if (out - 1) * S >= size + padding:
        out -= 1
    return out


class LocalPool(nn.Module):
    """A downsampling pool with window ``F``, stride ``S`` and optional zero ``padding``."""

    kind = "local"

    def __init__(self, F: int = 2, S: int = 2, padding: int = 0, ceil_mode: bool = False) -> None:
        super().__init__()
        layer = type(self).__name__
        self.F = check_int("F", F, 1, where=layer)
        self.S = check_int("S", S, 1, where=layer)
        # A window must hold at least one real input: padding <= F/2.
        self.padding = check_int("padding", padding, 0, self.F // 2, where=layer)
        self.ceil_mode = check_bool("ceil_mode", ceil_mode, where=layer)

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        return (
            pooled_size(height, self.F, self.S, self.padding, self.ceil_mode),
            pooled_size(width, self.F, self.S, self.padding, self.ceil_mode),
        )

    def check_input(self, height: int, width: int, where: str = "pool") -> None:
        """Raise :class:`ShapeError` if a ``height x width`` map is too small for the window."""
        need = self.F - 2 * self.padding
        if height < need or width < need:
            pad = f", P={self.padding}" if self.padding else ""
            raise ShapeError(
                f"{where} (F={self.F}, S={self.S}{pad}) needs input >= {need}, "
                f"feature map is {height}x{width} "
                f"(output side = floor((W1 - F + 2P)/S) + 1)"
            )

    def extra_repr(self) -> str:
        s = f"F={self.F}, S={self.S}"
        if self.padding:
            s += f", padding={self.padding}"
        if self.ceil_mode:
            s += ", ceil_mode=True"
        return s


class GlobalPool(nn.Module):
    """Pools a whole feature map to a vector of ``out_features`` (D) values per image.

    A global pool whose class sets ``takes_stages = True`` (the one place that says so; the
    registry reads it) is built with ``stage_channels`` and receives the list of every
    stage's feature map (multi-stage fusion heads); :meth:`pool_stages` feeds either kind.
    """

    kind = "global"
    takes_stages = False

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = check_int("channels", channels, 1, where=type(self).__name__)
        self.out_features = self.channels

    def pool_stages(self, stages: Sequence[Tensor]) -> Tensor:
        """The head applied to a network's stage outputs: all of them for a multi-stage head,
        the last one otherwise. ``(N, D)``."""
        return self(list(stages)) if self.takes_stages else self(stages[-1])

    def extra_repr(self) -> str:
        return f"channels={self.channels}, out_features={self.out_features}"
