"""Typed run configuration: what the library receives instead of a Hydra ``DictConfig``.

``RunConfig.from_dict`` takes the plain dict of a composed config (Hydra or hand-written) and
validates it; ``identity`` and ``run_id`` define which runs are "the same run".
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from poolbench.core import defaults, metrics
from poolbench.core.checks import check_bool, check_choice, check_int, check_int_list, check_number
from poolbench.core.errors import ConfigError

DEVICES = ("auto", "cpu", "cuda")
SCHEDULES = ("onecycle", "cosine", "step", "constant")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")

# Top-level keys that do not change what a run computes, so they are not part of its identity:
# the same config with other tags, another logger or another sweep objective is the same run.
NON_IDENTITY_KEYS = frozenset(
    {
        "hydra",
        "results_dir",
        "rerun",
        "keep_checkpoint",
        "progress",
        "experiment",
        "latency_interleaved",
        "tags",
        "logger",
        "objective",
    }
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

    airbench's parts (Jordan 2024, ``train=airbench``): ``decoupled`` reads ``lr`` and
    ``weight_decay`` per 1024 examples, decoupled from batch size and momentum (SGD with
    Nesterov momentum: the step is ``lr * batch / (1024 * (1 + 1 / (1 - momentum)))`` on the
    mean loss, the decay per step ``weight_decay * batch / (1024 * (1 + 1 / (1 - momentum)))``);
    ``bn_bias_lr`` scales the learning rate (not the decay) of BatchNorm biases;
    ``decay_all`` puts weight decay on every parameter (else on weights only); onecycle runs
    from ``lr_start`` to 1 to ``lr_end`` (fractions of the peak); every ``lookahead_every``
    steps the weights are pulled into their running average and back (the EMA's decay
    ``lookahead_decay ** every * (step / steps) ** 3``), and training ends on the average;
    ``flip`` (``auto``: the data's random flips; ``alternating``; ``none``), ``translate`` (px;
    null: the data's ``crop_pad``) and ``pad_mode`` (``zeros`` | ``reflect``) set the
    augmentation.
    """

    epochs: int = 8
    batch_size: int = 64
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
    decoupled: bool = False
    bn_bias_lr: float = 1.0
    decay_all: bool = False
    lr_start: float = 0.0
    lr_end: float = 0.0
    lookahead_every: int = 0
    lookahead_decay: float = 0.95
    flip: str = "auto"
    translate: int | None = None
    pad_mode: str = "zeros"

    def __post_init__(self) -> None:
        check_choice("train.optimizer", self.optimizer, ("sgd", "adamw"))
        check_choice("train.schedule", self.schedule, SCHEDULES)
        check_choice("train.select", self.select, ("last", "best_val"))
        check_int("train.epochs", self.epochs, 1)
        check_int("train.batch_size", self.batch_size, 1)
        _set(self, "lr", check_number("train.lr", self.lr, 0, low_open=True))
        _set(self, "momentum", check_number("train.momentum", self.momentum, 0, 1, high_open=True))
        check_bool("train.nesterov", self.nesterov)
        _set(self, "weight_decay", check_number("train.weight_decay", self.weight_decay, 0))
        smoothing = check_number(
            "train.label_smoothing", self.label_smoothing, 0, 1, high_open=True
        )
        _set(self, "label_smoothing", smoothing)
        warmup = check_number("train.warmup_frac", self.warmup_frac, 0, 1, high_open=True)
        _set(self, "warmup_frac", warmup)
        milestones = [
            check_number("train.milestones", m, 0, 1, low_open=True, high_open=True)
            for m in _as_list("train.milestones", self.milestones)
        ]
        if milestones != sorted(milestones):
            raise ConfigError(
                f"expected train.milestones to be increasing fractions of training in (0, 1), "
                f"got {milestones}"
            )
        _set(self, "milestones", tuple(milestones))
        _set(self, "gamma", check_number("train.gamma", self.gamma, 0, 1, low_open=True))
        check_int("train.eval_every", self.eval_every, 0)
        check_bool("train.decoupled", self.decoupled)
        if self.decoupled and self.optimizer != "sgd":
            raise ConfigError(
                "train.decoupled=true is SGD's airbench parametrisation; set train.optimizer=sgd"
            )
        _set(
            self, "bn_bias_lr", check_number("train.bn_bias_lr", self.bn_bias_lr, 0, low_open=True)
        )
        check_bool("train.decay_all", self.decay_all)
        for key in ("lr_start", "lr_end"):
            _set(self, key, check_number(f"train.{key}", getattr(self, key), 0, 1))
        check_int("train.lookahead_every", self.lookahead_every, 0)
        decay = check_number("train.lookahead_decay", self.lookahead_decay, 0, 1, high_open=True)
        _set(self, "lookahead_decay", decay)
        check_choice("train.flip", self.flip, ("auto", "alternating", "none"))
        if self.translate is not None:
            check_int("train.translate", self.translate, 0)
        check_choice("train.pad_mode", self.pad_mode, ("zeros", "reflect"))
        fraction = check_number("train.val_fraction", self.val_fraction, 0, 1, high_open=True)
        _set(self, "val_fraction", fraction)
        if self.select == "best_val" and self.eval_every == 0:
            raise ConfigError(
                "train.select=best_val picks the best evaluated epoch: set train.eval_every >= 1"
            )

    @property
    def needs_val(self) -> bool:
        """Whether the recipe scores a validation split during training."""
        return self.select == "best_val" or self.eval_every > 0

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        valid = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - valid)
        if unknown:
            raise ConfigError(
                f"unknown train key(s) {', '.join(unknown)}; valid: {', '.join(sorted(valid))}"
            )
        return cls(**d)


def _set(obj: Any, key: str, value: Any) -> None:
    """Store a checked (converted) value on a frozen dataclass."""
    object.__setattr__(obj, key, value)


def _as_list(key: str, value: Any) -> list[Any]:
    if isinstance(value, (list, tuple)):
        return list(value)
    raise ConfigError(f"expected {key} to be a list, got {value!r}")


SHIFT_MODES = ("pad", "roll")
TTA = ("none", "flip", "flip_translate")


@dataclass(frozen=True)
class EvalConfig:
    """Invariance tests (config node ``eval``, see :mod:`poolbench.measure.invariance`; the defaults
    suit the 16-px digits) and test-time augmentation of the final test score (``tta``:
    ``none``, ``flip``: the mean logits of the image and its mirror, ``flip_translate``:
    airbench's, half that and half the mean over 1 px translations up-left and down-right,
    each mirrored too; flips only on data that flips)."""

    enabled: bool = True
    max_shift: int = 2
    shifts: tuple[int, ...] = (1, 2)
    shift_mode: str = "pad"
    max_rot: float = 15.0
    sizes: tuple[int, ...] = (12, 24)
    batch_size: int = 512
    tta: str = "none"

    def __post_init__(self) -> None:
        check_bool("eval.enabled", self.enabled)
        check_choice("eval.shift_mode", self.shift_mode, SHIFT_MODES)
        check_choice("eval.tta", self.tta, TTA)
        check_int("eval.max_shift", self.max_shift, 0)
        check_int("eval.batch_size", self.batch_size, 1)
        for key in ("shifts", "sizes"):
            values = getattr(self, key)
            if values:
                _set(self, key, tuple(check_int_list(f"eval.{key}", values, 1)))
        _set(self, "max_rot", check_number("eval.max_rot", self.max_rot, 0, 180))

    def metric_names(self) -> list[str]:
        """The record fields the invariance tests fill (:mod:`poolbench.measure.invariance`)."""
        if not self.enabled:
            return []
        names = ["shift_consistency", *(f"acc_shift_{k}" for k in self.shifts)]
        if self.max_rot > 0:
            names.append("acc_rot")
        return names + [f"acc_res_{s}" for s in self.sizes]

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> EvalConfig:
        if d is not None and not isinstance(d, dict):
            raise ConfigError(f"expected eval to be a group of keys, got {d!r}")
        d = dict(d or {})
        valid = set(cls.__dataclass_fields__)
        unknown = sorted(set(d) - valid)
        if unknown:
            raise ConfigError(
                f"unknown eval key(s) {', '.join(unknown)}; valid: {', '.join(sorted(valid))}"
            )
        for key in ("shifts", "sizes"):
            if key in d:
                d[key] = tuple(_as_list(f"eval.{key}", d[key] or []))
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
    latency_interleaved: bool = True
    channels_last: str | bool = "auto"
    compile: bool = False
    threads: str | int = "auto"
    eval: EvalConfig = field(default_factory=EvalConfig)
    logger: ComponentSpec = field(default_factory=lambda: ComponentSpec("csv"))
    objective: str = defaults.METRIC
    tags: tuple[str, ...] = ()
    overrides: tuple[str, ...] = ()
    identity: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        check_choice("device", self.device, DEVICES)
        check_choice("precision", self.precision, PRECISIONS)
        check_int("seed", self.seed)
        check_int("latency_batch", self.latency_batch, 1)
        check_int("latency_repeats", self.latency_repeats, 1)
        check_choice("channels_last", self.channels_last, ("auto", True, False))
        if self.threads != "auto":
            try:
                check_int("threads", self.threads, 1)
            except ConfigError:
                raise ConfigError(
                    f"expected threads to be auto or an integer >= 1, got {self.threads!r}"
                ) from None
        for key in ("compile", "rerun", "keep_checkpoint", "progress", "latency_interleaved"):
            check_bool(key, getattr(self, key))
        _set(self, "tags", check_tags(self.tags))
        metrics.get(self.objective, option="objective")
        if not isinstance(self.results_dir, str) or not self.results_dir.strip():
            raise ConfigError(
                f"expected results_dir to be a directory path, got {self.results_dir!r}"
            )

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
        nested = {"pool", "head", "model", "data", "train", "eval", "logger"}
        scalars = {k: d[k] for k in known - nested if k in d}
        if "logger" in d:
            scalars["logger"] = ComponentSpec.from_dict(d["logger"], "logger")
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

    def value(self, key: str) -> Any:
        """The value of the dotted config ``key`` in this run (``pool.F``, ``train.epochs``,
        ``seed``); None for a pool's or model's parameter it does not set."""
        head, _, rest = key.partition(".")
        node = getattr(self, head)
        if not rest:
            return node
        if isinstance(node, (PoolSpec, ComponentSpec)):
            return node.name if rest == "name" else node.params.get(rest)
        return getattr(node, rest)

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


def check_tags(value: Any) -> tuple[str, ...]:
    """``+tags=[paper,v2]``: free-form labels of a run, kept in its record (a single name is
    one tag). Names are text without commas (reports join them with commas); repeats go."""
    items = [value] if isinstance(value, (str, int, float)) else value
    if not isinstance(items, (list, tuple)) or any(
        isinstance(t, bool) or not isinstance(t, (str, int, float)) for t in items
    ):
        raise ConfigError(f"expected tags to be a list of names (+tags=[a,b]), got {value!r}")
    tags = [str(t).strip() for t in items]
    bad = [t for t in tags if not t or "," in t]
    if bad:
        raise ConfigError(f"expected tags to be non-empty names without commas, got {bad[0]!r}")
    return tuple(dict.fromkeys(tags))


def add_tags(record: dict[str, Any], tags: tuple[str, ...]) -> bool:
    """Add ``tags`` a record lacks (kept in order); True when it changed."""
    have = list(record.get("tags") or [])
    new = [t for t in tags if t not in have]
    if new:
        record["tags"] = have + new
    return bool(new)


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
