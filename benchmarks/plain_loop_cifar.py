"""The plainest PyTorch loop on real photographs, as a reference for the CIFAR recipe.

fp32, eager, ``torch.optim.SGD`` (Nesterov, momentum 0.9, weight decay 5e-4 on weights),
``OneCycleLR`` to lr 0.1 (15% warm-up, linear), label smoothing 0.1, random flips and
reflect-padded 4 px crops per image, batch 128, every training image, on the network
``model=vgg model.widths=[64,128,256] model.convs_per_stage=[2,2,1]`` builds. Compare its
accuracy with ``poolbench run`` of the same net and ``train=cifar10`` on the same file:

    python benchmarks/plain_loop_cifar.py [--data ../shared/data/cifar10_dev.npz] [--seed 0]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from poolbench.core.config import PoolSpec
from poolbench.core.host import cpu_text
from poolbench.models.registry import create_model

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10_dev.npz"


def plain_vgg(
    net: torch.nn.Module,
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    epochs: int,
    seed: int,
    channels_last: bool = False,
    precision=None,
) -> float:
    """The recipe as one loop on normalised images; returns the seconds of the training loop.
    ``precision`` (a :class:`poolbench.measure.device.Precision`) autocasts the forward pass,
    as the engine does under bf16."""
    device = x_train.device
    generator = torch.Generator().manual_seed(seed)  # on the CPU: the same draws on any device
    side = x_train.shape[-1]
    weights = [p for p in net.parameters() if p.ndim > 1]
    others = [p for p in net.parameters() if p.ndim <= 1]
    optimizer = torch.optim.SGD(
        [{"params": weights, "weight_decay": 5e-4}, {"params": others, "weight_decay": 0.0}],
        lr=0.1,
        momentum=0.9,
        nesterov=True,
    )
    batch = 128
    steps = epochs * ((len(x_train) + batch - 1) // batch)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=0.1, total_steps=steps, pct_start=0.15, anneal_strategy="linear"
    )
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    net.train()
    for _ in range(epochs):
        order = torch.randperm(len(x_train), generator=generator).to(device)
        for i in range(0, len(x_train), batch):
            idx = order[i : i + batch]
            x, y = x_train[idx], y_train[idx]
            flip = (torch.rand(len(x), generator=generator) < 0.5).to(device)
            x = torch.where(flip[:, None, None, None], x.flip(3), x)
            x = F.pad(x, (4, 4, 4, 4), mode="reflect")
            offsets = torch.randint(0, 9, (len(x), 2), generator=generator).tolist()
            x = torch.stack(
                [x[j, :, a : a + side, b : b + side] for j, (a, b) in enumerate(offsets)]
            )
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            if precision is not None:
                with precision.autocast(device):
                    logits = net(x)
            else:
                logits = net(x)
            loss = F.cross_entropy(logits.float(), y, label_smoothing=0.1)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def vgg(classes: int, channels: int, widths: list[int]) -> torch.nn.Module:
    return create_model(
        "vgg",
        classes,
        channels,
        PoolSpec("max"),
        PoolSpec("global_avg"),
        widths=widths,
        convs_per_stage=[2] * (len(widths) - 1) + [1],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA), help=".npz with x_train, y_train")
    parser.add_argument("--test", default="val", help="the split to score")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--widths", default="64,128,256")
    args = parser.parse_args()
    try:
        arrays = np.load(args.data)
        xt, yt = arrays["x_train"], arrays["y_train"]
        xv, yv = arrays[f"x_{args.test}"], arrays[f"y_{args.test}"]
    except (OSError, KeyError, ValueError) as err:
        sys.exit(f"error: cannot read {args.data}: {err}")
    x_train = torch.tensor(xt).float() / 255
    x_test = torch.tensor(xv).float() / 255
    y_train, y_test = torch.tensor(yt).long(), torch.tensor(yv).long()
    mean = x_train.mean((0, 2, 3), keepdim=True)
    std = x_train.std((0, 2, 3), keepdim=True)
    x_train, x_test = (x_train - mean) / std, (x_test - mean) / std

    torch.manual_seed(args.seed)
    widths = [int(w) for w in args.widths.split(",")]
    net = vgg(int(y_train.max()) + 1, x_train.shape[1], widths)
    seconds = plain_vgg(net, x_train, y_train, args.epochs, args.seed)
    net.eval()
    with torch.no_grad():
        correct = sum(
            (net(x_test[i : i + 500]).argmax(1) == y_test[i : i + 500]).sum().item()
            for i in range(0, len(x_test), 500)
        )
    print(f"conditions: {cpu_text()}, threads {torch.get_num_threads()}, torch {torch.__version__}")
    print(
        f"plain loop seed {args.seed}: {args.test} accuracy {correct / len(x_test):.4f}, "
        f"training {seconds:.0f} s ({args.epochs * len(x_train) / seconds:.0f} images/s)"
    )


if __name__ == "__main__":
    main()
