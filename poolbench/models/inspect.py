"""Looking into a built model without training it: a dry forward pass that checks every pooling
stage against the feature map it receives (:func:`check_model`), per-stage shapes and
parameters, the pools' settings as built, learned exponents, and eval mode for a block.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from poolbench.core.errors import ShapeError
from poolbench.pooling.base import GlobalPool, LocalPool


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """``model`` in eval mode for the block, then back in the mode it came in."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def dry_run(
    model: nn.Module,
    input_shape: tuple[int, int, int],
    handles: Iterable[RemovableHandle] = (),
    x: Tensor | None = None,
) -> Any:
    """One eval-mode, gradient-free forward pass of a single ``(C, H, W)`` image (zeros unless
    ``x`` is given) on the model's device; the hook ``handles`` are removed afterwards."""
    try:
        param = next(model.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")
        x = torch.zeros(1, *input_shape) if x is None else x
        with eval_mode(model), torch.no_grad():
            return model(x.to(device))
    finally:
        for h in handles:
            h.remove()


@dataclass(frozen=True)
class StageShape:
    """One pooling layer seen in a dry run: where it is, what it gets and gives."""

    index: int
    name: str
    layer: str
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    params: int


def check_model(model: nn.Module, input_shape: tuple[int, int, int]) -> list[StageShape]:
    """Dry-run ``model`` on one ``(C, H, W)`` image; return the pooling stages' shapes.

    Every :class:`LocalPool` checks its input before it runs, so a feature map smaller than a
    window fails as ``pool 3 (F=5, S=2) needs input >= 5, feature map is 4x4`` with the stage
    named, instead of a shape error deep inside torch.
    """
    stages: list[StageShape] = []
    handles = []
    pools = [(n, m) for n, m in model.named_modules() if isinstance(m, (LocalPool, GlobalPool))]
    counter = {"local": 0}
    for name, module in pools:
        index = 0
        if isinstance(module, LocalPool):
            counter["local"] += 1
            index = counter["local"]

        def pre_hook(mod: nn.Module, args: tuple, _name: str = name, _i: int = index) -> None:
            if isinstance(mod, LocalPool):
                x = args[0]
                mod.check_input(x.shape[-2], x.shape[-1], where=f"pool {_i} ({_name})")

        def post_hook(
            mod: nn.Module, args: tuple, out: Any, _name: str = name, _i: int = index
        ) -> None:
            x = args[0]
            in_shape = tuple(x.shape[1:]) if torch.is_tensor(x) else tuple(x[-1].shape[1:])
            stages.append(
                StageShape(
                    _i,
                    _name,
                    type(mod).__name__,
                    in_shape,
                    tuple(out.shape[1:]),
                    sum(p.numel() for p in mod.parameters()),
                )
            )

        handles.append(module.register_forward_pre_hook(pre_hook))
        handles.append(module.register_forward_hook(post_hook))
    try:
        dry_run(model, input_shape, handles)
    except ShapeError:
        raise
    except RuntimeError as err:
        raise ShapeError(
            f"model cannot take input {input_shape[1]}x{input_shape[2]}: {str(err).splitlines()[0]}"
        ) from None
    return stages


def count_params(model: nn.Module) -> int:
    """Trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def count_pool_params(model: nn.Module) -> int:
    """Trainable parameters that belong to pooling layers (local pools and the head)."""
    seen: set[int] = set()
    total = 0
    for module in model.modules():
        if isinstance(module, (LocalPool, GlobalPool)):
            for p in module.parameters():
                if p.requires_grad and id(p) not in seen:
                    seen.add(id(p))
                    total += p.numel()
    return total


@dataclass(frozen=True)
class StageSummary:
    """One stage of a staged model (or the whole body of another one) in a dry run."""

    name: str
    output_shape: tuple[int, ...]
    params: int
    pool_params: int
    pools: str


def summarize_model(model: nn.Module, input_shape: tuple[int, int, int]) -> list[StageSummary]:
    """Per-stage output shapes, parameters and pooling parameters, from one dry forward pass.

    Models with ``stages`` (:class:`~poolbench.models.blocks.StagedNet`) get one row per stage,
    others one ``body`` row; the head and the classifier get a row each. Run after
    :func:`check_model`, which gives the clear error when a shape does not fit.
    """
    stages = getattr(model, "stages", None)
    parts: list[tuple[str, nn.Module]]
    if isinstance(stages, nn.ModuleList):
        parts = [(f"stage {i}", s) for i, s in enumerate(stages, 1)]
        rest = [(n, m) for n, m in model.named_children() if n != "stages"]
    else:
        parts, rest = [("body", model)], []
    shapes: dict[int, tuple[int, ...]] = {}
    handles = [
        module.register_forward_hook(
            lambda mod, args, out, _key=id(module): shapes.__setitem__(
                _key, tuple(out.shape[1:]) if torch.is_tensor(out) else ()
            )
        )
        for _, module in parts + rest
    ]
    dry_run(model, input_shape, handles)
    rows = []
    for name, module in parts + rest:
        pools = {
            f"{type(m).__name__}({m.extra_repr()})"
            for m in module.modules()
            if isinstance(m, (LocalPool, GlobalPool))
        }
        rows.append(
            StageSummary(
                name,
                shapes.get(id(module), ()),
                count_params(module),
                count_pool_params(module),
                ", ".join(sorted(pools)),
            )
        )
    return rows


def pool_settings(model: nn.Module, pool: str) -> dict[str, Any]:
    """The parameters of ``model``'s downsampling-stage pools as built (the model's default
    window and the pool's defaults filled in; where a network has no stage pools, those whose
    geometry it fixes): ``{"F": 3, "S": 2, ...}``, a key whose value
    differs between stages as the distinct values joined by ``/`` (``"3/2"``). Empty for a
    pool without parameters or a model without stage pools (``allcnn variant=allcnn``)."""
    from poolbench.models.blocks import FIXED, STAGE
    from poolbench.pooling import pool_entry

    names = [p.name for p in pool_entry(pool).params]
    values: dict[str, list[Any]] = {}
    slots = {getattr(m, "slot", None) for m in model.modules()}
    # Stage pools when the model has them; a network whose pools all keep their own geometry
    # (model=torchvision) reports those.
    wanted = STAGE if STAGE in slots else FIXED
    for module in model.modules():
        if getattr(module, "slot", None) != wanted:
            continue
        for key in names:
            if not hasattr(module, key):
                continue
            value = getattr(module, key)
            if torch.is_tensor(value):
                value = round(float(value.detach().float().mean()), 6)
            seen = values.setdefault(key, [])
            if value not in seen:
                seen.append(value)
    return {k: v[0] if len(v) == 1 else "/".join(map(str, v)) for k, v in values.items()}


def learned_exponents(model: nn.Module) -> dict[str, float | list[float]] | None:
    """Every learned pooling exponent of ``model`` (a trainable parameter named ``p``: GeM's,
    or Lp's with ``learnable_p``) by module path, a list where there is one per channel; None
    when it has none. The record keeps them as ``learned_p``: inference cost depends on them
    (torch's power has fast paths for p = 2 and 3, so a trained GeM with p = 2.99 runs slower
    than a fresh one at 3), and ``poolbench time`` sets them in the models it rebuilds."""
    found: dict[str, float | list[float]] = {}
    for name, param in model.named_parameters():
        if name != "p" and not name.endswith(".p"):
            continue
        values = [round(float(v), 6) for v in param.detach().float().flatten().tolist()]
        found[name.removesuffix("p").removesuffix(".")] = (
            values[0] if param.numel() == 1 else values
        )
    return found or None


def set_learned_exponents(model: nn.Module, learned: dict[str, Any] | None) -> int:
    """Set the exponents :func:`learned_exponents` recorded into ``model`` (the same
    configuration, rebuilt); returns how many were set. A path ``model`` lacks, or a value of
    another size, is left alone."""
    if not isinstance(learned, dict):
        return 0
    params = dict(model.named_parameters())
    done = 0
    for path, value in learned.items():
        param = params.get(f"{path}.p" if path else "p")
        values = value if isinstance(value, list) else [value]
        if param is None or param.numel() != len(values):
            continue
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            continue
        with torch.no_grad():
            param.copy_(torch.tensor(values, dtype=param.dtype).reshape(param.shape))
        done += 1
    return done


def describe_pool(pool: str, settings: dict[str, Any]) -> str:
    """``max(F=3, S=2, padding=0)``: a pool with its parameters as built."""
    return f"{pool}({', '.join(f'{k}={v}' for k, v in settings.items())})"
