"""Callee behaviours, Stasis app semantics and channel operations, over the events websocket and real
AudioSocket connections (PROTOCOLS.md A2-A11, §1.3, §2.2, §5), with what `/sim` inspection records.
"""

from __future__ import annotations

import asyncio
import math
import struct
import time
import uuid
import wave
from array import array
from pathlib import Path
from typing import Any

import pytest

from .conftest import APP, EventStream, MediaConnection, MediaServer, Sim, about, wait_until

BUSY = "+15550200001"
CONGESTION = "+15550200002"
REJECT = "+15550200003"
UNREACHABLE = "+15550200004"
INVALID = "+15550200005"
NO_ANSWER = "+15550200006"
LATE = "+15550200007"  # answers after 3 s
HANGS_UP = "+15550200008"  # answers, hangs up itself after 0.5 s
VOICEMAIL = "+15550200009"
DTMF = "+15550200010"
SILENT = "+15550200011"  # answers at once, says nothing
TALKER = "+15550200012"  # answers at once and talks without a pause
GREETING = "Leave a message."  # 16 characters: 1.04 s of speech


@pytest.fixture
def plan_doc() -> dict[str, Any]:
    return {
        "numbers": {
            BUSY: "busy",
            CONGESTION: "congestion",
            REJECT: "reject",
            UNREACHABLE: "unreachable",
            INVALID: "invalid",
            NO_ANSWER: "no_answer",
            LATE: {"behaviour": "answer", "after": 3, "say": []},
            HANGS_UP: {"behaviour": "hangup_after", "seconds": 0.5},
            VOICEMAIL: {"behaviour": "voicemail", "after": 0, "greeting": GREETING, "hangup_after": 0.6},
            DTMF: {
                "behaviour": "dtmf",
                "after": 0,
                "dtmf": [{"at": 0.4, "digits": "12"}],
                "say": [],
                "hangup_after": 1.4,
            },
            SILENT: {"behaviour": "answer", "after": 0, "say": []},
            TALKER: {
                "behaviour": "answer",
                "after": 0,
                "say": [{"at": 0, "text": "Hello there, I keep on talking.", "repeat": True}],
            },
        }
    }


# ------------------------------------------------------------------------------------------------ helpers


async def originate(
    sim: Sim,
    number: str,
    *,
    dial_timeout: int = 30,
    app: str = APP,
    tech: str = "PJSIP",
    channel_id: str | None = None,
) -> str:
    cid = channel_id or str(uuid.uuid4())
    endpoint = f"{tech}/{number}@trunk" if tech == "PJSIP" else f"{tech}/{number}"
    _, body = await sim.request(
        "POST",
        "/ari/channels",
        params={
            "endpoint": endpoint,
            "app": app,
            "appArgs": f"outbound,{cid[:8]}",
            "channelId": cid,
            "timeout": str(dial_timeout),
            "callerId": '"Acme" <+15550001111>',
        },
        expect=200,
    )
    assert body["id"] == cid and body["state"] == "Down"
    return cid


async def bridge_media(
    sim: Sim, media: MediaServer, stream: EventStream, caller: str, fmt: str = "slin16"
) -> tuple[str, str, MediaConnection]:
    bridge_id, media_id = await sim.bridge_with_media(media, stream, caller, fmt)
    return bridge_id, media_id, media.by_uuid(media_id)


def sequence(stream: EventStream, channel_id: str, *keys: str) -> list[tuple[Any, ...]]:
    return [(e["type"], *(e.get(k) for k in keys)) for e in stream.about(channel_id)]


async def call_record(sim: Sim, call_id: str) -> dict[str, Any]:
    _, body = await sim.request("GET", f"/sim/calls/{call_id}", expect=200)
    return body


def samples(frames: list[tuple[float, int, bytes]]) -> array[int]:
    out = array("h")
    for _, _, payload in frames:
        out.frombytes(payload)
    return out


def frequency(frames: list[tuple[float, int, bytes]], rate: int) -> float:
    """Estimated frequency of a pure tone from its zero crossings."""
    s = samples(frames)
    crossings = sum(1 for a, b in zip(s, s[1:], strict=False) if (a < 0) != (b < 0))
    return crossings / 2 / (len(s) / rate)


def groups(frames: list[tuple[float, int, bytes]], gap: float = 0.1) -> list[list[tuple[float, int, bytes]]]:
    """Split frames into runs separated by more than `gap` seconds without a frame."""
    out: list[list[tuple[float, int, bytes]]] = []
    for f in frames:
        if out and f[0] - out[-1][-1][0] <= gap:
            out[-1].append(f)
        else:
            out.append([f])
    return out


@pytest.fixture
async def stream(sim: Sim) -> Any:
    s = await sim.events(APP)
    await wait_until(lambda: sim.pbx.active_app(APP), timeout=2)
    yield s
    await s.close()


# ------------------------------------------------------------------------ PJSIP trunk: failures at setup


@pytest.mark.parametrize(
    ("number", "cause", "tech_cause", "dialstatus", "cause_txt"),
    [
        (BUSY, 17, 486, "BUSY", "User busy"),
        (CONGESTION, 34, 503, "CONGESTION", "Circuit/channel congestion"),
        (REJECT, 21, 603, "NOANSWER", "Call Rejected"),
        (UNREACHABLE, 3, 420, "CHANUNAVAIL", "No route to destination"),
        (INVALID, 1, 404, "NOANSWER", "Unallocated (unassigned) number"),
    ],
)
async def test_pjsip_failure_carries_cause_and_sip_status(
    sim: Sim, stream: EventStream, number: str, cause: int, tech_cause: int, dialstatus: str, cause_txt: str
) -> None:
    cid = await originate(sim, number)
    destroyed = await stream.wait_type("ChannelDestroyed", cid, timeout=3)
    assert destroyed["cause"] == cause and destroyed["cause_txt"] == cause_txt
    assert destroyed["tech_cause"] == tech_cause
    assert sequence(stream, cid, "cause", "tech_cause", "dialstatus") == [
        ("Dial", None, None, ""),
        ("ChannelHangupRequest", cause, tech_cause, None),
        ("Dial", None, None, dialstatus),
        ("ChannelDestroyed", cause, tech_cause, None),
    ]
    dial = next(e for e in stream.about(cid) if e["type"] == "Dial")
    assert dial["dialstring"] == f"{number}@trunk" and "caller" not in dial
    record = await call_record(sim, cid)
    assert record["state"] == "ended" and record["answered_at"] is None
    assert (record["cause"], record["tech_cause"], record["dialstatus"]) == (cause, tech_cause, dialstatus)
    assert record["cause_txt"] == cause_txt and record["ended_by"] == "callee"
    assert (await sim.request("GET", f"/ari/channels/{cid}"))[0] == 404


async def test_no_answer_times_out_with_cause_19(sim: Sim, stream: EventStream) -> None:
    started = time.monotonic()
    cid = await originate(sim, NO_ANSWER, dial_timeout=1)
    destroyed = await stream.wait_type("ChannelDestroyed", cid, timeout=3)
    elapsed = time.monotonic() - started
    assert 0.9 < elapsed < 1.6, elapsed
    assert destroyed["cause"] == 19 and destroyed["cause_txt"] == "User alerting, no answer"
    types = sequence(stream, cid, "dialstatus", "state")
    assert [t[:2] for t in types] == [
        ("Dial", ""),
        ("ChannelStateChange", None),
        ("Dial", "RINGING"),
        ("ChannelDestroyed", None),
    ]
    assert stream.about(cid)[1]["channel"]["state"] == "Ringing"
    assert not any(e["type"] in ("StasisStart", "StasisEnd") for e in stream.about(cid))
    record = await call_record(sim, cid)
    assert record["cause"] == 19 and record["ended_by"] == "timeout" and record["dialstatus"] == "RINGING"


async def test_answer_later_than_the_timeout_is_cause_19(sim: Sim, stream: EventStream) -> None:
    started = time.monotonic()
    cid = await originate(sim, LATE, dial_timeout=1)
    destroyed = await stream.wait_type("ChannelDestroyed", cid, timeout=3)
    assert 0.9 < time.monotonic() - started < 1.6
    assert destroyed["cause"] == 19
    assert [e["dialstatus"] for e in stream.about(cid) if e["type"] == "Dial"] == ["", "RINGING"]
    assert not any(e["type"] == "StasisStart" for e in stream.about(cid))
    assert (await call_record(sim, cid))["answered_at"] is None


async def test_timeout_minus_one_rings_until_the_app_hangs_up(sim: Sim, stream: EventStream) -> None:
    cid = await originate(sim, NO_ANSWER, dial_timeout=-1)
    await stream.wait_for(lambda e: about(e) == cid and e.get("dialstatus") == "RINGING", timeout=2)
    await asyncio.sleep(1.2)
    assert not any(e["type"] == "ChannelDestroyed" for e in stream.about(cid))
    record = await call_record(sim, cid)
    assert record["state"] == "ringing"
    await sim.request("DELETE", f"/ari/channels/{cid}", expect=204)
    request = await stream.wait_type("ChannelHangupRequest", cid)
    assert request["cause"] == 32 and request["soft"] is True
    destroyed = await stream.wait_type("ChannelDestroyed", cid)
    assert destroyed["cause"] == 16
    record = await call_record(sim, cid)
    assert record["state"] == "ended" and record["ended_by"] == "app" and record["answered_at"] is None


# ------------------------------------------------------------------------------------- answered calls


async def test_hangup_after_ends_with_stasis_end_then_cause_16(sim: Sim, stream: EventStream) -> None:
    cid = await originate(sim, HANGS_UP)
    start = await stream.wait_type("StasisStart", cid, timeout=3)
    assert start["args"] == ["outbound", cid[:8]] and start["channel"]["state"] == "Up"
    t0 = time.monotonic()
    destroyed = await stream.wait_type("ChannelDestroyed", cid, timeout=3)
    assert 0.35 < time.monotonic() - t0 < 0.9
    assert destroyed["cause"] == 16 and destroyed["cause_txt"] == "Normal Clearing"
    types = [e["type"] for e in stream.about(cid)]
    assert types[:3] == ["Dial", "ChannelStateChange", "Dial"]
    assert [e["dialstatus"] for e in stream.about(cid) if e["type"] == "Dial"] == ["", "ANSWER"]
    after = types[types.index("StasisStart") :]
    assert after.index("StasisEnd") < after.index("ChannelDestroyed") == len(after) - 1
    record = await call_record(sim, cid)
    assert record["ended_by"] == "callee" and record["cause"] == 16 and record["state"] == "ended"
    assert record["answered_at"] is not None and 0.4 <= record["duration_s"] <= 0.8


async def test_voicemail_greeting_then_beep_then_silence(
    sim: Sim, media_server: MediaServer, stream: EventStream
) -> None:
    cid = await originate(sim, VOICEMAIL)
    await stream.wait_type("StasisStart", cid, timeout=3)
    bridge_id, media_id, conn = await bridge_media(sim, media_server, stream, cid, "slin16")
    await stream.wait_type("ChannelDestroyed", cid, timeout=6)  # the callee hangs up 0.6 s after the beep
    await asyncio.sleep(0.1)
    audio = conn.audio()
    assert {k for _, k, _ in audio} == {0x12}
    runs = groups(audio)
    assert len(runs) == 2, [(round(r[0][0], 2), round(r[-1][0], 2), len(r)) for r in runs]
    greeting, beep = runs
    assert 49 <= len(greeting) <= 54  # 1.04 s of speech in 20 ms frames
    assert 24 <= len(beep) <= 26  # 0.5 s of tone
    assert 0.15 < beep[0][0] - greeting[-1][0] < 0.35  # 0.2 s pause, with no frames at all (A7)
    assert 950 < frequency(beep, 16000) < 1050
    assert max(abs(s) for s in samples(beep)) > 6000
    assert abs(frequency(greeting, 16000) - 1000) > 100  # speech, not the beep
    # nothing after the beep until the callee hung up 0.6 s later
    destroyed_at = conn.frames[-1][0]
    assert destroyed_at == beep[-1][0]
    record = await call_record(sim, cid)
    said = record["said"]
    assert said[0]["text"] == GREETING and said[1]["tone"] == 1000.0 and said[1]["ms"] == 500
    assert record["ended_by"] == "callee"
    await sim.request("DELETE", f"/ari/channels/{media_id}", expect=204)
    await sim.request("DELETE", f"/ari/bridges/{bridge_id}", expect=204)


async def test_dtmf_arrives_as_ari_events_and_audiosocket_frames(
    sim: Sim, media_server: MediaServer, stream: EventStream
) -> None:
    cid = await originate(sim, DTMF)
    await stream.wait_type("StasisStart", cid, timeout=3)
    _, _, conn = await bridge_media(sim, media_server, stream, cid, "slin24")
    await stream.wait_type("ChannelDestroyed", cid, timeout=4)
    dtmf = [e for e in stream.about(cid) if e["type"] == "ChannelDtmfReceived"]
    assert [(e["digit"], e["duration_ms"]) for e in dtmf] == [("1", 100), ("2", 100)]
    await wait_until(lambda: conn.dtmf() == "12", timeout=1)
    assert [p for _, k, p in conn.frames if k == 0x03] == [b"1", b"2"]
    assert conn.audio() == []  # say: [] -> the callee made no sound
    record = await call_record(sim, cid)
    assert [d["digit"] for d in record["dtmf_sent"]] == ["1", "2"]


class TestWavSay:
    WAV_NUMBER = "+15550200020"

    @pytest.fixture
    def wav_path(self, tmp_path: Path) -> Path:
        path = tmp_path / "hello.wav"
        rate = 8000
        with wave.open(str(path), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(rate)
            w.writeframes(
                b"".join(
                    struct.pack("<h", round(12000 * math.sin(2 * math.pi * 500 * i / rate)))
                    for i in range(int(0.4 * rate))
                )
            )
        return path.resolve()

    @pytest.fixture
    def plan_doc(self, wav_path: Path) -> dict[str, Any]:
        return {
            "numbers": {
                self.WAV_NUMBER: {
                    "behaviour": "answer",
                    "after": 0,
                    "hangup_after": 1.2,
                    "say": [{"at": 0.3, "wav": str(wav_path)}],
                }
            }
        }

    async def test_wav_is_sent_as_audio(
        self, sim: Sim, media_server: MediaServer, stream: EventStream, wav_path: Path
    ) -> None:
        cid = await originate(sim, self.WAV_NUMBER)
        await stream.wait_type("StasisStart", cid, timeout=3)
        _, _, conn = await bridge_media(sim, media_server, stream, cid, "slin16")
        await stream.wait_type("ChannelDestroyed", cid, timeout=3)
        audio = conn.audio()
        assert 19 <= len(audio) <= 21  # 0.4 s
        assert all(len(p) == 640 for _, _, p in audio[:-1])
        assert 470 < frequency(audio, 16000) < 530
        assert 11000 < max(abs(s) for s in samples(audio)) <= 12100
        record = await call_record(sim, cid)
        assert record["said"][0]["wav"] == str(wav_path) and record["said"][0]["ms"] == 400


async def test_a_silent_callee_sends_only_the_uuid(
    sim: Sim, media_server: MediaServer, stream: EventStream
) -> None:
    """A7: Asterisk sends audio only while something in the bridge produces media."""
    cid = await originate(sim, SILENT)
    await stream.wait_type("StasisStart", cid, timeout=3)
    _, media_id, conn = await bridge_media(sim, media_server, stream, cid, "slin24")
    await asyncio.sleep(1.0)
    assert [(k, p) for _, k, p in conn.frames] == [(0x01, uuid.UUID(media_id).bytes)]
    await sim.request("DELETE", f"/ari/channels/{cid}", expect=204)


# ------------------------------------------------------------------------------- applications (A11 etc.)


async def test_originate_into_an_app_with_no_websocket_still_dials(sim: Sim) -> None:
    """A11: 200 on originate, the callee is dialed and answers, Stasis fails, the callee is hung up."""
    cid = await originate(sim, SILENT, app="nobody_listening")
    await wait_until(lambda: cid not in sim.pbx.channels, timeout=3)
    record = await call_record(sim, cid)
    assert record["state"] == "ended" and record["ended_by"] == "stasis_failed"
    assert record["answered_at"] is not None and record["dialstatus"] == "ANSWER" and record["cause"] == 16
    assert (await sim.request("GET", f"/ari/channels/{cid}"))[0] == 404


async def test_a_second_websocket_replaces_the_first(sim: Sim) -> None:
    first = await sim.events(APP)
    second = await sim.events(APP)
    try:
        replaced = await first.wait_type("ApplicationReplaced", timeout=2)
        assert replaced["application"] == APP and replaced["asterisk_id"] and replaced["timestamp"]
        assert not any(e["type"] == "ApplicationReplaced" for e in second.events)
        cid = await originate(sim, BUSY)
        await second.wait_type("ChannelDestroyed", cid, timeout=3)
        await asyncio.sleep(0.1)
        assert [e["type"] for e in first.events] == ["ApplicationReplaced"]
        # closing the replaced connection does not unregister the app from the new one
        await first.close()
        await asyncio.sleep(0.1)
        assert sim.pbx.active_app(APP)
        cid2 = await originate(sim, CONGESTION)
        await second.wait_type("ChannelDestroyed", cid2, timeout=3)
    finally:
        await first.close()
        await second.close()


async def test_subscribe_all_sees_channel_and_bridge_creation(sim: Sim, stream: EventStream) -> None:
    watcher = await sim.events("watcher", subscribe_all=True)
    try:
        await wait_until(lambda: sim.pbx.active_app("watcher"), timeout=2)
        cid = await originate(sim, SILENT)
        bridge_id = str(uuid.uuid4())
        await sim.request("POST", "/ari/bridges", params={"bridgeId": bridge_id}, expect=200)
        await stream.wait_type("StasisStart", cid, timeout=3)
        created = await watcher.wait_type("ChannelCreated", cid, timeout=2)
        assert created["application"] == "watcher" and created["channel"]["state"] == "Down"
        bridge_created = await watcher.wait_for(lambda e: e["type"] == "BridgeCreated", timeout=2)
        assert bridge_created["bridge"]["id"] == bridge_id
        await watcher.wait_for(lambda e: e["type"] == "Dial" and about(e) == cid, timeout=2)
        await asyncio.sleep(0.05)
        assert not any(e["type"] in ("ChannelCreated", "BridgeCreated") for e in stream.events)
        assert all(e["application"] == APP for e in stream.events)
        _, watcher_app = await sim.request("GET", "/ari/applications/watcher", expect=200)
        assert watcher_app["name"] == "watcher"
    finally:
        await watcher.close()


async def test_subscribe_all_does_not_receive_other_apps_stasis_start(sim: Sim, stream: EventStream) -> None:
    """res_stasis.c send_start_msg_snapshots/send_end_msg_snapshot use app_send(app, msg): StasisStart and
    StasisEnd go to the app the channel entered, never to other (subscribeAll) apps."""
    watcher = await sim.events("watcher", subscribe_all=True)
    try:
        await wait_until(lambda: sim.pbx.active_app("watcher"), timeout=2)
        cid = await originate(sim, HANGS_UP)
        await stream.wait_type("StasisEnd", cid, timeout=3)
        await watcher.wait_type("ChannelDestroyed", cid, timeout=3)
        assert not [e["type"] for e in watcher.events if e["type"] in ("StasisStart", "StasisEnd")]
    finally:
        await watcher.close()


async def test_get_application(sim: Sim, stream: EventStream) -> None:
    assert (await sim.request("GET", "/ari/applications/not_registered"))[0] == 404
    cid = await originate(sim, SILENT)
    await stream.wait_type("StasisStart", cid, timeout=3)
    bridge_id = str(uuid.uuid4())
    await sim.request("POST", "/ari/bridges", params={"bridgeId": bridge_id}, expect=200)
    await sim.request("POST", f"/ari/bridges/{bridge_id}/addChannel", params={"channel": cid}, expect=204)
    _, app = await sim.request("GET", f"/ari/applications/{APP}", expect=200)
    assert app["name"] == APP and cid in app["channel_ids"] and bridge_id in app["bridge_ids"]
    for key in ("endpoint_ids", "device_names", "events_allowed", "events_disallowed"):
        assert app[key] == []
    _, apps = await sim.request("GET", "/ari/applications", expect=200)
    assert APP in [a["name"] for a in apps]


# ------------------------------------------------------------------------------------------- inbound (A4)


async def test_inbound_call_ends_with_stasis_end_and_no_channel_destroyed(
    sim: Sim, stream: EventStream
) -> None:
    did = "15551230000"
    _, body = await sim.request(
        "POST",
        "/sim/inbound",
        json={
            "did": did,
            "caller_number": "+19175551212",
            "caller_name": "Caller",
            "app": APP,
            "behaviour": {"behaviour": "hangup_after", "seconds": 0.5},
        },
        expect=200,
    )
    cid = body["channel"]["id"]
    assert body["call"] == cid
    start = await stream.wait_type("StasisStart", cid, timeout=3)
    assert start["args"] == ["inbound", did]
    assert start["channel"]["dialplan"]["app_data"] == f"{APP},inbound,{did}"
    assert start["channel"]["caller"] == {"name": "Caller", "number": "+19175551212"}
    await stream.wait_type("StasisEnd", cid, timeout=3)
    await asyncio.sleep(0.3)
    assert not any(e["type"] == "ChannelDestroyed" for e in stream.about(cid)), "A4"
    assert stream.about(cid)[-1]["type"] == "StasisEnd"
    record = await call_record(sim, cid)
    assert record["direction"] == "inbound" and record["state"] == "ended" and record["ended_by"] == "callee"
    assert record["app_args"] == ["inbound", did]
    assert (await sim.request("GET", f"/ari/channels/{cid}"))[0] == 404


async def test_inbound_with_the_named_app_not_connected_fails_stasis(sim: Sim) -> None:
    _, body = await sim.request(
        "POST",
        "/sim/inbound",
        json={
            "did": "100",
            "caller_number": "+19175551212",
            "app": APP,
            "behaviour": {"behaviour": "answer", "after": 0, "say": []},
        },
        expect=200,
    )
    cid = body["call"]
    await wait_until(lambda: cid not in sim.pbx.channels, timeout=2)
    record = await call_record(sim, cid)
    assert record["state"] == "ended" and record["ended_by"] == "stasis_failed"


async def test_inbound_without_app_needs_exactly_one_connected_app(sim: Sim) -> None:
    spec = {"did": "100", "caller_number": "+19175551212", "behaviour": {"behaviour": "human"}}
    status, body = await sim.request("POST", "/sim/inbound", json=spec)
    assert status == 400 and "app is required" in body["message"]
    s = await sim.events(APP)
    try:
        await wait_until(lambda: sim.pbx.active_app(APP), timeout=2)
        _, body = await sim.request("POST", "/sim/inbound", json=spec, expect=200)
        start = await s.wait_type("StasisStart", body["call"], timeout=2)
        assert start["application"] == APP
    finally:
        await s.close()


async def test_inbound_input_errors(sim: Sim, stream: EventStream) -> None:
    for spec in (
        {"caller_number": "1"},
        {"did": "1"},
        {"did": "1", "caller_number": "2", "behaviour": "busy"},
        {"did": "1", "caller_number": "2", "behaviour": {"behaviour": "bogus"}},
    ):
        status, _ = await sim.request("POST", "/sim/inbound", json={"app": APP, **spec})
        assert status == 400, spec


# ----------------------------------------------------------------------------------------- /sim actions


async def test_sim_call_actions(sim: Sim, media_server: MediaServer, stream: EventStream) -> None:
    cid = await originate(sim, SILENT)
    await stream.wait_type("StasisStart", cid, timeout=3)
    _, _, conn = await bridge_media(sim, media_server, stream, cid, "slin16")
    _, record = await sim.request("POST", f"/sim/calls/{cid}/say", json={"text": "Hello there."}, expect=200)
    assert record["said"][-1]["text"] == "Hello there."
    await wait_until(lambda: len(conn.audio()) >= 30, timeout=2)  # 12 chars = 0.78 s = 39 frames
    _, record = await sim.request("POST", f"/sim/calls/{cid}/dtmf", json={"digits": "5#"}, expect=200)
    await wait_until(lambda: conn.dtmf() == "5#", timeout=2)
    # The ARI events travel on another connection than the AudioSocket frames: they may come a bit later.
    await wait_until(
        lambda: [e["digit"] for e in stream.about(cid) if e["type"] == "ChannelDtmfReceived"] == ["5", "#"],
        timeout=2,
    )
    status, _ = await sim.request("POST", f"/sim/calls/{cid}/dtmf", json={"digits": "x"})
    assert status == 400
    status, _ = await sim.request("POST", f"/sim/calls/{cid}/dance", json={})
    assert status == 404
    _, record = await sim.request("POST", f"/sim/calls/{cid}/hangup", json={}, expect=200)
    assert record["state"] == "ended" and record["ended_by"] == "callee"
    destroyed = await stream.wait_type("ChannelDestroyed", cid, timeout=2)
    assert destroyed["cause"] == 16
    types = [e["type"] for e in stream.about(cid)]
    assert types.index("StasisEnd") < types.index("ChannelDestroyed")
    status, body = await sim.request("POST", f"/sim/calls/{cid}/say", json={"text": "too late"})
    assert (status, body) == (409, {"message": "Call has ended"})
    assert (await sim.request("POST", "/sim/calls/nope/hangup", json={}))[0] == 404


async def test_sim_hangup_of_a_ringing_call_rejects_it(sim: Sim, stream: EventStream) -> None:
    cid = await originate(sim, NO_ANSWER, dial_timeout=-1)
    await stream.wait_for(lambda e: about(e) == cid and e.get("dialstatus") == "RINGING", timeout=2)
    status, _ = await sim.request("POST", f"/sim/calls/{cid}/say", json={"text": "hi"})
    assert status == 409
    await sim.request("POST", f"/sim/calls/{cid}/hangup", json={"cause": 17}, expect=200)
    destroyed = await stream.wait_type("ChannelDestroyed", cid, timeout=2)
    assert destroyed["cause"] == 17 and destroyed["tech_cause"] == 486
    assert [e["dialstatus"] for e in stream.about(cid) if e["type"] == "Dial"][-1] == "BUSY"


async def test_sim_calls_filters(sim: Sim, stream: EventStream) -> None:
    ended = await originate(sim, BUSY)
    await stream.wait_type("ChannelDestroyed", ended, timeout=3)
    live = await originate(sim, NO_ANSWER, dial_timeout=-1)
    _, body = await sim.request("GET", "/sim/calls", params={"state": "live"}, expect=200)
    assert [c["id"] for c in body["calls"]] == [live]
    _, body = await sim.request("GET", "/sim/calls", params={"state": "ended", "number": BUSY}, expect=200)
    assert [c["id"] for c in body["calls"]] == [ended]
    assert body["calls"][0]["behaviour"] == "busy" and body["calls"][0]["number"] == BUSY
    _, body = await sim.request(
        "GET", "/sim/calls", params={"state": "ended", "number": BUSY.lstrip("+")}, expect=200
    )
    assert [c["id"] for c in body["calls"]] == [ended]
    _, body = await sim.request(
        "GET", "/sim/calls", params={"state": "ended", "number": NO_ANSWER}, expect=200
    )
    assert body["calls"] == []
    _, body = await sim.request("GET", "/sim/calls", expect=200)
    assert {c["id"] for c in body["calls"]} == {ended, live}
    _, stats = await sim.request("GET", "/sim/stats", expect=200)
    assert stats["live_calls"] == 1 and stats["ended_calls"] == 1
    assert stats["apps"][APP] == {"connected": True, "subscribe_all": False}
    await sim.request("DELETE", f"/ari/channels/{live}", expect=204)


# --------------------------------------------------------------------------- playbacks, records, snoop


async def test_channel_playback(sim: Sim, stream: EventStream) -> None:
    cid = await originate(sim, SILENT)
    await stream.wait_type("StasisStart", cid, timeout=3)
    status, pb = await sim.request("POST", f"/ari/channels/{cid}/play", params={"media": "digits:1"})
    assert status == 201
    assert pb["media_uri"] == "digits:1" and pb["target_uri"] == f"channel:{cid}" and pb["state"] == "queued"
    started = await stream.wait_for(lambda e: e["type"] == "PlaybackStarted", timeout=2)
    assert started["playback"]["id"] == pb["id"] and started["playback"]["state"] == "playing"
    assert (await sim.request("GET", f"/ari/playbacks/{pb['id']}"))[0] == 200
    finished = await stream.wait_for(lambda e: e["type"] == "PlaybackFinished", timeout=2)
    assert finished["playback"]["id"] == pb["id"] and finished["playback"]["state"] == "done"
    assert (await sim.request("GET", f"/ari/playbacks/{pb['id']}"))[0] == 404
    # a tone plays until stopped
    _, tone = await sim.request(
        "POST", f"/ari/channels/{cid}/play/ring-1", params={"media": "tone:ring"}, expect=201
    )
    assert tone["id"] == "ring-1"
    await stream.wait_for(lambda e: e["type"] == "PlaybackStarted" and e["playback"]["id"] == "ring-1")
    status, _ = await sim.request("POST", f"/ari/channels/{cid}/play/ring-1", params={"media": "tone:ring"})
    assert status == 409
    await sim.request("DELETE", "/ari/playbacks/ring-1", expect=204)
    await stream.wait_for(lambda e: e["type"] == "PlaybackFinished" and e["playback"]["id"] == "ring-1")
    record = await call_record(sim, cid)
    assert record["playbacks"] == ["digits:1", "tone:ring"]


async def test_bridge_playback_reaches_the_audiosocket(
    sim: Sim, media_server: MediaServer, stream: EventStream
) -> None:
    cid = await originate(sim, SILENT)
    await stream.wait_type("StasisStart", cid, timeout=3)
    bridge_id, _, conn = await bridge_media(sim, media_server, stream, cid, "slin24")
    _, pb = await sim.request(
        "POST", f"/ari/bridges/{bridge_id}/play", params={"media": "sound:hello-world"}, expect=201
    )
    assert pb["target_uri"] == f"bridge:{bridge_id}"
    await stream.wait_for(
        lambda e: e["type"] == "PlaybackFinished" and e["playback"]["id"] == pb["id"], timeout=3
    )
    audio = conn.audio()
    assert len(audio) >= 30  # "hello world": 0.7 s
    assert {k for _, k, _ in audio} == {0x13} and max(len(p) for _, _, p in audio) == 960
    assert max(abs(s) for s in samples(audio)) > 1000
    n = len(audio) - 1
    assert 0.8 < (audio[-1][0] - audio[0][0]) / (n * 0.02) < 1.25  # paced, not bursted


async def test_channel_recording(sim: Sim, stream: EventStream) -> None:
    cid = await originate(sim, SILENT)
    await stream.wait_type("StasisStart", cid, timeout=3)
    status, rec = await sim.request(
        "POST", f"/ari/channels/{cid}/record", params={"name": "rec-1", "format": "wav"}
    )
    assert status == 201 and rec["name"] == "rec-1" and rec["state"] == "recording"
    assert rec["target_uri"] == f"channel:{cid}"
    started = await stream.wait_for(lambda e: e["type"] == "RecordingStarted", timeout=2)
    assert started["recording"]["name"] == "rec-1"
    assert (await sim.request("GET", "/ari/recordings/live/rec-1"))[0] == 200
    status, _ = await sim.request(
        "POST", f"/ari/channels/{cid}/record", params={"name": "rec-1", "format": "wav"}
    )
    assert status == 409
    await sim.request("POST", "/ari/recordings/live/rec-1/stop", expect=204)
    finished = await stream.wait_for(lambda e: e["type"] == "RecordingFinished", timeout=2)
    assert finished["recording"]["name"] == "rec-1" and finished["recording"]["state"] == "done"
    _, stored = await sim.request("GET", "/ari/recordings/stored", expect=200)
    assert {"name": "rec-1", "format": "wav"} in stored
    assert (await sim.request("GET", "/ari/recordings/live/rec-1"))[0] == 404
    status, _ = await sim.request(
        "POST", f"/ari/channels/{cid}/record", params={"name": "rec-1", "format": "wav"}
    )
    assert status == 409  # ifExists=fail
    await sim.request(
        "POST",
        f"/ari/channels/{cid}/record",
        params={"name": "rec-1", "format": "wav", "ifExists": "overwrite"},
        expect=201,
    )
    status, _ = await sim.request(
        "POST", f"/ari/channels/{cid}/record", params={"name": "r2", "format": "mp9"}
    )
    assert status == 422


async def test_snoop_enters_stasis_with_its_args(sim: Sim, stream: EventStream) -> None:
    cid = await originate(sim, SILENT)
    await stream.wait_type("StasisStart", cid, timeout=3)
    status, _ = await sim.request("POST", f"/ari/channels/{cid}/snoop", params={"app": APP})
    assert status == 400  # neither spy nor whisper
    _, snoop = await sim.request(
        "POST",
        f"/ari/channels/{cid}/snoop/snoop-1",
        params={"app": APP, "appArgs": "snoop,listen", "spy": "in"},
        expect=200,
    )
    assert snoop["id"] == "snoop-1" and snoop["name"].startswith(f"Snoop/{cid}-")
    start = await stream.wait_type("StasisStart", "snoop-1", timeout=2)
    assert start["args"] == ["snoop", "listen"]
    assert (
        await sim.request("POST", f"/ari/channels/{cid}/snoop/snoop-1", params={"app": APP, "spy": "in"})
    )[0] == 409
    # the snoop goes with its target
    await sim.request("DELETE", f"/ari/channels/{cid}", expect=204)
    await stream.wait_type("ChannelDestroyed", "snoop-1", timeout=2)


async def test_list_channels_shows_live_channels_and_the_local_peer(sim: Sim, stream: EventStream) -> None:
    local = await originate(sim, "human@callee", tech="Local")
    trunk = await originate(sim, NO_ANSWER, dial_timeout=-1)
    await stream.wait_type("StasisStart", local, timeout=3)
    _, channels = await sim.request("GET", "/ari/channels", expect=200)
    by_id = {c["id"]: c for c in channels}
    assert {local, f"{local};2", trunk} <= set(by_id)
    assert by_id[local]["name"].startswith("Local/human@callee-") and by_id[local]["name"].endswith(";1")
    assert by_id[f"{local};2"]["name"].endswith(";2")
    assert by_id[local]["state"] == "Up" and by_id[trunk]["state"] == "Ringing"
    # the app sees the ;2 half's events too (A2)
    assert stream.about(f"{local};2")
    await sim.request("DELETE", f"/ari/channels/{local}", expect=204)
    await sim.request("DELETE", f"/ari/channels/{trunk}", expect=204)
    await stream.wait_type("ChannelDestroyed", f"{local};2", timeout=2)
    _, channels = await sim.request("GET", "/ari/channels", expect=200)
    assert channels == []


async def test_snoop_spy_in_carries_the_callee_audio(
    sim: Sim, media_server: MediaServer, stream: EventStream
) -> None:
    """A listen-only AI (§5 Snoop): a spy=in snoop bridged with an AudioSocket leg hears the callee."""
    cid = await originate(sim, TALKER)
    await stream.wait_type("StasisStart", cid, timeout=3)
    _, snoop = await sim.request(
        "POST", f"/ari/channels/{cid}/snoop", params={"app": APP, "appArgs": "snoop", "spy": "in"}, expect=200
    )
    await stream.wait_type("StasisStart", snoop["id"], timeout=2)
    _, _, conn = await bridge_media(sim, media_server, stream, snoop["id"], "slin16")
    await wait_until(lambda: len(conn.audio()) >= 15, timeout=2)
    assert max(abs(s) for s in samples(conn.audio())) > 1000
    await sim.request("DELETE", f"/ari/channels/{cid}", expect=204)
    await stream.wait_type("ChannelDestroyed", snoop["id"], timeout=2)


async def test_channels_stay_in_stasis_while_the_websocket_is_down(sim: Sim) -> None:
    """§1.4: closing the websocket deactivates the app; its channels are not hung up; events are dropped,
    and reconnecting with the same name makes the app active again."""
    first = await sim.events(APP)
    await wait_until(lambda: sim.pbx.active_app(APP), timeout=2)
    cid = await originate(sim, SILENT)
    await first.wait_type("StasisStart", cid, timeout=3)
    await first.close()
    await wait_until(lambda: not sim.pbx.active_app(APP), timeout=2)
    await sim.request("POST", f"/sim/calls/{cid}/dtmf", json={"digits": "7"}, expect=200)  # dropped
    await asyncio.sleep(0.4)
    _, channel = await sim.request("GET", f"/ari/channels/{cid}", expect=200)
    assert channel["state"] == "Up"
    assert (await call_record(sim, cid))["state"] == "up"
    second = await sim.events(APP)
    try:
        await wait_until(lambda: sim.pbx.active_app(APP), timeout=2)
        await asyncio.sleep(0.1)
        assert not any(e["type"] == "ChannelDtmfReceived" for e in second.events)  # not replayed
        await sim.request(
            "POST", f"/ari/channels/{cid}/variable", params={"variable": "BACK", "value": "1"}, expect=204
        )  # still in Stasis
        await sim.request("DELETE", f"/ari/channels/{cid}", expect=204)
        destroyed = await second.wait_type("ChannelDestroyed", cid, timeout=2)
        assert destroyed["cause"] == 16
    finally:
        await second.close()


async def test_a_playback_ends_when_its_channel_hangs_up(sim: Sim, stream: EventStream) -> None:
    cid = await originate(sim, SILENT)
    await stream.wait_type("StasisStart", cid, timeout=3)
    await sim.request("POST", f"/ari/channels/{cid}/play/ringback", params={"media": "tone:ring"}, expect=201)
    await stream.wait_for(lambda e: e["type"] == "PlaybackStarted", timeout=2)
    await sim.request("DELETE", f"/ari/channels/{cid}", expect=204)
    await stream.wait_type("ChannelDestroyed", cid, timeout=2)
    await asyncio.sleep(0.2)
    assert (await sim.request("GET", "/ari/playbacks/ringback"))[0] == 404
    assert any(e["type"] == "PlaybackFinished" for e in stream.events)


async def test_a_recording_ends_when_its_channel_hangs_up(sim: Sim, stream: EventStream) -> None:
    cid = await originate(sim, SILENT)
    await stream.wait_type("StasisStart", cid, timeout=3)
    await sim.request(
        "POST", f"/ari/channels/{cid}/record", params={"name": "call-rec", "format": "wav"}, expect=201
    )
    await sim.request("DELETE", f"/ari/channels/{cid}", expect=204)
    await stream.wait_type("ChannelDestroyed", cid, timeout=2)
    await asyncio.sleep(0.2)
    assert (await sim.request("GET", "/ari/recordings/live/call-rec"))[0] == 404
    assert any(e["type"] == "RecordingFinished" for e in stream.events)
    _, stored = await sim.request("GET", "/ari/recordings/stored", expect=200)
    assert {"name": "call-rec", "format": "wav"} in stored


async def test_a_bridge_playback_ends_when_the_bridge_is_destroyed(sim: Sim, stream: EventStream) -> None:
    cid = await originate(sim, SILENT)
    await stream.wait_type("StasisStart", cid, timeout=3)
    bridge_id = str(uuid.uuid4())
    await sim.request("POST", "/ari/bridges", params={"bridgeId": bridge_id}, expect=200)
    await sim.request("POST", f"/ari/bridges/{bridge_id}/addChannel", params={"channel": cid}, expect=204)
    await sim.request("POST", f"/ari/bridges/{bridge_id}/play/moh", params={"media": "tone:ring"}, expect=201)
    await stream.wait_for(lambda e: e["type"] == "PlaybackStarted", timeout=2)
    await sim.request("DELETE", f"/ari/bridges/{bridge_id}", expect=204)
    await asyncio.sleep(0.2)
    assert (await sim.request("GET", "/ari/playbacks/moh"))[0] == 404
    assert any(e["type"] == "PlaybackFinished" for e in stream.events)


async def test_an_events_outage_closes_the_websocket_refuses_reconnects_and_calls_go_on(
    sim: Sim, stream: EventStream
) -> None:
    cid = await originate(sim, NO_ANSWER, dial_timeout=-1)
    _, body = await sim.request("POST", "/sim/events/outage", json={"seconds": 0.5}, expect=200)
    assert body == {"closed": 1, "seconds": 0.5}
    await asyncio.wait_for(stream.ws.receive(), 3)  # the close
    assert stream.ws.closed
    # During the outage the events websocket is refused; REST and the call go on.
    async with sim.session.get(f"{sim.base}/ari/events", params={"app": APP}) as resp:
        assert resp.status == 503
    _, stats = await sim.request("GET", "/sim/stats", expect=200)
    assert stats["apps"][APP]["connected"] is False
    await sim.request("GET", f"/ari/channels/{cid}", expect=200)
    await asyncio.sleep(0.6)
    again = await sim.events()
    _, stats = await sim.request("GET", "/sim/stats", expect=200)
    assert stats["apps"][APP]["connected"] is True
    await again.ws.close()
    await sim.request("DELETE", f"/ari/channels/{cid}", expect=204)


@pytest.mark.parametrize("seconds", [-1, "10", None, True, 4000])
async def test_an_events_outage_needs_a_sane_duration(sim: Sim, seconds: Any) -> None:
    status, body = await sim.request("POST", "/sim/events/outage", json={"seconds": seconds})
    assert status == 400 and "seconds" in body["message"]
