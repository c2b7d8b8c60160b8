"""The training loop: data -> model -> optimiser -> epochs -> evaluation.

One readable function, no framework in between (after airbench and nanoGPT).
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from poolbench.core.config import TrainConfig
from poolbench.core.errors import ConfigError, TrainingDiverged
from poolbench.data.base import ImageData
from poolbench.engine.checkpoint import Checkpoint
from poolbench.engine.optim import SGD, AdamW
from poolbench.measure.device import Precision, synchronize
from poolbench.models import eval_mode
from poolbench.pooling.base import GlobalPool, LocalPool
from poolbench.ui.progress import RunProgress


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


def learning_rates(cfg: TrainConfig) -> tuple[float, float]:
    """The optimiser's learning rate and weight decay for the mean loss of a batch.

    Plain: ``cfg.lr`` and ``cfg.weight_decay`` as given. ``cfg.decoupled`` (airbench): both are
    per 1024 examples and decoupled from the momentum, so that the optimiser's are
    ``lr * batch / k`` and ``weight_decay / lr`` with ``k = 1024 (1 + 1 / (1 - momentum))``,
    airbench94's normalisation (1024 examples times the gradient's own step plus the
    1 / (1 - momentum) that momentum accumulates; it is applied with or without Nesterov).
    torch's SGD multiplies the decay by the learning rate, so the decay per step is
    ``weight_decay * batch / k``.
    """
    if not cfg.decoupled:
        return cfg.lr, cfg.weight_decay
    k = 1024 * (1 + 1 / (1 - cfg.momentum))
    return cfg.lr * cfg.batch_size / k, cfg.weight_decay / cfg.lr


def param_groups(model: nn.Module, cfg: TrainConfig) -> list[dict[str, Any]]:
    """Weight decay on weights; none on biases and BatchNorm unless ``cfg.decay_all``; never on
    a pooling layer's scalars and vectors (GeM's and Lp's learned p, mixing weights): decay
    would pull an exponent towards 0 (under airbench's recipe GeM's p fell from 3 to 2.1 in 200
    steps with no gradient from the loss) and so bias the comparison against learned pools.
    BatchNorm biases at ``cfg.bn_bias_lr`` times the learning rate (with the decay per step
    unchanged)."""
    lr, decay_rate = learning_rates(cfg)
    norm_biases = {
        id(m.bias)
        for m in model.modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.bias is not None
    }
    pool_scalars = {
        id(p)
        for m in model.modules()
        if isinstance(m, (LocalPool, GlobalPool))
        for p in m.parameters()
        if p.ndim <= 1
    }
    decay, no_decay, scaled = [], [], []
    for p in model.parameters():
        if not p.requires_grad:
            continue
        if cfg.bn_bias_lr != 1 and id(p) in norm_biases:
            scaled.append(p)
        elif id(p) in pool_scalars:
            no_decay.append(p)
        else:
            (decay if p.ndim > 1 or cfg.decay_all else no_decay).append(p)
    groups = [
        {"params": decay, "lr": lr, "weight_decay": decay_rate},
        {"params": no_decay, "lr": lr, "weight_decay": 0.0},
    ]
    if scaled:
        bias_decay = decay_rate / cfg.bn_bias_lr if cfg.decay_all else 0.0
        groups.append({"params": scaled, "lr": lr * cfg.bn_bias_lr, "weight_decay": bias_decay})
    return groups


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """poolbench's SGD or AdamW (``poolbench.engine.optim``: torch.optim's update rules without the
    dynamo import, multi-tensor on the CPU)."""
    groups = param_groups(model, cfg)
    lr = groups[0]["lr"]
    if cfg.optimizer == "sgd":
        return SGD(groups, lr=lr, momentum=cfg.momentum, nesterov=cfg.nesterov)
    return AdamW(groups, lr=lr)


def make_schedule(
    optimizer: torch.optim.Optimizer, cfg: TrainConfig, total_steps: int
) -> torch.optim.lr_scheduler.LRScheduler:
    if cfg.schedule == "onecycle":
        warmup = max(1, int(cfg.warmup_frac * total_steps))
        start, end = cfg.lr_start, cfg.lr_end

        def factor(step: int) -> float:  # linear from start to 1, then linear to end
            if step < warmup:
                frac = (step + 1) / warmup if start == 0 else step / warmup
                return start + (1 - start) * frac
            frac = min(1.0, (step - warmup) / max(1, total_steps - warmup))
            return 1 + (end - 1) * frac

        return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    if cfg.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, total_steps)
    if cfg.schedule == "step":  # multiply by gamma at each milestone (fractions of training)
        steps = [max(1, int(m * total_steps)) for m in cfg.milestones]
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, steps, gamma=cfg.gamma)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)


class Lookahead:
    """airbench's Lookahead-style average (Jordan 2024, after Zhang et al. 2019): every
    ``every`` steps each floating-point tensor of the model's state (weights and BatchNorm
    statistics) moves into its running average, ``avg += (1 - d) (w - avg)``, and the model
    continues from the average; ``d = base ** every * (step / total) ** 3`` grows from 0, so
    the average follows the weights early and holds them late. Training ends on the average.
    """

    def __init__(self, model: nn.Module, every: int, base: float, total_steps: int) -> None:
        self.every, self.base, self.total = every, base, total_steps
        self.average = {
            k: v.detach().clone() for k, v in model.state_dict().items() if v.is_floating_point()
        }

    @torch.no_grad()
    def update(self, model: nn.Module, decay: float) -> None:
        state = model.state_dict()
        for key, average in self.average.items():
            average.lerp_(state[key], 1 - decay)
            state[key].copy_(average)

    def step(self, model: nn.Module, step: int) -> None:
        if step % self.every == 0:
            self.update(model, self.base**self.every * (step / self.total) ** 3)

    def state_dict(self) -> dict[str, Any]:
        return {"average": self.average}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key, value in state["average"].items():
            self.average[key].copy_(value)


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
            correct1 += (top[:, 0] == y).sum().item()
            correct5 += (top == y[:, None]).any(dim=1).sum().item()
            total += len(y)
    return correct1 / total, correct5 / total


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


def train(
    model: nn.Module,
    data: ImageData,
    cfg: TrainConfig,
    device: torch.device,
    precision: Precision,
    seed: int,
    title: str = "run",
    live: bool | None = None,
    channels_last: bool = False,
    checkpoint: Checkpoint | None = None,
    tta: str = "none",
    on_epoch: Callable[[list[dict[str, Any]]], None] | None = None,
) -> TrainResult:
    """Train ``model`` on ``data`` for ``cfg.epochs`` and evaluate it on the test split.

    With ``cfg.val_fraction`` a validation split is carved from the training images first
    (seeded by ``seed``; data with its own val split uses that); every ``cfg.eval_every``
    epochs the model is scored on it, and with ``cfg.select=best_val`` the best-scoring epoch's
    weights are restored before the one test, scored with test-time augmentation ``tta``.

    ``channels_last``: feed the batches in NHWC memory order (the model should be converted
    too); it pays off with bf16 on CPU (see ``resolve_channels_last``).

    With ``checkpoint``, training resumes after its last saved epoch and saves after each one.
    ``on_epoch`` receives the per-epoch history (epoch, train_loss, val_acc, lr, img_s) after
    every epoch. A model may define ``init_from_data(images)`` (called once with up to 5,000
    normalised training images before the first step, e.g. airbench's whitening layer) and
    ``start_epoch(epoch)`` (called before each epoch).
    """
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
    optimizer = make_optimizer(model, cfg)
    steps = data.steps_per_epoch(cfg.batch_size)
    total_steps = cfg.epochs * steps
    schedule = make_schedule(optimizer, cfg, total_steps)
    scaler = torch.amp.GradScaler(device.type, enabled=precision.use_scaler)
    lookahead = (
        Lookahead(model, cfg.lookahead_every, cfg.lookahead_decay, total_steps)
        if cfg.lookahead_every
        else None
    )

    model.train()
    # The loop's running state; everything in it goes into each checkpoint (any picklable value),
    # so that a resumed run (validation history and best weights included) ends as an
    # uninterrupted one would.
    totals: dict[str, Any] = {
        "images": 0,
        "train_seconds": 0.0,
        "epoch_loss": math.nan,
        "history": [],
        "best": None,
    }
    stateful: dict[str, Any] = {
        "model": model,
        "optimizer": optimizer,
        "schedule": schedule,
        "scaler": scaler,
    }
    if lookahead is not None:
        stateful["lookahead"] = lookahead
    if checkpoint is not None:
        totals = checkpoint.restore(stateful, generator) or totals
    first_epoch = checkpoint.epoch + 1 if checkpoint is not None else 1
    images, train_seconds = totals["images"], totals["train_seconds"]
    epoch_loss = totals["epoch_loss"]
    history: list[dict[str, Any]] = totals["history"]
    best: tuple[float, int, dict] | None = totals["best"]
    step = (first_epoch - 1) * steps
    with RunProgress(title, cfg.epochs, steps, live=live, done=first_epoch - 1) as progress:
        for epoch in range(first_epoch, cfg.epochs + 1):
            if checkpoint is not None:
                checkpoint.running = epoch
            if hasattr(hooks, "start_epoch"):
                hooks.start_epoch(epoch)
            synchronize(device)
            start = time.perf_counter()
            loss_sum = torch.zeros((), device=device)
            batches = 0
            epoch_images = 0
            for batch, (x, y) in enumerate(
                data.train_batches(cfg.batch_size, generator, epoch=epoch), 1
            ):
                if channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                with precision.autocast(device):
                    logits = model(x)
                loss = F.cross_entropy(logits.float(), y, label_smoothing=cfg.label_smoothing)
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
                schedule.step()
                step += 1
                if lookahead is not None:
                    lookahead.step(model, step)
                loss_sum += loss.detach()
                batches += 1
                epoch_images += len(y)
                if progress.live:
                    elapsed = train_seconds + time.perf_counter() - start
                    progress.step(epoch, batch, loss.item(), (images + epoch_images) / elapsed)
            if lookahead is not None and epoch == cfg.epochs:
                lookahead.update(model, 1.0)  # end on the average
            synchronize(device)
            epoch_seconds = time.perf_counter() - start
            train_seconds += epoch_seconds
            images += epoch_images
            epoch_loss = (loss_sum / max(batches, 1)).item()
            if not math.isfinite(epoch_loss):
                raise TrainingDiverged(f"training loss is {epoch_loss} at epoch {epoch}")
            val_acc = None
            if (
                data.has_val
                and cfg.eval_every
                and (epoch % cfg.eval_every == 0 or epoch == cfg.epochs)
            ):
                val_acc, _ = evaluate(
                    model, data, device, precision, split="val", channels_last=channels_last
                )
                if cfg.select == "best_val" and (best is None or val_acc > best[0]):
                    best = (val_acc, epoch, copy.deepcopy(model.state_dict()))
            history.append(
                {
                    "epoch": epoch,
                    "train_loss": epoch_loss,
                    "val_acc": val_acc,
                    "lr": schedule.get_last_lr()[0],
                    "img_s": epoch_images / max(epoch_seconds, 1e-9),
                }
            )
            if checkpoint is not None:
                totals = {
                    "images": images,
                    "train_seconds": train_seconds,
                    "epoch_loss": epoch_loss,
                    "history": history,
                    "best": best,
                }
                checkpoint.save(epoch, stateful, generator, totals)
            if on_epoch is not None:
                on_epoch(history)
            progress.epoch_end(epoch, epoch_loss, val_acc, images / max(train_seconds, 1e-9))

    best_epoch = cfg.epochs
    if best is not None:
        best_epoch = best[1]
        model.load_state_dict(best[2])
    final_val = None
    if data.has_val:
        final_val = next(
            (
                h["val_acc"]
                for h in history
                if h["epoch"] == best_epoch and h["val_acc"] is not None
            ),
            None,
        )
        if final_val is None:
            final_val, _ = evaluate(
                model, data, device, precision, split="val", channels_last=channels_last
            )
    # a network trained without mirror images is not scored on them (train.flip=none)
    flipped = cfg.flip != "none" and bool(getattr(data, "flip", False))
    test_acc, test_top5 = evaluate(
        model, data, device, precision, channels_last=channels_last, tta=tta, flip=flipped
    )
    return TrainResult(
        train_loss=epoch_loss,
        test_acc=test_acc,
        test_top5=test_top5,
        train_time_s=train_seconds,
        throughput_img_s=images / max(train_seconds, 1e-9),
        epochs=cfg.epochs,
        val_acc=final_val,
        best_epoch=best_epoch,
        history=history,
    )


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)


__all__ = ["TrainResult", "evaluate", "seed_everything", "train"]
