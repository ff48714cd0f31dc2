"""The report page ``reports/report.html``: gathered from the reports folder, rendered with Jinja2, written atomically.

The page is self-contained: every figure is a ``data:`` URI, the style is inline, there is
no script, and its Content-Security-Policy forbids loading anything else, so it opens
from disk, from an e-mail or from an archive exactly as it was made. The template
(``templates/report.html.j2``) renders with autoescaping on: text from the reports (a
cluster label, a finding) can never become markup.

Example:
    >>> write_report(Path("reports"), Path("reports/report.html"), ablations=Path("pipelines/ablations/reports"))  # doctest: +SKIP
    PosixPath('reports/report.html')

A later branch adds its own part of the page with ``extra_sections``::

    from spineage.reporting.blocks import Section, Text
    write_report(reports, out, extra_sections=[Section("Radiographs", [Text("...")])])
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from spineage.atomic import write_atomic
from spineage.reporting.blocks import Section
from spineage.reporting.sections import ReportPage, gather_report

TEMPLATE = "report.html.j2"
"""The page's template, in the package's ``templates`` folder."""


def render_report(page: ReportPage) -> str:
    """The page as HTML text (autoescaped; undefined template variables are errors, not blanks)."""
    from jinja2 import Environment, PackageLoader, StrictUndefined

    environment = Environment(
        loader=PackageLoader("spineage.reporting", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        keep_trailing_newline=True,
    )
    return environment.get_template(TEMPLATE).render(page=page)


def write_report(
    reports: Path,
    out: Path,
    ablations: Path | None = None,
    extra_sections: Sequence[Section] | None = None,
    generated: datetime | None = None,
    external_truth: Path | None = None,
) -> Path:
    """Gather everything under ``reports``, render the page and write it to ``out`` atomically.

    Args:
        reports: the ``reports/`` folder; its ``evaluate/metrics.json`` must exist, every other file is optional.
        out: the HTML file to write (``reports/report.html``).
        ablations: the ablation sub-pipeline's reports folder (``pipelines/ablations/reports``); None when not run.
        extra_sections: further sections (:class:`~spineage.reporting.blocks.Section`), shown after
            truth recovery and before provenance: the hook for the radiograph branch.
        generated: the time stamped on the page; now when None.
        external_truth: ``make truth``'s truth_recovery.json (pipelines/truth/reports/); None or absent: "not run".

    Returns:
        ``out``.

    Raises:
        UserError: when the reports folder or its evaluate metrics are missing, or a report file cannot be read.
    """
    page = gather_report(Path(reports), ablations, extra_sections, generated, external_truth)
    text = render_report(page)
    return write_atomic(Path(out), lambda path: path.write_text(text, encoding="utf-8"))
