"""The webhook event types a tenant can subscribe to (``WebhookEndpoint.event_types``; empty: all)."""

from __future__ import annotations

CALL_ENDED = "call.ended"
CALL_RESULTS = "call.results"
LEAD_FINISHED = "lead.finished"
CALLBACK_SCHEDULED = "callback.scheduled"
INCIDENT_OPENED = "incident.opened"
INCIDENT_ACKNOWLEDGED = "incident.acknowledged"
INCIDENT_RESOLVED = "incident.resolved"
#: Sent only by "send test event", to the one endpoint it is asked for, whatever it subscribes to.
TEST = "webhook.test"

EVENT_TYPES: tuple[str, ...] = (
    CALL_ENDED,
    CALL_RESULTS,
    LEAD_FINISHED,
    CALLBACK_SCHEDULED,
    INCIDENT_OPENED,
    INCIDENT_ACKNOWLEDGED,
    INCIDENT_RESOLVED,
)
