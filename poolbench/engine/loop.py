"""The training loop: data -> model -> optimiser -> epochs -> evaluation.

One readable module, no framework in between (after airbench and nanoGPT): :func:`train` sets a
run up, :func:`train_epoch` is one pass over the training batches, and the callbacks
(:mod:`poolbench.engine.callbacks`) are how checkpoints, loggers and a display follow it.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from poolbench.core.config import TrainConfig
from poolbench.core.errors import ConfigError, TrainingDiverged
from poolbench.data.base import ImageData
from poolbench.engine.callbacks import Callback, Loop, LoopState, Stateful
from poolbench.engine.recipe import Lookahead, make_optimizer, make_schedule
from poolbench.measure.device import Precision, synchronize
from poolbench.models.inspect import eval_mode


@dataclass
class TrainResult:
    train_loss: float
    test_acc: float
    test_top5: float
    train_time_s: float
    throughput_img_s: float
    epochs: int
    val_acc: float | None = None
    best_epoch: int | None = None
    history: list[dict[str, float]] = field(default_factory=list)


def tta_logits(model: nn.Module, x: Tensor, tta: str, flip: bool) -> Tensor:
    """Logits of ``x`` with test-time augmentation (see ``EvalConfig``): ``flip`` averages the
    image and its mirror (where the data flips), ``flip_translate`` also averages 1 px
    translations up-left and down-right (reflect-padded), airbench's weighting."""

    def mirrored(images: Tensor) -> Tensor:
        logits = model(images).float()
        if flip and tta != "none":
            logits = 0.5 * (logits + model(images.flip(-1)).float())
        return logits

    logits = mirrored(x)
    if tta == "flip_translate":
        h, w = x.shape[-2:]
        padded = F.pad(x, (1, 1, 1, 1), mode="reflect")
        shifted = [padded[..., :h, :w], padded[..., 2 : h + 2, 2 : w + 2]]
        if x.is_contiguous(memory_format=torch.channels_last):
            shifted = [t.contiguous(memory_format=torch.channels_last) for t in shifted]
        logits = 0.5 * logits + 0.25 * (mirrored(shifted[0]) + mirrored(shifted[1]))
    return logits


@torch.no_grad()
def evaluate(
    model: nn.Module,
    data: ImageData,
    device: torch.device,
    precision: Precision,
    batch_size: int = 512,
    split: str = "test",
    channels_last: bool = False,
    tta: str = "none",
    flip: bool | None = None,
) -> tuple[float, float]:
    """Top-1 and top-5 accuracy (0-1) on the ``test`` (or ``val``) split, with test-time
    augmentation ``tta`` (:func:`tta_logits`), mirroring only where ``flip`` (None: where the
    data flips; training passes whether its recipe flipped)."""
    correct1 = correct5 = total = 0
    batches = data.val_batches(batch_size) if split == "val" else data.test_batches(batch_size)
    if flip is None:
        flip = bool(getattr(data, "flip", False))
    with eval_mode(model):
        for x, y in batches:
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with precision.autocast(device):
                logits = tta_logits(model, x, tta, flip)
            k = min(5, logits.shape[1])
            top = logits.float().topk(k, dim=1).indices
            correct1 = correct1 + (top[:, 0] == y).sum()  # counted on the device, read once
            correct5 = correct5 + (top == y[:, None]).any(dim=1).sum()
            total += len(y)
    return int(correct1) / total, int(correct5) / total


def check_validation(cfg: TrainConfig, has_val: bool) -> None:
    """A recipe that scores a validation split needs one: the data's own (``has_val``) or one
    carved from train, not both; the test split is never scored during training."""
    if has_val and cfg.val_fraction > 0:
        raise ConfigError(
            "the data has its own val split: set train.val_fraction=0 to use it (a fraction of "
            "train would be held out besides)"
        )
    if cfg.needs_val and cfg.val_fraction == 0 and not has_val:
        raise ConfigError(
            "train.eval_every > 0 and train.select=best_val evaluate on a validation split, "
            "never the test split: set train.val_fraction > 0 (e.g. 0.1)"
        )


@dataclass(frozen=True)
class Compute:
    """Where and how a model computes: the device, the autocast precision, and whether batches
    go in NHWC memory order (``channels_last``; the model should be converted too)."""

    device: torch.device
    precision: Precision
    channels_last: bool = False


@dataclass
class Recipe:
    """What one optimisation step needs, made from the recipe (:mod:`poolbench.engine.recipe`)."""

    optimizer: torch.optim.Optimizer
    schedule: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    lookahead: Lookahead | None


def train_epoch(
    model: nn.Module,
    data: ImageData,
    cfg: TrainConfig,
    compute: Compute,
    recipe: Recipe,
    loop: Loop,
    callbacks: Sequence[Callback] = (),
) -> None:
    """Train epoch ``loop.running``: one pass over the shuffled, augmented training batches,
    one optimiser step each; adds the epoch's images, seconds and mean loss to ``loop.state``.

    The loss stays on the device; it is read once at the end of the epoch and, for callbacks
    that ask for progress, at most every ``progress_interval_s`` seconds, never per batch (on a
    GPU each read waits for every queued kernel)."""
    device, state, epoch = compute.device, loop.state, loop.running
    intervals = [c.progress_interval_s for c in callbacks if c.progress_interval_s is not None]
    interval = min(intervals, default=None)
    synchronize(device)
    start = last_report = time.perf_counter()
    loss_sum = torch.zeros((), device=device)
    batches = images = 0
    step = (epoch - 1) * loop.steps_per_epoch
    for batch, (x, y) in enumerate(
        data.train_batches(cfg.batch_size, loop.generator, epoch=epoch), 1
    ):
        if compute.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with compute.precision.autocast(device):
            logits = model(x)
        loss = F.cross_entropy(logits.float(), y, label_smoothing=cfg.label_smoothing)
        recipe.optimizer.zero_grad(set_to_none=True)
        recipe.scaler.scale(loss).backward()
        recipe.scaler.step(recipe.optimizer)
        recipe.scaler.update()
        recipe.schedule.step()
        step += 1
        if recipe.lookahead is not None:
            recipe.lookahead.step(model, step)
        loss_sum += loss.detach()
        batches += 1
        images += len(y)
        if interval is not None and (now := time.perf_counter()) - last_report >= interval:
            last_report = now
            img_s = (state.images + images) / (state.train_seconds + now - start)
            value = loss.item()
            for callback in callbacks:
                if callback.progress_interval_s is not None:
                    callback.on_progress(loop, batch, value, img_s)
    if recipe.lookahead is not None and epoch == cfg.epochs:
        recipe.lookahead.update(model, 1.0)  # end on the average
    synchronize(device)
    seconds = time.perf_counter() - start
    state.train_seconds += seconds
    state.images += images
    state.epoch_loss = (loss_sum / max(batches, 1)).item()
    if not math.isfinite(state.epoch_loss):
        raise TrainingDiverged(f"training loss is {state.epoch_loss} at epoch {epoch}")
    state.history.append(
        {
            "epoch": epoch,
            "train_loss": state.epoch_loss,
            "val_acc": None,
            "lr": recipe.schedule.get_last_lr()[0],
            "img_s": images / max(seconds, 1e-9),
        }
    )


def train(
    model: nn.Module,
    data: ImageData,
    cfg: TrainConfig,
    compute: Compute,
    seed: int,
    tta: str = "none",
    callbacks: Sequence[Callback] = (),
) -> TrainResult:
    """Train ``model`` on ``data`` for ``cfg.epochs`` and evaluate it on the test split.

    With ``cfg.val_fraction`` a validation split is carved from the training images first
    (seeded by ``seed``; data with its own val split uses that); every ``cfg.eval_every``
    epochs the model is scored on it, and with ``cfg.select=best_val`` the best-scoring epoch's
    weights are restored before the one test, scored with test-time augmentation ``tta``.

    ``callbacks`` (:mod:`poolbench.engine.callbacks`) follow the run: a
    :class:`~poolbench.engine.checkpoint.CheckpointCallback` resumes it after its last saved
    epoch and saves after each one, a logger writes each epoch, a display shows progress.
    A model may define ``init_from_data(images)`` (called once with up to 5,000 normalised
    training images before the first step, e.g. airbench's whitening layer) and
    ``start_epoch(epoch)`` (called before each epoch).
    """
    device = compute.device
    check_validation(cfg, data.has_val)
    if cfg.val_fraction > 0:
        data.split_validation(cfg.val_fraction, seed)
    data.configure_augmentation(cfg.flip, cfg.translate, cfg.pad_mode, seed)
    hooks = getattr(model, "_orig_mod", model)  # the module behind torch.compile
    if hasattr(hooks, "init_from_data"):
        sample = torch.Generator(device=device).manual_seed(seed)
        images, _ = next(data.train_batches(5000, sample, augment=False))
        hooks.init_from_data(images)
    generator = torch.Generator(device=device).manual_seed(seed)
    steps = data.steps_per_epoch(cfg.batch_size)
    total_steps = cfg.epochs * steps
    optimizer = make_optimizer(model, cfg)
    recipe = Recipe(
        optimizer,
        make_schedule(optimizer, cfg, total_steps),
        torch.amp.GradScaler(device.type, enabled=compute.precision.use_scaler),
        Lookahead(model, cfg.lookahead_every, cfg.lookahead_decay, total_steps)
        if cfg.lookahead_every
        else None,
    )
    stateful: dict[str, Stateful] = {
        "model": model,
        "optimizer": recipe.optimizer,
        "schedule": recipe.schedule,
        "scaler": recipe.scaler,
    }
    if recipe.lookahead is not None:
        stateful["lookahead"] = recipe.lookahead

    model.train()
    loop = Loop(LoopState(), cfg.epochs, steps, stateful, generator)
    for callback in callbacks:
        callback.on_train_start(loop)
    try:
        for epoch in range(loop.state.epoch + 1, cfg.epochs + 1):
            loop.running = epoch
            for callback in callbacks:
                callback.on_epoch_start(loop)
            if hasattr(hooks, "start_epoch"):
                hooks.start_epoch(epoch)
            train_epoch(model, data, cfg, compute, recipe, loop, callbacks)
            _score_validation(model, data, cfg, compute, loop.state, epoch)
            loop.state.epoch = epoch
            for callback in callbacks:
                callback.on_epoch_end(loop)
    finally:
        for callback in callbacks:
            callback.on_train_end(loop)
    return _result(model, data, cfg, compute, loop.state, tta)


def _score_validation(
    model: nn.Module,
    data: ImageData,
    cfg: TrainConfig,
    compute: Compute,
    state: LoopState,
    epoch: int,
) -> None:
    """Every ``cfg.eval_every`` epochs (and the last), the validation accuracy into the
    epoch's history row, and the best epoch's weights kept under ``select=best_val``."""
    if not (data.has_val and cfg.eval_every):
        return
    if epoch % cfg.eval_every and epoch != cfg.epochs:
        return
    val_acc, _ = evaluate(
        model,
        data,
        compute.device,
        compute.precision,
        split="val",
        channels_last=compute.channels_last,
    )
    state.history[-1]["val_acc"] = val_acc
    if cfg.select == "best_val" and (state.best is None or val_acc > state.best[0]):
        state.best = (val_acc, epoch, copy.deepcopy(model.state_dict()))


def _result(
    model: nn.Module,
    data: ImageData,
    cfg: TrainConfig,
    compute: Compute,
    state: LoopState,
    tta: str,
) -> TrainResult:
    """The selected epoch's weights scored: validation (the recorded score where there is
    one) and the test split, once."""
    best_epoch = cfg.epochs
    if state.best is not None:
        best_epoch = state.best[1]
        model.load_state_dict(state.best[2])
    final_val = None
    if data.has_val:
        final_val = next(
            (
                h["val_acc"]
                for h in state.history
                if h["epoch"] == best_epoch and h["val_acc"] is not None
            ),
            None,
        )
        if final_val is None:
            final_val, _ = evaluate(
                model,
                data,
                compute.device,
                compute.precision,
                split="val",
                channels_last=compute.channels_last,
            )
    # a network trained without mirror images is not scored on them (train.flip=none)
    flipped = cfg.flip != "none" and bool(getattr(data, "flip", False))
    test_acc, test_top5 = evaluate(
        model,
        data,
        compute.device,
        compute.precision,
        channels_last=compute.channels_last,
        tta=tta,
        flip=flipped,
    )
    return TrainResult(
        train_loss=state.epoch_loss,
        test_acc=test_acc,
        test_top5=test_top5,
        train_time_s=state.train_seconds,
        throughput_img_s=state.img_s,
        epochs=cfg.epochs,
        val_acc=final_val,
        best_epoch=best_epoch,
        history=state.history,
    )


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)


__all__ = ["TrainResult", "evaluate", "seed_everything", "train"]
