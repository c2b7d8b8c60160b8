"""Everything poolbench's GPU path should show, in one command of under 8 minutes on one GPU.

    python benchmarks/gpu_check.py [--data ../shared/data/cifar10_dev.npz] [--out FILE.json]
        [--budget 450]

Run it the moment a GPU can be had (the figures go into benchmarks/README.md). Each step runs
as its own process with its own time limit, so one that fails or hangs is recorded as such
and the others still run; steps that would start past ``--budget`` seconds are skipped,
saying so:

1. ``environment``: the GPU, its compute capability and memory, bf16 support, torch, CUDA,
   cuDNN, the host CPU and its flags;
2. ``probe``: what ``channels_last=auto precision=auto`` chooses on this GPU for airbench's
   network (batch 256, CIFAR-10 images) and for the main job's vgg on digits, with each
   candidate's training step;
3. ``airbench``: ``poolbench run model=airbench train=airbench`` on the development CIFAR-10
   split (10 epochs, scored on its validation images): accuracy, training time, images/s;
4. ``main job``: ``poolbench run`` (the race on digits), wall time and its decisions;
5. ``compile``: airbench 3 epochs with ``compile=true`` against eager: images/s and wall time
   (compilation included in the wall time);
6. ``engine vs plain (GPU)``: ``benchmarks/time_to_accuracy.py`` on the GPU, airbench;
7. ``pytest -m gpu``: every pool on the GPU against the CPU (tests/gpu);
8. ``engine vs plain (host CPU)``: the same comparison on the host's CPU, airbench and the
   vgg recipe, 1 epoch, two repeats (another CPU class than the development machines).

Printed: one table, step by step; written: the same as JSON (``--out``, default
``$OUT/gpu_check.json`` where ``$OUT`` is set, else ``gpu_check.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "cifar10_dev.npz"
Step = Callable[[], dict[str, Any]]


def run(args: list[str], timeout: float, cwd: Path | None = None) -> tuple[int, str, float]:
    """``args`` as a process: (exit code, its output, seconds); 124 when it ran out of time."""
    start = time.perf_counter()
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "160"}
    try:
        done = subprocess.run(
            args,
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        code, out = done.returncode, done.stdout + done.stderr
    except subprocess.TimeoutExpired as err:
        code = 124
        out = (err.stdout or b"").decode() if isinstance(err.stdout, bytes) else (err.stdout or "")
    return code, out, time.perf_counter() - start


def poolbench(*args: str) -> list[str]:
    return [sys.executable, "-m", "poolbench.cli.main", *args]


def records(root: Path) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted(root.glob("runs/*/result.json"))]


def environment() -> dict[str, Any]:
    import torch

    from poolbench.core.host import cpu_text

    out: dict[str, Any] = {"torch": torch.__version__, "cpu": cpu_text(), "cpus": os.cpu_count()}
    if not torch.cuda.is_available():
        out["cuda"] = False
        return out
    props = torch.cuda.get_device_properties(0)
    out.update(
        cuda=torch.version.cuda,
        cudnn=torch.backends.cudnn.version(),
        gpu=props.name,
        capability=f"{props.major}.{props.minor}",
        memory_gib=round(props.total_memory / 2**30, 1),
        bf16=torch.cuda.is_bf16_supported(),
    )
    return out


def probe(data: Path) -> dict[str, Any]:
    import torch

    from poolbench.core.config import PoolSpec
    from poolbench.measure.device import resolve_device
    from poolbench.measure.probe import choose
    from poolbench.models.registry import create_model

    device = resolve_device("auto")
    out: dict[str, Any] = {"device": str(device)}
    cases = {
        "airbench b256 32px": (
            create_model("airbench", 10, 3, PoolSpec("max"), PoolSpec("global_max")),
            (3, 32, 32),
            256,
        ),
        "vgg 16-32-64 digits b64": (
            create_model(
                "vgg", 10, 1, PoolSpec("max"), PoolSpec("global_avg"), widths=[16, 32, 64]
            ),
            (1, 16, 16),
            64,
        ),
    }
    for name, (model, shape, batch) in cases.items():
        torch.manual_seed(0)
        choice = choose(
            "auto",
            "auto",
            device,
            model.to(device),
            shape,
            10,
            batch,
            {"gpu_check": name},
            use_cache=False,
        )
        out[name] = choice.describe()
    return out


def airbench(data: Path, timeout: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        code, text, seconds = run(
            poolbench(
                "run",
                "model=airbench",
                "train=airbench",
                "data=tensors",
                f"data.path={data}",
                "data.test=val",
                f"results_dir={tmp}/results",
            ),
            timeout,
        )
        found = records(Path(tmp) / "results")
    out: dict[str, Any] = {"exit": code, "wall_s": round(seconds, 1)}
    if found:
        r = found[0]
        out.update(
            {
                k: r.get(k)
                for k in (
                    "status",
                    "test_acc",
                    "train_time_s",
                    "throughput_img_s",
                    "device",
                    "dtype",
                    "channels_last",
                    "compute_choice",
                )
            }
        )
        out["compute_times_ms"] = r.get("compute_times_ms")
    if code != 0:
        out["tail"] = text[-1500:]
    return out


def main_job(timeout: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        code, text, seconds = run(poolbench("run", f"results_dir={tmp}/results"), timeout)
        found = records(Path(tmp) / "results")
        races = list(Path(tmp).glob("results/sweeps/*/race.csv"))
        decisions = {}
        if races:
            import csv

            with open(races[0], newline="") as fh:
                for row in csv.DictReader(fh):
                    decisions[row["configuration"]] = row["status"]
    out: dict[str, Any] = {
        "exit": code,
        "wall_s": round(seconds, 1),
        "runs": len(found),
        "train_time_s": round(sum(r.get("train_time_s") or 0 for r in found), 1),
        "dtype": sorted({str(r.get("dtype")) for r in found}),
        "decisions": decisions,
    }
    closing = [ln for ln in text.splitlines() if ln.startswith(("Race:", "Eliminated", "Best"))]
    out["sentences"] = closing
    if code != 0:
        out["tail"] = text[-1500:]
    return out


def compile_vs_eager(data: Path, timeout: float) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for mode in ("false", "true"):
        with tempfile.TemporaryDirectory() as tmp:
            code, text, seconds = run(
                poolbench(
                    "run",
                    "model=airbench",
                    "train=airbench",
                    "train.epochs=3",
                    "data=tensors",
                    f"data.path={data}",
                    "data.test=val",
                    f"compile={mode}",
                    f"results_dir={tmp}/results",
                ),
                timeout / 2,
            )
            found = records(Path(tmp) / "results")
        name = "compiled" if mode == "true" else "eager"
        r = found[0] if found else {}
        out[name] = {
            "exit": code,
            "wall_s": round(seconds, 1),
            "img_s": r.get("throughput_img_s"),
            "test_acc": r.get("test_acc"),
        }
        if code != 0:
            out[name]["tail"] = text[-800:]
    return out


def engine_vs_plain(
    data: Path, timeout: float, device: str, recipes: list[str], epochs: int, repeats: int
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    script = str(REPO / "benchmarks" / "time_to_accuracy.py")
    for recipe in recipes:
        code, text, seconds = run(
            [
                sys.executable,
                script,
                "--recipe",
                recipe,
                "--device",
                device,
                "--data",
                str(data),
                "--epochs",
                str(epochs),
                "--repeats",
                str(repeats),
            ],
            timeout / len(recipes),
        )
        figures: dict[str, Any] = {"exit": code, "wall_s": round(seconds, 1)}
        for side in ("engine", "plain"):
            m = re.search(rf"^{side}\s+(\d+) img/s\s+accuracy ([\d.]+)", text, re.M)
            if m:
                figures[side] = {"img_s": int(m.group(1)), "acc": float(m.group(2))}
        m = re.search(r"^ratio\s+([\d.]+)x", text, re.M)
        figures["ratio"] = float(m.group(1)) if m else None
        m = re.search(r"^conditions: (.*)$", text, re.M)
        figures["conditions"] = m.group(1) if m else None
        if code != 0:
            figures["tail"] = text[-1200:]
        out[recipe] = figures
    return out


def gpu_tests(timeout: float) -> dict[str, Any]:
    code, text, seconds = run(
        [sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider", "tests/gpu"],
        timeout,
        cwd=REPO,
    )
    summary = [ln for ln in text.splitlines() if re.search(r"\d+ (passed|failed|skipped)", ln)]
    out: dict[str, Any] = {"exit": code, "wall_s": round(seconds, 1)}
    out["summary"] = summary[-1] if summary else None
    if code != 0:
        out["tail"] = text[-2000:]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="the development CIFAR-10 .npz")
    default_out = Path(os.environ["OUT"]) / "gpu_check.json" if os.environ.get("OUT") else None
    parser.add_argument("--out", default=str(default_out or "gpu_check.json"))
    parser.add_argument("--budget", type=float, default=450, help="seconds for all steps")
    args = parser.parse_args()
    data = Path(args.data).resolve()
    if not data.is_file():
        sys.exit(f"error: no development CIFAR-10 file at {data} (--data)")
    os.environ.setdefault("POOLBENCH_CACHE", tempfile.mkdtemp(prefix="poolbench-cache-"))
    steps: list[tuple[str, float, Step]] = [
        ("environment", 30, environment),
        ("probe", 40, lambda: probe(data)),
        ("airbench", 90, lambda: airbench(data, 90)),
        ("main job", 150, lambda: main_job(150)),
        ("compile", 120, lambda: compile_vs_eager(data, 120)),
        (
            "engine vs plain (GPU)",
            60,
            lambda: engine_vs_plain(data, 60, "cuda", ["airbench"], 10, 2),
        ),
        ("pytest -m gpu", 60, lambda: gpu_tests(60)),
        (
            "engine vs plain (host CPU)",
            120,
            lambda: engine_vs_plain(data, 120, "cpu", ["airbench", "vgg"], 1, 2),
        ),
    ]
    start = time.perf_counter()
    results: dict[str, Any] = {"date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "steps": {}}
    for name, limit, step in steps:
        elapsed = time.perf_counter() - start
        if elapsed + limit > args.budget and name != "environment":
            results["steps"][name] = {"status": "skipped", "why": f"budget ({elapsed:.0f} s used)"}
            print(f"{name}: skipped, {elapsed:.0f} of {args.budget:.0f} s used", flush=True)
            continue
        began = time.perf_counter()
        try:
            figures = step()
            exits = [figures.get("exit", 0)] + [
                v.get("exit", 0) for v in figures.values() if isinstance(v, dict)
            ]
            status = "ok" if all(code == 0 for code in exits) else "failed"
        except Exception as err:  # a step that breaks is a finding, not the end of the check
            figures, status = {"error": f"{type(err).__name__}: {err}"}, "failed"
        figures = {"status": status, "seconds": round(time.perf_counter() - began, 1), **figures}
        results["steps"][name] = figures
        print(f"{name}: {status} in {figures['seconds']} s", flush=True)
        Path(args.out).write_text(json.dumps(results, indent=1, default=str))  # kept as it goes
    results["total_s"] = round(time.perf_counter() - start, 1)
    Path(args.out).write_text(json.dumps(results, indent=1, default=str))
    print(f"\ngpu check, {results['date']}, {results['total_s']} s")
    print(f"{'step':<28} {'status':<8} {'s':>6}  figures")
    for name, figures in results["steps"].items():
        shown = {k: v for k, v in figures.items() if k not in ("status", "seconds", "tail")}
        print(
            f"{name:<28} {figures['status']:<8} {figures.get('seconds', 0):>6}  "
            f"{json.dumps(shown, default=str)[:2000]}"
        )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
