"""Answering machines on the media side without I/O: the beep detector, the greeting phrases, the brief's
settings, the voicemail state machine and what the call session does with it."""

from __future__ import annotations

import json
import random
from typing import Any

import numpy as np
import pytest

from media.session import CallSession
from media.voicemail import (
    AMD_WAIT_S,
    GREETING_END_SILENCE_S,
    TRANSITIONS,
    BeepDetector,
    BeepEnded,
    BeepHeard,
    CallerListener,
    Classified,
    HangUp,
    Heard,
    Input,
    LeaveMessage,
    MachineAction,
    MachineSettings,
    Release,
    Silence,
    SpeechStarted,
    SpeechStopped,
    State,
    VoicemailMachine,
    amd_says,
    parse_machine_settings,
    sounds_like_voicemail,
)
from telephony.sim import audio as sim_audio
from telephony.sim.sounds import render_phrase
from wire.brief import Brief, BriefError

RATES = (8000, 16000, 24000)


def detect(pcm: bytes, rate: int, frame_ms: int = 20) -> list[BeepHeard | BeepEnded]:
    """Feed ``pcm`` as AudioSocket frames (time 0 = its start), then a second of silence."""
    detector = BeepDetector(rate)
    step = rate * 2 * frame_ms // 1000
    pcm += bytes(rate * 2)
    out: list[BeepHeard | BeepEnded] = []
    for off in range(0, len(pcm), step):
        chunk = pcm[off : off + step]
        out += detector.feed(chunk, (off + len(chunk)) / 2 / rate)
    return out


def noise(seconds: float, rate: int, rms: float, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.0, rms, int(seconds * rate))


def pcm_of(samples: np.ndarray) -> bytes:
    return bytes(samples.clip(-32767, 32767).astype("<i2").tobytes())


# ------------------------------------------------------------------------------------------- beeps
@pytest.mark.parametrize("rate", RATES)
@pytest.mark.parametrize("hz", [440.0, 1000.0, 1400.0, 2000.0])
def test_a_steady_tone_in_the_band_is_a_beep_with_its_start_and_end(rate: int, hz: float) -> None:
    pcm = sim_audio.silence(400, rate) + sim_audio.tone(hz, 500, rate) + sim_audio.silence(300, rate)
    events = detect(pcm, rate)
    assert [type(e) for e in events] == [BeepHeard, BeepEnded]
    heard, ended = events
    assert isinstance(heard, BeepHeard) and isinstance(ended, BeepEnded)
    assert abs(heard.hz - hz) <= 10
    assert abs(heard.at - 0.4) <= 0.025
    assert abs(ended.at - 0.9) <= 0.025
    assert abs(ended.seconds - 0.5) <= 0.04


@pytest.mark.parametrize("rate", RATES)
def test_tones_too_short_or_out_of_the_band_are_not_beeps(rate: int) -> None:
    assert detect(sim_audio.tone(1000.0, 150, rate), rate) == []
    assert detect(sim_audio.tone(350.0, 600, rate), rate) == []
    assert detect(sim_audio.tone(2300.0, 600, rate), rate) == []
    assert detect(sim_audio.tone(1000.0, 600, rate, amplitude=100), rate) == []  # too quiet
    assert [type(e) for e in detect(sim_audio.tone(1000.0, 220, rate), rate)] == [BeepHeard, BeepEnded]


@pytest.mark.parametrize("rate", [8000, 24000])
@pytest.mark.parametrize(
    "text",
    [
        "Hello? Who is this? Yes, speaking.",
        "Hi, you have reached Dana Smith. I cannot come to the phone right now, please leave a message.",
        "Eeeeee. Ooooo. Aaaaah. Mmmmm, well, sure, why not, tell me more about it.",
    ],
)
def test_speech_is_not_a_beep(rate: int, text: str) -> None:
    for seed in range(4):
        assert detect(sim_audio.phrase(text, rate, seed=seed), rate) == []
    assert detect(render_phrase(text, rate), rate) == []


@pytest.mark.parametrize("rate", [8000, 24000])
def test_noise_is_not_a_beep_and_a_beep_in_noise_still_is(rate: int) -> None:
    assert detect(pcm_of(noise(5.0, rate, 3000.0)), rate) == []
    tone = np.frombuffer(sim_audio.tone(1000.0, 400, rate), dtype="<i2").astype(np.float64)
    tone_rms = 8000 / np.sqrt(2)
    for snr_db in (20, 10, 6):
        noisy = tone + noise(0.4, rate, tone_rms / 10 ** (snr_db / 20), seed=snr_db)
        assert [type(e) for e in detect(pcm_of(noisy), rate)] == [BeepHeard, BeepEnded], snr_db


def test_a_greeting_then_a_beep_gives_the_beep_at_its_time_in_odd_frame_sizes() -> None:
    rate = 24000
    greeting = render_phrase("Hi, this is Dana, leave a message after the tone.", rate)
    pcm = greeting + sim_audio.silence(300, rate) + sim_audio.beep(rate)
    events = detect(pcm, rate, frame_ms=30)
    start = len(greeting) / 2 / rate + 0.3
    assert [type(e) for e in events] == [BeepHeard, BeepEnded]
    assert abs(events[0].at - start) <= 0.04 and abs(events[1].at - (start + 0.5)) <= 0.04


def test_the_listener_hears_speech_start_and_stop_and_beeps() -> None:
    rate = 8000
    listener = CallerListener(rate)
    pcm = (
        sim_audio.silence(200, rate)
        + render_phrase("Hello there.", rate)
        + sim_audio.silence(600, rate)
        + sim_audio.beep(rate)
        + sim_audio.silence(600, rate)
    )
    events: list[Heard] = []
    step = rate * 2 // 50
    for off in range(0, len(pcm), step):
        events += listener.feed(pcm[off : off + step], (off + step) / 2 / rate)
    kinds = [type(e).__name__ for e in events]
    assert kinds == [
        "SpeechStarted",
        "SpeechStopped",
        "SpeechStarted",
        "BeepHeard",
        "BeepEnded",
        "SpeechStopped",
    ], kinds
    speech_end = 0.2 + len(render_phrase("Hello there.", rate)) / 2 / rate
    assert abs(events[1].at - speech_end) <= 0.05


# ---------------------------------------------------------------------------------- greeting phrases
@pytest.mark.parametrize(
    "text",
    [
        "Hi, you've reached Dana. Please leave a message after the tone.",
        "The person you are calling is not available. At the beep, please record your message.",
        "Welcome to the voicemail of 555 0100.",
        "The mailbox is full.",
        "I can't come to the phone right now.",
        "You have reached Acme Sales. We are not available, we'll call you back as soon as possible.",
        "Sorry I missed your call, leave me a message and I'll get back to you.",
    ],
)
def test_voicemail_greetings_are_recognised(text: str) -> None:
    assert sounds_like_voicemail(text)


@pytest.mark.parametrize(
    "text",
    [
        "Hello?",
        "Yes, this is Dana speaking.",
        "Who is calling?",
        "I'm not available on Tuesday.",
        "Can you call me back later?",
        "[caller speech, 900 ms]",
        "Sorry, I'm busy, bye.",
    ],
)
def test_what_people_say_is_not_a_greeting(text: str) -> None:
    assert not sounds_like_voicemail(text)


# -------------------------------------------------------------------------------------- settings
def test_settings_from_the_brief_and_their_defaults() -> None:
    assert parse_machine_settings({}, outbound=True) == MachineSettings(media=True)
    assert parse_machine_settings({}, outbound=False).media is False
    settings = parse_machine_settings(
        {
            "amd": {"enabled": True, "notsure": "machine"},
            "voicemail": {
                "action": "leave_message",
                "text": "  Hi Dana,\n call us back.  ",
                "audio_key": "media:vm:ab12",
                "max_wait_s": 12,
            },
            "machine_detection": {"media": False},
        },
        outbound=True,
    )
    assert settings == MachineSettings(
        amd_enabled=True,
        notsure="machine",
        action="leave_message",
        text="Hi Dana, call us back.",
        audio_key="media:vm:ab12",
        max_wait_s=12.0,
        media=False,
    )
    assert settings.has_message
    assert not MachineSettings(action="leave_message").has_message


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"amd": []}, "'amd'"),
        ({"amd": {"enabled": "yes"}}, "amd.enabled"),
        ({"amd": {"notsure": "maybe"}}, "amd.notsure"),
        ({"voicemail": {"action": "sing"}}, "voicemail.action"),
        ({"voicemail": {"text": 5}}, "voicemail.text"),
        ({"voicemail": {"text": "x" * 2001}}, "voicemail.text"),
        ({"voicemail": {"audio_key": "a key with spaces"}}, "voicemail.audio_key"),
        ({"voicemail": {"max_wait_s": 0}}, "voicemail.max_wait_s"),
        ({"voicemail": {"max_wait_s": True}}, "voicemail.max_wait_s"),
        ({"machine_detection": {"media": 1}}, "machine_detection.media"),
    ],
)
def test_bad_settings_are_refused_naming_the_field(extra: dict[str, Any], field: str) -> None:
    with pytest.raises(BriefError, match=field.replace(".", r"\.")):
        parse_machine_settings(extra, outbound=True)


@pytest.mark.parametrize(
    ("status", "cause", "rule", "expected"),
    [
        ("HUMAN", "HUMAN-500-500", "machine", "human"),
        ("MACHINE", "LONGGREETING-2000-1500", "human", "machine"),
        ("MACHINE", "MAXWORDS-4-4", "human", "machine"),
        ("MACHINE", "INITIALSILENCE-2500-2500", "human", "human"),
        ("MACHINE", "INITIALSILENCE-2500-2500", "machine", "machine"),
        ("NOTSURE", "TOOLONG-5000", "human", "human"),
        ("NOTSURE", "TOOLONG-5000", "machine", "machine"),
        ("HANGUP", "", "human", None),
        ("", "", "human", "human"),
    ],
)
def test_amd_results_and_the_campaigns_rule(status: str, cause: str, rule: str, expected: str | None) -> None:
    assert amd_says(status, cause, rule) == expected


# --------------------------------------------------------------------------------- state machine
MESSAGE = MachineSettings(amd_enabled=True, action="leave_message", text="Call us back.", max_wait_s=20.0)


def state_of(machine: VoicemailMachine) -> State:
    return machine.state  # (through a call: mypy would keep the state narrowed by an earlier assert)


def kinds(actions: list[MachineAction]) -> list[str]:
    return [type(a).__name__ for a in actions]


def run_ticks(machine: VoicemailMachine, start: float, end: float) -> list[tuple[float, MachineAction]]:
    out = []
    t = start
    while t <= end + 1e-9:
        out += [(round(t, 2), a) for a in machine.tick(t)]
        t += 0.1
    return out


def test_amd_human_releases_the_greeting_at_once() -> None:
    machine = VoicemailMachine(MESSAGE, started_at=0.0)
    assert machine.state is State.AWAITING_AMD and machine.holding
    assert machine.tick(3.0) == []
    actions = machine.amd("HUMAN", "HUMAN-300-800", 3.2)
    assert actions == [Release(), Classified("human", "amd", 3.2)]
    assert state_of(machine) is State.HUMAN and not machine.holding
    assert machine.report()["answered_by"] == "human"


def test_no_amd_reply_within_the_cap_means_human() -> None:
    machine = VoicemailMachine(MESSAGE, started_at=5.0)
    assert machine.tick(5.0 + AMD_WAIT_S - 0.1) == []
    assert machine.tick(5.0 + AMD_WAIT_S) == [Release(), Classified("human", "amd", 15.0)]
    # A late MACHINE still re-classifies the call.
    assert kinds(machine.amd("MACHINE", "LONGGREETING-2000-1500", 16.0)) == ["Silence", "Classified"]
    assert machine.source == "amd"


def test_amd_machine_then_the_message_starts_after_the_beep_ends() -> None:
    machine = VoicemailMachine(MESSAGE, started_at=0.0)
    machine.heard([SpeechStarted(0.3)], 0.3)
    assert kinds(machine.amd("MACHINE", "LONGGREETING-2000-1500", 2.5)) == ["Silence", "Classified"]
    assert machine.state is State.MACHINE_WAIT_BEEP
    assert run_ticks(machine, 2.6, 5.0) == []  # still greeting
    machine.heard([SpeechStopped(5.0)], 5.0)
    assert machine.heard([SpeechStarted(5.3), BeepHeard(5.3, 1000.0)], 5.6) == []
    assert machine.heard([BeepEnded(5.8, 0.5, 1000.0)], 5.85) == []
    assert machine.heard([SpeechStopped(5.8)], 6.1) == [LeaveMessage()]  # 5.8 + AFTER_BEEP_S
    assert state_of(machine) is State.LEAVING_MESSAGE
    machine.message_started(6.2)
    assert machine.message_done(9.0) == [HangUp("voicemail_left")]
    assert machine.report() == {
        "answered_by": "machine",
        "machine_source": "amd",
        "voicemail_left": True,
        "amd_status": "MACHINE",
        "amd_cause": "LONGGREETING-2000-1500",
    }


def test_without_a_beep_the_message_waits_for_the_greeting_to_end() -> None:
    machine = VoicemailMachine(MESSAGE, started_at=0.0)
    machine.heard([SpeechStarted(0.2)], 0.2)
    machine.amd("MACHINE", "LONGGREETING-2000-1500", 2.0)
    machine.heard([SpeechStopped(4.0)], 4.3)
    leave = [t for t, a in run_ticks(machine, 4.3, 7.0) if isinstance(a, LeaveMessage)]
    assert len(leave) == 1 and leave[0] >= 4.0 + GREETING_END_SILENCE_S - 1e-9 and leave[0] <= 5.6


def test_a_greeting_that_never_ends_gets_no_message() -> None:
    machine = VoicemailMachine(MESSAGE, started_at=0.0)
    machine.heard([SpeechStarted(0.2)], 0.2)
    machine.amd("MACHINE", "MAXWORDS-4-4", 1.0)
    actions = run_ticks(machine, 1.0, 25.0)
    assert [(t, a) for t, a in actions] == [(21.0, HangUp("machine_detected"))]
    assert machine.state is State.DONE and not machine.report()["voicemail_left"]


def test_a_silent_machine_gets_the_message_at_max_wait() -> None:
    machine = VoicemailMachine(MESSAGE, started_at=0.0)
    machine.amd("MACHINE", "INITIALSILENCE-2500-2500", 2.5)  # no: the rule says human
    assert machine.state is State.HUMAN
    silent = VoicemailMachine(
        MachineSettings(amd_enabled=True, notsure="machine", action="leave_message", text="Hi", max_wait_s=5),
        started_at=0.0,
    )
    silent.amd("MACHINE", "INITIALSILENCE-2500-2500", 2.5)
    assert [a for _, a in run_ticks(silent, 2.5, 8.0)] == [LeaveMessage()]


def test_hang_up_action_hangs_up_at_once_without_waiting() -> None:
    machine = VoicemailMachine(MachineSettings(amd_enabled=True, action="hang_up"), started_at=0.0)
    actions = machine.amd("MACHINE", "LONGGREETING-2000-1500", 2.0)
    assert actions == [Silence(), Classified("machine", "amd", 2.0), HangUp("machine_detected")]
    assert machine.state is State.DONE


def test_amd_human_then_a_beep_flips_the_call_to_a_machine() -> None:
    machine = VoicemailMachine(MESSAGE, started_at=0.0)
    machine.amd("HUMAN", "HUMAN-300-800", 1.5)
    actions = machine.heard([BeepHeard(3.0, 1000.0)], 3.2)
    assert kinds(actions) == ["Silence", "Classified"]
    assert actions[1] == Classified("machine", "beep", 3.2)
    assert machine.heard([BeepEnded(3.5, 0.5, 1000.0)], 3.55) == []
    assert machine.tick(3.8) == [LeaveMessage()]


def test_greeting_phrases_flip_only_early_and_before_an_exchange() -> None:
    settings = MachineSettings(action="leave_message", text="Hi")  # no AMD: the agent talks from the start
    machine = VoicemailMachine(settings, started_at=0.0)
    assert not machine.holding
    machine.heard([SpeechStarted(0.5), SpeechStopped(1.0)], 1.0)
    assert machine.caller_said("Hello?", 1.2) == []
    machine.agent_heard(2.0)  # the agent answered
    machine.heard([SpeechStarted(4.0)], 4.0)  # and the caller spoke again: an exchange
    assert machine.caller_said("Can you leave a message for Sam after the meeting?", 5.0) == []
    assert machine.state is State.HUMAN

    early = VoicemailMachine(settings, started_at=0.0)
    early.heard([SpeechStarted(0.5)], 0.5)
    early.agent_heard(0.4)  # the agent started its greeting over the machine's
    early.heard([SpeechStopped(3.0), SpeechStarted(3.2)], 3.2)
    actions = early.caller_said("Please leave a message after the tone.", 4.0)
    assert actions == [Silence(), Classified("machine", "greeting", 4.0)]

    late = VoicemailMachine(settings, started_at=0.0)
    assert late.caller_said("Leave a message after the tone.", 16.0) == []
    assert not late.listens(16.0) and late.listens(14.0)

    off = VoicemailMachine(MachineSettings(media=False), started_at=0.0)
    assert off.caller_said("Leave a message after the tone.", 1.0) == []
    assert off.heard([BeepHeard(1.0, 1000.0)], 1.2) == []


def test_illegal_inputs_are_refused_and_recorded() -> None:
    machine = VoicemailMachine(MESSAGE, started_at=0.0)
    assert machine.message_done(1.0) == []  # nothing is being left
    machine.amd("MACHINE", "LONGGREETING-2000-1500", 2.0)
    assert machine.amd("MACHINE", "LONGGREETING-2000-1500", 2.1) == []  # a duplicate reply
    assert machine.refused == ["amd_machine in machine_wait_beep"]
    assert machine.amd("HUMAN", "HUMAN-1-1", 2.2) == []  # the media's evidence stands
    assert machine.state is State.MACHINE_WAIT_BEEP
    assert all(isinstance(k[0], State) and isinstance(k[1], Input) for k in TRANSITIONS)


def test_shuffled_and_duplicated_inputs_never_speak_over_the_greeting() -> None:
    """Whatever order inputs come in, a message starts only when the line is quiet (no beep, no speech),
    at most once, and the machine ends in a state reachable through the table."""
    rng = random.Random(13)  # noqa: S311 - a reproducible shuffle, not security
    for _ in range(300):
        machine = VoicemailMachine(MESSAGE, started_at=0.0)
        t, sound, beep, left = 0.0, False, False, 0
        for _step in range(60):
            t += rng.choice((0.05, 0.2, 0.7, 1.6))
            choice = rng.randrange(7)
            events: list[Heard] = []
            if choice == 0:
                actions = machine.amd(rng.choice(("HUMAN", "MACHINE", "NOTSURE", "HANGUP")), "", t)
            elif choice == 1 and not sound:
                sound, events = True, [SpeechStarted(t)]
            elif choice == 2 and sound and not beep:
                sound, events = False, [SpeechStopped(t)]
            elif choice == 3 and not beep:
                beep, events = True, [BeepHeard(t, 1000.0)]
            elif choice == 4 and beep:
                beep, events = False, [BeepEnded(t, 0.5, 1000.0)]
            elif choice == 5:
                actions = machine.caller_said(rng.choice(("Hello?", "Leave a message.")), t)
            else:
                actions = machine.message_done(t) if rng.random() < 0.3 else machine.tick(t)
            if events:
                actions = machine.heard(events, t)
            if choice in (1, 2, 3, 4) and not events:
                continue
            for action in actions:
                if isinstance(action, LeaveMessage):
                    left += 1
                    assert not sound and not beep, "a message started over the greeting or the beep"
        assert left <= 1
        assert machine.state in set(TRANSITIONS.values()) | {State.AWAITING_AMD}


# ------------------------------------------------------------------------------- the call session
def make_session(**kw: Any) -> CallSession:
    brief = Brief(call_id="c1", tenant_id=1, greeting="Hi Dana.", instructions="Be brief.")
    return CallSession(brief, now=0.0, transcribe_model="t", **kw)


def sent(session: CallSession) -> list[dict[str, Any]]:
    outbox, _ = session.take()
    return [json.loads(m) for m in outbox]


def test_a_held_greeting_waits_for_release_and_the_server_does_not_answer_meanwhile() -> None:
    session = make_session(hold_greeting=True)
    session.start(0.0)
    events = sent(session)
    assert [e["type"] for e in events] == ["session.update"]
    turn = events[0]["session"]["audio"]["input"]["turn_detection"]
    assert turn["create_response"] is False
    session.tick(30.0)  # no silence prompt either
    assert sent(session) == []
    session.release(31.0)
    events = sent(session)
    assert [e["type"] for e in events] == ["session.update", "response.create"]
    assert events[0]["session"]["audio"]["input"]["turn_detection"]["create_response"] is True
    assert "Hi Dana." in events[1]["response"]["instructions"]


def test_voicemail_mode_cancels_the_agent_and_keeps_only_the_message() -> None:
    session = make_session()
    session.start(0.0)
    sent(session)
    session.on_server_event({"type": "response.created", "response": {"id": "r1"}}, 0.1)
    session.enter_voicemail(0.5)
    events = sent(session)
    assert [e["type"] for e in events] == ["response.cancel", "session.update"]
    turn = events[1]["session"]["audio"]["input"]["turn_detection"]
    assert turn["create_response"] is False and turn["interrupt_response"] is False
    session.on_server_event({"type": "response.done", "response": {"id": "r1", "status": "cancelled"}}, 0.6)
    # A response the server made on its own before the update arrived is cancelled too.
    session.on_server_event({"type": "response.created", "response": {"id": "r2"}}, 0.7)
    assert [e["type"] for e in sent(session)] == ["response.cancel"]
    session.on_server_event({"type": "response.done", "response": {"id": "r2", "status": "cancelled"}}, 0.8)
    session.release(1.0)  # too late: a machine stays a machine
    assert sent(session) == []
    session.say("Call us back.", 2.0)
    events = sent(session)
    assert events[-1]["type"] == "response.create"
    assert '"Call us back."' in events[-1]["response"]["instructions"]
    assert session.speaking
    session.on_server_event({"type": "response.created", "response": {"id": "r3"}}, 2.1)
    session.on_server_event({"type": "input_audio_buffer.speech_started", "item_id": "x"}, 2.2)
    assert sent(session) == []  # the machine's noise does not cut the message


def test_a_caller_that_goes_quiet_sends_no_frames_and_the_listener_still_hears_the_end() -> None:
    rate = 24000
    listener = CallerListener(rate)
    pcm = render_phrase("Leave a message.", rate) + sim_audio.beep(rate)  # then no frames at all (A7)
    events: list[Heard] = []
    step = rate * 2 // 50
    for off in range(0, len(pcm), step):
        events += listener.feed(pcm[off : off + step], (off + step) / 2 / rate)
    end = len(pcm) / 2 / rate
    assert listener.idle(end + 0.05) == []
    events += listener.idle(end + 0.2)
    assert [type(e).__name__ for e in events][-2:] == ["BeepEnded", "SpeechStopped"]
    assert abs(events[-2].at - end) <= 0.03 and abs(events[-1].at - end) <= 0.03
    assert listener.idle(end + 0.4) == []
