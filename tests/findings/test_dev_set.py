"""The report reader scored on its development set of real-style reports (``data/dev_reports.yaml``)."""

from __future__ import annotations

from spineage.findings.report_reader import read_report
from tests.findings.dev_set import load_dev_set, score_reader


def test_the_development_set_is_well_formed():
    reports = load_dev_set()
    assert len(reports) >= 30
    assert sum(len(r.disc) for r in reports) >= 100
    assert all(r.text.strip() for r in reports)


def test_disc_findings_and_pathologies_score_f1_of_at_least_0_9():
    scores = score_reader(read_report)
    assert scores.disc.f1 >= 0.9, "\n".join(scores.errors)
    assert scores.pathologies.f1 >= 0.9, "\n".join(scores.errors)
    assert scores.severity_right >= 0.9 * scores.severity_graded


def test_no_denied_or_hedged_condition_is_read_as_present():
    assert score_reader(read_report).denied_read_as_present == []


def test_the_scorer_counts_misses_and_extras():
    reports = [r for r in load_dev_set() if r.id == "lumbar-hedged-lesion"]
    empty = score_reader(lambda text, report_id: read_report("", report_id), reports)
    assert (empty.disc.true_positives, empty.disc.false_negatives) == (0, len(reports[0].disc))
    assert empty.disc.recall == 0.0
    everything = score_reader(lambda text, report_id: read_report(text + " Metastasis at L4.", report_id), reports)
    assert everything.denied_read_as_present == [] and everything.pathologies.false_positives == 0
    noisy = score_reader(lambda text, report_id: read_report(text + " Fracture of L1.", report_id), reports)
    assert noisy.denied_read_as_present == [("lumbar-hedged-lesion", "fracture")]
    assert noisy.pathologies.false_positives == 1
