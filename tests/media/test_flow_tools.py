"""Inbound flows in the media worker: the record_intake and report_urgent tools, the "say" message on the
reply channel, keys kept from the model, and the local agent doing intake and urgency offline."""

from __future__ import annotations

import base64
import json
from typing import Any

from media.localai.policy import AgentPolicy
from media.localai.session import Session, SessionSettings
from media.localai.voices import ToneVoice
from media.session import CallSession, ToolCall
from media.tools import URGENT_REPLY, CallState, run_tool, tool_definitions
from tests.media.test_session import delta, sent, started, tone
from wire import tasks
from wire.brief import Brief

FIELDS = [
    {"name": "caller_name", "label": "Name", "required": True},
    {"name": "callback_number", "label": "Callback number", "required": True},
    {"name": "address", "label": "Address"},
    {"name": "problem", "label": "Problem", "required": True},
    {"name": "Bad-Name", "label": "skipped"},
    "not a field",
]


def flow_brief(**extra: Any) -> Brief:
    return Brief(
        call_id="1767650400.17",
        tenant_id=4,
        tools=("record_intake", "report_urgent", "end_call"),
        extra={"intake_fields": FIELDS, **extra},
    )


class Tasks:
    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []

    async def __call__(self, name: str, kwargs: dict[str, Any]) -> None:
        self.sent.append((name, kwargs))


class NoControl:
    async def command(self, key: str, command: dict[str, Any]) -> None:
        raise AssertionError("no call action expected")

    async def await_transfer(self, call_id: str, timeout_s: float) -> dict[str, Any] | None:
        raise AssertionError("no transfer expected")


def test_record_intake_schema_is_built_from_the_briefs_fields() -> None:
    [intake] = [t for t in tool_definitions(flow_brief().tools, flow_brief()) if t["name"] == "record_intake"]
    props = intake["parameters"]["properties"]
    assert list(props) == ["caller_name", "callback_number", "address", "problem"]  # malformed ones skipped
    assert all(p["type"] == "string" for p in props.values())
    assert props["callback_number"]["description"] == "Callback number (required)"
    names = [t["name"] for t in tool_definitions(("report_urgent", "record_intake"), flow_brief())]
    assert names == ["report_urgent", "record_intake"]


async def test_record_intake_then_report_urgent_send_their_tasks() -> None:
    brief, send, state = flow_brief(), Tasks(), CallState()

    async def tool(name: str, args: dict[str, Any]) -> dict[str, Any]:
        outcome = await run_tool(
            ToolCall("c", name, args), brief=brief, send_task=send, control=NoControl(), state=state
        )
        return outcome.output

    out = await tool("record_intake", {"problem": " Furnace stopped ", "colour": "red", "address": ""})
    assert out == {
        "ok": True,
        "recorded": ["problem"],
        "still_needed": ["caller_name", "callback_number"],
        "ignored": ["colour"],
    }
    out = await tool("record_intake", {"caller_name": "Pat", "callback_number": "+15551112222"})
    assert out["still_needed"] == []
    assert (await tool("record_intake", {"address": "  "}))["ok"] is False  # nothing to record
    out = await tool("report_urgent", {"summary": "No heat, an emergency"})
    assert out == {"ok": True, "tell_the_caller": URGENT_REPLY}
    fields = {"problem": "Furnace stopped", "caller_name": "Pat", "callback_number": "+15551112222"}
    assert send.sent == [
        (
            tasks.FLOW_INTAKE,
            {"call_id": brief.call_id, "tenant_id": 4, "fields": {"problem": "Furnace stopped"}},
        ),
        (tasks.FLOW_INTAKE, {"call_id": brief.call_id, "tenant_id": 4, "fields": fields}),
        (
            tasks.FLOW_URGENT,
            {"call_id": brief.call_id, "tenant_id": 4, "summary": "No heat, an emergency", "fields": fields},
        ),
    ]
    assert (await tool("report_urgent", {"summary": ""}))["ok"] is False


async def test_report_urgent_tells_the_flows_own_reply_and_needs_the_tool_enabled() -> None:
    brief = flow_brief(urgent_reply="Hang on, Sam is on call tonight.")
    out = await run_tool(
        ToolCall("c", "report_urgent", {"summary": "leak"}),
        brief=brief,
        send_task=Tasks(),
        control=NoControl(),
    )
    assert out.output["tell_the_caller"] == "Hang on, Sam is on call tonight."
    other = Brief(call_id="x", tools=("end_call",))
    out = await run_tool(
        ToolCall("c", "report_urgent", {"summary": "leak"}),
        brief=other,
        send_task=Tasks(),
        control=NoControl(),
    )
    assert out.output["ok"] is False


def page_session(**extra: Any) -> CallSession:
    brief = Brief(call_id="c1", tenant_id=1, greeting="Urgent call.", tools=("end_call",), extra=extra)
    return CallSession(brief, now=0.0, tools=tool_definitions(brief.tools, brief))


def test_say_cancels_what_the_agent_says_and_speaks_the_text_exactly() -> None:
    session = page_session()
    started(session)
    session.on_server_event(delta("r1", "i1", tone(500)), 0.05)
    for i in range(3):
        session.next_frame(0.06 + i * 0.02)
    session.say('Connecting you to the caller, "Pat".', 0.12)
    cancel, truncate = sent(session)
    assert cancel == {"type": "response.cancel"} and truncate["type"] == "conversation.item.truncate"
    assert session.next_frame(0.14) == bytes(960)  # stopped at once
    session.on_server_event({"type": "response.done", "response": {"id": "r1", "status": "cancelled"}}, 0.2)
    [create] = sent(session)
    assert create == {
        "type": "response.create",
        "response": {
            "instructions": "Say exactly: \"Connecting you to the caller, 'Pat'.\" Say nothing else.",
            "tool_choice": "none",
        },
    }
    session.say("   ", 0.3)  # nothing to say: nothing sent
    assert sent(session) == []


def test_say_with_no_response_active_is_sent_at_once() -> None:
    session = page_session()
    started(session)
    session.on_server_event({"type": "response.done", "response": {"id": "r1", "status": "completed"}}, 0.1)
    sent(session)
    session.say("Thank you.", 0.2)
    assert [e["type"] for e in sent(session)] == ["response.create"]


def test_keys_can_be_kept_from_the_model_when_the_product_decides() -> None:
    session = page_session(dtmf_to_model=False)
    started(session)
    session.dtmf("1", 0.1)
    assert sent(session) == [{"type": "response.cancel"}]  # interrupted, no user text, no response
    assert session.transcript[-1]["text"] == "[pressed 1]"


# ------------------------------------------------------------------------------------- the local agent
def local_agent() -> Session:
    session = Session(
        policy=AgentPolicy(),
        voice=ToneVoice(reply_ms=200, delta_ms=100),
        settings=SessionSettings(delta_ms=100, speed=10.0),
    )
    brief = flow_brief()
    tools = tool_definitions(brief.tools, brief)
    session.handle({"type": "session.update", "session": {"type": "realtime", "tools": tools}}, 0.0)
    return session


def user_text(session: Session, text: str) -> None:
    item = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}
    session.handle({"type": "conversation.item.create", "item": item}, 0.0)


def respond(session: Session) -> tuple[str, Any]:
    """response.create and run it: ("call", (name, arguments, call_id)) or ("say", transcript)."""
    out = session.handle({"type": "response.create"}, 0.0)
    while (deadline := session.next_deadline) is not None:
        out += session.tick(deadline)
    for event in out:
        if event["type"] == "response.function_call_arguments.done":
            return "call", (event["name"], json.loads(event["arguments"]), event["call_id"])
    done = [e for e in out if e["type"] == "response.output_audio_transcript.done"]
    return "say", done[-1]["transcript"]


def tool_output(session: Session, call_id: str, output: dict[str, Any]) -> None:
    item = {"type": "function_call_output", "call_id": call_id, "output": json.dumps(output)}
    session.handle({"type": "conversation.item.create", "item": item}, 0.0)


def test_the_local_agent_takes_the_intake_then_reports_urgent_then_tells_the_caller() -> None:
    session = local_agent()
    user_text(
        session,
        "Hi, my name is Pat Lee. My furnace stopped and it is an emergency. Call me on +1 555 111 2222.",
    )
    kind, (name, args, call_id) = respond(session)
    assert (kind, name) == ("call", "record_intake")
    assert args["caller_name"] == "Pat Lee" and args["callback_number"] == "+15551112222"
    assert "furnace stopped" in args["problem"]
    tool_output(session, call_id, {"ok": True, "recorded": sorted(args), "still_needed": []})
    kind, (name, args, call_id) = respond(session)
    assert (kind, name) == ("call", "report_urgent") and "emergency" in args["summary"]
    tool_output(session, call_id, {"ok": True, "tell_the_caller": "Someone is on the way to the phone."})
    assert respond(session) == ("say", "Someone is on the way to the phone.")


def test_the_local_agent_reports_urgent_on_key_7_without_words() -> None:
    session = local_agent()
    user_text(session, "The caller pressed 7 on the keypad.")
    kind, (name, args, _) = respond(session)
    assert (kind, name) == ("call", "report_urgent")
    assert args == {"summary": "The caller reported an urgent problem."}


def test_the_local_agent_records_a_non_urgent_intake_and_thanks() -> None:
    session = local_agent()
    user_text(session, "My name is Dana and the sink drips.")
    kind, (name, args, call_id) = respond(session)
    assert (kind, name, args["caller_name"]) == ("call", "record_intake", "Dana")
    tool_output(session, call_id, {"ok": True})
    assert respond(session) == ("say", "Thank you, I have noted that.")


def test_the_local_agent_calls_no_tool_when_told_to_say_something() -> None:
    session = local_agent()
    user_text(session, "It is an emergency")
    out = session.handle(
        {
            "type": "response.create",
            "response": {"instructions": 'Say exactly: "One moment."', "tool_choice": "none"},
        },
        0.0,
    )
    while (deadline := session.next_deadline) is not None:
        out += session.tick(deadline)
    assert not [e for e in out if e["type"] == "response.function_call_arguments.done"]
    assert [e["transcript"] for e in out if e["type"] == "response.output_audio_transcript.done"] == [
        "One moment."
    ]


def test_the_local_agent_reads_a_simulated_callers_words_from_the_caption_in_its_audio() -> None:
    from telephony.sim.audio import phrase
    from wire.caption import embed

    session = local_agent()
    session.handle(
        {
            "type": "session.update",
            "session": {"type": "realtime", "audio": {"input": {"transcription": {}}}},
        },
        0.0,
    )
    words = "My furnace stopped and it is an emergency"
    audio = embed(phrase(words, 24000), words, 24000) + bytes(24000 * 2)  # then a second of silence
    out: list[dict[str, Any]] = []
    for i in range(0, len(audio), 960):
        out += session.handle(
            {"type": "input_audio_buffer.append", "audio": base64.b64encode(audio[i : i + 960]).decode()},
            i / 48000,
        )
        if any(e["type"] == "response.function_call_arguments.done" for e in out):
            break
    transcripts = [
        e["transcript"] for e in out if e["type"] == "conversation.item.input_audio_transcription.completed"
    ]
    assert transcripts[0] == words
    [call] = [e for e in out if e["type"] == "response.function_call_arguments.done"]
    assert call["name"] == "record_intake"
    assert json.loads(call["arguments"])["problem"] == words
