"""The radiograph paper's Kaplan–Meier figure: cumulative failure of the four age × age-difference groups.

Each group's curve is a step function with its confidence band, drawn while at least
:data:`MIN_AT_RISK` subjects remain at risk; the legend gives the group's size, its events and
its unadjusted hazard ratio against the reference; a risk table under the curves gives the number
still at risk at each tick of the time axis.

Example:
    >>> curves = kaplan_meier_failure(table, "time_fracture", "event_any_fracture", "km_group")  # doctest: +SKIP
    >>> ratios = group_hazard_ratios(table, "time_fracture", "event_any_fracture", "km_group", KM_GROUPS[0])  # doctest: +SKIP
    >>> plot_kaplan_meier(curves, ratios, Path("km_fracture.png"), "Incident fracture")  # doctest: +SKIP
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from spineage.plotting import headless_pyplot, save_figure

RISK_TABLE_TICKS = 6
"""About how many times the risk table (and the time axis) shows."""

MIN_AT_RISK = 10
"""A curve stops where fewer subjects remain at risk (its last steps say little and jump to 1)."""


def at_risk_at(curve: pd.DataFrame, times: np.ndarray) -> np.ndarray:
    """Subjects of one group still at risk at each of ``times``, from its rows of the Kaplan–Meier table.

    The table's ``at_risk`` counts those at risk just before each of its times, and nobody leaves
    between two of them: at time t it is the count at the first table time at or after t (0 after
    the last).

    Example:
        >>> curve = pd.DataFrame({"time": [0.0, 1.0, 3.0], "at_risk": [5, 5, 3]})
        >>> at_risk_at(curve, np.array([0.0, 2.0, 3.0, 4.0])).tolist()
        [5, 3, 3, 0]
    """
    ordered = curve.sort_values("time")
    table_times, counts = ordered["time"].to_numpy(float), ordered["at_risk"].to_numpy(np.int64)
    index = np.searchsorted(table_times, np.asarray(times, float), side="left")
    return np.where(index < len(counts), counts[np.minimum(index, len(counts) - 1)], 0)


def curve_while_at_risk(curve: pd.DataFrame, min_at_risk: int) -> pd.DataFrame:
    """The rows of one group's Kaplan–Meier table to draw: up to the last time with ``min_at_risk`` still followed.

    The number at risk is constant between two table times (a row's ``at_risk`` holds since the
    time before it), so the curve ends at the time before the first row under ``min_at_risk``, or
    at the group's last follow-up time (nobody is followed beyond it).

    Example:
        >>> curve = pd.DataFrame({"time": [0.0, 1.0, 2.0, 3.0, 4.0], "at_risk": [5, 5, 4, 3, 2]})
        >>> curve_while_at_risk(curve, 3)["time"].tolist()
        [0.0, 1.0, 2.0, 3.0]
    """
    ordered = curve.sort_values("time")
    short = np.flatnonzero(ordered["at_risk"].to_numpy() < min_at_risk)
    return ordered.iloc[: short[0]] if len(short) else ordered


def _legend_label(group: str, curve: pd.DataFrame, ratios: pd.DataFrame | None) -> str:
    n = int(curve["at_risk"].iloc[0])
    events = int(curve["events"].sum()) if "events" in curve else None
    row = None
    if ratios is not None and len(ratios):
        match = ratios[ratios["group"].astype(str) == str(group)]
        row = match.iloc[0] if len(match) else None
        if row is not None and events is None:
            events = int(row["events"])
    label = f"{group} (n = {n}" + (f", {events} events)" if events is not None else ")")
    if row is None:
        return label
    if row.get("note") == "reference":
        return f"{label}: reference"
    if math.isfinite(float(row["hazard_ratio"])):
        return f"{label}: HR {row['hazard_ratio']:.2f} [{row['ci_low']:.2f}, {row['ci_high']:.2f}]"
    return f"{label}: HR not estimable"


def plot_kaplan_meier(curves: pd.DataFrame, hazard_ratios: pd.DataFrame | None, path: Path,
                      title: str = "Cumulative incidence by age and age difference", min_at_risk: int = MIN_AT_RISK) -> Path:
    """Draw the Kaplan–Meier cumulative-failure curves with bands, HRs in the legend and a risk table.

    Args:
        curves: :func:`spineage.analysis.survival.kaplan_meier_failure`'s long table.
        hazard_ratios: :func:`spineage.analysis.survival.group_hazard_ratios`'s table, or None for
            a legend without HRs.
        path: the PNG to write (atomically).
        title: the figure's title (the outcome).
        min_at_risk: each curve stops at the first time with fewer subjects at risk (0: draw it all).

    Returns:
        ``path``.
    """
    from matplotlib.ticker import MaxNLocator

    plt = headless_pyplot()
    groups = list(dict.fromkeys(curves["group"])) if len(curves) else []
    fig, (ax, risk) = plt.subplots(2, 1, figsize=(9, 6.5 + 0.2 * len(groups)), sharex=True,
                                   gridspec_kw={"height_ratios": [4, 0.6 + 0.3 * max(len(groups), 1)]})
    ax.set_title(title, fontsize=11)
    if not groups:
        ax.text(0.5, 0.5, "no subjects to draw", ha="center", va="center", transform=ax.transAxes)
        risk.set_axis_off()
        return save_figure(fig, path)
    end = float(curves["time"].max()) or 1.0
    for i, group in enumerate(groups):
        curve = curves[curves["group"] == group].sort_values("time")
        label = _legend_label(group, curve, hazard_ratios)
        colour = f"C{i}"
        curve = curve_while_at_risk(curve, min_at_risk)
        if curve.empty:  # fewer than min_at_risk from the start
            ax.plot([], [], color=colour, label=label)
            continue
        times, failure = curve["time"].to_numpy(float), curve["cumulative_failure"].to_numpy(float)
        low, high = curve["ci_low"].to_numpy(float), curve["ci_high"].to_numpy(float)
        ax.step(times, failure, where="post", color=colour, lw=1.6, label=label)
        ax.fill_between(times, low, high, step="post", color=colour, alpha=0.15, lw=0)
    ax.set_ylabel("cumulative failure (95 % CI)")
    if min_at_risk > 0:
        ax.annotate(f"curves stop when fewer than {min_at_risk} remain at risk", (1.0, 1.01), xycoords="axes fraction",
                    ha="right", va="bottom", fontsize=7, color="0.4")
    ax.set_ylim(bottom=0)
    ax.set_xlim(0, end)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=8, framealpha=0.9)
    ticks = [t for t in MaxNLocator(RISK_TABLE_TICKS).tick_values(0, end) if 0 <= t <= end]
    for row, group in enumerate(groups):
        counts = at_risk_at(curves[curves["group"] == group], np.array(ticks))
        for tick, count in zip(ticks, counts):
            risk.text(tick, row, str(int(count)), ha="center", va="center", fontsize=8, color=f"C{row}")
    risk.set_ylim(len(groups) - 0.5, -0.5)
    risk.set_yticks(range(len(groups)), [str(g) for g in groups], fontsize=8)
    risk.set_xticks(ticks)
    risk.tick_params(axis="y", length=0, pad=22)  # clear of the counts centred on time 0
    for side in ("top", "right", "left"):
        risk.spines[side].set_visible(False)
    risk.set_title("number at risk", fontsize=8, loc="left")
    risk.set_xlabel("years of follow-up")
    return save_figure(fig, path)
