"""poolbench's training engine against the plainest PyTorch loop, same model, same batches.

    python benchmarks/train_speed.py [--epochs 8] [--repeats 2] [--threads N] [--compile]

Both sides train the default model (``vgg`` widths 32-64-128, ``max`` pools, ``global_avg``
head) on the built-in digits data with the default recipe (SGD + Nesterov, one-cycle), from the
same initial weights:

- **plain**: fp32, NCHW, eager, ``torch.optim.SGD`` (same parameter groups); a bare loop over a
  list of ready-made batch tensors (the same shuffled, augmented, normalised batches poolbench
  draws, precomputed outside the timed region, so the plain loop is not charged for data
  preparation; no DataLoader, whose per-sample overhead would only flatter poolbench);
- **poolbench**: ``poolbench.engine.loop.train`` with ``precision=auto`` (bf16 autocast where
  the CPU has it), ``channels_last=auto`` and poolbench's own SGD (``poolbench.engine.optim``),
  drawing and augmenting its batches on the device inside the timed loop (optionally
  ``torch.compile``).

The two alternate (plain, poolbench, plain, ...) ``--repeats`` times so that a busy machine
slows both alike; the median images/s of each is reported with the ratio, and the test accuracy
of each after the same number of epochs.
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import time

import torch
import torch.nn.functional as F

from poolbench.core.config import PoolSpec, TrainConfig
from poolbench.core.host import cpu_text
from poolbench.data import create_dataset
from poolbench.engine.loop import Compute, evaluate, train
from poolbench.engine.recipe import make_schedule, param_groups
from poolbench.measure.device import Precision
from poolbench.measure.probe import choose
from poolbench.models.registry import create_model

RECIPE = TrainConfig(
    epochs=8, batch_size=64, lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4
)


def plain_loop(model, batches, cfg: TrainConfig) -> float:
    """The loop a tutorial would write: fp32, eager, torch.optim, no tricks. Returns training
    seconds."""
    optimizer = torch.optim.SGD(
        param_groups(model, cfg),
        lr=cfg.lr,
        momentum=cfg.momentum,
        nesterov=cfg.nesterov,
    )
    schedule = make_schedule(optimizer, cfg, len(batches))
    model.train()
    start = time.perf_counter()
    for x, y in batches:
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=RECIPE.epochs)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=0, help="0: torch's default")
    parser.add_argument("--compile", action="store_true", help="torch.compile poolbench's model")
    parser.add_argument("--channels-last", default="auto", choices=["auto", "true", "false"])
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = TrainConfig(**{**RECIPE.__dict__, "epochs": args.epochs})
    device = torch.device("cpu")
    cl_setting = {"auto": "auto", "true": True, "false": False}[args.channels_last]

    data = create_dataset("digits", image_size=16, crop_pad=1)
    torch.manual_seed(0)
    initial = create_model(
        "vgg", data.num_classes, data.in_channels, PoolSpec("max"), PoolSpec("global_avg")
    )
    # as a run decides them: measured on this machine where auto (poolbench.measure.probe)
    choice = choose(
        cl_setting,
        args.precision,
        device,
        initial,
        data.input_shape,
        data.num_classes,
        cfg.batch_size,
        {"benchmark": "train_speed", "model": "vgg", "pool": "max"},
    )
    precision, channels_last = choice.precision, choice.channels_last
    generator = torch.Generator().manual_seed(0)
    batches = [
        (x.clone(), y.clone())
        for _ in range(cfg.epochs)
        for x, y in data.train_batches(cfg.batch_size, generator)
    ]
    n_images = sum(len(y) for _, y in batches)

    rates: dict[str, list[float]] = {"plain": [], "poolbench": []}
    accs: dict[str, list[float]] = {"plain": [], "poolbench": []}
    for repeat in range(args.repeats):
        model = copy.deepcopy(initial)
        seconds = plain_loop(model, batches, cfg)
        rates["plain"].append(n_images / seconds)
        accs["plain"].append(evaluate(model, data, device, Precision("fp32", None))[0])

        model = copy.deepcopy(initial)
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
        fast = torch.compile(model) if args.compile else model
        result = train(fast, data, cfg, Compute(device, precision, channels_last), seed=0)
        rates["poolbench"].append(result.throughput_img_s)
        accs["poolbench"].append(result.test_acc)
        print(
            f"repeat {repeat + 1}: plain {rates['plain'][-1]:.0f} img/s "
            f"(acc {accs['plain'][-1]:.4f}), poolbench {rates['poolbench'][-1]:.0f} img/s "
            f"(acc {accs['poolbench'][-1]:.4f})",
            flush=True,
        )

    plain, fast_rate = statistics.median(rates["plain"]), statistics.median(rates["poolbench"])
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"conditions: {cpu_text()}, {os.cpu_count()} CPUs, "
        f"threads {torch.get_num_threads()}, torch {torch.__version__}, load avg {load:.1f}, "
        f"{cfg.epochs} epochs x {n_images // cfg.epochs} images"
    )
    print(
        f"poolbench: precision {precision.name}, channels_last {channels_last}, "
        f"compile {args.compile}"
    )
    print(f"plain loop (fp32)  {plain:8.0f} img/s   test acc {statistics.mean(accs['plain']):.4f}")
    print(
        f"poolbench engine   {fast_rate:8.0f} img/s   test acc "
        f"{statistics.mean(accs['poolbench']):.4f}"
    )
    print(f"ratio              {fast_rate / plain:8.2f}x")


if __name__ == "__main__":
    main()
