"""The papers' accuracy figures of predicted ages: MAE, WMAE, R², Pearson r, the mean gap and its SD.

WMAE (the MRI paper) is the mean of the per-bracket MAEs, so that the crowded middle
brackets do not hide a poor fit at the ends of the age range. R² is the coefficient
of determination of chronological age by the predicted age (1 − SS_res / SS_tot).

Example:
    >>> import pandas as pd
    >>> table = pd.DataFrame({"age": [30.0, 32.0, 70.0], "bracket": [30, 30, 70]})
    >>> figures = age_metrics(table, np.array([31.0, 35.0, 70.0]))
    >>> figures["mae"], figures["wmae"]
    (1.3333333333333333, 1.0)
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

FIGURES: tuple[str, ...] = ("n", "mae", "wmae", "r2", "r", "mean_gap", "sd_gap")
"""The figures of :func:`age_metrics`, in the order the tables show them."""


def mean_absolute_error(age: np.ndarray, predicted: np.ndarray) -> float:
    """Mean |predicted − age| (years); NaN for no series."""
    age, predicted = np.asarray(age, float), np.asarray(predicted, float)
    return float(np.mean(np.abs(predicted - age))) if len(age) else math.nan


def weighted_mae(age: np.ndarray, predicted: np.ndarray, bracket: np.ndarray) -> float:
    """The mean of the per-bracket MAEs (the MRI paper's WMAE); series without a bracket are left out.

    Example:
        >>> weighted_mae(np.array([30.0, 32.0, 70.0]), np.array([31.0, 35.0, 70.0]), np.array([30, 30, 70]))
        1.0
    """
    frame = pd.DataFrame({"error": np.abs(np.asarray(predicted, float) - np.asarray(age, float)), "bracket": bracket})
    per_bracket = frame.dropna(subset=["bracket"]).groupby("bracket")["error"].mean()
    return float(per_bracket.mean()) if len(per_bracket) else math.nan


def r_squared(age: np.ndarray, predicted: np.ndarray) -> float:
    """1 − Σ(age − predicted)² / Σ(age − mean age)²; NaN for fewer than 2 series or ages without spread.

    Example:
        >>> r_squared(np.array([40.0, 50.0, 60.0]), np.array([42.0, 50.0, 58.0]))
        0.96
    """
    age, predicted = np.asarray(age, float), np.asarray(predicted, float)
    total = float(np.sum((age - age.mean()) ** 2)) if len(age) else 0.0
    if len(age) < 2 or total == 0:
        return math.nan
    return float(1.0 - np.sum((age - predicted) ** 2) / total)


def pearson_r(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson r; NaN for fewer than 3 pairs or a constant side."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    if len(x) < 3 or np.std(x) == 0 or np.std(y) == 0:
        return math.nan
    return float(np.corrcoef(x, y)[0, 1])


def age_metrics(table: pd.DataFrame, predicted: np.ndarray) -> dict[str, float]:
    """Every figure of :data:`FIGURES` for ``predicted`` against ``table``'s ``age`` (and ``bracket`` for WMAE).

    The gap is predicted − chronological age; ``sd_gap`` is its sample SD.
    """
    age = table["age"].to_numpy(float)
    predicted = np.asarray(predicted, float)
    gap = predicted - age
    return {
        "n": len(age),
        "mae": mean_absolute_error(age, predicted),
        "wmae": weighted_mae(age, predicted, table["bracket"].to_numpy()) if "bracket" in table else math.nan,
        "r2": r_squared(age, predicted),
        "r": pearson_r(age, predicted),
        "mean_gap": float(gap.mean()) if len(gap) else math.nan,
        "sd_gap": float(gap.std(ddof=1)) if len(gap) > 1 else math.nan,
    }


def metrics_by_group(table: pd.DataFrame, predicted_column: str, groups: list[str]) -> pd.DataFrame:
    """:func:`age_metrics` of ``predicted_column`` per group of ``groups`` (e.g. bracket × sex), one row per group."""
    rows = []
    for keys, rows_of_group in table.groupby(groups, sort=True, dropna=True):
        keys = keys if isinstance(keys, tuple) else (keys,)
        figures = age_metrics(rows_of_group, rows_of_group[predicted_column].to_numpy(float))
        rows.append({**dict(zip(groups, keys)), **figures})
    return pd.DataFrame(rows, columns=[*groups, *FIGURES])
