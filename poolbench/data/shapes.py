"""``shapes``: procedural images of simple objects at random positions, scales and rotations
over textured backgrounds; offline, seeded, any image size and count.

Six classes, each a filled silhouette defined in object coordinates ``(u, v)`` in [-1, 1]:
disc, square, triangle, cross, ring and bar (no class is a rotation of another). Every image
draws a centre anywhere that keeps the object inside the frame, a scale, a rotation and an
object colour; the background is a random oriented grating plus per-pixel noise in another
colour. The class is *what* the
object is, never *where*: a network has to recognise the same silhouette at every position,
which is the translation invariance that pooling is meant to provide. Train and test images
are drawn from independent streams of the same seed.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from poolbench.core.checks import check_int, check_number
from poolbench.core.errors import ConfigError
from poolbench.data.memory import InMemoryDataset, channel_stats
from poolbench.data.registry import register_dataset

CLASSES = ("disc", "square", "triangle", "cross", "ring", "bar")


def silhouette(label: Tensor, u: Tensor, v: Tensor) -> Tensor:
    """Signed-distance-like value per pixel, < 0 inside the object of class ``label``.

    ``u, v`` (Tensor[N, H, W]) are object coordinates; ``label`` (Tensor[N]).
    """
    r = torch.sqrt(u * u + v * v)
    shapes = torch.stack(
        [
            r - 0.9,  # disc
            torch.maximum(u.abs(), v.abs()) - 0.75,  # square
            # equilateral triangle: the largest of three half-plane distances
            torch.maximum(
                -v - 0.45, torch.maximum(0.866 * u + 0.5 * v, -0.866 * u + 0.5 * v) - 0.45
            ),
            torch.minimum(  # cross: union of two bars
                torch.maximum(u.abs() - 0.25, v.abs() - 0.9),
                torch.maximum(v.abs() - 0.25, u.abs() - 0.9),
            ),
            (r - 0.65).abs() - 0.25,  # ring
            # bar: long and thin, so no rotation makes it look like the square
            torch.maximum(u.abs() - 0.95, v.abs() - 0.3),
        ]
    )  # (classes, N, H, W)
    return shapes.gather(0, label.view(1, -1, 1, 1).expand(1, *u.shape)).squeeze(0)


def render(
    count: int, image_size: int, generator: torch.Generator, min_scale: float, max_scale: float
) -> tuple[Tensor, Tensor]:
    """``count`` RGB images (uint8 ``(N, 3, S, S)``) and their labels."""
    n, s = count, image_size
    g = generator
    labels = torch.randint(0, len(CLASSES), (n,), generator=g)
    scale = min_scale + (max_scale - min_scale) * torch.rand(n, generator=g)  # radius / side
    # centre anywhere that keeps the object (radius ~ scale) inside the frame
    margin = scale.clamp(max=0.5)
    cy = margin + (1 - 2 * margin) * torch.rand(n, generator=g)
    cx = margin + (1 - 2 * margin) * torch.rand(n, generator=g)
    angle = 2 * math.pi * torch.rand(n, generator=g)

    grid = (torch.arange(s, dtype=torch.float32) + 0.5) / s
    y = grid.view(1, s, 1).expand(n, s, s)
    x = grid.view(1, 1, s).expand(n, s, s)
    dy = (y - cy.view(-1, 1, 1)) / scale.view(-1, 1, 1)
    dx = (x - cx.view(-1, 1, 1)) / scale.view(-1, 1, 1)
    cos, sin = angle.cos().view(-1, 1, 1), angle.sin().view(-1, 1, 1)
    u, v = cos * dx + sin * dy, -sin * dx + cos * dy
    # a soft edge one pixel wide (in object units) keeps small objects anti-aliased
    pixel = 1.0 / (s * scale.view(-1, 1, 1))
    alpha = torch.sigmoid(-silhouette(labels, u, v) / pixel).unsqueeze(1)  # (N, 1, S, S)

    # textured background: an oriented grating of random frequency and phase, plus noise
    theta = math.pi * torch.rand(n, 1, 1, generator=g)
    freq = 2 + 6 * torch.rand(n, 1, 1, generator=g)
    phase = 2 * math.pi * torch.rand(n, 1, 1, generator=g)
    wave = torch.sin(2 * math.pi * freq * (x * theta.cos() + y * theta.sin()) + phase)
    texture = 0.5 + 0.15 * wave + 0.08 * torch.randn(n, s, s, generator=g)
    bg_colour = 0.25 + 0.5 * torch.rand(n, 3, 1, 1, generator=g)
    background = (texture.unsqueeze(1) * bg_colour * 2).clamp(0, 1)
    fg_colour = torch.rand(n, 3, 1, 1, generator=g)
    # keep the object visible against its background: push its colour away from the mean
    away = torch.where(bg_colour.mean(1, keepdim=True) > 0.5, 0.0, 1.0)
    fg_colour = 0.5 * fg_colour + 0.5 * away
    images = alpha * fg_colour + (1 - alpha) * background
    return (images.clamp(0, 1) * 255).round().to(torch.uint8), labels


@register_dataset(
    "shapes",
    description="procedural objects at random positions/scales/rotations on textures; offline",
    in_channels=3,
    num_classes=len(CLASSES),
    image_size=32,
)
def shapes(
    image_size: int = 32,
    train_size: int = 6000,
    test_size: int = 2000,
    min_scale: float = 0.2,
    max_scale: float = 0.45,
    seed: int = 0,
    crop_pad: int = 2,
) -> InMemoryDataset:
    """Render ``train_size`` + ``test_size`` images of side ``image_size`` from ``seed``.

    ``min_scale``/``max_scale`` bound the object's radius as a fraction of the image side.
    """
    check_int("image_size", image_size, 8, where="shapes")
    check_int("train_size", train_size, 1, where="shapes")
    check_int("test_size", test_size, 1, where="shapes")
    check_int("seed", seed, where="shapes")
    check_int("crop_pad", crop_pad, 0, where="shapes")
    check_number("min_scale", min_scale, 0, 0.5, low_open=True, where="shapes")
    check_number("max_scale", max_scale, 0, 0.5, low_open=True, where="shapes")
    if not min_scale <= max_scale:
        raise ConfigError(
            f"shapes: expected 0 < min_scale <= max_scale <= 0.5, got {min_scale}, {max_scale}"
        )
    train_x, train_y = render(
        train_size, image_size, torch.Generator().manual_seed(2 * seed), min_scale, max_scale
    )
    test_x, test_y = render(
        test_size, image_size, torch.Generator().manual_seed(2 * seed + 1), min_scale, max_scale
    )
    mean, std = channel_stats(train_x)
    return InMemoryDataset(
        name="shapes",
        train_x=train_x,
        train_y=train_y,
        test_x=test_x,
        test_y=test_y,
        num_classes=len(CLASSES),
        mean=mean,
        std=std,
        stats_from_train=True,
        flip=True,  # every silhouette's class survives a mirror image
        crop_pad=crop_pad,
    )
