"""The media worker end to end in one process: real TCP AudioSocket legs, real Redis (briefs, call actions,
Celery messages), and the Realtime stand-in over real websockets."""

from __future__ import annotations

import asyncio
import socket
import statistics
import time
import uuid
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from media import call as media_call
from tests.media.conftest import VOICED_RMS, FakeAsterisk, MakeHarness, MediaHarness, rms, tone, wait_for
from wire.audiosocket import KIND_HANGUP, KIND_SLIN16, encode, encode_uuid


async def test_no_brief_gets_an_apology_and_a_clean_hangup(media: MakeHarness) -> None:
    h = await media()
    peer = await h.call(str(uuid.uuid4()))
    await asyncio.wait_for(peer.closed.wait(), 15)
    assert len(peer.voiced()) > 20, "the caller hears an apology (speech or the SIT tone), not dead air"
    assert peer.frames[-1].kind == KIND_HANGUP
    assert h.worker.reports[-1]["end_reason"] == "no_brief"
    assert h.tasks() == []  # nothing to report for a call the orchestrator did not brief


async def test_a_malformed_stream_closes_only_its_own_connection(media: MakeHarness) -> None:
    h = await media()
    good = await h.call(h.write_brief())
    bad = await FakeAsterisk.connect(h.worker.port)
    bad.send(encode(0x05, b"junk"))  # not a kind Asterisk sends, and no UUID first
    await asyncio.wait_for(bad.closed.wait(), 2)
    before = len(good.audio())
    await asyncio.sleep(0.3)
    assert len(good.audio()) - before >= 12, "the other call keeps its 50 frames/s"
    assert not good.closed.is_set()
    await good.close()


async def test_a_connection_without_uuid_is_closed_after_the_timeout(media: MakeHarness) -> None:
    h = await media(uuid_timeout_s=0.3)
    peer = await FakeAsterisk.connect(h.worker.port)
    started = time.monotonic()
    await asyncio.wait_for(peer.closed.wait(), 3)
    assert 0.25 <= time.monotonic() - started < 2.0
    assert peer.frames == []


async def test_frames_are_paced_from_right_after_the_uuid_and_the_greeting_is_heard(
    media: MakeHarness,
) -> None:
    h = await media()
    call_id = h.write_brief()
    peer = await h.call(call_id)
    await wait_for(lambda: len(peer.voiced()) >= 20, 5, "the greeting")
    await asyncio.sleep(0.5)
    audio = peer.audio()
    assert audio[0].payload == bytes(960), "silence from right after the UUID"
    gaps = [(b.at - a.at) * 1000 for a, b in zip(audio[5:], audio[6:], strict=False)]
    assert 18.0 <= statistics.median(gaps) <= 22.0
    assert all(len(f.payload) == 960 for f in audio)
    # One frame ahead of the beat, never a burst: frames received ≈ elapsed / 20 ms + 1.
    elapsed = audio[-1].at - audio[0].at
    assert abs(len(audio) - (elapsed / 0.02 + 1)) <= 3
    session = h.standin.connections[-1]
    assert session.config["type"] == "realtime"
    assert session.config["audio"]["input"]["format"] == {"type": "audio/pcm", "rate": 24000}
    assert {t["name"] for t in session.config["tools"]} >= {"end_call", "transfer_to_human"}
    await peer.close()
    await wait_for(
        lambda: bool(h.worker.reports) and h.worker.reports[-1]["call_id"] == call_id, 3, "the report"
    )
    metrics = h.worker.reports[-1]["metrics"]
    assert metrics["answer_to_first_audio_ms"] is not None and metrics["answer_to_first_audio_ms"] < 2000


async def test_barge_in_stops_the_agent_and_truncates_at_what_the_caller_heard(media: MakeHarness) -> None:
    h = await media(standin={"reply_ms": 4000})
    peer = await h.call(h.write_brief())
    await wait_for(lambda: len(peer.voiced()) >= 25, 5, "the agent speaking")
    speak_at = time.monotonic()
    speaking = asyncio.ensure_future(peer.speak(tone(600, amplitude=12000)))
    await wait_for(lambda: bool(h.standin.connections[-1].truncations), 3, "a truncate")
    heard_agent = [f for f in peer.voiced() if f.at >= speak_at and abs(_peak(f.payload)) != 12000]
    await speaking
    truncate = h.standin.connections[-1].truncations[0]
    agent_frames_heard = len([f for f in peer.voiced() if _peak(f.payload) < 9000])
    assert abs(truncate["audio_end_ms"] - agent_frames_heard * 20) <= 40, (truncate, agent_frames_heard)
    await asyncio.sleep(0.3)
    last_agent = max(f.at for f in peer.voiced())
    assert last_agent - speak_at < 0.5, "agent audio stopped soon after the caller started to speak"
    assert len(heard_agent) < 25
    await peer.close()
    await wait_for(lambda: bool(h.worker.reports), 3, "the report")
    assert h.worker.reports[-1]["metrics"]["barge_ins"] >= 1


def _more_tasks(h: MediaHarness, count: int) -> bool:
    return len(h.tasks()) > count


def _peak(pcm: bytes) -> int:
    return max(abs(int.from_bytes(pcm[i : i + 2], "little", signed=True)) for i in range(0, len(pcm), 2))


async def test_dtmf_end_call_says_goodbye_then_asks_the_stasis_app_to_hang_up(media: MakeHarness) -> None:
    h = await media()
    call_id = h.write_brief()
    peer = await h.call(call_id)
    await wait_for(lambda: len(peer.voiced()) >= 5, 5, "the greeting")
    peer.send_dtmf("#")
    await wait_for(lambda: bool(h.commands(call_id)), 8, "the hangup command")
    assert h.commands(call_id) == [{"action": "hangup", "call_id": call_id, "reason": "agent_end_call"}]
    await peer.close()  # the Stasis app hangs the caller up and deletes our leg
    await wait_for(lambda: any(n == "media.call_report" for n, _ in h.tasks()), 5, "the call report task")
    report = next(k for n, k in h.tasks() if n == "media.call_report")
    assert report["call_id"] == call_id and report["tenant_id"] == 7
    roles = [line["role"] for line in report["transcript"]]
    assert (
        "agent" in roles
        and {"role": "caller", "text": "[pressed #]"}.items()
        <= next(line for line in report["transcript"] if line["role"] == "caller").items()
    )
    assert report["metrics"]["dtmf"] == 1 and report["metrics"]["tool_calls"] == 1


async def test_transfer_that_fails_keeps_the_agent_then_one_that_answers_ends_our_leg(
    media: MakeHarness,
) -> None:
    h = await media()
    call_id = h.write_brief()
    peer = await h.call(call_id)
    await wait_for(lambda: len(peer.voiced()) >= 5, 5, "the greeting")
    peer.send_dtmf("1")
    await wait_for(lambda: bool(h.commands(call_id)), 5, "the transfer command")
    command = h.commands(call_id)[0]
    assert command == {
        "action": "transfer",
        "call_id": call_id,
        "number": "+15550100099",
        "endpoint": "Local/+15550100099@sim",
        "caller_id": "+15550000000",
        "timeout_s": 5.0,
    }
    await wait_for(
        lambda: h.publish_reply(call_id, {"event": "transfer", "status": "failed", "reason": "busy"}) > 0
    )
    session = h.standin.connections[-1]
    await wait_for(lambda: session.received["conversation.item.create"] >= 2, 3, "the tool output")
    voiced_before = len(peer.voiced())
    await wait_for(lambda: len(peer.voiced()) > voiced_before + 5, 5, "the agent saying so")

    peer.send_dtmf("1")
    await wait_for(lambda: len(h.commands(call_id)) == 2, 5, "the second transfer command")
    await wait_for(
        lambda: (
            h.publish_reply(call_id, {"event": "transfer", "status": "answered", "number": "+15550100099"})
            > 0
        )
    )
    await asyncio.sleep(0.2)
    await peer.close()  # the Stasis app removed and deleted our leg
    await wait_for(lambda: any(n == "media.call_report" for n, _ in h.tasks()), 5, "the call report task")
    report = next(k for n, k in h.tasks() if n == "media.call_report")
    assert report["end_reason"] == "transferred"


async def test_tools_reach_the_orchestrator_as_celery_tasks(media: MakeHarness) -> None:
    h = await media()
    call_id = h.write_brief()
    peer = await h.call(call_id)
    await wait_for(lambda: len(peer.voiced()) >= 5, 5, "the greeting")
    for digit in "2395":
        count = len(h.tasks())
        peer.send_dtmf(digit)
        await wait_for(partial(_more_tasks, h, count), 5, f"the task of {digit}")
    tasks = dict(h.tasks())
    # The local agent says "tomorrow" by its own machine's date (as a model would by the date it is told),
    # which is not New York's in the hours after midnight UTC.
    tomorrow = (datetime.now(UTC).astimezone() + timedelta(days=1)).date()
    at = datetime.fromisoformat(tasks["media.schedule_callback"]["at"])
    new_york = ZoneInfo("America/New_York")
    assert at.astimezone(new_york) == datetime(
        tomorrow.year, tomorrow.month, tomorrow.day, 10, 0, tzinfo=new_york
    )
    assert at.utcoffset() == timedelta(0) and at > datetime.now(UTC)
    assert tasks["media.set_disposition"]["disposition"] == "interested"
    assert tasks["media.add_to_dnc"] == {"call_id": call_id, "tenant_id": 7, "note": ""}
    assert tasks["media.send_sms"]["to"] == "+15550100010"
    await peer.close()


async def test_a_realtime_drop_is_reconnected_once_with_the_call_reseeded(media: MakeHarness) -> None:
    h = await media()
    call_id = h.write_brief()
    peer = await h.call(call_id)
    await wait_for(lambda: len(peer.voiced()) >= 10, 5, "the greeting")
    await h.standin.drop_all()
    await wait_for(lambda: h.standin.connection_count == 2, 5, "the reconnect")
    second = h.standin.connections[-1]
    await wait_for(lambda: second.received["response.create"] >= 1, 3, "the re-seeded session")
    assert second.received["session.update"] == 1 and second.received["conversation.item.create"] >= 1
    voiced = len(peer.voiced())
    await wait_for(lambda: len(peer.voiced()) > voiced + 5, 5, "the agent speaking again")

    await h.standin.drop_all()  # the second drop: apology and hang up
    await wait_for(lambda: bool(h.commands(call_id)), 15, "the hangup command")
    assert h.commands(call_id)[0]["reason"] == "realtime_unavailable"
    await asyncio.wait_for(peer.closed.wait(), 5)
    assert h.worker.reports[-1]["metrics"]["realtime_reconnects"] == 1


async def test_more_calls_than_the_maximum_are_refused(media: MakeHarness) -> None:
    h = await media(max_calls=1)
    first = await h.call(h.write_brief())
    await wait_for(lambda: len(first.audio()) > 2, 3, "the first call")
    second = await FakeAsterisk.connect(h.worker.port)
    await asyncio.wait_for(second.closed.wait(), 2)
    assert h.worker.refused == 1 and not first.closed.is_set()
    await first.close()


async def test_shutdown_lets_the_agent_say_goodbye_and_hangs_up(media: MakeHarness) -> None:
    h = await media()
    call_id = h.write_brief()
    peer = await h.call(call_id)
    await wait_for(lambda: len(peer.voiced()) >= 5, 5, "the greeting")
    stopping = asyncio.ensure_future(h.worker.stop(drain_s=0.2))
    await wait_for(lambda: bool(h.commands(call_id)), 10, "the hangup command")
    assert h.commands(call_id)[0]["reason"] == "shutdown"
    creates = h.standin.connections[-1].received["response.create"]
    assert creates >= 2  # the greeting, then the goodbye
    await asyncio.wait_for(stopping, 15)
    assert peer.closed.is_set() or peer.hung_up


async def test_a_silent_caller_is_fed_silence_so_the_model_hears_the_end_of_speech(
    media: MakeHarness,
) -> None:
    h = await media(standin={"reply_ms": 200})
    peer = await h.call(h.write_brief())
    await wait_for(lambda: len(peer.voiced()) >= 5, 5, "the greeting")
    await asyncio.sleep(0.5)
    session = h.standin.connections[-1]
    creates = session.sent["response.created"]
    await peer.speak(tone(400, amplitude=12000))  # then nothing at all: Asterisk sends no frames (A7)
    await wait_for(lambda: session.sent["input_audio_buffer.speech_stopped"] >= 1, 3, "speech_stopped")
    await wait_for(lambda: session.sent["response.created"] > creates, 3, "a reply")
    await peer.close()


async def test_a_slin16_leg_is_answered_in_slin16_with_resampling(media: MakeHarness) -> None:
    h = await media()
    peer = await h.call(h.write_brief())
    peer.send(encode(KIND_SLIN16, bytes(640)))  # the caller's leg is slin16 (0x12, 640 bytes per 20 ms)
    await wait_for(
        lambda: sum(1 for f in peer.frames if f.kind == KIND_SLIN16 and _peak(f.payload) > 1000) >= 10
    )
    slin16 = [f for f in peer.frames if f.kind == KIND_SLIN16]
    assert all(len(f.payload) == 640 for f in slin16)
    gaps = [(b.at - a.at) * 1000 for a, b in zip(slin16[3:], slin16[4:], strict=False)]
    assert 18.0 <= statistics.median(gaps) <= 22.0
    session = h.standin.connections[-1]
    assert session.received["input_audio_buffer.append"] >= 1  # resampled to 24 kHz for the model
    await peer.close()


async def test_an_unusable_brief_is_treated_like_a_missing_one(media: MakeHarness) -> None:
    h = await media()
    call_id = str(uuid.uuid4())
    h.redis.set(f"media:brief:{call_id}", "{not json", ex=60)
    h.keys.append(f"media:brief:{call_id}")
    peer = await h.call(call_id)
    await asyncio.wait_for(peer.closed.wait(), 15)
    assert peer.frames[-1].kind == KIND_HANGUP and len(peer.voiced()) > 20
    assert h.worker.reports[-1]["end_reason"] == "no_brief"


async def test_a_peer_that_stops_reading_is_closed_and_the_others_go_on(
    media: MakeHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(media_call, "WRITE_BUFFER_LIMIT", 4096)
    monkeypatch.setattr(media_call, "STALLED_PEER_S", 0.5)
    h = await media()
    good = await h.call(h.write_brief())
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", h.worker.port))
    sock.send(encode_uuid(uuid.UUID(h.expect(h.write_brief()))))  # then never reads a byte
    try:
        await wait_for(
            lambda: any(r["end_reason"] == "peer_stalled" for r in h.worker.reports), 30, "the close"
        )
        assert not good.closed.is_set()
        before = len(good.audio())
        await asyncio.sleep(0.2)
        assert len(good.audio()) > before
    finally:
        sock.close()
        await good.close()


def _reply_started_at(peer: FakeAsterisk, after: float) -> float | None:
    """When the agent's next turn began after ``after``: its first voiced frame following a silent one."""
    silent_seen = False
    for frame in peer.audio():
        if frame.at < after:
            continue
        if rms(frame.payload) <= VOICED_RMS:
            silent_seen = True
        elif silent_seen:
            return frame.at
    return None


async def test_a_key_pressed_during_a_long_response_cancels_it_and_is_answered_at_once(
    media: MakeHarness,
) -> None:
    # Audio delivered only a little faster than real time: the greeting is still being generated (8 s of
    # it) when the key is pressed, as with a real model.
    h = await media(standin={"reply_ms": 8000, "speed": 1.5})
    call_id = h.write_brief()
    peer = await h.call(call_id)
    await wait_for(lambda: len(peer.voiced()) >= 25, 5, "the agent speaking")
    realtime = h.standin.connections[-1]
    assert realtime.session is not None and realtime.session.response is not None, "still generating"
    pressed = time.monotonic()
    peer.send_dtmf("7")
    await wait_for(lambda: bool(realtime.cancellations), 2, "response.cancel")
    await wait_for(lambda: _reply_started_at(peer, pressed) is not None, 3, "the reply to the key")
    reply_at = _reply_started_at(peer, pressed)
    assert reply_at is not None
    assert reply_at - pressed < 0.5, f"the reply began {reply_at - pressed:.2f} s after the key"

    assert realtime.cancellations[0]["reason"] == "client_cancelled"
    (truncate,) = realtime.truncations
    heard = len([f for f in peer.voiced() if f.at < pressed + 0.05])
    assert abs(truncate["audio_end_ms"] - heard * 20) <= 60, (truncate, heard)
    order = realtime.received_order
    cancel = order.index("response.cancel")
    assert order[cancel : cancel + 4] == [
        "response.cancel",
        "conversation.item.truncate",
        "conversation.item.create",
        "response.create",
    ]
    assert not [e for e in realtime.errors if e["code"] == "conversation_already_has_active_response"]
    await peer.close()
    await wait_for(lambda: any(n == "media.call_report" for n, _ in h.tasks()), 5, "the call report")
    report = next(k for n, k in h.tasks() if n == "media.call_report")
    assert report["metrics"]["dtmf"] == 1 and report["metrics"]["barge_ins"] == 1


async def _report_of(h: MediaHarness, call_id: str, peer: FakeAsterisk) -> dict[str, Any]:
    """Play the Stasis app's part once the worker asks to hang up (or the caller's), and return the report."""
    await wait_for(lambda: bool(h.commands(call_id)) or peer.closed.is_set(), 20, "the end of the call")
    await peer.close()
    await wait_for(lambda: any(n == "media.call_report" for n, _ in h.tasks()), 5, "the call report task")
    report: dict[str, Any] = next(k for n, k in h.tasks() if n == "media.call_report")
    assert report["call_id"] == call_id
    return report


async def test_the_report_of_a_call_the_agent_spoke_in_says_so(media: MakeHarness) -> None:
    h = await media()
    call_id = h.write_brief()
    peer = await h.call(call_id)
    await wait_for(lambda: len(peer.voiced()) >= 5, 5, "the greeting")
    await peer.close()
    report = await _report_of(h, call_id, peer)
    assert report["metrics"]["agent_spoke"] is True
    assert 0 < report["metrics"]["answer_to_first_audio_ms"] < 2000


async def test_the_report_when_realtime_never_connects_says_the_agent_never_spoke(
    media: MakeHarness,
) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    h = await media(realtime_url=f"ws://127.0.0.1:{closed_port}/v1/realtime")
    call_id = h.write_brief()
    peer = await h.call(call_id)
    report = await _report_of(h, call_id, peer)
    assert report["end_reason"] == "realtime_unavailable"
    assert len(peer.voiced()) > 20, "the caller heard the apology, which is not the agent speaking"
    assert report["metrics"]["agent_spoke"] is False
    assert report["metrics"]["answer_to_first_audio_ms"] is None


async def test_a_refused_session_update_ends_the_call_with_an_apology_and_a_report(
    media: MakeHarness,
) -> None:
    h = await media(standin={"fail_session_update": True})
    call_id = h.write_brief()
    peer = await h.call(call_id)
    report = await _report_of(h, call_id, peer)
    assert h.commands(call_id)[0]["reason"] == "realtime_session_failed"
    assert report["end_reason"] == "realtime_session_failed"
    assert report["metrics"]["agent_spoke"] is False, "the unconfigured agent was never heard"
    assert any("session_update_failed" in e for e in report["errors"])
    assert h.standin.connection_count == 1, "no second session for a configuration it refuses"


async def test_a_call_without_a_brief_reports_locally_that_no_agent_spoke(media: MakeHarness) -> None:
    h = await media()
    peer = await h.call(str(uuid.uuid4()))
    await asyncio.wait_for(peer.closed.wait(), 15)
    metrics = h.worker.reports[-1]["metrics"]
    assert metrics["agent_spoke"] is False and metrics["answer_to_first_audio_ms"] is None
