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

from campaigns.amd import VOICEMAIL_MAX_WAIT_S, voicemail_audio_key
from campaigns.disclosure import AI_DISCLOSURE_INSTRUCTION, disclosure_text
from campaigns.models import AGENT_TOOLS, AgentProfile, CallAttempt, Campaign, Contact, VoicemailAudio
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
RECORD_CONSENT_TOOL = "record_consent"
#: What the agent is told when the campaign records only after consent.
RECORD_CONSENT_INSTRUCTION = (
    "Early in the call, ask the callee whether they agree to this call being recorded. If they clearly "
    "agree, call record_consent with granted=true; if they decline or do not answer clearly, call "
    "record_consent with granted=false and carry on without recording. Never say the call is being "
    "recorded unless they agreed."
)
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


#: The dial string function for a number on the attempt's PBX (a transfer's human leg uses it too).
endpoint_for_attempt = _endpoint_for_pbx


def _transfer_brief(attempt: CallAttempt) -> dict[str, Any]:
    """``"transfer"``: the campaign's transfer targets, in order, as the agent may choose among them (id,
    name, kind, mode); the pick and the numbers stay on the orchestrator's side (media.transfer_request).
    An unsaved attempt (the brief preview) has none."""
    if attempt.campaign_id is None or attempt.campaign.pk is None:
        return {"targets": []}
    # Loaded with the attempt (campaign_transfer_links_prefetch) on both originate paths: no query here.
    links = sorted(attempt.campaign.transfer_target_links.all(), key=lambda link: (link.position, link.pk))
    return {
        "targets": [
            {
                "id": link.target.pk,
                "name": link.target.name,
                "kind": link.target.kind,
                "mode": link.target.mode,
            }
            for link in links
        ]
    }


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

    The agent's ``instructions`` and ``greeting`` are rendered by :func:`brief_texts`; the greeting starts
    with the campaign's AI disclosure (:func:`brief_disclosure`) and the instructions end with the rule
    that the agent must not deny being an AI (campaigns/disclosure.py).
    """
    campaign = attempt.campaign
    agent = campaign.agent
    contact = attempt.lead.contact
    call_id = str(attempt.pk)
    texts = brief_texts(agent=agent, contact=contact)
    endpoint = endpoint_for or _endpoint_for_pbx(attempt)
    tools = [tool for tool in agent.tools if tool in AGENT_TOOLS and tool != RECORD_CONSENT_TOOL]
    instructions = texts.instructions
    if campaign.recording_mode == Campaign.RecordingMode.AFTER_CONSENT:
        # The agent asks; the tool starts the recording only on a yes (never before the callee agreed).
        tools.append(RECORD_CONSENT_TOOL)
        instructions = (
            f"{instructions}\n\n{RECORD_CONSENT_INSTRUCTION}" if instructions else RECORD_CONSENT_INSTRUCTION
        )
    transfer = _transfer_brief(attempt)
    if transfer["targets"] and "transfer_to_human" in tools and "transfer_decision" not in tools:
        tools.append("transfer_decision")  # the briefed human's "yes" / "no" in a warm transfer
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
        "instructions": f"{instructions}\n\n{AI_DISCLOSURE_INSTRUCTION}",
        "greeting": " ".join(
            part for part in (brief_disclosure(attempt=attempt), texts.greeting.strip()) if part
        ),
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
        # never | always | after_consent: the media worker reads it from the brief's extra keys.
        "recording": {"mode": campaign.recording_mode},
        "transfer": transfer,
        # Answering-machine detection and voicemail (campaigns/amd.py; the media worker's side: its voicemail
        # module): the Stasis app tells the AMD() result on the reply channel; the rule for an uncertain one;
        # what to do on a machine; whether the media worker's own beep / greeting detector runs.
        "amd": {"enabled": campaign.amd_enabled, "notsure": campaign.amd_notsure_action},
        "voicemail": {
            "action": campaign.voicemail_action,
            "text": campaign.voicemail_message_text,
            "audio_key": voicemail_audio_key(campaign.voicemail_audio_sha256)
            if campaign.voicemail_audio_sha256
            else "",
            "max_wait_s": VOICEMAIL_MAX_WAIT_S,
        },
        "machine_detection": {"media": True},
    }
    if result_fields:
        # What the call should find out: the save_results tool's fields (media/results.py reads them).
        brief["result_fields"] = result_fields
    return brief


def brief_disclosure(*, attempt: CallAttempt) -> str:
    """What every call opens with: the campaign's disclosure for the tenant's name, with the recording
    notice when the campaign records calls (``recording_mode`` other than ``never``)."""
    campaign = attempt.campaign
    recording = campaign.recording_mode != Campaign.RecordingMode.NEVER
    return disclosure_text(campaign.disclosure, company=attempt.tenant.name, recording=recording)


def brief_write(*, attempt: CallAttempt, endpoint_for: Callable[[str], str] | None = None) -> None:
    """Store the attempt's brief (:func:`brief_build`) under :func:`brief_key` with :func:`brief_ttl_s`.

    One Redis ``SET … EX``; a repeated originate of the attempt writes the same brief again. Raises
    ``redis.RedisError`` when Redis fails (the caller decides: the originate logs it and dials anyway).
    """
    brief = brief_build(attempt=attempt, endpoint_for=endpoint_for)
    payload = json.dumps(brief, separators=(",", ":"), ensure_ascii=False)
    ttl = brief_ttl_s(attempt=attempt)
    redis = get_redis()
    redis.set(brief_key(attempt.pk), payload, ex=ttl)
    audio_key = brief["voicemail"]["audio_key"]
    if audio_key and brief["voicemail"]["action"] == "leave_message":
        voicemail_audio_publish(redis=redis, key=audio_key, campaign_id=attempt.campaign_id, ttl_s=ttl)


def voicemail_audio_publish(*, redis: Any, key: str, campaign_id: int, ttl_s: int) -> None:
    """The campaign's recorded message under ``key`` for the media worker (``SET NX EX``, once per audio:
    the key is its sha256), kept at least as long as this call can last. The audio is read from the
    database only when Redis does not have it."""
    if redis.expire(key, ttl_s):
        return  # there already; now kept at least as long as this call
    pcm = VoicemailAudio.objects.filter(campaign_id=campaign_id).values_list("pcm", flat=True).first()
    if pcm is not None:
        redis.set(key, bytes(pcm), ex=ttl_s, nx=True)
