"""The transfers API: targets and their reps (field-named errors, tenant isolation), a campaign's
transfer_targets, and the read-only list of a call's transfers."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import transaction
from django.utils import timezone

from campaigns.lifecycle import AttemptState
from campaigns.models import CallAttempt, CallTransfer, TransferTarget, TransferTargetMember
from campaigns.services.transfers import transfer_pick, transfer_target_create
from tests.campaigns.factories import make_agent, make_campaign, make_lead, make_pbx, make_tenant

pytestmark = pytest.mark.django_db

API = "/api/v1"
#: The transfer routes with an id (the campaigns API's route inventory counts them as covered).
REP = {"name": "A", "number": "+12125550191"}
TRANSFER_ROUTES = {
    "transfer-targets/{}",
    "transfer-targets/{}/members",
    "transfer-targets/{}/members/{}",
    "call-transfers/{}",
}


def client_for(tenant: Any) -> Any:
    from tests.campaigns.test_api import api_client

    return api_client(tenant)


@pytest.fixture
def world() -> dict[str, Any]:
    tenant, other = make_tenant(), make_tenant()
    out: dict[str, Any] = {"tenant": tenant}
    for key, owner in (("mine", tenant), ("foreign", other)):
        target = transfer_target_create(
            tenant=owner, name="Team", kind="group", members=[{"name": "Sam", "number": "+12125550191"}]
        )
        lead = make_lead(owner, make_campaign(owner), "+12125550150")
        attempt = CallAttempt.objects.create(
            tenant=owner, campaign=lead.campaign, lead=lead, number=lead.contact.phone_number,
            state=AttemptState.BRIDGED, answered_at=timezone.now(), pbx=make_pbx(owner),
        )  # fmt: skip
        with transaction.atomic():
            transfer = transfer_pick(attempt=attempt, target=target)
        out[key] = {
            "target": target,
            "member": target.members.get(),
            "transfer": transfer,
            "attempt": attempt,
        }
    return out


@pytest.mark.parametrize(
    ("method", "url"),
    [
        ("get", "transfer-targets/{target}"),
        ("patch", "transfer-targets/{target}"),
        ("put", "transfer-targets/{target}"),
        ("delete", "transfer-targets/{target}"),
        ("post", "transfer-targets/{target}/members"),
        ("patch", "transfer-targets/{target}/members/{member}"),
        ("delete", "transfer-targets/{target}/members/{member}"),
        ("get", "call-transfers/{transfer}"),
    ],
)
def test_another_tenants_targets_and_transfers_are_not_found(
    world: dict[str, Any], method: str, url: str
) -> None:
    api = client_for(world["tenant"])
    foreign = world["foreign"]
    path = url.format(**{k: foreign[k].pk for k in ("target", "member", "transfer")})
    before = (
        TransferTarget.objects.count(),
        TransferTargetMember.objects.count(),
        CallTransfer.objects.count(),
    )
    response = getattr(api, method)(f"{API}/{path}", {"name": "x", "number": "+12125550199"}, format="json")
    assert response.status_code == 404, response.content
    assert (
        TransferTarget.objects.count(),
        TransferTargetMember.objects.count(),
        CallTransfer.objects.count(),
    ) == before
    # Someone else's rep under my target is not mine either.
    mine = world["mine"]["target"]
    path = f"transfer-targets/{mine.pk}/members/{foreign['member'].pk}"
    assert client_for(world["tenant"]).delete(f"{API}/{path}").status_code == 404


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "Desk", "kind": "number", "number": "12"}, "number"),
        ({"name": "Q", "kind": "queue", "endpoint": "SIP/evil"}, "endpoint"),
        ({"name": "G", "kind": "group", "members": [{"name": "A", "number": "nope"}]}, "members[0].number"),
        ({"name": "G", "kind": "group", "members": [{**REP, "max_concurrent": 0}]}, "members"),
        ({"name": "Team", "kind": "number", "number": "+12125550191"}, "name"),
        ({"name": "M", "kind": "number", "number": "+12125550191", "mode": "tepid"}, "mode"),
    ],
)  # fmt: skip
def test_bad_targets_get_a_400_naming_the_field(
    world: dict[str, Any], body: dict[str, Any], field: str
) -> None:
    api = client_for(world["tenant"])
    before = TransferTarget.objects.count()
    response = api.post(f"{API}/transfer-targets", body, format="json")
    assert response.status_code == 400, response.content
    assert field in str(response.json()), response.json()
    assert TransferTarget.objects.count() == before


def test_targets_and_reps_through_the_api(world: dict[str, Any]) -> None:
    api = client_for(world["tenant"])
    created = api.post(
        f"{API}/transfer-targets",
        {"name": "Sales", "kind": "group", "mode": "warm",
         "members": [{"name": "Ann", "number": "+12125550181", "max_concurrent": 2}]},
        format="json",
    )  # fmt: skip
    assert created.status_code == 201, created.content
    target = created.json()
    assert target["members"][0] | {"id": 0} == {
        "id": 0, "name": "Ann", "number": "+12125550181", "max_concurrent": 2, "position": 0, "enabled": True,
        "live": 0,
    }  # fmt: skip
    added = api.post(
        f"{API}/transfer-targets/{target['id']}/members",
        {"name": "Bo", "number": "+12125550182"},
        format="json",
    )
    assert added.status_code == 201, added.content
    assert [m["name"] for m in added.json()["members"]] == ["Ann", "Bo"]
    bo = added.json()["members"][1]["id"]
    changed = api.patch(
        f"{API}/transfer-targets/{target['id']}/members/{bo}",
        {"max_concurrent": 3, "enabled": False},
        format="json",
    )
    assert changed.status_code == 200 and changed.json()["members"][1]["max_concurrent"] == 3
    bad = api.patch(f"{API}/transfer-targets/{target['id']}/members/{bo}", {"number": "x"}, format="json")
    assert bad.status_code == 400 and "number" in str(bad.json())
    assert api.delete(f"{API}/transfer-targets/{target['id']}/members/{bo}").status_code == 204
    # The team of the world fixture shows its rep's live transfer.
    team = api.get(f"{API}/transfer-targets/{world['mine']['target'].pk}").json()
    assert team["members"][0]["live"] == 1
    renamed = api.patch(f"{API}/transfer-targets/{target['id']}", {"mode": "cold"}, format="json")
    assert renamed.status_code == 200 and renamed.json()["mode"] == "cold"
    listed = api.get(f"{API}/transfer-targets").json()
    names = (
        [t["name"] for t in listed["results"]] if isinstance(listed, dict) else [t["name"] for t in listed]
    )
    assert names == ["Sales", "Team"]


def test_a_campaigns_transfer_targets(world: dict[str, Any]) -> None:
    tenant = world["tenant"]
    api = client_for(tenant)
    agent = make_agent(tenant)
    mine, foreign = world["mine"]["target"], world["foreign"]["target"]
    body = {
        "name": "C",
        "agent": agent.pk,
        "caller_id": "+14155550100",
        "transfer_targets": [mine.pk, foreign.pk],
    }
    refused = api.post(f"{API}/campaigns", body, format="json")
    assert refused.status_code == 400 and "transfer_targets[1]" in str(refused.json()), refused.json()
    created = api.post(f"{API}/campaigns", {**body, "transfer_targets": [mine.pk]}, format="json")
    assert created.status_code == 201 and created.json()["transfer_targets"] == [mine.pk]
    cleared = api.patch(f"{API}/campaigns/{created.json()['id']}", {"transfer_targets": []}, format="json")
    assert cleared.status_code == 200 and cleared.json()["transfer_targets"] == []


def test_a_calls_transfers_are_listed_read_only(world: dict[str, Any]) -> None:
    api = client_for(world["tenant"])
    mine = world["mine"]
    listed = api.get(f"{API}/call-transfers", {"attempt": str(mine["attempt"].pk)}).json()
    rows = listed["results"] if isinstance(listed, dict) else listed
    assert [(r["id"], r["state"], r["member_name"], r["target_name"]) for r in rows] == [
        (mine["transfer"].pk, "dialing", "Sam", "Team")
    ]
    foreign = api.get(f"{API}/call-transfers", {"attempt": str(world["foreign"]["attempt"].pk)}).json()
    assert (foreign["results"] if isinstance(foreign, dict) else foreign) == []
    assert api.get(f"{API}/call-transfers", {"attempt": "nope"}).status_code == 400
    assert api.post(f"{API}/call-transfers", {}, format="json").status_code == 405
