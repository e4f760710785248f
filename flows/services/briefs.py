"""Call briefs of the flows' calls (the media worker's contract: ``wire.brief``), written to Redis under
``brief_key(call id)`` before the call is answered:

* an inbound call the agent answers (contract 2/4): the flow's agent, the intake fields and, after hours,
  the ``report_urgent`` tool; the call id is the caller's channel id;
* a page call (contract 3): the spoken notification as the greeting, no tools but ``end_call``: the
  product decides from the keys pressed, not the model;
* a connect call (the acknowledger, then bridged to the caller) and a callback to the caller (the
  fallback), which has the flow's agent.
"""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings

from campaigns.models import Pbx
from flows.models import DEFAULT_URGENT_REPLY, InboundCall, InboundFlow, Incident, Page
from orchestrator.redis_client import get_redis
from telephony.ari import PbxConfig
from telephony.stasis import command_key
from wire.brief import brief_key

BRIEF_VERSION = 1
BRIEF_TTL_MARGIN_S = 300

PAGE_INSTRUCTIONS = (
    "You are an automated on-call notification. Say the notification exactly as given and nothing else. "
    "If the person speaks, repeat the notification. Never claim that anything was accepted: only their "
    "keypad answers count."
)


def endpoint_for(pbx: Pbx | None, number: str) -> str:
    """The PBX's dial string for ``number`` (only the template matters: no password needed)."""
    if pbx is None or not number:
        return ""
    config = PbxConfig(
        base_url=pbx.ari_url,
        user=pbx.ari_user,
        password="",
        app=pbx.app_name,
        endpoint_template=pbx.endpoint_template,
    )
    return config.endpoint_for(number)


def _limits() -> dict[str, Any]:
    return {
        "max_call_s": settings.MAX_CALL_DURATION_S,
        "silence_prompt_s": settings.MEDIA_SILENCE_PROMPT_S,
        "silence_end_s": settings.MEDIA_SILENCE_END_S,
        "transfer_timeout_s": settings.TRANSFER_TIMEOUT_S,
    }


def _write(call_id: str, brief: dict[str, Any]) -> None:
    ttl = int(settings.MAX_CALL_DURATION_S + BRIEF_TTL_MARGIN_S + 120)
    get_redis().set(brief_key(call_id), json.dumps(brief, separators=(",", ":"), ensure_ascii=False), ex=ttl)


def _agent_texts(flow: InboundFlow) -> dict[str, str]:
    agent = flow.agent
    parts = [agent.instructions if agent else "", flow.instructions]
    instructions = "\n\n".join(p.strip() for p in parts if p and p.strip()) or (
        "You answer the phone for the business. Be brief and kind."
    )
    return {
        "instructions": instructions,
        "greeting": flow.greeting or (agent.greeting if agent else "") or "Hello, how can I help you?",
        "voice": flow.voice or (agent.voice if agent else "") or "alloy",
        "model": agent.model if agent else "gpt-realtime",
        "language": agent.language if agent else "en",
        "turn_detection": agent.turn_detection if agent else "server_vad",
    }


def intake_fields_of(flow: InboundFlow) -> list[dict[str, Any]]:
    return [
        {"name": f.name, "label": f.label, "required": f.required}
        for f in flow.intake_fields.order_by("position", "pk")
    ]


def inbound_brief_build(
    *, call: InboundCall, flow: InboundFlow, pbx: Pbx | None, in_hours: bool
) -> dict[str, Any]:
    """The brief of an inbound call the agent answers (contract 2 and 4)."""
    may_page = (not in_hours) and flow.after_hours_action == InboundFlow.AfterHoursAction.AGENT_AND_PAGE
    tools = ["end_call", "record_intake"]
    if may_page:
        tools.append("report_urgent")
    targets = []
    if flow.office_number and in_hours:
        tools.append("transfer_to_human")
        targets.append({"number": flow.office_number, "endpoint": endpoint_for(pbx, flow.office_number)})
    return {
        "v": BRIEF_VERSION,
        "call_id": call.channel_id,
        "attempt_id": call.channel_id,
        "tenant_id": call.tenant_id,
        "flow_id": flow.pk,
        "inbound_call_id": call.pk,
        "kind": "inbound",
        "pbx_id": call.pbx_id,
        "command_key": command_key(call.pbx_id) if call.pbx_id is not None else "",
        "number": call.caller_number,
        "caller_id": call.did,
        "timezone": flow.timezone or flow.tenant.default_timezone or "UTC",
        **_agent_texts(flow),
        "tools": tools,
        "transfer_targets": targets,
        "limits": _limits(),
        "contact": {"name": call.caller_name, "variables": {}},
        "after_hours": not in_hours,
        "intake_fields": intake_fields_of(flow),
        "urgent_reply": flow.urgent_reply or DEFAULT_URGENT_REPLY,
    }


def inbound_brief_write(*, call: InboundCall, flow: InboundFlow, pbx: Pbx | None, in_hours: bool) -> None:
    _write(call.channel_id, inbound_brief_build(call=call, flow=flow, pbx=pbx, in_hours=in_hours))


def leg_brief_build(*, page: Page, incident: Incident, pbx: Pbx) -> dict[str, Any]:
    """The brief of a flow leg: a page call, a connect call or a call back to the caller."""
    call_id = page.call_id or ""
    base: dict[str, Any] = {
        "v": BRIEF_VERSION,
        "call_id": call_id,
        "attempt_id": call_id,
        "tenant_id": incident.tenant_id,
        "kind": f"flow_{page.purpose}",
        "incident_id": incident.pk,
        "page_id": page.pk,
        "pbx_id": pbx.pk,
        "command_key": command_key(pbx.pk),
        "number": page.to_number,
        "caller_id": incident.did,
        "timezone": "UTC",
        "limits": {**_limits(), "max_call_s": min(600, settings.MAX_CALL_DURATION_S)},
        "contact": {"name": page.person.name if page.person else "", "variables": {}},
        "transfer_targets": [],
    }
    if page.purpose == Page.Purpose.CALLBACK and incident.flow is not None:
        flow = incident.flow
        texts = _agent_texts(flow)
        texts["greeting"] = page.text or texts["greeting"]
        tools = ["end_call"]
        targets = []
        if flow.office_number:
            tools.append("transfer_to_human")
            targets.append({"number": flow.office_number, "endpoint": endpoint_for(pbx, flow.office_number)})
        return {**base, **texts, "tools": tools, "transfer_targets": targets}
    return {
        **base,
        "instructions": PAGE_INSTRUCTIONS,
        "greeting": page.text,
        "voice": "alloy",
        "model": "gpt-realtime",
        "language": "en",
        "turn_detection": "server_vad",
        "tools": ["end_call"],
    }


def leg_brief_write(*, page: Page, incident: Incident, pbx: Pbx) -> None:
    _write(page.call_id or "", leg_brief_build(page=page, incident=incident, pbx=pbx))
