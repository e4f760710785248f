"""The media worker's Celery tasks (``media.*``, sent by name: the media worker has no Django) and the
services behind them: each one's effect, run twice (idempotent), for another tenant's call (dropped), with bad
arguments (dropped, nothing changed); the callback re-scheduling the lead whichever of the task and the call's
end comes first; DNC effective at once; the SMS console backend."""

from __future__ import annotations

import logging
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from django.utils import timezone

from campaigns.lifecycle import AttemptInput, AttemptOutcome
from campaigns.models import AttemptEvent as AttemptLog
from campaigns.models import CallAttempt, DncEntry, Lead
from campaigns.selectors import dnc_contains
from campaigns.services.agent_actions import attempt_record_report
from campaigns.services.call_events import attempt_apply
from campaigns.services.dispatch import dispatch_tenant
from campaigns.tasks import (
    media_add_to_dnc,
    media_call_report,
    media_schedule_callback,
    media_send_sms,
    media_set_disposition,
)
from messaging.models import Message, OptOut
from messaging.tasks import send_message
from orchestrator.errors import InvalidInput
from tests.campaigns.factories import make_tenant
from tests.campaigns.test_dispatch import at, claimed_attempt, running_campaign

pytestmark = pytest.mark.django_db

NEW_YORK = ZoneInfo("America/New_York")  # the callee zone of claimed_attempt's leads

REPORT: dict[str, Any] = {
    "transcript": [
        {"role": "agent", "text": "Hi Dana, this is Sam.", "at": "2025-01-15T15:00:11+00:00"},
        {"role": "caller", "text": "Hi.", "at": "2025-01-15T15:00:13+00:00"},
    ],
    "metrics": {
        "answer_to_first_audio_ms": 420,
        "reply_latency_ms_p50": 510,
        "reply_latency_ms_p95": 900,
        "barge_ins": 1,
        "frames_in": 1500,
        "frames_out": 1490,
        "underruns": 0,
        "realtime_errors": 0,
        "realtime_reconnects": 0,
        "duration_s": 30.0,
        "errors": [],
    },
    "end_reason": "agent_end_call",
    "errors": [],
}


def answered_attempt(**campaign_overrides: Any) -> CallAttempt:
    """A call in progress: claimed, answered and bridged to the media worker."""
    attempt = claimed_attempt(**campaign_overrides)
    attempt_apply(attempt_id=attempt.pk, event=AttemptInput.ANSWERED, at=at(10))
    attempt_apply(attempt_id=attempt.pk, event=AttemptInput.BRIDGED, at=at(11))
    return CallAttempt.objects.get(pk=attempt.pk)


def end(attempt: CallAttempt, outcome: AttemptOutcome = AttemptOutcome.ANSWERED) -> None:
    result = attempt_apply(attempt_id=attempt.pk, event=AttemptInput.ENDED, at=at(60), outcome=outcome)
    assert result.applied


def call(attempt: CallAttempt) -> dict[str, Any]:
    return {"call_id": str(attempt.pk), "tenant_id": attempt.tenant_id}


def lead_of(attempt: CallAttempt) -> Lead:
    return Lead.objects.get(pk=attempt.lead_id)


def notes(attempt: CallAttempt, type: str) -> list[dict[str, Any]]:
    return list(attempt.events.filter(kind=AttemptLog.Kind.NOTE, type=type).values_list("data", flat=True))


def callback_time(days: int = 2, hour: int = 12) -> datetime:
    """Noon in New York ``days`` from today: in the future and inside the calling window."""
    day = timezone.now().astimezone(NEW_YORK).date() + timedelta(days=days)
    return datetime.combine(day, time(hour), tzinfo=NEW_YORK)


# ------------------------------------------------------------------------------------------- call report


def test_the_call_report_saves_the_transcript_and_the_metrics_once():
    attempt = answered_attempt()
    end(attempt)

    assert media_call_report.run(**call(attempt), **REPORT) == "done"
    assert media_call_report.run(**call(attempt), **REPORT) == "unchanged"

    attempt.refresh_from_db()
    assert attempt.transcript == REPORT["transcript"]
    assert attempt.media_metrics == {**REPORT["metrics"], "end_reason": "agent_end_call"}
    assert notes(attempt, "media_report") == [{"end_reason": "agent_end_call", "turns": 2, "errors": 0}]


def test_errors_are_appended_to_the_metrics_each_once():
    attempt = answered_attempt()
    first = {**REPORT, "metrics": {**REPORT["metrics"], "errors": ["realtime: rate_limit_exceeded"]}}
    assert media_call_report.run(**call(attempt), **first) == "done"

    second = {**first, "errors": ["realtime: rate_limit_exceeded", "realtime: reconnect failed"]}
    assert media_call_report.run(**call(attempt), **second) == "done"
    assert media_call_report.run(**call(attempt), **second) == "unchanged"

    attempt.refresh_from_db()
    assert attempt.media_metrics["errors"] == ["realtime: rate_limit_exceeded", "realtime: reconnect failed"]


def test_malformed_transcript_turns_are_dropped_and_said_so():
    attempt = answered_attempt()
    transcript = [
        {"role": "agent", "text": "Hello", "at": "2025-01-15T15:00:11+00:00"},
        {"role": "robot", "text": "?"},
        "not a turn",
        {"role": "caller", "text": 5},
        {"role": "caller", "text": "Hi"},  # no time: kept, with an empty one
    ]
    assert media_call_report.run(**call(attempt), **{**REPORT, "transcript": transcript}) == "done"

    attempt.refresh_from_db()
    assert attempt.transcript == [
        {"role": "agent", "text": "Hello", "at": "2025-01-15T15:00:11+00:00"},
        {"role": "caller", "text": "Hi", "at": ""},
    ]
    assert attempt.media_metrics["errors"] == [
        "call report: 3 malformed or excess transcript turn(s) dropped"
    ]


def test_a_report_that_is_not_a_report_changes_nothing():
    attempt = answered_attempt()
    assert media_call_report.run(**call(attempt), **{**REPORT, "metrics": ["x"]}) == "invalid"
    assert media_call_report.run(**call(attempt), **{**REPORT, "transcript": "hello"}) == "invalid"
    with pytest.raises(InvalidInput) as raised:
        attempt_record_report(attempt_id=attempt.pk, tenant_id=attempt.tenant_id, transcript={}, metrics={})
    assert raised.value.field == "transcript"
    attempt.refresh_from_db()
    assert (attempt.transcript, attempt.media_metrics) == ([], {})


# ---------------------------------------------------------------------------------------- tenant check


TASKS: list[tuple[Any, dict[str, Any]]] = [
    (media_call_report, REPORT),
    (media_schedule_callback, {"at": (timezone.now() + timedelta(days=2)).isoformat(), "note": ""}),
    (media_set_disposition, {"disposition": "do_not_call", "note": ""}),
    (media_add_to_dnc, {"note": "stop calling"}),
    (media_send_sms, {"to": "+12125550123", "text": "Here is the link"}),
]


@pytest.mark.parametrize(("task", "kwargs"), TASKS, ids=lambda value: getattr(value, "name", ""))
def test_a_call_of_another_tenant_is_dropped_and_changes_nothing(task, kwargs, caplog):
    attempt = answered_attempt()
    other = make_tenant()
    before = CallAttempt.objects.filter(pk=attempt.pk).values().get()

    with caplog.at_level(logging.WARNING, logger="campaigns.tasks"):
        assert task.run(call_id=str(attempt.pk), tenant_id=other.pk, **kwargs) == "dropped"
        assert task.run(call_id="not-a-uuid", tenant_id=attempt.tenant_id, **kwargs) == "dropped"
        assert task.run(call_id=str(attempt.pk), tenant_id="x", **kwargs) == "dropped"

    assert CallAttempt.objects.filter(pk=attempt.pk).values().get() == before
    assert attempt.events.filter(kind=AttemptLog.Kind.NOTE).count() == 0
    assert not DncEntry.objects.exists()
    assert lead_of(attempt).status == Lead.Status.IN_ATTEMPT
    assert f"no attempt {attempt.pk} of tenant {other.pk}; dropped" in caplog.text


def test_extra_arguments_from_a_newer_media_worker_are_ignored():
    attempt = answered_attempt()
    assert media_add_to_dnc.run(**call(attempt), note="", confidence=0.9) == "done"


@pytest.mark.parametrize("order", ["report_after_end", "report_before_end"])
def test_a_call_whose_agent_never_spoke_is_media_failed_and_its_lead_retried(order):
    """Same rule for the Realtime side as for a media worker outage: a call whose agent never spoke (the
    speech model failed) is not a success. The report usually comes after the end; either way the call is
    media_failed and its lead waits for a retry instead of being done."""
    attempt = answered_attempt(retry_delays={"media_failed": 300})
    silent = {**REPORT, "transcript": [], "metrics": {**REPORT["metrics"], "agent_spoke": False}}
    if order == "report_after_end":
        end(attempt)
        assert lead_of(attempt).status == Lead.Status.DONE
    assert media_call_report.run(**call(attempt), **silent) == "done"
    if order == "report_before_end":
        end(attempt)

    attempt.refresh_from_db()
    lead = lead_of(attempt)
    assert attempt.outcome == AttemptOutcome.MEDIA_FAILED
    assert (lead.status, lead.last_outcome, lead.attempts) == (Lead.Status.WAITING, "media_failed", 1)
    assert lead.next_due_at is not None and lead.next_due_at >= at(60) + timedelta(seconds=300)


def test_a_call_whose_agent_spoke_stays_answered():
    attempt = answered_attempt()
    end(attempt)
    spoke = {**REPORT, "metrics": {**REPORT["metrics"], "agent_spoke": True}}
    assert media_call_report.run(**call(attempt), **spoke) == "done"
    attempt.refresh_from_db()
    assert attempt.outcome == AttemptOutcome.ANSWERED and lead_of(attempt).status == Lead.Status.DONE


# ------------------------------------------------------------------------------------------- callback


def test_a_callback_before_the_end_makes_the_lead_due_then_instead_of_done():
    attempt = answered_attempt()
    when = callback_time()

    assert media_schedule_callback.run(**call(attempt), at=when.isoformat(), note="after lunch") == "done"
    assert (
        media_schedule_callback.run(**call(attempt), at=when.isoformat(), note="after lunch") == "unchanged"
    )
    attempt.refresh_from_db()
    assert attempt.callback_at == when
    assert lead_of(attempt).status == Lead.Status.IN_ATTEMPT  # nothing changes before the end

    end(attempt)  # answered: without the callback the lead would be done

    lead = lead_of(attempt)
    assert (lead.status, lead.next_due_at, lead.done_reason, lead.attempts) == (
        Lead.Status.WAITING,
        when,
        "",
        1,
    )
    assert notes(attempt, "callback_scheduled") == [{"at": when.isoformat(), "note": "after lunch"}]


def test_a_callback_after_the_end_moves_the_done_lead_at_once():
    attempt = answered_attempt()
    end(attempt)
    assert lead_of(attempt).status == Lead.Status.DONE
    when = callback_time()

    assert media_schedule_callback.run(**call(attempt), at=when.isoformat(), note="") == "done"
    assert media_schedule_callback.run(**call(attempt), at=when.isoformat(), note="") == "unchanged"

    lead = lead_of(attempt)
    assert (lead.status, lead.next_due_at, lead.done_reason) == (Lead.Status.WAITING, when, "")
    [note] = notes(attempt, "callback_scheduled")
    assert note["after_end"] is True and note["lead_rescheduled"] is True


@pytest.mark.parametrize("order", ["task_first", "end_first"])
def test_a_callback_needs_an_attempt_left(order):
    attempt = answered_attempt(max_attempts=1)
    when = callback_time()
    if order == "end_first":
        end(attempt)
    assert media_schedule_callback.run(**call(attempt), at=when.isoformat(), note="") == "done"
    if order == "task_first":
        end(attempt)

    lead = lead_of(attempt)
    assert lead.status == Lead.Status.DONE
    assert lead.done_reason == ("max_attempts" if order == "task_first" else "success")


def test_a_callback_outside_the_calling_window_waits_for_its_opening():
    attempt = answered_attempt()
    late = callback_time(hour=22)  # after 21:00 in New York: the hard bound
    assert media_schedule_callback.run(**call(attempt), at=late.isoformat(), note="") == "done"
    end(attempt)
    lead = lead_of(attempt)
    assert lead.status == Lead.Status.WAITING
    assert lead.next_due_at == datetime.combine(late.date() + timedelta(days=1), time(8), tzinfo=NEW_YORK)


def test_a_late_callback_leaves_a_lead_that_moved_on_alone():
    attempt = answered_attempt(max_attempts=3, retry_delays={"busy": 0})
    end(attempt, AttemptOutcome.BUSY)  # waiting for a retry, which is claimed before the callback arrives
    Lead.objects.filter(pk=attempt.lead_id).update(next_due_at=at(61))
    assert dispatch_tenant(tenant_id=attempt.tenant_id, now=at(62))

    when = callback_time()
    assert media_schedule_callback.run(**call(attempt), at=when.isoformat(), note="") == "done"

    lead = lead_of(attempt)
    assert lead.status == Lead.Status.IN_ATTEMPT
    assert notes(attempt, "callback_scheduled")[0]["lead_rescheduled"] is False


@pytest.mark.parametrize("value", ["tomorrow at 3", "2030-01-01T12:00:00", "", "2999-01-01T00:00:00+00:00"])
def test_a_bad_callback_time_is_refused(value):
    attempt = answered_attempt()
    assert media_schedule_callback.run(**call(attempt), at=value, note="") == "invalid"
    attempt.refresh_from_db()
    assert attempt.callback_at is None


# ---------------------------------------------------------------------------------------------- DNC


def test_add_to_dnc_is_effective_at_once_tenant_wide():
    attempt = answered_attempt()
    # The same number is a due lead of another campaign of the tenant.
    other_campaign = running_campaign(attempt.tenant)
    other_lead = Lead.objects.create(
        campaign=other_campaign, contact=lead_of(attempt).contact, next_due_at=at(0)
    )

    assert media_add_to_dnc.run(**call(attempt), note="stop calling me") == "done"
    assert media_add_to_dnc.run(**call(attempt), note="stop calling me") == "unchanged"

    entry = DncEntry.objects.get(tenant=attempt.tenant)
    assert (entry.phone_number, entry.source, entry.note) == (attempt.number, "agent", "stop calling me")
    assert dnc_contains(tenant=attempt.tenant, phone_number=attempt.number)
    lead = lead_of(attempt)
    assert (lead.status, lead.next_due_at, lead.done_reason) == (Lead.Status.DONE, None, "opted_out")
    # Never dialed again: the other campaign's lead is suppressed instead of claimed.
    assert dispatch_tenant(tenant_id=attempt.tenant_id, now=at(20)) == []
    other_lead.refresh_from_db()
    assert (other_lead.status, other_lead.done_reason) == (Lead.Status.SUPPRESSED, "dnc")

    end(attempt)  # the end keeps the opt-out; it only counts the attempt
    lead = lead_of(attempt)
    assert (lead.status, lead.done_reason, lead.attempts, lead.last_outcome) == (
        Lead.Status.DONE,
        "opted_out",
        1,
        "answered",
    )
    assert len(notes(attempt, "dnc_added")) == 1


def test_a_number_already_on_the_list_still_finishes_the_lead():
    attempt = answered_attempt()
    DncEntry.objects.create(tenant=attempt.tenant, phone_number=attempt.number, source="api")
    assert media_add_to_dnc.run(**call(attempt), note="") == "done"
    assert DncEntry.objects.get(tenant=attempt.tenant).source == "api"  # the first source stays on record
    assert lead_of(attempt).done_reason == "opted_out"


# ------------------------------------------------------------------------------------------ disposition


def test_the_disposition_is_stored_once():
    attempt = answered_attempt()
    assert (
        media_set_disposition.run(**call(attempt), disposition="interested", note="wants a quote") == "done"
    )
    assert media_set_disposition.run(**call(attempt), disposition="interested", note="wants a quote") == (
        "unchanged"
    )
    attempt.refresh_from_db()
    assert attempt.disposition == CallAttempt.Disposition.INTERESTED
    assert notes(attempt, "disposition") == [{"disposition": "interested", "note": "wants a quote"}]
    assert not DncEntry.objects.exists()


def test_the_do_not_call_disposition_also_adds_to_dnc():
    attempt = answered_attempt()
    assert media_set_disposition.run(**call(attempt), disposition="do_not_call", note="") == "done"
    assert media_set_disposition.run(**call(attempt), disposition="do_not_call", note="") == "unchanged"
    attempt.refresh_from_db()
    assert attempt.disposition == "do_not_call"
    assert DncEntry.objects.get(tenant=attempt.tenant).source == DncEntry.Source.AGENT
    assert lead_of(attempt).done_reason == "opted_out"


def test_an_unknown_disposition_is_refused():
    attempt = answered_attempt()
    assert media_set_disposition.run(**call(attempt), disposition="maybe", note="") == "invalid"
    attempt.refresh_from_db()
    assert attempt.disposition == ""


# ---------------------------------------------------------------------------------------------- SMS


def test_an_sms_is_queued_through_messaging_once_and_sent_by_the_console_provider(
    caplog, django_capture_on_commit_callbacks
):
    attempt = answered_attempt()
    with (
        caplog.at_level(logging.INFO, logger="messaging.providers.console"),
        django_capture_on_commit_callbacks() as enqueued,
    ):
        assert media_send_sms.run(**call(attempt), to="+1 212-555-0123", text="Here is the link") == "done"
        assert media_send_sms.run(**call(attempt), to="+12125550123", text="Here is the link") == "unchanged"

        [sent] = notes(attempt, "sms_sent")
    assert len(enqueued) == 1  # messaging's send task, on commit
    with caplog.at_level(logging.INFO, logger="messaging.providers.console"):
        assert send_message.run(sent["message_id"]) == "sent"
        assert send_message.run(sent["message_id"]) == "skipped"

    assert sent["to"] == "+12125550123" and sent["text"] == "Here is the link"
    assert sent["provider"] == "console"
    message = Message.objects.get(pk=sent["message_id"])
    assert (message.tenant_id, message.to_number, message.body) == (
        attempt.tenant_id,
        "+12125550123",
        "Here is the link",
    )
    assert (
        message.ref == f"campaigns.attempt:{attempt.pk}" and message.from_number == attempt.campaign.caller_id
    )
    assert message.status == "sent" and message.provider_message_id.startswith("console-")
    assert caplog.text.count("Here is the link") == 1
    assert "+12125550123" in caplog.text


@pytest.mark.parametrize(("to", "text"), [("12", "hi"), ("+12125550123", " "), ("+12125550123", "x" * 1601)])
def test_a_bad_sms_is_refused(to, text):
    attempt = answered_attempt()
    assert media_send_sms.run(**call(attempt), to=to, text=text) == "invalid"
    assert notes(attempt, "sms_sent") == []
    assert not Message.objects.exists()


def test_an_sms_to_a_number_that_opted_out_is_recorded_blocked_and_never_sent():
    attempt = answered_attempt()
    OptOut.objects.create(tenant_id=attempt.tenant_id, phone_number="+12125550123", source="keyword")
    assert media_send_sms.run(**call(attempt), to="+12125550123", text="hi") == "done"
    [sent] = notes(attempt, "sms_sent")
    assert sent["status"] == "blocked"
    assert Message.objects.get(pk=sent["message_id"]).status == "blocked"
