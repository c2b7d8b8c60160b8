"""The one validator every config value goes through (poolbench/checks.py)."""

from __future__ import annotations

import math

import pytest

from poolbench.core.checks import check_bool, check_choice, check_int, check_int_list, check_number
from poolbench.core.errors import ConfigError


def test_int_refuses_bool_float_and_out_of_range():
    assert check_int("train.epochs", 3, 1) == 3
    for bad in (True, 2.0, "3", 0):
        with pytest.raises(ConfigError, match=r"expected train.epochs to be an integer >= 1"):
            check_int("train.epochs", bad, 1)
    with pytest.raises(ConfigError, match=r"lenet5: expected conv_padding to be an integer in"):
        check_int("conv_padding", 3, 0, 2, where="lenet5")


def test_number_ranges_open_and_closed():
    assert check_number("lr", 1, 0, low_open=True) == 1.0
    assert isinstance(check_number("lr", 1, 0, low_open=True), float)
    with pytest.raises(ConfigError, match=r"expected lr to be a number > 0, got 0"):
        check_number("lr", 0, 0, low_open=True)
    assert check_number("smoothing", 0, 0, 1, high_open=True) == 0.0
    with pytest.raises(ConfigError, match=r"in \[0, 1\)"):
        check_number("smoothing", 1, 0, 1, high_open=True)
    for bad in (math.nan, math.inf, True, [0.1], "0.1"):
        with pytest.raises(ConfigError, match="expected lr to be a number"):
            check_number("lr", bad)


def test_choice_and_bool():
    assert check_choice("schedule", "cosine", ("onecycle", "cosine")) == "cosine"
    with pytest.raises(ConfigError, match=r"one of onecycle, cosine, got 'cosin'"):
        check_choice("schedule", "cosin", ("onecycle", "cosine"))
    # 1 == True in Python: a choice list of flags must not accept the integer
    with pytest.raises(ConfigError, match="one of auto, true, false, got 1"):
        check_choice("channels_last", 1, ("auto", True, False))
    assert check_bool("compile", False) is False
    with pytest.raises(ConfigError, match="true or false, got 'yes'"):
        check_bool("compile", "yes")


def test_int_list():
    assert check_int_list("widths", (8, 16), 1) == [8, 16]
    for bad in ([], [8, 0], [8, True], "8", 8, [8.0]):
        with pytest.raises(ConfigError, match="widths"):
            check_int_list("widths", bad, 1)
    with pytest.raises(ConfigError, match="expected widths to be 3 integers >= 1"):
        check_int_list("widths", [1, 2], 1, length=3)
