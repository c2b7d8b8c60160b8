"""channels_last=auto and precision=auto are measured: the probe picks the faster candidate,
keeps its decision in the cache (and times again when the key changes), never overrides an
explicit setting, never offers bf16 where the CPU does not compute it natively, and leaves the
random state as it found it."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch
from torch import nn

import poolbench.measure.probe as probe
from poolbench.measure.probe import Candidate, candidates, choose

CPU = torch.device("cpu")


class SlowInNHWC(nn.Module):
    """A tiny network with a deliberately slow path: NHWC input costs 100 ms a call (more than
    the step itself, even on a busy machine)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.head = nn.Linear(4, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
            time.sleep(0.1)
        return self.head(self.conv(x).mean((2, 3)))


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("POOLBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(probe, "cpu_supports_bf16", lambda: False)
    return tmp_path / "cache"


def pick(model: nn.Module, **kwargs) -> probe.Choice:
    options = {"channels_last": "auto", "precision": "auto", "batch": 8, "config": {"m": 1}}
    options |= kwargs
    return choose(
        options["channels_last"],
        options["precision"],
        CPU,
        model,
        (3, 8, 8),
        10,
        options["batch"],
        options["config"],
    )


def test_the_probe_picks_the_faster_layout():
    choice = pick(SlowInNHWC())
    assert choice.source == "measured" and choice.channels_last is False
    assert choice.times_ms["NHWC fp32"] > choice.times_ms["NCHW fp32"] + 50
    assert choice.describe().startswith("NCHW fp32 (measured: ")


def test_a_cached_decision_is_reused_and_a_new_key_times_again(monkeypatch):
    first = pick(SlowInNHWC())
    calls = []
    real = probe.time_steps

    def counted(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(probe, "time_steps", counted)
    again = pick(SlowInNHWC())
    assert again.source == "cache" and not calls
    assert (again.channels_last, again.times_ms) == (first.channels_last, first.times_ms)
    assert pick(SlowInNHWC(), batch=16).source == "measured" and len(calls) == 1
    assert pick(SlowInNHWC(), config={"m": 2}).source == "measured" and len(calls) == 2


def test_explicit_settings_are_never_overridden():
    choice = pick(SlowInNHWC(), channels_last=True, precision="fp32")
    assert (choice.channels_last, choice.precision.name, choice.source) == (True, "fp32", "set")
    assert not choice.times_ms


def test_bf16_is_a_candidate_only_where_the_cpu_computes_it_natively(monkeypatch):
    assert {c.precision for c in candidates("auto", "auto", CPU)} == {"fp32"}
    monkeypatch.setattr(probe, "cpu_supports_bf16", lambda: True)
    assert candidates("auto", "auto", CPU) == [
        Candidate(False, "fp32"),
        Candidate(True, "fp32"),
        Candidate(False, "bf16"),
        Candidate(True, "bf16"),
    ]


@pytest.mark.parametrize(
    ("flags", "isa", "native"),
    [
        ("avx2 fma avx512f avx512bw avx512vl avx512dq", "", False),  # oneDNN would emulate
        ("avx2 fma", "", False),
        ("avx2 fma avx512f avx512bw avx512vl avx512dq avx512_bf16", "", True),
        ("avx2 fma avx512f avx512bw avx512vl avx512dq avx512_bf16 amx_bf16 amx_tile", "", True),
        ("avx2 fma avx512f avx512bw avx512vl avx512dq avx512_bf16", "avx2", False),
    ],
)
def test_native_bf16_is_read_from_the_cpu_flags_not_from_onednn(monkeypatch, flags, isa, native):
    import poolbench.core.host as host
    import poolbench.measure.device as device

    monkeypatch.setattr(host, "_cpuinfo", lambda: f"model name\t: Some CPU\nflags\t\t: {flags}\n")
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: True)
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", isa)
    monkeypatch.setattr(probe, "cpu_supports_bf16", device.cpu_supports_bf16)  # the real one
    assert device.cpu_supports_bf16() is native
    precisions = {c.precision for c in candidates("auto", "auto", CPU)}
    assert precisions == ({"fp32", "bf16"} if native else {"fp32"})


def test_the_probe_leaves_the_random_state_as_it_found_it():
    model = SlowInNHWC()
    torch.manual_seed(4)
    expected = torch.rand(3)
    torch.manual_seed(4)
    pick(model)
    assert torch.equal(torch.rand(3), expected)


def test_timing_is_round_by_round_with_a_mocked_clock():
    ticks = iter(range(1000))
    order = []

    def clock() -> float:
        return float(next(ticks))

    real_step = probe._step

    def recording(model, x, y, device, option):
        step = real_step(model, x, y, device, option)
        return lambda: (order.append(option.label), step())[1]

    options = [Candidate(False, "fp32"), Candidate(True, "fp32")]
    pytest.MonkeyPatch().setattr(probe, "_step", recording)
    times = probe.time_steps(SlowInNHWC(), (3, 8, 8), 10, 4, CPU, options, clock, rounds=2)
    assert times == {"NCHW fp32": 1.0, "NHWC fp32": 1.0}
    assert order == ["NCHW fp32", "NHWC fp32"] * 3  # one warm-up round, then two timed


def test_a_slow_step_is_timed_in_fewer_rounds_so_the_probe_stays_short():
    """Each step takes 2 s on the mocked clock: the first round takes 4 s, over the 3 s budget,
    so it is the only timed one (a fast model gets all three)."""
    ticks = iter(range(0, 10_000, 2))
    calls = []

    def clock() -> float:
        calls.append(1)
        return float(next(ticks))

    options = [Candidate(False, "fp32"), Candidate(True, "fp32")]
    times = probe.time_steps(SlowInNHWC(), (3, 8, 8), 10, 4, CPU, options, clock)
    assert times == {"NCHW fp32": 2.0, "NHWC fp32": 2.0}
    assert len(calls) == 2 * 2  # one timed round of two candidates, a start and an end each
    quick, calls[:] = iter(range(10_000)), []

    def fast_clock() -> float:  # a millisecond a step: every round
        calls.append(1)
        return next(quick) / 1000

    probe.time_steps(SlowInNHWC(), (3, 8, 8), 10, 4, CPU, options, fast_clock)
    assert len(calls) == 3 * 2 * 2


def test_another_candidate_must_be_clearly_faster_than_the_plain_one():
    """A near-equal timing keeps NCHW fp32 (the first candidate), so that a fresh cache does
    not flip the layout, and with it a run's last digits; 10% faster takes the other."""
    nchw, nhwc = Candidate(False, "fp32"), Candidate(True, "fp32")
    assert probe.pick([nchw, nhwc], {"NCHW fp32": 1.0, "NHWC fp32": 0.95}) == nchw
    assert probe.pick([nchw, nhwc], {"NCHW fp32": 1.0, "NHWC fp32": 0.89}) == nhwc
    assert probe.pick([nchw, nhwc], {"NCHW fp32": 1.0, "NHWC fp32": 1.5}) == nchw


class SlowInNCHW(SlowInNHWC):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.is_contiguous() and x.shape[1] > 1:
            time.sleep(0.1)
        return self.head(self.conv(x).mean((2, 3)))


def test_the_probe_takes_nhwc_where_it_is_clearly_faster():
    choice = pick(SlowInNCHW())
    assert choice.channels_last is True, choice.times_ms
