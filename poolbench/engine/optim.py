"""poolbench's optimisers: SGD (momentum, Nesterov, weight decay) and AdamW.

They follow the update rules of ``torch.optim.SGD`` (dampening 0) and ``torch.optim.AdamW``
(amsgrad off) step for step; ``tests/unit/engine/test_optim.py`` checks both against torch
over many steps, and checks that their state dicts load into torch's and back. Why not torch's own:

- **startup**: in torch 2.x, ``Optimizer.__init__`` (through ``add_param_group``), ``step``,
  ``zero_grad``, ``state_dict`` and ``load_state_dict`` import ``torch._dynamo`` on their first
  call, even when nothing is compiled: about a second, a large share of the time from
  ``poolbench run`` to the first training step (docs/speed.md). Every method that would do so
  is implemented here instead.
- **speed**: on the CPU, torch.optim updates one parameter at a time (its multi-tensor path is
  the default only on CUDA); these update every parameter of a group with one multi-tensor
  (``torch._foreach_*``) op per arithmetic step.

Both subclass ``torch.optim.Optimizer``, so torch's LR schedulers and ``GradScaler`` drive them.
Sparse gradients are not supported (no poolbench model produces them).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor


class _Optimizer(torch.optim.Optimizer):
    """The parts of ``torch.optim.Optimizer`` that import ``torch._dynamo``, without it."""

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        params = param_group["params"]
        params = [params] if isinstance(params, Tensor) else list(params)
        seen = {id(p) for group in self.param_groups for p in group["params"]}
        for p in params:
            if not isinstance(p, Tensor) or not p.is_leaf:
                raise ValueError("an optimiser can only optimise leaf tensors")
            if id(p) in seen:
                raise ValueError("a parameter appears in more than one parameter group")
            seen.add(id(p))
        self.param_groups.append({**self.defaults, **param_group, "params": params})

    def zero_grad(self, set_to_none: bool = True) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                if set_to_none:
                    p.grad = None
                else:
                    p.grad.detach_().zero_()

    def _params(self) -> list[Tensor]:
        return [p for group in self.param_groups for p in group["params"]]

    def state_dict(self) -> dict[str, Any]:
        """The same layout as torch's: parameters by their index across all groups."""
        index = {id(p): i for i, p in enumerate(self._params())}
        groups = [
            {
                **{k: v for k, v in group.items() if k != "params"},
                "params": [index[id(p)] for p in group["params"]],
            }
            for group in self.param_groups
        ]
        state = {index[id(p)]: dict(s) for p, s in self.state.items() if id(p) in index}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        groups = state_dict["param_groups"]
        if [len(g["params"]) for g in groups] != [len(g["params"]) for g in self.param_groups]:
            raise ValueError("the loaded state dict has parameter groups of other sizes")
        params = self._params()
        for group, saved in zip(self.param_groups, groups, strict=True):
            group.update({k: v for k, v in saved.items() if k != "params"})
        self.state = defaultdict(dict)
        for i, saved in state_dict["state"].items():
            p = params[int(i)]
            self.state[p] = {key: _restore(value, p, key) for key, value in saved.items()}

    @torch.no_grad()
    def step(self, closure: Callable[[], Tensor] | None = None) -> Tensor | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            grads = [p.grad for p in params]
            if any(g.is_sparse for g in grads):
                raise RuntimeError(f"{type(self).__name__} does not support sparse gradients")
            if params:
                self._update(group, params, grads)
        return loss

    def _update(self, group: dict[str, Any], params: list[Tensor], grads: list[Tensor]) -> None:
        """One step for the parameters of ``group`` that have gradients."""
        raise NotImplementedError


def _restore(value: Any, p: Tensor, key: str) -> Any:
    """A loaded state value on its parameter's device (and dtype, but for step counts)."""
    if not isinstance(value, Tensor):
        return value
    if key == "step" or not value.is_floating_point():
        return value.to(device=p.device)
    return value.to(device=p.device, dtype=p.dtype)


class SGD(_Optimizer):
    """Stochastic gradient descent with momentum (optionally Nesterov) and L2 weight decay.

    Per parameter, with gradient g: g += weight_decay * p; buf = g on the first step, else
    buf = momentum * buf + g; update = g + momentum * buf (Nesterov) or buf; p -= lr * update.
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float,
        momentum: float = 0.0,
        nesterov: bool = False,
        weight_decay: float = 0.0,
    ) -> None:
        if lr < 0 or momentum < 0 or weight_decay < 0:
            raise ValueError(
                f"invalid SGD settings: lr={lr}, momentum={momentum}, "
                f"weight_decay={weight_decay} (each must be >= 0)"
            )
        if nesterov and momentum <= 0:
            raise ValueError("Nesterov momentum requires momentum > 0")
        defaults = {
            "lr": lr,
            "momentum": momentum,
            "nesterov": nesterov,
            "weight_decay": weight_decay,
        }
        super().__init__(params, defaults)

    def _update(self, group: dict[str, Any], params: list[Tensor], grads: list[Tensor]) -> None:
        lr, momentum, decay = group["lr"], group["momentum"], group["weight_decay"]
        if decay:
            grads = torch._foreach_add(grads, params, alpha=decay)
        if momentum:
            grads = self._momentum(params, grads, momentum, group["nesterov"])
        torch._foreach_add_(params, grads, alpha=-lr)

    def _momentum(
        self, params: list[Tensor], grads: list[Tensor], momentum: float, nesterov: bool
    ) -> list[Tensor]:
        """Update the momentum buffers; returns the step direction."""
        bufs: list[Tensor] = []
        old_g, old_b = [], []
        for p, g in zip(params, grads, strict=True):
            state = self.state[p]
            buf = state.get("momentum_buffer")
            if buf is None:  # first step: the buffer starts as the gradient itself
                buf = state["momentum_buffer"] = torch.clone(g).detach()
            else:
                old_g.append(g)
                old_b.append(buf)
            bufs.append(buf)
        if old_b:
            torch._foreach_mul_(old_b, momentum)
            torch._foreach_add_(old_b, old_g)
        if nesterov:
            return torch._foreach_add(grads, bufs, alpha=momentum)
        return bufs


class AdamW(_Optimizer):
    """Adam with decoupled weight decay (Loshchilov & Hutter 2019), as torch.optim.AdamW.

    Per parameter at step t: p *= 1 - lr * weight_decay; m = beta1 m + (1 - beta1) g;
    v = beta2 v + (1 - beta2) g^2; p -= lr / (1 - beta1^t) * m / (sqrt(v / (1 - beta2^t)) + eps).
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
    ) -> None:
        if lr < 0 or eps < 0 or weight_decay < 0 or not all(0 <= b < 1 for b in betas):
            raise ValueError(
                f"invalid AdamW settings: lr={lr}, betas={betas}, eps={eps}, "
                f"weight_decay={weight_decay}"
            )
        defaults = {"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay}
        super().__init__(params, defaults)

    def _update(self, group: dict[str, Any], params: list[Tensor], grads: list[Tensor]) -> None:
        lr, (beta1, beta2), eps = group["lr"], group["betas"], group["eps"]
        m, v, steps = [], [], []
        for p in params:
            state = self.state[p]
            if not state:
                # torch keeps the step count as a float tensor; so do we, for state dicts
                # that load either way
                state["step"] = torch.zeros((), dtype=torch.float32)
                state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            m.append(state["exp_avg"])
            v.append(state["exp_avg_sq"])
            steps.append(state["step"])
        torch._foreach_add_(steps, 1.0)
        if group["weight_decay"]:
            torch._foreach_mul_(params, 1 - lr * group["weight_decay"])
        torch._foreach_lerp_(m, grads, 1 - beta1)
        torch._foreach_mul_(v, beta2)
        torch._foreach_addcmul_(v, grads, grads, value=1 - beta2)
        counts = [float(s) for s in steps]
        step_sizes = [-lr / (1 - beta1**t) for t in counts]
        root_corrections = [math.sqrt(1 - beta2**t) for t in counts]
        denom = torch._foreach_sqrt(v)
        torch._foreach_div_(denom, root_corrections)
        torch._foreach_add_(denom, eps)
        torch._foreach_addcdiv_(params, m, denom, step_sizes)


__all__ = ["SGD", "AdamW"]
