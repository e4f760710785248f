"""Transfer targets, the pick (round robin with caps, under a row lock), the request and the reports."""

from __future__ import annotations

import json
import threading
import time
from datetime import timedelta

import pytest
from django.db import connections, transaction
from django.utils import timezone

from campaigns.lifecycle import AttemptState
from campaigns.models import CallAttempt, CallTransfer, Lead
from campaigns.services.transfers import (
    campaign_set_transfer_targets,
    transfer_apply_update,
    transfer_member_add,
    transfer_pick,
    transfer_request,
    transfer_target_create,
    transfer_target_update,
)
from orchestrator.errors import InvalidInput
from orchestrator.redis_client import get_redis
from telephony.stasis import command_key
from tests.campaigns.factories import make_campaign, make_lead, make_pbx, make_tenant

pytestmark = pytest.mark.django_db

REPS = ["+12125550201", "+12125550202", "+12125550203"]
R0 = REPS[0]
REP = {"name": "A", "number": R0}


def make_attempt(lead: Lead, **fields: object) -> CallAttempt:
    return CallAttempt.objects.create(
        tenant=lead.campaign.tenant,
        campaign=lead.campaign,
        lead=lead,
        number=lead.contact.phone_number,
        state=AttemptState.BRIDGED,
        answered_at=timezone.now(),
        **fields,
    )


def live_attempts(n: int) -> list[CallAttempt]:
    """``n`` live attempts of one campaign, on a PBX that dials ``PJSIP/<number>@trunk``."""
    tenant = make_tenant()
    campaign = make_campaign(tenant)
    pbx = make_pbx(tenant, endpoint_template="PJSIP/{number}@trunk")
    return [make_attempt(make_lead(tenant, campaign, f"+1212555{index:04d}"), pbx=pbx) for index in range(n)]


# ----------------------------------------------------------------------------------------- validation
@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"kind": "number", "number": "not a number"}, "number"),
        ({"kind": "queue", "endpoint": "PJSIP/+15551230000@trunk"}, "endpoint"),
        ({"kind": "queue", "endpoint": "Local/sales@somewhere-else"}, "endpoint"),
        ({"kind": "queue", "endpoint": "Local/sa les@ai-queues"}, "endpoint"),
        ({"kind": "teleport"}, "kind"),
        ({"kind": "number", "number": "+12125550201", "mode": "lukewarm"}, "mode"),
        ({"kind": "group", "members": [REP, {"name": "B", "number": "x"}]}, "members[1].number"),
        ({"kind": "group", "members": [{**REP, "max_concurrent": 0}]}, "members[0].max_concurrent"),
        ({"kind": "number", "number": R0, "members": [{"name": "A", "number": R0}]}, "members"),
        ({"kind": "number", "number": "+12125550201", "name": " "}, "name"),
    ],
)  # fmt: skip
def test_bad_targets_are_refused_naming_the_field(fields: dict, field: str) -> None:
    tenant = make_tenant()
    with pytest.raises(InvalidInput) as caught:
        transfer_target_create(tenant=tenant, **{"name": "Desk", **fields})
    assert caught.value.field == field
    assert not CallTransfer.objects.exists()


def test_a_queue_target_and_its_update() -> None:
    tenant = make_tenant()
    target = transfer_target_create(
        tenant=tenant, name="Queue", kind="queue", endpoint="Local/sales@ai-queues"
    )
    assert (target.endpoint, target.mode) == ("Local/sales@ai-queues", "warm")
    with pytest.raises(InvalidInput) as caught:
        transfer_target_update(target=target, endpoint="Local/x@elsewhere")
    assert caught.value.field == "endpoint"
    transfer_target_update(target=target, mode="cold")
    target.refresh_from_db()
    assert (target.mode, target.endpoint) == ("cold", "Local/sales@ai-queues")
    with pytest.raises(InvalidInput) as caught:
        transfer_target_create(tenant=tenant, name="Queue", kind="number", number=REPS[0])
    assert caught.value.field == "name"


def test_a_campaign_takes_only_its_tenants_targets_in_order() -> None:
    campaign = make_campaign(make_tenant())
    mine = [transfer_target_create(tenant=campaign.tenant, name=f"T{i}", number=REPS[i]) for i in range(2)]
    foreign = transfer_target_create(tenant=make_tenant(), name="Theirs", number=REPS[2])
    with pytest.raises(InvalidInput) as caught:
        campaign_set_transfer_targets(campaign=campaign, target_ids=[mine[0].pk, foreign.pk])
    assert caught.value.field == "transfer_targets[1]"
    campaign_set_transfer_targets(campaign=campaign, target_ids=[mine[1].pk, mine[0].pk])
    links = campaign.transfer_target_links.order_by("position")
    assert [link.target_id for link in links] == [mine[1].pk, mine[0].pk]
    assert set(campaign.transfer_targets.all()) == set(mine)


# ----------------------------------------------------------------------------------------------- pick
def test_round_robin_skips_reps_at_their_cap_and_frees_them_when_the_call_ends() -> None:
    attempts = live_attempts(5)
    target = transfer_target_create(
        tenant=attempts[0].tenant, name="Sales", kind="group",
        members=[{"name": f"Rep {i}", "number": REPS[i], "max_concurrent": 1} for i in range(3)],
    )  # fmt: skip
    transfer_member_add(target=target, data={"name": "Off", "number": "+12125550209", "enabled": False})
    with transaction.atomic():
        picked = [transfer_pick(attempt=a, target=target) for a in attempts[:4]]
    assert [t.number for t in picked[:3]] == REPS
    assert (picked[3].state, picked[3].reason, picked[3].member) == ("failed", "all_busy", None)
    # The first rep's call ends: they are free again, and the next pick goes to them.
    CallAttempt.objects.filter(pk=attempts[0].pk).update(state=AttemptState.ENDED, ended_at=timezone.now())
    with transaction.atomic():
        again = transfer_pick(attempt=attempts[4], target=target)
    assert (again.state, again.number, again.endpoint) == ("dialing", REPS[0], f"PJSIP/{REPS[0]}@trunk")


def test_a_declined_transfer_frees_its_rep_at_once() -> None:
    attempts = live_attempts(2)
    target = transfer_target_create(
        tenant=attempts[0].tenant, name="Solo", kind="group",
        members=[{"name": "Sam", "number": REPS[0], "max_concurrent": 1}],
    )  # fmt: skip
    with transaction.atomic():
        first = transfer_pick(attempt=attempts[0], target=target)
    assert first.state == "dialing" and first.endpoint
    assert transfer_apply_update(
        attempt_id=attempts[0].pk, transfer_id=str(first.pk), state="declined", at=timezone.now()
    )
    with transaction.atomic():
        second = transfer_pick(attempt=attempts[1], target=target)
    assert (second.state, second.number) == ("dialing", REPS[0])


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_picks_never_exceed_a_reps_cap() -> None:
    """Two transactions pick from a one-rep group (cap 1) at the same moment: the lock on the target makes
    the second see the first's row, so exactly one gets the rep."""
    attempts = live_attempts(2)
    target = transfer_target_create(
        tenant=attempts[0].tenant, name="Solo", kind="group",
        members=[{"name": "Sam", "number": REPS[0], "max_concurrent": 1}],
    )  # fmt: skip
    barrier = threading.Barrier(2)
    states: list[str] = []

    def pick(attempt: CallAttempt) -> None:
        try:
            barrier.wait(timeout=10)
            with transaction.atomic():
                fresh = CallAttempt.objects.select_related("pbx").get(pk=attempt.pk)
                transfer = transfer_pick(attempt=fresh, target=target)
                time.sleep(0.2)  # hold the lock a moment: the other one is waiting for it by now
            states.append(transfer.state)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=pick, args=(a,)) for a in attempts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)
    assert sorted(states) == ["dialing", "failed"]
    assert CallTransfer.objects.filter(member__number=REPS[0], state="dialing").count() == 1


# -------------------------------------------------------------------------------- request and reports
def test_a_request_picks_and_sends_the_stasis_app_the_command(django_capture_on_commit_callbacks) -> None:
    attempt = live_attempts(1)[0]
    pbx = attempt.pbx
    assert pbx is not None
    target = transfer_target_create(tenant=attempt.tenant, name="Desk", number=REPS[1], mode="warm")
    campaign_set_transfer_targets(campaign=attempt.campaign, target_ids=[target.pk])
    redis = get_redis()
    redis.delete(command_key(pbx.pk))
    with pytest.raises(CallAttempt.DoesNotExist):
        transfer_request(attempt_id=attempt.pk, tenant_id=make_tenant().pk)
    with pytest.raises(InvalidInput):
        transfer_request(attempt_id=attempt.pk, tenant_id=attempt.tenant_id, mode="hot")
    with django_capture_on_commit_callbacks(execute=True):
        transfer = transfer_request(
            attempt_id=attempt.pk, tenant_id=attempt.tenant_id, reason="wants pricing"
        )
    assert transfer is not None and transfer.summary == "wants pricing"
    command = json.loads(str(redis.lpop(command_key(pbx.pk))))
    assert command == {
        "action": "transfer",
        "call_id": str(attempt.pk),
        "transfer_id": str(transfer.pk),
        "mode": "warm",
        "number": REPS[1],
        "endpoint": f"PJSIP/{REPS[1]}@trunk",
        "caller_id": attempt.campaign.caller_id,
        "timeout_s": 30,
        "summary": "wants pricing",
    }
    # Another campaign's target is not this call's to use.
    other = transfer_target_create(tenant=attempt.tenant, name="Other", number=REPS[2])
    with django_capture_on_commit_callbacks(execute=True):
        refused = transfer_request(attempt_id=attempt.pk, tenant_id=attempt.tenant_id, target_id=other.pk)
    assert refused is None
    assert redis.llen(command_key(pbx.pk)) == 0


def test_reports_follow_the_transfer_table() -> None:
    attempt = live_attempts(1)[0]
    target = transfer_target_create(tenant=attempt.tenant, name="Desk", number=REPS[0])
    with transaction.atomic():
        transfer = transfer_pick(attempt=attempt, target=target)
    now = timezone.now()
    assert transfer_apply_update(
        attempt_id=attempt.pk, transfer_id=str(transfer.pk), state="briefing", at=now
    )
    assert transfer_apply_update(
        attempt_id=attempt.pk, transfer_id=str(transfer.pk), state="connected", at=now + timedelta(seconds=5)
    )
    # Late, repeated or foreign reports change nothing.
    assert not transfer_apply_update(
        attempt_id=attempt.pk, transfer_id=str(transfer.pk), state="declined", at=now
    )
    assert not transfer_apply_update(
        attempt_id=attempt.pk, transfer_id=str(transfer.pk), state="connected", at=now
    )
    other = live_attempts(1)[0]
    assert not transfer_apply_update(
        attempt_id=other.pk, transfer_id=str(transfer.pk), state="failed", at=now
    )
    assert not transfer_apply_update(attempt_id=attempt.pk, transfer_id="x", state="failed", at=now)
    transfer.refresh_from_db()
    assert transfer.state == "connected" and transfer.answered_at == now and transfer.ended_at is None


def test_a_queue_whose_context_the_operator_withdrew_is_not_dialed(settings) -> None:
    attempt = live_attempts(1)[0]
    target = transfer_target_create(
        tenant=attempt.tenant, name="Q", kind="queue", endpoint="Local/sales@ai-queues"
    )
    with transaction.atomic():
        allowed = transfer_pick(attempt=attempt, target=target)
    assert (allowed.state, allowed.endpoint) == ("dialing", "Local/sales@ai-queues")
    settings.TRANSFER_QUEUE_CONTEXTS = ["other-queues"]
    with transaction.atomic():
        withdrawn = transfer_pick(attempt=attempt, target=target)
    assert (withdrawn.state, withdrawn.reason, withdrawn.endpoint) == ("failed", "no_endpoint", "")


def test_the_media_task_runs_the_request_and_drops_what_is_not_an_attempt(
    django_capture_on_commit_callbacks,
) -> None:
    from campaigns.tasks import (
        MEDIA_DONE,
        MEDIA_DROPPED,
        MEDIA_INVALID,
        MEDIA_UNCHANGED,
        media_transfer_request,
    )

    attempt = live_attempts(1)[0]
    target = transfer_target_create(tenant=attempt.tenant, name="Desk", number=REPS[0])
    campaign_set_transfer_targets(campaign=attempt.campaign, target_ids=[target.pk])
    assert media_transfer_request(call_id="1767650400.17", tenant_id=attempt.tenant_id) == MEDIA_DROPPED
    assert (
        media_transfer_request(call_id=str(attempt.pk), tenant_id=attempt.tenant_id, mode="hot")
        == MEDIA_INVALID
    )
    with django_capture_on_commit_callbacks(execute=True):
        done = media_transfer_request(call_id=str(attempt.pk), tenant_id=attempt.tenant_id, target_id=True)
    assert done == MEDIA_DONE and CallTransfer.objects.get(attempt=attempt).target == target
    assert media_transfer_request(call_id=str(attempt.pk), tenant_id=attempt.tenant_id, target_id=999) == (
        MEDIA_UNCHANGED
    )
    get_redis().delete(command_key(str(attempt.pbx_id)))
