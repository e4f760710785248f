"""CSV import of contacts into a campaign as leads (DESIGN.md §5 rule 6: a row-level report; invalid rows
never become leads).

The file is UTF-8 (a BOM is accepted) with a header row. Columns ``phone_number`` (required), ``name`` and
``timezone`` (optional; names matched case-insensitively) fill the contact; every other column becomes a
template variable of the contact (empty cells are left out). Rows are numbered as a spreadsheet shows
them: the header is row 1, the first contact row 2.

Every row is checked first, without touching the database; then all valid rows are written in ONE
transaction. A row is refused (and reported) for a bad number, time zone, name or variable, and for a
number that an earlier row of the same file already had. Importing the same file again creates nothing:
contacts are matched by number (and updated), leads by (campaign, contact).

Report: ``{"created": <new leads>, "updated": <rows whose number already was a lead of this campaign>,
"errors": [{"row": 3, "field": "phone_number", "message": "..."}]}``.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from typing import Any

from django.db import transaction

from campaigns.models import CONTACT_NAME_MAX_LENGTH, Campaign
from campaigns.phone import normalize_phone_number
from campaigns.services.contacts import contact_upsert, lead_add, validate_variables
from orchestrator.errors import InvalidInput
from tenants.validators import is_timezone_name

MAX_IMPORT_BYTES = 5 * 1024 * 1024
MAX_IMPORT_ROWS = 10_000
MAX_REPORTED_ERRORS = 1_000  # the rest are counted in "errors_not_shown"
_CONTACT_COLUMNS = ("phone_number", "name", "timezone")


@dataclass(frozen=True)
class _Row:
    number: int
    phone_number: str
    name: str
    timezone: str
    variables: dict[str, str] | None


def _decode(data: bytes | str) -> str:
    if isinstance(data, str):
        data = data.encode()
    if len(data) > MAX_IMPORT_BYTES:
        raise InvalidInput("file", f"larger than {MAX_IMPORT_BYTES // (1024 * 1024)} MiB")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidInput("file", f"is not UTF-8 text (byte {exc.start})") from exc


def _check_row(
    *, number: int, cells: dict[str, str], variable_columns: list[str], columns: dict[str, str]
) -> _Row:
    phone = normalize_phone_number(cells.get(columns["phone_number"], ""), field="phone_number")
    name = cells.get(columns["name"], "").strip() if "name" in columns else ""
    if len(name) > CONTACT_NAME_MAX_LENGTH:
        raise InvalidInput("name", f"longer than {CONTACT_NAME_MAX_LENGTH} characters")
    zone = cells.get(columns["timezone"], "").strip() if "timezone" in columns else ""
    if zone and not is_timezone_name(zone):
        raise InvalidInput("timezone", f"{zone!r} is not an IANA time zone name")
    variables = None
    if variable_columns:
        variables = {key: cells[key].strip() for key in variable_columns if (cells.get(key) or "").strip()}
        try:
            variables = validate_variables(variables)
        except InvalidInput as exc:
            raise InvalidInput("variables", exc.message) from exc
    return _Row(number=number, phone_number=phone, name=name, timezone=zone, variables=variables)


def leads_import_csv(*, campaign: Campaign, data: bytes | str) -> dict[str, Any]:
    """Import the CSV ``data`` into ``campaign``; see the module docstring. InvalidInput (field ``file``)
    for a file that cannot be imported at all (too big, not UTF-8, no ``phone_number`` column, too many
    rows); then nothing is written."""
    if campaign.status in (Campaign.Status.ARCHIVED, Campaign.Status.COMPLETED):
        raise InvalidInput("campaign", f"cannot import into a {campaign.status} campaign")
    text = _decode(data)
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        raise InvalidInput("file", "is empty: expected a header row with phone_number") from None
    except csv.Error as exc:
        raise InvalidInput("file", f"is not valid CSV ({exc})") from exc
    header = [column.strip() for column in header]
    columns = {column.lower(): column for column in header if column.lower() in _CONTACT_COLUMNS}
    if "phone_number" not in columns:
        raise InvalidInput("file", "the header has no phone_number column")
    if len(set(header)) != len(header) or "" in header:
        raise InvalidInput("file", "the header has an empty or repeated column name")
    variable_columns = [column for column in header if column.lower() not in _CONTACT_COLUMNS]

    errors: list[dict[str, Any]] = []
    rows: list[_Row] = []
    first_row_of: dict[str, int] = {}
    try:
        for index, values in enumerate(reader):
            number = index + 2
            if index >= MAX_IMPORT_ROWS:
                raise InvalidInput("file", f"more than {MAX_IMPORT_ROWS} rows: split it")
            if not any(value.strip() for value in values):
                continue  # blank line
            if len(values) != len(header):
                errors.append(
                    {
                        "row": number,
                        "field": "file",
                        "message": f"has {len(values)} cells, the header {len(header)}",
                    }
                )
                continue
            cells = dict(zip(header, values, strict=True))
            try:
                row = _check_row(
                    number=number, cells=cells, variable_columns=variable_columns, columns=columns
                )
            except InvalidInput as exc:
                errors.append({"row": number, "field": exc.field, "message": exc.message})
                continue
            if row.phone_number in first_row_of:
                errors.append(
                    {
                        "row": number,
                        "field": "phone_number",
                        "message": f"{row.phone_number} repeats row {first_row_of[row.phone_number]}",
                    }
                )
                continue
            first_row_of[row.phone_number] = number
            rows.append(row)
    except csv.Error as exc:
        raise InvalidInput("file", f"is not valid CSV ({exc})") from exc

    created = updated = 0
    with transaction.atomic():
        for row in rows:
            contact = contact_upsert(
                tenant=campaign.tenant,
                phone_number=row.phone_number,
                name=row.name,
                timezone=row.timezone,
                variables=row.variables,
            )
            _, lead_created = lead_add(campaign=campaign, contact=contact)
            if lead_created:
                created += 1
            else:
                updated += 1
    report: dict[str, Any] = {"created": created, "updated": updated, "errors": errors[:MAX_REPORTED_ERRORS]}
    if len(errors) > MAX_REPORTED_ERRORS:
        report["errors_not_shown"] = len(errors) - MAX_REPORTED_ERRORS
    return report
