"""The call brief: what the orchestrator tells the media worker about a call, and the Redis names of a call.

The orchestrator writes the brief (``media:brief:<call id>``, JSON, with a TTL) right before it places the
call, so it is there when the AudioSocket leg connects. Unknown keys are ignored (a newer orchestrator may
add some); a brief that is not a JSON object or lacks what the agent cannot do without is refused as a
whole, and the caller then gets the same apology as for a missing brief.

How a media leg finds its call (the AudioSocket UUID is *not* the call id, which tenants can see): the
Stasis app makes a random uuid4 per media leg, the AudioSocket ``data``, and right before
``POST /channels/externalMedia`` sets ``media:expect:<media uuid>`` = the call id, for
``MEDIA_EXPECT_TTL_S``. The media worker takes that key with one atomic ``GETDEL`` when the leg's UUID frame
arrives: a value is the call id, and no value (never expected, expired, or already taken by an earlier
connection) refuses the connection. So a UUID is accepted once, only while its call expects media.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

# The Redis names of a call, in one place for the three processes that use them: the orchestrator writes
# the brief, the media worker reads it, and the Stasis app publishes its replies to the media worker.
BRIEF_KEY_PREFIX = "media:brief:"
REPLY_CHANNEL_PREFIX = "media:call:"
MEDIA_EXPECT_PREFIX = "media:expect:"
MEDIA_SEEN_PREFIX = "media:seen:"
#: How long a media leg's UUID is expected after the Stasis app announced it (Asterisk connects during the
#: externalMedia request itself, so seconds would do; a minute covers a slow PBX).
MEDIA_EXPECT_TTL_S = 60
#: How long the evidence marks of a call (``media:seen:<call id>``) are kept for reconciliation.
MEDIA_SEEN_TTL_S = 86400
#: A sorted set of the media workers accepting calls: member ``host:port`` (as advertised), score = the
#: epoch second until which its last heartbeat vouches for it. Live ones: ``ZCOUNT media:workers <now> +inf``.
MEDIA_WORKERS_KEY = "media:workers"
#: The Stasis apps' own liveness set, kept by the Stasis app (named here so every process spells it alike).
STASIS_APPS_KEY = "stasis:apps"


def brief_key(call_id: object) -> str:
    """``media:brief:<call id>``: the call's brief (the call id is the attempt id of an outbound call)."""
    return f"{BRIEF_KEY_PREFIX}{call_id}"


def reply_channel(call_id: str) -> str:
    """``media:call:<call id>``: the pub/sub channel of the Stasis app's replies about the call."""
    return f"{REPLY_CHANNEL_PREFIX}{call_id}"


def say_message(text: str) -> str:
    """The JSON to publish on :func:`reply_channel` to make the agent of a live call say ``text`` now: the
    media worker cancels any response in progress and speaks the text as given."""
    return json.dumps({"type": "say", "text": text})


def media_expect_key(media_uuid: object) -> str:
    """``media:expect:<media uuid>``: the call id a media leg's AudioSocket UUID stands for, taken once.

    The UUID is written in its canonical form (lower case, with hyphens), which is how the media worker
    reads it from the binary UUID frame whatever case the Stasis app used for ``data``.
    """
    return f"{MEDIA_EXPECT_PREFIX}{str(media_uuid).lower()}"


def media_seen_key(call_id: object) -> str:
    """``media:seen:<call id>``: a hash of what the media worker saw of the call, as epoch seconds:
    ``connected`` (its media leg was accepted) and ``agent_audio`` (the first agent audio reached the caller).
    The orchestrator reads it to classify a call whose end it did not see."""
    return f"{MEDIA_SEEN_PREFIX}{call_id}"


class BriefError(ValueError):
    """The stored brief cannot be used."""


@dataclass(frozen=True)
class TransferTarget:
    number: str
    endpoint: str


@dataclass(frozen=True)
class Brief:
    call_id: str
    tenant_id: int | None = None
    attempt_id: str = ""
    command_key: str = ""
    number: str = ""
    caller_id: str = ""
    timezone: str = "UTC"
    instructions: str = ""
    greeting: str = ""
    voice: str = "alloy"
    model: str = ""
    language: str = "en"
    turn_detection: str = "server_vad"
    tools: tuple[str, ...] = ()
    transfer_targets: tuple[TransferTarget, ...] = ()
    max_call_s: float | None = None
    silence_prompt_s: float = 10.0
    silence_end_s: float = 25.0
    transfer_timeout_s: float = 30.0
    contact_name: str = ""
    extra: dict[str, Any] = field(default_factory=dict, repr=False)


def _str(data: dict[str, Any], key: str, default: str = "") -> str:
    value = data.get(key, default)
    if value is None:
        return default
    if not isinstance(value, str | int):
        raise BriefError(f"brief field {key!r} must be a string")
    return str(value)


def _seconds(limits: dict[str, Any], key: str, default: float | None) -> float | None:
    value = limits.get(key, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise BriefError(f"brief limit {key!r} must be a positive number")
    return float(value)


def parse_brief(raw: bytes | str, *, call_id: str) -> Brief:
    """A :class:`Brief` from its stored JSON; :class:`BriefError` when it is unusable."""
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BriefError(f"brief is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise BriefError("brief is not a JSON object")
    stored_id = _str(data, "call_id", call_id)
    if stored_id.lower() != call_id.lower():
        raise BriefError(f"brief is for call {stored_id}, not {call_id}")
    tenant = data.get("tenant_id")
    if tenant is not None and (isinstance(tenant, bool) or not isinstance(tenant, int)):
        raise BriefError("brief field 'tenant_id' must be an integer")
    tools = data.get("tools") or []
    if not isinstance(tools, list) or not all(isinstance(t, str) for t in tools):
        raise BriefError("brief field 'tools' must be a list of names")
    targets = []
    for target in data.get("transfer_targets") or []:
        if not isinstance(target, dict) or not target.get("endpoint"):
            raise BriefError("brief transfer targets need an 'endpoint'")
        targets.append(TransferTarget(number=_str(target, "number"), endpoint=_str(target, "endpoint")))
    limits = data.get("limits") or {}
    if not isinstance(limits, dict):
        raise BriefError("brief field 'limits' must be an object")
    turn_detection = _str(data, "turn_detection", "server_vad") or "server_vad"
    if turn_detection not in ("server_vad", "semantic_vad"):
        raise BriefError(f"brief turn_detection {turn_detection!r} is neither server_vad nor semantic_vad")
    contact = data.get("contact") or {}
    return Brief(
        call_id=call_id,
        tenant_id=tenant,
        attempt_id=_str(data, "attempt_id", call_id),
        command_key=_str(data, "command_key"),
        number=_str(data, "number"),
        caller_id=_str(data, "caller_id"),
        timezone=_str(data, "timezone", "UTC") or "UTC",
        instructions=_str(data, "instructions"),
        greeting=_str(data, "greeting"),
        voice=_str(data, "voice", "alloy") or "alloy",
        model=_str(data, "model"),
        language=_str(data, "language", "en") or "en",
        turn_detection=turn_detection,
        tools=tuple(tools),
        transfer_targets=tuple(targets),
        max_call_s=_seconds(limits, "max_call_s", None),
        silence_prompt_s=_seconds(limits, "silence_prompt_s", 10.0) or 10.0,
        silence_end_s=_seconds(limits, "silence_end_s", 25.0) or 25.0,
        transfer_timeout_s=_seconds(limits, "transfer_timeout_s", 30.0) or 30.0,
        contact_name=_str(contact, "name") if isinstance(contact, dict) else "",
        extra=data,
    )
