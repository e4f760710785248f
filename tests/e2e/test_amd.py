"""Answering machines end to end on real processes: the PBX simulator (AMD() emulated in its ``ai-amd``
dialplan hop over the callee's own audio), the Stasis app, Celery, the media worker and the Realtime
stand-in, on this test's PostgreSQL database and Redis.

Judged from the simulator's record of each call (what its callee heard, and when): a machine with a beep
gets the campaign's message only after the beep ended; a machine without a beep only after its greeting
ended; a person gets the agent at once after AMD's verdict. The attempts say who answered and how it
ended (``voicemail_left`` / ``answered``).
"""

from __future__ import annotations

from typing import Any

import pytest

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

PERSON = "+12125559101"  # answers, says "Hello?", listens
MACHINE = "+12125559102"  # a 4 s greeting, a beep, then silence
NO_BEEP = "+12125559103"  # a 3 s greeting, no beep, then silence
MESSAGE = "Hello, this is the test agent. Please call us back at your convenience."
PLAN = {
    "default": {"behaviour": "busy", "after": 0.1},
    "numbers": {
        PERSON: {
            "behaviour": "answer",
            "after": 0.5,
            "say": [{"at": 0.4, "text": "Hello?"}],
            "hangup_after": 12,
        },
        MACHINE: {"behaviour": "machine", "after": 0.5, "greeting_s": 4.0, "hangup_after": 40},
        NO_BEEP: {
            "behaviour": "machine",
            "after": 0.5,
            "greeting_s": 3.0,
            "beep_hz": None,
            "hangup_after": 40,
        },
    },
}


def first_spurt(call: dict[str, Any]) -> float | None:
    spurts = call["heard"]["spurts"]
    return spurts[0][0] if spurts else None


def test_machines_get_the_message_after_the_beep_and_people_get_the_agent(stack: Stack) -> None:
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
        tools=["end_call"],
    )
    campaign = make_campaign(
        tenant, agent=agent, ring_timeout=10, max_attempts=1,
        calling_windows={day: [["00:00", "24:00"]] for day in WEEKDAYS},
        amd_enabled=True, voicemail_action="leave_message", voicemail_message_text=MESSAGE,
    )  # fmt: skip
    zone = zone_where_it_is(14)
    for number in (PERSON, MACHINE, NO_BEEP):
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

    # Every call went through AMD() with the campaign's (default) thresholds.
    for number in (PERSON, MACHINE, NO_BEEP):
        assert calls[number]["amd"]["params"] == "2500,1500,600,5000,100,50,2,256,5000", calls[number]
        assert calls[number]["app_args"][-1] == "amd"

    # The person: AMD said HUMAN, the agent spoke right after it, no message.
    person, person_call = attempts[PERSON], calls[PERSON]
    assert person_call["amd"]["status"] == "HUMAN", person_call["amd"]
    assert (person.amd_status, person.answered_by, person.outcome) == ("HUMAN", "human", "answered")
    heard_at = first_spurt(person_call)
    assert heard_at is not None, person_call["heard"]
    assert heard_at >= person_call["amd"]["decided_at"] - 0.05, "nothing reached the callee during AMD"
    assert heard_at - person_call["amd"]["decided_at"] < 1.5, "the agent was ready when AMD decided"
    assert person.voicemail_left_at is None

    # The machine with a beep: the message starts only after the beep ended, and is left.
    machine, machine_call = attempts[MACHINE], calls[MACHINE]
    assert machine_call["amd"]["status"] == "MACHINE"
    assert (machine.answered_by, machine.outcome) == ("machine", "voicemail_left"), (
        machine.outcome,
        machine.media_metrics,
    )
    beep_end = machine_call["machine"]["beep_end"]
    started = first_spurt(machine_call)
    assert started is not None and started >= beep_end, (started, machine_call["machine"])
    assert started - beep_end < 2.0, "the message followed the beep"
    assert machine_call["heard"]["heard_ms"] >= 1000, "the message was played"
    assert machine.voicemail_left_at is not None
    assert machine_call["ended_by"] == "app", "the agent hung up after the message"

    # The machine without a beep: the message waits for the end of the greeting.
    quiet, quiet_call = attempts[NO_BEEP], calls[NO_BEEP]
    assert quiet.answered_by == "machine" and quiet.outcome == "voicemail_left", quiet.media_metrics
    started = first_spurt(quiet_call)
    assert started is not None and started >= quiet_call["machine"]["greeting_end"], quiet_call["machine"]
