"""``spineage cohort``: the normal cohort and the splits, from the raw cohort and the region vectors.

Inputs: ``sessions.csv`` (series_id, subject_id, age, modality) and
``participants.csv`` (subject_id, sex) of the raw cohort, and
``region_vectors.parquet`` written by ``spineage findings``.

Outputs, each written atomically:

* ``cohort.csv``: one row per MRI series: series_id, subject_id, age, sex,
  bracket (empty outside 25-84), cluster, cluster_label, normal (the consensus
  of ``consensus_runs`` runs), normal_agreement (the share of runs agreeing),
  split (see :mod:`spineage.cohort.normal` and :mod:`spineage.cohort.splits`);
* ``<reports>/clusters.csv``: bracket, cluster, n, percent, normal,
  consensus_normal_share, label (the representative run's clusters);
* ``<reports>/umap_<bracket>.png``: the UMAP scatter of each bracket by cluster;
* ``<reports>/age_histogram.png``: ages by split and sex;
* ``<reports>/summary.json``: series, normal share, abnormal share and
  stability per bracket (mean agreement of its series with the consensus, and
  the share on which every run agreed), series per split (a DVC metric).

**Scoring against an answer key.** When the raw cohort holds a
``ground_truth.json`` with typical/atypical marks (``series_atypical``: each
series id to the list of reasons it is atypical for its age, empty for a
typical spine, as the phantom writes them), summary.json also gets a
``truth`` block (:func:`truth_confusion`) and the one-line report a second
line: over the series in the age brackets, overall and per bracket, how many
typical and atypical series the cohort calls normal and abnormal, and how
many of those with a structural pathology it calls abnormal; and per reason,
the share called abnormal. A real cohort has no such file: nothing changes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from spineage.atomic import write_atomic, write_json_atomic
from spineage.cohort.settings import CohortSettings
from spineage.errors import UserError
from spineage.findings.vocabulary import BRACKETS, PATHOLOGIES
from spineage.raw_cohort import read_mri_series, read_participants

COHORT_COLUMNS: tuple[str, ...] = (
    "series_id", "subject_id", "age", "sex", "bracket", "cluster", "cluster_label", "normal", "normal_agreement", "split",
)
"""Columns of ``cohort.csv``, in order."""


@dataclass(frozen=True)
class CohortSummary:
    """What ``spineage cohort`` built: counts for the one-line report and summary.json."""

    series: int
    normal: int
    abnormal_share_by_bracket: dict[int, float]
    series_by_split: dict[str, int]
    merged_brackets: tuple[str, ...]
    unclustered_brackets: tuple[str, ...]
    consensus_runs: int = 1
    stability: float = 1.0
    truth: dict[str, Any] | None = None

    def __str__(self) -> str:
        shares = ", ".join(f"{b}: {100 * s:.0f} %" for b, s in self.abnormal_share_by_bracket.items())
        splits = ", ".join(f"{k} {v}" for k, v in self.series_by_split.items())
        notes = ""
        if self.merged_brackets:
            notes += f"; small brackets clustered together: {', '.join(self.merged_brackets)}"
        if self.unclustered_brackets:
            notes += f"; too few series to cluster in {', '.join(self.unclustered_brackets)} (kept as normal)"
        consensus = f"; {self.consensus_runs} runs agree on {100 * self.stability:.1f} % of verdicts" if self.consensus_runs > 1 else ""
        line = (f"{self.series} MRI series, {self.normal} normal; abnormal by bracket: {shares}; "
                f"splits: {splits}{consensus}{notes}")
        return line if self.truth is None else f"{line}\n{truth_line(self.truth)}"


def _bracket_stability(agreement: pd.Series) -> dict[str, float]:
    """A bracket's stability: its series' mean agreement with the consensus, and the share all runs agreed on."""
    if agreement.empty:
        return {"stability": 1.0, "unanimous_share": 1.0}
    return {"stability": round(float(agreement.mean()), 4), "unanimous_share": round(float((agreement == 1.0).mean()), 4)}


def read_series_table(raw: str | Path) -> pd.DataFrame:
    """MRI series with subject, numeric age and sex (from participants.csv), in sessions.csv order.

    Raises:
        UserError: for a missing file or column, an age that is not a number
            in 0-120, or a sex other than F/M.
    """
    raw = Path(raw)
    mri = read_mri_series(raw, columns=("subject_id", "age"))
    sessions_path = raw / "sessions.csv"
    age = pd.to_numeric(mri["age"], errors="coerce")
    bad = mri.loc[age.isna() | (age < 0) | (age > 120), "age"]
    if len(bad):
        raise UserError(
            f"Expected ages in years (0-120) in {sessions_path}, found {bad.iloc[0]!r} in {len(bad)} MRI series"
        )
    participants_path = raw / "participants.csv"
    participants = read_participants(raw)
    sex = mri["subject_id"].map(dict(zip(participants["subject_id"], participants["sex"])))
    unknown = mri.loc[sex.isna(), "subject_id"]
    if len(unknown):
        raise UserError(
            f"Expected every subject of an MRI series in {participants_path}, "
            f"found {unknown.nunique()} missing (e.g. {unknown.iloc[0]!r})"
        )
    bad_sex = sex[~sex.isin(["F", "M"])]
    if len(bad_sex):
        raise UserError(f"Expected sex F or M in {participants_path}, found {bad_sex.iloc[0]!r} for {len(bad_sex)} MRI series")
    return pd.DataFrame({"series_id": mri["series_id"], "subject_id": mri["subject_id"], "age": age.to_numpy(float),
                         "sex": sex.to_numpy()})


def read_region_vectors(path: Path, series_ids: list[str]) -> pd.DataFrame:
    """The region vectors of ``series_ids`` (in that order), checked to cover every series."""
    from spineage.findings.features import REGION_COLUMNS

    if not path.is_file():
        raise UserError(f"Expected region vectors at {path} (run `spineage findings` first), found no such file")
    vectors = pd.read_parquet(path)
    missing_columns = [c for c in REGION_COLUMNS if c not in vectors.columns]
    if missing_columns:
        raise UserError(f"Expected the 67 region-vector columns in {path}, found {len(missing_columns)} missing "
                        f"(e.g. {missing_columns[0]!r})")
    vectors.index = vectors.index.astype(str)
    missing = [s for s in series_ids if s not in vectors.index]
    if missing:
        raise UserError(f"Expected a region vector for every MRI series in {path}, found {len(missing)} missing "
                        f"(e.g. {missing[0]!r}); rerun `spineage findings`")
    return vectors.loc[series_ids, list(REGION_COLUMNS)]


TRUTH_FILE = "ground_truth.json"
"""The answer key a phantom cohort carries; a real cohort has none."""


def read_atypical_marks(raw: str | Path) -> dict[str, list[str]] | None:
    """The answer key's typical/atypical marks: series id to its reasons (empty: typical), or None.

    None when the raw cohort has no ``ground_truth.json``, or one without
    ``series_atypical`` (a real cohort, or a phantom older than the marks).

    Raises:
        UserError: for a ground_truth.json that is not JSON, or marks that are
            not a mapping of series ids to lists of reasons.
    """
    path = Path(raw) / TRUTH_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise UserError(f"Expected {path} to be readable JSON, found: {error}") from None
    marks = data.get("series_atypical") if isinstance(data, dict) else None
    if marks is None:
        return None
    well_formed = isinstance(marks, dict) and all(
        isinstance(reasons, list) and all(isinstance(reason, str) for reason in reasons) for reasons in marks.values()
    )
    if not well_formed:
        raise UserError(
            f"Expected series_atypical in {path} to map each series id to a list of reasons, "
            f"found {type(marks).__name__} {str(marks)[:60]!r}"
        )
    return {str(series_id): list(reasons) for series_id, reasons in marks.items()}


def _verdicts(abnormal: pd.Series) -> dict[str, Any]:
    """Counts and shares of normal and abnormal verdicts (shares None for no series)."""
    n, k = len(abnormal), int(abnormal.sum())
    return {
        "series": n, "normal": n - k, "abnormal": k,
        "normal_share": round((n - k) / n, 4) if n else None,
        "abnormal_share": round(k / n, 4) if n else None,
    }


def truth_confusion(cohort: pd.DataFrame, marks: dict[str, list[str]]) -> dict[str, Any]:
    """The cohort's verdicts against the answer key's typical/atypical marks.

    Only series in an age bracket count (the others are never clustered), and
    of those only the marked ones (``series_without_marks`` says how many were not).

    Args:
        cohort: the cohort table (series_id, bracket, normal).
        marks: series id to the reasons it is atypical (empty: typical), as
            :func:`read_atypical_marks` returns them.

    Returns:
        ``overall`` and ``brackets`` (by bracket label), each with ``typical``,
        ``atypical`` and ``structural_pathology`` (the series marked with one
        of the 7 structural pathologies): series, normal, abnormal and their
        shares; ``by_reason``: per reason, series, abnormal and abnormal share.

    Example:
        >>> table = pd.DataFrame({"series_id": ["a", "b", "c"], "bracket": [40, 40, 50],
        ...                       "normal": [True, False, False]})
        >>> truth = truth_confusion(table, {"a": [], "b": ["fracture"], "c": []})
        >>> truth["overall"]["atypical"]["abnormal_share"], truth["brackets"]["50"]["typical"]["abnormal"]
        (1.0, 1)
    """
    assessed = cohort[cohort["bracket"].notna()]
    marked = assessed[assessed["series_id"].isin(marks)]
    reasons = marked["series_id"].map(marks)
    abnormal = ~marked["normal"].astype(bool)
    atypical = reasons.map(bool)
    structural = reasons.map(lambda found: any(reason in PATHOLOGIES for reason in found))

    def confusion(rows: pd.Series) -> dict[str, Any]:
        return {
            "typical": _verdicts(abnormal[rows & ~atypical]),
            "atypical": _verdicts(abnormal[rows & atypical]),
            "structural_pathology": _verdicts(abnormal[rows & structural]),
        }

    every = pd.Series(True, index=marked.index)
    by_reason: dict[str, Any] = {}
    for reason in sorted({reason for found in reasons for reason in found}):
        rows = reasons.map(lambda found, r=reason: r in found)
        counts = _verdicts(abnormal[rows])
        by_reason[reason] = {key: counts[key] for key in ("series", "abnormal", "abnormal_share")}
    return {
        "source": f"{TRUTH_FILE} series_atypical",
        "series_without_marks": int(len(assessed) - len(marked)),
        "overall": confusion(every),
        "brackets": {str(b): confusion(marked["bracket"] == b) for b in BRACKETS},
        "by_reason": by_reason,
    }


def truth_line(truth: dict[str, Any]) -> str:
    """The truth block in one line: what share of typical, atypical and pathological series is abnormal."""
    parts = []
    for key, words in (("typical", "typical"), ("atypical", "atypical"), ("structural_pathology", "with a structural pathology")):
        counts = truth["overall"][key]
        share = "-" if counts["abnormal_share"] is None else f"{100 * counts['abnormal_share']:.0f} %"
        parts.append(f"{words} {share} ({counts['abnormal']}/{counts['series']})")
    return f"against {TRUTH_FILE}, abnormal: " + ", ".join(parts)


def build_cohort(
    raw: str | Path,
    vectors: str | Path,
    out: str | Path,
    reports_out: str | Path,
    settings: CohortSettings,
    seed: int,
    progress: bool = True,
) -> CohortSummary:
    """Define the normal cohort, split it, and write the cohort table, the cluster table and the figures.

    Args:
        raw: the raw-cohort folder (sessions.csv, participants.csv; ground_truth.json when it has one).
        vectors: region_vectors.parquet from ``spineage findings``.
        out: the cohort table to write (cohort.csv).
        reports_out: folder for clusters.csv, the figures and summary.json.
        settings: the cohort section of params.yaml.
        seed: the seed of UMAP and of the split shuffle.
        progress: show a progress bar over the brackets.

    Returns:
        The counts also written to summary.json.

    Raises:
        UserError: for a missing or bad input; nothing is written then.
    """
    from spineage.cohort.normal import cluster_table, normal_cohort, plot_bracket
    from spineage.cohort.splits import SPLITS, assign_splits, plot_age_histogram

    out, reports_out = Path(out), Path(reports_out)
    series = read_series_table(raw)
    region_vectors = read_region_vectors(Path(vectors), series["series_id"].tolist())
    marks = read_atypical_marks(raw)  # before the clustering: a bad answer key fails fast
    assigned, results = normal_cohort(series, region_vectors, settings, seed, progress=progress)
    cohort = series.merge(assigned, on="series_id", how="left", validate="one_to_one")
    cohort["split"] = assign_splits(cohort, settings.split_fractions, seed)
    cohort["age"] = cohort["age"].round(2)
    cohort = cohort[list(COHORT_COLUMNS)]

    group_of = {b: r for r in results for b in r.brackets}
    in_bracket = {b: cohort["bracket"] == b for b in BRACKETS}
    abnormal = {
        b: round(float(1.0 - cohort.loc[rows.fillna(False), "normal"].mean()), 4)
        for b, rows in in_bracket.items() if rows.fillna(False).any()
    }
    counts = cohort["split"].value_counts()
    in_any_bracket = cohort["bracket"].notna()
    summary = CohortSummary(
        series=len(cohort),
        normal=int(cohort["normal"].sum()),
        abnormal_share_by_bracket=abnormal,
        series_by_split={s: int(counts.get(s, 0)) for s in SPLITS},
        merged_brackets=tuple(r.name for r in results if len(r.brackets) > 1),
        unclustered_brackets=tuple(r.name for r in results if len(r.labels) and not r.clustered),
        consensus_runs=settings.consensus_runs,
        stability=round(float(cohort.loc[in_any_bracket, "normal_agreement"].mean()), 4) if in_any_bracket.any() else 1.0,
        truth=None if marks is None else truth_confusion(cohort, marks),
    )

    write_atomic(out, lambda p: cohort.to_csv(p, index=False))
    reports_out.mkdir(parents=True, exist_ok=True)
    clusters = cluster_table(results)
    write_atomic(reports_out / "clusters.csv", lambda p: clusters.to_csv(p, index=False))
    for bracket in BRACKETS:
        write_atomic(reports_out / f"umap_{bracket}.png",
                     lambda p, b=bracket: plot_bracket(b, group_of[b], p, settings.normal_cluster_fraction))
    write_atomic(reports_out / "age_histogram.png", lambda p: plot_age_histogram(cohort, p))
    write_json_atomic(
        reports_out / "summary.json",
        {
            "series": summary.series,
            "normal": summary.normal,
            "normal_share": round(summary.normal / max(summary.series, 1), 4),
            "consensus_runs": settings.consensus_runs,
            "stability": summary.stability,
            "brackets": {
                str(b): {
                    "series": int(in_bracket[b].fillna(False).sum()),
                    "abnormal_share": abnormal.get(b, 0.0),
                    **_bracket_stability(cohort.loc[in_bracket[b].fillna(False), "normal_agreement"]),
                    "clustered_as": group_of[b].name,
                    "clustered": group_of[b].clustered,
                }
                for b in BRACKETS
            },
            "splits": summary.series_by_split,
            **({} if summary.truth is None else {"truth": summary.truth}),
        },
    )
    return summary
