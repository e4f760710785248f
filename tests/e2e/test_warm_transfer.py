"""Warm transfers end to end on real processes: the PBX simulator, the Stasis app, Celery, the media worker
and the Realtime-protocol stand-in (the local agent), on this test's PostgreSQL and Redis.

Each callee presses 1 (the stand-in's rule: ``transfer_to_human``); the agent's request goes media →
Celery (the pick among the campaign's targets) → the Stasis app, which puts the callee on hold (music) and
dials the human. The human joins the agent, is briefed, and presses 1 (accept: the callee is connected with
them) or 2 (decline: the human leg is hung up and the callee is back with the agent, who says so), or never
answers (the same after the transfer's timeout). Judged
against the simulator's record of the calls: music on hold, who was in the bridge with whom, who hung up.
"""

from __future__ import annotations

from typing import Any

import pytest

from campaigns.models import CallAttempt, CallTransfer, Pbx
from campaigns.services.campaigns import campaign_start
from campaigns.services.contacts import lead_add
from campaigns.services.transfers import campaign_set_transfer_targets, transfer_target_create
from campaigns.windows import WEEKDAYS
from tests.campaigns.factories import make_agent, make_campaign, make_contact, make_pbx, make_tenant
from tests.e2e.stack import PASSWORD_ENV, SIM_APP, SIM_USER, Stack, wait_for, zone_where_it_is

pytestmark = [
    pytest.mark.slow,
    pytest.mark.postgres,
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(300),
]

CALLEE_A = "+12125559011"  # wants a person; their transfer is accepted
CALLEE_B = "+12125559012"  # wants a person; their transfer is declined
CALLEE_C = "+12125559013"  # wants a person; nobody answers
REP = "+12125559091"  # the sales rep of the group: answers, listens to the brief, presses 1, talks, hangs up
DECLINER = "+12125559092"  # answers, listens to the brief, presses 2
NOBODY = "+12125559093"  # never answers
TRANSFER_TIMEOUT_S = 8  # how long the human leg may ring (the worker's setting, in the command)
CALLEE = {"behaviour": "answer", "after": 0.5, "dtmf": [{"at": 4, "digits": "1"}], "hangup_after": 30}
PLAN = {
    "default": {"behaviour": "busy", "after": 0.1},
    "numbers": {
        CALLEE_A: CALLEE,
        CALLEE_B: CALLEE,
        CALLEE_C: CALLEE,
        NOBODY: {"behaviour": "no_answer"},
        REP: {"behaviour": "answer", "after": 1.0, "dtmf": [{"at": 7, "digits": "1"}], "hangup_after": 12},
        DECLINER: {
            "behaviour": "answer",
            "after": 1.0,
            "dtmf": [{"at": 7, "digits": "2"}],
            "hangup_after": 40,
        },
    },
}


def test_warm_transfer_accepted_and_declined(stack: Stack) -> None:
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
        tools=["end_call", "transfer_to_human"],
    )
    group = transfer_target_create(
        tenant=tenant, name="Sales team", kind="group", mode="warm",
        members=[{"name": "Sam", "number": REP, "max_concurrent": 1}],
    )  # fmt: skip
    decliner = transfer_target_create(tenant=tenant, name="Busy desk", kind="number", number=DECLINER)
    nobody = transfer_target_create(tenant=tenant, name="Empty desk", kind="number", number=NOBODY)
    windows = {day: [["00:00", "24:00"]] for day in WEEKDAYS}
    zone = zone_where_it_is(14)
    campaigns = {}
    for callee, target in ((CALLEE_A, group), (CALLEE_B, decliner), (CALLEE_C, nobody)):
        campaign = make_campaign(
            tenant, agent=agent, ring_timeout=10, max_attempts=1, calling_windows=windows
        )
        campaign_set_transfer_targets(campaign=campaign, target_ids=[target.pk])
        lead_add(campaign=campaign, contact=make_contact(tenant, callee, name="Dana", timezone=zone))
        campaign_start(campaign=campaign)
        campaigns[callee] = campaign

    stack.start_realtime(extra=["--reply-ms", "1500", "--speed", "5"])
    stack.start_media_worker()
    stack.start_stasis(Pbx.objects.get(placements__tenant=tenant).pk)
    stack.wait_stasis_connected()
    stack.start_worker(concurrency=4, env={"TRANSFER_TIMEOUT_S": str(TRANSFER_TIMEOUT_S)})
    stack.start_beat()

    def reported() -> bool:
        attempts = CallAttempt.objects.filter(tenant=tenant)
        return attempts.count() == 3 and all(a.ended_at and a.media_metrics for a in attempts)

    wait_for(reported, timeout=150, what="the calls to end with their media report")
    attempts = {a.number: a for a in CallAttempt.objects.filter(tenant=tenant)}
    with stack.sim() as sim:
        calls = {c["number"]: c for c in sim.get("/sim/calls", params={"state": "all"}).json()["calls"]}

    # Accepted: the callee heard music on hold from before the rep answered until they were connected;
    # then the callee and the rep were alone in the bridge (the agent's leg gone).
    a, a_call, rep_call = attempts[CALLEE_A], calls[CALLEE_A], calls[REP]
    a_leg = f"xfer-{a.pk}"
    assert rep_call["answered_at"] is not None, rep_call
    assert len(a_call["moh"]) == 1 and a_call["moh"][0]["stopped_at"] is not None, a_call["moh"]
    moh = a_call["moh"][0]
    connected = [b for b in a_call["bridged"] if a_leg in b["members"]]
    assert connected, a_call["bridged"]
    assert len(connected[0]["members"]) == 2 and not _has_media(connected[0]), connected
    assert moh["started_at"] <= connected[0]["at"] and moh["stopped_at"] <= connected[0]["at"] + 0.5
    # The rep was briefed by the agent first (in the bridge with the media leg, and heard it).
    assert any(_has_media(b) for b in rep_call["bridged"]), rep_call["bridged"]
    assert rep_call["heard"]["heard_ms"] > 0, rep_call["heard"]
    assert rep_call["dtmf_sent"] and rep_call["dtmf_sent"][0]["digit"] == "1"
    briefs = [line["text"] for line in a.transcript if line["role"] == "agent" and "on hold" in line["text"]]
    assert briefs and "I have Dana on hold" in briefs[0] and "Press 1" in briefs[0], a.transcript
    assert a.transferred_to == REP
    transfer = CallTransfer.objects.get(attempt=a)
    assert transfer.member is not None and transfer.member.name == "Sam"
    assert (transfer.state, transfer.number) == ("connected", REP)
    assert transfer.answered_at is not None and transfer.connected_at is not None
    assert a_call["ended_at"] >= rep_call["ended_at"], "the callee was hung up after the rep left"

    # Declined: the human leg was hung up by us after the 2, the music stopped, the callee was put back
    # with the agent's leg, and the agent told them.
    b, b_call, no_call = attempts[CALLEE_B], calls[CALLEE_B], calls[DECLINER]
    assert no_call["answered_at"] is not None and no_call["ended_by"] == "app", no_call
    assert no_call["dtmf_sent"] and no_call["dtmf_sent"][0]["digit"] == "2"
    assert no_call["duration_s"] < 30, "hung up after declining, not at its own 40 s"
    assert len(b_call["moh"]) == 1 and b_call["moh"][0]["stopped_at"] is not None, b_call["moh"]
    last = b_call["bridged"][-1] if b_call["ended_by"] != "callee" else b_call["bridged"][-2]
    back = [x for x in b_call["bridged"] if x["at"] >= b_call["moh"][0]["stopped_at"] - 0.5 and x["bridge"]]
    assert back and _has_media(back[0]) and not any(m.startswith("xfer-") for m in back[0]["members"]), (
        b_call["bridged"],
        last,
    )
    assert b.transferred_to == ""
    transfer = CallTransfer.objects.get(attempt=b)
    assert (transfer.state, transfer.reason) == ("declined", "declined"), transfer
    agent_lines = [line["text"] for line in b.transcript if line["role"] == "agent"]
    assert any("can't take your call" in text for text in agent_lines), b.transcript
    assert b_call["ended_by"] == "callee", "the callee stayed with the agent until they hung up"

    # Nobody answered: the human leg rang until the transfer's timeout and was hung up by us, the callee
    # heard music on hold all that time and was put back with the agent, who said so.
    c, c_call, nobody_call = attempts[CALLEE_C], calls[CALLEE_C], calls[NOBODY]
    assert nobody_call["answered_at"] is None and nobody_call["ended_by"] == "app", nobody_call
    spans = c_call["moh"]
    assert len(spans) == 1 and spans[0]["stopped_at"] - spans[0]["started_at"] >= TRANSFER_TIMEOUT_S - 1, (
        spans
    )
    assert _has_media(c_call["bridged"][-1] if c_call["bridged"][-1]["bridge"] else c_call["bridged"][-2])
    transfer = CallTransfer.objects.get(attempt=c)
    assert (transfer.state, transfer.reason) == ("no_answer", "timeout"), transfer
    assert any("nobody could answer" in line["text"] for line in c.transcript if line["role"] == "agent")
    assert c_call["ended_by"] == "callee"


def _has_media(entry: dict[str, Any]) -> bool:
    return any(member.startswith("media-") for member in entry["members"])
