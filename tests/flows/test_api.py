"""The inbound flows and on-call REST API (/api/v1/): CRUD of every resource, bad input (400 naming the
field, nothing changed), tenant isolation (a foreign id in a path is a 404, inside a body a 400 naming the
field), hostile text, incident filters, the ordered timeline, acknowledge / resolve / escalate, inbound
calls, who is on call now."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from flows.models import (
    EscalationPolicy,
    EscalationStep,
    InboundFlow,
    Incident,
    IncidentEvent,
    IntakeField,
    OnCallGroup,
    OnCallPerson,
    Page,
    PhoneNumber,
    Rotation,
    RotationOverride,
)
from flows.services.setup_oncall import rotation_override_create
from tenants.models import Membership, Tenant
from tenants.services import membership_add
from tests.campaigns.factories import make_agent, make_tenant, make_user
from tests.campaigns.test_api import api_client
from tests.flows.routes import DETAIL_ROUTES
from tests.flows.setup_factories import (
    make_call,
    make_flow,
    make_group,
    make_incident,
    make_number,
    make_person,
    make_policy,
    make_rotation,
)
from timers.models import Timer

pytestmark = pytest.mark.django_db

API = "/api/v1"


@pytest.fixture(autouse=True)
def _short_minimum_wait(settings: Any) -> None:
    settings.FLOWS_MIN_STEP_WAIT_S = 30


@pytest.fixture
def tenant() -> Tenant:
    return make_tenant()


@pytest.fixture
def api(tenant: Tenant) -> APIClient:
    return api_client(tenant)


def world_of(tenant: Tenant) -> dict[str, Any]:
    person = make_person(tenant)
    rotation = make_rotation(tenant, [person])
    policy = make_policy(tenant, person)
    flow = make_flow(tenant, escalation_policy=policy)
    number = make_number(tenant, flow)
    override = rotation_override_create(
        rotation=rotation,
        person=person,
        starts_at=timezone.now(),
        ends_at=timezone.now() + timedelta(hours=2),
    )
    incident = make_incident(tenant, person=person, policy=policy, flow=flow, did=number.number)
    return {
        "person": person,
        "group": make_group(tenant, [person]),
        "rotation": rotation,
        "override": override,
        "policy": policy,
        "flow": flow,
        "number": number,
        "agent": make_agent(tenant),
        "incident": incident,
        "call": incident.inbound_call,
    }


@pytest.fixture
def mine(tenant: Tenant) -> dict[str, Any]:
    return world_of(tenant)


@pytest.fixture
def foreign() -> dict[str, Any]:
    return world_of(make_tenant())


def snapshot() -> dict[str, list[dict[str, Any]]]:
    models = [
        PhoneNumber,
        InboundFlow,
        IntakeField,
        OnCallPerson,
        OnCallGroup,
        Rotation,
        RotationOverride,
        EscalationPolicy,
        EscalationStep,
        Incident,
        IncidentEvent,
        Page,
    ]
    return {m.__name__: list(m._default_manager.order_by("pk").values()) for m in models}


def errors_of(response: Any) -> list[str]:
    assert response.status_code == 400, response.content
    return sorted(response.json())


# ------------------------------------------------------------------------------------------ CRUD


def test_phone_numbers_crud(api, tenant):
    flow = make_flow(tenant)
    created = api.post(
        f"{API}/phone-numbers",
        {"number": "+1 (646) 555-0100", "label": "Main", "flow": flow.pk},
        format="json",
    )
    assert created.status_code == 201, created.content
    body = created.json()
    assert (body["number"], body["label"], body["flow"]) == ("+16465550100", "Main", flow.pk)
    assert api.get(f"{API}/phone-numbers").json()["count"] == 1
    patched = api.patch(f"{API}/phone-numbers/{body['id']}", {"flow": None}, format="json")
    assert patched.status_code == 200 and patched.json()["flow"] is None
    assert api.delete(f"{API}/phone-numbers/{body['id']}").status_code == 204
    assert not PhoneNumber.objects.exists()


def test_a_number_is_e164_and_unique_across_tenants(api, tenant):
    make_number(make_tenant(), number="+16465550101")
    before = snapshot()
    for number in ("6465550101", "+1646555", "hello"):
        assert errors_of(api.post(f"{API}/phone-numbers", {"number": number}, format="json")) == ["number"]
    taken = api.post(f"{API}/phone-numbers", {"number": "+16465550101"}, format="json")
    assert errors_of(taken) == ["number"]
    assert snapshot() == before


def test_inbound_flow_with_hours_holidays_and_intake(api, tenant):
    agent = make_agent(tenant)
    policy = make_policy(tenant)
    body = {
        "name": "After hours",
        "agent": agent.pk,
        "instructions": "You answer for Acme HVAC.",
        "greeting": "Acme HVAC, how can I help?",
        "timezone": "America/New_York",
        "in_hours_action": "transfer",
        "office_number": "+16465550199",
        "after_hours_action": "agent_and_page",
        "escalation_policy": policy.pk,
        "business_hours": [
            {"weekday": 0, "opens": "08:00", "closes": "17:00"},
            {"weekday": 5, "opens": "10:00", "closes": "00:00"},
        ],
        "holidays": [{"date": "2026-12-25", "name": "Christmas"}],
        "intake_fields": [
            {"name": "name", "label": "Name", "required": True},
            {"name": "callback_number", "required": True},
            {"name": "problem", "label": "Problem"},
        ],
    }
    created = api.post(f"{API}/inbound-flows", body, format="json")
    assert created.status_code == 201, created.content
    flow = created.json()
    assert flow["business_hours"] == [
        {"weekday": 0, "opens": "08:00", "closes": "17:00"},
        {"weekday": 5, "opens": "10:00", "closes": "00:00"},
    ]
    assert flow["holidays"] == [{"date": "2026-12-25", "name": "Christmas"}]
    assert [f["name"] for f in flow["intake_fields"]] == ["name", "callback_number", "problem"]
    assert flow["intake_fields"][1]["label"] == "Callback number"
    assert (flow["agent"], flow["escalation_policy"]) == (agent.pk, policy.pk)

    # PATCH replaces only the lists it gives.
    patched = api.patch(
        f"{API}/inbound-flows/{flow['id']}",
        {"intake_fields": [{"name": "address"}], "greeting": "Hello"},
        format="json",
    )
    assert patched.status_code == 200, patched.content
    assert [f["name"] for f in patched.json()["intake_fields"]] == ["address"]
    assert len(patched.json()["business_hours"]) == 2

    hours = api.get(f"{API}/inbound-flows/{flow['id']}/hours")
    assert hours.status_code == 200 and hours.json()["timezone"] == "America/New_York"
    assert api.delete(f"{API}/inbound-flows/{flow['id']}").status_code == 204
    assert not InboundFlow.objects.exists() and not IntakeField.objects.exists()


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"intake_fields": [{"name": "Name"}]}, "intake_fields"),
        ({"intake_fields": [{"name": "1st"}]}, "intake_fields"),
        ({"intake_fields": [{"name": "a" * 41}]}, "intake_fields"),
        ({"intake_fields": [{"name": "name"}, {"name": "name"}]}, "intake_fields"),
        ({"business_hours": [{"weekday": 1, "opens": "17:00", "closes": "08:00"}]}, "business_hours"),
        ({"business_hours": [{"weekday": 1, "opens": "09:00", "closes": "09:00"}]}, "business_hours"),
        ({"business_hours": [{"weekday": 7, "opens": "09:00", "closes": "10:00"}]}, "business_hours"),
        ({"business_hours": [{"weekday": 1, "opens": "25:00", "closes": "10:00"}]}, "business_hours"),
        ({"holidays": [{"date": "2026-01-01"}, {"date": "2026-01-01"}]}, "holidays"),
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"in_hours_action": "transfer"}, "office_number"),
        ({"office_number": "12"}, "office_number"),
        ({"greeting": "x" * 501}, "greeting"),
        ({"caller_ack_sms": "Hi {person.__class__}"}, "caller_ack_sms"),
        ({"caller_ack_sms": "Hi {secret}"}, "caller_ack_sms"),
        ({"taken_sms": "Taken {code:>999999}"}, "taken_sms"),
        ({"taken_sms": "Unbalanced {"}, "taken_sms"),
        ({"taken_sms": "See http://127.0.0.1/admin"}, "taken_sms"),
        ({"urgent_reply": "See http://169.254.169.254/latest"}, "urgent_reply"),
        ({"refusal_message": "sound:../../etc/passwd"}, "refusal_message"),
        ({"voice": "Alloy Voice"}, "voice"),
        ({"name": "   "}, "name"),
        ({"enabled": "yes"}, "enabled"),
        ({"transfer_timeout_s": 0}, "transfer_timeout_s"),
    ],
)
def test_bad_flow_input_is_a_400_naming_the_field(api, tenant, change, field):
    flow = make_flow(tenant)
    before = snapshot()
    response = api.patch(f"{API}/inbound-flows/{flow.pk}", change, format="json")
    assert errors_of(response) == [field], response.json()
    assert snapshot() == before


def test_hostile_text_is_stripped_of_control_characters(api, tenant):
    body = {
        "name": "Night\u202e line\x07",
        "greeting": "Hello\r\nthere\x1b[31m",
        "instructions": "Line one\r\nLine two\x00\x08",
        "intake_fields": [{"name": "name", "label": "Your\nname\u2066"}],
    }
    response = api.post(f"{API}/inbound-flows", body, format="json")
    # NUL is refused by the parser before anything reads it.
    assert errors_of(response) == ["instructions"]
    body["instructions"] = "Line one\r\nLine two\x08"
    response = api.post(f"{API}/inbound-flows", body, format="json")
    assert response.status_code == 201, response.content
    flow = response.json()
    assert flow["name"] == "Night line"
    assert flow["greeting"] == "Hello there[31m"
    assert flow["instructions"] == "Line one\nLine two"
    assert flow["intake_fields"][0]["label"] == "Your name"


def test_people_groups_and_rotations_crud(api, tenant):
    p1 = api.post(
        f"{API}/oncall-people",
        {"name": "Ana", "phone": "+16465550111", "sms_number": "+16465550112", "timezone": "America/Chicago"},
        format="json",
    )
    assert p1.status_code == 201, p1.content
    p2 = api.post(f"{API}/oncall-people", {"name": "Ben", "phone": "+16465550113"}, format="json").json()
    a, b = p1.json()["id"], p2["id"]
    group = api.post(f"{API}/oncall-groups", {"name": "Techs", "members": [a, b]}, format="json")
    assert group.status_code == 201 and sorted(group.json()["members"]) == sorted([a, b])
    rotation = api.post(
        f"{API}/rotations",
        {"name": "Nights", "start_date": "2026-01-05", "handoff": "weekly", "handoff_time": "18:00",
         "timezone": "America/New_York", "members": [b, a]},
        format="json",
    )  # fmt: skip
    assert rotation.status_code == 201, rotation.content
    rid = rotation.json()["id"]
    assert rotation.json()["members"] == [b, a] and rotation.json()["handoff_time"] == "18:00"
    reordered = api.patch(f"{API}/rotations/{rid}", {"members": [a, b]}, format="json")
    assert reordered.json()["members"] == [a, b]
    override = api.post(
        f"{API}/rotation-overrides",
        {
            "rotation": rid,
            "person": b,
            "starts_at": "2026-02-01T00:00:00Z",
            "ends_at": "2026-02-03T00:00:00Z",
        },
        format="json",
    )
    assert override.status_code == 201, override.content
    assert api.get(f"{API}/rotations/{rid}").json()["overrides"][0]["person"] == b
    assert api.get(f"{API}/rotation-overrides?rotation={rid}").json()["count"] == 1
    now = api.get(f"{API}/oncall/now?rotation={rid}&at=2026-02-02T12:00:00Z")
    assert now.status_code == 200, now.content
    assert now.json()[0]["person"]["id"] == b
    assert errors_of(api.get(f"{API}/oncall/now?at=9999-12-31T23:59:59Z")) == ["at"]
    assert api.delete(f"{API}/rotation-overrides/{override.json()['id']}").status_code == 204
    assert (
        api.put(f"{API}/oncall-people/{a}", {"name": "Ana B", "phone": "+16465550111"}, format="json").json()[
            "name"
        ]
        == "Ana B"
    )
    assert api.delete(f"{API}/oncall-groups/{group.json()['id']}").status_code == 204
    assert api.delete(f"{API}/rotations/{rid}").status_code == 204
    assert api.delete(f"{API}/oncall-people/{b}").status_code == 204


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("oncall-people", {"name": "X", "phone": "555"}, "phone"),
        ("oncall-people", {"name": "X", "phone": "+16465550120", "sms_number": "abc"}, "sms_number"),
        ("oncall-people", {"name": "X", "phone": "+16465550120", "timezone": "Nowhere"}, "timezone"),
        ("oncall-people", {"name": "", "phone": "+16465550120"}, "name"),
        ("rotations", {"name": "R", "start_date": "2026-01-05", "handoff": "hourly"}, "handoff"),
        ("rotations", {"name": "R", "start_date": "2026-01-05", "timezone": "Bad/Zone"}, "timezone"),
        ("rotations", {"name": "R", "start_date": "2026-01-05", "handoff_weekday": 9}, "handoff_weekday"),
    ],
)
def test_bad_oncall_input_is_a_400_naming_the_field(api, tenant, path, body, field):
    before = snapshot()
    assert errors_of(api.post(f"{API}/{path}", body, format="json")) == [field]
    assert snapshot() == before


def test_a_duplicate_name_is_a_400_naming_it(api, tenant):
    make_person(tenant, name="Ana")
    assert errors_of(
        api.post(f"{API}/oncall-people", {"name": "Ana", "phone": "+16465550121"}, format="json")
    ) == ["name"]


def test_an_override_ending_before_it_starts_names_ends_at(api, tenant, mine):
    body = {
        "rotation": mine["rotation"].pk,
        "person": mine["person"].pk,
        "starts_at": "2026-02-03T00:00:00Z",
        "ends_at": "2026-02-01T00:00:00Z",
    }
    assert errors_of(api.post(f"{API}/rotation-overrides", body, format="json")) == ["ends_at"]


def test_escalation_policy_crud(api, tenant):
    person = make_person(tenant)
    rotation = make_rotation(tenant, [person])
    group = make_group(tenant, [person])
    manager = make_person(tenant)
    body = {
        "name": "Night escalation",
        "repeat": 2,
        "steps": [
            {"target_kind": "rotation", "rotation": rotation.pk, "wait_s": 120},
            {"target_kind": "person", "person": person.pk, "notify_call": False, "wait_s": 60},
            {"target_kind": "group", "group": group.pk, "notify_sms": False},
        ],
        "fallback_people": [manager.pk],
        "fallback_sms": "Nobody took {code} from {caller}: {summary}",
        "fallback_callback": True,
    }
    created = api.post(f"{API}/escalation-policies", body, format="json")
    assert created.status_code == 201, created.content
    policy = created.json()
    assert [(st["position"], st["target_kind"], st["wait_s"]) for st in policy["steps"]] == [
        (0, "rotation", 120),
        (1, "person", 60),
        (2, "group", 120),
    ]
    assert policy["steps"][1]["notify_call"] is False and policy["steps"][2]["notify_sms"] is False
    assert policy["fallback_people"] == [manager.pk] and policy["repeat"] == 2
    replaced = api.patch(
        f"{API}/escalation-policies/{policy['id']}",
        {"steps": [{"target_kind": "person", "person": manager.pk, "wait_s": 30}]},
        format="json",
    )
    assert replaced.status_code == 200 and len(replaced.json()["steps"]) == 1
    # A person a step names cannot be deleted (400 naming the person), the policy can.
    assert errors_of(api.delete(f"{API}/oncall-people/{manager.pk}")) == ["person"]
    assert api.delete(f"{API}/escalation-policies/{policy['id']}").status_code == 204
    assert api.delete(f"{API}/oncall-people/{manager.pk}").status_code == 204


@pytest.mark.parametrize(
    ("steps", "extra", "field"),
    [
        ([], {}, "steps"),
        ([{"target_kind": "person", "wait_s": 120}], {}, "steps"),
        ([{"target_kind": "person", "person": "P", "wait_s": 29}], {}, "steps"),
        ([{"target_kind": "person", "person": "P", "notify_call": False, "notify_sms": False}], {}, "steps"),
        ([{"target_kind": "person", "person": "P", "rotation": "R"}], {}, "steps"),
        ([{"target_kind": "pager", "person": "P"}], {}, "steps"),
        ([{"target_kind": "person", "person": "P", "wait_s": "120"}], {}, "steps"),
        ([{"target_kind": "person", "person": "P"}], {"repeat": 11}, "repeat"),
        ([{"target_kind": "person", "person": "P"}], {"repeat": -1}, "repeat"),
        ([{"target_kind": "person", "person": "P"}], {"fallback_sms": "{caller.__init__}"}, "fallback_sms"),
    ],
)
def test_bad_policy_input_is_a_400_naming_the_field(api, tenant, mine, steps, extra, field):
    ids = {"P": mine["person"].pk, "R": mine["rotation"].pk}
    for step in steps:
        for key in ("person", "rotation"):
            if step.get(key) in ids:
                step[key] = ids[step[key]]
    before = snapshot()
    response = api.post(f"{API}/escalation-policies", {"name": "Bad", "steps": steps, **extra}, format="json")
    assert errors_of(response) == [field], response.json()
    assert snapshot() == before


def test_the_minimum_wait_follows_the_setting(api, tenant, settings):
    person = make_person(tenant)
    settings.FLOWS_MIN_STEP_WAIT_S = 90
    body = {"name": "P", "steps": [{"target_kind": "person", "person": person.pk, "wait_s": 60}]}
    response = api.post(f"{API}/escalation-policies", body, format="json")
    assert errors_of(response) == ["steps"] and "at least 90" in str(response.json())


# ----------------------------------------------------------------------------------- tenant isolation


def test_another_tenants_ids_are_404_on_every_route(api, mine, foreign):
    ids = {key: value.pk for key, value in foreign.items()}
    before = snapshot()
    for route, methods in DETAIL_ROUTES:
        for method in methods:
            response = getattr(api, method)(f"{API}/{route.format(**ids)}", {}, format="json")
            assert response.status_code == 404, (method, route, response.content)
    assert snapshot() == before
    # and the tenant's own ids answer
    own = {key: value.pk for key, value in mine.items()}
    for route, methods in DETAIL_ROUTES:
        if "get" in methods:
            assert api.get(f"{API}/{route.format(**own)}").status_code == 200, route


def test_lists_show_only_the_tenants_rows(api, mine, foreign):
    for path, key in (
        ("phone-numbers", "number"),
        ("inbound-flows", "flow"),
        ("oncall-people", "person"),
        ("oncall-groups", "group"),
        ("rotations", "rotation"),
        ("rotation-overrides", "override"),
        ("escalation-policies", "policy"),
        ("incidents", "incident"),
        ("inbound-calls", "call"),
    ):
        listed = {row["id"] for row in api.get(f"{API}/{path}").json()["results"]}
        assert mine[key].pk in listed and foreign[key].pk not in listed, path
    rotations = {row["rotation"] for row in api.get(f"{API}/oncall/now").json()}
    assert rotations == {mine["rotation"].pk}
    assert api.get(f"{API}/oncall/now?rotation={foreign['rotation'].pk}").json() == []


def test_another_tenants_ids_inside_a_body_are_a_400_naming_the_field(api, tenant, mine, foreign):
    before = snapshot()
    cases = [
        ("post", "phone-numbers", {"number": "+16465550150", "flow": foreign["flow"].pk}, "flow"),
        ("post", "inbound-flows", {"name": "F", "agent": foreign["agent"].pk}, "agent"),
        ("post", "inbound-flows", {"name": "F", "escalation_policy": foreign["policy"].pk},
         "escalation_policy"),
        ("post", "oncall-groups", {"name": "G", "members": [foreign["person"].pk]}, "members"),
        ("post", "rotations", {"name": "R", "start_date": "2026-01-05", "members": [foreign["person"].pk]},
         "members"),
        (
            "post",
            "rotation-overrides",
            {"rotation": mine["rotation"].pk, "person": foreign["person"].pk,
             "starts_at": "2026-02-01T00:00:00Z", "ends_at": "2026-02-02T00:00:00Z"},
            "person",
        ),
        (
            "post",
            "rotation-overrides",
            {"rotation": foreign["rotation"].pk, "person": mine["person"].pk,
             "starts_at": "2026-02-01T00:00:00Z", "ends_at": "2026-02-02T00:00:00Z"},
            "rotation",
        ),
        (
            "post",
            "escalation-policies",
            {"name": "P", "steps": [{"target_kind": "person", "person": foreign["person"].pk}]},
            "steps",
        ),
        (
            "post",
            "escalation-policies",
            {"name": "P", "steps": [{"target_kind": "group", "group": foreign["group"].pk}]},
            "steps",
        ),
        (
            "post",
            "escalation-policies",
            {"name": "P", "steps": [{"target_kind": "person", "person": mine["person"].pk}],
             "fallback_people": [foreign["person"].pk]},
            "fallback_people",
        ),
        ("post", f"incidents/{mine['incident'].pk}/acknowledge", {"person": foreign["person"].pk}, "person"),
        ("patch", f"phone-numbers/{mine['number'].pk}", {"flow": foreign["flow"].pk}, "flow"),
    ]  # fmt: skip
    for method, path, body, field in cases:
        response = getattr(api, method)(f"{API}/{path}", body, format="json")
        assert errors_of(response) == [field], (path, response.json())
        assert "No such object in this tenant" in str(response.json()), (path, response.json())
    assert snapshot() == before


def test_a_viewer_reads_but_cannot_write(tenant, mine):
    viewer = make_user()
    membership_add(tenant=tenant, user=viewer, role=Membership.Role.VIEWER)
    client = APIClient()
    client.force_login(viewer)
    assert client.get(f"{API}/incidents").status_code == 200
    before = snapshot()
    assert client.post(f"{API}/incidents/{mine['incident'].pk}/resolve", {}, format="json").status_code == 403
    assert (
        client.post(f"{API}/oncall-people", {"name": "X", "phone": "+16465550160"}, format="json").status_code
        == 403
    )
    assert snapshot() == before


# ---------------------------------------------------------------------------------------- incidents


def test_incident_filters(api, tenant, mine):
    other_flow = make_flow(tenant)
    other_number = make_number(tenant, other_flow)
    later = make_incident(tenant, flow=other_flow, did=other_number.number, person=mine["person"])
    Incident.objects.filter(pk=later.pk).update(opened_at=datetime(2030, 1, 1, tzinfo=UTC))
    first = mine["incident"]

    def ids(query: str) -> set[int]:
        response = api.get(f"{API}/incidents{query}")
        assert response.status_code == 200, response.content
        return {row["id"] for row in response.json()["results"]}

    assert ids("") == {first.pk, later.pk}
    assert ids(f"?flow={other_flow.pk}") == {later.pk}
    assert ids(f"?number={quote(other_number.number)}") == {later.pk}
    assert ids(f"?number={quote(other_number.number.replace('+1', '+1 '))}") == {later.pk}
    assert ids("?since=2029-12-31T00:00:00Z") == {later.pk}
    assert ids("?until=2029-12-31T00:00:00Z") == {first.pk}
    assert ids("?status=open") == {first.pk, later.pk}
    assert ids("?status=resolved") == set()
    assert ids("?caller=%2B19175551212") == {first.pk, later.pk}
    api.post(f"{API}/incidents/{first.pk}/acknowledge", {"person": mine["person"].pk}, format="json")
    assert ids(f"?acknowledged_by={mine['person'].pk}") == {first.pk}
    assert ids("?status=acknowledged") == {first.pk}
    for query, field in (
        ("?status=bogus", "status"),
        ("?status=", "status"),
        ("?flow=abc", "flow"),
        ("?since=yesterday", "since"),
        ("?number=12", "number"),
        ("?acknowledged_by=0", "acknowledged_by"),
    ):
        assert errors_of(api.get(f"{API}/incidents{query}")) == [field], query


def test_incident_detail_and_ordered_timeline(api, mine):
    incident = mine["incident"]
    detail = api.get(f"{API}/incidents/{incident.pk}")
    assert detail.status_code == 200
    body = detail.json()
    assert body["intake"] == {"name": "Pat", "problem": "No heat"}
    assert body["status"] == "open" and body["short_code"] == incident.short_code
    assert body["policy_snapshot"]["steps"][0]["target_id"] == mine["person"].pk
    assert {(p["channel"], p["purpose"]) for p in body["pages"]} == {("call", "page"), ("sms", "page")}
    timeline = api.get(f"{API}/incidents/{incident.pk}/timeline").json()
    kinds = [event["kind"] for event in timeline]
    assert kinds[:2] == ["opened", "step_fired"]
    stamps = [(event["at"], event["id"]) for event in timeline]
    assert stamps == sorted(stamps)


def test_acknowledge_and_resolve_through_the_api(api, mine):
    incident, person = mine["incident"], mine["person"]
    acked = api.post(f"{API}/incidents/{incident.pk}/acknowledge", {"person": person.pk}, format="json")
    assert acked.status_code == 200, acked.content
    assert (acked.json()["status"], acked.json()["acknowledged_by"], acked.json()["ack_channel"]) == (
        "acknowledged",
        person.pk,
        "api",
    )
    # Pending legs stopped, the caller told.
    assert not Page.objects.filter(incident=incident, purpose="page", status="to_send").exists()
    assert Page.objects.filter(incident=incident, purpose="caller").exists()
    again = api.post(f"{API}/incidents/{incident.pk}/acknowledge", {"person": person.pk}, format="json")
    assert errors_of(again) == ["status"]

    resolved = api.post(
        f"{API}/incidents/{incident.pk}/resolve", {"note": "Fixed the boiler\x07"}, format="json"
    )
    assert resolved.status_code == 200 and resolved.json()["status"] == "resolved"
    assert errors_of(api.post(f"{API}/incidents/{incident.pk}/resolve", {}, format="json")) == ["status"]
    assert errors_of(api.post(f"{API}/incidents/{incident.pk}/escalate", {}, format="json")) == ["status"]
    timeline = api.get(f"{API}/incidents/{incident.pk}/timeline").json()
    kinds = [event["kind"] for event in timeline]
    assert kinds.index("acknowledged") < kinds.index("resolved") < kinds.index("note")
    ack = next(event for event in timeline if event["kind"] == "acknowledged")
    assert (ack["person"], ack["person_name"], ack["channel"]) == (person.pk, person.name, "api")
    note = next(event for event in timeline if event["kind"] == "note")
    assert note["detail"]["note"] == "Fixed the boiler"


def test_acknowledge_without_a_person_is_a_manager(api, mine):
    response = api.post(f"{API}/incidents/{mine['incident'].pk}/acknowledge", {}, format="json")
    assert response.status_code == 200 and response.json()["acknowledged_by"] is None
    assert response.json()["status"] == "acknowledged"


def test_escalate_now_fires_the_next_step(api, tenant):
    a, b = make_person(tenant), make_person(tenant)
    policy = make_policy(
        tenant,
        steps=[
            {"target_kind": "person", "person": a, "wait_s": 120},
            {"target_kind": "person", "person": b, "wait_s": 120},
        ],
    )
    incident = make_incident(tenant, policy=policy, person=a)
    timer = Timer.objects.get(key=f"flows.incident:{incident.pk}", state="pending")
    assert timer.due_at > timezone.now() + timedelta(seconds=100)
    response = api.post(f"{API}/incidents/{incident.pk}/escalate", {}, format="json")
    assert response.status_code == 200, response.content
    # The step's timer is due now: the timer worker (or the sweep) fires step 2 at once.
    timer = Timer.objects.get(key=f"flows.incident:{incident.pk}", state="pending")
    assert timer.due_at <= timezone.now() and timer.payload["step"] == 1


# ------------------------------------------------------------------------------------ inbound calls


def test_inbound_calls_list_detail_and_filters(api, tenant, mine):
    flow = mine["flow"]
    refused = make_call(tenant, flow, mine["number"].number, handling="refused_over_cap", intake={})
    detail = api.get(f"{API}/inbound-calls/{mine['call'].pk}").json()
    assert detail["intake"] == {"name": "Pat", "problem": "No heat"}
    assert detail["incident"] == mine["incident"].pk and detail["did"] == mine["number"].number
    listed = api.get(f"{API}/inbound-calls?handling=refused_over_cap").json()["results"]
    assert [row["id"] for row in listed] == [refused.pk]
    assert api.get(f"{API}/inbound-calls?number={quote(mine['number'].number)}").json()["count"] == 2
    assert api.get(f"{API}/inbound-calls?flow={flow.pk}&status=live").json()["count"] == 0
    assert errors_of(api.get(f"{API}/inbound-calls?handling=nope")) == ["handling"]


def test_the_schema_lists_the_flows_routes():
    from django.test import Client

    document = Client().get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    for path in (
        "/api/v1/phone-numbers",
        "/api/v1/inbound-flows/{id}",
        "/api/v1/escalation-policies",
        "/api/v1/incidents/{id}/timeline",
        "/api/v1/incidents/{id}/acknowledge",
        "/api/v1/oncall/now",
        "/api/v1/inbound-calls",
    ):
        assert path in document["paths"], path


def test_an_agent_profile_a_flow_uses_cannot_be_deleted(api, tenant):
    agent = make_agent(tenant)
    make_flow(tenant, agent=agent)
    response = api.delete(f"{API}/agent-profiles/{agent.pk}")
    assert errors_of(response) == ["agent"]
    assert "Flow" in str(response.json())
