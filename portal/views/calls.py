"""Portal pages: the call log and a call's page.

The log lists the tenant's campaign calls (``campaigns.selectors.attempt_log``), searchable by number and
filtered by campaign, state, outcome, disposition and the day range (days of the tenant's time zone); the
filters are the API's (``AttemptFilterSerializer``) and a few more. A call's page shows its facts, the
metrics the media worker measured, the agent's tool calls, the event log and the transcript turn by turn;
while the call is live its facts re-read on ``sse:call-<id>`` and its transcript grows from the live
stream's ``transcript-<id>`` events (portal/live.py renders each line with ``_transcript_line.html``).
"""

from __future__ import annotations

from datetime import datetime, time, timedelta
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.urls import path
from rest_framework import serializers

from campaigns.api.serializers import AttemptFilterSerializer
from campaigns.lifecycle import AttemptOutcome, AttemptState
from campaigns.models import AttemptDisposition, CallAttempt
from campaigns.selectors import (
    attempt_log,
    attempt_page,
    attempt_recording_url,
    attempt_tool_calls,
    attempt_transcript,
    campaign_list,
)
from portal.access import PortalRequest, portal_view
from portal.forms import bind_query
from portal.pagination import paginate


class CallLogFilterSerializer(AttemptFilterSerializer):
    """The API's attempt filters, and the log's own: number search, disposition, a range of days."""

    number = serializers.CharField(required=False, allow_blank=True, max_length=32)
    disposition = serializers.ChoiceField(choices=AttemptDisposition.values, required=False)
    date_from = serializers.DateField(required=False)
    date_to = serializers.DateField(required=False)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if attrs.get("date_from") and attrs.get("date_to") and attrs["date_to"] < attrs["date_from"]:
            raise serializers.ValidationError({"date_to": ["is before the first day"]})
        return attrs


_FILTER_NAMES = ("number", "campaign", "state", "outcome", "disposition", "date_from", "date_to")


def _filters(request: HttpRequest) -> tuple[dict[str, Any], dict[str, str], dict[str, list[str]]]:
    """The valid filters, the values to show in the form, and the errors of those that are not valid."""
    values = {name: request.GET.get(name, "").strip() for name in _FILTER_NAMES}
    data, errors = bind_query(CallLogFilterSerializer, values)
    return data, values, errors


def _day_start(day: Any, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, time.min, tzinfo=zone)


def _zone(request: PortalRequest) -> ZoneInfo:
    try:
        return ZoneInfo(request.portal.tenant.default_timezone or "UTC")
    except (KeyError, ValueError):
        return ZoneInfo("UTC")


@portal_view()
def index(request: HttpRequest) -> HttpResponse:
    req: PortalRequest = request  # type: ignore[assignment]
    tenant = req.portal.tenant
    filters, values, errors = _filters(request)
    zone = _zone(req)
    attempts = attempt_log(
        tenant=tenant,
        number=filters.get("number", ""),
        campaign_id=filters.get("campaign"),
        state=filters.get("state"),
        outcome=filters.get("outcome"),
        disposition=filters.get("disposition"),
        since=_day_start(filters["date_from"], zone) if filters.get("date_from") else None,
        until=_day_start(filters["date_to"] + timedelta(days=1), zone) if filters.get("date_to") else None,
    )
    page = paginate(request, attempts)
    campaigns = list(campaign_list(tenant=tenant).select_related(None).only("pk", "name"))
    # Page 1 follows the calls as they happen: it re-reads itself (the log only) on each ``calls`` event.
    template = "portal/calls/_log.html" if request.headers.get("HX-Request") else "portal/calls/index.html"
    return render(
        request,
        template,
        {
            "page": page,
            "values": values,
            "errors": errors,
            "filtered": any(values.values()),
            "campaign_choices": [(str(c.pk), c.name) for c in campaigns],
            "state_choices": [s.value for s in AttemptState],
            "outcome_choices": [o.value for o in AttemptOutcome],
            "disposition_choices": AttemptDisposition.choices,
            "zone": zone.key,
        },
    )


def _metrics(attempt: CallAttempt) -> list[tuple[str, str]]:
    """The media worker's figures worth reading, as (label, value) pairs."""
    raw: dict[str, Any] = attempt.media_metrics if isinstance(attempt.media_metrics, dict) else {}

    def ms(key: str) -> str | None:
        value = raw.get(key)
        return f"{value:.0f} ms" if isinstance(value, int | float) else None

    shown = [
        ("Answer → first audio", ms("answer_to_first_audio_ms")),
        ("Reply latency, median", ms("reply_latency_ms_p50")),
        ("Reply latency, p95", ms("reply_latency_ms_p95")),
        ("Replies", raw.get("replies")),
        ("Caller barge-ins", raw.get("barge_ins")),
        ("Tool calls", raw.get("tool_calls")),
        ("Audio underruns", raw.get("underruns")),
        ("Speech model errors", raw.get("realtime_errors")),
        ("Media ended because", raw.get("end_reason")),
    ]
    return [(label, str(value)) for label, value in shown if value not in (None, "")]


def _call_context(attempt: CallAttempt) -> dict[str, Any]:
    turns = attempt_transcript(attempt=attempt)
    raw = attempt.media_metrics if isinstance(attempt.media_metrics, dict) else {}
    return {
        "attempt": attempt,
        "contact": attempt.lead.contact,
        "live": attempt.is_live,
        # A page keeps re-reading the call while it lasts and, once it ended answered, until the media
        # worker's end-of-call report (the whole transcript and the metrics) is stored.
        "following": attempt.is_live or (attempt.answered_at is not None and not raw),
        "turns": turns,
        "tool_calls": attempt_tool_calls(turns=turns),
        "metrics": _metrics(attempt),
        "media_errors": [str(e) for e in raw.get("errors") or []],
        "events": list(attempt.events.all()),
        "recording_url": attempt_recording_url(attempt=attempt),
    }


def _get_call(request: HttpRequest, pk: UUID) -> CallAttempt:
    req: PortalRequest = request  # type: ignore[assignment]
    return get_object_or_404(attempt_page(tenant=req.portal.tenant), pk=pk)


@portal_view()
def detail(request: HttpRequest, pk: UUID) -> HttpResponse:
    return render(request, "portal/calls/detail.html", _call_context(_get_call(request, pk)))


@portal_view()
def state(request: HttpRequest, pk: UUID) -> HttpResponse:
    """The call's facts, metrics, tool calls and events (re-read on ``sse:call-<id>`` while it is followed);
    once it has ended and its report is in, the stored transcript too (an out-of-band swap: a page opened
    mid-call has only the lines spoken since)."""
    context = _call_context(_get_call(request, pk))
    context["oob"] = not context["following"]  # ended, and the report (if any was due) is in
    return render(request, "portal/calls/_state.html", context)


urlpatterns = [
    path("", index, name="calls"),
    path("<uuid:pk>/", detail, name="call"),
    path("<uuid:pk>/state", state, name="call-state"),
]
