"""On a CUDA device (``pytest -m gpu``; skipped, saying so, where there is none): every pooling
layer computes on the GPU what it computes on the CPU, forward and backward, in fp32 and under
the autocast precision the GPU gets; a training run trains there with the precision and layout
``auto`` chose, resumes there, and its record says where it ran."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from poolbench.pooling import create_for_slot, list_pools
from tests.helpers import FAST
from tests.helpers.cli import invoke

pytestmark = pytest.mark.gpu
CUDA = torch.device("cuda")


def make(name: str, kind: str, channels: int = 4) -> torch.nn.Module:
    torch.manual_seed(0)
    return create_for_slot(name, kind, channels)


@pytest.mark.parametrize("name", list_pools("local") + list_pools("global"))
def test_every_pool_gives_the_cpu_result_on_the_gpu(name: str):
    kind = "local" if name in list_pools("local") else "global"
    cpu = make(name, kind).eval()
    gpu = make(name, kind).to(CUDA).eval()
    gpu.load_state_dict(cpu.state_dict())
    x = torch.randn(2, 4, 16, 16, generator=torch.Generator().manual_seed(1))
    x_cpu, x_gpu = x.clone().requires_grad_(), x.to(CUDA).requires_grad_()
    y_cpu, y_gpu = cpu(x_cpu), gpu(x_gpu)
    torch.testing.assert_close(y_gpu.cpu(), y_cpu, rtol=1e-4, atol=1e-5)
    y_cpu.square().sum().backward()
    y_gpu.square().sum().backward()
    torch.testing.assert_close(x_gpu.grad.cpu(), x_cpu.grad, rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("name", list_pools("local"))
def test_every_local_pool_runs_under_the_gpus_autocast_and_returns_its_dtype(name: str):
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    module = make(name, "local").to(CUDA).train()
    x = torch.randn(2, 4, 16, 16, device=CUDA, requires_grad=True)
    with torch.autocast("cuda", dtype=dtype):
        y = module(x.to(dtype))
    assert y.dtype == dtype and torch.isfinite(y.float()).all()
    y.float().sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_a_run_trains_on_the_gpu_and_records_it(workdir: Path):
    result = invoke("run", "pool=gem", "device=cuda", *FAST, "keep_checkpoint=true")
    assert result.exit_code == 0, result.output
    (path,) = Path("results/runs").glob("*/result.json")
    record = json.loads(path.read_text())
    assert record["status"] == "ok"
    assert record["device"] == torch.cuda.get_device_name(CUDA)
    assert record["dtype"] in ("bf16", "fp16") and record["peak_mem_kind"] == "cuda_max_allocated"
    assert record["test_acc"] > 0.1


def test_a_gpu_run_stopped_after_an_epoch_resumes_there(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
):
    from poolbench.engine.checkpoint import CHECKPOINT_NAME, Checkpoint
    from poolbench.run.runner import execute
    from poolbench.sweep.plan import plan

    cfg = plan(["pool=max", "device=cuda", *FAST, "train.epochs=2"]).runs[0]
    reference = execute(cfg, workdir / "a")
    save = Checkpoint.save

    def save_then_interrupt(self, epoch, *args, **kwargs):
        save(self, epoch, *args, **kwargs)
        if epoch == 1:
            raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(Checkpoint, "save", save_then_interrupt)
        with pytest.raises(KeyboardInterrupt):
            execute(cfg, workdir / "b")
    assert (workdir / "b" / CHECKPOINT_NAME).is_file()
    resumed = execute(cfg, workdir / "b")
    assert resumed["status"] == "ok" and len(resumed["history"]) == 2
    # as deterministic as the GPU's kernels: close, not always bit for bit
    assert abs(resumed["test_acc"] - reference["test_acc"]) < 0.05
