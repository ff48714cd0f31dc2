"""Numbers as the report prints them: 2–3 significant decimals, p values as ``0.003`` or ``<0.001``.

Every formatter takes whatever a JSON or CSV file holds (int, float, bool, None, NaN,
str, NumPy scalars) and returns text; a missing value prints as an en dash.

Example:
    >>> format_number(2.744054), format_number(0.92463), format_number(10.4163), format_number(325.4), format_number("L4")
    ('2.74', '0.925', '10.4', '325', 'L4')
    >>> format_count(325.0), format_count(18070)
    ('325', '18,070')
    >>> format_p(0.0033), format_p(0.00033), format_p(0.456), format_p(None)
    ('0.003', '<0.001', '0.46', '–')
    >>> format_share(0.6543), format_estimate(1.234, 0.5, 2.0)
    ('65.4 %', '1.23 (0.500 to 2.00)')
    >>> format_compact({"dvc_md5": "7346", "n": 3, "r": 0.781})
    'dvc_md5: 7346; n: 3; r: 0.781'
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from numbers import Integral, Real
from typing import Any

MISSING = "–"
"""What a missing value (None, NaN, empty text) prints as."""


def as_float(value: Any) -> float | None:
    """``value`` as a float (infinities kept), or None for a missing value, a boolean or text (text is never parsed)."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, Real):
        number = float(value)
        return None if math.isnan(number) else number
    return None


def is_missing(value: Any) -> bool:
    """True for None, NaN and empty (or whitespace-only) text."""
    if value is None:
        return True
    if isinstance(value, str):
        return not value.strip()
    if isinstance(value, Real) and not isinstance(value, bool):
        return math.isnan(float(value))
    return False


def format_number(value: Any, decimals: int | None = None) -> str:
    """A number with 2–3 significant decimals (or exactly ``decimals``); text passes through, missing is ``–``.

    Below 1 in size three decimals, below 10 two, below 100 one, above that none (with
    thousands separators); integers print whole.
    """
    if is_missing(value):
        return MISSING
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, Integral):
        return f"{int(value):,}"
    number = as_float(value)
    if number is None:
        return str(value)
    if math.isinf(number):
        return "∞" if number > 0 else "−∞"
    if decimals is None:
        size = abs(number)
        decimals = 3 if size < 1 else 2 if size < 10 else 1 if size < 100 else 0
    text = f"{number:,.{decimals}f}"
    # A tiny negative value rounds to "-0.000": print it unsigned.
    return text[1:] if text.startswith("-") and float(text[1:].replace(",", "")) == 0 else text


def format_count(value: Any) -> str:
    """A whole number (``325.0`` → ``325``) with thousands separators; a non-integral number keeps its decimals."""
    number = as_float(value)
    if number is not None and math.isfinite(number) and number == round(number):
        return f"{round(number):,}"
    return format_number(value)


def format_p(value: Any) -> str:
    """A p value: ``<0.001``, three decimals below 0.1 (``0.003``, ``0.046``), two above (``0.46``)."""
    number = as_float(value)
    if number is None:
        return MISSING if is_missing(value) else str(value)
    if number < 0.001:
        return "<0.001"
    return f"{number:.3f}" if number < 0.1 else f"{number:.2f}"


def format_share(value: Any) -> str:
    """A share in [0, 1] as a percentage with one decimal (``0.6543`` → ``65.4 %``)."""
    number = as_float(value)
    if number is None:
        return MISSING if is_missing(value) else str(value)
    return f"{100 * number:.1f} %"


def format_estimate(effect: Any, low: Any = None, high: Any = None) -> str:
    """An estimate with its confidence interval, ``1.23 (0.45 to 2.01)``; the interval is left out when missing."""
    text = format_number(effect)
    if text == MISSING or (is_missing(low) and is_missing(high)):
        return text
    return f"{text} ({format_number(low)} to {format_number(high)})"


def is_p_value_key(key: str) -> bool:
    """True for a key that names a p value (``p``, ``adj_p``, ``p_value``, ``p_trend``)."""
    key = key.lower()
    return key in ("p", "pvalue", "p_value") or key.endswith("_p") or key.startswith("p_")


def format_value(value: Any, key: str = "") -> str:
    """Any value for a generic table cell: p values by their key, booleans as yes/no, nested values compactly."""
    if isinstance(value, (Mapping, list, tuple)):
        return format_compact(value)
    if is_p_value_key(key) and as_float(value) is not None:
        return format_p(value)
    return format_number(value)


def format_compact(value: Any, limit: int = 12) -> str:
    """A nested value on one line: ``key: value; …`` for a mapping, ``a, b, …`` for a list (at most ``limit`` items).

    A mapping or list inside another one is wrapped in parentheses.
    """
    def inner(item: Any, key: str = "") -> str:
        if isinstance(item, (Mapping, list, tuple)):
            return f"({format_compact(item, limit)})"
        return format_value(item, key)

    if isinstance(value, Mapping):
        items = [f"{key}: {inner(item, str(key))}" for key, item in list(value.items())[:limit]]
        separator = "; "
    elif isinstance(value, (list, tuple)):
        items = [inner(item) for item in list(value)[:limit]]
        separator = ", "
    else:
        return format_value(value)
    more = len(value) - limit
    return separator.join(items) + (f"{separator}… ({more} more)" if more > 0 else "")
