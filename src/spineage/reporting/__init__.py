"""The HTML report: one self-contained page (``reports/report.html``) of every stage's figures and tables.

:mod:`~spineage.reporting.formatting` turns numbers into text, :mod:`~spineage.reporting.blocks`
holds the page's building blocks (sections, tables, embedded figures),
:mod:`~spineage.reporting.sections` gathers them from the reports folder, and
:mod:`~spineage.reporting.html` renders and writes the page (:func:`~spineage.reporting.html.write_report`).
"""
