"""The racing sweeper (``hydra/sweeper=race``): run a sweep's configurations in rounds of seeds
and stop spending seeds on what the data has decided.

F-Race (Birattari, Stützle, Paquete & Varrentrapp 2002; irace, López-Ibáñez et al. 2016) for
training runs. The first round trains every configuration on the first ``min_seeds`` seeds;
each later round gives every configuration still racing one more seed. After every round
from ``min_seeds`` on (a *look*), the configurations still racing are tested against each
other with poolbench's significance machinery (:mod:`poolbench.report.significance`: paired
by seed, Holm-corrected):

- **eliminated**: significantly worse than another configuration; it runs no more seeds (its
  runs stay recorded);
- **equivalent**: shown within ``±delta`` of the best (two one-sided tests); it runs no more
  seeds either;
- the **best** and the **undecided** race on.

The race stops when nothing is undecided, when the seeds run out, or when the ``budget`` (a
number of runs, or wall time: ``300s``, ``10m``) would be passed; what is left is reported
undecided, with the seeds it has.

Testing after every round looks at the data repeatedly, which would inflate the error rates;
the race spends ``alpha`` over its looks: each of the ``K = len(seeds) - min_seeds + 1`` looks
tests at ``alpha / K`` (Bonferroni over the looks), for eliminations and for equivalences
alike, so that the family-wise rate of a false elimination, and of a false equivalence, stays
at or under ``alpha`` over the whole race (``benchmarks/race_cost.py`` checks it by
simulation).

Each look's decisions are logged and written to ``<sweep dir>/race.csv``. The runs are
ordinary poolbench runs, so running the same command again resumes the race: finished runs are
skipped and hand back their recorded values, and the same records give the same decisions.
"""

from __future__ import annotations

import csv
import io
import logging
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from poolbench.core import defaults, metrics
from poolbench.core.errors import ConfigError
from poolbench.core.storage import atomic_write_text
from poolbench.report.keys import in_prose
from poolbench.report.significance import EQUIVALENT, WORSE, against_best

log = logging.getLogger("poolbench")

RACE_CSV = "race.csv"
ELIMINATED = "eliminated"
RACING = "racing"
BEST = "best"
UNDECIDED = "undecided"
FAILED = "failed"
MIN_SEEDS = 2  # a test needs a variance
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h)\s*$")


def parse_seeds(value: Any) -> tuple[int, ...]:
    """The seeds of a race: a list of integers, a Hydra sweep string (``range(0,10)``,
    ``0,1,2``) or one integer (``5``: seeds 0 to 4)."""
    if isinstance(value, bool):
        raise ConfigError(f"expected hydra.sweeper.seeds to be seeds, got {value!r}")
    if isinstance(value, int):
        values: list[Any] = list(range(value))
    elif isinstance(value, str):
        from hydra.core.override_parser.overrides_parser import OverridesParser

        try:
            override = OverridesParser.create().parse_override(f"seed={value}")
        except Exception:  # Hydra's grammar errors are of several kinds
            raise ConfigError(
                f"expected hydra.sweeper.seeds to be a list of integers or a sweep such as "
                f"range(0,10), got {value!r}"
            ) from None
        if override.is_sweep_override():
            values = list(override.sweep_iterator())
        else:
            values = [override.value()]
    elif isinstance(value, Sequence):
        values = list(value)
    else:
        values = list(value) if hasattr(value, "__iter__") else [value]
    if not values or any(isinstance(v, bool) or not isinstance(v, int) for v in values):
        raise ConfigError(
            f"expected hydra.sweeper.seeds to be a non-empty list of integers (range(0,10), "
            f"0,1,2), got {value!r}"
        )
    if len(set(values)) != len(values):
        raise ConfigError(f"expected hydra.sweeper.seeds to differ from each other, got {values}")
    return tuple(int(v) for v in values)


def parse_budget(value: Any) -> tuple[int | None, float | None]:
    """``budget``: None, a number of runs (an integer) or wall time (``300s``, ``10m``,
    ``1.5h``); returns (runs, seconds)."""
    if value is None:
        return None, None
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return value, None
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match:
            seconds = float(match.group(1)) * {"s": 1, "m": 60, "h": 3600}[match.group(2)]
            if seconds > 0:
                return None, seconds
    raise ConfigError(
        f"expected hydra.sweeper.budget to be a number of runs (>= 1) or wall time such as "
        f"300s, 10m or 1.5h, got {value!r}"
    )


@dataclass(frozen=True)
class RaceSettings:
    """The keys under ``hydra.sweeper`` (see the module docstring), checked."""

    seeds: tuple[int, ...]
    min_seeds: int = defaults.RACE_MIN_SEEDS
    alpha: float = defaults.ALPHA
    delta: float | None = None
    budget_runs: int | None = None
    budget_s: float | None = None
    objective: str = defaults.METRIC

    @classmethod
    def from_config(cls, sweeper: Mapping[str, Any], objective: str) -> RaceSettings:
        """From the sweeper's config node; one-line :class:`ConfigError` for a bad key."""
        metrics.get(objective, option="objective")
        seeds = parse_seeds(sweeper.get("seeds"))
        min_seeds = sweeper.get("min_seeds", defaults.RACE_MIN_SEEDS)
        if isinstance(min_seeds, bool) or not isinstance(min_seeds, int) or min_seeds < MIN_SEEDS:
            raise ConfigError(
                f"expected hydra.sweeper.min_seeds to be an integer >= {MIN_SEEDS} (a test needs "
                f"two values), got {min_seeds!r}"
            )
        if min_seeds > len(seeds):
            raise ConfigError(
                f"hydra.sweeper.min_seeds={min_seeds} is more than the {len(seeds)} seeds of "
                f"hydra.sweeper.seeds ({', '.join(map(str, seeds))}); give more seeds or a "
                f"smaller min_seeds"
            )
        alpha = sweeper.get("alpha", defaults.ALPHA)
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 < alpha < 1:
            raise ConfigError(f"expected hydra.sweeper.alpha in (0, 1), got {alpha!r}")
        delta = sweeper.get("delta")
        if delta is not None and (
            isinstance(delta, bool)
            or not isinstance(delta, (int, float))
            or not math.isfinite(delta)
            or delta < 0
        ):
            raise ConfigError(
                f"expected hydra.sweeper.delta to be a number >= 0 (the equivalence margin, in "
                f"{objective}'s units), got {delta!r}"
            )
        runs, seconds = parse_budget(sweeper.get("budget"))
        return cls(seeds, min_seeds, float(alpha), delta, runs, seconds, objective)

    @property
    def looks(self) -> int:
        return len(self.seeds) - self.min_seeds + 1

    @property
    def alpha_per_look(self) -> float:
        """The level of each look's tests: alpha spent evenly over the looks."""
        return self.alpha / self.looks

    @property
    def margin(self) -> float | None:
        """The equivalence margin in force: ``delta``, else the objective's default (0.005 for
        metrics in [0, 1]); None: no equivalence test."""
        if self.delta is None:
            return defaults.DELTA if metrics.get(self.objective).bounded else None
        return float(self.delta) or None

    def max_runs(self, configurations: int) -> int:
        return configurations * len(self.seeds)

    def schedule(self, configurations: int) -> str:
        """The seed schedule in words (``--dry-run``, the sweep's first line)."""
        first = ", ".join(map(str, self.seeds[: self.min_seeds]))
        rest = self.seeds[self.min_seeds :]
        text = f"seeds {first} for every configuration"
        if rest:
            later = ", ".join(map(str, rest))
            text += f", then one more a round ({later}) while any is undecided"
        margin = self.margin
        text += (
            f"; at most {self.max_runs(configurations)} runs; {self.looks} look"
            f"{'s' * (self.looks != 1)} at alpha {self.alpha:g}/{self.looks} = "
            f"{self.alpha_per_look:.4g} each"
            + (f", equivalence margin ±{margin:g}" if margin is not None else "")
        )
        if self.budget_runs is not None:
            text += f"; budget {self.budget_runs} runs"
        if self.budget_s is not None:
            text += f"; budget {self.budget_s:g} s"
        return text


@dataclass
class Entry:
    """One configuration in the race: its label, its overrides, the objective by seed (the
    seeds whose runs failed apart), and where it stands."""

    label: str
    overrides: tuple[str, ...]
    values: dict[int, float] = field(default_factory=dict)
    failed: set[int] = field(default_factory=set)
    status: str = RACING
    decided_at: int | None = None  # the look that decided it
    p_vs_best: float = math.nan
    p_equiv: float = math.nan

    @property
    def seeds_run(self) -> int:
        return len(self.values) + len(self.failed)

    @property
    def mean(self) -> float:
        return sum(self.values.values()) / len(self.values) if self.values else math.nan


def configurations(
    parser: Any, params: Mapping[str, str], arguments: Sequence[str]
) -> list[list[str]]:
    """Every configuration of a race: the cartesian product of ``params`` (the sweep file's)
    and the command line's ``arguments`` (which win), as Hydra's basic sweeper expands them.
    The race owns the seed: a ``seed`` among them is refused."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

    overrides = parser.parse_overrides([*(f"{k}={v}" for k, v in params.items()), *arguments])
    if any(o.key_or_group == "seed" for o in overrides):
        raise ConfigError(
            "the race chooses the seeds (hydra.sweeper.seeds=range(0,10)): remove seed=... "
            "from the command line and from hydra.sweeper.params"
        )
    if any(o.is_sweep_override() and not o.is_discrete_sweep() for o in overrides):
        raise ConfigError(
            "the race runs lists of values (pool=max,avg): ranges and intervals to sample "
            "are another sweeper's (hydra/sweeper=optuna)"
        )
    return BasicSweeper.split_arguments(overrides, None)[0]


def labels_of(configurations: Sequence[Sequence[str]]) -> list[str]:
    """Each configuration by the overrides that tell it from the others (``pool=max``)."""
    if len(configurations) == 1:
        return [" ".join(configurations[0]) or "(the base config)"]
    common = set(configurations[0]).intersection(*map(set, configurations[1:]))
    return [" ".join(o for o in c if o not in common) for c in configurations]


class Race:
    """The state of one race: its configurations, the values their runs handed back, the
    decisions of every look, and what to launch next."""

    def __init__(
        self,
        configurations: Sequence[Sequence[str]],
        settings: RaceSettings,
        resolution: float | None = None,
    ) -> None:
        if not configurations:
            raise ConfigError("the race has no configuration to run")
        self.settings = settings
        self.info = metrics.get(settings.objective)
        self.resolution = resolution
        labels = labels_of(configurations)
        self.entries = [Entry(lab, tuple(c)) for lab, c in zip(labels, configurations, strict=True)]
        self.look_count = 0
        self.rows: list[dict[str, Any]] = []
        self.stopped: str | None = None  # why it stopped, once it has

    @property
    def racing(self) -> list[Entry]:
        return [e for e in self.entries if e.status in (RACING, BEST)]

    def next_batch(self) -> list[tuple[Entry, int]]:
        """The runs of the next round: the first ``min_seeds`` seeds of every configuration,
        then the next seed of each one still racing; empty when the race is over."""
        if self.stopped is not None:
            return []
        batch = []
        for entry in self.racing:
            done = entry.seeds_run
            want = self.settings.min_seeds if done < self.settings.min_seeds else done + 1
            batch += [(entry, s) for s in self.settings.seeds[done:want]]
        return batch

    def record(self, entry: Entry, seed: int, value: float | None) -> None:
        """What run ``seed`` of ``entry`` handed back (None: it failed)."""
        if value is None or not math.isfinite(value):
            entry.failed.add(seed)
        else:
            entry.values[seed] = float(value)

    def look(self) -> str:
        """Test the configurations still racing against each other at this look's level;
        returns the look's decisions in one line."""
        self.look_count += 1
        level = self.settings.alpha_per_look
        for entry in self.racing:
            if not entry.values:  # every seed failed: nothing to race with
                entry.status, entry.decided_at = FAILED, self.look_count
        racing = self.racing
        groups = [dict(e.values) for e in racing]
        verdicts = against_best(
            groups,
            self.info.higher_is_better,
            level,
            delta=self.settings.margin,
            resolution=self.resolution,
        )
        decided: dict[str, list[str]] = {ELIMINATED: [], EQUIVALENT: []}
        for entry, verdict in zip(racing, verdicts, strict=True):
            entry.p_vs_best, entry.p_equiv = verdict.p, verdict.p_equiv
            if verdict.best:
                entry.status = BEST
            elif verdict.status == WORSE:
                entry.status, entry.decided_at = ELIMINATED, self.look_count
                decided[ELIMINATED].append(f"{entry.label} (p={verdict.p:.2g})")
            elif verdict.status == EQUIVALENT:
                entry.status, entry.decided_at = EQUIVALENT, self.look_count
                decided[EQUIVALENT].append(entry.label)
            else:
                entry.status = RACING
        self._rows(level)
        if not [e for e in self.entries if e.status == RACING]:
            self.stopped = "decided: every configuration left is the best or equivalent to it"
        elif all(e.seeds_run >= len(self.settings.seeds) for e in self.racing):
            self.stopped = f"seeds run out ({len(self.settings.seeds)})"
        n = max((e.seeds_run for e in racing), default=0)
        best = next((e.label for e in self.entries if e.status == BEST), "-")
        left = len([e for e in self.entries if e.status == RACING])
        parts = [f"race look {self.look_count}/{self.settings.looks} (n={n}, alpha {level:.3g})"]
        parts.append(f"best {best}")
        if decided[ELIMINATED]:
            parts.append("eliminated " + ", ".join(decided[ELIMINATED]))
        if decided[EQUIVALENT]:
            parts.append("equivalent " + ", ".join(decided[EQUIVALENT]))
        parts.append(f"{left} undecided")
        return "; ".join(parts)

    def stop(self, reason: str) -> None:
        """End the race early (the budget): what is still racing stays undecided."""
        self.stopped = reason

    def _rows(self, level: float) -> None:
        for entry in self.entries:
            self.rows.append(
                {
                    "look": self.look_count,
                    "configuration": entry.label,
                    "n": len(entry.values),
                    "failed": len(entry.failed),
                    "mean": entry.mean,
                    "p_vs_best": entry.p_vs_best,
                    "p_equiv": entry.p_equiv,
                    "alpha": level,
                    "status": self.final_status(entry),
                }
            )

    def final_status(self, entry: Entry) -> str:
        """best, equivalent, eliminated, failed, or undecided (still racing)."""
        return UNDECIDED if entry.status == RACING else entry.status

    def summary(self) -> dict[str, list[str]]:
        """The configurations by final status."""
        out: dict[str, list[str]] = {}
        for entry in self.entries:
            out.setdefault(self.final_status(entry), []).append(entry.label)
        return out

    def csv_text(self) -> str:
        buffer = io.StringIO()
        columns = ["look", "configuration", "n", "failed", "mean", "p_vs_best", "p_equiv"]
        writer = csv.DictWriter(buffer, [*columns, "alpha", "status"], lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows)
        return buffer.getvalue()

    def write(self, sweep_dir: Path) -> Path:
        path = Path(sweep_dir) / RACE_CSV
        atomic_write_text(path, self.csv_text())
        return path


def read_decisions(sweep_dir: Path) -> dict[str, dict[str, Any]] | None:
    """Every configuration's decision in the race in ``sweep_dir`` (None: no race there): the
    row of the look that stopped it (eliminated, equivalent: later looks repeat that row), else
    of the last look."""
    path = Path(sweep_dir) / RACE_CSV
    if not path.is_file():
        return None
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    last: dict[str, dict[str, Any]] = {}
    for row in rows:
        before = last.get(row["configuration"])
        if before is None or before["status"] not in (ELIMINATED, EQUIVALENT):
            last[row["configuration"]] = row
    return last


def tag_records(
    records: list[dict[str, Any]], decisions: Mapping[str, Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """Copies of ``records`` with the race's decision for each one's configuration (field
    ``race``): a record belongs to the configuration whose overrides its own include."""
    labels = {label: set(label.split()) for label in decisions}
    out = []
    for record in records:
        tokens = set(str(record.get("overrides") or "").split())
        owner = max(
            (label for label, parts in labels.items() if parts <= tokens),
            key=lambda label: len(labels[label]),
            default=None,
        )
        status = decisions[owner]["status"] if owner is not None else None
        out.append({**record, "race": status})
    return out


def race_sentences(decisions: Mapping[str, Mapping[str, Any]], settings: RaceSettings) -> list[str]:
    """What the race decided, in plain sentences (the sweep's closing lines)."""
    by: dict[str, list[str]] = {}
    for label, row in decisions.items():
        by.setdefault(row["status"], []).append(in_prose(label))
    decisions = {in_prose(label): row for label, row in decisions.items()}
    best = ", ".join(by.get(BEST, [])) or "-"
    margin = settings.margin
    first = f"Race: best {best}"
    if margin is not None:
        equivalent = ", ".join(by.get(EQUIVALENT, [])) or "none"
        first += f"; equivalent to it within ±{margin:g}: {equivalent}"
    sentences = [first + "."]
    eliminated = [
        f"{label} (look {decisions[label]['look']}, p={float(decisions[label]['p_vs_best']):.2g})"
        for label in by.get(ELIMINATED, [])
    ]
    second = []
    if eliminated:
        second.append(f"eliminated, significantly worse: {', '.join(eliminated)}")
    if by.get(UNDECIDED):
        undecided = [f"{label} (n={decisions[label]['n']})" for label in by[UNDECIDED]]
        second.append(f"undecided when the race stopped: {', '.join(undecided)}")
    if by.get(FAILED):
        second.append(f"every run failed: {', '.join(by[FAILED])}")
    if second:
        sentences.append(second[0][0].upper() + "; ".join(second)[1:] + ".")
    return sentences


def race_legend(settings: RaceSettings) -> str:
    """The sentence that explains a race's verdict column."""
    margin = settings.margin
    text = (
        f"verdict: the race's decisions ({RACE_CSV}), {settings.objective}; {settings.looks} "
        f"look{'s' * (settings.looks != 1)} (after {settings.min_seeds} seeds, then each round), "
        f"alpha {settings.alpha:g} spent evenly over them ({settings.alpha_per_look:.4g} a look); "
        f"eliminated: significantly worse than another configuration (one-sided paired t-tests "
        f"by seed against every other configuration still racing, combined by Simes' rule, Holm)"
    )
    if margin is not None:
        text += f"; equivalent: within ±{margin:g} of the best (TOST, Holm)"
    return text + "; undecided: still racing when it stopped"


__all__ = [
    "RACE_CSV",
    "Race",
    "RaceSettings",
    "parse_budget",
    "parse_seeds",
    "race_legend",
    "race_sentences",
    "read_decisions",
    "tag_records",
]
