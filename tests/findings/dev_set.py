"""The report reader's development set (``data/dev_reports.yaml``), its held-out set
(``data/holdout_reports.yaml``, same schema) and how the reader is scored on either.

Scores, over all reports of the set:

* disc findings: affirmed degenerative findings matched on (report, level, condition);
  a row with an empty level never matches;
* severity: among matched disc findings whose label grades them, the share read with that grade;
* pathologies: the 7 pathologies matched on (report, condition), at any level;
* denied: labelled absent (negated, hedged or resolved) conditions read as present.

"Read as present" is a mapped row neither negated nor uncertain.

Used by ``test_dev_set.py``, ``test_holdout_set.py`` and ``benchmarks/bench_report_reader.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import yaml

from spineage.findings.vocabulary import ALL_CONDITIONS, DEGENERATIVE_SEVERITIES, LEVELS, PATHOLOGIES

DEV_SET = Path(__file__).resolve().parent / "data" / "dev_reports.yaml"
HOLDOUT_SET = Path(__file__).resolve().parent / "data" / "holdout_reports.yaml"
"""Reports written and labelled apart from the reader's development, to estimate how it reads unseen styles."""


@dataclass(frozen=True)
class DevReport:
    """One labelled report of the development set."""

    id: str
    text: str
    disc: frozenset[tuple[str, str]]  # (level, condition)
    severities: dict[tuple[str, str], str]  # graded labels only
    pathologies: frozenset[str]
    absent: frozenset[str]


def _disc_label(label: str, report_id: str) -> tuple[str, str, str | None]:
    parts = label.split()
    if len(parts) not in (2, 3) or parts[0] not in LEVELS or parts[1] not in DEGENERATIVE_SEVERITIES:
        raise ValueError(f"Expected 'LEVEL condition [severity]' in report {report_id}, found {label!r}")
    severity = parts[2] if len(parts) == 3 else None
    if severity is not None and severity not in DEGENERATIVE_SEVERITIES[parts[1]]:
        raise ValueError(f"Expected a severity of {parts[1]} in report {report_id}, found {severity!r}")
    return parts[0], parts[1], severity


def load_dev_set(path: Path = DEV_SET) -> list[DevReport]:
    """The labelled reports, checked against the vocabulary."""
    reports = []
    for entry in yaml.safe_load(path.read_text(encoding="utf-8")):
        labels = [_disc_label(label, entry["id"]) for label in entry.get("disc") or []]
        pathologies = frozenset(entry.get("pathologies") or [])
        absent = frozenset(entry.get("absent") or [])
        if not pathologies <= set(PATHOLOGIES) or not absent <= set(ALL_CONDITIONS):
            raise ValueError(f"Expected conditions of the vocabulary in report {entry['id']}")
        reports.append(DevReport(
            id=entry["id"],
            text=entry["text"],
            disc=frozenset((level, condition) for level, condition, _ in labels),
            severities={(level, condition): s for level, condition, s in labels if s},
            pathologies=pathologies,
            absent=absent,
        ))
    if len({r.id for r in reports}) != len(reports):
        raise ValueError(f"Expected unique report ids in {path}")
    return reports


@dataclass(frozen=True)
class Score:
    """Counts of one comparison and the rates they give."""

    true_positives: int
    false_positives: int
    false_negatives: int

    @property
    def precision(self) -> float:
        found = self.true_positives + self.false_positives
        return self.true_positives / found if found else 1.0

    @property
    def recall(self) -> float:
        wanted = self.true_positives + self.false_negatives
        return self.true_positives / wanted if wanted else 1.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    def __str__(self) -> str:
        return (f"precision {self.precision:.3f}, recall {self.recall:.3f}, F1 {self.f1:.3f} "
                f"(TP {self.true_positives}, FP {self.false_positives}, FN {self.false_negatives})")


@dataclass(frozen=True)
class DevScores:
    """The reader's scores on the development set, and its errors to read."""

    reports: int
    disc: Score
    pathologies: Score
    severity_right: int
    severity_graded: int
    denied_read_as_present: list[tuple[str, str]]
    errors: list[str]


def score_reader(read: Callable[[str, str], pd.DataFrame], reports: list[DevReport] | None = None) -> DevScores:
    """Score ``read(text, report_id)`` (e.g. :func:`~spineage.findings.report_reader.read_report`)."""
    reports = load_dev_set() if reports is None else reports
    disc_counts = [0, 0, 0]
    pathology_counts = [0, 0, 0]
    severity_right = severity_graded = 0
    denied: list[tuple[str, str]] = []
    errors: list[str] = []
    for report in reports:
        rows = read(report.text, report.id)
        present = rows[rows["mapped"] & ~rows["negated"] & ~rows["uncertain"]]
        found_disc = {
            (level, condition): severity
            for level, condition, severity in zip(present["level"], present["condition"], present["severity"])
            if condition in DEGENERATIVE_SEVERITIES
        }
        found_pathologies = set(present["condition"]) & set(PATHOLOGIES)
        for counts, found, wanted, what in (
            (disc_counts, set(found_disc), report.disc, "disc"),
            (pathology_counts, found_pathologies, report.pathologies, "pathology"),
        ):
            counts[0] += len(found & wanted)
            counts[1] += len(found - wanted)
            counts[2] += len(wanted - found)
            errors += [f"{report.id}: extra {what} {item}" for item in sorted(found - wanted)]
            errors += [f"{report.id}: missed {what} {item}" for item in sorted(wanted - found)]
        for key, severity in report.severities.items():
            if key in found_disc:
                severity_graded += 1
                severity_right += found_disc[key] == severity
                if found_disc[key] != severity:
                    errors.append(f"{report.id}: severity of {key} read {found_disc[key]}, labelled {severity}")
        labelled_present = {c for _, c in report.disc} | report.pathologies
        for condition in sorted(report.absent - labelled_present):
            if condition in set(present["condition"]):
                denied.append((report.id, condition))
                errors.append(f"{report.id}: {condition} is denied or hedged but read as present")
    return DevScores(
        reports=len(reports),
        disc=Score(*disc_counts),
        pathologies=Score(*pathology_counts),
        severity_right=severity_right,
        severity_graded=severity_graded,
        denied_read_as_present=denied,
        errors=errors,
    )
