"""The figures of the SAG analysis: the odds-ratio forest (the MRI paper's Figure 6) and SAG by age and work (Figure 7).

Example:
    >>> odds = pd.DataFrame({"variable": ["fracture"], "cases_high": [8], "n_high": [20], "cases_low": [3],
    ...                      "n_low": [25], "odds_ratio": [4.89], "ci_low": [1.09], "ci_high": [21.95], "p": [0.02]})
    >>> plot_odds_forest(odds, Path("odds_ratios.png"), high_gap_years=5.0, low_gap_years=-5.0)  # doctest: +SKIP
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from spineage.analysis.settings import SagSettings
from spineage.plotting import headless_pyplot, save_figure

GRID_POINTS = 60
"""Ages of the common grid the LOWESS curves and their bootstrap bands are evaluated on."""

MIN_CURVE_SERIES = 5
"""A work group with fewer series is drawn as points only."""


def plot_odds_forest(odds: pd.DataFrame, path: Path, *, high_gap_years: float | None = None, low_gap_years: float | None = None) -> Path:
    """Figure 6: each finding's odds ratio (high-gap against low-gap series) with its 95 % CI, on a log axis.

    Rows without an estimate (NaN) are left out; p < 0.05 is drawn in red.

    Args:
        odds: :func:`spineage.analysis.odds.gap_group_odds_ratios`'s table.
        path: the PNG to write.
        high_gap_years: the high group's threshold for the title (default: ``odds.attrs``).
        low_gap_years: the low group's threshold for the title (default: ``odds.attrs``).
    """
    plt = headless_pyplot()
    high = odds.attrs.get("high_gap_years") if high_gap_years is None else high_gap_years
    low = odds.attrs.get("low_gap_years") if low_gap_years is None else low_gap_years
    n_high = int(odds["n_high"].iloc[0]) if len(odds) else 0
    n_low = int(odds["n_low"].iloc[0]) if len(odds) else 0
    shown = odds[np.isfinite(odds["odds_ratio"].astype(float))].iloc[::-1]
    fig, ax = plt.subplots(figsize=(9, 1.6 + 0.32 * max(len(shown), 3)))
    groups = (f"SAG > {high:+g} y (n = {n_high}) vs SAG < {low:+g} y (n = {n_low})" if high is not None and low is not None
              else f"high gap (n = {n_high}) vs low gap (n = {n_low})")
    ax.set_title(f"Odds of each finding with a high spine age gap\n{groups}", fontsize=10)
    if len(shown):
        y = np.arange(len(shown))
        significant = (shown["p"] < 0.05).to_numpy()
        colours = np.where(significant, "tab:red", "tab:blue")
        ratio = shown["odds_ratio"].to_numpy(float)
        errors = np.vstack([ratio - shown["ci_low"].to_numpy(float), shown["ci_high"].to_numpy(float) - ratio])
        for i in range(len(shown)):
            ax.errorbar(ratio[i], y[i], xerr=errors[:, i : i + 1], fmt="o", color=colours[i], capsize=3, ms=5)
        labels = [f"{r.variable.replace('_', ' ')} ({r.cases_high}/{r.n_high} vs {r.cases_low}/{r.n_low})" for r in shown.itertuples()]
        ax.set_yticks(y, labels, fontsize=8)
        ax.set_xscale("log")
        ax.axvline(1.0, color="k", lw=1, ls="--")
        for i, r in enumerate(shown.itertuples()):
            ax.annotate(f"{r.odds_ratio:.2f} [{r.ci_low:.2f}, {r.ci_high:.2f}] p={r.p:.3g}", (1.01, y[i]),
                        xycoords=("axes fraction", "data"), va="center", fontsize=7)
        ax.set_ylim(-0.7, len(shown) - 0.3)
    else:
        ax.text(0.5, 0.5, "no finding with an estimable odds ratio", ha="center", va="center", transform=ax.transAxes)
        ax.set_yticks([])
    ax.set_xlabel("odds ratio (95 % CI, log scale); red: Fisher p < 0.05")
    return save_figure(fig, path)


def lowess_band(age: np.ndarray, sag: np.ndarray, grid: np.ndarray, frac: float, samples: int,
                rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """LOWESS of ``sag`` on ``age`` at ``grid`` and its 95 % bootstrap band (2.5th and 97.5th percentiles).

    Grid ages outside the group's own age range are NaN (no extrapolation), as is the band
    when ``samples`` is 0.

    Example:
        >>> age = np.linspace(30, 80, 40); sag = 0.1 * (age - 55)
        >>> curve, low, high = lowess_band(age, sag, np.array([40.0, 60.0, 90.0]), 0.5, 20, np.random.default_rng(0))
        >>> np.round(curve, 3).tolist(), bool(low[0] <= curve[0] <= high[0])
        ([-1.5, 0.5, nan], True)
    """
    from statsmodels.nonparametric.smoothers_lowess import lowess

    age, sag, grid = np.asarray(age, float), np.asarray(sag, float), np.asarray(grid, float)
    inside = (grid >= age.min()) & (grid <= age.max())

    def smooth(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        values = np.full(len(grid), np.nan)
        values[inside] = lowess(y, x, frac=frac, xvals=grid[inside])
        return values

    curve = smooth(age, sag)
    if samples < 1:
        return curve, np.full(len(grid), np.nan), np.full(len(grid), np.nan)
    draws = np.empty((samples, len(grid)))
    for b in range(samples):
        pick = rng.integers(0, len(age), len(age))
        draws[b] = smooth(age[pick], sag[pick])
    with warnings.catch_warnings():  # an all-NaN column (a resample too narrow for a grid age) is NaN, not an alarm
        warnings.simplefilter("ignore", RuntimeWarning)
        low, high = np.nanpercentile(draws, [2.5, 97.5], axis=0)
    return curve, low, high


def demanding_work(table: pd.DataFrame, settings: SagSettings) -> pd.Series:
    """True for physically demanding work (``settings.demanding_work``), False for the other levels, NaN when unknown."""
    work = table["work"]
    return (work.isin(settings.demanding_work)).astype(object).where(work.notna(), None)


def sag_by_age_and_work_curves(table: pd.DataFrame, settings: SagSettings, seed: int) -> pd.DataFrame:
    """The curves of Figure 7: per work group (demanding or not), LOWESS and band on a common age grid.

    Returns:
        A long table: ``demanding`` (bool), ``age`` (the grid), ``sag``, ``band_low``, ``band_high``
        (groups with fewer than :data:`MIN_CURVE_SERIES` series are left out).
    """
    data = pd.DataFrame({"age": pd.to_numeric(table["age"], errors="coerce"), "sag": pd.to_numeric(table["sag"], errors="coerce"),
                         "demanding": demanding_work(table, settings)}).dropna()
    if data.empty:
        return pd.DataFrame(columns=["demanding", "age", "sag", "band_low", "band_high"])
    grid = np.linspace(data["age"].min(), data["age"].max(), GRID_POINTS)
    streams = np.random.SeedSequence(seed).spawn(2)
    parts = []
    for demanding, stream in zip((False, True), streams):
        group = data[data["demanding"] == demanding]
        if len(group) < MIN_CURVE_SERIES:
            continue
        curve, low, high = lowess_band(group["age"].to_numpy(), group["sag"].to_numpy(), grid, settings.smoothing_frac,
                                       settings.bootstrap_samples, np.random.default_rng(stream))
        parts.append(pd.DataFrame({"demanding": demanding, "age": grid, "sag": curve, "band_low": low, "band_high": high}))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["demanding", "age", "sag", "band_low", "band_high"])


def plot_sag_by_age_and_work(table: pd.DataFrame, settings: SagSettings, path: Path, seed: int) -> Path:
    """Figure 7: SAG against chronological age, coloured by physically demanding work, with LOWESS curves and 95 % bands.

    Without a ``work`` column (no lifestyle table) every series is one group, drawn and labelled as such:
    the age dependence of the gap is worth seeing either way, and the stage's outputs stay the same files.

    Args:
        table: the analysis table with ``age``, ``sag`` and (when lifestyle is known) ``work``.
        settings: ``demanding_work``, ``smoothing_frac`` and ``bootstrap_samples``.
        path: the PNG to write.
        seed: the bootstrap's seed (the same seed draws the same bands).
    """
    plt = headless_pyplot()
    known = "work" in table
    if known:
        levels = ", ".join(settings.demanding_work)
        groups = ((False, "tab:blue", "not demanding"), (True, "tab:red", f"demanding ({levels})"))
        title = "Spine age gap by age and physically demanding work"
    else:
        table = table.assign(work="unknown")  # not a demanding level: one group
        groups = ((False, "tab:gray", "all series (no lifestyle table: work unknown)"),)
        title = "Spine age gap by age (no lifestyle table)"
    demanding = demanding_work(table, settings)
    curves = sag_by_age_and_work_curves(table, settings, seed)
    fig, ax = plt.subplots(figsize=(8, 5.5))
    for flag, colour, name in groups:
        rows = table[demanding == flag]
        ax.scatter(rows["age"], rows["sag"], s=12, alpha=0.45, color=colour, label=f"{name}: n = {len(rows)}")
        curve = curves[curves["demanding"] == flag]
        if len(curve):
            ax.plot(curve["age"], curve["sag"], color=colour, lw=2)
            if settings.bootstrap_samples > 0:
                ax.fill_between(curve["age"].astype(float), curve["band_low"].astype(float), curve["band_high"].astype(float),
                                color=colour, alpha=0.18, lw=0)
    ax.axhline(0.0, color="k", lw=0.8, ls="--")
    ax.set(xlabel="chronological age (years)", ylabel="spine age gap, SAG (years)",
           title=f"{title}\nLOWESS (frac {settings.smoothing_frac:g}) with "
                 f"95 % bootstrap band ({settings.bootstrap_samples} resamples)")
    ax.legend(fontsize=8, loc="upper left")
    return save_figure(fig, path)
