"""Inbound calls: recording them, routing them (contract 2), their intake and urgent reports (contract 4).

Routing a call (:func:`inbound_route`), once per call (a repeated question gets the recorded answer):

1. The DID names a tenant's number (:class:`flows.models.PhoneNumber`) with an enabled flow; otherwise the
   call is refused (the platform's "not in service" message) and recorded ``unrouted``.
2. Under the tenant's row lock (the dispatcher's lock: DESIGN.md §5 rule 1), the live calls are counted from
   durable rows: live campaign attempts (``campaigns.selectors.live_attempts``), live inbound calls that hold
   a slot and live flow call legs. At the cap, the call is refused politely (``refused_over_cap``); else it
   is recorded holding a slot, in the same transaction, so two calls racing for the last slot cannot both
   get it.
3. In business hours: a transfer to the office line (the agent answers if nobody does) or the agent; after
   hours: the agent, with ``report_urgent`` when the flow pages the on-call. The call brief is written
   before answering (the agent answers the fallback of a transfer too).
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from redis.exceptions import RedisError

from campaigns.models import Pbx
from campaigns.selectors import live_attempts
from flows.models import INTAKE_NAME_RE, InboundCall, InboundFlow, Incident, Page
from flows.selectors import flow_is_open, phone_number_for_did, tenant_live_flow_calls
from flows.services.briefs import endpoint_for, inbound_brief_write
from flows.services.incidents import incident_open
from telephony.events import InboundRoute
from tenants.models import Tenant
from wire.report import clean_transcript

logger = logging.getLogger(__name__)

MAX_INTAKE_VALUE = 500
MAX_SUMMARY = 2000


#: The domain's answer to the Stasis app (contract 2).
Route = InboundRoute


def _unrouted_message() -> str:
    return str(settings.INBOUND_UNROUTED_MESSAGE)


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


def inbound_call_answered(*, channel_id: str, at: datetime) -> bool:
    return bool(
        InboundCall.objects.filter(channel_id=channel_id, answered_at__isnull=True).update(answered_at=at)
    )


def inbound_call_transferred(*, channel_id: str, number: str, at: datetime) -> bool:
    return bool(
        InboundCall.objects.filter(channel_id=channel_id).update(
            handling=InboundCall.Handling.TRANSFERRED, transferred_to=number[:16]
        )
    )


def inbound_call_bridged_to_agent(*, channel_id: str) -> bool:
    """The caller reached the agent (a transfer that nobody answered falls back to it)."""
    return bool(
        InboundCall.objects.filter(
            channel_id=channel_id, handling=InboundCall.Handling.TRANSFERRED, transferred_to=""
        ).update(handling=InboundCall.Handling.AGENT)
    )


def _route_of(call: InboundCall, flow: InboundFlow | None, pbx: Pbx | None) -> Route:
    """The answer recorded for a call (a repeated question gets the same one)."""
    if call.handling == InboundCall.Handling.AGENT:
        return Route("agent")
    if call.handling == InboundCall.Handling.TRANSFERRED and flow is not None and flow.office_number:
        return Route(
            "transfer",
            endpoint=endpoint_for(pbx, flow.office_number),
            number=flow.office_number,
            caller_id=call.caller_number or call.did,
            timeout_s=float(flow.transfer_timeout_s),
        )
    return Route("refuse", message=call.message or _unrouted_message())


def inbound_route(
    *,
    channel_id: str,
    did: str,
    caller_number: str,
    caller_name: str,
    at: datetime | None = None,
    pbx_id: int | None = None,
) -> Route:
    """Decide what happens to an inbound call (module docstring) and record it."""
    at = at or timezone.now()
    existing = (
        InboundCall.objects.select_related("flow", "flow__tenant").filter(channel_id=channel_id[:150]).first()
    )
    pbx = Pbx.objects.filter(pk=pbx_id).first() if pbx_id is not None else None
    if existing is not None and existing.tenant_id is not None:
        return _route_of(existing, existing.flow, pbx)
    number = phone_number_for_did(did=did)
    flow = number.flow if number is not None else None
    if number is None or flow is None or not flow.enabled or not number.tenant.is_active:
        inbound_call_started(
            channel_id=channel_id,
            did=did,
            caller_number=caller_number,
            caller_name=caller_name,
            message=_unrouted_message(),
            at=at,
            pbx_id=pbx_id,
        )
        logger.info("inbound call %s to %s: no flow; refused", channel_id, did)
        return Route("refuse", message=_unrouted_message())
    in_hours = flow_is_open(flow=flow, at=at)
    transfer = (
        in_hours and flow.in_hours_action == InboundFlow.InHoursAction.TRANSFER and bool(flow.office_number)
    )
    with transaction.atomic():
        tenant = Tenant.objects.select_for_update(no_key=True).get(pk=number.tenant_id)
        live = live_attempts(tenant=tenant).count() + tenant_live_flow_calls(tenant_id=tenant.pk)
        over = live >= tenant.max_concurrent_calls
        if over:
            handling, message = (
                InboundCall.Handling.REFUSED_OVER_CAP,
                flow.refusal_message or _unrouted_message(),
            )
        elif transfer:
            handling, message = InboundCall.Handling.TRANSFERRED, ""
        else:
            handling, message = InboundCall.Handling.AGENT, ""
        call, created = InboundCall.objects.get_or_create(
            channel_id=channel_id[:150],
            defaults={
                "did": did[:64],
                "caller_number": caller_number[:64],
                "caller_name": caller_name[:200],
                "started_at": at,
                "pbx_id": pbx_id,
                "tenant": tenant,
                "flow": flow,
                "phone_number": number,
                "handling": handling,
                "message": message[:200],
                "in_hours": in_hours,
            },
        )
        if not created and call.tenant_id is None:
            # Recorded by a CallInbound event before the question: route it now.
            call.tenant, call.flow, call.phone_number = tenant, flow, number
            call.handling, call.message, call.in_hours = handling, message[:200], in_hours
            call.save(update_fields=["tenant", "flow", "phone_number", "handling", "message", "in_hours"])
    if over:
        logger.warning(
            "inbound call %s to %s: tenant %s at its cap (%d live); refused", channel_id, did, tenant.pk, live
        )
        return Route("refuse", message=call.message or _unrouted_message())
    try:
        inbound_brief_write(call=call, flow=flow, pbx=pbx, in_hours=in_hours)
    except RedisError as exc:
        logger.warning("inbound call %s: brief not written (%s); the agent will apologise", channel_id, exc)
    logger.info(
        "inbound call %s to %s: %s (%s hours)", channel_id, did, call.handling, "in" if in_hours else "after"
    )
    return _route_of(call, flow, pbx)


# ------------------------------------------------------------------------------------- the agent's tools


def _clean_fields(flow: InboundFlow | None, fields: object) -> dict[str, str]:
    if not isinstance(fields, dict):
        return {}
    known = set(flow.intake_fields.values_list("name", flat=True)) if flow is not None else set()
    clean: dict[str, str] = {}
    for name, value in fields.items():
        if not isinstance(name, str) or not INTAKE_NAME_RE.match(name):
            continue
        if known and name not in known:
            continue
        if value is None:
            continue
        clean[name] = str(value).strip()[:MAX_INTAKE_VALUE]
    return clean


def _call_of(call_id: str, tenant_id: int) -> InboundCall:
    """The tenant's inbound call (raises ``InboundCall.DoesNotExist`` for another tenant's or none)."""
    return InboundCall.objects.select_related("flow", "flow__escalation_policy", "tenant").get(
        channel_id=call_id, tenant_id=tenant_id
    )


def inbound_intake_record(*, call_id: str, tenant_id: int, fields: object) -> bool:
    """The agent's ``record_intake``: the values land on the call (and on its incident, if any)."""
    with transaction.atomic():
        call = InboundCall.objects.select_for_update().get(channel_id=call_id, tenant_id=tenant_id)
        clean = _clean_fields(call.flow, fields)
        merged = {**(call.intake or {}), **clean}
        if merged == call.intake:
            return False
        call.intake = merged
        call.save(update_fields=["intake"])
        incident = Incident.objects.select_for_update().filter(inbound_call=call).first()
        if incident is not None:
            incident.intake = {**incident.intake, **clean}
            incident.save(update_fields=["intake", "updated_at"])
    return True


def flow_call_report_record(*, call_id: str, tenant_id: int, transcript: object, metrics: object) -> bool:
    """The media worker's end-of-call report of a call the flows own: the transcript (well-formed turns only)
    and the media metrics land on the inbound call, or the transcript on the page whose leg it was.
    ``InboundCall.DoesNotExist`` when neither is the tenant's; idempotent (a repeat changes nothing)."""
    turns, _dropped = clean_transcript(transcript)
    media_metrics = metrics if isinstance(metrics, dict) else {}
    with transaction.atomic():
        call = (
            InboundCall.objects.select_for_update().filter(channel_id=call_id, tenant_id=tenant_id).first()
        )
        if call is not None:
            if (call.transcript, call.media_metrics) == (turns, media_metrics):
                return False
            call.transcript, call.media_metrics = turns, media_metrics
            call.save(update_fields=["transcript", "media_metrics"])
            return True
        page = Page.objects.select_for_update().filter(call_id=call_id, incident__tenant_id=tenant_id).first()
        if page is None:
            raise InboundCall.DoesNotExist(f"no inbound call or page call {call_id} of tenant {tenant_id}")
        if page.transcript == turns:
            return False
        page.transcript = turns
        page.save(update_fields=["transcript"])
    return True


def inbound_report_urgent(
    *, call_id: str, tenant_id: int, summary: str, fields: object = None, at: datetime | None = None
) -> Incident | None:
    """The agent's ``report_urgent``: open the incident (once per call) when the flow pages after hours;
    None when it does not (the intake is still recorded)."""
    if fields:
        inbound_intake_record(call_id=call_id, tenant_id=tenant_id, fields=fields)
    call = _call_of(call_id, tenant_id)
    flow = call.flow
    if flow is None or flow.after_hours_action != InboundFlow.AfterHoursAction.AGENT_AND_PAGE:
        logger.info("inbound call %s: urgent reported, but its flow does not page", call_id)
        return None
    return incident_open(
        tenant_id=tenant_id,
        flow=flow,
        policy=flow.escalation_policy,
        inbound_call=call,
        caller_number=call.caller_number,
        did=call.phone_number.number if call.phone_number_id and call.phone_number else call.did,
        intake=dict(call.intake or {}),
        summary=str(summary or "").strip()[:MAX_SUMMARY],
        at=at,
    )


def route_as_dict(route: Route) -> dict[str, Any]:
    return {
        "action": route.action,
        "message": route.message,
        "endpoint": route.endpoint,
        "number": route.number,
        "caller_id": route.caller_id,
        "timeout_s": route.timeout_s,
        "fallback_to_agent": route.fallback_to_agent,
    }
