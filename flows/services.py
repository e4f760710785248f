"""Writes for inbound calls (see flows/models.py). Both are idempotent: the Stasis app may report a call
twice (a reconnect, a replay)."""

from __future__ import annotations

from datetime import datetime

from flows.models import InboundCall


def inbound_call_started(
    *,
    channel_id: str,
    did: str,
    caller_number: str,
    caller_name: str,
    message: str,
    at: datetime,
    pbx_id: int | None = None,
) -> InboundCall:
    """Record an inbound call the first time it is reported; a repeat changes nothing."""
    call, _ = InboundCall.objects.get_or_create(
        channel_id=channel_id[:150],
        defaults={
            "did": did[:64],
            "caller_number": caller_number[:64],
            "caller_name": caller_name[:200],
            "message": message[:200],
            "started_at": at,
            "pbx_id": pbx_id,
        },
    )
    return call


def inbound_call_ended(*, channel_id: str, at: datetime, reason: str) -> bool:
    """Close a live inbound call; False when there is none (unknown, or ended already)."""
    return bool(
        InboundCall.objects.filter(channel_id=channel_id, status=InboundCall.Status.LIVE).update(
            status=InboundCall.Status.ENDED, ended_at=at, end_reason=reason[:32]
        )
    )
