"""Writes of post-call results: the agent's ``save_results`` during the call, and the summary pass after
the end-of-call report.

* :func:`attempt_save_results`: the values the agent saved (``media.save_results``), each checked by its
  field's type (campaigns/results.py); valid ones are merged into ``CallAttempt.results`` (source
  ``agent``), invalid or unknown ones are logged on the attempt and dropped.
* :func:`attempt_summarize`: once per attempt, after the media worker's report (its transcript): a summary
  and the fields the agent left empty, from OpenAI's Chat Completions API when ``OPENAI_API_KEY`` is set
  (with ``SUMMARY_TIMEOUT_S``; any failure falls back to the local summary), else from the local extractive
  summary (campaigns/summaries.py). Values the agent saved are never overwritten. The tenant's
  ``call.results`` webhook is recorded in the same transaction.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from uuid import UUID

import httpx
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from campaigns.models import AttemptEvent, CallAttempt
from campaigns.results import results_clean
from campaigns.services.attempts import attempt_event_append
from campaigns.summaries import SUMMARY_MAX_CHARS, local_summary, model_messages
from campaigns.webhooks import call_results_record
from orchestrator.errors import InvalidInput

logger = logging.getLogger(__name__)

__all__ = ["Summarizer", "attempt_save_results", "attempt_summarize", "openai_summary"]

_NOTE = AttemptEvent.Kind.NOTE
#: (transcript, fields) → (summary, values); raises on failure (the local summary is used then).
Summarizer = Callable[[Sequence[Mapping[str, Any]], Sequence[Mapping[str, Any]]], tuple[str, dict[str, Any]]]


def _locked(*, attempt_id: UUID, tenant_id: int | None = None) -> CallAttempt:
    query = CallAttempt.objects.select_related("campaign").select_for_update(no_key=True, of=("self",))
    if tenant_id is not None:
        return query.get(pk=attempt_id, tenant_id=tenant_id)
    return query.get(pk=attempt_id)


def _fields(attempt: CallAttempt) -> list[dict[str, Any]]:
    fields = attempt.campaign.result_fields
    return [f for f in fields if isinstance(f, dict)] if isinstance(fields, list) else []


def attempt_save_results(*, attempt_id: UUID, tenant_id: int, fields: object) -> bool:
    """Merge the agent's saved values into the attempt's results (see the module docstring); returns
    whether anything changed. ``CallAttempt.DoesNotExist`` unless the attempt is the tenant's;
    InvalidInput("fields") unless ``fields`` is an object."""
    if not isinstance(fields, dict):
        raise InvalidInput("fields", "must be an object of field name -> value")
    with transaction.atomic():
        attempt = _locked(attempt_id=attempt_id, tenant_id=tenant_id)
        clean, errors = results_clean(_fields(attempt), fields)
        results = dict(attempt.results) if isinstance(attempt.results, dict) else {}
        sources = dict(attempt.results_source) if isinstance(attempt.results_source, dict) else {}
        changed = {name: value for name, value in clean.items() if results.get(name) != value}
        if errors:
            attempt_event_append(attempt=attempt, kind=_NOTE, type="results_refused", data={"errors": errors})
        if not changed:
            return False
        results.update(changed)
        sources.update(dict.fromkeys(changed, "agent"))
        attempt.results, attempt.results_source = results, sources
        attempt.save(update_fields=["results", "results_source"])
        attempt_event_append(
            attempt=attempt, kind=_NOTE, type="results_saved", data={"fields": sorted(changed)}
        )
    return True


def openai_summary(
    transcript: Sequence[Mapping[str, Any]], fields: Sequence[Mapping[str, Any]]
) -> tuple[str, dict[str, Any]]:
    """A summary and field values from OpenAI's Chat Completions API (JSON mode), within
    ``SUMMARY_TIMEOUT_S``; raises ``httpx.HTTPError`` or ``ValueError`` on any failure."""
    response = httpx.post(
        f"{settings.OPENAI_BASE_URL.rstrip('/')}/chat/completions",
        headers={"Authorization": f"Bearer {settings.OPENAI_API_KEY}"},
        json={
            "model": settings.SUMMARY_MODEL,
            "messages": model_messages(transcript, fields),
            "response_format": {"type": "json_object"},
        },
        timeout=float(settings.SUMMARY_TIMEOUT_S),
    )
    response.raise_for_status()
    content = response.json()["choices"][0]["message"]["content"]
    data = json.loads(content)
    if not isinstance(data, dict):
        raise ValueError("the model's answer is not a JSON object")
    summary = data.get("summary")
    values = data.get("fields")
    return (
        summary if isinstance(summary, str) else "",
        {k: v for k, v in values.items() if v is not None} if isinstance(values, dict) else {},
    )


def _summarizer() -> Summarizer | None:
    return openai_summary if settings.OPENAI_API_KEY else None


def attempt_summarize(*, attempt_id: UUID, summarizer: Summarizer | None = None) -> bool:
    """The summary pass of one attempt (see the module docstring); once: a summarized attempt, or one with
    no transcript, is left alone. Returns whether it summarized. The model (if any) is asked outside any
    transaction; the attempt is then locked and re-read, and only fields still empty are filled."""
    attempt = CallAttempt.objects.select_related("campaign").get(pk=attempt_id)
    transcript = [t for t in attempt.transcript or [] if isinstance(t, dict) and t.get("text")]
    if attempt.summarized_at is not None or not transcript:
        return False
    fields = _fields(attempt)
    summarizer = summarizer if summarizer is not None else _summarizer()
    source, error = "local", ""
    if summarizer is not None:
        try:
            summary, values = summarizer(transcript, fields)
            source = "model"
        except (httpx.HTTPError, ValueError, KeyError, IndexError, TypeError) as exc:
            error = f"{type(exc).__name__}: {exc}"[:300]
            logger.warning("attempt %s: model summary failed (%s); local summary instead", attempt_id, error)
            summary, values = local_summary(transcript, fields)
    else:
        summary, values = local_summary(transcript, fields)
    clean, refused = results_clean(fields, values)
    with transaction.atomic():
        attempt = _locked(attempt_id=attempt_id)
        if attempt.summarized_at is not None:
            return False
        results = dict(attempt.results) if isinstance(attempt.results, dict) else {}
        sources = dict(attempt.results_source) if isinstance(attempt.results_source, dict) else {}
        filled = {name: value for name, value in clean.items() if name not in results}
        results.update(filled)
        sources.update(dict.fromkeys(filled, "summary"))
        if not attempt.summary:
            attempt.summary = summary.strip()[:SUMMARY_MAX_CHARS]
        attempt.results, attempt.results_source = results, sources
        attempt.summarized_at = timezone.now()
        attempt.save(update_fields=["results", "results_source", "summary", "summarized_at"])
        attempt_event_append(
            attempt=attempt,
            kind=_NOTE,
            type="summarized",
            data={"source": source, "filled": sorted(filled), "refused": refused, "error": error},
        )
        call_results_record(attempt=attempt)
    return True
