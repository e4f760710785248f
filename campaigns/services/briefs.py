"""The call brief: what the media worker needs to know about a call, written to Redis right before the call
is placed (its key and fields are the media worker's contract: ``wire.brief``).

The media worker never touches the database (DESIGN.md §3): when the AudioSocket leg of a call connects, it
reads ``media:brief:{call id}`` (the call id is the attempt id) and runs the agent from it. The brief is
written by the originate path right before ``POST /channels`` (``campaigns.services.originate``), from
the rows the originate has already loaded: building it reads nothing more from the database. It lives as
long as the call can (ring timeout + ``settings.MAX_CALL_DURATION_S``) plus five minutes, then Redis
drops it.

A brief that cannot be written does not stop the call: the media worker apologises and hangs up when it
finds none, which is better than losing the attempt (the originate path logs the failure).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from django.conf import settings

from campaigns.models import AGENT_TOOLS, AgentProfile, CallAttempt, Contact
from campaigns.prompts import RenderedAgentTexts, contact_variables, render_agent_texts
from campaigns.windows import zones_for_contact
from orchestrator.redis_client import get_redis
from telephony.ari import PbxConfig
from telephony.stasis import command_key
from wire.brief import brief_key  # the key the media worker reads (a pure module, no Django)

__all__ = [
    "BRIEF_TTL_MARGIN_S",
    "BRIEF_VERSION",
    "brief_build",
    "brief_key",
    "brief_texts",
    "brief_ttl_s",
    "brief_write",
]

BRIEF_VERSION = 1
#: How long the brief outlives the longest the call can last.
BRIEF_TTL_MARGIN_S = 300


def brief_ttl_s(*, attempt: CallAttempt) -> int:
    """Ring timeout + the hard maximum call duration + :data:`BRIEF_TTL_MARGIN_S`, in seconds."""
    return int(attempt.campaign.ring_timeout + settings.MAX_CALL_DURATION_S + BRIEF_TTL_MARGIN_S)


def _endpoint_for_pbx(attempt: CallAttempt) -> Callable[[str], str]:
    """The dial string function the originate uses (``PbxConfig.endpoint_for``), for the attempt's PBX."""
    pbx = attempt.pbx
    if pbx is None:
        return lambda number: ""
    # Only the endpoint template matters here; the password is not needed to fill it in.
    config = PbxConfig(
        base_url=pbx.ari_url,
        user=pbx.ari_user,
        password="",
        app=pbx.app_name,
        endpoint_template=pbx.endpoint_template,
    )
    return config.endpoint_for


def _callee_timezone(attempt: CallAttempt) -> str:
    """The callee's IANA zone (the contact's own, else the number's first, else the tenant's default): the
    agent reads times the callee says (a callback "at 3 pm") in it."""
    contact, tenant = attempt.lead.contact, attempt.tenant
    try:
        zones = zones_for_contact(contact.phone_number, contact.timezone, tenant.default_timezone)
    except ValueError:
        return tenant.default_timezone or "UTC"
    return zones[0] if zones else (tenant.default_timezone or "UTC")


def brief_texts(*, agent: AgentProfile, contact: Contact) -> RenderedAgentTexts:
    """The agent's ``instructions`` and ``greeting`` rendered for ``contact`` (with the variables used and
    missing): what :func:`brief_build` puts in the brief, and what ``GET /api/v1/leads/{id}/brief`` shows.
    The variables are the contact's own plus ``name``, ``first_name`` and ``phone_number``
    (``campaigns.prompts.contact_variables``)."""
    values = contact_variables(
        name=contact.name, phone_number=contact.phone_number, variables=contact.variables or {}
    )
    return render_agent_texts(instructions=agent.instructions, greeting=agent.greeting, values=values)


def brief_build(*, attempt: CallAttempt, endpoint_for: Callable[[str], str] | None = None) -> dict[str, Any]:
    """The call brief of an outbound attempt (contract §2).

    ``attempt`` must come with its tenant, campaign and the campaign's agent, PBX, lead and the lead's
    contact loaded (``campaigns.selectors.attempt_for_originate`` and the dispatch pass load them): no query
    is made. ``endpoint_for`` turns a number into the PBX's dial string; the originate passes its ARI
    client's (the very function that builds the originate's endpoint), else one is made from the PBX row.

    The agent's ``instructions`` and ``greeting`` are rendered by :func:`brief_texts`.
    """
    campaign = attempt.campaign
    agent = campaign.agent
    contact = attempt.lead.contact
    call_id = str(attempt.pk)
    texts = brief_texts(agent=agent, contact=contact)
    endpoint = endpoint_for or _endpoint_for_pbx(attempt)
    tools = [tool for tool in agent.tools if tool in AGENT_TOOLS]
    result_fields = campaign.result_fields if isinstance(campaign.result_fields, list) else []
    if result_fields and "save_results" not in tools:
        tools.append("save_results")  # the campaign wants results: the agent gets the tool to save them
    brief: dict[str, Any] = {
        "v": BRIEF_VERSION,
        "call_id": call_id,
        "attempt_id": call_id,
        "tenant_id": attempt.tenant_id,
        "campaign_id": campaign.pk,
        "lead_id": attempt.lead_id,
        "pbx_id": attempt.pbx_id,
        # The Redis list the Stasis app serving the attempt's PBX row takes call actions from (contract §1).
        "command_key": command_key(attempt.pbx_id) if attempt.pbx_id is not None else "",
        "number": attempt.number,
        "caller_id": campaign.caller_id,
        "timezone": _callee_timezone(attempt),
        "instructions": texts.instructions,
        "greeting": texts.greeting,
        "voice": agent.voice,
        "model": agent.model,
        "language": agent.language,
        "turn_detection": agent.turn_detection,
        "tools": tools,
        "transfer_targets": [
            {"number": number, "endpoint": endpoint(number)} for number in agent.transfer_numbers
        ],
        "limits": {
            "max_call_s": settings.MAX_CALL_DURATION_S,
            "silence_prompt_s": settings.MEDIA_SILENCE_PROMPT_S,
            "silence_end_s": settings.MEDIA_SILENCE_END_S,
            "transfer_timeout_s": settings.TRANSFER_TIMEOUT_S,
        },
        "contact": {"name": contact.name, "variables": dict(contact.variables or {})},
    }
    if result_fields:
        # What the call should find out: the save_results tool's fields (media/results.py reads them).
        brief["result_fields"] = result_fields
    return brief


def brief_write(*, attempt: CallAttempt, endpoint_for: Callable[[str], str] | None = None) -> None:
    """Store the attempt's brief (:func:`brief_build`) under :func:`brief_key` with :func:`brief_ttl_s`.

    One Redis ``SET … EX``; a repeated originate of the attempt writes the same brief again. Raises
    ``redis.RedisError`` when Redis fails (the caller decides: the originate logs it and dials anyway).
    """
    brief = brief_build(attempt=attempt, endpoint_for=endpoint_for)
    payload = json.dumps(brief, separators=(",", ":"), ensure_ascii=False)
    get_redis().set(brief_key(attempt.pk), payload, ex=brief_ttl_s(attempt=attempt))
