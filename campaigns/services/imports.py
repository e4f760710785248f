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

Report: ``{"created": <new leads>, "updated": <rows already a lead of this campaign whose contact changed>,
"unchanged": <rows already a lead whose contact was exactly so already>, "errors": [{"row": 3, "field":
"phone_number", "message": "..."}], "warnings": [{"column": "first_name", "message": "..."}]}``.

Warnings name a variable the campaign's agent uses (``{{first_name}}`` in its instructions or greeting)
that the file does not give: no such column (nor a built-in one: ``name`` gives ``name`` and
``first_name``), or a column left empty in some rows. The rows are imported all the same; the campaign
refuses to start while a contact to call lacks the variable (campaigns/services/campaigns.py).
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from typing import Any

from django.db import transaction

from campaigns.models import CONTACT_NAME_MAX_LENGTH, Campaign
from campaigns.phone import normalize_phone_number
from campaigns.prompts import contact_variables, missing_variables, template_variables
from campaigns.services.contacts import CONTACT_UPDATED, contact_sync, lead_add, validate_variables
from orchestrator.errors import InvalidInput
from tenants.validators import is_timezone_name

MAX_IMPORT_BYTES = 5 * 1024 * 1024
MAX_IMPORT_ROWS = 10_000
MAX_REPORTED_ERRORS = 1_000  # the rest are counted in "errors_not_shown"
_CONTACT_COLUMNS = ("phone_number", "name", "timezone")
# The contact column each built-in template variable comes from (campaigns.prompts.contact_variables).
_COLUMN_OF_BUILTIN = {"phone_number": "phone_number", "name": "name", "first_name": "name"}
_ROWS_SHOWN_IN_A_WARNING = 10


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


def _variable_warnings(
    *, campaign: Campaign, rows: list[_Row], columns: dict[str, str], variable_columns: list[str]
) -> list[dict[str, str]]:
    """A warning per variable the agent's templates use that the file does not give (see the module
    docstring), naming the column it would come from."""
    agent = campaign.agent
    templates = (agent.instructions, agent.greeting)
    used: set[str] = set()
    for template in templates:
        used |= template_variables(template)
    if not used:
        return []
    given = set(variable_columns) | {name for name, column in _COLUMN_OF_BUILTIN.items() if column in columns}
    warnings = []
    for name in sorted(used - given):
        warnings.append(
            {
                "column": name,
                "message": f"the agent uses {{{{{name}}}}} but the file has no {name} column: "
                "its contacts get no value for it, and the campaign will not start while a contact lacks it",
            }
        )
    blank_rows: dict[str, list[int]] = {}
    for row in rows:
        variables = row.variables or {}
        values = contact_variables(name=row.name, phone_number=row.phone_number, variables=variables)
        for name in missing_variables(templates=templates, values=values) & given:
            blank_rows.setdefault(name, []).append(row.number)
    for name, numbers in sorted(blank_rows.items()):
        shown = ", ".join(str(number) for number in numbers[:_ROWS_SHOWN_IN_A_WARNING])
        more = "…" if len(numbers) > _ROWS_SHOWN_IN_A_WARNING else ""
        # A built-in left blank comes from the contact column that gives it (first_name: name).
        column = name if name in variable_columns else _COLUMN_OF_BUILTIN.get(name, name)
        warnings.append(
            {
                "column": column,
                "message": f"the agent uses {{{{{name}}}}} but it is empty in {len(numbers)} row(s) "
                f"({shown}{more}); the campaign will not start while a contact lacks it",
            }
        )
    return warnings


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

    created = updated = unchanged = 0
    with transaction.atomic():
        for row in rows:
            contact, done = contact_sync(
                tenant=campaign.tenant,
                phone_number=row.phone_number,
                name=row.name,
                timezone=row.timezone,
                variables=row.variables,
            )
            _, lead_created = lead_add(campaign=campaign, contact=contact)
            if lead_created:
                created += 1
            elif done == CONTACT_UPDATED:
                updated += 1
            else:
                unchanged += 1
    report: dict[str, Any] = {
        "created": created,
        "updated": updated,
        "unchanged": unchanged,
        "errors": errors[:MAX_REPORTED_ERRORS],
        "warnings": _variable_warnings(
            campaign=campaign, rows=rows, columns=columns, variable_columns=variable_columns
        ),
    }
    if len(errors) > MAX_REPORTED_ERRORS:
        report["errors_not_shown"] = len(errors) - MAX_REPORTED_ERRORS
    return report
