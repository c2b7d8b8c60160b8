"""``vgg``: a small VGG-style network (Simonyan & Zisserman 2015) for small images.

Stages of 3x3 conv + BatchNorm + ReLU, each ending in a downsampling pool built from
``pool=``; then the ``head=`` global pool and a linear classifier sized from the head's D.
"""

from __future__ import annotations

from collections.abc import Sequence

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
    ) -> None:
        super().__init__()
        self.stages = nn.ModuleList(stages)
        self.head = build_head(head, stage_channels[-1], stage_channels)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.classifier = nn.Linear(self.head.out_features, num_classes)

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
    convs_per_stage: int = 1,
    dropout: float = 0.0,
) -> StagedNet:
    """A VGG-style CNN with ``len(widths)`` pooling stages."""
    widths = list(widths)
    if not widths or any(not isinstance(w, int) or w < 1 for w in widths):
        raise ConfigError(
            f"vgg: expected widths to be a non-empty list of integers >= 1, got {widths}"
        )
    if not isinstance(convs_per_stage, int) or convs_per_stage < 1:
        raise ConfigError(f"vgg: expected convs_per_stage >= 1, got {convs_per_stage!r}")
    if not 0 <= dropout < 1:
        raise ConfigError(f"vgg: expected 0 <= dropout < 1, got {dropout}")
    stages = []
    c_in = in_channels
    for width in widths:
        layers: list[nn.Module] = []
        for _ in range(convs_per_stage):
            layers.append(conv_bn_relu(c_in, width))
            c_in = width
        layers.append(create_for_slot(pool.name, "local", width, **pool.params))
        stages.append(nn.Sequential(*layers))
    return StagedNet(stages, widths, head, num_classes, dropout)
