"""Repeat-scan stability of the corrected spine age (the MRI paper's Table 4): ICC(2,1) with its 95 % CI.

ICC(2,1) (Shrout & Fleiss 1979; McGraw & Wong's ICC(A,1)) treats the subjects and
the two sessions as random effects and measures absolute agreement of a single
scan, so a systematic shift between sessions (ageing by a year or two) counts
against it. Only subjects whose scans the network never trained on take part.
pingouin computes it, with the F-based confidence interval.

Example:
    >>> table = pd.DataFrame({"subject": list("aabbccdd"), "session": [1, 2] * 4,
    ...                       "value": [40.0, 41.0, 55.0, 54.0, 62.0, 63.5, 33.0, 33.0]})
    >>> round(icc_2_1(table, "subject", "session", "value")["icc"], 3)
    0.997
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

MIN_SUBJECTS = 3
"""Fewer subjects than this give no ICC (NaN): its F test has no error degrees of freedom to speak of."""

SEXES: dict[str, str | None] = {"all": None, "men": "M", "women": "F"}
"""The groups of the stability table and the ``sex`` they keep."""


def icc_2_1(table: pd.DataFrame, targets: str, raters: str, ratings: str) -> dict[str, float]:
    """ICC(2,1) of ``ratings`` (long format: one row per target and rater) with its 95 % CI.

    Returns:
        ``icc``, ``ci_low``, ``ci_high``, ``f``, ``p`` and ``n`` (targets); NaN figures for fewer than
        :data:`MIN_SUBJECTS` targets.
    """
    n = int(table[targets].nunique())
    empty = {"icc": math.nan, "ci_low": math.nan, "ci_high": math.nan, "f": math.nan, "p": math.nan, "n": n}
    if n < MIN_SUBJECTS:
        return empty
    import pingouin

    result = pingouin.intraclass_corr(data=table, targets=targets, raters=raters, ratings=ratings)
    row = result.set_index("Type").loc["ICC(A,1)" if "ICC(A,1)" in set(result["Type"]) else "ICC2"]
    low, high = (float(v) for v in row["CI95" if "CI95" in row.index else "CI95%"])
    return {"icc": float(row["ICC"]), "ci_low": low, "ci_high": high, "f": float(row["F"]), "p": float(row["pval"]), "n": n}


def repeat_scan_pairs(table: pd.DataFrame, trained_splits: tuple[str, ...] = ("train",)) -> pd.DataFrame:
    """The first two scans of every subject none of whose scans the network trained on, in long format.

    Args:
        table: per series ``series_id``, ``subject_id``, ``split``, ``age``, ``sex`` and the value to compare.
        trained_splits: splits the network was fitted on.

    Returns:
        The rows of those scans with a ``session`` column (1, 2: by age) and ``years_between`` (per subject).
    """
    trained = set(table.loc[table["split"].isin(trained_splits), "subject_id"])
    unseen = table[~table["subject_id"].isin(trained)].sort_values(["subject_id", "age", "series_id"])
    unseen = unseen.assign(session=unseen.groupby("subject_id").cumcount() + 1)
    counts = unseen.groupby("subject_id")["session"].transform("max")
    pairs = unseen[(counts >= 2) & (unseen["session"] <= 2)].copy()
    ages = pairs.pivot(index="subject_id", columns="session", values="age")
    pairs["years_between"] = pairs["subject_id"].map(ages[2] - ages[1]) if len(pairs) else np.zeros(0)
    return pairs.reset_index(drop=True)


def repeat_scan_stability(table: pd.DataFrame, value: str = "corrected_age") -> dict[str, dict[str, Any]]:
    """ICC(2,1) of ``value`` between each unseen subject's two scans, for all, men and women.

    Returns:
        Per group (:data:`SEXES`): the figures of :func:`icc_2_1` plus ``mean_years_between``.
    """
    pairs = repeat_scan_pairs(table)
    figures = {}
    for group, sex in SEXES.items():
        rows = pairs if sex is None else pairs[pairs["sex"] == sex]
        between = rows.drop_duplicates("subject_id")["years_between"]
        figures[group] = {
            **icc_2_1(rows, "subject_id", "session", value),
            "mean_years_between": float(between.mean()) if len(between) else math.nan,
        }
    return figures
