"""``timm``: any timm classifier (``model.arch=resnet18``, ``mobilenetv3_small_050``,
``efficientnet_b0`` ...) with its pooling taken from ``pool=`` and ``head=``. Needs the extra
``poolbench[timm]``.

The network is built by ``timm.create_model(arch, pretrained=False, num_classes=...,
in_chans=...)``: random init, nothing downloaded, the classifier and the stem sized for the
data at creation. Then :func:`poolbench.models.replace.replace_pools` swaps every
``nn.MaxPool2d``/``nn.AvgPool2d`` module (timm's ``MaxPool2dSame`` and the ResNet-D
``avg_down`` shortcut pools among them) for ``pool=``, and the global pool for ``head=``.
timm's global pool is a ``SelectAdaptivePool2d``: an adaptive pool to 1x1 followed by a
flatten (or not: MobileNetV3 pools to a map and runs a 1x1 conv before flattening); the
adaptive pool inside it is what ``head=`` replaces, so the wrapper's flatten and everything
after it stay as timm built them. Every replacement is listed in the run log.
"""

from __future__ import annotations

import difflib
from typing import Any

from torch import nn

from poolbench.core.config import PoolSpec
from poolbench.core.errors import ConfigError
from poolbench.models.registry import register_model
from poolbench.models.replace import replace_pools

# Keys of timm.create_model that poolbench sets itself, and why.
OWN_KEYS = {
    "pretrained": "nothing is downloaded: every run trains from random init",
    "num_classes": "set from the data",
    "in_chans": "set from the data",
    "global_pool": "the global pool is head=",
    # a file timm would load (with torch.load: older torch unpickles code): a run's config,
    # kept in its record, names no file whose loading could run anything
    "checkpoint_path": "nothing is loaded: every run trains from random init",
    "pretrained_cfg": "nothing is loaded: every run trains from random init",
    "pretrained_cfg_overlay": "nothing is loaded: every run trains from random init",
}


def _timm() -> Any:
    try:
        import timm
    except ImportError:
        raise ConfigError(
            "model=timm needs the timm package: pip install 'poolbench[timm]'"
        ) from None
    return timm


@register_model(
    "timm",
    description="any timm classifier (model.arch=..., extra: timm), pools from pool=/head=",
    limits={
        "head=adaptive_feature": "needs stages, which a generic network does not expose",
        "head= other than global_avg": "only archs whose global pool is a module (timm's "
        "SelectAdaptivePool2d with pool_type avg or max, the default of its CNNs; not ViTs, "
        "which pool tokens)",
        "pool=wavelet, fractional at a stride-1 layer": "poolbench's max stands in (logged)",
    },
)
def timm_model(
    num_classes: int,
    in_channels: int,
    pool: PoolSpec,
    head: PoolSpec,
    arch: str = "resnet18",
    keep_geometry: bool = True,
    probe_size: int = 64,
    kwargs: dict[str, Any] | None = None,
) -> nn.Module:
    """``timm.create_model(arch, pretrained=False, **kwargs)`` with its pools replaced.

    ``kwargs`` go to ``timm.create_model`` (``drop_rate``, ``drop_path_rate`` ...; not the
    keys poolbench sets). ``probe_size`` is the side of the one image used to measure channel
    counts at build time.
    """
    timm = _timm()
    kwargs = dict(kwargs or {})
    own = sorted(set(kwargs) & set(OWN_KEYS))
    if own:
        raise ConfigError(f"timm: model.kwargs.{own[0]} is poolbench's to set ({OWN_KEYS[own[0]]})")
    if not timm.is_model(arch):
        close = difflib.get_close_matches(arch, timm.list_models(), n=8, cutoff=0.6)
        hint = f"; close matches: {', '.join(close)}" if close else ""
        raise ConfigError(
            f"timm: unknown arch {arch!r}{hint} (timm.list_models() lists all "
            f"{len(timm.list_models())})"
        )
    model = timm.create_model(
        arch, pretrained=False, num_classes=num_classes, in_chans=in_channels, **kwargs
    )
    return replace_pools(
        model,
        pool,
        head,
        keep_geometry=keep_geometry,
        in_channels=in_channels,
        probe_size=probe_size,
        what=f"timm {arch}",
    )
