"""How far the report reader agrees with a findings table taken as the truth: precision, recall and F1.

A finding is a row of the long findings table (``series_id``, ``level``,
``condition``, ``severity``). Two findings match

* **strictly** on (series_id, level, condition, severity), and
* **leniently** on (series_id, level, condition): a finding read at the
  right level with the wrong grade still counts.

Only affirmed findings take part: rows flagged ``negated`` ("no fracture") are
not findings, and neither are the reader's unmapped rows. Each side is reduced
to its distinct keys first, so a finding written twice counts once.

Counts per condition and overall, for one match rule:

=========  ==========================================================
``tp``     findings in both tables
``fn``     findings of the truth the reader missed
``fp``     findings the reader gave that the truth does not hold
=========  ==========================================================

precision = tp / (tp + fp), recall = tp / (tp + fn), F1 = 2 tp / (2 tp + fp + fn);
each is None (NaN in the table form) when its denominator is zero.

Used by the findings stage (``findings.source: reports`` with a ``findings.csv``)
and by ``benchmarks/bench_report_reader.py``.

Example:
    >>> import pandas as pd
    >>> truth = pd.DataFrame({"series_id": ["a", "a"], "level": ["L4", "L5"],
    ...                       "condition": ["disc_bulge"] * 2, "severity": ["mild", "moderate"]})
    >>> read = pd.DataFrame({"series_id": ["a", "a"], "level": ["L4", "L5"],
    ...                      "condition": ["disc_bulge"] * 2, "severity": ["mild", "severe"]})
    >>> compare_findings(truth, read, "strict").overall
    Agreement(tp=1, fn=1, fp=1)
    >>> compare_findings(truth, read, "lenient").overall.precision
    1.0
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from spineage.findings.vocabulary import ALL_CONDITIONS

MATCH_KEYS: dict[str, tuple[str, ...]] = {
    "strict": ("series_id", "level", "condition", "severity"),
    "lenient": ("series_id", "level", "condition"),
}
"""The columns two findings must share to match, by rule."""


@dataclass(frozen=True)
class Agreement:
    """Matched, missed and extra findings of one condition (or all), under one match rule."""

    tp: int
    fn: int
    fp: int

    @property
    def truth(self) -> int:
        """Findings in the truth table."""
        return self.tp + self.fn

    @property
    def predicted(self) -> int:
        """Findings the reader gave."""
        return self.tp + self.fp

    @property
    def precision(self) -> float | None:
        """tp / (tp + fp); None when the reader gave none."""
        return self.tp / self.predicted if self.predicted else None

    @property
    def recall(self) -> float | None:
        """tp / (tp + fn); None when the truth holds none."""
        return self.tp / self.truth if self.truth else None

    @property
    def f1(self) -> float | None:
        """2 tp / (2 tp + fp + fn); None when neither side holds any."""
        denominator = 2 * self.tp + self.fp + self.fn
        return 2 * self.tp / denominator if denominator else None

    def as_dict(self) -> dict[str, Any]:
        """The counts and the three rates, rates rounded to 4 decimals (None where undefined)."""
        rate = lambda value: None if value is None else round(value, 4)
        return {
            "truth": self.truth, "predicted": self.predicted, "tp": self.tp, "fn": self.fn, "fp": self.fp,
            "precision": rate(self.precision), "recall": rate(self.recall), "f1": rate(self.f1),
        }


@dataclass(frozen=True)
class FindingsComparison:
    """The agreement of one match rule, overall and per condition (conditions found on either side, vocabulary order)."""

    rule: str
    overall: Agreement
    per_condition: dict[str, Agreement] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """``{"overall": {...}, "per_condition": {condition: {...}}}``, as written to ``summary.json``."""
        return {
            "overall": self.overall.as_dict(),
            "per_condition": {condition: a.as_dict() for condition, a in self.per_condition.items()},
        }

    def table(self) -> pd.DataFrame:
        """One row per condition and a last row ``overall``; NaN where a rate is undefined."""
        rows = {**self.per_condition, "overall": self.overall}
        frame = pd.DataFrame.from_dict({c: a.as_dict() for c, a in rows.items()}, orient="index")
        frame[["precision", "recall", "f1"]] = frame[["precision", "recall", "f1"]].astype(float)
        frame.index.name = "condition"
        return frame


def affirmed(findings: pd.DataFrame) -> pd.DataFrame:
    """The rows that state a finding: not ``negated`` and, for the reader's rows, ``mapped`` (either column optional)."""
    keep = pd.Series(True, index=findings.index)
    for column, wanted in (("negated", False), ("mapped", True)):
        if column in findings.columns:
            keep &= findings[column].astype(bool) == wanted
    return findings[keep]


def _matched(truth: pd.DataFrame, predicted: pd.DataFrame, key: Iterable[str]) -> pd.DataFrame:
    """The distinct findings of both sides on ``key``, with ``_merge``: both, left_only (missed), right_only (extra)."""
    key = list(key)
    sides = [affirmed(frame)[key].astype(str).drop_duplicates() for frame in (truth, predicted)]
    return sides[0].merge(sides[1], on=key, how="outer", indicator=True)


def _counts(matched: pd.DataFrame) -> Agreement:
    side = matched["_merge"]
    return Agreement(tp=int((side == "both").sum()), fn=int((side == "left_only").sum()), fp=int((side == "right_only").sum()))


def compare_findings(truth: pd.DataFrame, predicted: pd.DataFrame, rule: str = "strict") -> FindingsComparison:
    """Compare the reader's findings with the truth under one match rule.

    Args:
        truth: the findings table taken as true (e.g. ``findings.csv``); at
            least the columns of the rule's key, ``negated`` optional.
        predicted: the reader's findings, same columns (``negated`` and
            ``mapped`` optional). Compare over the same series on both sides:
            restrict the truth to the series whose reports were read.
        rule: ``"strict"`` or ``"lenient"`` (:data:`MATCH_KEYS`).

    Returns:
        The overall counts and those of every condition found on either side.

    Raises:
        ValueError: for an unknown rule.
    """
    if rule not in MATCH_KEYS:
        raise ValueError(f"Expected a match rule among {list(MATCH_KEYS)}, found {rule!r}")
    matched = _matched(truth, predicted, MATCH_KEYS[rule])
    present = set(matched["condition"])
    order = [c for c in ALL_CONDITIONS if c in present] + sorted(present - set(ALL_CONDITIONS))
    per_condition = {c: _counts(matched[matched["condition"] == c]) for c in order}
    return FindingsComparison(rule, _counts(matched), per_condition)


def reader_agreement(truth: pd.DataFrame, predicted: pd.DataFrame) -> dict[str, Any]:
    """Both rules as one mapping (``{"strict": {...}, "lenient": {...}}``), as the findings stage writes it."""
    return {rule: compare_findings(truth, predicted, rule).as_dict() for rule in MATCH_KEYS}


def mismatches(truth: pd.DataFrame, predicted: pd.DataFrame, rule: str = "strict") -> pd.DataFrame:
    """The findings only one side holds under ``rule``, with a column ``side``: ``"missed"`` or ``"extra"``."""
    matched = _matched(truth, predicted, MATCH_KEYS[rule])
    wrong = matched[matched["_merge"] != "both"]
    side = wrong["_merge"].map({"left_only": "missed", "right_only": "extra"}).astype(str)
    return wrong.drop(columns="_merge").assign(side=side).reset_index(drop=True)
