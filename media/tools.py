"""The tools an agent may call, their JSON schemas for the Realtime session, and what running each one does.

Actions on the call itself (hang up, transfer) go to the Stasis app that owns the call, over the Redis list
named in the brief (``command_key``); the Stasis app answers a transfer on the pub/sub channel
``media:call:<call id>``. Everything that changes the orchestrator's records (callback, disposition, DNC,
SMS, the call report) goes through Celery tasks named ``media.*``, sent by name: this package never imports
Django. Tool arguments come from a language model, so each one is validated here and a bad value becomes an
error *output* the model can read and correct, never an exception.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from media.session import ToolCall
from wire import tasks as media_tasks
from wire.brief import Brief

logger = logging.getLogger(__name__)

DISPOSITIONS = (
    "interested",
    "not_interested",
    "callback_requested",
    "wrong_number",
    "voicemail",
    "do_not_call",
    "other",
)
CALLBACK_MAX_AHEAD = timedelta(days=90)
SMS_MAX_CHARS = 1000

_SCHEMAS: dict[str, dict[str, Any]] = {
    "end_call": {
        "description": "End the call. Say goodbye first; the line is closed once you have finished speaking.",
        "parameters": {
            "type": "object",
            "properties": {"reason": {"type": "string", "description": "Why the call ends, in a few words."}},
            "required": [],
        },
    },
    "transfer_to_human": {
        "description": "Transfer the caller to a human colleague. Tell the caller you are transferring them "
        "first. If nobody answers, you stay on the call and are told so.",
        "parameters": {
            "type": "object",
            "properties": {
                "reason": {"type": "string", "description": "Why the caller needs a person."},
                "number": {
                    "type": "string",
                    "description": "One of the configured transfer numbers (optional).",
                },
            },
            "required": [],
        },
    },
    "schedule_callback": {
        "description": "Schedule a call back at a time the caller chose, in the caller's local time.",
        "parameters": {
            "type": "object",
            "properties": {
                "local_time": {
                    "type": "string",
                    "description": "Caller-local date and time, ISO 8601, no offset: 2026-03-14T15:30.",
                },
                "note": {"type": "string"},
            },
            "required": ["local_time"],
        },
    },
    "set_disposition": {
        "description": "Record how the conversation went.",
        "parameters": {
            "type": "object",
            "properties": {
                "disposition": {"type": "string", "enum": list(DISPOSITIONS)},
                "note": {"type": "string"},
            },
            "required": ["disposition"],
        },
    },
    "add_to_dnc": {
        "description": "The caller asked never to be called again: put their number on the do-not-call list.",
        "parameters": {"type": "object", "properties": {"note": {"type": "string"}}, "required": []},
    },
    "send_sms": {
        "description": "Send the caller a text message.",
        "parameters": {
            "type": "object",
            "properties": {"text": {"type": "string", "description": f"At most {SMS_MAX_CHARS} characters."}},
            "required": ["text"],
        },
    },
}
TOOL_NAMES = tuple(_SCHEMAS)


def tool_definitions(names: tuple[str, ...] | list[str]) -> list[dict[str, Any]]:
    """The ``tools`` of ``session.update`` for the enabled tool names (unknown names are skipped)."""
    return [{"type": "function", "name": name, **_SCHEMAS[name]} for name in names if name in _SCHEMAS]


@dataclass(frozen=True)
class ToolOutcome:
    """What a tool run gives back: the output for the model, whether the model should speak next, and
    whether the call should end once the agent has finished speaking."""

    output: dict[str, Any]
    respond: bool = True
    hang_up: str | None = None
    transferred: str | None = None


SendTask = Callable[[str, dict[str, Any]], Awaitable[None]]


class CallControl(Protocol):
    """How a tool reaches the Stasis app that owns the call (see :mod:`media.worker`)."""

    async def command(self, key: str, command: dict[str, Any]) -> None: ...

    async def await_transfer(self, call_id: str, timeout_s: float) -> dict[str, Any] | None: ...


async def run_tool(
    call: ToolCall, *, brief: Brief, send_task: SendTask, control: CallControl, now: datetime | None = None
) -> ToolOutcome:
    """Run one tool call of the model for the call of ``brief``."""
    name = call.name
    if name not in brief.tools or name not in _SCHEMAS:
        return ToolOutcome({"ok": False, "error": f"the tool {name!r} is not available on this call"})
    args = call.arguments
    base = {"call_id": brief.call_id, "tenant_id": brief.tenant_id}
    if name == "end_call":
        return ToolOutcome({"ok": True}, respond=False, hang_up="agent_end_call")
    if name == "transfer_to_human":
        return await _transfer(args, brief=brief, control=control)
    if name == "schedule_callback":
        when = _callback_time(args.get("local_time"), brief.timezone, now or datetime.now(UTC))
        if isinstance(when, str):
            return ToolOutcome({"ok": False, "error": when})
        await send_task(
            media_tasks.SCHEDULE_CALLBACK, {**base, "at": when.isoformat(), "note": _text(args.get("note"))}
        )
        local = when.astimezone(_zone(brief.timezone))
        return ToolOutcome(
            {"ok": True, "scheduled_for": local.strftime("%A %Y-%m-%d %H:%M"), "timezone": brief.timezone}
        )
    if name == "set_disposition":
        disposition = args.get("disposition")
        if disposition not in DISPOSITIONS:
            return ToolOutcome(
                {"ok": False, "error": f"disposition must be one of {', '.join(DISPOSITIONS)}"}
            )
        await send_task(
            media_tasks.SET_DISPOSITION, {**base, "disposition": disposition, "note": _text(args.get("note"))}
        )
        return ToolOutcome({"ok": True}, respond=False)
    if name == "add_to_dnc":
        await send_task(media_tasks.ADD_TO_DNC, {**base, "note": _text(args.get("note"))})
        return ToolOutcome({"ok": True, "effect": "this number will not be called again"})
    # send_sms
    text = _text(args.get("text"))
    if not text:
        return ToolOutcome({"ok": False, "error": "text is required"})
    if len(text) > SMS_MAX_CHARS:
        return ToolOutcome({"ok": False, "error": f"text is longer than {SMS_MAX_CHARS} characters"})
    await send_task(media_tasks.SEND_SMS, {**base, "to": brief.number, "text": text})
    return ToolOutcome({"ok": True, "sent_to": brief.number})


def _text(value: Any) -> str:
    return value.strip()[:2000] if isinstance(value, str) else ""


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def _callback_time(value: Any, zone_name: str, now: datetime) -> datetime | str:
    """The UTC time of a caller-local ``YYYY-MM-DDTHH:MM``, or the error to tell the model."""
    if not isinstance(value, str) or not value.strip():
        return "local_time is required, e.g. 2026-03-14T15:30"
    try:
        local = datetime.fromisoformat(value.strip())
    except ValueError:
        return f"local_time {value!r} is not an ISO 8601 date and time such as 2026-03-14T15:30"
    if local.tzinfo is None:
        local = local.replace(tzinfo=_zone(zone_name))
    when = local.astimezone(UTC)
    if when <= now + timedelta(minutes=1):
        return "that time is in the past; ask the caller for a time in the future"
    if when > now + CALLBACK_MAX_AHEAD:
        return "that time is too far ahead (at most 90 days)"
    return when


async def _transfer(args: dict[str, Any], *, brief: Brief, control: CallControl) -> ToolOutcome:
    if not brief.transfer_targets:
        return ToolOutcome({"ok": False, "error": "no transfer number is configured for this call"})
    if not brief.command_key:
        return ToolOutcome({"ok": False, "error": "this call cannot be transferred"})
    wanted = args.get("number")
    target = next(
        (t for t in brief.transfer_targets if wanted and t.number == wanted), brief.transfer_targets[0]
    )
    await control.command(
        brief.command_key,
        {
            "action": "transfer",
            "call_id": brief.call_id,
            "number": target.number,
            "endpoint": target.endpoint,
            "caller_id": brief.caller_id,
            "timeout_s": brief.transfer_timeout_s,
        },
    )
    reply = await control.await_transfer(brief.call_id, brief.transfer_timeout_s + 5.0)
    if reply is None:
        return ToolOutcome({"ok": False, "error": "the transfer got no answer; nobody could be reached"})
    if reply.get("status") == "answered":
        return ToolOutcome({"ok": True, "status": "connected"}, respond=False, transferred=target.number)
    reason = str(reply.get("reason") or "failed")
    return ToolOutcome({"ok": False, "status": "not_connected", "reason": reason})
