"""The training loop: data -> model -> optimiser -> epochs -> evaluation.

One readable function, no framework in between (after airbench and nanoGPT).
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from poolbench.checkpoint import Checkpoint
from poolbench.config import TrainConfig
from poolbench.data.base import ImageData
from poolbench.device import Precision, synchronize
from poolbench.errors import TrainingDiverged
from poolbench.models import eval_mode
from poolbench.optim import SGD, AdamW
from poolbench.progress import RunProgress


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


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Weight decay on weights; none on BatchNorm, biases and pooling parameters (GeM's p)."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.ndim > 1 else no_decay).append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """poolbench's SGD or AdamW (``poolbench.optim``: torch.optim's update rules, faster)."""
    groups = param_groups(model, cfg.weight_decay)
    if cfg.optimizer == "sgd":
        return SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov)
    return AdamW(groups, lr=cfg.lr)


def make_schedule(
    optimizer: torch.optim.Optimizer, cfg: TrainConfig, total_steps: int
) -> torch.optim.lr_scheduler.LRScheduler:
    if cfg.schedule == "onecycle":
        warmup = max(1, int(cfg.warmup_frac * total_steps))

        def factor(step: int) -> float:  # linear warm-up, then linear decay to 0
            if step < warmup:
                return (step + 1) / warmup
            return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

        return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    if cfg.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, total_steps)
    if cfg.schedule == "step":  # multiply by gamma at each milestone (fractions of training)
        steps = [max(1, int(m * total_steps)) for m in cfg.milestones]
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, steps, gamma=cfg.gamma)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    data: ImageData,
    device: torch.device,
    precision: Precision,
    batch_size: int = 512,
    split: str = "test",
    channels_last: bool = False,
) -> tuple[float, float]:
    """Top-1 and top-5 accuracy (0-1) on the ``test`` (or ``val``) split."""
    correct1 = correct5 = total = 0
    batches = data.val_batches(batch_size) if split == "val" else data.test_batches(batch_size)
    with eval_mode(model):
        for x, y in batches:
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with precision.autocast(device):
                logits = model(x)
            k = min(5, logits.shape[1])
            top = logits.float().topk(k, dim=1).indices
            correct1 += (top[:, 0] == y).sum().item()
            correct5 += (top == y[:, None]).any(dim=1).sum().item()
            total += len(y)
    return correct1 / total, correct5 / total


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
) -> TrainResult:
    """Train ``model`` on ``data`` for ``cfg.epochs`` and evaluate it on the test split.

    With ``cfg.val_fraction`` a validation split is carved from the training images first
    (seeded by ``seed``); every ``cfg.eval_every`` epochs the model is scored on it, and with
    ``cfg.select=best_val`` the best-scoring epoch's weights are restored before the one test.

    ``channels_last``: feed the batches in NHWC memory order (the model should be converted
    too); it pays off with bf16 on CPU (see ``resolve_channels_last``).

    With ``checkpoint``, training resumes after its last saved epoch and saves after each one.
    """
    if cfg.val_fraction > 0:
        data.split_validation(cfg.val_fraction, seed)
    generator = torch.Generator(device=device).manual_seed(seed)
    optimizer = make_optimizer(model, cfg)
    steps = data.steps_per_epoch(cfg.batch_size)
    schedule = make_schedule(optimizer, cfg, cfg.epochs * steps)
    scaler = torch.amp.GradScaler(device.type, enabled=precision.use_scaler)

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
    stateful = {"model": model, "optimizer": optimizer, "schedule": schedule, "scaler": scaler}
    if checkpoint is not None:
        totals = checkpoint.restore(stateful, generator) or totals
    first_epoch = checkpoint.epoch + 1 if checkpoint is not None else 1
    images, train_seconds = totals["images"], totals["train_seconds"]
    epoch_loss = totals["epoch_loss"]
    history: list[dict[str, float]] = totals["history"]
    best: tuple[float, int, dict] | None = totals["best"]
    with RunProgress(title, cfg.epochs, steps, live=live, done=first_epoch - 1) as progress:
        for epoch in range(first_epoch, cfg.epochs + 1):
            if checkpoint is not None:
                checkpoint.running = epoch
            synchronize(device)
            start = time.perf_counter()
            loss_sum = torch.zeros((), device=device)
            batches = 0
            for batch, (x, y) in enumerate(data.train_batches(cfg.batch_size, generator), 1):
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
                loss_sum += loss.detach()
                batches += 1
                images += len(y)
                if progress.live:
                    elapsed = train_seconds + time.perf_counter() - start
                    progress.step(epoch, batch, loss.item(), images / max(elapsed, 1e-9))
            synchronize(device)
            train_seconds += time.perf_counter() - start
            epoch_loss = (loss_sum / max(batches, 1)).item()
            if not math.isfinite(epoch_loss):
                raise TrainingDiverged(f"training loss is {epoch_loss} at epoch {epoch}")
            val_acc = None
            if cfg.eval_every and (epoch % cfg.eval_every == 0 or epoch == cfg.epochs):
                val_acc, _ = evaluate(
                    model, data, device, precision, split="val", channels_last=channels_last
                )
                history.append({"epoch": epoch, "train_loss": epoch_loss, "val_acc": val_acc})
                if cfg.select == "best_val" and (best is None or val_acc > best[0]):
                    best = (val_acc, epoch, copy.deepcopy(model.state_dict()))
            if checkpoint is not None:
                totals = {
                    "images": images,
                    "train_seconds": train_seconds,
                    "epoch_loss": epoch_loss,
                    "history": history,
                    "best": best,
                }
                checkpoint.save(epoch, stateful, generator, totals)
            progress.epoch_end(epoch, epoch_loss, val_acc, images / max(train_seconds, 1e-9))

    best_epoch = cfg.epochs
    if best is not None:
        best_epoch = best[1]
        model.load_state_dict(best[2])
    final_val = None
    if cfg.val_fraction > 0:
        final_val = next((h["val_acc"] for h in history if h["epoch"] == best_epoch), None)
        if final_val is None:
            final_val, _ = evaluate(
                model, data, device, precision, split="val", channels_last=channels_last
            )
    test_acc, test_top5 = evaluate(model, data, device, precision, channels_last=channels_last)
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
