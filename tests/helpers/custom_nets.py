"""Networks for model=custom in the tests (model.factory=tests.helpers.custom_nets:<name>)."""

from __future__ import annotations

from torch import nn


class Tiny(nn.Module):
    def __init__(self, num_classes: int, in_channels: int, pool, head, width: int) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1),
            nn.ReLU(),
            pool(width),
            nn.Conv2d(width, 2 * width, 3, padding=1),
            nn.ReLU(),
            pool(2 * width, F=2, S=2),
        )
        self.head = head(2 * width)
        self.fc = nn.Linear(self.head.out_features, num_classes)

    def forward(self, x):
        return self.fc(self.head(self.features(x)))


def tiny(num_classes: int, in_channels: int, pool, head, width: int = 8) -> nn.Module:
    """Places pool= and head= itself, through the factories it is given."""
    return Tiny(num_classes, in_channels, pool, head, width)


def plain(num_classes: int, in_channels: int, width: int = 8) -> nn.Module:
    """A plain torch network: poolbench replaces its pools."""
    return nn.Sequential(
        nn.Conv2d(in_channels, width, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(width, width, 3, padding=1),
        nn.ReLU(),
        nn.AvgPool2d(2),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(width, num_classes),
    )


def not_a_module(num_classes: int, in_channels: int) -> int:
    return 3


def no_sizes(pool, head) -> nn.Module:
    return nn.Identity()


NOT_CALLABLE = 42
