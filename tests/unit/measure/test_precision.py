"""The default path (vgg + max + global_avg) under bf16 autocast: what may be bf16 is exact or
within bf16 rounding, and the loss is computed in fp32."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from poolbench.core.config import PoolSpec
from poolbench.measure.device import Precision
from poolbench.models.registry import create_model
from poolbench.pooling import create_pool

BF16 = Precision("bf16", torch.bfloat16)


def test_max_pool_is_exact_in_bf16() -> None:
    # A window maximum is one of its inputs: no rounding, so bf16 loses nothing here.
    x = torch.randn(2, 4, 8, 8).to(torch.bfloat16)
    pool = create_pool("max", 4)
    with BF16.autocast(torch.device("cpu")):
        y = pool(x)
    assert y.dtype == torch.bfloat16
    assert torch.equal(y.float(), F.max_pool2d(x.float(), 2, 2))


def test_global_avg_accumulates_in_fp32() -> None:
    # 4096 ones: a bf16 running sum would stall at 256 (257 is not a bf16 number), giving a
    # mean of 1/16; torch accumulates bf16 reductions in fp32.
    x = torch.ones(1, 1, 64, 64, dtype=torch.bfloat16)
    y = create_pool("global_avg", 1)(x)
    assert y.item() == 1.0


def test_vgg_max_logits_under_autocast_match_fp32() -> None:
    torch.manual_seed(0)
    model = create_model("vgg", 10, 1, PoolSpec("max"), PoolSpec("global_avg")).eval()
    x = torch.randn(16, 1, 16, 16)
    with torch.no_grad():
        ref = model(x)
        with BF16.autocast(torch.device("cpu")):
            low = model(x)
    assert low.dtype == torch.bfloat16  # the classifier ran in bf16; train.py upcasts the loss
    err = (low.float() - ref).abs().max() / ref.abs().max()
    assert err < 0.05  # a few bf16 ulps (2^-8) through three conv stages


class _ConvDtypes(TorchDispatchMode):
    """Records the input dtype of every convolution, forward and backward."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[str, torch.dtype]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        name = func._overloadpacket.__name__
        if name in ("convolution", "convolution_backward"):
            self.seen.append((name, args[0].dtype))
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize(("pool", "kwargs"), [("blur", {}), ("wavelet", {"wavelet": "db2"})])
def test_depthwise_pools_convolve_in_fp32_under_cpu_autocast(pool, kwargs) -> None:
    """oneDNN's bf16 depthwise backward is ~20x slower than fp32 on CPUs without AMX, so these
    layers run their filter in fp32 and hand back the input's dtype."""
    layer = create_pool(pool, 4, **kwargs)
    x = torch.randn(2, 4, 10, 10).bfloat16().requires_grad_()
    with _ConvDtypes() as log, torch.autocast("cpu", torch.bfloat16):
        y = layer(x)
        y.float().sum().backward()
    assert y.dtype == torch.bfloat16 and x.grad.dtype == torch.bfloat16
    assert {name for name, _ in log.seen} == {"convolution", "convolution_backward"}
    assert all(dtype == torch.float32 for _, dtype in log.seen)
    reference = layer(x.detach().float())
    torch.testing.assert_close(y.float(), reference, atol=0.05, rtol=0.02)
