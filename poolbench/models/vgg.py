"""``vgg``: a small VGG-style network (Simonyan & Zisserman 2015) for small images.

Stages of 3x3 conv + BatchNorm + ReLU, each ending in a downsampling pool built from
``pool=``; then the ``head=`` global pool and a linear classifier sized from the head's D.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import Tensor, nn

from poolbench.config import PoolSpec
from poolbench.errors import ConfigError
from poolbench.models import register_model
from poolbench.pooling import create_for_slot, pool_entry


def conv_bn_relu(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


def make_pool(pool: PoolSpec, channels: int, **defaults: Any) -> nn.Module:
    """A downsampling pool from ``pool=``; ``defaults`` apply where the spec does not set a key.

    Built with :func:`create_for_slot`, so it is a ``LocalPool`` that ``check_model`` checks.
    """
    return create_for_slot(pool.name, "local", channels, **{**defaults, **pool.params})


def build_head(head: PoolSpec, channels: int, stage_channels: Sequence[int]) -> nn.Module:
    """The global pool before the classifier; multi-stage heads also get every stage's width."""
    if pool_entry(head.name).meta.get("takes_stages"):
        if "stage_channels" in head.params:
            raise ConfigError(
                f"head '{head.name}' gets stage_channels from the model "
                f"({list(stage_channels)}); remove head.stage_channels from the config"
            )
        return create_for_slot(
            head.name, "global", channels, stage_channels=list(stage_channels), **head.params
        )
    return create_for_slot(head.name, "global", channels, **head.params)


class StagedNet(nn.Module):
    """Stages (each ending in a pool), a global head, dropout and a linear classifier.

    ``forward_stages`` returns every stage's output, which multi-stage heads consume.
    """

    def __init__(
        self,
        stages: Sequence[nn.Module],
        stage_channels: Sequence[int],
        head: PoolSpec,
        num_classes: int,
        dropout: float = 0.0,
        classifier: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.stages = nn.ModuleList(stages)
        self.stage_channels = list(stage_channels)
        self.head = build_head(head, stage_channels[-1], stage_channels)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        # A model may bring its own classifier (LeNet's F6 layer, NIN's identity when the
        # last mlpconv already gives one map per class); by default one linear layer.
        self.classifier = (
            classifier if classifier is not None else nn.Linear(self.head.out_features, num_classes)
        )

    def forward_stages(self, x: Tensor) -> list[Tensor]:
        outs = []
        for stage in self.stages:
            x = stage(x)
            outs.append(x)
        return outs

    def forward(self, x: Tensor) -> Tensor:
        outs = self.forward_stages(x)
        z = self.head(outs) if getattr(self.head, "takes_stages", False) else self.head(outs[-1])
        return self.classifier(self.dropout(z))  # (N, num_classes)


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
    counts = (
        [convs_per_stage] * len(widths)
        if isinstance(convs_per_stage, int)
        else list(convs_per_stage)
    )
    if len(counts) != len(widths) or any(
        isinstance(c, bool) or not isinstance(c, int) or c < 1 for c in counts
    ):
        raise ConfigError(
            f"vgg: expected convs_per_stage to be an integer >= 1 or {len(widths)} of them "
            f"(one per width), got {convs_per_stage!r}"
        )
    check_dropout("vgg", dropout)
    stages = []
    c_in = in_channels
    for width, count in zip(widths, counts, strict=True):
        layers: list[nn.Module] = []
        for _ in range(count):
            layers.append(conv_bn_relu(c_in, width))
            c_in = width
        layers.append(make_pool(pool, width))
        stages.append(nn.Sequential(*layers))
    return StagedNet(stages, widths, head, num_classes, dropout)


def check_widths(model: str, widths: Sequence[int], count: int | None = None) -> list[int]:
    """Validate a list of channel widths (optionally of a fixed length)."""
    widths = list(widths)
    bad = not widths or any(isinstance(w, bool) or not isinstance(w, int) or w < 1 for w in widths)
    if bad or (count is not None and len(widths) != count):
        n = f"{count} " if count is not None else "a non-empty list of "
        raise ConfigError(f"{model}: expected widths to be {n}integers >= 1, got {widths}")
    return widths


def check_dropout(model: str, dropout: float) -> float:
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
        raise ConfigError(f"{model}: expected 0 <= dropout < 1, got {dropout!r}")
    return float(dropout)
