"""The report reader reads in time linear in the length of a report (no wall-clock asserts).

Work is counted as the Python lines the reader executes (``sys.settrace``), with
its caches cleared, on one text and on the same text twice over: linear work
doubles, quadratic work quadruples. Timings by size are in
``benchmarks/bench_report_reader.py``.
"""

from __future__ import annotations

import re
import sys

import pytest

import spineage.findings.report_reader as reader
from tests.findings.dev_set import load_dev_set

_CACHED = ("_normalise", "_clause_rows", "_sentence_clauses", "_segment_profile", "_finding_spans", "_correct_word")


def reading_steps(text: str) -> int:
    """Python lines the reader executes to read ``text`` from cold caches."""
    for name in _CACHED:
        getattr(reader, name).cache_clear()
    count = 0

    def tracer(frame, event, arg):
        nonlocal count
        if event == "line":
            count += 1
        return tracer

    sys.settrace(tracer)
    try:
        reader.read_report(text, "r")
    finally:
        sys.settrace(None)
    return count


def _dev_text() -> str:
    return "\n".join(report.text for report in load_dev_set())


TEXTS = {
    # A report pasted without punctuation: one clause of many findings, levels and cues.
    "one clause": lambda: re.sub(r"[.,;:!?()\n]", " ", _dev_text()),
    "prose": _dev_text,
    # Negated lists, brackets and "with" sub-clauses, each repeated.
    "negations": lambda: "no disc bulge at L4/5 or foraminal stenosis and mild kyphosis " * 60,
    "lists": lambda: "no fracture, listhesis, stenosis, oedema, " * 60 + "or lesion",
    "brackets": lambda: "disc bulge (mild) at L4/5 (C5/6) with stenosis (moderate) " * 60,
}


@pytest.mark.parametrize("kind", list(TEXTS))
def test_reading_work_grows_linearly_with_the_text(kind):
    unit = TEXTS[kind]()
    small, large = reading_steps(unit * 2), reading_steps(unit * 4)
    assert small > 1000
    # Linear work doubles (plus a little for the larger cache); quadratic work would quadruple.
    assert large / small < 2.4, (kind, small, large)
