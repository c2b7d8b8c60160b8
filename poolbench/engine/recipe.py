"""The recipe: parameter groups (which parameters decay, at which learning rate), the
learning-rate schedule, the optimiser, and airbench's Lookahead-style average. The training loop
(:mod:`poolbench.engine.loop`) asks here for each and knows nothing of how they are made.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from poolbench.core.config import TrainConfig
from poolbench.engine.optim import SGD, AdamW
from poolbench.pooling.base import GlobalPool, LocalPool


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
