"""The protocol core without sockets: events in, events out, time passed explicitly."""

from __future__ import annotations

import json
from typing import Any

import pytest

from media.localai.policy import TEST_SENTENCE, Policy, Rule
from media.localai.session import Session, SessionSettings
from media.localai.voices import ToneVoice

from .conftest import TOOLS, b64, silence_pcm, tone_pcm

DELTA_MS = 100
REPLY_MS = 1000  # 10 deltas


def make(speed: float = 10.0, **settings: Any) -> Session:
    return Session(
        policy=Policy(),
        voice=ToneVoice(reply_ms=REPLY_MS, delta_ms=DELTA_MS),
        settings=SessionSettings(delta_ms=DELTA_MS, speed=speed, **settings),
    )


def types(events: list[dict[str, Any]]) -> list[str]:
    return [e["type"] for e in events]


def feed(session: Session, pcm: bytes, now: float = 0.0) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for i in range(0, len(pcm), 960):
        out += session.handle({"type": "input_audio_buffer.append", "audio": b64(pcm[i : i + 960])}, now)
    return out


def run_response(session: Session, start: float = 0.0) -> list[dict[str, Any]]:
    """Tick the response in progress to its end, stepping the clock to each deadline."""
    out: list[dict[str, Any]] = []
    while (deadline := session.next_deadline) is not None:
        assert deadline >= start
        out += session.tick(deadline)
    return out


def test_session_created_carries_ga_defaults() -> None:
    [created] = make().start()
    assert created["type"] == "session.created" and created["event_id"]
    s = created["session"]
    assert s["type"] == "realtime"
    assert s["audio"]["input"]["format"] == {"type": "audio/pcm", "rate": 24000}
    assert s["audio"]["output"]["format"] == {"type": "audio/pcm", "rate": 24000}
    assert s["audio"]["output"]["voice"] == "alloy"
    td = s["audio"]["input"]["turn_detection"]
    assert td == {
        "type": "server_vad",
        "threshold": 0.5,
        "prefix_padding_ms": 300,
        "silence_duration_ms": 500,
        "idle_timeout_ms": None,
        "create_response": True,
        "interrupt_response": True,
    }


def test_session_update_merges_only_given_fields() -> None:
    session = make()
    [updated] = session.handle(
        {
            "type": "session.update",
            "session": {
                "type": "realtime",
                "instructions": "Be brief.",
                "audio": {
                    "output": {"voice": "marin"},
                    "input": {"turn_detection": {"silence_duration_ms": 800}},
                },
            },
        },
        0.0,
    )
    assert updated["type"] == "session.updated"
    s = updated["session"]
    assert s["instructions"] == "Be brief."
    assert s["audio"]["output"]["voice"] == "marin"
    assert s["audio"]["output"]["format"] == {"type": "audio/pcm", "rate": 24000}
    td = s["audio"]["input"]["turn_detection"]
    assert td["silence_duration_ms"] == 800 and td["threshold"] == 0.5 and td["create_response"] is True
    assert session.config == s


@pytest.mark.parametrize(
    ("update", "param"),
    [
        ({"instructions": "x"}, "session.type"),
        ({"type": "transcription"}, "session.type"),
        ({"type": "realtime", "voice": "alloy"}, "session.voice"),  # beta-shaped field
        ({"type": "realtime", "audio": {"input": {"turn_detection": {"type": "loud"}}}}, None),
        ({"type": "realtime", "audio": {"output": {"format": {"type": "audio/pcm", "rate": 16000}}}}, None),
    ],
)
def test_session_update_rejects_bad_sessions(update: dict[str, Any], param: str | None) -> None:
    session = make()
    before = json.dumps(session.config, sort_keys=True)
    [error] = session.handle({"type": "session.update", "event_id": "evt_1", "session": update}, 0.0)
    assert error["type"] == "error"
    assert error["error"]["type"] == "invalid_request_error"
    assert error["error"]["event_id"] == "evt_1"
    if param:
        assert error["error"]["param"] == param
    assert json.dumps(session.config, sort_keys=True) == before  # nothing applied


def test_semantic_vad_is_accepted_and_waits_longer() -> None:
    session = make()
    [updated] = session.handle(
        {
            "type": "session.update",
            "session": {"type": "realtime", "audio": {"input": {"turn_detection": {"type": "semantic_vad"}}}},
        },
        0.0,
    )
    assert updated["session"]["audio"]["input"]["turn_detection"]["type"] == "semantic_vad"
    feed(session, tone_pcm(300))
    assert types(feed(session, silence_pcm(600))) == []  # 500 ms would have ended a server_vad turn
    assert "input_audio_buffer.speech_stopped" in types(feed(session, silence_pcm(200)))


def test_vad_turn_commits_the_user_item_and_responds() -> None:
    session = make()
    assert feed(session, silence_pcm(400)) == []  # silence: nothing, and no ack for append
    started = feed(session, tone_pcm(600))
    assert types(started) == ["input_audio_buffer.speech_started"]
    assert started[0]["audio_start_ms"] == 400  # the input buffer's own timeline
    out = feed(session, silence_pcm(600))
    assert types(out)[:5] == [
        "input_audio_buffer.speech_stopped",
        "input_audio_buffer.committed",
        "conversation.item.added",
        "conversation.item.done",
        "response.created",
    ]
    assert out[0]["audio_end_ms"] == 1000
    assert out[0]["item_id"] == started[0]["item_id"] == out[1]["item_id"]
    user = out[2]["item"]
    assert user["role"] == "user" and user["content"][0]["type"] == "input_audio"
    assert session.response is not None


def test_short_blips_and_quiet_audio_are_not_speech() -> None:
    session = make()
    assert feed(session, tone_pcm(40)) == []
    assert feed(session, silence_pcm(100)) == []
    assert feed(session, tone_pcm(1000, amplitude=400)) == []  # RMS ≈ 280 < 500


def test_no_response_when_create_response_is_off() -> None:
    session = make()
    session.handle(
        {
            "type": "session.update",
            "session": {
                "type": "realtime",
                "audio": {"input": {"turn_detection": {"create_response": False}}},
            },
        },
        0.0,
    )
    feed(session, tone_pcm(300))
    out = feed(session, silence_pcm(600))
    assert "input_audio_buffer.committed" in types(out)
    assert "response.created" not in types(out)


def test_response_streams_audio_faster_than_real_time() -> None:
    session = make(speed=10.0)
    out = session.handle({"type": "response.create"}, 100.0)
    assert types(out)[:6] == [
        "response.created",
        "rate_limits.updated",
        "response.output_item.added",
        "conversation.item.added",
        "response.content_part.added",
        "response.output_audio.delta",
    ]
    assert session.tick(100.005) == []  # the next delta is due 10 ms later (100 ms of audio at 10×)
    assert session.next_deadline == pytest.approx(100.01)
    out += run_response(session, 100.0)
    deltas = [e for e in out if e["type"] == "response.output_audio.delta"]
    assert len(deltas) == REPLY_MS // DELTA_MS
    assert {(d["output_index"], d["content_index"]) for d in deltas} == {(0, 0)}
    transcript = "".join(e["delta"] for e in out if e["type"] == "response.output_audio_transcript.delta")
    assert transcript == TEST_SENTENCE
    assert types(out)[-6:] == [
        "response.output_audio.done",
        "response.output_audio_transcript.done",
        "response.content_part.done",
        "response.output_item.done",
        "conversation.item.done",
        "response.done",
    ]
    done = out[-1]["response"]
    assert done["status"] == "completed" and done["usage"]["output_tokens"] > 0
    assert done["output"][0]["content"][0] == {"type": "output_audio", "transcript": TEST_SENTENCE}
    assert session.response is None and session.next_deadline is None


def test_speed_zero_sends_everything_at_once() -> None:
    session = make(speed=0)
    out = session.handle({"type": "response.create"}, 0.0)
    assert types(out).count("response.output_audio.delta") == REPLY_MS // DELTA_MS
    assert out[-1]["type"] == "response.done"


def test_latency_delays_the_first_delta() -> None:
    session = make(latency_ms=300)
    out = session.handle({"type": "response.create"}, 0.0)
    assert "response.output_audio.delta" not in types(out)
    assert session.next_deadline == pytest.approx(0.3)


def test_second_response_create_is_refused_while_active() -> None:
    session = make()
    session.handle({"type": "response.create"}, 0.0)
    [error] = session.handle({"type": "response.create", "event_id": "e2"}, 0.0)
    assert error["error"]["code"] == "conversation_already_has_active_response"
    assert error["error"]["event_id"] == "e2"


def test_a_key_press_text_item_does_not_cancel_the_response_in_progress() -> None:
    # Like the real server: only speech it detected cancels by itself (interrupt_response); a client that
    # wants a key press to interrupt must send response.cancel, and wait for response.done to ask again.
    session = make()
    session.handle({"type": "response.create"}, 0.0)
    session.tick(0.03)
    pressed = {
        "type": "message",
        "role": "user",
        "content": [{"type": "input_text", "text": "The caller pressed 5 on the keypad."}],
    }
    out = session.handle({"type": "conversation.item.create", "item": pressed}, 0.04)
    assert types(out) == ["conversation.item.added", "conversation.item.done"]
    assert session.response is not None and session.cancellations == []
    [error] = session.handle({"type": "response.create", "event_id": "dtmf"}, 0.05)
    assert error["error"]["code"] == "conversation_already_has_active_response"
    done = session.handle({"type": "response.cancel"}, 0.06)
    assert done[-1]["response"]["status_details"]["reason"] == "client_cancelled"
    assert types(session.handle({"type": "response.create"}, 0.07))[0] == "response.created"


def test_barge_in_cancels_the_response_at_once() -> None:
    session = make()
    out = session.handle({"type": "response.create"}, 0.0)
    out += session.tick(0.03)  # 4 deltas out
    item_id = out[2]["item"]["id"]
    barge = feed(session, tone_pcm(100), now=0.035)
    assert types(barge) == [
        "input_audio_buffer.speech_started",
        "response.output_item.done",
        "conversation.item.done",
        "response.done",
    ]
    done = barge[-1]["response"]
    assert done["status"] == "cancelled"
    assert done["status_details"]["reason"] == "turn_detected"
    assert barge[1]["item"]["status"] == "incomplete"
    assert session.tick(10.0) == [] and session.next_deadline is None  # no delta of it follows
    assert session.cancellations == [
        {"response_id": done["id"], "item_id": item_id, "reason": "turn_detected", "sent_ms": 400}
    ]


def test_no_barge_in_when_interrupt_response_is_off() -> None:
    session = make()
    session.handle(
        {
            "type": "session.update",
            "session": {
                "type": "realtime",
                "audio": {"input": {"turn_detection": {"interrupt_response": False}}},
            },
        },
        0.0,
    )
    session.handle({"type": "response.create"}, 0.0)
    barge = feed(session, tone_pcm(100), now=0.0)
    assert types(barge) == ["input_audio_buffer.speech_started"]
    assert session.response is not None


def test_truncate_checks_the_audio_already_sent() -> None:
    session = make()
    out = session.handle({"type": "response.create"}, 0.0)
    out += session.tick(0.02)  # 300 ms sent
    item_id = out[2]["item"]["id"]
    session.handle({"type": "response.cancel"}, 0.02)
    [error] = session.handle(
        {"type": "conversation.item.truncate", "item_id": item_id, "content_index": 0, "audio_end_ms": 450},
        0.1,
    )
    assert error["error"]["message"] == "Audio content of 300 ms is already shorter than 450 ms"
    assert error["error"]["code"] == "invalid_value" and error["error"]["param"] == "audio_end_ms"
    [ok] = session.handle(
        {"type": "conversation.item.truncate", "item_id": item_id, "content_index": 0, "audio_end_ms": 300},
        0.1,
    )
    assert ok == {**ok, "type": "conversation.item.truncated", "item_id": item_id, "audio_end_ms": 300}
    assert session.truncations[0]["audio_end_ms"] == 300 and session.truncations[0]["sent_ms"] == 300
    [unknown] = session.handle(
        {"type": "conversation.item.truncate", "item_id": "nope", "audio_end_ms": 0}, 0.1
    )
    assert unknown["error"]["code"] == "item_not_found"


def test_response_cancel_with_and_without_a_response() -> None:
    session = make()
    [error] = session.handle({"type": "response.cancel", "event_id": "c1"}, 0.0)
    assert error["error"]["code"] == "response_cancel_not_active" and error["error"]["event_id"] == "c1"
    session.handle({"type": "response.create"}, 0.0)
    out = session.handle({"type": "response.cancel"}, 0.0)
    assert out[-1]["type"] == "response.done"
    assert out[-1]["response"]["status"] == "cancelled"
    assert out[-1]["response"]["status_details"]["reason"] == "client_cancelled"
    assert session.cancellations[0]["reason"] == "client_cancelled"


def say(session: Session, text: str) -> list[dict[str, Any]]:
    item = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}
    return session.handle({"type": "conversation.item.create", "item": item}, 0.0)


def declare_tools(session: Session) -> None:
    session.handle({"type": "session.update", "session": {"type": "realtime", "tools": TOOLS}}, 0.0)


@pytest.mark.parametrize(
    ("text", "tool", "arguments"),
    [
        ("The caller pressed 1", "transfer_to_human", {"reason": "caller asked for a person"}),
        ("The caller pressed 3", "set_disposition", {"disposition": "interested"}),
        ("The caller pressed 9", "add_to_dnc", {}),
        ("The caller pressed 5", "send_sms", {"text": "Here is the link we talked about."}),
        ("THE CALLER PRESSED #", "end_call", {"reason": "caller finished"}),
    ],
)
def test_function_call_rules(text: str, tool: str, arguments: dict[str, Any]) -> None:
    session = make()
    declare_tools(session)
    added = say(session, text)
    assert types(added) == ["conversation.item.added", "conversation.item.done"]  # no response by itself
    out = session.handle({"type": "response.create"}, 0.0)
    assert types(out) == [
        "response.created",
        "rate_limits.updated",
        "response.output_item.added",
        "conversation.item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "conversation.item.done",
        "response.done",
    ]
    done = out[6]
    assert done["name"] == tool and json.loads(done["arguments"]) == arguments
    assert out[4]["delta"] + out[5]["delta"] == done["arguments"]
    assert out[2]["item"]["type"] == "function_call" and out[2]["item"]["call_id"] == done["call_id"]
    assert out[-1]["response"]["output"][0]["arguments"] == done["arguments"]
    assert session.response is None


def test_schedule_callback_gives_tomorrow_ten_local_without_offset() -> None:
    session = make()
    declare_tools(session)
    say(session, "The caller pressed 2")
    out = session.handle({"type": "response.create"}, 0.0)
    args = json.loads(
        next(e for e in out if e["type"] == "response.function_call_arguments.done")["arguments"]
    )
    assert args["note"] == "caller asked"
    local_time = args["local_time"]
    assert len(local_time) == 16 and local_time.endswith("T10:00")  # YYYY-MM-DDTHH:MM, no offset


def test_undeclared_tools_are_never_called() -> None:
    session = make()  # no tools declared
    say(session, "The caller pressed 1")
    out = session.handle({"type": "response.create"}, 0.0)
    assert "response.function_call_arguments.done" not in types(out)
    assert "response.output_audio.delta" in types(out)


def test_function_call_round_trip_then_audio_reply() -> None:
    session = make()
    declare_tools(session)
    say(session, "The caller pressed 3")
    out = session.handle({"type": "response.create"}, 0.0)
    call_id = next(e for e in out if e["type"] == "response.function_call_arguments.done")["call_id"]
    added = session.handle(
        {
            "type": "conversation.item.create",
            "item": {"type": "function_call_output", "call_id": call_id, "output": '{"ok": true}'},
        },
        0.0,
    )
    assert added[0]["item"]["type"] == "function_call_output"
    out = session.handle({"type": "response.create"}, 0.0) + run_response(session)
    assert "response.output_audio.delta" in types(out)  # not another function call
    assert (
        next(e for e in out if e["type"] == "response.output_audio_transcript.done")["transcript"] == "Done."
    )


def test_custom_rules_replace_the_defaults() -> None:
    session = Session(
        policy=Policy((Rule("help me", "transfer_to_human", {"reason": "asked"}),)),
        voice=ToneVoice(reply_ms=REPLY_MS, delta_ms=DELTA_MS),
    )
    declare_tools(session)
    say(session, "The caller pressed 1")
    assert "response.function_call_arguments.done" not in types(
        session.handle({"type": "response.create"}, 0.0)
    )
    session.handle({"type": "response.cancel"}, 0.0)
    say(session, "please HELP me")
    out = session.handle({"type": "response.create"}, 0.0)
    assert json.loads(
        next(e for e in out if e["type"] == "response.function_call_arguments.done")["arguments"]
    ) == {"reason": "asked"}


def test_quoted_instructions_become_the_transcript() -> None:
    session = make()
    out = session.handle(
        {
            "type": "response.create",
            "response": {"instructions": 'Greet. Say exactly: "Hi Dana, this is Ava."'},
        },
        0.0,
    )
    out += run_response(session)
    assert next(e for e in out if e["type"] == "response.output_audio_transcript.done")["transcript"] == (
        "Hi Dana, this is Ava."
    )


def test_input_buffer_commit_and_clear() -> None:
    session = make()
    session.handle(
        {
            "type": "session.update",
            "session": {"type": "realtime", "audio": {"input": {"turn_detection": None}}},
        },
        0.0,
    )
    [error] = session.handle({"type": "input_audio_buffer.commit"}, 0.0)
    assert error["error"]["code"] == "input_audio_buffer_commit_empty"
    assert feed(session, tone_pcm(500)) == []  # no VAD in manual mode
    out = session.handle({"type": "input_audio_buffer.commit"}, 0.0)
    assert types(out) == ["input_audio_buffer.committed", "conversation.item.added", "conversation.item.done"]
    assert "response.created" not in types(out)
    feed(session, tone_pcm(200))
    assert types(session.handle({"type": "input_audio_buffer.clear"}, 0.0)) == ["input_audio_buffer.cleared"]
    [error] = session.handle({"type": "input_audio_buffer.commit"}, 0.0)
    assert error["type"] == "error"


def test_bad_events_answer_errors_and_keep_going() -> None:
    session = make()
    [bad_json] = session.receive("{nope", 0.0)
    assert bad_json["error"]["type"] == "invalid_request_error"
    [unknown] = session.receive(json.dumps({"type": "response.audio.delta", "event_id": "x9"}), 0.0)
    assert unknown["error"]["param"] == "type" and unknown["error"]["event_id"] == "x9"
    [bad_audio] = session.handle({"type": "input_audio_buffer.append", "audio": "***"}, 0.0)
    assert bad_audio["error"]["param"] == "audio"
    [bad_item] = session.handle(
        {
            "type": "conversation.item.create",
            "item": {
                "type": "message",
                "role": "assistant",
                "content": [{"type": "output_audio", "audio": "AAAA"}],
            },
        },
        0.0,
    )
    assert bad_item["error"]["param"] == "item.content[0].type"  # assistant audio cannot be injected
    assert session.received["<invalid json>"] == 1 and session.received["response.audio.delta"] == 1
    assert types(session.handle({"type": "response.create"}, 0.0))[0] == "response.created"


def test_voice_is_fixed_once_audio_was_sent() -> None:
    session = make(speed=0)
    session.handle({"type": "response.create"}, 0.0)
    [error] = session.handle(
        {"type": "session.update", "session": {"type": "realtime", "audio": {"output": {"voice": "cedar"}}}},
        0.0,
    )
    assert error["error"]["code"] == "cannot_update_voice"


def test_fail_session_update_setting() -> None:
    session = make(fail_session_update=True)
    [error] = session.handle({"type": "session.update", "session": {"type": "realtime"}}, 0.0)
    assert error["type"] == "error" and error["error"]["type"] == "server_error"


def test_text_only_responses() -> None:
    session = make()
    out = session.handle({"type": "response.create", "response": {"output_modalities": ["text"]}}, 0.0)
    assert "response.output_audio.delta" not in types(out)
    assert next(e for e in out if e["type"] == "response.output_text.done")["text"] == TEST_SENTENCE
    assert out[-1]["type"] == "response.done" and out[-1]["response"]["status"] == "completed"


def test_caller_transcription_placeholder_when_transcription_is_on() -> None:
    session = make()
    feed(session, tone_pcm(300))
    assert "conversation.item.input_audio_transcription.completed" not in types(
        feed(session, silence_pcm(600))
    )
    session.handle({"type": "response.cancel"}, 0.0)
    session.handle(
        {
            "type": "session.update",
            "session": {"type": "realtime", "audio": {"input": {"transcription": {"model": "whisper-1"}}}},
        },
        0.0,
    )
    feed(session, tone_pcm(300))
    out = feed(session, silence_pcm(600))
    [done] = [e for e in out if e["type"] == "conversation.item.input_audio_transcription.completed"]
    assert done["transcript"] == "[caller speech, 300 ms]"
    assert done["item_id"] == out[0]["item_id"]
