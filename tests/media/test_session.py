"""The call session core without any I/O: Realtime events and caller input in, client events, frames and
actions out."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from media.playout import Playout
from media.session import CallSession, Hangup, RealtimeError, ToolCall
from media.tools import tool_definitions
from wire.brief import Brief

FRAME = 960  # 20 ms at 24 kHz, 16-bit


def make_session(**brief: Any) -> CallSession:
    fields: dict[str, Any] = {
        "call_id": "c1",
        "tenant_id": 1,
        "greeting": "Hi Dana.",
        "instructions": "Be brief.",
        "tools": ("end_call", "transfer_to_human"),
    }
    fields.update(brief)
    b = Brief(**fields)
    return CallSession(b, now=0.0, tools=tool_definitions(b.tools), transcribe_model="whisper-x")


def sent(session: CallSession) -> list[dict[str, Any]]:
    outbox, _ = session.take()
    return [json.loads(m) for m in outbox]


def delta(response_id: str, item_id: str, pcm: bytes) -> dict[str, Any]:
    return {
        "type": "response.output_audio.delta",
        "response_id": response_id,
        "item_id": item_id,
        "output_index": 0,
        "content_index": 0,
        "delta": base64.b64encode(pcm).decode(),
    }


def tone(ms: int, value: int = 1000) -> bytes:
    return value.to_bytes(2, "little", signed=True) * (24 * ms)


def started(session: CallSession, *, interrupt: bool = True) -> None:
    session.start(0.0)
    session.on_server_event(
        {
            "type": "session.updated",
            "session": {
                "audio": {
                    "input": {"turn_detection": {"type": "server_vad", "interrupt_response": interrupt}}
                }
            },
        },
        0.0,
    )
    session.on_server_event({"type": "response.created", "response": {"id": "r1"}}, 0.01)
    session.take()


def test_start_configures_a_ga_session_and_asks_for_the_greeting() -> None:
    session = make_session(turn_detection="semantic_vad", voice="marin")
    session.start(0.0)
    update, create = sent(session)
    assert update["type"] == "session.update"
    config = update["session"]
    assert config["type"] == "realtime"
    assert config["audio"]["input"]["format"] == {"type": "audio/pcm", "rate": 24000}
    assert config["audio"]["output"] == {"format": {"type": "audio/pcm", "rate": 24000}, "voice": "marin"}
    assert config["audio"]["input"]["turn_detection"]["type"] == "semantic_vad"
    assert config["audio"]["input"]["transcription"]["model"] == "whisper-x"
    assert [t["name"] for t in config["tools"]] == ["end_call", "transfer_to_human"]
    assert config["instructions"] == "Be brief."
    assert create["type"] == "response.create"
    assert '"Hi Dana."' in create["response"]["instructions"]


def test_agent_audio_is_played_one_frame_per_tick_then_silence() -> None:
    session = make_session()
    started(session)
    session.on_server_event(delta("r1", "i1", tone(50)), 0.02)
    frames = [session.next_frame(0.1 + i * 0.02) for i in range(4)]
    assert frames[0] == tone(20) and frames[1] == tone(20)
    assert frames[2] == bytes(FRAME)  # the 10 ms remainder waits for more audio or the end of the stream
    session.on_server_event({"type": "response.output_audio.done", "response_id": "r1", "item_id": "i1"}, 0.2)
    assert session.metrics.first_audio_at == pytest.approx(0.1)


def test_the_remainder_of_a_stream_is_padded_when_its_audio_is_done() -> None:
    session = make_session()
    started(session)
    session.on_server_event(delta("r1", "i1", tone(50)), 0.02)
    session.on_server_event(
        {"type": "response.output_audio.done", "response_id": "r1", "item_id": "i1"}, 0.03
    )
    frames = [session.next_frame(0.1 + i * 0.02) for i in range(4)]
    assert frames[2] == tone(10) + bytes(480)
    assert frames[3] == bytes(FRAME)


@pytest.mark.parametrize("interrupt", [True, False])
def test_barge_in_drops_the_queue_truncates_at_what_was_played_and_ignores_late_deltas(
    interrupt: bool,
) -> None:
    session = make_session()
    started(session, interrupt=interrupt)
    session.on_server_event(delta("r1", "i1", tone(1000)), 0.05)
    for i in range(5):
        assert session.next_frame(0.1 + i * 0.02) == tone(20)
    session.on_server_event({"type": "input_audio_buffer.speech_started", "item_id": "u1"}, 0.2)
    events = sent(session)
    kinds = [e["type"] for e in events]
    assert ("response.cancel" in kinds) is (not interrupt)
    truncate = next(e for e in events if e["type"] == "conversation.item.truncate")
    assert truncate == {
        "type": "conversation.item.truncate",
        "item_id": "i1",
        "content_index": 0,
        "audio_end_ms": 100,
    }
    assert session.next_frame(0.22) == bytes(FRAME)  # the very next frame is silence
    session.on_server_event(delta("r1", "i1", tone(200)), 0.23)  # late delta of the interrupted response
    assert session.next_frame(0.24) == bytes(FRAME)
    assert session.metrics.barge_ins == 1


@pytest.mark.parametrize("interrupt", [True, False])
def test_an_agent_line_cut_short_before_its_transcript_is_kept_with_what_was_heard(interrupt: bool) -> None:
    session = make_session()
    started(session, interrupt=interrupt)
    session.on_server_event(delta("r1", "i1", tone(1000)), 0.05)
    for i in range(5):
        session.next_frame(0.1 + i * 0.02)
    session.on_server_event({"type": "input_audio_buffer.speech_started", "item_id": "u1"}, 0.2)
    # The transcript of the cancelled response comes after the barge-in: what the agent was saying (the
    # AI disclosure opens every call) stays in the record, marked with how much of it was heard.
    session.on_server_event(
        {
            "type": "response.output_audio_transcript.done",
            "response_id": "r1",
            "item_id": "i1",
            "transcript": "This is an AI assistant calling on behalf of Acme.",
        },
        0.25,
    )
    agent = [line for line in session.transcript if line["role"] == "agent"]
    assert [(line["text"], line.get("interrupted_at_ms")) for line in agent] == [
        ("This is an AI assistant calling on behalf of Acme.", 100)
    ]
    # A cancelled response nobody heard leaves no line.
    done = {"type": "response.output_audio_transcript.done", "response_id": "r1", "transcript": "x"}
    session.on_server_event({**done, "item_id": "i9"}, 0.3)
    assert len([line for line in session.transcript if line["role"] == "agent"]) == 1


def test_truncate_is_clamped_to_the_audio_received() -> None:
    session = make_session()
    started(session)
    session.on_server_event(delta("r1", "i1", tone(50)), 0.05)
    session.on_server_event(
        {"type": "response.output_audio.done", "response_id": "r1", "item_id": "i1"}, 0.05
    )
    for i in range(3):  # 60 ms of frames written, but only 50 ms of it was audio
        session.next_frame(0.1 + i * 0.02)
    session.on_server_event(delta("r1", "i1", tone(20)), 0.16)  # still speaking: more audio queued
    session.on_server_event({"type": "input_audio_buffer.speech_started"}, 0.17)
    truncate = next(e for e in sent(session) if e["type"] == "conversation.item.truncate")
    assert truncate["audio_end_ms"] == 50


def test_a_new_response_after_barge_in_is_played() -> None:
    session = make_session()
    started(session)
    session.on_server_event(delta("r1", "i1", tone(200)), 0.05)
    session.on_server_event({"type": "input_audio_buffer.speech_started"}, 0.1)
    session.on_server_event({"type": "response.done", "response": {"id": "r1", "status": "cancelled"}}, 0.11)
    session.on_server_event({"type": "input_audio_buffer.speech_stopped", "item_id": "u1"}, 0.5)
    session.on_server_event({"type": "response.created", "response": {"id": "r2"}}, 0.6)
    session.on_server_event(delta("r2", "i2", tone(40, 2000)), 0.6)
    assert session.next_frame(0.7) == tone(20, 2000)
    assert session.metrics.reply_latencies_ms == [pytest.approx(200.0)]


def test_tools_run_when_their_response_completes_and_never_when_cancelled() -> None:
    session = make_session()
    started(session)
    call = {
        "type": "response.function_call_arguments.done",
        "call_id": "call_1",
        "name": "transfer_to_human",
        "arguments": '{"reason": "asked"}',
    }
    session.on_server_event(call, 0.1)
    assert session.take()[1] == []
    session.on_server_event({"type": "response.done", "response": {"id": "r1", "status": "completed"}}, 0.2)
    _, actions = session.take()
    assert actions == [ToolCall(call_id="call_1", name="transfer_to_human", arguments={"reason": "asked"})]
    session.tool_result("call_1", {"ok": False, "reason": "busy"})
    output, create = sent(session)
    assert output["item"] == {
        "type": "function_call_output",
        "call_id": "call_1",
        "output": '{"ok": false, "reason": "busy"}',
    }
    assert create["type"] == "response.create"

    session.on_server_event({"type": "response.created", "response": {"id": "r2"}}, 0.3)
    session.on_server_event({**call, "call_id": "call_2"}, 0.31)
    session.on_server_event({"type": "response.done", "response": {"id": "r2", "status": "cancelled"}}, 0.32)
    assert session.take()[1] == []


def test_bad_tool_arguments_are_answered_with_an_error_output() -> None:
    session = make_session()
    started(session)
    session.on_server_event(
        {
            "type": "response.function_call_arguments.done",
            "call_id": "c9",
            "name": "end_call",
            "arguments": "{oops",
        },
        0.1,
    )
    session.on_server_event({"type": "response.done", "response": {"id": "r1", "status": "completed"}}, 0.2)
    events = sent(session)
    assert events[0]["item"]["type"] == "function_call_output"
    assert "not a JSON object" in events[0]["item"]["output"]
    assert events[1]["type"] == "response.create"


def test_response_create_waits_for_the_active_response() -> None:
    session = make_session()
    started(session)
    session.request_response(instructions="later")
    assert sent(session) == []
    session.on_server_event({"type": "response.done", "response": {"id": "r1", "status": "completed"}}, 0.2)
    assert sent(session) == [{"type": "response.create", "response": {"instructions": "later"}}]


@pytest.mark.parametrize("interrupt", [True, False])
def test_dtmf_cancels_the_active_response_and_answers_once_it_is_done(interrupt: bool) -> None:
    session = make_session()
    started(session, interrupt=interrupt)
    session.on_server_event(delta("r1", "i1", tone(500)), 0.05)
    for i in range(3):
        session.next_frame(0.06 + i * 0.02)
    session.dtmf("1", 0.12)
    # Cancelled whatever interrupt_response says: the server cancels by itself only on speech.
    assert sent(session) == [
        {"type": "response.cancel"},
        {"type": "conversation.item.truncate", "item_id": "i1", "content_index": 0, "audio_end_ms": 60},
    ]
    assert session.next_frame(0.14) == bytes(FRAME)  # playback stopped at once
    session.on_server_event(delta("r1", "i1", tone(100)), 0.15)  # late delta of the cancelled response
    assert session.next_frame(0.16) == bytes(FRAME)
    # No response.create while r1 is active (a real server answers it with an error).
    assert sent(session) == []
    session.on_server_event({"type": "response.done", "response": {"id": "r1", "status": "cancelled"}}, 0.2)
    item, create = sent(session)
    assert item["type"] == "conversation.item.create"
    assert item["item"]["content"][0]["text"] == "The caller pressed 1 on the keypad."
    assert create == {"type": "response.create"}
    assert session.transcript[-1]["text"] == "[pressed 1]"
    assert session.metrics.dtmf == 1 and session.metrics.barge_ins == 1


def test_dtmf_while_audio_is_still_queued_truncates_and_answers_at_once() -> None:
    session = make_session()
    started(session)
    session.on_server_event(delta("r1", "i1", tone(200)), 0.05)
    session.on_server_event({"type": "response.output_audio.done", "response_id": "r1"}, 0.05)
    session.on_server_event({"type": "response.done", "response": {"id": "r1", "status": "completed"}}, 0.06)
    session.take()
    session.next_frame(0.1)
    session.dtmf("#", 0.12)
    kinds = [e["type"] for e in sent(session)]
    assert kinds == ["conversation.item.truncate", "conversation.item.create", "response.create"]
    assert session.next_frame(0.14) == bytes(FRAME)


def test_dtmf_truncates_the_item_being_generated_even_when_nothing_is_queued() -> None:
    session = make_session()
    started(session)
    session.on_server_event(delta("r1", "i1", tone(40)), 0.05)
    for i in range(3):  # the model is slower than the line: 40 ms played, then an underrun
        session.next_frame(0.06 + i * 0.02)
    session.dtmf("5", 0.12)
    events = sent(session)
    assert [e["type"] for e in events] == ["response.cancel", "conversation.item.truncate"]
    assert events[1]["item_id"] == "i1" and events[1]["audio_end_ms"] == 40


def test_dtmf_before_the_response_is_created_cancels_the_one_created_next() -> None:
    session = make_session()
    started(session)
    session.on_server_event({"type": "response.done", "response": {"id": "r1", "status": "completed"}}, 0.1)
    session.request_response(instructions="Ask again.")
    session.take()  # response.create went out; response.created has not come back yet
    session.dtmf("2", 0.12)
    assert sent(session) == [{"type": "response.cancel"}]
    session.on_server_event({"type": "response.created", "response": {"id": "r2"}}, 0.13)
    session.on_server_event(delta("r2", "i2", tone(100)), 0.14)
    assert session.next_frame(0.15) == bytes(FRAME)  # the cancelled response is never heard
    session.on_server_event({"type": "response.done", "response": {"id": "r2", "status": "cancelled"}}, 0.16)
    assert [e["type"] for e in sent(session)] == ["conversation.item.create", "response.create"]


def test_two_keys_during_one_response_cancel_once_and_get_one_reply() -> None:
    session = make_session()
    started(session)
    session.on_server_event(delta("r1", "i1", tone(500)), 0.05)
    session.next_frame(0.06)
    session.dtmf("1", 0.1)
    session.dtmf("2", 0.2)
    assert [e["type"] for e in sent(session)] == ["response.cancel", "conversation.item.truncate"]
    session.on_server_event({"type": "response.done", "response": {"id": "r1", "status": "cancelled"}}, 0.3)
    events = sent(session)
    assert [e["type"] for e in events] == [
        "conversation.item.create",
        "conversation.item.create",
        "response.create",
    ]
    assert [e["item"]["content"][0]["text"] for e in events[:2]] == [
        "The caller pressed 1 on the keypad.",
        "The caller pressed 2 on the keypad.",
    ]
    assert session.metrics.barge_ins == 1


def test_a_refused_session_update_is_fatal_and_silences_the_agent() -> None:
    session = make_session()
    session.start(0.0)
    update, _create = sent(session)
    session.on_server_event(
        {
            "type": "error",
            "error": {"code": "session_update_failed", "message": "no", "event_id": update["event_id"]},
        },
        0.01,
    )
    _, actions = session.take()
    assert actions == [RealtimeError(message="no", code="session_update_failed", fatal=True)]
    session.on_server_event({"type": "response.created", "response": {"id": "r1"}}, 0.02)
    session.on_server_event(delta("r1", "i1", tone(100)), 0.03)
    assert session.next_frame(0.04) == bytes(FRAME)  # the unconfigured agent is never heard
    assert session.metrics.as_dict(0.05)["agent_spoke"] is False


def test_agent_spoke_once_the_models_audio_is_played() -> None:
    session = make_session()
    started(session)
    assert session.metrics.as_dict(0.0)["agent_spoke"] is False
    session.on_server_event(delta("r1", "i1", bytes(FRAME) + tone(20)), 0.05)
    session.next_frame(0.06)  # the model's own silence: not yet heard
    assert not session.agent_spoke
    session.next_frame(0.08)
    metrics = session.metrics.as_dict(0.1)
    assert metrics["agent_spoke"] is True and metrics["answer_to_first_audio_ms"] == 80.0


def test_end_call_hangs_up_only_after_the_goodbye_is_played() -> None:
    session = make_session()
    started(session)
    session.on_server_event(delta("r1", "i1", tone(60)), 0.05)
    session.on_server_event({"type": "response.output_audio.done", "response_id": "r1"}, 0.05)
    session.on_server_event({"type": "response.done", "response": {"id": "r1", "status": "completed"}}, 0.06)
    session.hang_up_after_drain("agent_end_call", 0.06)
    session.take()
    t = 0.1
    for _ in range(3):
        session.tick(t)
        assert not any(isinstance(a, Hangup) for a in session.take()[1])
        session.next_frame(t)
        t += 0.02
    session.tick(t)
    assert session.take()[1] == [Hangup("agent_end_call")]


def test_a_silent_caller_is_prompted_once_then_told_goodbye() -> None:
    session = make_session(silence_prompt_s=5.0, silence_end_s=12.0)
    started(session)
    session.on_server_event({"type": "response.done", "response": {"id": "r1", "status": "completed"}}, 1.0)
    session.take()
    session.tick(4.0)
    assert sent(session) == []
    session.tick(6.1)
    prompt = sent(session)
    assert prompt[0]["type"] == "response.create" and "still there" in prompt[0]["response"]["instructions"]
    session.on_server_event({"type": "response.created", "response": {"id": "r2"}}, 6.2)
    session.on_server_event({"type": "response.done", "response": {"id": "r2", "status": "completed"}}, 7.0)
    session.tick(12.5)
    goodbye = sent(session)
    assert "goodbye" in goodbye[-1]["response"]["instructions"]
    session.on_server_event({"type": "response.created", "response": {"id": "r3"}}, 12.6)
    session.on_server_event({"type": "response.done", "response": {"id": "r3", "status": "completed"}}, 13.0)
    session.tick(13.1)
    assert Hangup("caller_silent") in session.take()[1]


def test_the_maximum_call_duration_ends_the_call() -> None:
    session = make_session(max_call_s=30.0)
    started(session)
    session.on_server_event({"type": "response.done", "response": {"id": "r1", "status": "completed"}}, 1.0)
    session.on_server_event({"type": "input_audio_buffer.speech_stopped"}, 29.0)
    session.take()
    session.tick(30.0)
    assert "time limit" in sent(session)[-1]["response"]["instructions"]
    session.tick(30.0 + 16.0)  # the goodbye never came: the cap still hangs up
    assert Hangup("max_duration") in session.take()[1]


def test_input_gaps_are_filled_with_silence() -> None:
    session = make_session()
    started(session)
    assert session.caller_audio(tone(20), 0.02) is not None
    assert session.input_gap_fill(0.05) is None
    fill = json.loads(session.input_gap_fill(0.5) or "{}")
    assert fill["type"] == "input_audio_buffer.append"
    assert len(base64.b64decode(fill["audio"])) == 480 * 48  # 500 ms since start − 20 ms sent, whole frames
    assert session.input_gap_fill(0.52) is None


def test_caller_audio_becomes_append_events() -> None:
    session = make_session()
    assert session.caller_audio(tone(20), 0.0) is None  # not connected yet
    started(session)
    message = json.loads(session.caller_audio(tone(20), 0.02) or "{}")
    assert message == {"type": "input_audio_buffer.append", "audio": base64.b64encode(tone(20)).decode()}
    assert session.metrics.frames_in == 2


def test_reseed_retells_the_conversation_as_text() -> None:
    session = make_session()
    started(session)
    session.on_server_event(
        {
            "type": "response.output_audio_transcript.done",
            "response_id": "r1",
            "item_id": "i1",
            "transcript": "Hi Dana.",
        },
        0.5,
    )
    session.on_server_event({"type": "input_audio_buffer.speech_stopped", "item_id": "u1"}, 1.0)
    session.on_server_event(
        {
            "type": "conversation.item.input_audio_transcription.completed",
            "item_id": "u1",
            "transcript": "Who's this?",
        },
        1.2,
    )
    session.disconnected()
    session.take()
    session.reseed(2.0)
    update, seed, create = sent(session)
    assert update["type"] == "session.update"
    text = seed["item"]["content"][0]["text"]
    assert seed["item"]["role"] == "system"
    assert "agent: Hi Dana." in text and "caller: Who's this?" in text
    assert create["type"] == "response.create"
    assert session.metrics.realtime_reconnects == 1


def test_errors_are_surfaced_except_a_harmless_cancel() -> None:
    session = make_session()
    started(session)
    session.on_server_event(
        {"type": "error", "error": {"code": "response_cancel_not_active", "message": "x"}}, 0.1
    )
    assert session.take()[1] == []
    session.on_server_event({"type": "error", "error": {"code": "invalid_value", "message": "bad"}}, 0.1)
    assert session.take()[1] == [RealtimeError(message="bad", code="invalid_value")]
    assert session.metrics.realtime_errors == 1


def test_playout_counts_played_and_received_per_item() -> None:
    playout = Playout()
    playout.add(item_id="a", response_id="r", pcm=tone(30))
    playout.add(item_id="b", response_id="r2", pcm=tone(20))  # a new item pads the previous remainder
    assert playout.queued_frames == 3
    assert playout.next_frame() is not None
    assert playout.played_ms("a") == 20
    playing = playout.clear()
    assert playing is not None and playing.item_id == "a"
    assert playout.idle and playout.played_ms("a") == 20 and playout.played_ms("b") == 0
