"""AMD() in the simulator: app_amd.c's algorithm over a callee's own audio, and the ai-amd dialplan hop
(``/continue`` → StasisEnd, AMD, ``Stasis(app,amd,STATUS,CAUSE)``) as the Stasis app sees it."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from telephony.sim.amd import AmdParams, detect, overlay
from telephony.sim.plan import PlanError, machine_timeline, parse_behaviour
from telephony.sim.sounds import render_greeting, render_phrase, render_tone

from .conftest import APP, EventStream, Sim

HUMAN = "+15550300001"  # answers, says "Hello?" 0.4 s later
MACHINE = "+15550300002"  # 3 s greeting, a beep
MACHINE_NO_BEEP = "+15550300003"
QUITTER = "+15550300004"  # answers and hangs up 0.6 s later, during the analysis
SILENT = "+15550300005"  # answers and says nothing
AMD_ARGS = "2500,1500,800,5000,100,50,2,256,5000"


def timeline(*items: tuple[float, bytes]) -> bytes:
    out = bytearray()
    for at, pcm in items:
        overlay(out, at, pcm)
    return bytes(out)


# --------------------------------------------------------------------------------------- the algorithm


def test_a_short_hello_then_silence_is_human() -> None:
    result = detect(timeline((0.5, render_phrase("Hello?", 8000))), AmdParams())
    assert (result.status, result.cause) == ("HUMAN", "HUMAN-800-800")
    assert 1500 <= result.ms <= 1800  # 0.5 s silence, 0.39 s of "Hello?", 0.8 s after it


def test_two_words_reach_the_maximum_number_of_words() -> None:
    result = detect(timeline((0.3, render_phrase("Hi, you have reached Bob.", 8000))), AmdParams())
    assert (result.status, result.cause) == ("MACHINE", "MAXWORDS-2-2")


def test_one_long_word_is_a_long_greeting() -> None:
    result = detect(timeline((0.3, render_tone(300.0, 3.0, 8000))), AmdParams())
    assert (result.status, result.cause) == ("MACHINE", "LONGGREETING-1500-1500")


def test_maximum_word_length() -> None:
    params = AmdParams(greeting=9000, maximum_word_length=1000, total_analysis_time=9000)
    result = detect(timeline((0.3, render_tone(300.0, 3.0, 8000))), params)
    assert (result.status, result.cause) == ("MACHINE", "MAXWORDLENGTH-1000")


def test_silence_is_initial_silence_and_a_short_total_is_notsure() -> None:
    assert detect(b"", AmdParams()).cause == "INITIALSILENCE-2500-2500"
    result = detect(b"", AmdParams(total_analysis_time=2000))
    assert (result.status, result.cause) == ("NOTSURE", "TOOLONG-2000")


def test_hangup_during_the_analysis() -> None:
    result = detect(b"", AmdParams(), hangup_ms=600)
    assert (result.status, result.cause, result.ms) == ("HANGUP", "", 600)


def test_silence_threshold_decides_what_is_voice() -> None:
    quiet = render_tone(300.0, 3.0, 8000)
    loud = detect(timeline((0.3, quiet)), AmdParams()).status
    deaf = detect(timeline((0.3, quiet)), AmdParams(silence_threshold=30000)).cause
    assert loud == "MACHINE" and deaf == "INITIALSILENCE-2500-2500"


def test_arguments_parse_like_the_dialplan_application() -> None:
    assert AmdParams.parse("") == AmdParams()
    assert AmdParams.parse("3000,,900") == AmdParams(initial_silence=3000, after_greeting_silence=900)
    assert AmdParams.parse(AMD_ARGS).args() == AMD_ARGS


def test_machine_plan_entries() -> None:
    b = parse_behaviour({"behaviour": "machine", "greeting_s": 3, "beep_hz": 850, "beep_s": 0.4})
    assert b.is_machine and b.answers and b.beep_hz == 850.0
    t = machine_timeline(b)
    assert t.greeting_end == pytest.approx(3.3) and t.beep_end == pytest.approx(3.9)
    assert machine_timeline(parse_behaviour({"behaviour": "machine", "beep_hz": None})).beep_at is None
    assert parse_behaviour("voicemail").is_machine
    assert len(render_greeting("Leave a message.", 2.5, 8000)) == 2 * 20000
    with pytest.raises(PlanError, match="greeting_s"):
        parse_behaviour({"behaviour": "answer", "greeting_s": 3})
    with pytest.raises(PlanError, match="greeting_s"):
        parse_behaviour({"behaviour": "machine", "greeting_s": 99})


# ------------------------------------------------------------------------------------- the dialplan hop


@pytest.fixture
def plan_doc() -> dict[str, Any]:
    return {
        "numbers": {
            HUMAN: {"behaviour": "answer", "after": 0, "say": [{"at": 0.4, "text": "Hello?"}]},
            MACHINE: {"behaviour": "machine", "after": 0, "greeting_s": 3.0, "hangup_after": 5},
            MACHINE_NO_BEEP: {"behaviour": "machine", "after": 0, "greeting_s": 2.0, "beep_hz": None},
            QUITTER: {"behaviour": "hangup_after", "seconds": 0.6},
            SILENT: {"behaviour": "answer", "after": 0, "say": []},
        }
    }


async def originate_amd(sim: Sim, number: str, *, amd_args: str = AMD_ARGS) -> str:
    cid = str(uuid.uuid4())
    await sim.request(
        "POST",
        "/ari/channels",
        json={
            "endpoint": f"PJSIP/{number}@trunk",
            "app": APP,
            "appArgs": f"outbound,{cid},amd",
            "channelId": cid,
            "variables": {"AI_AMD_ARGS": amd_args, "AI_STASIS_APP": APP},
        },
        expect=200,
    )
    return cid


def hop_types(stream: EventStream, cid: str) -> list[str]:
    """The channel's event types, without the ChannelVarset STASISSTATUS that follows StasisEnd at once
    (the channel is still subscribed when it leaves)."""
    return [
        e["type"]
        for e in stream.about(cid)
        if not (e["type"] == "ChannelVarset" and e.get("variable") == "STASISSTATUS")
    ]


async def hop(sim: Sim, stream: EventStream, cid: str) -> None:
    first = await stream.wait_type("StasisStart", cid, timeout=3)
    assert first["args"] == ["outbound", cid, "amd"]
    await sim.request(
        "POST",
        f"/ari/channels/{cid}/continue",
        params={"context": "ai-amd", "extension": "s", "priority": "1"},
        expect=204,
    )


@pytest.mark.parametrize(
    ("number", "status", "cause"),
    [(HUMAN, "HUMAN", "HUMAN-800-800"), (MACHINE, "MACHINE", "MAXWORDS-2-2"), (SILENT, "MACHINE", None)],
)
async def test_continue_into_ai_amd_comes_back_with_the_result(
    sim: Sim, number: str, status: str, cause: str | None
) -> None:
    stream = await sim.events()
    cid = await originate_amd(sim, number)
    await hop(sim, stream, cid)
    back = await stream.wait_for(
        lambda e: e["type"] == "StasisStart" and e["channel"]["id"] == cid and e["args"][0] == "amd",
        timeout=6,
    )
    assert back["args"][1] == status
    if cause is not None:
        assert back["args"][2] == cause
    else:
        assert back["args"][2] == "INITIALSILENCE-2500-2500"
    types = hop_types(stream, cid)
    first, second = types.index("StasisStart"), len(types) - 1 - types[::-1].index("StasisStart")
    # Between the hop's StasisEnd and the re-entry the app hears nothing of the channel (unsubscribed).
    assert "StasisEnd" in types[first + 1 : second]
    assert types[types.index("StasisEnd") + 1 : second] == []
    assert "ChannelDestroyed" not in types
    _, record = await sim.request("GET", f"/sim/calls/{cid}", expect=200)
    assert record["amd"]["status"] == status and record["amd"]["params"] == AMD_ARGS
    _, channel = await sim.request("GET", f"/ari/channels/{cid}", expect=200)
    assert channel["dialplan"]["app_name"] == "Stasis"
    assert channel["dialplan"]["app_data"] == f"{APP},amd,{status},{back['args'][2]}"
    await sim.request("DELETE", f"/ari/channels/{cid}", expect=204)
    await stream.wait_type("ChannelDestroyed", cid, timeout=3)
    await stream.close()


async def test_a_callee_hanging_up_during_detection_destroys_the_channel_unheard(sim: Sim) -> None:
    stream = await sim.events()
    cid = await originate_amd(sim, QUITTER)
    await hop(sim, stream, cid)
    _, during = await sim.request("GET", f"/ari/channels/{cid}", expect=200)
    assert during["dialplan"]["context"] == "ai-amd" and during["dialplan"]["app_name"] == "AMD"
    await asyncio.sleep(1.0)
    status, _ = await sim.request("GET", f"/ari/channels/{cid}")
    assert status == 404
    types = hop_types(stream, cid)
    assert types[-1] == "StasisEnd" and "ChannelDestroyed" not in types
    _, record = await sim.request("GET", f"/sim/calls/{cid}", expect=200)
    assert record["ended_by"] == "callee" and record["amd"]["status"] == "HANGUP"
    assert "decided_at" not in record["amd"]
    await stream.close()


async def test_the_machine_record_has_its_greeting_and_beep(sim: Sim) -> None:
    stream = await sim.events()
    cid = await originate_amd(sim, MACHINE)
    await stream.wait_type("StasisStart", cid, timeout=3)
    _, record = await sim.request("GET", f"/sim/calls/{cid}", expect=200)
    m = record["machine"]
    assert m["greeting_end"] - m["greeting_start"] == pytest.approx(3.0)
    assert m["beep_end"] - m["beep_start"] == pytest.approx(0.5) and m["beep_hz"] == 1000.0
    await sim.request("DELETE", f"/ari/channels/{cid}", expect=204)
    await stream.close()
