"""The tools an agent may call, their JSON schemas for the Realtime session, and what running each one does.

Actions on the call itself (hang up, transfer) go to the Stasis app that owns the call, over the Redis list
named in the brief (``command_key``); the Stasis app answers a transfer on the pub/sub channel
``media:call:<call id>``. Everything that changes the orchestrator's records (callback, disposition, DNC,
SMS, the call report) goes through Celery tasks named ``media.*``, sent by name: this package never imports
Django. Tool arguments come from a language model, so each one is validated here and a bad value becomes an
error *output* the model can read and correct, never an exception.

Transfers: with the campaign's transfer targets in the brief (``extra["transfer"]``, :mod:`media.transfer`),
``transfer_to_human`` asks the orchestrator (``media.transfer_request``) and may name a target and a mode;
``transfer_decision(accept)`` is the briefed human's answer in a warm transfer (the Stasis app acts on it).

Inbound flows add two tools: ``record_intake`` (the fields the flow asks for, named in the brief's
``extra["intake_fields"]``: its JSON schema is built from them, every field a string) and ``report_urgent``
(the agent judged the call urgent: the flow opens an incident and pages the on-call; the tool's output tells
the agent what to tell the caller: ``extra["urgent_reply"]`` or :data:`URGENT_REPLY`). The values recorded
so far are kept per call and sent with ``report_urgent``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from media import recording
from media import results as media_results
from media.session import ToolCall
from media.transfer import MODES, choose_target, transfer_targets
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
INTAKE_FIELD_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
INTAKE_VALUE_MAX_CHARS = 500
INTAKE_MAX_FIELDS = 40
URGENT_SUMMARY_MAX_CHARS = 1000
URGENT_REPLY = (
    "The on-call technician is being contacted now; you will get a text message when someone has taken it."
)

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
        "first. Warm (the default where configured): the caller waits on hold while you brief the colleague, "
        "who accepts or declines; cold: the caller goes straight to them. If nobody takes the call, you are "
        "back with the caller and told so.",
        "parameters": {
            "type": "object",
            "properties": {
                "reason": {"type": "string", "description": "Why the caller needs a person."},
                "number": {
                    "type": "string",
                    "description": "One of the configured transfer numbers (optional).",
                },
                "target": {
                    "type": "string",
                    "description": "The name of one of the campaign's transfer targets (optional).",
                },
                "mode": {"type": "string", "enum": ["warm", "cold"], "description": "Optional."},
            },
            "required": [],
        },
    },
    "transfer_decision": {
        "description": "During a warm transfer, the colleague you briefed accepted (accept true: they are "
        "connected with the caller and you leave the call) or declined (accept false: you go back to the "
        "caller).",
        "parameters": {
            "type": "object",
            "properties": {"accept": {"type": "boolean"}},
            "required": ["accept"],
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
    # Its parameters are built per call from the brief's intake fields (intake_schema).
    "record_intake": {
        "description": "Record what the caller told you, in the fields asked for. Call it as soon as you "
        "know some of them, and again when you learn more; fields already recorded are kept.",
        "parameters": {"type": "object", "properties": {}, "required": []},
    },
    # Its parameters are built per call from the brief's result fields (media/results.py).
    "save_results": {
        "description": media_results.DESCRIPTION,
        "parameters": {"type": "object", "properties": {}, "required": []},
    },
    "report_urgent": {
        "description": "The call is urgent (an emergency that cannot wait for opening hours): the on-call "
        "person is contacted at once. Record the intake first. Then tell the caller what the output says.",
        "parameters": {
            "type": "object",
            "properties": {
                "summary": {
                    "type": "string",
                    "description": "What is wrong, in one or two sentences, for the on-call person.",
                }
            },
            "required": ["summary"],
        },
    },
    # Given by the brief when the campaign records only after consent (media/recording.py).
    recording.TOOL: recording.SCHEMA,
}
TOOL_NAMES = tuple(_SCHEMAS)


@dataclass(frozen=True)
class IntakeField:
    name: str
    label: str
    required: bool = False


def intake_fields(brief: Brief) -> tuple[IntakeField, ...]:
    """The intake fields of the brief (``extra["intake_fields"]``); malformed entries are skipped."""
    raw = brief.extra.get("intake_fields") if isinstance(brief.extra, dict) else None
    if not isinstance(raw, list):
        return ()
    fields: list[IntakeField] = []
    seen: set[str] = set()
    for entry in raw[:INTAKE_MAX_FIELDS]:
        if not isinstance(entry, dict):
            continue
        name = entry.get("name")
        if not isinstance(name, str) or not INTAKE_FIELD_NAME.match(name) or name in seen:
            logger.warning("call %s: skipping intake field %.100r", brief.call_id, entry)
            continue
        seen.add(name)
        label = entry.get("label")
        fields.append(
            IntakeField(
                name, label if isinstance(label, str) and label else name, entry.get("required") is True
            )
        )
    return tuple(fields)


def intake_schema(brief: Brief) -> dict[str, Any]:
    """The JSON schema of ``record_intake`` for this call: one string property per intake field."""
    fields = intake_fields(brief)
    return {
        "type": "object",
        "properties": {
            f.name: {"type": "string", "description": f.label + (" (required)" if f.required else "")}
            for f in fields
        },
        "required": [],  # recorded as they come: the required ones are asked for until known
    }


def tool_definitions(names: tuple[str, ...] | list[str], brief: Brief | None = None) -> list[dict[str, Any]]:
    """The ``tools`` of ``session.update`` for the enabled tool names (unknown names are skipped).
    ``record_intake`` gets its parameters from the brief's intake fields."""
    tools = []
    for name in names:
        if name not in _SCHEMAS:
            continue
        schema = dict(_SCHEMAS[name])
        if name == "record_intake" and brief is not None:
            schema["parameters"] = intake_schema(brief)
        if name == "save_results" and brief is not None:
            schema["parameters"] = media_results.results_schema(brief)
        tools.append({"type": "function", "name": name, **schema})
    return tools


@dataclass
class CallState:
    """What the tools of one call remember between calls: the intake values recorded so far, and the
    result values saved so far."""

    intake: dict[str, str] = field(default_factory=dict)
    # A warm transfer asked for and not settled yet (the reason given, for the human's brief).
    transfer_reason: str = ""
    warm_transfer: bool = False
    results: dict[str, Any] = field(default_factory=dict)


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
    call: ToolCall,
    *,
    brief: Brief,
    send_task: SendTask,
    control: CallControl,
    now: datetime | None = None,
    state: CallState | None = None,
) -> ToolOutcome:
    """Run one tool call of the model for the call of ``brief`` (``state``: what earlier tool calls of
    this call recorded)."""
    name = call.name
    if name not in brief.tools or name not in _SCHEMAS:
        return ToolOutcome({"ok": False, "error": f"the tool {name!r} is not available on this call"})
    args = call.arguments
    base = {"call_id": brief.call_id, "tenant_id": brief.tenant_id}
    state = state if state is not None else CallState()
    if name == "record_intake":
        return await _record_intake(args, brief=brief, base=base, send_task=send_task, state=state)
    if name == "save_results":
        saved = media_results.save_results(args, brief=brief, saved=state.results)
        if saved.send is not None:
            await send_task(media_tasks.SAVE_RESULTS, saved.send)
        return ToolOutcome(saved.output)
    if name == "report_urgent":
        summary = _text(args.get("summary"))[:URGENT_SUMMARY_MAX_CHARS]
        if not summary:
            return ToolOutcome({"ok": False, "error": "summary is required: say what is wrong"})
        await send_task(media_tasks.FLOW_URGENT, {**base, "summary": summary, "fields": dict(state.intake)})
        reply = brief.extra.get("urgent_reply") if isinstance(brief.extra, dict) else None
        return ToolOutcome(
            {"ok": True, "tell_the_caller": reply if isinstance(reply, str) and reply else URGENT_REPLY}
        )
    if name == "end_call":
        return ToolOutcome({"ok": True}, respond=False, hang_up="agent_end_call")
    if name == recording.TOOL:
        return ToolOutcome(
            await recording.record_consent(args, brief=brief, command=control.command, send_task=send_task)
        )
    if name == "transfer_to_human":
        if transfer_targets(brief.extra):
            return await _transfer_request(
                args, brief=brief, base=base, send_task=send_task, control=control, state=state
            )
        return await _transfer(args, brief=brief, control=control)
    if name == "transfer_decision":
        accept = args.get("accept")
        if not isinstance(accept, bool):
            return ToolOutcome({"ok": False, "error": "accept must be true or false"})
        if not state.warm_transfer or not brief.command_key:
            return ToolOutcome({"ok": False, "error": "no warm transfer is waiting for a decision"})
        await control.command(
            brief.command_key, {"action": "transfer_decision", "call_id": brief.call_id, "accept": accept}
        )
        return ToolOutcome({"ok": True, "accepted": accept}, respond=False)
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


async def _record_intake(
    args: dict[str, Any], *, brief: Brief, base: dict[str, Any], send_task: SendTask, state: CallState
) -> ToolOutcome:
    fields = intake_fields(brief)
    known = {f.name for f in fields}
    values: dict[str, str] = {}
    unknown: list[str] = []
    for key, value in args.items():
        if key not in known:
            unknown.append(str(key)[:40])
            continue
        text = (value if isinstance(value, str) else "" if value is None else str(value)).strip()
        if text:
            values[key] = text[:INTAKE_VALUE_MAX_CHARS]
    if not values:
        error = "nothing to record: give at least one of " + ", ".join(sorted(known)) if known else ""
        return ToolOutcome({"ok": False, "error": error or "this call has no intake fields"})
    state.intake.update(values)
    await send_task(media_tasks.FLOW_INTAKE, {**base, "fields": dict(state.intake)})
    missing = [f.name for f in fields if f.required and f.name not in state.intake]
    output: dict[str, Any] = {"ok": True, "recorded": sorted(values), "still_needed": missing}
    if unknown:
        output["ignored"] = sorted(unknown)
    return ToolOutcome(output)


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


async def _transfer_request(
    args: dict[str, Any],
    *,
    brief: Brief,
    base: dict[str, Any],
    send_task: SendTask,
    control: CallControl,
    state: CallState,
) -> ToolOutcome:
    """A campaign with transfer targets: the orchestrator picks the human (media.transfer_request) and the
    Stasis app reports back. Warm: the tool returns at once (the caller hears music on hold; the agent
    hears of the human joining on the reply channel); cold: it waits for the outcome like ``_transfer``."""
    if state.warm_transfer:
        return ToolOutcome({"ok": False, "error": "a transfer is already in progress"})
    target = choose_target(transfer_targets(brief.extra), args.get("target"))
    if target is None:
        return ToolOutcome({"ok": False, "error": "no transfer target is configured for this call"})
    mode = args.get("mode") if args.get("mode") in MODES else target.mode
    reason = _text(args.get("reason"))[:500]
    await send_task(
        media_tasks.TRANSFER_REQUEST, {**base, "target_id": target.id, "mode": mode, "reason": reason}
    )
    if mode == "warm":
        state.warm_transfer, state.transfer_reason = True, reason
        return ToolOutcome(
            {"ok": True, "status": "calling", "note": "the caller is on hold; you will be told who joins"},
            respond=False,
        )
    reply = await control.await_transfer(brief.call_id, brief.transfer_timeout_s + 5.0)
    if reply is None:
        return ToolOutcome({"ok": False, "error": "the transfer got no answer; nobody could be reached"})
    if reply.get("status") == "answered":
        number = str(reply.get("number") or target.name)
        return ToolOutcome({"ok": True, "status": "connected"}, respond=False, transferred=number)
    return ToolOutcome(
        {"ok": False, "status": "not_connected", "reason": str(reply.get("reason") or "failed")}
    )


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
