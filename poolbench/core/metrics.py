"""The metrics of a run record, each defined once: direction, unit, display format, meaning.

Reports (``poolbench.report``: summaries, best marks, rankings, Pareto fronts, axis labels) and
the command's tables (``poolbench.cli.tables``) read every metric's direction and format from
here.
Invariance metrics whose names carry a parameter (``acc_shift_<k>``, ``acc_res_<size>``, named
by the ``eval`` config) are families: :func:`get` builds the metric for a concrete name.

Pure Python on purpose: the command line imports it before any run starts.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from poolbench.core.errors import ConfigError

FRACTION = "fraction"  # accuracies and agreement rates: 0-1


@dataclass(frozen=True)
class Metric:
    """One metric: ``higher_is_better`` decides best marks, ranks and Pareto fronts; ``fmt``
    is a :func:`format` spec for tables; ``unit`` ends axis labels (``fraction``: 0-1)."""

    name: str
    higher_is_better: bool
    unit: str
    fmt: str
    description: str
    # the same for every seed by construction (a model's size and cost): groups without spread
    # differ exactly; a measured metric without spread over a few seeds has just not varied yet
    exact: bool = False

    @property
    def direction(self) -> str:
        return "higher is better" if self.higher_is_better else "lower is better"

    @property
    def bounded(self) -> bool:
        """Whether values lie in [0, 1] (accuracy axes are clipped to that range)."""
        return self.unit == FRACTION

    def axis_label(self) -> str:
        unit = "" if self.unit in ("", FRACTION) else f", {self.unit}"
        return f"{self.name}{unit}"

    def format(self, value: float) -> str:
        return format(value, self.fmt)


@dataclass(frozen=True)
class MetricFamily:
    """Metrics named ``<prefix><integer>``; ``description`` has ``{n}`` for the integer."""

    template: str  # the name users see in lists, e.g. acc_shift_<k>
    prefix: str
    higher_is_better: bool
    unit: str
    fmt: str
    description: str

    def match(self, name: str) -> Metric | None:
        m = re.fullmatch(re.escape(self.prefix) + r"(\d+)", name)
        if m is None:
            return None
        return Metric(
            name,
            self.higher_is_better,
            self.unit,
            self.fmt,
            self.description.format(n=m.group(1)),
        )


def _m(
    name: str, higher: bool, unit: str, fmt: str, description: str, exact: bool = False
) -> Metric:
    return Metric(name, higher, unit, fmt, description, exact)


METRICS: dict[str, Metric] = {
    m.name: m
    for m in (
        _m("test_acc", True, FRACTION, ".4f", "top-1 accuracy on the test split"),
        _m("test_top5", True, FRACTION, ".4f", "top-5 accuracy on the test split"),
        _m("val_acc", True, FRACTION, ".4f", "accuracy on the validation split, selected epoch"),
        _m("train_loss", False, "", ".4f", "mean training loss of the last epoch"),
        _m("latency_ms", False, "ms", ".3f", "median inference time of one batch"),
        _m("latency_iqr_ms", False, "ms", ".3f", "interquartile range of latency_ms"),
        _m(
            "latency_interleaved_ms",
            False,
            "ms",
            ".3f",
            "median inference time of one batch, every config timed in one process, interleaved",
        ),
        _m(
            "latency_interleaved_iqr_ms",
            False,
            "ms",
            ".3f",
            "interquartile range of latency_interleaved_ms",
        ),
        _m("latency_ms_b1", False, "ms", ".3f", "median inference time of one image"),
        _m("latency_b1_iqr_ms", False, "ms", ".3f", "interquartile range of latency_ms_b1"),
        _m("throughput_img_s", True, "img/s", ",.0f", "training images per second"),
        _m("train_time_s", False, "s", ".1f", "training time, evaluation excluded"),
        _m("wall_s", False, "s", ".1f", "the run's wall time"),
        _m("overhead_s", False, "s", ".1f", "wall time that was not training or measuring"),
        _m("peak_mem_mb", False, "MiB", ",.0f", "peak memory while training"),
        _m("params", False, "parameters", ",.0f", "trainable parameters", exact=True),
        _m(
            "pool_params",
            False,
            "parameters",
            ",.0f",
            "parameters inside pooling layers",
            exact=True,
        ),
        _m("flops", False, "FLOPs", ",.0f", "forward FLOPs of one image", exact=True),
        _m("macs", False, "MACs", ",.0f", "forward multiply-accumulates of one image", exact=True),
        _m("pool_flops", False, "FLOPs", ",.0f", "the pooling layers' share of flops", exact=True),
        _m(
            "activations",
            False,
            "elements",
            ",.0f",
            "elements output by the pooling layers",
            exact=True,
        ),
        _m("shift_consistency", True, FRACTION, ".4f", "top-1 agreement under random shifts"),
        _m("acc_rot", True, FRACTION, ".4f", "accuracy of images rotated by ±eval.max_rot"),
    )
}
FAMILIES: tuple[MetricFamily, ...] = (
    MetricFamily(
        "acc_shift_<k>", "acc_shift_", True, FRACTION, ".4f", "accuracy of images shifted {n} px"
    ),
    MetricFamily("acc_res_<size>", "acc_res_", True, FRACTION, ".4f", "accuracy at {n}x{n} pixels"),
)


def valid_names() -> list[str]:
    """Every metric name, the families as templates (``acc_shift_<k>``)."""
    return [*METRICS, *(f.template for f in FAMILIES)]


def find(name: str) -> Metric | None:
    """The metric called ``name``, or None when the registry has none."""
    if name in METRICS:
        return METRICS[name]
    for family in FAMILIES:
        metric = family.match(name)
        if metric is not None:
            return metric
    return None


def get(name: str, option: str = "--metric") -> Metric:
    """The metric called ``name``; ConfigError listing the valid names otherwise."""
    metric = find(name)
    if metric is None:
        raise ConfigError(
            f"expected {option} to name one of {', '.join(valid_names())}, got {name!r}"
        )
    return metric


def present(columns: Iterable[str]) -> list[str]:
    """The metrics among ``columns``: registry order, then the families' in name order."""
    columns = list(columns)
    fixed = [name for name in METRICS if name in columns]
    family = sorted(
        (c for c in columns if c not in METRICS and find(c) is not None),
        key=lambda c: (c.rstrip("0123456789"), int(c[len(c.rstrip("0123456789")) :])),
    )
    return fixed + family
