"""A campaign's exports (``GET /api/v1/campaigns/{id}/export?of=leads|attempts&format=csv|json|jsonl``):

* ``of=leads`` (the default): one row per lead, with its contact, where it stands, what its calls gave (the
  latest disposition, callback, transfer, summary and results);
* ``of=attempts``: one row per call attempt, with its times, outcome, hangup cause, disposition, summary
  and results.

Both carry one ``result_<name>`` column per result field of the campaign (campaigns/results.py) in CSV, and a
``results`` object in JSON. CSV text comes from ``orchestrator.exports.csv_lines``, the product's one CSV
writer, which neutralises spreadsheet formulas in every cell; JSON is JSON lines (``jsonl``, one object a
line) or one array (``json``), written as it is read.

**Bounded memory, whatever the size.** Rows are read with ``values_list`` (tuples, no model instances) over
``.iterator(chunk_size=...)`` (a server-side cursor on PostgreSQL: at most one chunk in memory), formatted
one at a time and handed to the response in chunks of about :data:`_FLUSH_BYTES`; nothing holds the whole
export. ``bench/export.py`` measures it on 100,000 attempts.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db.models import JSONField, OuterRef, QuerySet, Subquery
from django.db.models.functions import Coalesce

from campaigns.models import CallAttempt, Campaign, Lead
from orchestrator.exports import csv_lines

#: The columns of the leads export, in order (then one ``result_<name>`` column per result field).
RESULT_COLUMNS: tuple[str, ...] = (
    "lead_id",
    "contact_id",
    "phone_number",
    "name",
    "timezone",
    "status",
    "attempts",
    "last_outcome",
    "disposition",
    "last_call_at",
    "callback_at",
    "transferred_to",
    "next_due_at",
    "done_reason",
    "summary",
)

#: The columns of the attempts export, in order (then the result columns).
ATTEMPT_COLUMNS: tuple[str, ...] = (
    "attempt_id",
    "lead_id",
    "contact_id",
    "number",
    "name",
    "state",
    "outcome",
    "queued_at",
    "originated_at",
    "answered_at",
    "ended_at",
    "duration_s",
    "cause",
    "cause_txt",
    "dialstatus",
    "disposition",
    "callback_at",
    "transferred_to",
    "summary",
)
_ATTEMPT_VALUES = (
    "id", "lead_id", "lead__contact_id", "number", "lead__contact__name", "state", "outcome", "queued_at",
    "originated_at", "answered_at", "ended_at", "duration_s", "cause", "cause_txt", "dialstatus",
    "disposition", "callback_at", "transferred_to", "summary", "results",
)  # fmt: skip
_LEAD_VALUES = (
    "pk", "contact_id", "contact__phone_number", "contact__name", "contact__timezone", "status", "attempts",
    "last_outcome", "last_disposition", "last_call_at", "last_callback_at", "last_transferred_to",
    "next_due_at", "done_reason", "last_summary", "last_results",
)  # fmt: skip

EXPORT_KINDS = ("leads", "attempts")
EXPORT_FORMATS = ("csv", "json", "jsonl")
CONTENT_TYPES = {
    "csv": "text/csv; charset=utf-8",
    "json": "application/json",
    "jsonl": "application/x-ndjson",
}
_CHUNK = 2_000
#: Lines are handed to the response in pieces of about this size (fewer, larger writes than one a line).
_FLUSH_BYTES = 64 * 1024


def campaign_results(*, campaign: Campaign) -> QuerySet[Lead]:
    """The campaign's leads with their contacts, in id order, annotated with what their calls left:
    ``last_call_at`` (when the latest attempt was placed, or queued if it never was), and the latest
    non-empty ``disposition``, ``callback_at``, ``transferred_to``, ``summary`` and ``results``. The
    campaign comes from a tenant-scoped lookup, so the rows are that tenant's only."""
    attempts = CallAttempt.objects.filter(lead=OuterRef("pk")).order_by("-queued_at", "-pk")
    return (
        Lead.objects.filter(campaign=campaign)
        .annotate(
            last_call_at=Subquery(
                attempts.annotate(at=Coalesce("originated_at", "queued_at")).values("at")[:1]
            ),
            last_disposition=Subquery(attempts.exclude(disposition="").values("disposition")[:1]),
            last_callback_at=Subquery(attempts.filter(callback_at__isnull=False).values("callback_at")[:1]),
            last_transferred_to=Subquery(attempts.exclude(transferred_to="").values("transferred_to")[:1]),
            last_summary=Subquery(attempts.exclude(summary="").values("summary")[:1]),
            last_results=Subquery(
                attempts.exclude(results={}).values("results")[:1], output_field=JSONField()
            ),
        )
        .order_by("pk")
    )


def campaign_attempts(*, campaign: Campaign) -> QuerySet[CallAttempt]:
    """The campaign's attempts, oldest first (the campaign comes from a tenant-scoped lookup)."""
    return CallAttempt.objects.filter(campaign=campaign).order_by("queued_at", "pk")


def _result_names(campaign: Campaign) -> list[str]:
    fields = campaign.result_fields if isinstance(campaign.result_fields, list) else []
    return [str(f["name"]) for f in fields if isinstance(f, dict) and f.get("name")]


def _rows(*, campaign: Campaign, of: str) -> tuple[Sequence[str], Iterator[tuple[Any, ...]]]:
    """The base columns and the rows (the base values, then the results object last), read in chunks."""
    if of == "attempts":
        return ATTEMPT_COLUMNS, campaign_attempts(campaign=campaign).values_list(*_ATTEMPT_VALUES).iterator(
            chunk_size=_CHUNK
        )
    return RESULT_COLUMNS, campaign_results(campaign=campaign).values_list(*_LEAD_VALUES).iterator(
        chunk_size=_CHUNK
    )


def _cell(value: Any) -> Any:
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


def _flushed(lines: Iterable[str]) -> Iterator[str]:
    buffer: list[str] = []
    size = 0
    for line in lines:
        buffer.append(line)
        size += len(line)
        if size >= _FLUSH_BYTES:
            yield "".join(buffer)
            buffer, size = [], 0
    if buffer:
        yield "".join(buffer)


def campaign_export(*, campaign: Campaign, of: str = "leads", fmt: str = "csv") -> Iterator[str]:
    """The export of ``campaign`` (``of`` one of :data:`EXPORT_KINDS`, ``fmt`` one of
    :data:`EXPORT_FORMATS`), piece by piece for a streaming response (see the module docstring)."""
    if of not in EXPORT_KINDS or fmt not in EXPORT_FORMATS:
        raise ValueError(f"unknown export {of!r} as {fmt!r}")
    columns, rows = _rows(campaign=campaign, of=of)
    names = _result_names(campaign)
    if fmt == "csv":
        header = [*columns, *(f"result_{name}" for name in names)]
        table = (
            (
                *row[:-1],
                *(_cell((row[-1] or {}).get(name)) if isinstance(row[-1], dict) else None for name in names),
            )
            for row in rows
        )
        return _flushed(csv_lines(header, table))
    objects = (_object(columns, row) for row in rows)
    if fmt == "jsonl":
        return _flushed(f"{text}\n" for text in objects)
    return _flushed(_array(objects))


def _object(columns: Sequence[str], row: tuple[Any, ...]) -> str:
    data = dict(zip(columns, row[:-1], strict=True))
    if "attempt_id" in data:
        data["attempt_id"] = str(data["attempt_id"])
    data["results"] = row[-1] if isinstance(row[-1], dict) else {}
    return json.dumps(data, cls=DjangoJSONEncoder, ensure_ascii=False)


def _array(objects: Iterable[str]) -> Iterator[str]:
    yield "["
    separator = "\n"
    for text in objects:
        yield separator + text
        separator = ",\n"
    yield "\n]\n"


def campaign_results_csv(*, campaign: Campaign) -> Iterator[str]:
    """The leads export of ``campaign`` as CSV (see the module docstring)."""
    return campaign_export(campaign=campaign, of="leads", fmt="csv")
