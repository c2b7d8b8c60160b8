"""Does a pool's inference latency depend on the trained weights?

``poolbench time`` (and the end of a sweep) times fresh, untrained models, one per
configuration, interleaved. That is sound only where latency does not depend on the values the
network computes. Pools with data-dependent work: ``median`` (a sort per window off the 2x2
fast path), ``stochastic`` (a fallback pass when a window has no positive entry), ``softpool``
(a shifted exp when activations are large), ``fractional`` (regions drawn per call; fixed in
eval), and ``lp``/``gem`` (scaled paths at large p). This script trains each on digits, then
times the trained model, a fresh one of the same config, and a fresh one with the trained
model's learned exponents (what ``poolbench time`` rebuilds from a record) interleaved in one
process, and prints the three and the ratios.

    python benchmarks/latency_trained.py [--pools median,stochastic] [--repeats 30]
"""

from __future__ import annotations

import argparse
import sys

import torch

from poolbench.core.config import RunConfig
from poolbench.core.errors import PoolbenchError
from poolbench.core.host import cpu_text
from poolbench.data import create_dataset
from poolbench.engine.loop import Compute, train
from poolbench.measure.device import (
    resolve_device,
)
from poolbench.models.inspect import learned_exponents, set_learned_exponents
from poolbench.models.registry import build_model
from poolbench.run.runner import compute_choice
from poolbench.run.timing import Target, time_interleaved
from poolbench.sweep.plan import plan

DEFAULT = "max,median,stochastic,softpool,fractional,gem,lp"


def trained_and_fresh(cfg: RunConfig) -> list[Target]:
    device = resolve_device(cfg.device)
    data = create_dataset(cfg.data.name, **cfg.data.params).to(device)
    torch.manual_seed(cfg.seed)
    model = build_model(cfg, data.num_classes, data.in_channels).to(device)
    choice = compute_choice(cfg, model, data.input_shape, data.num_classes, device)
    precision, channels_last = choice.precision, choice.channels_last
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    train(model, data, cfg.train, Compute(device, precision, channels_last), cfg.seed)
    torch.manual_seed(cfg.seed + 1)
    fresh = build_model(cfg, data.num_classes, data.in_channels).to(device)
    # as `poolbench time` rebuilds it: fresh weights, the record's learned exponents
    torch.manual_seed(cfg.seed + 1)
    rebuilt = build_model(cfg, data.num_classes, data.in_channels).to(device)
    set_learned_exponents(rebuilt, learned_exponents(model))
    shape = data.input_shape
    return [
        Target(
            f"{cfg.pool.name}-trained",
            f"{cfg.pool.name} trained",
            model,
            shape,
            device,
            precision,
            channels_last,
            [],
        ),
        Target(
            f"{cfg.pool.name}-fresh",
            f"{cfg.pool.name} fresh",
            fresh,
            shape,
            device,
            precision,
            channels_last,
            [],
        ),
        Target(
            f"{cfg.pool.name}-rebuilt",
            f"{cfg.pool.name} rebuilt",
            rebuilt,
            shape,
            device,
            precision,
            channels_last,
            [],
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pools", default=DEFAULT)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--batch", type=int, default=64)
    args = parser.parse_args()
    try:
        if args.epochs < 1 or args.repeats < 1 or args.batch < 1:
            raise PoolbenchError("expected --epochs, --repeats and --batch >= 1")
        pools = [p for p in args.pools.split(",") if p]
        targets = []
        for pool in pools:
            cfg = plan([f"pool={pool}", f"train.epochs={args.epochs}"]).runs[0]
            targets += trained_and_fresh(cfg)
    except PoolbenchError as err:
        sys.exit(f"error: {err}")
    timings = time_interleaved(targets, args.batch, args.repeats, warmup=5)
    print(
        f"{cpu_text()}, {torch.get_num_threads()} threads, batch {args.batch}, "
        f"median of {args.repeats} interleaved rounds, digits after {args.epochs} epochs"
    )
    print(
        "rebuilt: fresh weights with the trained model's learned exponents, as `poolbench time` "
        "rebuilds a run"
    )
    print(
        f"{'pool':<12} {'trained ms':>10} {'IQR':>6} {'fresh ms':>9} {'IQR':>6} "
        f"{'rebuilt ms':>10} {'IQR':>6} {'tr/fresh':>8} {'tr/rebuilt':>10}"
    )
    for trained, fresh, rebuilt in zip(timings[::3], timings[1::3], timings[2::3], strict=True):
        name = trained.label.split()[0]
        print(
            f"{name:<12} {trained.median_ms:>10.3f} {trained.iqr_ms:>6.3f} "
            f"{fresh.median_ms:>9.3f} {fresh.iqr_ms:>6.3f} "
            f"{rebuilt.median_ms:>10.3f} {rebuilt.iqr_ms:>6.3f} "
            f"{trained.median_ms / fresh.median_ms:>8.2f} "
            f"{trained.median_ms / rebuilt.median_ms:>10.2f}"
        )


if __name__ == "__main__":
    main()
