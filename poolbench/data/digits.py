"""``digits``: scikit-learn's handwritten digits (1,797 8x8 images, 10 classes).

The images ship inside scikit-learn (UCI optical digits, Alpaydin & Kaynak 1998), so this
dataset works offline. They are upsampled (bilinear) to ``image_size`` so that several 2x2
pooling stages make sense, and split into train/test by a fixed, seeded, stratified split.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from poolbench.core.checks import check_int, check_number
from poolbench.data.cache import cached_tensors
from poolbench.data.memory import InMemoryDataset, channel_stats
from poolbench.data.registry import register_dataset


@register_dataset(
    "digits",
    description="scikit-learn load_digits(): 1,797 real 8x8 digit images, offline, upsampled",
    in_channels=1,
    num_classes=10,
    image_size=16,
)
def digits(
    image_size: int = 16,
    test_fraction: float = 0.25,
    split_seed: int = 0,
    crop_pad: int = 1,
) -> InMemoryDataset:
    """Load the digits, upsample to ``image_size`` and split them."""
    check_int("image_size", image_size, 8, where="digits")
    check_number(
        "test_fraction", test_fraction, 0, 1, low_open=True, high_open=True, where="digits"
    )
    check_int("crop_pad", crop_pad, 0, where="digits")
    check_int("split_seed", split_seed, where="digits")

    key = f"digits-v1-{test_fraction}-{split_seed}"
    raw = cached_tensors(key, lambda: _load_and_split(test_fraction, split_seed))
    images = raw["images"].float().div(16.0).unsqueeze(1)  # (N, 1, 8, 8)
    if image_size != 8:
        images = F.interpolate(images, size=image_size, mode="bilinear", align_corners=False)
    images = (images.clamp(0, 1) * 255).round().to(torch.uint8)
    labels, train_idx, test_idx = raw["labels"], raw["train_idx"], raw["test_idx"]
    train_x = images[train_idx]
    mean, std = channel_stats(train_x)
    return InMemoryDataset(
        name="digits",
        train_x=train_x,
        train_y=labels[train_idx],
        test_x=images[test_idx],
        test_y=labels[test_idx],
        num_classes=10,
        mean=mean,
        std=std,
        stats_from_train=True,
        flip=False,  # digits are not mirror-symmetric
        crop_pad=crop_pad,
    )


def _load_and_split(test_fraction: float, split_seed: int) -> dict[str, torch.Tensor]:
    """The raw 8x8 images (0-16), labels and a stratified split (cached: sklearn is slow to
    import)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    raw = load_digits()
    train_idx, test_idx = train_test_split(
        np.arange(len(raw.target)),
        test_size=test_fraction,
        random_state=split_seed,
        stratify=raw.target,
    )
    return {
        "images": torch.from_numpy(raw.images.astype(np.uint8)),
        "labels": torch.from_numpy(raw.target.astype(np.int64)),
        "train_idx": torch.from_numpy(train_idx),
        "test_idx": torch.from_numpy(test_idx),
    }
