"""Forward cost per image: FLOPs and MACs with the pooling layers counted.

Why not FlopCounterMode, fvcore or thop as they are: all three count only matrix products and
convolutions, so max, average and Lp pooling cost zero and every pooling layer looks free,
which is the very claim ("pooling cuts computation") poolbench has to measure. ``model_cost``
runs one eval-mode forward pass of one image under a dispatch mode that sees every aten op and
counts:

- **outside pooling layers**: matrix products and convolutions only, with PyTorch's own
  formulas (``torch.utils.flop_counter.flop_registry``). BatchNorm, ReLU and other elementwise
  work is not counted, the usual convention for CNN FLOP tables (BatchNorm folds into the
  convolution at inference).
- **inside pooling layers** (any :class:`LocalPool` or :class:`GlobalPool`; a pool nested in
  another is counted as part of the outer one): everything.

  - window pooling ops by formula: ``max_pool2d``: F*F - 1 comparisons per output element;
    ``avg_pool2d``: F*F - 1 adds and 1 division per output element (F*F); adaptive pools:
    one op per input element;
  - matrix products and convolutions as above (learned pools);
  - elementwise ops (exp, pow, mul, sign, ...): 1 FLOP per output element each;
  - reductions (sum, mean, amax, logsumexp, softmax, ...): 1 FLOP per input element.

Convention: **1 MAC = 2 FLOPs; a comparison, an add, a multiply, a division or an elementwise
function evaluation = 1 FLOP.** ``macs`` is the multiply-accumulates of all matrix products and
convolutions (pooling layers included); ``flops`` = 2 * ``macs`` + the non-MAC FLOPs of the
pooling layers; ``pool_flops`` is the pooling layers' share of ``flops``.

Contract for layer authors. A pooling layer whose cost the op count gets wrong (a custom
autograd function doing work in Python, a fused kernel, an op unknown here) defines::

    def flops(self, input_shape: tuple[int, ...], output_shape: tuple[int, ...]) -> int:
        '''FLOPs of one forward pass for one image, by the convention above.'''

with per-image shapes without the batch dimension (``(C, H, W)`` in; ``(C, H', W')`` or
``(D,)`` out; for a ``takes_stages`` head, ``input_shape`` is the last stage's). Its result
replaces the counted ops of that layer in ``flops`` and ``pool_flops`` (``macs`` stays
counted). ``layer_costs`` shows, per pooling layer, what was counted, so that a new layer
can be checked against a hand count (see ``tests/unit/measure/test_cost.py``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry

from poolbench.models.inspect import dry_run
from poolbench.pooling.base import GlobalPool, LocalPool

aten = torch.ops.aten

# Reductions: 1 FLOP per input element.
_REDUCTIONS = {
    aten.sum,
    aten.mean,
    aten.amax,
    aten.amin,
    aten.max,
    aten.min,
    aten.prod,
    aten.logsumexp,
    aten.norm,
    aten.linalg_vector_norm,
    aten.var,
    aten.std,
    aten.var_mean,
    aten._softmax,
    aten._log_softmax,
    aten.cumsum,
    aten.sort,
    aten.topk,
    aten.argmax,
    aten.argmin,
    aten.median,
    aten.kthvalue,
}


def _numel(shape: Any) -> int:
    return math.prod(shape)


def _window_ops(args: tuple, out: Any, per_window_extra: int) -> int:
    """Output elements x (F*F + ``per_window_extra``) for ``*_pool2d(x, kernel_size, ...)``."""
    kernel = args[1]
    kernel = [kernel] * 2 if isinstance(kernel, int) else list(kernel)
    if len(kernel) == 1:
        kernel = kernel * 2
    y = out[0] if isinstance(out, (tuple, list)) else out
    return y.numel() * (kernel[0] * kernel[1] + per_window_extra)


def _pool_op_flops(packet: Any, args: tuple, out: Any) -> int | None:
    """FLOPs of the window pooling ops PyTorch's counter counts as zero; None if not one."""
    if packet in (aten.max_pool2d_with_indices, aten.max_pool2d, aten.mkldnn_max_pool2d):
        return _window_ops(args, out, -1)  # F*F - 1 comparisons
    if packet is aten.avg_pool2d:
        return _window_ops(args, out, 0)  # F*F - 1 adds + 1 division
    if packet in (aten.max_pool1d_with_indices, aten.max_pool1d):
        k = args[1] if isinstance(args[1], int) else args[1][0]
        y = out[0] if isinstance(out, (tuple, list)) else out
        return y.numel() * (k - 1)
    if packet is aten.avg_pool1d:
        k = args[1] if isinstance(args[1], int) else args[1][0]
        return out.numel() * k
    if packet in (aten._adaptive_avg_pool2d, aten.adaptive_max_pool2d, aten.adaptive_avg_pool2d):
        return args[0].numel()
    return None


@dataclass
class LayerCost:
    """What one pooling layer cost for one image."""

    name: str
    layer: str
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    counted_flops: int  # from the op count
    flops: int  # counted_flops, or the layer's own ``flops()`` where it defines one
    macs: int
    params: int

    @property
    def activations(self) -> int:
        return _numel(self.output_shape)


@dataclass
class ModelCost:
    """Forward cost of one image (see the module docstring for the convention)."""

    flops: int
    macs: int
    pool_flops: int
    activations: int
    pool_params: int
    layers: list[LayerCost] = field(default_factory=list)

    def as_record(self) -> dict[str, int]:
        return {
            "flops": self.flops,
            "macs": self.macs,
            "pool_flops": self.pool_flops,
            "activations": self.activations,
            "pool_params": self.pool_params,
        }


class _OpCounter(TorchDispatchMode):
    """Counts MACs everywhere and all ops inside the current pooling layer (if any)."""

    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        # torch wraps every dispatch mode's __torch_dispatch__ in a dynamo guard that imports
        # torch._dynamo on first use (about 1.1 s, torch 2.15); this hook, which torch's
        # TorchDispatchMode provides for the purpose, opts out. The counter never runs compiled.
        return False

    def __init__(self) -> None:
        super().__init__()
        self.macs = 0
        self.pool_stack: list[str] = []
        self.pool_flops: dict[str, int] = {}
        self.pool_macs: dict[str, int] = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        packet = func._overloadpacket
        macs = 0
        if packet in flop_registry:
            macs = flop_registry[packet](*args, **kwargs, out_val=out) // 2
            self.macs += macs
        if self.pool_stack:
            name = self.pool_stack[0]
            self.pool_flops[name] = self.pool_flops.get(name, 0) + self._pool_op(
                func, packet, args, out, macs
            )
            self.pool_macs[name] = self.pool_macs.get(name, 0) + macs
        return out

    @staticmethod
    def _pool_op(func: Any, packet: Any, args: tuple, out: Any, macs: int) -> int:
        if macs:
            return 2 * macs
        window = _pool_op_flops(packet, args, out)
        if window is not None:
            return window
        if packet in _REDUCTIONS:
            return args[0].numel() if isinstance(args[0], Tensor) else 0
        if torch.Tag.pointwise in func.tags:
            ys = out if isinstance(out, (tuple, list)) else (out,)
            return sum(y.numel() for y in ys if isinstance(y, Tensor))
        return 0  # views, copies, indexing, allocation


def _shape(x: Any) -> tuple[int, ...]:
    if isinstance(x, (list, tuple)):  # a takes_stages head gets every stage: report the last
        x = x[-1]
    return tuple(x.shape[1:])


@torch.no_grad()
def model_cost(model: nn.Module, input_shape: tuple[int, int, int]) -> ModelCost:
    """Count the forward cost of ``model`` on one ``(C, H, W)`` image (eval mode, fp32)."""
    pools = {
        name: module
        for name, module in model.named_modules()
        if isinstance(module, (LocalPool, GlobalPool))
    }
    counter = _OpCounter()
    shapes: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {}
    handles = []
    for name, module in pools.items():

        def pre(mod: nn.Module, args: tuple, _name: str = name) -> None:
            counter.pool_stack.append(_name)

        def post(mod: nn.Module, args: tuple, out: Any, _name: str = name) -> None:
            counter.pool_stack.pop()
            shapes[_name] = (_shape(args[0]), _shape(out))

        handles.append(module.register_forward_pre_hook(pre))
        handles.append(module.register_forward_hook(post))

    x = torch.randn(1, *input_shape, generator=torch.Generator().manual_seed(0))
    with counter:
        dry_run(model, input_shape, handles, x=x)

    nested = {n for n in pools for outer in pools if outer != n and n.startswith(outer + ".")}
    layers = []
    for name, module in pools.items():
        if name in nested or name not in shapes:
            continue
        in_shape, out_shape = shapes[name]
        counted = counter.pool_flops.get(name, 0)
        own = getattr(module, "flops", None)
        flops = int(own(in_shape, out_shape)) if callable(own) else counted
        layers.append(
            LayerCost(
                name=name,
                layer=type(module).__name__,
                input_shape=in_shape,
                output_shape=out_shape,
                counted_flops=counted,
                flops=flops,
                macs=counter.pool_macs.get(name, 0),
                params=sum(p.numel() for p in module.parameters()),
            )
        )
    pool_flops = sum(layer.flops for layer in layers)
    pool_macs = sum(layer.macs for layer in layers)
    return ModelCost(
        flops=2 * (counter.macs - pool_macs) + pool_flops,
        macs=counter.macs,
        pool_flops=pool_flops,
        activations=sum(layer.activations for layer in layers),
        pool_params=sum(layer.params for layer in layers),
        layers=layers,
    )


__all__ = ["LayerCost", "ModelCost", "model_cost"]
