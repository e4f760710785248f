"""CSV import of contacts into a campaign as leads (DESIGN.md §5 rule 6: a row-level report; invalid rows
never become leads).

The file is UTF-8 (a BOM is accepted) with a header row. Columns ``phone_number`` (required), ``name`` and
``timezone`` (optional; names matched case-insensitively) fill the contact; every other column becomes a
template variable of the contact (empty cells are left out). Rows are numbered as a spreadsheet shows
them: the header is row 1, the first contact row 2.

Every row is checked first, without touching the database; then the valid rows are written in bulk, in
batches of ``IMPORT_BATCH_ROWS`` (settings): per batch, the existing contacts and leads are read in one
query each and the rest is inserted or updated with one statement each, so the number of queries grows
with the batches, not the rows. Inline (:func:`leads_import_csv`), all batches are ONE transaction. A row
is refused (and reported) for a bad number, time zone, name or variable, and for a number that an earlier
row of the same file already had. Importing the same file again creates nothing: contacts are matched by
number (and updated), leads by (campaign, contact).

A file of more rows than ``IMPORT_INLINE_MAX_ROWS`` (:func:`leads_import_submit`) is checked as a file
(encoding, header, CSV syntax, row cap: a 400 at once), stored as a :class:`ContactImport` and run by a
worker (:func:`contact_import_run`), which commits each batch together with the counts so far: the import
shows its progress, and a run that crashed resumes after its last committed batch with the same report.

Report: ``{"created": <new leads>, "updated": <rows already a lead of this campaign whose contact changed>,
"unchanged": <rows already a lead whose contact was exactly so already>, "errors": [{"row": 3, "field":
"phone_number", "message": "..."}], "warnings": [{"column": "first_name", "message": "..."}]}``.

Prior express consent (for campaigns with ``requires_prior_consent``): columns ``consent_source`` (where it
was given), ``consent_at`` (when: ISO 8601 with a time zone offset, e.g. ``2025-01-10T14:00:00Z``),
``consent_kind`` (``prior_express``, the default, or ``prior_express_written``) and ``consent_evidence``
record a consent for the row's contact (campaigns/services/consent.py); a row with any of them must have
both a source and a time, or it is refused with the column named. The same consent imported again is not
recorded twice.

Warnings name a variable the campaign's agent uses (``{{first_name}}`` in its instructions or greeting)
that the file does not give: no such column (nor a built-in one: ``name`` gives ``name`` and
``first_name``), or a column left empty in some rows. The rows are imported all the same; the campaign
refuses to start while a contact to call lacks the variable (campaigns/services/campaigns.py).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone as django_timezone
from django.utils.dateparse import parse_datetime

from campaigns.models import (
    CONTACT_NAME_MAX_LENGTH,
    Campaign,
    ConsentKind,
    Contact,
    ContactConsent,
    ContactImport,
    DncEntry,
    Lead,
)
from campaigns.phone import normalize_phone_number, timezone_for_number
from campaigns.prompts import contact_variables, missing_variables, template_variables
from campaigns.services.consent import validate_consent
from campaigns.services.contacts import validate_variables
from orchestrator.errors import InvalidInput
from orchestrator.exports import csv_text_verbatim
from orchestrator.live import live_notify
from tenants.validators import is_timezone_name

logger = logging.getLogger(__name__)

MAX_IMPORT_BYTES = 5 * 1024 * 1024
MAX_IMPORT_ROWS = 10_000
MAX_REPORTED_ERRORS = 1_000  # the rest are counted in "errors_not_shown"
_CONSENT_COLUMNS = ("consent_source", "consent_at", "consent_kind", "consent_evidence")
_CONTACT_COLUMNS = ("phone_number", "name", "timezone", *_CONSENT_COLUMNS)
# The consent service's field → the import's column (its errors name the column).
_CONSENT_FIELD_COLUMN = {
    "source": "consent_source",
    "captured_at": "consent_at",
    "kind": "consent_kind",
    "evidence": "consent_evidence",
}
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
    consent: tuple[str, str, datetime, str] | None = None  # kind, source, captured_at, evidence


def _check_consent(cells: dict[str, str], columns: dict[str, str]) -> tuple[str, str, datetime, str] | None:
    """The row's consent columns, checked (InvalidInput naming the column); None when they are all empty."""
    values = {name: cells.get(columns[name], "").strip() for name in _CONSENT_COLUMNS if name in columns}
    if not any(values.values()):
        return None
    raw_at = values.get("consent_at", "")
    captured_at = None
    if raw_at:
        try:
            captured_at = parse_datetime(raw_at)
        except ValueError:
            captured_at = None
        if captured_at is None:
            raise InvalidInput("consent_at", f"{raw_at!r} is not an ISO 8601 date and time")
        if captured_at.tzinfo is None:
            raise InvalidInput("consent_at", "needs a time zone offset (e.g. 2025-01-10T14:00:00Z)")
    try:
        return validate_consent(
            kind=values.get("consent_kind") or ConsentKind.PRIOR_EXPRESS,
            source=values.get("consent_source", ""),
            captured_at=captured_at,
            evidence=values.get("consent_evidence", ""),
        )
    except InvalidInput as exc:
        raise InvalidInput(_CONSENT_FIELD_COLUMN.get(exc.field, exc.field), exc.message) from exc


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
    return _Row(
        number=number,
        phone_number=phone,
        name=name,
        timezone=zone,
        variables=variables,
        consent=_check_consent(cells, columns),
    )


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


@dataclass(frozen=True)
class _File:
    """A file that can be imported: its header, and its non-blank records with their row numbers."""

    header: list[str]
    columns: dict[str, str]  # contact column (lower case) -> its name in the header
    variable_columns: list[str]
    records: list[tuple[int, list[str]]]


@dataclass
class _Checked:
    rows: list[_Row]  # the valid rows, in file order
    errors: list[dict[str, Any]]
    warnings: list[dict[str, str]]


@dataclass
class _Counts:
    created: int = 0
    updated: int = 0
    unchanged: int = 0

    @property
    def written(self) -> int:
        return self.created + self.updated + self.unchanged


def _check_campaign(campaign: Campaign) -> None:
    if campaign.status in (Campaign.Status.ARCHIVED, Campaign.Status.COMPLETED):
        raise InvalidInput("campaign", f"cannot import into a {campaign.status} campaign")


def _parse(data: bytes | str) -> _File:
    """The file's header and records; InvalidInput (field ``file``) when it cannot be imported at all."""
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
    records: list[tuple[int, list[str]]] = []
    try:
        for index, values in enumerate(reader):
            if index >= MAX_IMPORT_ROWS:
                raise InvalidInput("file", f"more than {MAX_IMPORT_ROWS} rows: split it")
            if any(value.strip() for value in values):  # else a blank line
                records.append((index + 2, values))
    except csv.Error as exc:
        raise InvalidInput("file", f"is not valid CSV ({exc})") from exc
    return _File(header=header, columns=columns, variable_columns=variable_columns, records=records)


def _check(*, campaign: Campaign, file: _File) -> _Checked:
    """Every record checked, without writing: the valid rows, the row-level errors, the warnings."""
    header = file.header
    errors: list[dict[str, Any]] = []
    rows: list[_Row] = []
    first_row_of: dict[str, int] = {}
    for number, values in file.records:
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
                number=number, cells=cells, variable_columns=file.variable_columns, columns=file.columns
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
    warnings = _variable_warnings(
        campaign=campaign, rows=rows, columns=file.columns, variable_columns=file.variable_columns
    )
    return _Checked(rows=rows, errors=errors, warnings=warnings)


def _report(checked: _Checked, counts: _Counts) -> dict[str, Any]:
    report: dict[str, Any] = {
        "created": counts.created,
        "updated": counts.updated,
        "unchanged": counts.unchanged,
        "errors": checked.errors[:MAX_REPORTED_ERRORS],
        "warnings": checked.warnings,
    }
    if len(checked.errors) > MAX_REPORTED_ERRORS:
        report["errors_not_shown"] = len(checked.errors) - MAX_REPORTED_ERRORS
    return report


def _apply_row(contact: Contact, row: _Row) -> bool:
    """Give an existing contact the row's values as ``contact_sync`` does (a non-empty name or time zone
    and given variables replace the stored ones); whether a value really changed."""
    changed = False
    if row.name and row.name != contact.name:
        contact.name = row.name
        changed = True
    if row.timezone and row.timezone != contact.timezone:
        contact.timezone = row.timezone
        changed = True
    if row.variables is not None and row.variables != contact.variables:
        contact.variables = row.variables
        changed = True
    return changed


def _update_contacts(contacts: list[Contact]) -> None:
    """Store the name, time zone and variables of ``contacts`` in one statement. On PostgreSQL an
    ``UPDATE ... FROM (VALUES ...)``: ``bulk_update``'s CASE expressions cost about a millisecond per row
    to build and compile in Python, longer than the rest of the import together."""
    if connection.vendor != "postgresql":
        Contact.objects.bulk_update(contacts, ["name", "timezone", "variables"])
        return
    quote = connection.ops.quote_name
    rows = ", ".join(["(%s, %s, %s, %s::jsonb)"] * len(contacts))
    params: list[Any] = []
    for contact in contacts:
        params += [contact.pk, contact.name, contact.timezone, json.dumps(contact.variables)]
    sql = (
        f"UPDATE {quote(Contact._meta.db_table)} AS contact"  # noqa: S608 - names from the model, values bound
        f" SET {quote('name')} = v.name, {quote('timezone')} = v.tz, {quote('variables')} = v.variables"
        f" FROM (VALUES {rows}) AS v(id, name, tz, variables) WHERE contact.{quote('id')} = v.id"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def _write_batch(*, campaign: Campaign, rows: list[_Row]) -> _Counts:
    """Write ``rows`` (valid, distinct numbers) as contacts and leads of ``campaign``, in a fixed number of
    queries. Call it inside a transaction: the batch's contacts stay locked until it ends, as
    ``contact_sync`` locks the one it changes."""
    tenant_id = campaign.tenant_id
    numbers = [row.phone_number for row in rows]
    for_update = Contact.objects.select_for_update()
    contacts = {
        contact.phone_number: contact
        for contact in for_update.filter(tenant_id=tenant_id, phone_number__in=numbers)
    }
    new = [
        Contact(
            tenant_id=tenant_id,
            phone_number=row.phone_number,
            name=row.name,
            timezone=row.timezone or timezone_for_number(row.phone_number),
            variables=row.variables or {},
        )
        for row in rows
        if row.phone_number not in contacts
    ]
    if new:
        # A number another writer inserts meanwhile is skipped here and read back below as an existing
        # contact (get_or_create's behaviour); the read also gives the new rows their ids.
        Contact.objects.bulk_create(new, ignore_conflicts=True)
        contacts.update(
            (contact.phone_number, contact)
            for contact in for_update.filter(
                tenant_id=tenant_id, phone_number__in=[contact.phone_number for contact in new]
            )
        )
    changed_numbers = set()
    for row in rows:
        if _apply_row(contacts[row.phone_number], row):
            changed_numbers.add(row.phone_number)
    if changed_numbers:
        _update_contacts([contacts[number] for number in changed_numbers])
    contact_ids = [contacts[number].pk for number in numbers]
    _write_consents(tenant_id=tenant_id, rows=rows, contacts=contacts)
    in_campaign = set(
        Lead.objects.filter(campaign=campaign, contact_id__in=contact_ids)
        .order_by()
        .values_list("contact_id", flat=True)
    )
    now = django_timezone.now()
    Lead.objects.bulk_create(
        [
            Lead(campaign=campaign, contact_id=contact_id, status=Lead.Status.WAITING, next_due_at=now)
            for contact_id in contact_ids
            if contact_id not in in_campaign
        ],
        ignore_conflicts=True,  # a lead another writer added meanwhile stays as it is (lead_add's rule)
    )
    counts = _Counts()
    for number, contact_id in zip(numbers, contact_ids, strict=True):
        if contact_id not in in_campaign:
            counts.created += 1
        elif number in changed_numbers:
            counts.updated += 1
        else:
            counts.unchanged += 1
    return counts


def _write_consents(*, tenant_id: int, rows: list[_Row], contacts: dict[str, Contact]) -> None:
    """The batch's consents, in two queries: those already held (same contact, kind, source and time, not
    revoked: a re-import) are skipped, the rest inserted."""
    given = [(contacts[row.phone_number].pk, row.consent) for row in rows if row.consent is not None]
    if not given:
        return
    held = set(
        ContactConsent.objects.filter(
            contact_id__in=[contact_id for contact_id, _ in given], revoked_at__isnull=True
        )
        .order_by()
        .values_list("contact_id", "kind", "source", "captured_at")
    )
    ContactConsent.objects.bulk_create(
        ContactConsent(
            tenant_id=tenant_id,
            contact_id=contact_id,
            kind=kind,
            source=source,
            captured_at=at,
            evidence=evidence,
        )
        for contact_id, (kind, source, at, evidence) in given
        if (contact_id, kind, source, at) not in held
    )


def _batch_size() -> int:
    return max(1, int(settings.IMPORT_BATCH_ROWS))


def _import_file(*, campaign: Campaign, file: _File) -> dict[str, Any]:
    checked = _check(campaign=campaign, file=file)
    counts = _Counts()
    with transaction.atomic():
        size = _batch_size()
        for start in range(0, len(checked.rows), size):
            done = _write_batch(campaign=campaign, rows=checked.rows[start : start + size])
            counts.created += done.created
            counts.updated += done.updated
            counts.unchanged += done.unchanged
    return _report(checked, counts)


def leads_import_csv(*, campaign: Campaign, data: bytes | str) -> dict[str, Any]:
    """Import the CSV ``data`` into ``campaign`` now, whatever its size; see the module docstring.
    InvalidInput (field ``file``) for a file that cannot be imported at all (too big, not UTF-8, no
    ``phone_number`` column, too many rows); then nothing is written."""
    _check_campaign(campaign)
    return _import_file(campaign=campaign, file=_parse(data))


@dataclass(frozen=True)
class ImportSubmission:
    """What :func:`leads_import_submit` did: imported the file (``report``) or queued it (``queued``)."""

    report: dict[str, Any] | None = None
    queued: ContactImport | None = field(default=None)


def leads_import_submit(
    *,
    campaign: Campaign,
    data: bytes | str,
    created_by: str = "",
    enqueue: Callable[[int], object],
    inline_max_rows: int | None = None,
) -> ImportSubmission:
    """Import the CSV ``data`` into ``campaign``: inline when it has at most ``IMPORT_INLINE_MAX_ROWS``
    rows (the report), else as a queued :class:`ContactImport` handed to ``enqueue(import_id)`` once the
    transaction that stores it has committed. A file that cannot be imported at all is refused at once
    (InvalidInput, as :func:`leads_import_csv`) either way. ``inline_max_rows`` overrides the setting (the
    portal passes 0: every import is queued, so its page shows the progress)."""
    _check_campaign(campaign)
    file = _parse(data)
    limit = settings.IMPORT_INLINE_MAX_ROWS if inline_max_rows is None else inline_max_rows
    if len(file.records) <= limit:
        return ImportSubmission(report=_import_file(campaign=campaign, file=file))
    raw = data.encode() if isinstance(data, str) else bytes(data)
    with transaction.atomic():
        queued = ContactImport.objects.create(
            tenant_id=campaign.tenant_id,
            campaign=campaign,
            created_by=created_by[:150],
            data=raw,
            rows_total=len(file.records),
        )
        import_id = queued.pk
        transaction.on_commit(lambda: enqueue(import_id))
    logger.info(
        "contact import %s queued: %d rows, %d bytes, campaign %s",
        import_id,
        len(file.records),
        len(raw),
        campaign.pk,
    )
    return ImportSubmission(queued=queued)


_ENDED = (ContactImport.Status.DONE, ContactImport.Status.FAILED)


def _end(import_id: int, *, tenant_id: int, **fields: Any) -> None:
    ContactImport.objects.filter(pk=import_id).exclude(status__in=_ENDED).update(
        data=b"", finished_at=django_timezone.now(), **fields
    )
    live_notify(tenant_id=tenant_id, kind="import", import_id=import_id)


def contact_import_run(*, import_id: int) -> ContactImport | None:
    """Run the queued import ``import_id``, or resume it after its last committed batch; safe to call
    twice, also concurrently (each batch is written under the import's row lock, after re-reading how far
    it got). An ended import (done or failed) is left as it is. A file the campaign no longer takes (it
    was archived meanwhile) fails the import with the reason; any other error fails it and is raised."""
    queued = ContactImport.objects.filter(pk=import_id).select_related("campaign__agent").first()
    if queued is None or queued.status in _ENDED:
        return queued
    ContactImport.objects.filter(pk=import_id, status=ContactImport.Status.QUEUED).update(
        status=ContactImport.Status.RUNNING, started_at=django_timezone.now()
    )
    live_notify(tenant_id=queued.tenant_id, kind="import", import_id=import_id)
    campaign = queued.campaign
    try:
        _check_campaign(campaign)
        checked = _check(campaign=campaign, file=_parse(bytes(queued.data)))
        while True:
            with transaction.atomic():
                locked = ContactImport.objects.select_for_update().defer("data").get(pk=import_id)
                if locked.status != ContactImport.Status.RUNNING:
                    return locked
                counts = _Counts(locked.leads_created, locked.leads_updated, locked.leads_unchanged)
                batch = checked.rows[counts.written : counts.written + _batch_size()]
                if batch:
                    done = _write_batch(campaign=campaign, rows=batch)
                    locked.leads_created += done.created
                    locked.leads_updated += done.updated
                    locked.leads_unchanged += done.unchanged
                    locked.rows_done = len(checked.errors) + counts.written + done.written
                    locked.save(
                        update_fields=["leads_created", "leads_updated", "leads_unchanged", "rows_done"]
                    )
                    # The portal's import page re-reads its progress bar when the batch has committed.
                    live_notify(tenant_id=locked.tenant_id, kind="import", import_id=import_id)
                    continue
                locked.status = ContactImport.Status.DONE
                locked.rows_done = len(checked.errors) + counts.written
                locked.report = _report(checked, counts)
                locked.data = b""
                locked.finished_at = django_timezone.now()
                locked.save(update_fields=["status", "rows_done", "report", "data", "finished_at"])
                live_notify(tenant_id=locked.tenant_id, kind="import", import_id=import_id)
                logger.info("contact import %s done: %d rows written", import_id, counts.written)
                return locked
    except InvalidInput as exc:
        _end(
            import_id,
            tenant_id=queued.tenant_id,
            status=ContactImport.Status.FAILED,
            error=f"{exc.field}: {exc.message}",
        )
        logger.warning("contact import %s failed: %s", import_id, exc)
    except Exception:
        # The batches committed so far stay (importing the file again is safe); the import says so.
        logger.exception("contact import %s failed", import_id)
        _end(
            import_id,
            tenant_id=queued.tenant_id,
            status=ContactImport.Status.FAILED,
            error="the import stopped on an internal error; the rows before it are imported: "
            "send the file again to import the rest",
        )
        raise
    return ContactImport.objects.defer("data").filter(pk=import_id).first()


# ------------------------------------------------------------------------------- column mapping (portal)
# The portal lets a tenant upload any CSV and say which column is which: the file is read for its header
# and a few rows (:func:`import_file_preview`), then rewritten with the chosen header, the ignored columns
# left out (:func:`import_file_remap`), and the result imported by :func:`leads_import_submit` as a file
# sent to the API would be. Row numbers stay those of the uploaded file.

#: What a column of an uploaded file may become.
MAP_PHONE_NUMBER, MAP_NAME, MAP_TIMEZONE, MAP_VARIABLE, MAP_IGNORE = (
    "phone_number",
    "name",
    "timezone",
    "variable",
    "ignore",
)
MAP_CHOICES: tuple[str, ...] = (MAP_PHONE_NUMBER, MAP_NAME, MAP_TIMEZONE, MAP_VARIABLE, MAP_IGNORE)
_COLUMN_ALIASES = {
    "phone_number": MAP_PHONE_NUMBER,
    "phone": MAP_PHONE_NUMBER,
    "phone number": MAP_PHONE_NUMBER,
    "number": MAP_PHONE_NUMBER,
    "mobile": MAP_PHONE_NUMBER,
    "cell": MAP_PHONE_NUMBER,
    "tel": MAP_PHONE_NUMBER,
    "telephone": MAP_PHONE_NUMBER,
    "name": MAP_NAME,
    "full name": MAP_NAME,
    "full_name": MAP_NAME,
    "contact": MAP_NAME,
    "timezone": MAP_TIMEZONE,
    "time zone": MAP_TIMEZONE,
    "time_zone": MAP_TIMEZONE,
    "tz": MAP_TIMEZONE,
}


@dataclass(frozen=True)
class FilePreview:
    """An uploaded file as the mapping step shows it: its header, a guess of what each column is, the
    first rows and how many rows it has."""

    header: list[str]
    guesses: list[str]
    variable_names: list[str]  # a name usable in the agent's text ({{name}}) for each column
    sample: list[list[str]]
    rows: int


# A variable the agent's instructions can use: ``{{shoe_size}}`` (campaigns/prompts.py's placeholders).
_VARIABLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _variable_name(column: str) -> str:
    name = re.sub(r"[^A-Za-z0-9_]+", "_", column.strip()).strip("_").lower()
    return f"_{name}" if name[:1].isdigit() else name


def _records(text: str) -> tuple[list[str], list[list[str]]]:
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = [column.strip() for column in next(reader)]
        records = []
        for index, values in enumerate(reader):
            if index >= MAX_IMPORT_ROWS:
                raise InvalidInput("file", f"more than {MAX_IMPORT_ROWS} rows: split it")
            records.append(values)
    except StopIteration:
        raise InvalidInput("file", "is empty: expected a header row") from None
    except csv.Error as exc:
        raise InvalidInput("file", f"is not valid CSV ({exc})") from exc
    if not any(header):
        raise InvalidInput("file", "the first row (the header) is empty")
    return header, records


def import_file_preview(*, data: bytes | str, sample_rows: int = 3) -> FilePreview:
    """The header, the guessed role of each column and the first rows of ``data``; InvalidInput (field
    ``file``) for a file that cannot be read (too big, not UTF-8, not CSV, no header, too many rows)."""
    header, records = _records(_decode(data))
    guesses: list[str] = []
    for column in header:
        guess = _COLUMN_ALIASES.get(column.lower(), MAP_VARIABLE if column else MAP_IGNORE)
        guesses.append(MAP_VARIABLE if guess != MAP_VARIABLE and guess in guesses else guess)
    rows = [values for values in records if any(value.strip() for value in values)]
    return FilePreview(
        header=header,
        guesses=guesses,
        variable_names=[_variable_name(column) for column in header],
        sample=rows[:sample_rows],
        rows=len(rows),
    )


def import_mapping_check(*, mapping: list[tuple[str, str]]) -> dict[int, str]:
    """Errors (column index -> message) of a mapping: one ``(choice, variable name)`` per column of the
    file, exactly one phone_number column, at most one name and timezone, variables named uniquely and not
    as a contact column; an error of the whole mapping has the index -1. Empty when it can be applied."""
    errors: dict[int, str] = {}
    seen: dict[str, int] = {}
    for index, (choice, variable) in enumerate(mapping):
        if choice not in MAP_CHOICES:
            errors[index] = f"choose one of {', '.join(MAP_CHOICES)}"
            continue
        if choice == MAP_IGNORE:
            continue
        key = variable.strip() if choice == MAP_VARIABLE else choice
        if choice == MAP_VARIABLE:
            if not key:
                errors[index] = "give the variable a name"
                continue
            # (The consent columns may be mapped as variables of their own name: they then record a consent.)
            if key.lower() in _CONTACT_COLUMNS[:3]:
                errors[index] = f"{key} is a contact field: choose it in the list instead of variable"
                continue
            if not _VARIABLE_NAME.match(key):
                errors[index] = "letters, digits and _ only, not starting with a digit (e.g. first_name)"
                continue
            try:
                validate_variables({key: ""})
            except InvalidInput as exc:
                errors[index] = exc.message
                continue
        if key.lower() in seen:
            errors[index] = f"column {seen[key.lower()] + 1} is already {key}"
            continue
        seen[key.lower()] = index
    if MAP_PHONE_NUMBER not in seen and not errors:
        errors[-1] = "one column must be the phone number"
    return errors


def import_file_remap(*, data: bytes | str, mapping: list[tuple[str, str]]) -> bytes:
    """``data`` rewritten per ``mapping`` (see :func:`import_mapping_check`, which it must pass): the header
    names what each kept column is, the ignored columns are left out, every row keeps its place (so the
    report's row numbers are the uploaded file's). A row whose cell count does not match the header keeps
    its own cells, so the import still reports it."""
    header, records = _records(_decode(data))
    if len(mapping) != len(header) or import_mapping_check(mapping=mapping):
        raise InvalidInput("mapping", "does not fit the file")
    kept = [index for index, (choice, _) in enumerate(mapping) if choice != MAP_IGNORE]
    names = [variable.strip() if choice == MAP_VARIABLE else choice for choice, variable in mapping]
    rows: list[list[str]] = [[names[index] for index in kept]]
    for values in records:
        if not any(value.strip() for value in values):
            rows.append([])
        elif len(values) != len(header):
            rows.append(values if len(values) != len(kept) else [*values, ""])
        else:
            rows.append([values[index] for index in kept])
    return csv_text_verbatim(rows).encode()


# ------------------------------------------------------------------------------------------ DNC import


def dnc_import_csv(*, tenant_id: int, data: bytes | str, note: str = "") -> dict[str, Any]:
    """Put every number of a CSV on the tenant's DNC list (source ``csv``): the column ``phone_number`` (or
    ``number``, ``phone``), else the first column; a header row is recognised by such a name. As
    ``dnc_add``: a number already listed keeps its entry. Report: ``{"added": n, "already": n, "errors":
    [{"row", "field", "message"}]}``; InvalidInput (field ``file``) for a file that cannot be read."""
    text = _decode(data)
    try:
        rows = list(csv.reader(io.StringIO(text, newline="")))
    except csv.Error as exc:
        raise InvalidInput("file", f"is not valid CSV ({exc})") from exc
    if len(rows) > MAX_IMPORT_ROWS + 1:
        raise InvalidInput("file", f"more than {MAX_IMPORT_ROWS} rows: split it")
    column, first = 0, 1
    if rows:
        names = [cell.strip().lower() for cell in rows[0]]
        for name in ("phone_number", "number", "phone"):
            if name in names:
                column, first = names.index(name), 2
                break
    errors: list[dict[str, Any]] = []
    numbers: dict[str, int] = {}
    for number, values in enumerate(rows[first - 1 :], start=first):
        if not any(value.strip() for value in values):
            continue
        raw = values[column] if column < len(values) else ""
        try:
            e164 = normalize_phone_number(raw, field="phone_number")
        except InvalidInput as exc:
            if number == 1:  # a header row of other names: not a number, not an error
                continue
            errors.append({"row": number, "field": exc.field, "message": exc.message})
            continue
        numbers.setdefault(e164, number)
    if not numbers and not errors:
        raise InvalidInput("file", "has no phone number")
    with transaction.atomic():
        listed = set(
            DncEntry.objects.filter(tenant_id=tenant_id, phone_number__in=list(numbers)).values_list(
                "phone_number", flat=True
            )
        )
        DncEntry.objects.bulk_create(
            [
                DncEntry(tenant_id=tenant_id, phone_number=e164, source=DncEntry.Source.CSV, note=note)
                for e164 in numbers
                if e164 not in listed
            ],
            ignore_conflicts=True,  # a number listed meanwhile keeps its entry (dnc_add's rule)
        )
    return {
        "added": len(numbers) - len(listed),
        "already": len(listed),
        "errors": errors[:MAX_REPORTED_ERRORS],
        "errors_not_shown": max(0, len(errors) - MAX_REPORTED_ERRORS),
    }
