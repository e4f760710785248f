"""Answering machines through the media worker: real TCP AudioSocket legs (a fake Asterisk), real Redis (the
brief, the Stasis app's ``amd`` reply, call actions, Celery messages) and the Realtime stand-in.

The fake Asterisk plays what a callee would: a greeting (speech-like audio with its words as a caption, so
the stand-in can transcribe it), a beep, then nothing (a silent caller sends no frames). What it received
back, with arrival times, is the judge of "never spoke over the greeting"."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from media import voicemail
from telephony.sim import audio as sim_audio
from telephony.sim.sounds import render_phrase
from tests.media.conftest import FakeAsterisk, MakeHarness, MediaHarness, rms, wait_for
from wire import caption
from wire.audiosocket import KIND_SLIN, encode_audio

GREETING = "Hi, this is Dana. I cannot come to the phone, please leave a message after the tone."
MESSAGE = "Hi Dana, this is Acme calling about your order. Please call us back."


def voicemail_brief(h: MediaHarness, *, amd: bool = True, **voicemail_settings: Any) -> str:
    settings = {"action": "leave_message", "text": MESSAGE, "audio_key": "", "max_wait_s": 20}
    settings.update(voicemail_settings)
    return h.write_brief(
        amd={"enabled": amd, "notsure": "human"},
        voicemail=settings,
        machine_detection={"media": True},
    )


def spoken(text: str, rate: int = 24000) -> bytes:
    return caption.embed(render_phrase(text, rate), text, rate)


def tasks_named(h: MediaHarness, name: str) -> list[dict[str, Any]]:
    """The tasks called ``name`` in the order they were sent (kombu LPUSHes: the list is newest first)."""
    return [kwargs for task, kwargs in reversed(h.tasks()) if task == name]


async def finish(h: MediaHarness, peer: FakeAsterisk, call_id: str) -> dict[str, Any]:
    """The Stasis app hangs up on the command: close the leg and return the end-of-call report."""
    await peer.close()
    await wait_for(lambda: bool(tasks_named(h, "media.call_report")), 5, "the call report")
    report = tasks_named(h, "media.call_report")[-1]
    assert report["call_id"] == call_id
    return report


@pytest.mark.parametrize("mode", ["test", "agent"])  # the agent: the local demo agent (no OpenAI key)
async def test_amd_machine_waits_for_the_beep_then_says_the_message_and_hangs_up(
    media: MakeHarness, mode: str
) -> None:
    h = await media(transcribe_model="whisper-test", standin={"mode": mode})
    call_id = voicemail_brief(h)
    peer = await h.call(call_id)
    answered = time.monotonic()

    async def amd_after(seconds: float) -> None:
        await asyncio.sleep(seconds)
        h.publish_reply(call_id, {"type": "amd", "status": "MACHINE", "cause": "LONGGREETING-2000-1500"})

    amd = asyncio.ensure_future(amd_after(1.5))  # what the Stasis app publishes after the AMD() hop
    await asyncio.sleep(0.2)
    await peer.speak(spoken(GREETING))  # ~5.5 s: AMD answers in the middle of it
    await asyncio.sleep(0.3)
    await peer.speak(sim_audio.beep(24000))
    beep_end = time.monotonic()
    await amd
    await wait_for(lambda: bool(h.commands(call_id)), 20, "the hangup command")
    hung_up = time.monotonic()
    assert h.commands(call_id) == [{"action": "hangup", "call_id": call_id, "reason": "voicemail_left"}]

    voiced = peer.voiced()
    assert voiced, "the message was heard"
    assert all(f.at >= beep_end + 0.2 for f in voiced), "nothing over the greeting or the beep"
    assert voiced[0].at <= beep_end + 1.0, "the message starts right after the beep"
    by = tasks_named(h, "media.answered_by")
    assert [(t["answered_by"], t["source"]) for t in by] == [("machine", "amd")]
    left = tasks_named(h, "media.voicemail_left")
    assert len(left) == 1 and left[0]["call_id"] == call_id and left[0]["tenant_id"] == 7
    assert left[0]["started_at"] <= left[0]["ended_at"] <= time.time()
    # (the task went out before the hangup command: its end is no later than the command's arrival)
    assert left[0]["ended_at"] - time.time() <= hung_up - time.monotonic() + 0.05
    session = h.standin.connections[-1]
    assert session.received["response.create"] == 1, "one response: the message, never a greeting"

    report = await finish(h, peer, call_id)
    metrics = report["metrics"]
    assert metrics["answered_by"] == "machine" and metrics["machine_source"] == "amd"
    assert metrics["voicemail_left"] is True and report["end_reason"] == "voicemail_left"
    agent_lines = [line["text"] for line in report["transcript"] if line["role"] == "agent"]
    assert agent_lines == [MESSAGE], "the text said exactly"
    assert answered < beep_end


@pytest.mark.parametrize("mode", ["test", "agent"])
async def test_amd_human_releases_the_held_greeting_at_once(media: MakeHarness, mode: str) -> None:
    h = await media(standin={"mode": mode})
    call_id = voicemail_brief(h)
    peer = await h.call(call_id)
    await peer.speak(spoken("Hello?"))
    await asyncio.sleep(0.8)
    assert peer.voiced() == [], "the greeting is held while AMD listens"
    session = h.standin.connections[-1]
    assert session.received["response.create"] == 0
    assert session.config["audio"]["input"]["turn_detection"]["create_response"] is False
    released = time.monotonic()
    h.publish_reply(call_id, {"type": "amd", "status": "HUMAN", "cause": "HUMAN-300-900"})
    await wait_for(lambda: len(peer.voiced()) >= 5, 5, "the agent's greeting")
    assert peer.voiced()[0].at - released < 1.0
    assert session.config["audio"]["input"]["turn_detection"]["create_response"] is True
    by = tasks_named(h, "media.answered_by")
    assert [(t["answered_by"], t["source"]) for t in by] == [("human", "amd")]
    report = await finish(h, peer, call_id)
    assert report["metrics"]["answered_by"] == "human" and report["metrics"]["voicemail_left"] is False
    assert report["metrics"]["agent_spoke"] is True
    assert not h.commands(call_id)


async def test_no_amd_reply_in_time_means_a_human(
    media: MakeHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(voicemail, "AMD_WAIT_S", 1.0)
    h = await media()
    call_id = voicemail_brief(h)
    peer = await h.call(call_id)
    started = time.monotonic()
    await wait_for(lambda: len(peer.voiced()) >= 5, 5, "the agent's greeting")
    assert peer.voiced()[0].at - started >= 0.9
    assert [(t["answered_by"], t["source"]) for t in tasks_named(h, "media.answered_by")] == [
        ("human", "amd")
    ]
    await finish(h, peer, call_id)


async def test_amd_said_human_but_the_beep_flips_it_and_the_recorded_message_follows(
    media: MakeHarness,
) -> None:
    h = await media(standin={"reply_ms": 6000})
    recorded = sim_audio.tone(700.0, 1500, 24000, amplitude=6000)  # the campaign's recorded message
    key = "test:voicemail:audio:flip"
    h.redis.set(key, recorded, ex=60)
    h.keys.append(key)
    call_id = voicemail_brief(h, audio_key=key, text="")
    peer = await h.call(call_id)
    await peer.speak(spoken("Hi, leave it."))
    h.publish_reply(call_id, {"type": "amd", "status": "HUMAN", "cause": "HUMAN-300-900"})
    await wait_for(lambda: len(peer.voiced()) >= 10, 5, "the agent talking")
    beep_start = time.monotonic()
    await peer.speak(sim_audio.beep(24000))
    beep_end = time.monotonic()
    await wait_for(lambda: bool(h.commands(call_id)), 10, "the hangup command")
    assert h.commands(call_id)[0]["reason"] == "voicemail_left"

    # The agent stopped soon after the beep was recognised (200 ms of tone) and was silent until it ended.
    during = [f for f in peer.voiced() if beep_start + 0.45 <= f.at <= beep_end + 0.2]
    assert during == [], "the agent was cut off by the beep and did not talk over it"
    message = [f for f in peer.voiced() if f.at > beep_end]
    assert 60 <= len(message) <= 80, "the recording, 1.5 s, paced at 20 ms a frame"
    assert all(abs(rms(f.payload) - 6000 / 2**0.5) < 300 for f in message[1:-1]), "the recorded audio itself"
    assert (message[-1].at - message[0].at) >= 1.3
    by = tasks_named(h, "media.answered_by")
    assert [(t["answered_by"], t["source"]) for t in by] == [("human", "amd"), ("machine", "beep")]
    assert len(tasks_named(h, "media.voicemail_left")) == 1
    report = await finish(h, peer, call_id)
    assert report["metrics"]["machine_source"] == "beep" and report["metrics"]["voicemail_left"] is True


async def test_without_amd_a_greeting_phrase_flips_the_call_and_the_message_waits_for_silence(
    media: MakeHarness,
) -> None:
    h = await media(transcribe_model="whisper-test", standin={"reply_ms": 3000})
    call_id = voicemail_brief(h, amd=False)
    peer = await h.call(call_id)
    await wait_for(lambda: len(peer.voiced()) >= 3, 5, "the agent's greeting (no AMD)")
    await peer.speak(spoken("You have reached the voicemail of Dana Smith."))
    await asyncio.sleep(0.7)  # a pause long enough for the stand-in to end the turn and transcribe it
    await wait_for(lambda: bool(tasks_named(h, "media.answered_by")), 5, "the re-classification")
    silenced = time.monotonic()
    await peer.speak(spoken("Please leave your name and number."))
    greeting_end = time.monotonic()
    await wait_for(lambda: bool(h.commands(call_id)), 15, "the hangup command")
    assert h.commands(call_id)[0]["reason"] == "voicemail_left"
    assert [f for f in peer.voiced() if silenced + 0.1 <= f.at <= greeting_end + 1.3] == []
    message = [f for f in peer.voiced() if f.at > greeting_end]
    assert message and message[0].at >= greeting_end + voicemail.GREETING_END_SILENCE_S - 0.1
    by = tasks_named(h, "media.answered_by")
    assert [(t["answered_by"], t["source"]) for t in by] == [("machine", "greeting")]
    report = await finish(h, peer, call_id)
    assert report["metrics"]["machine_source"] == "greeting"


async def test_hang_up_action_ends_a_machine_call_at_once_on_a_slin8_leg(media: MakeHarness) -> None:
    h = await media()
    call_id = voicemail_brief(h, action="hang_up")
    peer = await h.call(call_id)
    greeting = render_phrase(GREETING, 8000)
    for off in range(0, 320 * 30, 320):  # 0.6 s of an 8 kHz greeting
        peer.send(encode_audio(KIND_SLIN, greeting[off : off + 320]))
        await asyncio.sleep(0.02)
    h.publish_reply(call_id, {"type": "amd", "status": "MACHINE", "cause": "MAXWORDS-4-4"})
    await wait_for(lambda: bool(h.commands(call_id)), 5, "the hangup command")
    assert h.commands(call_id)[0]["reason"] == "machine_detected"
    assert not [f for f in peer.frames if f.kind == KIND_SLIN and rms(f.payload) > 300]
    assert not tasks_named(h, "media.voicemail_left")
    report = await finish(h, peer, call_id)
    assert report["metrics"]["answered_by"] == "machine" and report["metrics"]["voicemail_left"] is False


async def test_amd_said_human_but_the_greeting_phrases_flip_it(media: MakeHarness) -> None:
    h = await media(transcribe_model="whisper-test", standin={"reply_ms": 4000})
    call_id = voicemail_brief(h)
    peer = await h.call(call_id)
    await peer.speak(spoken("Hello,"))
    h.publish_reply(call_id, {"type": "amd", "status": "HUMAN", "cause": "HUMAN-800-800"})
    await wait_for(lambda: len(peer.voiced()) >= 3, 5, "the agent starting")
    # The greeting goes on over the agent (who is cut off by the barge-in before an exchange happened).
    await peer.speak(spoken("You have reached the voicemail of Dana. Please leave a message after the tone."))
    await wait_for(lambda: len(tasks_named(h, "media.answered_by")) == 2, 5, "the re-classification")
    flipped = time.monotonic()
    await peer.speak(sim_audio.beep(24000))
    beep_end = time.monotonic()
    await wait_for(lambda: bool(h.commands(call_id)), 15, "the hangup command")
    assert h.commands(call_id)[0]["reason"] == "voicemail_left"
    assert not [f for f in peer.voiced() if flipped + 0.1 <= f.at <= beep_end + 0.2], (
        "silent until the beep ended"
    )
    assert [f for f in peer.voiced() if f.at > beep_end], "then the message"
    by = tasks_named(h, "media.answered_by")
    assert [(t["answered_by"], t["source"]) for t in by] == [("human", "amd"), ("machine", "greeting")]
    report = await finish(h, peer, call_id)
    assert report["metrics"]["machine_source"] == "greeting" and report["metrics"]["voicemail_left"] is True
