"""Typed run configuration: what the library receives instead of a Hydra ``DictConfig``.

``RunConfig.from_dict`` takes the plain dict of a composed config (Hydra or hand-written) and
validates it; ``identity`` and ``run_id`` define which runs are "the same run".
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from poolbench.errors import ConfigError

DEVICES = ("auto", "cpu", "cuda")
SCHEDULES = ("onecycle", "cosine", "step", "constant")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")

# Top-level keys that do not change what a run computes, so they are not part of its identity.
NON_IDENTITY_KEYS = frozenset(
    {"hydra", "results_dir", "rerun", "keep_checkpoint", "progress", "experiment"}
)


@dataclass(frozen=True)
class PoolSpec:
    """A pool by registry name with its factory keyword arguments (``F``, ``S``, ``p``, ...)."""

    name: str
    params: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: dict[str, Any], key: str) -> PoolSpec:
        return cls(*_split_name(d, key))


@dataclass(frozen=True)
class ComponentSpec:
    """A model or dataset by registry name with its factory keyword arguments."""

    name: str
    params: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: dict[str, Any], key: str) -> ComponentSpec:
        return cls(*_split_name(d, key))


def _split_name(d: Any, key: str) -> tuple[str, dict[str, Any]]:
    if not isinstance(d, dict) or "name" not in d:
        raise ConfigError(f"config '{key}' needs a 'name' key, got {d!r}")
    params = {k: v for k, v in d.items() if k != "name"}
    return str(d["name"]), params


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation recipe (config group ``train``).

    ``val_fraction`` carves a seeded validation split out of the training images; every
    evaluation during training (``eval_every``) and any model selection (``select=best_val``)
    reads it. The test split is read once, for the final number.
    """

    epochs: int = 10
    batch_size: int = 128
    optimizer: str = "sgd"
    lr: float = 0.05
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    label_smoothing: float = 0.0
    schedule: str = "onecycle"
    warmup_frac: float = 0.2
    milestones: tuple[float, ...] = (0.5, 0.75)
    gamma: float = 0.1
    eval_every: int = 0
    val_fraction: float = 0.0
    select: str = "last"

    def __post_init__(self) -> None:
        _check_choice("train.optimizer", self.optimizer, ("sgd", "adamw"))
        _check_choice("train.schedule", self.schedule, SCHEDULES)
        _check_choice("train.select", self.select, ("last", "best_val"))
        if not isinstance(self.epochs, int) or self.epochs < 1:
            raise ConfigError(f"expected train.epochs >= 1, got {self.epochs!r}")
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ConfigError(f"expected train.batch_size >= 1, got {self.batch_size!r}")
        if not self.lr > 0:
            raise ConfigError(f"expected train.lr > 0, got {self.lr!r}")
        if not self.weight_decay >= 0:
            raise ConfigError(f"expected train.weight_decay >= 0, got {self.weight_decay!r}")
        if not 0 <= self.label_smoothing < 1:
            raise ConfigError(
                f"expected 0 <= train.label_smoothing < 1, got {self.label_smoothing}"
            )
        if not 0 <= self.warmup_frac < 1:
            raise ConfigError(f"expected 0 <= train.warmup_frac < 1, got {self.warmup_frac}")
        milestones = list(self.milestones)
        if any(not 0 < m < 1 for m in milestones) or milestones != sorted(milestones):
            raise ConfigError(
                f"expected train.milestones to be increasing fractions of training in (0, 1), "
                f"got {milestones}"
            )
        object.__setattr__(self, "milestones", tuple(milestones))
        if not 0 < self.gamma <= 1:
            raise ConfigError(f"expected 0 < train.gamma <= 1, got {self.gamma!r}")
        if (
            isinstance(self.eval_every, bool)
            or not isinstance(self.eval_every, int)
            or self.eval_every < 0
        ):
            raise ConfigError(
                f"expected train.eval_every to be an integer >= 0 (0: no evaluation during "
                f"training), got {self.eval_every!r}"
            )
        if not 0 <= self.val_fraction < 1:
            raise ConfigError(f"expected 0 <= train.val_fraction < 1, got {self.val_fraction}")
        if self.select == "best_val" and self.eval_every == 0:
            raise ConfigError(
                "train.select=best_val picks the best evaluated epoch: set train.eval_every >= 1"
            )
        needs_val = self.select == "best_val" or self.eval_every > 0
        if needs_val and self.val_fraction == 0:
            raise ConfigError(
                "train.eval_every > 0 and train.select=best_val evaluate on a validation split, "
                "never the test split: set train.val_fraction > 0 (e.g. 0.1)"
            )

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        valid = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - valid)
        if unknown:
            raise ConfigError(
                f"unknown train key(s) {', '.join(unknown)}; valid: {', '.join(sorted(valid))}"
            )
        return cls(**d)


def _check_choice(key: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"expected {key} to be one of {', '.join(choices)}, got {value!r}")


SHIFT_MODES = ("pad", "roll")


@dataclass(frozen=True)
class EvalConfig:
    """Invariance tests (config node ``eval``, see :mod:`poolbench.invariance`); the defaults
    suit the 16-px digits."""

    enabled: bool = True
    max_shift: int = 2
    shifts: tuple[int, ...] = (1, 2)
    shift_mode: str = "pad"
    max_rot: float = 15.0
    sizes: tuple[int, ...] = (12, 24)
    batch_size: int = 512

    def __post_init__(self) -> None:
        if self.shift_mode not in SHIFT_MODES:
            raise ConfigError(
                f"expected eval.shift_mode to be one of {', '.join(SHIFT_MODES)}, "
                f"got {self.shift_mode!r}"
            )
        for key in ("max_shift", "batch_size"):
            value = getattr(self, key)
            minimum = 0 if key == "max_shift" else 1
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ConfigError(
                    f"expected eval.{key} to be an integer >= {minimum}, got {value!r}"
                )
        for key in ("shifts", "sizes"):
            for value in getattr(self, key):
                if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                    raise ConfigError(
                        f"expected eval.{key} to be a list of integers >= 1, got {value!r}"
                    )
        if not isinstance(self.max_rot, (int, float)) or not 0 <= self.max_rot <= 180:
            raise ConfigError(f"expected 0 <= eval.max_rot <= 180, got {self.max_rot!r}")

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> EvalConfig:
        d = dict(d or {})
        valid = set(cls.__dataclass_fields__)
        unknown = sorted(set(d) - valid)
        if unknown:
            raise ConfigError(
                f"unknown eval key(s) {', '.join(unknown)}; valid: {', '.join(sorted(valid))}"
            )
        for key in ("shifts", "sizes"):
            if key in d:
                d[key] = tuple(d[key] or ())
        return cls(**d)


@dataclass(frozen=True)
class RunConfig:
    """Everything one training run needs, as plain typed values."""

    pool: PoolSpec
    head: PoolSpec
    model: ComponentSpec
    data: ComponentSpec
    train: TrainConfig
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"
    latency_batch: int = 64
    latency_repeats: int = 10
    results_dir: str = "results"
    rerun: bool = False
    keep_checkpoint: bool = False
    progress: bool = True
    channels_last: str | bool = "auto"
    compile: bool = False
    threads: str | int = "auto"
    eval: EvalConfig = field(default_factory=EvalConfig)
    overrides: tuple[str, ...] = ()
    identity: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        _check_choice("device", self.device, DEVICES)
        _check_choice("precision", self.precision, PRECISIONS)
        if not isinstance(self.seed, int):
            raise ConfigError(f"expected seed to be an integer, got {self.seed!r}")
        if not isinstance(self.latency_batch, int) or self.latency_batch < 1:
            raise ConfigError(f"expected latency_batch >= 1, got {self.latency_batch!r}")
        if not isinstance(self.latency_repeats, int) or self.latency_repeats < 1:
            raise ConfigError(f"expected latency_repeats >= 1, got {self.latency_repeats!r}")
        if self.channels_last not in ("auto", True, False):
            raise ConfigError(
                f"expected channels_last to be one of auto, true, false, got {self.channels_last!r}"
            )
        if self.threads != "auto" and (
            isinstance(self.threads, bool) or not isinstance(self.threads, int) or self.threads < 1
        ):
            raise ConfigError(
                f"expected threads to be auto or an integer >= 1, got {self.threads!r}"
            )
        if not isinstance(self.compile, bool):
            raise ConfigError(f"expected compile to be true or false, got {self.compile!r}")

    @classmethod
    def from_dict(cls, d: dict[str, Any], overrides: list[str] | tuple[str, ...] = ()) -> RunConfig:
        """Build from a composed config dict (interpolations already resolved)."""
        for key in ("pool", "head", "model", "data", "train"):
            if key not in d:
                raise ConfigError(f"config is missing the '{key}' group")
        known = {f.name for f in fields(cls)} - {"identity", "overrides"}
        unknown = sorted(set(d) - known - NON_IDENTITY_KEYS)
        if unknown:
            raise ConfigError(
                f"unknown top-level key(s) {', '.join(unknown)}; valid: {', '.join(sorted(known))}"
            )
        nested = {"pool", "head", "model", "data", "train", "eval"}
        scalars = {k: d[k] for k in known - nested if k in d}
        return cls(
            pool=PoolSpec.from_dict(d["pool"], "pool"),
            head=PoolSpec.from_dict(d["head"], "head"),
            model=ComponentSpec.from_dict(d["model"], "model"),
            data=ComponentSpec.from_dict(d["data"], "data"),
            train=TrainConfig.from_dict(dict(d["train"])),
            eval=EvalConfig.from_dict(d.get("eval")),
            overrides=tuple(overrides),
            identity=identity_of(d),
            **scalars,
        )

    @property
    def run_id(self) -> str:
        """Hash of the resolved config (identity keys only): same config, same id."""
        return config_hash(self.identity or self.as_identity_dict())

    @property
    def run_name(self) -> str:
        return run_name(self.identity or self.as_identity_dict())

    def as_identity_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for key in ("pool", "head", "model", "data"):
            spec = d[key]
            d[key] = {"name": spec["name"], **spec["params"]}
        return {
            k: v for k, v in d.items() if k not in NON_IDENTITY_KEYS | {"identity", "overrides"}
        }


def identity_of(config: dict[str, Any]) -> dict[str, Any]:
    """The part of a composed config that decides what a run computes."""
    return {k: v for k, v in config.items() if k not in NON_IDENTITY_KEYS}


def run_name(config: dict[str, Any]) -> str:
    """Directory name of a run: readable parts, then the config hash (``<data>-<model>-...``)."""
    identity = identity_of(config)
    parts = [identity.get(k, {}).get("name", "?") for k in ("data", "model", "pool", "head")]
    return "-".join([*parts, f"s{identity.get('seed', 0)}", config_hash(identity)[:8]])


def config_hash(d: dict[str, Any]) -> str:
    blob = json.dumps(d, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]
