"""What campaigns tell tenants' systems through webhooks (integrations/): the payloads of ``call.ended``,
``call.results``, ``lead.finished`` and ``callback.scheduled``, recorded in the transaction of the change
(integrations.services.webhook_event_record: the outbox). Payloads carry ids, the outcome and the results,
never the transcript (fetch it from the API by the attempt id)."""

from __future__ import annotations

from typing import Any

from campaigns.models import CallAttempt, Lead
from integrations import events
from integrations.services import webhook_event_record


def attempt_payload(attempt: CallAttempt) -> dict[str, Any]:
    return {
        "attempt_id": str(attempt.pk),
        "campaign_id": attempt.campaign_id,
        "lead_id": attempt.lead_id,
        "number": attempt.number,
        "state": attempt.state,
        "outcome": attempt.outcome,
        "answered_at": attempt.answered_at,
        "ended_at": attempt.ended_at,
        "duration_s": attempt.duration_s,
        "disposition": attempt.disposition,
        "callback_at": attempt.callback_at,
        "transferred_to": attempt.transferred_to,
        "results": attempt.results or {},
        "summary": attempt.summary,
    }


def lead_payload(lead: Lead) -> dict[str, Any]:
    return {
        "lead_id": lead.pk,
        "campaign_id": lead.campaign_id,
        "contact_id": lead.contact_id,
        "status": lead.status,
        "attempts": lead.attempts,
        "last_outcome": lead.last_outcome,
        "done_reason": lead.done_reason,
    }


def call_ended_record(*, attempt: CallAttempt) -> None:
    webhook_event_record(
        tenant_id=attempt.tenant_id, event_type=events.CALL_ENDED, data=attempt_payload(attempt)
    )


def call_results_record(*, attempt: CallAttempt) -> None:
    webhook_event_record(
        tenant_id=attempt.tenant_id, event_type=events.CALL_RESULTS, data=attempt_payload(attempt)
    )


def lead_finished_record(*, lead: Lead, tenant_id: int) -> None:
    webhook_event_record(tenant_id=tenant_id, event_type=events.LEAD_FINISHED, data=lead_payload(lead))


def callback_scheduled_record(*, attempt: CallAttempt, note: str = "") -> None:
    webhook_event_record(
        tenant_id=attempt.tenant_id,
        event_type=events.CALLBACK_SCHEDULED,
        data={
            "attempt_id": str(attempt.pk),
            "campaign_id": attempt.campaign_id,
            "lead_id": attempt.lead_id,
            "number": attempt.number,
            "callback_at": attempt.callback_at,
            "note": note,
        },
    )
