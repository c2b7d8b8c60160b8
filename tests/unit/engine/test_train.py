"""Training recipe: schedules, validation split (never the test split), model selection,
and repeatability of a seeded CPU run."""

from __future__ import annotations

import pytest
import torch

from poolbench.core.config import PoolSpec, TrainConfig
from poolbench.core.errors import ConfigError
from poolbench.data import create_dataset
from poolbench.engine.callbacks import Callback
from poolbench.engine.loop import Compute, check_validation, train
from poolbench.engine.optim import AdamW
from poolbench.engine.recipe import make_optimizer, make_schedule
from poolbench.measure.device import resolve_precision
from poolbench.models.registry import create_model

CPU = torch.device("cpu")
FP32 = resolve_precision("fp32", CPU)


def small_digits():
    """400 training images at 8 px: a run in well under a second."""
    data = create_dataset("digits", image_size=8)
    data.train_x, data.train_y = data.train_x[:400], data.train_y[:400]
    return data


def tiny_run(cfg: TrainConfig, seed: int = 0):
    torch.manual_seed(seed)
    data = small_digits()
    model = create_model(
        "vgg", 10, 1, PoolSpec("max", {"F": 2, "S": 2}), PoolSpec("global_avg"), widths=[8, 8, 8]
    )
    return train(model, data, cfg, Compute(CPU, FP32), seed=seed), data, model


def lrs(cfg: TrainConfig, total: int) -> list[float]:
    model = torch.nn.Linear(2, 2)
    opt = make_optimizer(model, cfg)
    sched = make_schedule(opt, cfg, total)
    out = []
    for _ in range(total):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_step_schedule_multiplies_by_gamma_at_milestones():
    values = lrs(TrainConfig(schedule="step", lr=1.0, milestones=(0.5, 0.75), gamma=0.1), 8)
    assert values == pytest.approx([1, 1, 1, 1, 0.1, 0.1, 0.01, 0.01])


def test_onecycle_and_cosine_end_near_zero():
    for schedule in ("onecycle", "cosine"):
        values = lrs(TrainConfig(schedule=schedule, lr=1.0, warmup_frac=0.25), 20)
        assert max(values) == pytest.approx(1.0) and values[-1] < 0.1


def test_adamw_and_sgd_nesterov():
    model = torch.nn.Linear(2, 2)
    assert isinstance(make_optimizer(model, TrainConfig(optimizer="adamw")), AdamW)
    sgd = make_optimizer(model, TrainConfig(optimizer="sgd", nesterov=True))
    assert sgd.param_groups[0]["nesterov"] and sgd.param_groups[0]["weight_decay"] == 5e-4
    assert sgd.param_groups[1]["weight_decay"] == 0.0  # biases and BN: no decay


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"select": "best_val", "val_fraction": 0.1}, "eval_every >= 1"),
        ({"schedule": "linear"}, "onecycle, cosine, step, constant"),
        ({"milestones": (0.8, 0.2)}, "increasing fractions"),
        ({"val_fraction": 1.0}, r"val_fraction to be a number in \[0, 1\), got 1.0"),
        ({"epochs": True}, "epochs to be an integer >= 1, got True"),
        ({"nesterov": "yes"}, "nesterov to be true or false"),
    ],
)
def test_bad_recipes_are_config_errors(kwargs: dict, message: str):
    with pytest.raises(ConfigError, match=message):
        TrainConfig(**kwargs)


def test_validation_needs_exactly_one_validation_split():
    check_validation(TrainConfig(eval_every=1, val_fraction=0.1), has_val=False)
    check_validation(TrainConfig(eval_every=1), has_val=True)  # the data's own
    with pytest.raises(ConfigError, match="set train.val_fraction > 0"):
        check_validation(TrainConfig(eval_every=1), has_val=False)
    with pytest.raises(ConfigError, match="own val split: set train.val_fraction=0"):
        check_validation(TrainConfig(val_fraction=0.1), has_val=True)


def test_validation_split_is_carved_from_train_only():
    data = create_dataset("digits")
    n_train, test_x = len(data.train_y), data.test_x.clone()
    data.split_validation(0.2, seed=0)
    assert len(data.val_y) + len(data.train_y) == n_train
    assert len(data.val_y) == round(0.2 * n_train)
    assert torch.equal(data.test_x, test_x)
    # no validation image is also a training image (digits has no duplicates in one split)
    train_rows = {row.numpy().tobytes() for row in data.train_x}
    assert not any(row.numpy().tobytes() in train_rows for row in data.val_x)


def test_eval_reads_validation_and_best_val_restores_the_best_epoch(monkeypatch):
    import poolbench.engine.loop as train_module

    splits = []
    real = train_module.evaluate

    def spy(*args, split="test", **kwargs):
        splits.append(split)
        return real(*args, split=split, **kwargs)

    monkeypatch.setattr(train_module, "evaluate", spy)
    cfg = TrainConfig(epochs=3, batch_size=64, eval_every=1, val_fraction=0.1, select="best_val")
    result, _, _ = tiny_run(cfg)
    assert splits == ["val", "val", "val", "test"]  # the test split once, at the end
    best = max(result.history, key=lambda h: h["val_acc"])
    assert result.best_epoch == best["epoch"] and result.val_acc == best["val_acc"]


def test_same_config_and_seed_repeat_exactly_on_cpu():
    cfg = TrainConfig(epochs=2, batch_size=64, val_fraction=0.1, eval_every=1)
    a, _, model_a = tiny_run(cfg, seed=1)
    b, _, model_b = tiny_run(cfg, seed=1)
    c, _, _ = tiny_run(cfg, seed=2)
    assert (a.train_loss, a.test_acc, a.val_acc) == (b.train_loss, b.test_acc, b.val_acc)
    for pa, pb in zip(model_a.parameters(), model_b.parameters(), strict=True):
        assert torch.equal(pa, pb)
    assert a.train_loss != c.train_loss


@pytest.mark.parametrize(("flip", "mirrored"), [("none", False), ("auto", True)])
def test_test_time_mirrors_only_what_training_mirrored(monkeypatch, flip: str, mirrored: bool):
    import poolbench.engine.loop as engine

    seen = []
    real = engine.tta_logits

    def spy(model, x, tta, flip_ok):
        seen.append(flip_ok)
        return real(model, x, tta, flip_ok)

    monkeypatch.setattr(engine, "tta_logits", spy)
    data = small_digits()
    data.flip = True  # as if the data could be mirrored (digits cannot)
    model = create_model("vgg", 10, 1, PoolSpec("max"), PoolSpec("global_avg"), widths=[8, 8, 8])
    cfg = TrainConfig(epochs=1, flip=flip, val_fraction=0.0)
    train(model, data, cfg, Compute(CPU, FP32), seed=0, tta="flip")
    assert seen and set(seen) == {mirrored}


class Reads(Callback):
    """Asks for progress every ``interval`` seconds and counts the reports."""

    def __init__(self, interval: float) -> None:
        self.progress_interval_s = interval
        self.reports = 0

    def on_progress(self, loop, batch: int, loss: float, img_s: float) -> None:
        self.reports += 1


@pytest.mark.parametrize(("interval", "most"), [(None, 0), (3600.0, 0), (0.0, None)])
def test_the_loss_leaves_the_device_once_an_epoch_unless_progress_asks(
    monkeypatch: pytest.MonkeyPatch, interval, most
):
    """Reading a loss (Tensor.item) waits for the device: the loop reads it once an epoch, and
    for a display no more often than its interval, never once a batch by itself."""
    reads = []
    item = torch.Tensor.item
    monkeypatch.setattr(torch.Tensor, "item", lambda t: reads.append(1) or item(t))
    cfg = TrainConfig(epochs=2, batch_size=32, lr=0.05, eval_every=0, val_fraction=0.0)
    callbacks = [] if interval is None else [Reads(interval)]
    torch.manual_seed(0)
    data = small_digits()
    model = create_model(
        "vgg", 10, 1, PoolSpec("max", {"F": 2, "S": 2}), PoolSpec("global_avg"), widths=[8, 8, 8]
    )
    reads.clear()
    train(model, data, cfg, Compute(CPU, FP32), seed=0, callbacks=callbacks)
    batches = 2 * data.steps_per_epoch(32)
    shown = callbacks[0].reports if callbacks else 0
    assert shown == (batches if most is None else most)
    # the epoch losses (2), what the display showed, and the test's own few reads: not per batch
    assert len(reads) - shown < batches // 2, (len(reads), shown, batches)
