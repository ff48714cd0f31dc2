"""Train, validation and test splits of the normal cohort, and the full test set.

Normal series are split train/validation/test (default 80/10/10), stratified
by sex x age bracket and grouped by subject, so that a subject's repeat scans
never sit on both sides of a train/evaluation boundary. Every other series
joins the test series as the *full test set* ("abnormal series join the test
series as the full test set"):

=====================  ===================================================
split                  series
=====================  ===================================================
``train``              normal, for fitting the spine-age model
``validation``         normal, for early stopping and the bias correction
``test``               normal, held out
``full_test_abnormal`` abnormal (small clusters and noise)
``full_test_other``    outside the age brackets (not assessed)
=====================  ===================================================

The full test set is ``test`` + ``full_test_abnormal`` + ``full_test_other``
(:data:`FULL_TEST_SPLITS`). A subject with any series outside the normal
cohort (an abnormal repeat scan, say) has all its series in the full test
set: its normal series go to ``test``. So no subject is in more than one of
train, validation and the full test set.

How normal subjects are split: subjects are grouped into strata (sex x the
bracket of their first normal series), shuffled within each stratum with the
seed, and dealt out one by one to the split that is furthest behind its
target share of the stratum's normal series (normal series already in test
because of their subject count towards test). Every stratum then gets its
fractions to within a series or two, whatever its size.

Example:
    >>> import pandas as pd
    >>> table = pd.DataFrame({"series_id": ["a", "b", "c"], "subject_id": ["s1", "s1", "s2"],
    ...                       "sex": ["F", "F", "M"], "bracket": [40, 40, 50], "normal": [True, False, True]})
    >>> assign_splits(table, {"train": 0.8, "validation": 0.1, "test": 0.1}, seed=0).tolist()
    ['test', 'full_test_abnormal', 'train']
"""

from __future__ import annotations

import numpy as np
import pandas as pd

TRAIN, VALIDATION, TEST = "train", "validation", "test"
FULL_TEST_ABNORMAL = "full_test_abnormal"
FULL_TEST_OTHER = "full_test_other"
SPLITS: tuple[str, ...] = (TRAIN, VALIDATION, TEST, FULL_TEST_ABNORMAL, FULL_TEST_OTHER)
FULL_TEST_SPLITS: tuple[str, ...] = (TEST, FULL_TEST_ABNORMAL, FULL_TEST_OTHER)
"""The splits that make up the full test set."""

_SPLIT_STREAM = 11  # the seed stream of the split shuffle (independent of the phantom's streams)


def _deal(weights: np.ndarray, fractions: dict[str, float], already: dict[str, float] | None = None) -> list[str]:
    """Deal items (with weights) out to splits, each to the split furthest behind its target.

    ``already`` holds weight the splits have before dealing (series placed beforehand).
    """
    names = list(fractions)
    shares = np.array([fractions[name] for name in names])
    assigned = np.array([(already or {}).get(name, 0.0) for name in names], dtype=float)
    out = []
    total = float(assigned.sum())
    for weight in weights:
        total += weight
        choice = int(np.argmax(shares * total - assigned))
        assigned[choice] += weight
        out.append(names[choice])
    return out


def assign_splits(cohort: pd.DataFrame, fractions: dict[str, float], seed: int) -> pd.Series:
    """The split of every series.

    Args:
        cohort: one row per series with series_id, subject_id, sex, bracket
            (missing outside the brackets) and normal.
        fractions: train, validation and test shares of the normal series.
        seed: the shuffle's seed.

    Returns:
        The split of each row (index of ``cohort``), one of :data:`SPLITS`.
    """
    split = pd.Series(
        np.where(cohort["bracket"].isna(), FULL_TEST_OTHER, np.where(cohort["normal"], "", FULL_TEST_ABNORMAL)),
        index=cohort.index,
        dtype=object,
    )
    held_out = set(cohort.loc[split != "", "subject_id"])
    candidates = (split == "") & cohort["subject_id"].isin(held_out)
    split[candidates] = TEST  # their subject is in the full test set already

    normal = cohort[(split == "") | candidates]
    if not (split == "").any():
        return split
    first = normal.sort_values(["subject_id", "bracket", "series_id"]).groupby("subject_id", sort=True).first()
    per_subject = normal.groupby("subject_id", sort=True).size()
    subjects = pd.DataFrame({"sex": first["sex"], "bracket": first["bracket"].astype(int), "weight": per_subject,
                             "forced": first.index.isin(held_out)})
    rng = np.random.default_rng([seed, _SPLIT_STREAM])
    subject_split: dict[str, str] = {}
    for _, stratum in subjects.groupby(["sex", "bracket"], sort=True):
        # The stratum's normal series already in test (their subject is) count towards its test share.
        forced = stratum[stratum["forced"]]
        free = stratum[~stratum["forced"]]
        free = free.iloc[rng.permutation(len(free))]
        dealt = _deal(free["weight"].to_numpy(float), fractions, {TEST: float(forced["weight"].sum())})
        subject_split.update(zip(free.index, dealt))
    todo = split == ""
    split[todo] = cohort.loc[todo, "subject_id"].map(subject_split).to_numpy()
    return split


def plot_age_histogram(cohort: pd.DataFrame, path) -> None:
    """Age histograms by split and sex (the MRI paper's Figure 2)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    present = [s for s in SPLITS if (cohort["split"] == s).any()] or [TRAIN]
    fig, axes = plt.subplots(1, len(present), figsize=(3.6 * len(present), 3.4), sharex=True, squeeze=False)
    bins = np.arange(20, 95, 5)
    for ax, name in zip(axes[0], present):
        part = cohort[cohort["split"] == name]
        ages = [part.loc[part["sex"] == sex, "age"].to_numpy(float) for sex in ("F", "M")]
        ax.hist(ages, bins=bins, label=[f"F ({len(ages[0])})", f"M ({len(ages[1])})"],
                color=["tab:red", "tab:blue"], alpha=0.8)
        ax.set_title(f"{name}: {len(part)} series", fontsize=9)
        ax.set_xlabel("age (years)")
        ax.legend(fontsize=7, frameon=False)
    axes[0][0].set_ylabel("series")
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=110, metadata={"Software": None})
    plt.close(fig)
