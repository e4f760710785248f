"""Audio helpers, the VAD, the voices (tones, tone pattern, espeak via a fake executable), the agent brain."""

from __future__ import annotations

import base64
import math
import shutil
import stat
import struct
import sys
import time
from pathlib import Path

import pytest

from media.localai.audio import (
    BYTES_PER_MS,
    WavError,
    clip_from_pcm,
    parse_wav,
    pattern_ms,
    resample,
    tone,
    tone_pattern,
)
from media.localai.policy import (
    AGENT_GREETING,
    AGENT_TOOL_REPLIES,
    MENU_SENTENCE,
    AgentPolicy,
    CallTool,
    Context,
    RulesError,
    Speak,
    load_rules,
    quoted_text,
    rules_from_doc,
)
from media.localai.vad import EnergyVad, chunk_rms
from media.localai.voices import EspeakVoice, PatternVoice, ToneVoice

from .conftest import silence_pcm, tone_pcm

ALL_TOOLS = frozenset(AGENT_TOOL_REPLIES)


def wav_bytes(pcm: bytes, rate: int, channels: int = 1, streaming: bool = False) -> bytes:
    size = 0xFFFFFFFF if streaming else len(pcm)
    fmt = struct.pack("<HHIIHH", 1, channels, rate, rate * 2 * channels, 2 * channels, 16)
    return (
        b"RIFF"
        + struct.pack("<I", size)
        + b"WAVE"
        + b"fmt "
        + struct.pack("<I", 16)
        + fmt
        + b"data"
        + struct.pack("<I", size)
        + pcm
    )


def test_clip_chunks_are_delta_sized_whole_samples() -> None:
    clip = clip_from_pcm(bytes(BYTES_PER_MS * 250), delta_ms=100)
    assert clip.chunk_bytes == (4800, 4800, 2400)
    assert clip.duration_ms == 250
    assert base64.b64decode(clip.chunks[2]) == bytes(2400)
    odd = clip_from_pcm(b"\x01\x02" * 30 + b"\x03", delta_ms=100)  # 1.25 ms and a stray byte
    assert odd.chunk_bytes == (96,)  # padded with silence to 2 whole ms
    assert base64.b64decode(odd.chunks[0]) == b"\x01\x02" * 30 + bytes(36)


def test_test_tone_is_440_hz_at_amplitude_8000() -> None:
    voice = ToneVoice(reply_ms=500, delta_ms=100)
    pcm = b"".join(base64.b64decode(c) for c in voice.cached("anything").chunks)
    assert len(pcm) == 500 * BYTES_PER_MS
    samples = struct.unpack(f"<{len(pcm) // 2}h", pcm)
    assert 7900 <= max(samples) <= 8000
    crossings = sum(1 for a, b in zip(samples, samples[1:], strict=False) if a < 0 <= b)
    assert crossings == pytest.approx(220, abs=2)  # 440 Hz over 0.5 s


def test_rms_and_vad_thresholds() -> None:
    assert chunk_rms(tone(300.0, 20, 8000)) == pytest.approx(8000 / math.sqrt(2), rel=0.05)
    assert chunk_rms(silence_pcm(20)) == 0
    vad = EnergyVad(rms_threshold=500, silence_ms=500)
    assert vad.feed(tone_pcm(40)) == []
    started = vad.feed(tone_pcm(30))  # 70 ms of speech including the 40 above
    assert [(t.kind, t.ms) for t in started] == [("started", 0)]
    # Odd-sized appends are stitched together: the timeline counts every sample.
    pcm = silence_pcm(520)
    out = []
    for i in range(0, len(pcm), 333):
        out += vad.feed(pcm[i : i + 333])
    assert [(t.kind, t.ms) for t in out] == [("stopped", 80)]


def test_wav_parsing_and_resampling() -> None:
    pcm = tone(440.0, 100, 8000)
    assert parse_wav(wav_bytes(pcm, 24000)) == (pcm, 24000, 1)
    assert parse_wav(wav_bytes(pcm, 22050, streaming=True))[0] == pcm  # espeak's placeholder sizes
    with pytest.raises(WavError):
        parse_wav(b"not a wav file at all")
    src = struct.pack("<4h", 0, 1000, 2000, 3000)
    out = struct.unpack("<8h", resample(src, 12000, 24000))
    assert out == (0, 500, 1000, 1500, 2000, 2500, 3000, 3000)
    assert len(resample(bytes(2 * 22050), 22050)) == 2 * 24000


def test_tone_pattern_length_follows_the_text() -> None:
    short, long = PatternVoice(delta_ms=100).cached("Hi"), PatternVoice(delta_ms=100).cached("x" * 50)
    assert short.duration_ms == 600  # the minimum
    assert long.duration_ms == 3000 == pattern_ms("x" * 50)
    assert PatternVoice(delta_ms=100).cached("y" * 10_000).duration_ms == 8000  # capped
    assert len(tone_pattern(1000)) == 1000 * BYTES_PER_MS
    assert chunk_rms(tone_pattern(1000)[:960]) > 1000  # audible


FAKE_ESPEAK = """#!{python}
import struct, sys
args = sys.argv[1:]
with open({log!r}, "a") as f:
    f.write(repr(args) + "\\n")
text = args[-1]
rate = 22050
n = rate * 20 * len(text) // 1000
pcm = struct.pack("<%dh" % n, *([3000, -3000] * (n // 2) + [0] * (n % 2)))
fmt = struct.pack("<HHIIHH", 1, 1, rate, rate * 2, 2, 16)
head = b"RIFF" + b"\\xff" * 4 + b"WAVE" + b"fmt " + struct.pack("<I", 16) + fmt
sys.stdout.buffer.write(head + b"data" + b"\\xff" * 4 + pcm)
"""


@pytest.fixture
def fake_espeak(tmp_path: Path) -> tuple[str, Path]:
    log = tmp_path / "calls.log"
    exe = tmp_path / "espeak-ng"
    exe.write_text(FAKE_ESPEAK.format(python=sys.executable, log=str(log)))
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    return str(exe), log


def test_espeak_voice_renders_resamples_and_caches(fake_espeak: tuple[str, Path]) -> None:
    exe, log = fake_espeak
    voice = EspeakVoice(executable=exe, delta_ms=100, voice="en-us")
    assert voice.cached("-Hello there") is None
    clip = voice.render("-Hello there")
    assert clip.duration_ms == pytest.approx(20 * len("-Hello there"), abs=1)  # 22.05 kHz → 24 kHz
    assert voice.cached("-Hello there") is clip
    assert voice.render("-Hello there") is clip
    calls = log.read_text().splitlines()
    assert calls == [repr(["--stdout", "-v", "en-us", "--", "-Hello there"])]  # once; "--" guards the text


def test_espeak_failure_falls_back_to_tones(tmp_path: Path) -> None:
    voice = EspeakVoice(executable=str(tmp_path / "missing-espeak"), delta_ms=100)
    clip = voice.render("Hello")
    assert clip.duration_ms == 600  # the tone pattern's minimum


@pytest.mark.skipif(
    not (shutil.which("espeak-ng") or shutil.which("espeak")), reason="espeak-ng not installed"
)
def test_real_espeak_speaks() -> None:
    exe = shutil.which("espeak-ng") or shutil.which("espeak")
    assert exe is not None
    started = time.monotonic()
    clip = EspeakVoice(executable=exe, delta_ms=100).render("Hello, this is a test.")
    assert 500 < clip.duration_ms < 5000
    assert time.monotonic() - started < 10
    pcm = b"".join(base64.b64decode(c) for c in clip.chunks)
    assert chunk_rms(pcm) > 100  # real speech, not silence


def ctx(
    last: str = "none", text: str | None = None, instructions: str | None = None, tool: str | None = None
) -> Context:
    return Context(last, text, tool, instructions, ALL_TOOLS)  # type: ignore[arg-type]


def test_agent_policy() -> None:
    policy = AgentPolicy()
    assert policy.plan(
        ctx(instructions='Greet the caller. Say exactly: "Hi Dana, this is Ava from Acme."')
    ) == Speak("Hi Dana, this is Ava from Acme.")
    assert policy.plan(ctx()) == Speak(AGENT_GREETING)
    assert policy.plan(ctx("user_audio")) == Speak(MENU_SENTENCE)
    assert policy.plan(ctx("user_text", "The caller pressed 4")) == Speak(MENU_SENTENCE)  # (7: urgent)
    call = policy.plan(ctx("user_text", "The caller pressed 1"))
    assert isinstance(call, CallTool) and call.name == "transfer_to_human"
    assert policy.plan(ctx("function_call_output", tool="add_to_dnc")) == Speak(
        AGENT_TOOL_REPLIES["add_to_dnc"]
    )
    assert quoted_text("Say \u201cHello there\u201d now") == "Hello there"
    assert quoted_text("No quotes here") is None


def test_rules_files(tmp_path: Path) -> None:
    path = tmp_path / "rules.json"
    path.write_text(
        '[{"match": "callback", "tool": "schedule_callback",'
        ' "arguments": {"local_time": "{tomorrow}T09:30"}}]'
    )
    [rule] = load_rules(path)
    assert rule.render_arguments()["local_time"].endswith("T09:30")
    bad: object
    for bad in ({}, [{"match": "", "tool": "x"}], [{"match": "a", "tool": "x", "arguments": []}], ["x"]):
        with pytest.raises(RulesError):
            rules_from_doc(bad)
    with pytest.raises(RulesError):
        load_rules(tmp_path / "missing.json")
