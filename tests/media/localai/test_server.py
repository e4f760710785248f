"""The stand-in over real WebSockets: handshake rules, pacing, barge-in, tools, errors, drops, agent mode."""

from __future__ import annotations

import asyncio
import base64
import json
import struct
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from media.localai import RealtimeStandIn
from media.localai.policy import AGENT_TOOL_REPLIES, MENU_SENTENCE, TEST_SENTENCE
from media.localai.vad import chunk_rms

from .conftest import TOOLS, Client, open_client, silence_pcm, tone_pcm, wait_until


async def test_session_lifecycle_and_records(server: RealtimeStandIn, client: Client) -> None:
    updated = await client.update(
        instructions="You are a test.",
        tools=TOOLS,
        audio={
            "input": {"turn_detection": {"type": "semantic_vad", "eagerness": "high"}},
            "output": {"voice": "marin"},
        },
    )
    assert updated["session"]["audio"]["input"]["turn_detection"]["type"] == "semantic_vad"
    [record] = server.connections
    assert record.model == "gpt-realtime" and record.live
    assert record.config["audio"]["output"]["voice"] == "marin"
    assert record.received["session.update"] == 1 and record.sent["session.created"] == 1
    assert server.connection_count == 1
    await client.ws.close()
    await wait_until(lambda: not record.live)
    assert record.close_code == 1000 and server.live == []


async def test_audio_arrives_faster_than_real_time(server: RealtimeStandIn, client: Client) -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    await client.send("response.create")
    events = await client.until("response.done", timeout=3)
    elapsed = loop.time() - started
    deltas = [e for e in events if e["type"] == "response.output_audio.delta"]
    pcm = b"".join(base64.b64decode(d["delta"]) for d in deltas)
    assert len(pcm) == 2000 * 48  # 2 s of 24 kHz pcm16 (the default reply)
    assert 0.15 <= elapsed < 1.0  # 10× real time: ~0.2 s
    assert chunk_rms(pcm[:960]) > 5000  # the tone, loud and clear
    assert {d["response_id"] for d in deltas} == {events[0]["response"]["id"]}
    assert [e["type"] for e in events[:2]] == ["response.created", "rate_limits.updated"]
    assert events[-1]["response"]["status"] == "completed"
    assert (
        next(e for e in events if e["type"] == "response.output_audio_transcript.done")["transcript"]
        == TEST_SENTENCE
    )


async def test_vad_on_tone_versus_silence(client: Client) -> None:
    await client.append(silence_pcm(300))
    assert await client.quiet(0.05) == []  # no ack for append, no speech
    await client.append(tone_pcm(400))
    started = await client.expect("input_audio_buffer.speech_started")
    assert started["audio_start_ms"] == 300
    await client.append(silence_pcm(520))
    stopped = await client.expect("input_audio_buffer.speech_stopped")
    assert stopped["audio_end_ms"] == 700 and stopped["item_id"] == started["item_id"]
    assert (await client.expect("input_audio_buffer.committed"))["item_id"] == started["item_id"]
    added = await client.expect("conversation.item.added")
    assert added["item"]["role"] == "user" and added["item"]["content"][0]["type"] == "input_audio"
    await client.expect("conversation.item.done")
    await client.expect("response.created")  # create_response is on by default


async def test_barge_in_cancels_and_no_more_deltas_follow(server: RealtimeStandIn, client: Client) -> None:
    await client.send("response.create")
    events = await client.until("response.output_audio.delta")
    response_id = events[0]["response"]["id"]
    item_id = next(e for e in events if e["type"] == "response.output_item.added")["item"]["id"]
    await client.append(tone_pcm(100))
    events = await client.until("response.done")
    assert "input_audio_buffer.speech_started" in [e["type"] for e in events]
    done = events[-1]["response"]
    assert done["id"] == response_id and done["status"] == "cancelled"
    assert done["status_details"]["reason"] == "turn_detected"
    later = await client.quiet(0.3)  # the rest of the 2 s reply would have come within 0.2 s
    assert not [e for e in later if e.get("response_id") == response_id]
    [cancel] = server.connections[0].cancellations
    assert cancel["reason"] == "turn_detected" and cancel["item_id"] == item_id


async def test_truncate_ok_and_already_shorter(server: RealtimeStandIn, client: Client) -> None:
    await client.send("response.create")
    events = await client.until("response.output_audio.delta")
    item_id = events[-1]["item_id"]
    await client.send("response.cancel")
    events = await client.until("response.done")
    assert events[-1]["response"]["status_details"]["reason"] == "client_cancelled"
    deltas = 1 + sum(1 for e in events if e["type"] == "response.output_audio.delta")
    sent_ms = deltas * 100
    await client.send(
        "conversation.item.truncate",
        item_id=item_id,
        content_index=0,
        audio_end_ms=sent_ms + 40,
        event_id="t1",
    )
    error = (await client.expect("error"))["error"]
    assert error["message"] == f"Audio content of {sent_ms} ms is already shorter than {sent_ms + 40} ms"
    assert error["param"] == "audio_end_ms" and error["event_id"] == "t1"
    await client.send("conversation.item.truncate", item_id=item_id, content_index=0, audio_end_ms=60)
    truncated = await client.expect("conversation.item.truncated")
    assert (truncated["item_id"], truncated["content_index"], truncated["audio_end_ms"]) == (item_id, 0, 60)
    record = server.connections[0]
    assert [(t["item_id"], t["audio_end_ms"]) for t in record.truncations] == [(item_id, 60)]
    assert record.received_order == [
        "response.create",
        "response.cancel",
        "conversation.item.truncate",
        "conversation.item.truncate",
    ]


async def test_response_cancel_without_a_response_is_harmless(client: Client) -> None:
    await client.send("response.cancel")
    assert (await client.expect("error"))["error"]["code"] == "response_cancel_not_active"
    await client.send("response.create")
    await client.until("response.done")


async def test_second_response_create_is_an_error(client: Client) -> None:
    await client.send("response.create")
    await client.send("response.create", event_id="again")
    events = await client.until("error")
    assert events[-1]["error"]["code"] == "conversation_already_has_active_response"
    assert events[-1]["error"]["event_id"] == "again"
    done = await client.until("response.done")
    assert done[-1]["response"]["status"] == "completed"


async def test_dtmf_tool_call_round_trip(server: RealtimeStandIn, client: Client) -> None:
    await client.update(tools=TOOLS)
    await client.send(
        "conversation.item.create",
        item={
            "type": "message",
            "role": "user",
            "content": [{"type": "input_text", "text": "The caller pressed 1"}],
        },
    )
    await client.expect("conversation.item.added")
    await client.expect("conversation.item.done")
    assert await client.quiet(0.05) == []  # an item alone does not start a response
    await client.send("response.create")
    events = await client.until("response.done")
    call = next(e for e in events if e["type"] == "response.function_call_arguments.done")
    assert call["name"] == "transfer_to_human"
    assert json.loads(call["arguments"]) == {"reason": "caller asked for a person"}
    assert "response.output_audio.delta" not in [e["type"] for e in events]
    await client.send(
        "conversation.item.create",
        item={
            "type": "function_call_output",
            "call_id": call["call_id"],
            "output": '{"status": "transferring"}',
        },
    )
    await client.until("conversation.item.done")
    await client.send("response.create")
    events = await client.until("response.done")
    assert any(e["type"] == "response.output_audio.delta" for e in events)
    assert server.connections[0].function_calls[0]["name"] == "transfer_to_human"


async def test_invalid_json_and_unknown_events_keep_the_connection(
    server: RealtimeStandIn, client: Client
) -> None:
    await client.send_raw("this is not json")
    error = await client.expect("error")
    assert error["error"]["type"] == "invalid_request_error"
    await client.send("session.frobnicate", event_id="evt_42")
    error = await client.expect("error")
    assert error["error"]["event_id"] == "evt_42" and error["error"]["type"] == "invalid_request_error"
    await client.send("session.update", session={"instructions": "no type"})
    assert (await client.expect("error"))["error"]["param"] == "session.type"
    await client.update(instructions="still here")
    assert server.connections[0].received["session.frobnicate"] == 1


async def test_api_key_is_required_when_configured() -> None:
    async with RealtimeStandIn(api_key="sk-test") as server:
        with pytest.raises(InvalidStatus) as refused:
            await connect(f"{server.url}?model=gpt-realtime", open_timeout=2)
        assert refused.value.response.status_code == 401
        with pytest.raises(InvalidStatus):
            await connect(
                f"{server.url}?model=gpt-realtime",
                additional_headers={"Authorization": "Bearer wrong"},
                open_timeout=2,
            )
        client = await open_client(server, additional_headers={"Authorization": "Bearer sk-test"})
        await client.expect("session.created")
        await client.ws.close()
        assert server.connection_count == 1


async def test_bad_path_or_missing_model_is_refused(server: RealtimeStandIn) -> None:
    base = server.url.removesuffix("/v1/realtime")
    with pytest.raises(InvalidStatus) as missing:
        await connect(f"{base}/v1/other?model=x", open_timeout=2)
    assert missing.value.response.status_code == 404
    with pytest.raises(InvalidStatus) as no_model:
        await connect(server.url, open_timeout=2)
    assert no_model.value.response.status_code == 400


async def test_beta_clients_get_an_error_and_are_closed(server: RealtimeStandIn) -> None:
    client = await open_client(server, additional_headers={"OpenAI-Beta": "realtime=v1"})
    error = await client.expect("error")
    assert error["error"]["type"] == "invalid_request_error"
    assert "OpenAI-Beta" in error["error"]["message"] and "GA" in error["error"]["message"]
    with pytest.raises(ConnectionClosed):
        await client.recv()
    assert server.connections[0].rejected == "openai-beta" and server.connection_count == 0


async def test_drop_all_closes_live_connections_with_1011(server: RealtimeStandIn) -> None:
    clients = [await open_client(server) for _ in range(3)]
    for c in clients:
        await c.expect("session.created")
    await clients[0].send("response.create")
    await clients[0].until("response.output_audio.delta")
    assert await server.drop_all() == 3
    for c in clients:
        with pytest.raises(ConnectionClosed):
            while True:
                await c.recv()
        assert c.ws.close_code == 1011
    await wait_until(lambda: server.live == [])
    assert [r.close_code for r in server.connections] == [1011, 1011, 1011]
    again = await open_client(server)  # the server itself still serves: a client can reconnect
    await again.expect("session.created")
    await again.ws.close()


async def test_drop_after_s() -> None:
    async with RealtimeStandIn(drop_after_s=0.1) as server:
        client = await open_client(server)
        await client.expect("session.created")
        with pytest.raises(ConnectionClosed):
            await client.recv(timeout=2)
        assert client.ws.close_code == 1011


async def test_many_connections_at_once(server: RealtimeStandIn) -> None:
    clients = [await open_client(server) for _ in range(20)]
    for c in clients:
        await c.expect("session.created")
        await c.send("response.create")
    results = await asyncio.gather(*(c.until("response.done", timeout=5) for c in clients))
    for events in results:
        assert sum(1 for e in events if e["type"] == "response.output_audio.delta") == 20
    assert server.connection_count == 20


# ------------------------------------------------------------------------------------------- agent mode


def test_agent_voice_selection(monkeypatch: pytest.MonkeyPatch) -> None:
    from media.localai import server as server_module
    from media.localai.voices import EspeakVoice, PatternVoice, ToneVoice

    assert isinstance(RealtimeStandIn(mode="test").voice, ToneVoice)
    assert isinstance(RealtimeStandIn(mode="agent", speech="tones").voice, PatternVoice)
    monkeypatch.setattr(server_module, "find_espeak", lambda: "espeak-ng-stub")
    assert isinstance(RealtimeStandIn(mode="agent").voice, EspeakVoice)
    monkeypatch.setattr(server_module, "find_espeak", lambda: None)
    assert isinstance(RealtimeStandIn(mode="agent").voice, PatternVoice)  # no espeak: tones
    with pytest.raises(ValueError, match="espeak"):
        RealtimeStandIn(mode="agent", speech="espeak")
    with pytest.raises(ValueError):
        RealtimeStandIn(mode="nope")  # type: ignore[arg-type]


@pytest.fixture
async def agent() -> AsyncIterator[RealtimeStandIn]:
    async with RealtimeStandIn(mode="agent", speech="tones", speed=0) as server:
        yield server


async def test_agent_greets_with_the_quoted_sentence(agent: RealtimeStandIn) -> None:
    client = await open_client(agent)
    await client.expect("session.created")
    await client.update(tools=TOOLS)
    await client.send(
        "response.create",
        response={"instructions": 'Greet the caller. Say exactly: "Hi Dana, this is Ava from Acme."'},
    )
    events = await client.until("response.done")
    transcript = "".join(e["delta"] for e in events if e["type"] == "response.output_audio_transcript.delta")
    assert transcript == "Hi Dana, this is Ava from Acme."
    pcm = b"".join(base64.b64decode(e["delta"]) for e in events if e["type"] == "response.output_audio.delta")
    assert len(pcm) / 48 == pytest.approx(
        60 * len(transcript), abs=1
    )  # the tone pattern: 60 ms per character
    assert chunk_rms(pcm[:960]) > 500


async def test_agent_answers_a_caller_turn_with_the_menu(agent: RealtimeStandIn) -> None:
    client = await open_client(agent)
    await client.expect("session.created")
    await client.append(tone_pcm(300) + silence_pcm(520))
    events = await client.until("response.done")
    assert (
        next(e for e in events if e["type"] == "response.output_audio_transcript.done")["transcript"]
        == MENU_SENTENCE
    )


@pytest.mark.parametrize(
    ("digit", "tool"), [("1", "transfer_to_human"), ("9", "add_to_dnc"), ("#", "end_call")]
)
async def test_agent_dtmf_drives_the_tools(agent: RealtimeStandIn, digit: str, tool: str) -> None:
    client = await open_client(agent)
    await client.expect("session.created")
    await client.update(tools=TOOLS)
    await client.send(
        "conversation.item.create",
        item={
            "type": "message",
            "role": "user",
            "content": [{"type": "input_text", "text": f"The caller pressed {digit}"}],
        },
    )
    await client.send("response.create")
    events = await client.until("response.done")
    call = next(e for e in events if e["type"] == "response.function_call_arguments.done")
    assert call["name"] == tool
    await client.send(
        "conversation.item.create",
        item={"type": "function_call_output", "call_id": call["call_id"], "output": "{}"},
    )
    await client.send("response.create")
    events = await client.until("response.done")
    said = next(e for e in events if e["type"] == "response.output_audio_transcript.done")["transcript"]
    assert said == AGENT_TOOL_REPLIES[tool]


FAKE_ESPEAK = """#!{python}
import struct, sys, time
time.sleep(0.1)  # synthesis takes a while: the event loop must not wait for it
rate, n = 16000, 16000 // 2
pcm = struct.pack("<%dh" % n, *([4000, -4000] * (n // 2)))
fmt = struct.pack("<HHIIHH", 1, 1, rate, rate * 2, 2, 16)
head = b"RIFF" + struct.pack("<I", 36 + 2 * n) + b"WAVE" + b"fmt " + struct.pack("<I", 16) + fmt
sys.stdout.buffer.write(head + b"data" + struct.pack("<I", 2 * n) + pcm)
"""


async def test_agent_speaks_through_espeak_off_the_event_loop(tmp_path: Path) -> None:
    import stat
    import sys

    exe = tmp_path / "espeak-ng"
    exe.write_text(FAKE_ESPEAK.format(python=sys.executable))
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    async with RealtimeStandIn(mode="agent", speech="espeak", espeak_path=str(exe), speed=0) as server:
        client = await open_client(server)
        await client.expect("session.created")
        await client.send("response.create", response={"instructions": 'Say "Hello from espeak."'})
        first = await client.until("response.content_part.added")
        assert first[0]["type"] == "response.created"
        # While espeak runs, the session still answers other events.
        await client.send("response.cancel", event_id="during")
        events = await client.until("response.done")
        assert events[-1]["response"]["status"] == "cancelled"
        assert not any(e["type"] == "response.output_audio.delta" for e in events)
        await client.send("response.create", response={"instructions": 'Say "Hello from espeak."'})
        events = await client.until("response.done", timeout=5)
        pcm = b"".join(
            base64.b64decode(e["delta"]) for e in events if e["type"] == "response.output_audio.delta"
        )
        assert len(pcm) == 24000  # 0.5 s at 16 kHz, resampled to 24 kHz
        assert struct.unpack_from("<h", pcm, 0)[0] == 4000
        assert events[-1]["response"]["status"] == "completed"
