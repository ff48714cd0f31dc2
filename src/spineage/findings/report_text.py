"""Free-text reports as bytes on disk turned into text: the encoding detected, or the file refused.

Reports come out of hospital systems in whatever encoding the export chose:
UTF-8 (with or without a byte-order mark), UTF-16 or UTF-32 (Windows tools
like to write these, always with a mark, sometimes without), or a Windows
code page. Read with the wrong one, a UTF-16 report becomes text full of NUL
characters in which the reader finds nothing, silently. So the encoding is
detected, in this order:

1. a byte-order mark: UTF-32, UTF-8, UTF-16 (LE or BE);
2. NUL bytes without a mark: UTF-16 whose zero bytes fall on the even (BE)
   or odd (LE) positions;
3. strict UTF-8;
4. Windows-1252 (a superset of Latin-1 for text), the usual legacy export.

Whatever comes out must look like text: a decoded report with more than
:data:`MAX_CONTROL_SHARE` control characters (other than tab, newline,
carriage return and form feed) is refused with a one-line error, never guessed.

Example:
    >>> decode_report_text("Mild disc bulge L4/5.".encode("utf-16"), "r.txt")
    'Mild disc bulge L4/5.'
    >>> decode_report_text("Spondylose, Bandscheibe L5/S1 geschädigt".encode("cp1252"), "r.txt")[-10:]
    'geschädigt'
"""

from __future__ import annotations

import codecs
import unicodedata
from pathlib import Path

from spineage.errors import UserError

MAX_CONTROL_SHARE = 0.01
"""A decoded text with more control characters than this share is not text."""

_BOMS: tuple[tuple[bytes, str], ...] = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
_TEXT_CONTROLS = frozenset("\t\n\r\f")


def detect_encoding(data: bytes) -> str | None:
    """The encoding of ``data`` by the rules above, or None when none of them decodes it."""
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            return encoding
    if b"\x00" in data:
        even_zeros = data[0::2].count(0)
        odd_zeros = data[1::2].count(0)
        return "utf-16-be" if even_zeros > odd_zeros else "utf-16-le"
    for encoding in ("utf-8", "cp1252"):
        try:
            data.decode(encoding)
        except UnicodeDecodeError:
            continue
        return encoding
    return None


def _looks_like_text(text: str) -> bool:
    if not text:
        return True
    controls = sum(1 for c in text if c not in _TEXT_CONTROLS and unicodedata.category(c) == "Cc")
    return controls <= MAX_CONTROL_SHARE * len(text)


def decode_report_text(data: bytes, where: str | Path, what: str = "a text report") -> str:
    """Decode a report's bytes (see the module docstring for the rules).

    Args:
        data: the file's bytes.
        where: the file, for the error message.
        what: what the file should be, for the error message (tables use these rules too).

    Raises:
        UserError: when no rule gives text.
    """
    encoding = detect_encoding(data)
    text = None
    if encoding is not None:
        try:
            text = data.decode(encoding)
        except UnicodeDecodeError:
            text = None
    if text is None or not _looks_like_text(text):
        raise UserError(
            f"Expected {what} (UTF-8, UTF-16, UTF-32 or Windows-1252) in {where}, "
            f"found bytes that decode to no text{f' as {encoding}' if encoding else ''}"
        )
    return text


def read_report_text(path: str | Path) -> str:
    """The text of one report file, its encoding detected (:func:`decode_report_text`)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise UserError(f"Expected a readable report at {path}, found {error.strerror or error}") from None
    return decode_report_text(data, path)
