"""``torchvision``: any torchvision classification model (``model.arch=resnet50``,
``efficientnet_b0``, ``googlenet`` ...) with its pooling taken from ``pool=`` and ``head=``.

The network is built by ``torchvision.models.get_model(arch, weights=None)`` (random init,
nothing downloaded), then :func:`poolbench.models.replace.replace_pools` swaps every
``nn.MaxPool2d``/``nn.AvgPool2d`` module for ``pool=`` and the final global pool for
``head=`` (see there for geometry, stand-ins and what cannot be swapped: DenseNet's and
MobileNetV2's global pool, ShuffleNet's mean and Inception-v3's branch ``avg_pool2d`` are
computed inside ``forward``). Every replacement is listed in the run log.
"""

from __future__ import annotations

from torch import nn

from poolbench.core.config import PoolSpec
from poolbench.core.errors import ConfigError
from poolbench.models.registry import register_model
from poolbench.models.replace import adapt_first_conv, replace_pools

# Inception-style models build auxiliary classifiers for training unless told not to.
NO_AUX = {"googlenet": {"aux_logits": False}, "inception_v3": {"aux_logits": False}}


@register_model(
    "torchvision",
    description="any torchvision classification model (model.arch=...), pools from pool=/head=",
    limits={
        "head=adaptive_feature": "needs stages, which a generic network does not expose",
        "head= other than global_avg": "only archs whose global pool is a module (not "
        "densenet*, mobilenet_v2, shufflenet*, ...)",
        "pool=wavelet, fractional at a stride-1 layer": "poolbench's max stands in (logged)",
    },
)
def torchvision_model(
    num_classes: int,
    in_channels: int,
    pool: PoolSpec,
    head: PoolSpec,
    arch: str = "resnet18",
    keep_geometry: bool = True,
    probe_size: int = 64,
) -> nn.Module:
    """``torchvision.models.get_model(arch)`` with its pools replaced; random initialisation.

    ``probe_size`` is the side of the one image used to measure channel counts at build time
    (small is cheap; an arch that needs more, such as ViT's fixed 224, needs it raised).
    """
    from torchvision import models

    available = models.list_models(module=models)
    if arch not in available:
        raise ConfigError(f"torchvision: unknown arch {arch!r}; available: {', '.join(available)}")
    model = models.get_model(arch, weights=None, num_classes=num_classes, **NO_AUX.get(arch, {}))
    if in_channels != 3:
        adapt_first_conv(model, in_channels)
    return replace_pools(
        model,
        pool,
        head,
        keep_geometry=keep_geometry,
        in_channels=in_channels,
        probe_size=probe_size,
        what=f"torchvision {arch}",
    )
