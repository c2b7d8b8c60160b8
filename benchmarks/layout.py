"""Which memory order trains faster, per pooling layer: NCHW or NHWC (channels_last).

    python benchmarks/layout.py [--pools max,gem] [--precision auto] [--repeats 3] [--threads N]

For every local pool (or ``--pools``), one training step of the default model (``vgg``
32-64-128, ``global_avg`` head, digits at 16 px, batch 64, poolbench's SGD) is timed in both
memory orders, under ``--precision`` (``auto``: bf16 autocast where the CPU has it). Each order
is timed ``--repeats`` times, alternating, over one epoch of steps after five warm-up steps;
the best of each is printed with the NHWC/NCHW ratio, and the pools whose NHWC step took over
5% longer than NCHW are listed at the end. A run does not follow this table: with
``channels_last=auto`` it times its own model, batch and input in both orders before it trains
(``poolbench.measure.probe``); this script shows how far the answer varies across pools.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from poolbench.core.config import PoolSpec, TrainConfig
from poolbench.core.host import cpu_text
from poolbench.data import create_dataset
from poolbench.engine.recipe import make_optimizer
from poolbench.measure.device import resolve_precision
from poolbench.models.registry import create_model
from poolbench.pooling import list_pools

CFG = TrainConfig(batch_size=64, lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4)


def step_ms(pool: str, data, batches, precision, nhwc: bool) -> float:  # noqa: ANN001
    torch.manual_seed(0)
    model = create_model(
        "vgg", data.num_classes, data.in_channels, PoolSpec(pool), PoolSpec("global_avg")
    )
    if nhwc:
        model = model.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(model, CFG)
    device = torch.device("cpu")

    def step(x: torch.Tensor, y: torch.Tensor) -> None:
        if nhwc:
            x = x.contiguous(memory_format=torch.channels_last)
        with precision.autocast(device):
            logits = model(x)
        loss = F.cross_entropy(logits.float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for x, y in batches[:5]:
        step(x, y)
    start = time.perf_counter()
    for x, y in batches:
        step(x, y)
    return (time.perf_counter() - start) / len(batches) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pools", default="", help="comma-separated; default: every local pool")
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="0: torch's default")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    local = list_pools("local")
    pools = args.pools.split(",") if args.pools else local
    unknown = [p for p in pools if p not in local]
    if unknown:
        parser.error(f"not a local pool: {', '.join(unknown)}; valid: {', '.join(local)}")
    precision = resolve_precision(args.precision, torch.device("cpu"))
    data = create_dataset("digits", image_size=16, crop_pad=1)
    generator = torch.Generator().manual_seed(0)
    batches = [(x.clone(), y.clone()) for x, y in data.train_batches(CFG.batch_size, generator)]
    print(
        f"{cpu_text()}, precision {precision.name}, threads {torch.get_num_threads()}, "
        f"best of {args.repeats}, ms per training step"
    )
    print(f"{'pool':16s} {'NCHW':>8s} {'NHWC':>8s} {'NHWC/NCHW':>10s}")
    slower = []
    for pool in pools:
        best = {False: float("inf"), True: float("inf")}
        for _ in range(args.repeats):
            for nhwc in (False, True):
                best[nhwc] = min(best[nhwc], step_ms(pool, data, batches, precision, nhwc))
        ratio = best[True] / best[False]
        if ratio > 1.05:
            slower.append(pool)
        print(f"{pool:16s} {best[False]:8.2f} {best[True]:8.2f} {ratio:10.2f}", flush=True)
    print(f"NHWC over 5% slower: {', '.join(slower) or 'none'}")


if __name__ == "__main__":
    main()
