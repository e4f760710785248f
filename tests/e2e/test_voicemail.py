"""Answering machines end to end: the PBX simulator (machines with a greeting and a beep, AMD() emulated in
the ``ai-amd`` hop), the Stasis app, Celery, the real media worker and the Realtime stand-in, each its own
process, on this test's PostgreSQL database and Redis.

What it proves, judged by the simulator's own record of each call (what the callee heard, and when, against
when its greeting and beep played): a machine gets the campaign's message after its beep (or after its
greeting ends when it has no beep), never over the greeting, and is hung up by us; the attempt says
``voicemail_left``; a person gets the agent within 2 s of the answer."""

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

MACHINE = "+12125559101"  # greeting, beep, silence
MACHINE_NO_BEEP = "+12125559102"  # greeting, then silence
PERSON = "+12125559103"  # "Hello?"
GREETING = "Hi, this is Dana. I cannot take your call, please leave a message after the tone."
MESSAGE = "Hi Dana, this is Acme about your order. Please call us back. Thank you."
PLAN = {
    "default": {"behaviour": "busy", "after": 0.1},
    "numbers": {
        MACHINE: {"behaviour": "machine", "after": 0.5, "greeting": GREETING, "beep_hz": 1000, "beep_s": 0.5},
        MACHINE_NO_BEEP: {"behaviour": "machine", "after": 0.5, "greeting": GREETING, "beep_hz": None},
        PERSON: {
            "behaviour": "answer",
            "after": 0.5,
            "say": [{"at": 0.3, "text": "Hello?"}],
            "hangup_after": 12,
        },
    },
}


def test_machines_get_the_message_after_the_beep_and_people_get_the_agent(stack: Stack) -> None:
    stack.start_sim(PLAN)
    tenant = make_tenant(max_concurrent_calls=5, calls_per_second=10)
    make_pbx(
        tenant, ari_url=stack.ari_url, ari_user=SIM_USER, password_env=PASSWORD_ENV, app_name=SIM_APP,
        endpoint_template="PJSIP/{number}@trunk", max_channels=20, calls_per_second=20,
    )  # fmt: skip
    agent = make_agent(
        tenant, instructions="You are the test agent.", greeting="Hello {{name}}, this is Acme."
    )
    campaign = make_campaign(
        tenant, agent=agent, ring_timeout=10, max_attempts=1,
        calling_windows={day: [["00:00", "24:00"]] for day in WEEKDAYS},
        amd_enabled=True, voicemail_action="leave_message", voicemail_message_text=MESSAGE,
    )  # fmt: skip
    zone = zone_where_it_is(14)
    for number in (MACHINE, MACHINE_NO_BEEP, PERSON):
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
        return attempts.count() == 3 and all(a.ended_at and a.media_metrics for a in attempts)

    wait_for(reported, timeout=150, what="the three calls to end with their media report")
    attempts = {a.number: a for a in CallAttempt.objects.filter(campaign=campaign)}
    with stack.sim() as sim:
        calls = {c["number"]: c for c in sim.get("/sim/calls", params={"state": "all"}).json()["calls"]}

    for number in (MACHINE, MACHINE_NO_BEEP):
        attempt, call = attempts[number], calls[number]
        machine, spurts = call["machine"], call["heard"]["spurts"]
        print(number, call["amd"], machine, spurts, attempt.media_metrics)
        assert attempt.outcome == AttemptOutcome.VOICEMAIL_LEFT, (attempt.outcome, attempt.media_metrics)
        assert attempt.answered_by == "machine" and attempt.voicemail_left_at is not None
        assert attempt.media_metrics["voicemail_left"] is True
        assert call["heard"]["heard_ms"] >= 1000, "the message was heard"
        after = machine["beep_end"] if machine["beep_end"] is not None else machine["greeting_end"]
        assert spurts and all(start >= after + 0.15 for start, _end in spurts), (
            "the agent spoke over the greeting or the beep",
            after,
            spurts,
        )
        if machine["beep_end"] is None:
            assert spurts[0][0] >= machine["greeting_end"] + 1.4, "no beep: 1.5 s of silence first"
        else:
            assert spurts[0][0] <= machine["beep_end"] + 1.5, "the message starts right after the beep"
        assert call["ended_by"] == "app" and call["ended_at"] is not None, "we hung up, not the machine"
        agent_lines = [line["text"] for line in attempt.transcript if line["role"] == "agent"]
        assert agent_lines == [MESSAGE], attempt.transcript

    person, person_call = attempts[PERSON], calls[PERSON]
    print(PERSON, person_call["amd"], person_call["heard"], person.media_metrics)
    assert person.outcome == AttemptOutcome.ANSWERED and person.answered_by == "human"
    assert person.media_metrics["voicemail_left"] is False
    first_heard = person_call["heard"]["first_voiced_at"]
    assert first_heard is not None, "the person heard the agent"
    answered = _epoch(person_call["answered_at"])
    assert first_heard - answered <= 2.0, f"answer → first agent audio {first_heard - answered:.2f} s"
    # The agent was prepared during AMD's hop: nothing reached the person before the verdict, and the agent
    # was heard right after it.
    assert person_call["amd"]["status"] == "HUMAN" and person.amd_status == "HUMAN", person_call["amd"]
    assert person_call["app_args"][-1] == "amd"
    decided = person_call["amd"]["decided_at"]
    assert first_heard >= decided - 0.05, "nothing reached the callee during AMD"
    assert first_heard - decided < 1.5, "the agent was ready when AMD decided"


def test_without_amd_the_beep_detector_catches_the_machine_and_the_message_follows(stack: Stack) -> None:
    """AMD off: the agent greets at once (the machine's greeting barges in: nothing could know yet), the
    media worker's beep detector re-classifies the call, nothing of the agent is heard over the beep, and the
    message starts right after it. (Cutting off an agent that is talking when the beep comes is proven over
    real sockets in tests/media/test_worker_voicemail.py.)"""
    stack.start_sim(PLAN)
    tenant = make_tenant(max_concurrent_calls=5, calls_per_second=10)
    make_pbx(
        tenant, ari_url=stack.ari_url, ari_user=SIM_USER, password_env=PASSWORD_ENV, app_name=SIM_APP,
        endpoint_template="PJSIP/{number}@trunk", max_channels=20, calls_per_second=20,
    )  # fmt: skip
    agent = make_agent(tenant, instructions="You are the test agent.", greeting="Hello, this is Acme.")
    campaign = make_campaign(
        tenant, agent=agent, ring_timeout=10, max_attempts=1,
        calling_windows={day: [["00:00", "24:00"]] for day in WEEKDAYS},
        amd_enabled=False, voicemail_action="leave_message", voicemail_message_text=MESSAGE,
    )  # fmt: skip
    lead_add(campaign=campaign, contact=make_contact(tenant, MACHINE, timezone=zone_where_it_is(14)))
    campaign_start(campaign=campaign)
    stack.start_realtime(extra=["--reply-ms", "8000", "--speed", "5"])
    stack.start_media_worker()
    stack.start_stasis(Pbx.objects.get(placements__tenant=tenant).pk)
    stack.wait_stasis_connected()
    stack.start_worker(concurrency=2)
    stack.start_beat()

    def reported() -> bool:
        attempt = CallAttempt.objects.filter(campaign=campaign).first()
        return attempt is not None and bool(attempt.ended_at and attempt.media_metrics)

    wait_for(reported, timeout=120, what="the call to end with its media report")
    attempt = CallAttempt.objects.get(campaign=campaign)
    with stack.sim() as sim:
        call = next(
            c
            for c in sim.get("/sim/calls", params={"state": "all"}).json()["calls"]
            if c["number"] == MACHINE
        )
    machine, spurts = call["machine"], call["heard"]["spurts"]
    print(call["amd"], machine, spurts, attempt.media_metrics)
    assert call["amd"] == {}, "no AMD() hop"
    assert attempt.outcome == AttemptOutcome.VOICEMAIL_LEFT, (attempt.outcome, attempt.media_metrics)
    assert attempt.answered_by == "machine" and attempt.machine_source == "beep"
    assert attempt.media_metrics["machine_source"] == "beep"
    assert spurts[0][0] < machine["beep_start"], "the agent greeted at once (no AMD)"
    cut_by = machine["beep_start"] + 0.5  # 200 ms of tone to recognise it, then the frames already out
    assert not [s for s in spurts if s[1] > cut_by and s[0] < machine["beep_end"] + 0.15], (
        "nothing of the agent over the beep",
        spurts,
    )
    message = [s for s in spurts if s[0] >= machine["beep_end"]]
    assert message and message[0][0] <= machine["beep_end"] + 1.5, spurts
    assert call["ended_by"] == "app"


def _epoch(iso: Any) -> float:
    from datetime import datetime

    return datetime.fromisoformat(str(iso)).timestamp()
