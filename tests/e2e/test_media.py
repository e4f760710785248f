"""Answered calls end to end through the real media worker: the PBX simulator, the Stasis app, Celery, the
media worker (``python -m media``) and the Realtime-protocol stand-in, each its own process, on this test's
PostgreSQL database and Redis.

What it proves: the callee hears the agent (the simulator measures the audio its callee received), the
agent hears the callee (the callee's speech is answered) and its DTMF, ``end_call`` hangs the call up
through the Stasis app, ``transfer_to_human`` bridges a human in its place, and the transcript and media
metrics land on the attempts.
"""

from __future__ import annotations

from typing import Any

import pytest

from campaigns.lifecycle import AttemptOutcome
from campaigns.models import CallAttempt, Pbx
from campaigns.services.campaigns import campaign_start
from campaigns.services.contacts import lead_add
from campaigns.windows import WEEKDAYS
from tests.campaigns.factories import make_agent, make_campaign, make_contact, make_pbx, make_tenant
from tests.e2e.stack import PASSWORD_ENV, SIM_APP, SIM_USER, Stack, wait_for, zone_where_it_is

pytestmark = [
    pytest.mark.slow,
    pytest.mark.postgres,
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(300),
]

TALKER = "+12125559001"  # says something, then presses # (the stand-in's rule: end_call)
WANTS_A_PERSON = "+12125559002"  # presses 1 (transfer_to_human)
HUMAN = "+12125559099"  # the colleague: answers, talks a little, hangs up
PLAN = {
    "default": {"behaviour": "busy", "after": 0.1},
    "numbers": {
        TALKER: {
            "behaviour": "answer",
            "after": 0.5,
            "say": [{"at": 2.5, "text": "Hello, who is calling please?"}],
            "dtmf": [{"at": 8, "digits": "#"}],
            "hangup_after": 40,
        },
        WANTS_A_PERSON: {
            "behaviour": "answer",
            "after": 0.5,
            "dtmf": [{"at": 4, "digits": "1"}],
            "hangup_after": 40,
        },
        HUMAN: {
            "behaviour": "answer",
            "after": 1.0,
            "say": [{"at": 0.3, "text": "Sales, Sam speaking."}],
            "hangup_after": 4,
        },
    },
}


def test_the_agent_talks_hears_takes_dtmf_ends_calls_and_transfers(stack: Stack) -> None:
    stack.start_sim(PLAN)
    tenant = make_tenant(max_concurrent_calls=5, calls_per_second=10)
    make_pbx(
        tenant, ari_url=stack.ari_url, ari_user=SIM_USER, password_env=PASSWORD_ENV, app_name=SIM_APP,
        endpoint_template="PJSIP/{number}@trunk", max_channels=20, calls_per_second=20,
    )  # fmt: skip
    agent = make_agent(
        tenant,
        instructions="You are the test agent calling {{name}}.",
        greeting="Hello {{name}}, this is the test agent.",
        tools=["end_call", "transfer_to_human", "set_disposition"],
        transfer_numbers=[HUMAN],
    )
    campaign = make_campaign(
        tenant, agent=agent, ring_timeout=10, max_attempts=1,
        calling_windows={day: [["00:00", "24:00"]] for day in WEEKDAYS},
    )  # fmt: skip
    zone = zone_where_it_is(14)
    for number in (TALKER, WANTS_A_PERSON):
        lead_add(campaign=campaign, contact=make_contact(tenant, number, name="Dana", timezone=zone))
    campaign_start(campaign=campaign)

    stack.start_realtime(extra=["--reply-ms", "1500", "--speed", "5"])
    stack.start_media_worker()
    stack.start_stasis(Pbx.objects.get(placements__tenant=tenant).pk)
    stack.wait_stasis_connected()
    stack.start_worker(concurrency=4)
    stack.start_beat()

    def reported() -> bool:
        attempts = CallAttempt.objects.filter(campaign=campaign)
        return attempts.count() == 2 and all(a.ended_at and a.media_metrics for a in attempts)

    wait_for(reported, timeout=120, what="both calls to end with their media report")
    attempts = {a.number: a for a in CallAttempt.objects.filter(campaign=campaign)}
    with stack.sim() as sim:
        calls = {c["number"]: c for c in sim.get("/sim/calls", params={"state": "all"}).json()["calls"]}

    # The talker: heard the agent, was answered after speaking, pressed #, and the agent hung up.
    talker, talker_call = attempts[TALKER], calls[TALKER]
    assert talker.outcome == AttemptOutcome.ANSWERED
    assert talker_call["heard"]["heard_ms"] > 1000, talker_call["heard"]
    assert talker_call["dtmf_sent"], talker_call
    assert talker_call["duration_s"] < 20, "hung up by the agent (end_call), not by the callee at 40 s"
    roles = _texts(talker.transcript)
    assert roles["caller"] and "[pressed #]" in roles["caller"]
    assert roles["agent"], talker.transcript
    assert any(text.startswith("end_call") for text in roles["system"])
    metrics = talker.media_metrics
    assert metrics["answer_to_first_audio_ms"] is not None
    assert metrics["replies"] >= 1, "the callee's speech reached the agent and was answered"
    assert metrics["dtmf"] == 1 and metrics["frames_in"] > 0

    # The one who wanted a person: transferred to the human, who talked and hung up; then the call ended.
    wants, wants_call, human_call = attempts[WANTS_A_PERSON], calls[WANTS_A_PERSON], calls[HUMAN]
    assert wants.transferred_to == HUMAN
    assert wants.outcome == AttemptOutcome.ANSWERED
    assert human_call["answered_at"] is not None
    assert human_call["heard"]["heard_ms"] > 0 or wants_call["heard"]["heard_ms"] > 0
    assert any(text.startswith("transfer_to_human") for text in _texts(wants.transcript)["system"]), (
        wants.transcript,
        wants.media_metrics,
    )
    assert wants_call["ended_at"] >= human_call["ended_at"], "the caller was hung up after the human left"


def _texts(transcript: list[dict[str, Any]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {"agent": [], "caller": [], "system": []}
    for line in transcript:
        out.setdefault(line["role"], []).append(line["text"])
    return out
