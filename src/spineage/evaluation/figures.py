"""The evaluation figures: predicted against chronological age (raw and corrected) and absolute error by bracket × sex.

Example:
    >>> import pandas as pd
    >>> table = pd.DataFrame({"age": [40.0, 60.0], "predicted_age": [42.0, 57.0], "corrected_age": [41.0, 59.0],
    ...                       "split": ["test", "full_test_abnormal"], "bracket": [40, 60], "sex": ["F", "M"]})
    >>> render_predicted_vs_age(table, Path("predicted_vs_age.png"))  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from spineage.plotting import headless_pyplot, save_figure

SPLIT_COLOURS: dict[str, str] = {
    "test": "tab:blue", "full_test_abnormal": "tab:red", "full_test_other": "tab:grey",
    "validation": "tab:green", "train": "lightgrey",
}


def _save(fig, out: Path) -> Path:
    return save_figure(fig, out, dpi=90)


def render_predicted_vs_age(table: pd.DataFrame, out: Path, splits: tuple[str, ...] = ("test", "full_test_abnormal", "full_test_other")) -> Path:
    """Predicted (left) and bias-corrected (right) spine age against chronological age, with the identity line."""
    plt = headless_pyplot()
    shown = table[table["split"].isin(splits)]
    low = float(np.nanmin(shown[["age", "predicted_age", "corrected_age"]].to_numpy())) - 2 if len(shown) else 0.0
    high = float(np.nanmax(shown[["age", "predicted_age", "corrected_age"]].to_numpy())) + 2 if len(shown) else 1.0
    fig, axes = plt.subplots(1, 2, figsize=(10, 5), sharex=True, sharey=True)
    for ax, column, title in zip(axes, ("predicted_age", "corrected_age"), ("raw", "bias-corrected")):
        for split in splits:
            rows = shown[shown["split"] == split]
            if len(rows):
                ax.scatter(rows["age"], rows[column], s=10, alpha=0.7, color=SPLIT_COLOURS.get(split, "k"), label=f"{split} ({len(rows)})")
        ax.plot([low, high], [low, high], color="k", lw=1, ls="--", label="identity")
        ax.set(xlim=(low, high), ylim=(low, high), xlabel="chronological age (years)", ylabel=f"spine age, {title} (years)", title=title)
        ax.set_aspect("equal")
    axes[0].legend(fontsize=7, loc="upper left")
    return _save(fig, out)


def render_error_by_bracket_sex(by_group: pd.DataFrame, out: Path) -> Path:
    """Mean absolute error (raw and corrected) per bracket × sex (the MRI paper's Figure 4), per evaluation set.

    Args:
        by_group: rows with ``set``, ``bracket``, ``sex``, ``raw_mae`` and ``corrected_mae``.
        out: the PNG to write.
    """
    plt = headless_pyplot()
    sets = list(dict.fromkeys(by_group["set"]))
    fig, axes = plt.subplots(1, max(len(sets), 1), figsize=(6 * max(len(sets), 1), 4), squeeze=False, sharey=True)
    for ax, name in zip(axes[0], sets):
        rows = by_group[by_group["set"] == name].sort_values(["bracket", "sex"])
        labels = [f"{int(b)} {s}" for b, s in zip(rows["bracket"], rows["sex"])]
        x = np.arange(len(rows))
        ax.bar(x - 0.2, rows["raw_mae"], width=0.4, label="raw", color="tab:grey")
        ax.bar(x + 0.2, rows["corrected_mae"], width=0.4, label="corrected", color="tab:blue")
        ax.set_xticks(x, labels, rotation=60, fontsize=7)
        ax.set(title=f"{name}: absolute error by bracket × sex", ylabel="mean absolute error (years)")
        ax.legend(fontsize=7)
    return _save(fig, out)
