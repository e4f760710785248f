"""Bridge recordings in the simulator: the mixed audio of both sides in a WAV, the stored-recording API."""

from __future__ import annotations

import asyncio
import io
import math
import wave
from array import array
from typing import Any

import pytest

from telephony.sim.recorder import Mixdown
from wire import audiosocket

from .conftest import APP, EventStream, MediaServer, Sim, wait_until
from .test_behaviours import bridge_media, call_record, originate

SPEAKER = "+15550200030"  # answers at once and says one short phrase


@pytest.fixture
def plan_doc() -> dict[str, Any]:
    return {"numbers": {SPEAKER: {"behaviour": "answer", "after": 0, "say": [{"at": 0, "text": "Hello?"}]}}}


@pytest.fixture
async def stream(sim: Sim) -> Any:
    s = await sim.events(APP)
    await wait_until(lambda: sim.pbx.active_app(APP), timeout=2)
    yield s
    await s.close()


def tone_pcm(freq: float, seconds: float, rate: int, amplitude: int = 8000) -> bytes:
    n = int(seconds * rate)
    return array("h", [int(amplitude * math.sin(2 * math.pi * freq * i / rate)) for i in range(n)]).tobytes()


def goertzel(samples: array[int], freq: float, rate: int) -> float:
    """Relative power of ``freq`` in ``samples`` (normalised by the samples' energy)."""
    k = 2 * math.cos(2 * math.pi * freq / rate)
    s1 = s2 = 0.0
    for x in samples:
        s1, s2 = x + k * s1 - s2, s1
    power = s1 * s1 + s2 * s2 - k * s1 * s2
    energy = sum(x * x for x in samples) or 1
    return power / (energy * len(samples) / 2)


def rms(samples: array[int]) -> float:
    return math.sqrt(sum(x * x for x in samples) / max(len(samples), 1))


def test_mixdown_adds_sources_with_clipping() -> None:
    mix = Mixdown("wav", started=100.0)
    mix.add_at(array("h", [1000] * 80).tobytes(), 8000, 100.0)
    mix.add_at(array("h", [32000] * 80).tobytes(), 8000, 100.005)  # 40 samples later
    assert len(mix.samples) == 120
    assert mix.samples[0] == 1000 and mix.samples[50] == 32767 and mix.samples[100] == 32000
    mix.add_stream("agent", array("h", [5] * 160).tobytes(), 8000, 100.5)
    mix.add_stream("agent", array("h", [7] * 160).tobytes(), 8000, 100.505)  # a burst: laid end to end
    assert mix.samples[4000] == 5 and mix.samples[4160] == 7 and len(mix.samples) == 4320
    mix.pad_to(101.0)
    data = mix.file_bytes()
    with wave.open(io.BytesIO(data)) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()) == (1, 2, 8000, 8000)


async def test_bridge_recording_mixes_both_sides_into_a_wav(
    sim: Sim, media_server: MediaServer, stream: EventStream
) -> None:
    cid = await originate(sim, SPEAKER)
    await stream.wait_type("StasisStart", cid, timeout=3)
    bridge_id, _media_id, conn = await bridge_media(sim, media_server, stream, cid, "slin16")
    status, rec = await sim.request(
        "POST", f"/ari/bridges/{bridge_id}/record", params={"name": "rec-x", "format": "wav"}
    )
    assert status == 201 and rec["target_uri"] == f"bridge:{bridge_id}"
    started = await stream.wait_for(lambda e: e["type"] == "RecordingStarted", timeout=2)
    assert started["recording"]["name"] == "rec-x"
    # same name while in progress: 409 (even with overwrite); unknown format: 422
    for params in (
        {"name": "rec-x", "format": "wav"},
        {"name": "rec-x", "format": "wav", "ifExists": "overwrite"},
    ):
        assert (await sim.request("POST", f"/ari/bridges/{bridge_id}/record", params=params))[0] == 409
    assert (
        await sim.request("POST", f"/ari/bridges/{bridge_id}/record", params={"name": "r2", "format": "mp9"})
    )[0] == 422
    await asyncio.sleep(1.0)  # the callee's "Hello?" (about 0.4 s) plays first
    # then the agent speaks: 0.6 s of a 440 Hz tone, paced in 20 ms slin16 frames
    pcm = tone_pcm(440, 0.6, 16000)
    for i in range(0, len(pcm), 640):
        conn.send(audiosocket.encode_audio(audiosocket.KIND_SLIN16, pcm[i : i + 640]))
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.3)
    await sim.request("DELETE", f"/ari/bridges/{bridge_id}", expect=204)  # the recording ends with it
    finished = await stream.wait_for(lambda e: e["type"] == "RecordingFinished", timeout=2)
    assert finished["recording"]["state"] == "done" and finished["recording"]["duration"] >= 1
    assert (await sim.request("GET", "/ari/recordings/stored/rec-x", expect=200))[1] == {
        "name": "rec-x",
        "format": "wav",
    }
    async with sim.session.get(f"{sim.ari}/recordings/stored/rec-x/file") as resp:
        assert resp.status == 200 and resp.content_type == "audio/wav"
        data = await resp.read()
    with wave.open(io.BytesIO(data)) as w:
        assert w.getframerate() == 8000 and w.getnchannels() == 1
        samples = array("h", w.readframes(w.getnframes()))
    assert 1.7 < len(samples) / 8000 < 2.6
    callee = samples[0 : int(0.35 * 8000)]
    silence = samples[int(0.6 * 8000) : int(0.95 * 8000)]
    agent = samples[int(1.1 * 8000) : int(1.5 * 8000)]
    assert rms(callee) > 500 and rms(agent) > 3000 and rms(silence) < 50
    assert goertzel(agent, 440, 8000) > 0.5 > goertzel(callee, 440, 8000)
    record = await call_record(sim, cid)
    assert record["recordings"] == ["rec-x"]
    # the stored file goes on DELETE; unknown names are 404
    await sim.request("DELETE", "/ari/recordings/stored/rec-x", expect=204)
    for method, path in (
        ("GET", "/ari/recordings/stored/rec-x"),
        ("GET", "/ari/recordings/stored/rec-x/file"),
        ("DELETE", "/ari/recordings/stored/rec-x"),
    ):
        assert (await sim.request(method, path))[0] == 404


async def test_a_call_never_recorded_lists_no_recording(
    sim: Sim, media_server: MediaServer, stream: EventStream
) -> None:
    cid = await originate(sim, SPEAKER)
    await stream.wait_type("StasisStart", cid, timeout=3)
    await bridge_media(sim, media_server, stream, cid, "slin16")
    assert (await call_record(sim, cid))["recordings"] == []
    assert (await sim.request("GET", "/ari/recordings/stored", expect=200))[1] == []
