"""``airbench``: the network of airbench94 (Keller Jordan 2024, "94% on CIFAR-10 in 3.29
seconds on a single GPU", arXiv:2404.00498; github.com/KellerJordan/cifar10-airbench), every
pooling slot from ``pool=`` and the final pool from ``head=``. Its recipe is ``train=airbench``.

The published design, as poolbench builds it:

- a frozen 2x2 **whitening** convolution (no padding) with 2 * 3 * 2 * 2 = 24 filters: the
  eigenvectors of the covariance of 2x2 training-image patches, scaled by
  1 / sqrt(eigenvalue + 5e-4), and their negatives, computed from up to 5,000 training images
  before the first step (:meth:`AirbenchNet.init_from_data`); its bias trains for the first
  ``whiten_bias_epochs`` (3) epochs, then freezes; GELU after it;
- three **conv groups** at ``widths`` 64, 256, 256: conv 3x3 -> pool -> BatchNorm -> GELU ->
  conv 3x3 -> BatchNorm -> GELU. The convs have no bias and are dirac-initialised (the first
  ``in_channels`` filters pass their input through). BatchNorm has no trainable scale (a
  frozen weight of 1), a bias, eps 1e-12 and momentum 0.6 in airbench's convention (a
  running average that keeps 0.6 of the old value; torch's ``momentum=0.4``);
- the **final pool** (airbench: a 3x3 max pool over the 3x3 map, i.e. a global max: here
  ``head=``, default ``global_max``) and a linear classifier without bias whose output is
  scaled by 1/9 (``scale``).

At 32 px: 32 -> 31 (whitening) -> 15 -> 7 -> 3 -> head. airbench runs in fp16 on a GPU;
poolbench's ``precision`` decides here.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from poolbench.core.checks import check_int, check_number
from poolbench.core.config import PoolSpec
from poolbench.core.errors import ConfigError
from poolbench.models.blocks import StagedNet, check_widths, make_pool
from poolbench.models.registry import register_model

WHITEN_EPS = 5e-4


class FrozenScaleBatchNorm(nn.BatchNorm2d):
    """BatchNorm with a frozen scale of 1 and a trainable bias (airbench's)."""

    def __init__(self, channels: int, momentum: float) -> None:
        super().__init__(channels, eps=1e-12, momentum=1 - momentum)
        self.weight.requires_grad_(False)


def dirac_conv(c_in: int, c_out: int) -> nn.Conv2d:
    """3x3 conv, no bias, 'same' padding; the first ``c_in`` filters start as identities."""
    conv = nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)
    with torch.no_grad():
        nn.init.dirac_(conv.weight[: min(c_in, c_out)])
    return conv


class ConvGroup(nn.Sequential):
    """conv -> pool -> BN -> GELU -> conv -> BN -> GELU."""

    def __init__(self, c_in: int, c_out: int, pool: PoolSpec, momentum: float) -> None:
        super().__init__(
            dirac_conv(c_in, c_out),
            make_pool(pool, c_out),
            FrozenScaleBatchNorm(c_out, momentum),
            nn.GELU(),
            dirac_conv(c_out, c_out),
            FrozenScaleBatchNorm(c_out, momentum),
            nn.GELU(),
        )


class Scale(nn.Module):
    def __init__(self, factor: float) -> None:
        super().__init__()
        self.factor = factor

    def forward(self, x: Tensor) -> Tensor:
        return x * self.factor

    def extra_repr(self) -> str:
        return f"factor={self.factor:g}"


class AirbenchNet(StagedNet):
    """:class:`StagedNet` with airbench's data-dependent start and its whitening schedule."""

    def __init__(self, *args, whiten_bias_epochs: int, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.whiten_bias_epochs = whiten_bias_epochs

    @property
    def whiten(self) -> nn.Conv2d:
        return self.stages[0][0]

    @torch.no_grad()
    def init_from_data(self, images: Tensor) -> None:
        """Whitening filters from the 2x2 patches of ``images`` (normalised training images,
        (N, C, H, W)): the eigenvectors of their covariance over sqrt(eigenvalue + eps), the
        ``whiten_width / 2`` of largest eigenvalue (all C * 4 by default), and the negatives of
        those."""
        k = self.whiten.kernel_size[0]
        x = images.float()
        patches = x.unfold(2, k, 1).unfold(3, k, 1)  # (N, C, H', W', k, k)
        patches = patches.permute(0, 2, 3, 1, 4, 5).reshape(-1, x.shape[1] * k * k).double()
        covariance = patches.T @ patches / len(patches)
        values, vectors = torch.linalg.eigh(covariance)  # ascending
        values, vectors = values.flip(0), vectors.flip(1)  # the largest first
        filters = (vectors.T / torch.sqrt(values.clamp_min(0) + WHITEN_EPS)[:, None]).float()
        filters = filters.view(-1, x.shape[1], k, k)[: self.whiten.out_channels // 2]
        self.whiten.weight.copy_(torch.cat([filters, -filters]).to(self.whiten.weight))

    def start_epoch(self, epoch: int) -> None:
        """The whitening bias trains for the first ``whiten_bias_epochs`` epochs only."""
        self.whiten.bias.requires_grad_(epoch <= self.whiten_bias_epochs)


@register_model(
    "airbench",
    description="airbench94's CIFAR network (Jordan 2024): whitening conv, 3 conv groups",
    limits={"head=": "defaults to global_max, airbench's final 3x3 max pool over the 3x3 map"},
)
def airbench(
    num_classes: int,
    in_channels: int,
    pool: PoolSpec,
    head: PoolSpec,
    widths: Sequence[int] = (64, 256, 256),
    whiten_width: int | None = None,
    whiten_bias_epochs: int = 3,
    batchnorm_momentum: float = 0.6,
    scale: float = 1 / 9,
) -> AirbenchNet:
    """airbench94's network; ``whiten_width`` defaults to 2 * in_channels * 2 * 2 filters (each
    2x2 patch direction and its negative) and may be any even number up to that (the leading
    principal directions)."""
    widths = check_widths("airbench", widths)
    most = 2 * in_channels * 4
    whiten_width = most if whiten_width is None else whiten_width
    check_int("whiten_width", whiten_width, 2, most, where="airbench")
    if whiten_width % 2:
        raise ConfigError(
            f"airbench: expected whiten_width to be even (each filter and its negative), "
            f"got {whiten_width}"
        )
    check_int("whiten_bias_epochs", whiten_bias_epochs, 0, where="airbench")
    momentum = check_number(
        "batchnorm_momentum", batchnorm_momentum, 0, 1, high_open=True, where="airbench"
    )
    scale = check_number("scale", scale, 0, low_open=True, where="airbench")
    whiten = nn.Conv2d(in_channels, whiten_width, 2, padding=0, bias=True)
    whiten.weight.requires_grad_(False)
    nn.init.zeros_(whiten.bias)
    stages: list[nn.Module] = [nn.Sequential(whiten, nn.GELU())]
    c_in = whiten_width
    for width in widths:
        stages.append(ConvGroup(c_in, width, pool, momentum))
        c_in = width
    model = AirbenchNet(
        stages,
        [whiten_width, *widths],
        head,
        num_classes,
        classifier=nn.Identity(),
        whiten_bias_epochs=whiten_bias_epochs,
    )
    model.classifier = nn.Sequential(
        nn.Linear(model.head.out_features, num_classes, bias=False), Scale(scale)
    )
    return model
