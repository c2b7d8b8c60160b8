"""The shapes dataset is learnable: a small CNN trained on it beats chance (slow)."""

from __future__ import annotations

import pytest
import torch

from poolbench.data import create_dataset


@pytest.mark.slow
def test_shapes_is_learnable_by_a_small_cnn():
    from poolbench.core.config import PoolSpec, TrainConfig
    from poolbench.engine.loop import Compute, train
    from poolbench.measure.device import resolve_precision
    from poolbench.models.registry import create_model

    torch.manual_seed(0)
    # configs/train/shapes.yaml's recipe and the default vgg, on half the images.
    data = create_dataset("shapes", image_size=32, train_size=3000, test_size=600)
    model = create_model("vgg", 6, 3, PoolSpec("max", {"F": 2, "S": 2}), PoolSpec("global_avg"))
    cfg = TrainConfig(epochs=10, batch_size=128, lr=0.1)
    cpu = torch.device("cpu")
    result = train(model, data, cfg, Compute(cpu, resolve_precision("fp32", cpu)), seed=0)
    assert result.test_acc > 0.5  # chance is 1/6
