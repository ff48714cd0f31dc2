"""The building blocks of the report page: sections made of headings, text, notes, tables and embedded figures.

The page is a list of :class:`Section`; a section is a list of blocks, each of which the
template renders by its ``kind``. The blocks hold display-ready text only (numbers already
formatted by :mod:`spineage.reporting.formatting`), so the template does no arithmetic and
autoescaping covers every string. A stage that wants its own part of the page (the
radiograph branch) builds a :class:`Section` from these blocks and hands it to
:func:`spineage.reporting.html.write_report` as one of its ``extra_sections``.

Example:
    >>> section = Section("Radiographs", [Text("Lateral radiographs and DXA VFA."),
    ...                                   Table(("metric", "value"), (("MAE (y)", "3.10"),))])
    >>> section.anchor, [block.kind for block in section.blocks]
    ('radiographs', ['text', 'table'])
"""

from __future__ import annotations

import base64
import re
import struct
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@dataclass(frozen=True)
class Heading:
    """A sub-heading inside a section."""

    text: str
    kind: ClassVar[str] = "heading"


@dataclass(frozen=True)
class Text:
    """A paragraph."""

    text: str
    kind: ClassVar[str] = "text"


@dataclass(frozen=True)
class Note:
    """A one-line remark set apart from the text: a part that is not available, a figure that is missing."""

    text: str
    kind: ClassVar[str] = "note"


@dataclass(frozen=True)
class Table:
    """An HTML table of display-ready cells.

    Args:
        columns: the header cells.
        rows: one tuple of cell texts per row, as long as ``columns``.
        caption: shown above the table.
        numeric: per column, whether it holds numbers (right-aligned); all False when empty.
        footnote: shown under the table (e.g. how many rows were left out).
        row_groups: per row, the label of a group that starts at that row (a full-width row above it),
            or ``""``; empty for a table without groups (the blocks of the paper's Table 5).
    """

    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    caption: str = ""
    numeric: tuple[bool, ...] = ()
    footnote: str = ""
    row_groups: tuple[str, ...] = ()
    kind: ClassVar[str] = "table"

    def __post_init__(self) -> None:
        object.__setattr__(self, "columns", tuple(self.columns))
        object.__setattr__(self, "rows", tuple(tuple(row) for row in self.rows))
        if not self.numeric:
            object.__setattr__(self, "numeric", (False,) * len(self.columns))
        object.__setattr__(self, "numeric", tuple(self.numeric))
        object.__setattr__(self, "row_groups", tuple(self.row_groups))
        if len(self.numeric) != len(self.columns) or any(len(row) != len(self.columns) for row in self.rows):
            raise ValueError(f"Expected every row and `numeric` to have {len(self.columns)} cells, one per column")
        if self.row_groups and len(self.row_groups) != len(self.rows):
            raise ValueError(f"Expected `row_groups` to have {len(self.rows)} labels, one per row, found {len(self.row_groups)}")


@dataclass(frozen=True)
class Figure:
    """A PNG figure embedded as a ``data:`` URI.

    Args:
        uri: ``data:image/png;base64,…``.
        caption: shown under the figure.
        width: the image's width in pixels (the page never scales a figure up).
        height: the image's height in pixels.
    """

    uri: str
    caption: str = ""
    width: int = 0
    height: int = 0
    kind: ClassVar[str] = "figure"


@dataclass(frozen=True)
class FigureGrid:
    """Several figures side by side (the UMAP panels per age bracket), with one caption."""

    figures: tuple[Figure, ...]
    caption: str = ""
    kind: ClassVar[str] = "figures"


Block = Heading | Text | Note | Table | Figure | FigureGrid
"""Anything a section holds."""


def anchor_for(title: str) -> str:
    """A URL fragment for a title: lower case, words joined by ``-`` (``"The SAG analysis"`` → ``the-sag-analysis``)."""
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-") or "section"


@dataclass(frozen=True)
class Section:
    """A numbered part of the page with an ``<h2>`` heading and an entry in the contents.

    Args:
        title: the heading (without its number, which the page adds).
        blocks: what the section shows, in order.
        anchor: the fragment the contents link to; from the title when empty.
    """

    title: str
    blocks: Sequence[Block] = field(default_factory=tuple)
    anchor: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "blocks", tuple(self.blocks))
        if not self.anchor:
            object.__setattr__(self, "anchor", anchor_for(self.title))


@dataclass(frozen=True)
class Column:
    """How one column of a :func:`table_from_records` table is made.

    Args:
        header: the header cell.
        cell: the cell's text from a record: a key (formatted with ``format``) or a function of the record.
        format: turns the value under ``cell`` (a key) into text.
        numeric: right-align the column.
    """

    header: str
    cell: str | Callable[[dict[str, Any]], str]
    format: Callable[[Any], str] = str
    numeric: bool = True


def table_from_records(records: Iterable[dict[str, Any]], columns: Sequence[Column], caption: str = "", footnote: str = "") -> Table:
    """A :class:`Table` with one row per record and the given columns (a missing key prints as ``–``)."""
    from spineage.reporting.formatting import MISSING

    rows = []
    for record in records:
        row = []
        for column in columns:
            if callable(column.cell):
                row.append(column.cell(record))
            else:
                row.append(column.format(record[column.cell]) if column.cell in record else MISSING)
        rows.append(tuple(row))
    return Table(tuple(c.header for c in columns), tuple(rows), caption, tuple(c.numeric for c in columns), footnote)


def key_value_table(items: Iterable[tuple[str, str]], caption: str = "", headers: tuple[str, str] = ("", ""), numeric: bool = False) -> Table:
    """A two-column table of names and display-ready values (without a header row when ``headers`` are empty).

    Args:
        items: (name, value) pairs.
        caption: shown above the table.
        headers: the two header cells.
        numeric: right-align the values (for a column of numbers).
    """
    rows = tuple((str(name), str(value)) for name, value in items)
    return Table(headers, rows, caption, (False, numeric))


def png_size(data: bytes) -> tuple[int, int] | None:
    """Width and height of a PNG from its header, or None when ``data`` is not a PNG."""
    if len(data) < 24 or not data.startswith(PNG_SIGNATURE) or data[12:16] != b"IHDR":
        return None
    return struct.unpack(">II", data[16:24])


def figure_from_png(path: Path, caption: str, shown_as: str | None = None) -> Figure | Note:
    """The PNG at ``path`` embedded as a :class:`Figure`, or a :class:`Note` saying it is missing or not a PNG.

    Args:
        path: the PNG file.
        caption: the figure's caption.
        shown_as: how the note names the file (e.g. ``reports/evaluate/gradcam.png``); ``path`` when None.
    """
    name = shown_as or str(path)
    if not path.is_file():
        return Note(f"Figure not available: {name} is missing.")
    data = path.read_bytes()
    size = png_size(data)
    if size is None:
        return Note(f"Figure not shown: {name} is not a PNG image.")
    uri = "data:image/png;base64," + base64.b64encode(data).decode("ascii")
    return Figure(uri, caption, *size)
