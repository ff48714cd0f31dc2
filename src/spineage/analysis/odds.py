"""The MRI paper's Figure 6: odds of each finding in series with a high spine age gap against a low one.

The high group is SAG > ``settings.high_gap_years``, the low group SAG < ``settings.low_gap_years``.
For each finding (a degenerative condition at any severity in any region, each pathology, each
other finding) the 2 × 2 table

==============  ==============  ==================
group           with finding    without
==============  ==============  ==================
high gap        a               b = n_high − a
low gap         c               d = n_low − c
==============  ==============  ==================

gives the odds ratio ad / bc with Woolf's 95 % CI, exp(log OR ± 1.96 √(1/a + 1/b + 1/c + 1/d)),
after adding 0.5 to every cell when any cell is 0 (Haldane–Anscombe), and the two-sided p of
Fisher's exact test on the uncorrected table. A group without series gives a NaN row; a finding
that no series of either group has (or that every series has) gets NaN odds ratio and CI (the
correction alone would make up a ratio) and Fisher's p of 1.

Example:
    >>> cells = odds_ratio_2x2(8, 20, 3, 25)
    >>> round(cells["odds_ratio"], 4), round(cells["ci_low"], 3), round(cells["ci_high"], 2)
    (4.8889, 1.089, 21.95)
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from spineage.analysis.covariates import FLAG_FINDINGS, NONE, region_column
from spineage.analysis.settings import SagSettings
from spineage.findings.vocabulary import DEGENERATIVE_CONDITIONS, REGIONS

ODDS_COLUMNS: tuple[str, ...] = ("variable", "cases_high", "n_high", "cases_low", "n_low", "odds_ratio", "ci_low", "ci_high", "p")
"""Columns of :func:`gap_group_odds_ratios` (and ``odds_ratios.csv``)."""

Z_95 = 1.959963984540054
"""The standard normal quantile of a two-sided 95 % interval."""


def odds_ratio_2x2(cases_high: int, n_high: int, cases_low: int, n_low: int) -> dict[str, float]:
    """Odds ratio (high against low), Woolf 95 % CI and Fisher p of one 2 × 2 table (module docstring).

    NaN for everything when either group is empty; NaN odds ratio and CI (Fisher's p kept) when the
    finding is absent from (or present in) every series of both groups.
    """
    from scipy.stats import fisher_exact

    if n_high == 0 or n_low == 0:
        return {"odds_ratio": math.nan, "ci_low": math.nan, "ci_high": math.nan, "p": math.nan}
    a, b, c, d = cases_high, n_high - cases_high, cases_low, n_low - cases_low
    p = float(fisher_exact([[a, b], [c, d]], alternative="two-sided").pvalue)
    if a + c == 0 or b + d == 0:
        return {"odds_ratio": math.nan, "ci_low": math.nan, "ci_high": math.nan, "p": p}
    if min(a, b, c, d) == 0:
        a, b, c, d = a + 0.5, b + 0.5, c + 0.5, d + 0.5
    log_or = math.log(a * d / (b * c))
    half = Z_95 * math.sqrt(1 / a + 1 / b + 1 / c + 1 / d)
    return {"odds_ratio": math.exp(log_or), "ci_low": math.exp(log_or - half), "ci_high": math.exp(log_or + half), "p": p}


def finding_presence(table: pd.DataFrame) -> pd.DataFrame:
    """Each finding as present (1) or absent (0) per series: degenerative conditions in any region, then flags.

    A degenerative condition is present when any of its ``<region>_<condition>`` columns is not
    ``none``; findings without a column in ``table`` are left out.
    """
    columns = {}
    for condition in DEGENERATIVE_CONDITIONS:
        regional = [region_column(region, condition) for region in REGIONS if region_column(region, condition) in table]
        if regional:
            columns[condition] = (table[regional] != NONE).any(axis=1).astype(int)
    for finding in FLAG_FINDINGS:
        if finding in table:
            columns[finding] = (pd.to_numeric(table[finding], errors="coerce").fillna(0) > 0).astype(int)
    return pd.DataFrame(columns, index=table.index)


def gap_group_odds_ratios(table: pd.DataFrame, settings: SagSettings) -> pd.DataFrame:
    """Figure 6's odds ratios: one row per finding (:data:`ODDS_COLUMNS`), high-gap against low-gap series.

    Args:
        table: the analysis table (``sag`` and the finding columns).
        settings: ``high_gap_years`` and ``low_gap_years``.

    The thresholds travel in the result's ``attrs`` (for the figure's title).
    """
    sag = pd.to_numeric(table["sag"], errors="coerce")
    high, low = (sag > settings.high_gap_years).to_numpy(), (sag < settings.low_gap_years).to_numpy()
    presence = finding_presence(table)
    rows = []
    for variable in presence.columns:
        present = presence[variable].to_numpy(bool)
        counts = (int(present[high].sum()), int(high.sum()), int(present[low].sum()), int(low.sum()))
        rows.append({"variable": variable, **dict(zip(ODDS_COLUMNS[1:5], counts)), **odds_ratio_2x2(*counts)})
    out = pd.DataFrame(rows, columns=list(ODDS_COLUMNS))
    for column in ODDS_COLUMNS[1:5]:
        out[column] = out[column].astype(np.int64)
    out.attrs.update(high_gap_years=settings.high_gap_years, low_gap_years=settings.low_gap_years)
    return out
