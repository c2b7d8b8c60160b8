"""One validator for every value a user sets: integers, real numbers in ranges, choices, flags
and lists of integers.

Each check returns the value (converted where that is lossless: an integer given for a real
number becomes a float) or raises :class:`~poolbench.core.errors.ConfigError` with one line,
``<where>: expected <key> to be <what>, got <value>``. ``bool`` is never accepted as a
number (``True`` is an ``int`` in Python, so ``train.epochs=true`` must be refused by name),
and real numbers must be finite unless the range says otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any, TypeVar

from poolbench.core.errors import ConfigError

T = TypeVar("T")


def _fail(key: str, what: str, value: object, where: str) -> ConfigError:
    prefix = f"{where}: " if where else ""
    return ConfigError(f"{prefix}expected {key} to be {what}, got {value!r}")


def _range_text(low: float | None, high: float | None, low_open: bool, high_open: bool) -> str:
    if low is not None and high is not None:
        left, right = "(" if low_open else "[", ")" if high_open else "]"
        return f" in {left}{low:g}, {high:g}{right}"
    if low is not None:
        return f" {'>' if low_open else '>='} {low:g}"
    if high is not None:
        return f" {'<' if high_open else '<='} {high:g}"
    return ""


def check_int(
    key: str,
    value: object,
    minimum: int | None = None,
    maximum: int | None = None,
    where: str = "",
) -> int:
    """An integer (not a bool) in ``[minimum, maximum]`` (either bound optional)."""
    what = "an integer" + _range_text(minimum, maximum, False, False)
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(key, what, value, where)
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise _fail(key, what, value, where)
    return int(value)


def check_number(
    key: str,
    value: object,
    low: float | None = None,
    high: float | None = None,
    *,
    low_open: bool = False,
    high_open: bool = False,
    where: str = "",
) -> float:
    """A finite real number (int or float, not a bool) in the range the bounds describe;
    ``low_open``/``high_open`` exclude the bound itself (``low=0, low_open=True``: > 0)."""
    what = "a number" + _range_text(low, high, low_open, high_open)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _fail(key, what, value, where)
    number = float(value)
    if math.isnan(number) or math.isinf(number):
        raise _fail(key, what, value, where)
    if low is not None and (number < low or (low_open and number == low)):
        raise _fail(key, what, value, where)
    if high is not None and (number > high or (high_open and number == high)):
        raise _fail(key, what, value, where)
    return number


def check_choice(key: str, value: T, choices: Iterable[Any], where: str = "") -> T:
    """One of ``choices`` (compared with ``==``; a bool never matches an int choice)."""
    options = list(choices)
    if not any(type(value) is type(c) and value == c for c in options):
        names = ", ".join(_show(c) for c in options)
        raise _fail(key, f"one of {names}", value, where)
    return value


def check_bool(key: str, value: object, where: str = "") -> bool:
    """``true`` or ``false`` (a real bool: ``1`` or ``"yes"`` are refused)."""
    if not isinstance(value, bool):
        raise _fail(key, "true or false", value, where)
    return value


def check_int_list(
    key: str,
    value: object,
    minimum: int | None = None,
    length: int | None = None,
    where: str = "",
) -> list[int]:
    """A non-empty list of integers, each ``>= minimum``, of exactly ``length`` when given."""
    count = f"{length} " if length is not None else "a non-empty list of "
    what = f"{count}integers" + _range_text(minimum, None, False, False)
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise _fail(key, what, value, where)
    items = list(value)
    if not items or (length is not None and len(items) != length):
        raise _fail(key, what, value, where)
    for item in items:
        if isinstance(item, bool) or not isinstance(item, int):
            raise _fail(key, what, value, where)
        if minimum is not None and item < minimum:
            raise _fail(key, what, value, where)
    return [int(i) for i in items]


def _show(choice: object) -> str:
    if isinstance(choice, bool):
        return "true" if choice else "false"
    return str(choice)


__all__ = ["check_bool", "check_choice", "check_int", "check_int_list", "check_number"]
