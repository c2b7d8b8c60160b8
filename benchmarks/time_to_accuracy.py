"""poolbench's engine against a plain implementation of the same recipe, on the same data,
side by side: airbench's network and recipe, or the CIFAR vgg recipe.

    python benchmarks/time_to_accuracy.py [--recipe airbench|vgg] \\
        [--data ../shared/data/cifar10_dev.npz] [--test val] [--epochs 10] [--batch 256] \\
        [--repeats 2] [--threads N] [--profile]

``--recipe airbench``: both sides train ``model=airbench`` (the same module, the same initial
weights, whitening filters from the same images) with ``train=airbench`` at ``--batch``:

- **engine**: ``poolbench.engine.loop.train``, as ``poolbench run model=airbench train=airbench``
  runs it (``precision=auto``, ``channels_last=auto``, poolbench's SGD, its batches,
  augmentation, schedule and Lookahead average), then the test score with ``eval.tta``;
- **plain**: the recipe written out as one loop in this file, from the published description
  (Jordan 2024), with ``torch.optim.SGD``: the whole training set on the device as a
  normalised tensor, alternating flips and a reflect-padded 2 px random crop per epoch,
  Nesterov SGD at the decoupled learning rate and decay, BatchNorm biases at 64x, a
  triangular schedule, a Lookahead average every 5 steps, bf16 autocast and NHWC like the
  engine, the same test-time augmentation.

``--recipe vgg``: ``model=vgg model.widths=[64,128,256] model.convs_per_stage=[2,2,1]
train=cifar10`` (batch 128) through the engine, against the loop of
``benchmarks/plain_loop_cifar.py`` (``torch.optim.SGD``, ``OneCycleLR``, flips and
reflect-padded crops per image) on the same initial weights, layout and precision.

They alternate ``--repeats`` times in ABBA order (engine then plain, then plain then engine,
...), so that a busy machine, or one whose speed drifts, slows both alike. ``--profile`` runs
``torch.profiler`` over one epoch of each after the timed repeats and prints the top entries by
CPU time (where the remaining gap goes). Printed: the CPU, threads, images/s and test accuracy
of each, and the ratio of the medians (engine / plain; the engine should cost nothing: >= 1.0).
"""

from __future__ import annotations

import argparse
import copy
import math
import os
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from poolbench.core.config import PoolSpec, TrainConfig
from poolbench.core.errors import PoolbenchError
from poolbench.core.host import cpu_text
from poolbench.data import create_dataset
from poolbench.engine.callbacks import Callback
from poolbench.engine.loop import Compute, evaluate, train
from poolbench.measure.device import resolve_device, synchronize
from poolbench.measure.probe import choose
from poolbench.models.registry import create_model
from poolbench.sweep.plan import plan

sys.path.insert(0, str(Path(__file__).resolve().parent))
from plain_loop_cifar import plain_vgg, vgg  # noqa: E402  (the vgg recipe's plain loop)

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10_dev.npz"


VGG = ["model=vgg", "model.widths=[64,128,256]", "model.convs_per_stage=[2,2,1]"]


def recipe(name: str, epochs: int, batch: int | None) -> TrainConfig:
    """``train=airbench`` or ``train=cifar10`` as the configs compose it, at ``epochs`` (and
    ``batch`` where given)."""
    overrides = (
        ["model=airbench", "train=airbench"] if name == "airbench" else [*VGG, "train=cifar10"]
    )
    run = plan(overrides).runs[0]
    size = batch if batch is not None else run.train.batch_size
    return TrainConfig(**{**run.train.__dict__, "epochs": epochs, "batch_size": size})


def build(name: str, classes: int) -> nn.Module:
    if name == "airbench":
        return create_model("airbench", classes, 3, PoolSpec("max"), PoolSpec("global_max"))
    return vgg(classes, 3, [64, 128, 256])


def plain_airbench(
    model: nn.Module, data, cfg: TrainConfig, precision, channels_last: bool, seed: int
) -> tuple[float, int]:
    """The recipe as one loop; returns the seconds of the training loop (after the whitening
    setup, as the engine counts) and the images trained on."""
    device = data.train_x.device
    generator = torch.Generator().manual_seed(seed)  # on the CPU: the same draws on any device
    images = data.normalize(data.train_x)  # (N, 3, 32, 32) float
    labels = data.train_y
    n = len(labels)
    model.init_from_data(images[:5000])
    synchronize(device)
    start = time.perf_counter()  # as the engine's: the training loop alone
    # Parameter groups: BatchNorm biases at bn_bias_lr x the rate, decay on everything.
    k = 1024 * (1 + 1 / (1 - cfg.momentum))
    lr = cfg.lr * cfg.batch_size / k
    decay = cfg.weight_decay / cfg.lr
    norm_biases = [m.bias for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    ids = {id(p) for p in norm_biases}
    others = [p for p in model.parameters() if p.requires_grad and id(p) not in ids]
    optimizer = torch.optim.SGD(
        [
            {
                "params": norm_biases,
                "lr": lr * cfg.bn_bias_lr,
                "weight_decay": decay / cfg.bn_bias_lr,
            },
            {"params": others, "lr": lr, "weight_decay": decay},
        ],
        lr=lr,
        momentum=cfg.momentum,
        nesterov=True,
    )
    steps_per_epoch = n // cfg.batch_size + (n % cfg.batch_size >= max(2, cfg.batch_size // 2))
    total = cfg.epochs * steps_per_epoch
    warmup = max(1, int(cfg.warmup_frac * total))

    def factor(step: int) -> float:
        if step < warmup:
            return cfg.lr_start + (1 - cfg.lr_start) * step / warmup
        return 1 + (cfg.lr_end - 1) * min(1.0, (step - warmup) / max(1, total - warmup))

    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    average = {
        k: v.detach().clone() for k, v in model.state_dict().items() if v.is_floating_point()
    }

    def pull(decay_now: float) -> None:
        with torch.no_grad():
            state = model.state_dict()
            for key, avg in average.items():
                avg.lerp_(state[key], 1 - decay_now)
                state[key].copy_(avg)

    base_flips = (torch.rand(n, generator=generator) < 0.5).to(device)
    pad = cfg.translate
    step = seen = 0
    model.train()
    for epoch in range(1, cfg.epochs + 1):
        model.whiten.bias.requires_grad_(epoch <= model.whiten_bias_epochs)
        flips = base_flips ^ (epoch % 2 == 0)
        x = torch.where(flips.view(-1, 1, 1, 1), images.flip(-1), images)
        x = F.pad(x, (pad,) * 4, mode="reflect")
        dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator).to(device)
        dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator).to(device)
        span = torch.arange(32, device=device)
        rows = (dy.view(-1, 1) + span).view(n, 1, 32, 1)
        cols = (dx.view(-1, 1) + span).view(n, 1, 1, 32)
        first = torch.arange(n, device=device).view(n, 1, 1, 1)
        x = x[first, torch.arange(3, device=device).view(1, 3, 1, 1), rows, cols]
        order = torch.randperm(n, generator=generator).to(device)
        for s in range(steps_per_epoch):
            idx = order[s * cfg.batch_size : (s + 1) * cfg.batch_size]
            seen += len(idx)
            batch = x[idx]
            if channels_last:
                batch = batch.contiguous(memory_format=torch.channels_last)
            with precision.autocast(device):
                logits = model(batch)
            loss = F.cross_entropy(logits.float(), labels[idx], label_smoothing=cfg.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            step += 1
            if step % cfg.lookahead_every == 0:
                pull(cfg.lookahead_decay**cfg.lookahead_every * (step / total) ** 3)
    pull(1.0)
    synchronize(device)
    return time.perf_counter() - start, seen


def plain(name, model, data, cfg, precision, channels_last, seed) -> tuple[float, int]:
    """The plain loop of ``name``: (seconds of its training loop, images trained on)."""
    if name == "airbench":
        return plain_airbench(model, data, cfg, precision, channels_last, seed)
    images = data.normalize(data.train_x)
    autocast = precision if precision.name != "fp32" else None
    seconds = plain_vgg(model, images, data.train_y, cfg.epochs, seed, channels_last, autocast)
    return seconds, cfg.epochs * len(data.train_y)


def isa_cap() -> str:
    """The instruction sets this process was limited to (oneDNN's and ATen's caps), if any: a
    run capped to AVX2 on an AVX-512 CPU runs AVX2's kernels, not an AVX2 CPU's clocks."""
    caps = [
        f"{name}={os.environ[name]}"
        for name in ("ONEDNN_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY")
        if os.environ.get(name)
    ]
    return f", capped to {' '.join(caps)}" if caps else ""


class Profiled(Callback):
    """Runs ``prof`` (a torch.profiler.profile) over each epoch of the engine's loop."""

    def __init__(self, prof) -> None:
        self.prof = prof

    def on_epoch_start(self, loop) -> None:
        self.prof.start()

    def on_epoch_end(self, loop) -> None:
        self.prof.stop()


def profile(name, initial, data, cfg, compute: Compute, tta: str, rows: int = 12) -> None:
    """One epoch of each side under ``torch.profiler``: the top entries by self CPU time."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as profiler

    one = TrainConfig(**{**cfg.__dict__, "epochs": 1})
    for side in ("engine", "plain"):
        model = copy.deepcopy(initial)
        if compute.channels_last:
            model = model.to(memory_format=torch.channels_last)
        activities = [ProfilerActivity.CPU]
        if compute.device.type == "cuda":
            activities.append(ProfilerActivity.CUDA)
        prof = profiler(activities=activities)
        if side == "engine":  # the epoch alone, as on the plain side: not the test at the end
            train(model, data, one, compute, seed=0, tta="none", callbacks=[Profiled(prof)])
        else:
            with prof:
                plain(name, model, data, one, compute.precision, compute.channels_last, 0)
        table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows)
        print(f"--- profile, {side}, 1 epoch (top {rows} by self CPU time)")
        print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="airbench", choices=["airbench", "vgg"])
    parser.add_argument("--data", default=str(DEFAULT_DATA), help=".npz/.pt for data=tensors")
    parser.add_argument("--test", default="val", help="the split to score (data.test)")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch", type=int, default=None, help="default: the recipe's")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=0, help="0: torch's default")
    parser.add_argument("--tta", default=None, choices=["none", "flip", "flip_translate"])
    parser.add_argument("--profile", action="store_true", help="torch.profiler, one epoch each")
    parser.add_argument(
        "--device", default="auto", help="auto (cuda where there is one), cpu, cuda"
    )
    args = parser.parse_args()
    try:
        if min(args.epochs, args.repeats, args.batch or 1) < 1 or args.threads < 0:
            raise PoolbenchError("expected --epochs, --batch, --repeats >= 1 and --threads >= 0")
        device = resolve_device(args.device)
        data = create_dataset("tensors", path=args.data, test=args.test).to(device)
        cfg = recipe(args.recipe, args.epochs, args.batch)
    except PoolbenchError as err:
        sys.exit(f"error: {err}")
    tta = args.tta or ("flip_translate" if args.recipe == "airbench" else "none")
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    initial = build(args.recipe, data.num_classes).to(device)
    # as a run decides them: measured on this machine (poolbench.measure.probe)
    choice = choose(
        "auto",
        "auto",
        device,
        initial,
        data.input_shape,
        data.num_classes,
        cfg.batch_size,
        {"benchmark": "time_to_accuracy", "model": args.recipe, "pool": "max"},
    )
    precision, channels_last = choice.precision, choice.channels_last
    compute = Compute(device, precision, channels_last)
    rates: dict[str, list[float]] = {"engine": [], "plain": []}
    accs: dict[str, list[float]] = {"engine": [], "plain": []}
    for repeat in range(args.repeats):
        # ABBA: engine first in even repeats, plain first in odd ones, so that a machine whose
        # speed drifts during the run favours neither
        for side in ("engine", "plain") if repeat % 2 == 0 else ("plain", "engine"):
            model = copy.deepcopy(initial)
            if channels_last:
                model = model.to(memory_format=torch.channels_last)
            if side == "engine":
                result = train(model, data, cfg, compute, seed=repeat, tta=tta)
                rates["engine"].append(result.throughput_img_s)
                accs["engine"].append(result.test_acc)
                continue
            seconds, images = plain(args.recipe, model, data, cfg, precision, channels_last, repeat)
            rates["plain"].append(images / seconds)
            accs["plain"].append(
                evaluate(model, data, device, precision, channels_last=channels_last, tta=tta)[0]
            )
        print(
            f"repeat {repeat + 1}: engine {rates['engine'][-1]:.0f} img/s (acc "
            f"{accs['engine'][-1]:.4f}), plain {rates['plain'][-1]:.0f} img/s (acc "
            f"{accs['plain'][-1]:.4f})",
            flush=True,
        )
    engine, plain_rate = statistics.median(rates["engine"]), statistics.median(rates["plain"])
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else math.nan
    print(
        f"conditions: {cpu_text()}{isa_cap()}, {os.cpu_count()} CPUs, threads "
        f"{torch.get_num_threads()}, "
        f"torch {torch.__version__}, load avg {load:.1f}; recipe {args.recipe}, precision "
        f"{precision.name}, channels_last {channels_last} ({choice.describe()}); "
        f"{len(data.train_y)} training images, {len(data.test_y)} scored ({args.test}), "
        f"{args.epochs} epochs, batch {cfg.batch_size}, tta {tta}"
    )
    print(f"engine   {engine:8.0f} img/s   accuracy {statistics.mean(accs['engine']):.4f}")
    print(f"plain    {plain_rate:8.0f} img/s   accuracy {statistics.mean(accs['plain']):.4f}")
    print(f"ratio    {engine / plain_rate:8.2f}x (engine / plain, medians of {args.repeats})")
    if args.profile:
        profile(args.recipe, initial, data, cfg, compute, tta)


if __name__ == "__main__":
    main()
