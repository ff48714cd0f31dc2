"""Numbers as the report prints them."""

from __future__ import annotations

import math

import numpy as np
import pytest

from spineage.reporting.formatting import (
    MISSING,
    format_compact,
    format_count,
    format_estimate,
    format_number,
    format_p,
    format_share,
    format_value,
)


@pytest.mark.parametrize(("value", "text"), [
    (0.92463, "0.925"), (2.744054, "2.74"), (-0.18527, "-0.185"), (10.4163, "10.4"), (325.4, "325"), (18070.2, "18,070"),
    (-1e-9, "0.000"), (7, "7"), (np.int64(251), "251"), (np.float64(3.3335), "3.33"), (True, "yes"), (False, "no"),
    (None, MISSING), (math.nan, MISSING), ("", MISSING), ("L4 severe", "L4 severe"), ("7346", "7346"), (math.inf, "∞"),
])
def test_numbers_get_two_to_three_significant_decimals_and_text_passes_through(value, text: str) -> None:
    assert format_number(value) == text


@pytest.mark.parametrize(("value", "text"), [
    (0.0033, "0.003"), (0.00099, "<0.001"), (0.0, "<0.001"), (0.001, "0.001"), (0.0457, "0.046"), (0.0999, "0.100"),
    (0.5432, "0.54"), (1.0, "1.00"), (None, MISSING), (math.nan, MISSING),
])
def test_p_values_print_as_the_papers_do(value, text: str) -> None:
    assert format_p(value) == text


def test_counts_shares_and_estimates() -> None:
    assert (format_count(325.0), format_count(4), format_count(2.5), format_count(None)) == ("325", "4", "2.50", MISSING)
    assert (format_share(0.6543), format_share(1), format_share(None)) == ("65.4 %", "100.0 %", MISSING)
    assert format_estimate(1.2345, 0.5, 2.0) == "1.23 (0.500 to 2.00)"
    assert format_estimate(-0.4567, -1.9, 1.0) == "-0.457 (-1.90 to 1.00)"
    assert format_estimate(2.5, None, math.nan) == "2.50"
    assert format_estimate(None, 0.1, 0.2) == MISSING


def test_generic_cells_know_p_values_by_their_key_and_print_nested_values_on_one_line() -> None:
    assert format_value(0.0002, "adj_p") == "<0.001"
    assert format_value(0.0002, "p_trend") == "<0.001"
    assert format_value(0.0002, "power") == "0.000"
    assert format_compact({"n": 3, "p": 0.00001, "by": {"a": [1, 2]}}) == "n: 3; p: <0.001; by: (a: (1, 2))"
    assert format_compact(list(range(15)), limit=3) == "0, 1, 2, … (12 more)"
