"""No input answers a 500, and every error under /api/ is JSON: out-of-range ids and filters, deeply nested,
oversized, mistyped or unstorable JSON, bodies and requests Django itself refuses, constraint violations
(DESIGN.md §5 rule 6)."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from django.conf import settings
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from campaigns.models import Campaign
from campaigns.services.transfers import transfer_target_create
from flows.services.setup_oncall import rotation_override_create
from integrations.services.endpoints import webhook_endpoint_create
from messaging.services.accounts import sms_account_create
from tests.campaigns.factories import make_agent, make_campaign, make_lead, make_pbx, make_tenant
from tests.campaigns.test_api import API, api_client, snapshot
from tests.flows.setup_factories import (
    make_flow,
    make_group,
    make_incident,
    make_number,
    make_person,
    make_policy,
    make_rotation,
)

pytestmark = pytest.mark.django_db

HUGE = "99999999999999999999"
HUGE_NEGATIVE = "-2191516139614823080001536"


@pytest.fixture
def tenant() -> Any:
    return make_tenant()


@pytest.fixture
def api(tenant: Any) -> APIClient:
    return api_client(tenant)


@pytest.fixture
def campaign(tenant: Any) -> Campaign:
    return make_campaign(tenant)


# ------------------------------------------------------------------------------------ ids and filters


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        (f"leads?campaign={HUGE_NEGATIVE}", "campaign"),
        (f"leads?campaign={HUGE}", "campaign"),
        ("leads?campaign=0", "campaign"),
        ("leads?campaign=-5", "campaign"),
        ("leads?campaign=", "campaign"),
        ("leads?status=", "status"),
        (f"attempts?campaign={HUGE}", "campaign"),
        (f"attempts?lead={HUGE}", "lead"),
        (f"attempts?lead={HUGE_NEGATIVE}", "lead"),
        ("attempts?state=", "state"),
        ("dnc?page_size=abc", "page_size"),
        ("dnc?page_size=0", "page_size"),
        ("dnc?page=abc", "page"),
        ("dnc?page=", "page"),
        ("dnc?page=0", "page"),
    ],
)
def test_an_out_of_range_filter_is_a_400_naming_the_parameter(api, query, parameter):
    response = api.get(f"{API}/{query}")
    assert response.status_code == 400, response.content
    assert list(response.json()) == [parameter]


def test_a_page_past_the_last_is_a_404(api):
    assert api.get(f"{API}/dnc?page=999").status_code == 404


@pytest.mark.parametrize(
    "path",
    [
        f"campaigns/{HUGE}",
        f"campaigns/{HUGE}/stats",
        f"campaigns/{HUGE}/export",
        f"leads/{HUGE}/why",
        f"leads/{HUGE}/brief",
        f"leads/{HUGE_NEGATIVE}",
        "leads/-1/why",
        "contacts/abc",
        f"attempts/{HUGE}",
        f"api-keys/{HUGE}",
        f"dnc/{HUGE}",
        f"agent-profiles/{HUGE}",
    ],
)
def test_a_path_id_that_cannot_exist_is_a_404(api, path):
    response = api.get(f"{API}/{path}")
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"


@pytest.mark.parametrize("value", [10**20, -(10**20), 2**63])
def test_a_huge_id_in_a_body_is_a_400_naming_the_field(api, tenant, value):
    lead = make_lead(tenant)
    response = api.post(f"{API}/leads", {"campaign": value, "contact": lead.contact_id}, format="json")
    assert (response.status_code, list(response.json())) == (400, ["campaign"])
    response = api.post(
        f"{API}/campaigns", {"name": "X", "caller_id": "+14155550100", "agent": value}, format="json"
    )
    assert (response.status_code, list(response.json())) == (400, ["agent"])


@pytest.mark.parametrize("field", ["max_concurrent_calls", "max_attempts", "ring_timeout", "priority"])
@pytest.mark.parametrize("value", [10**20, 2**31, -(10**20)])
def test_a_huge_integer_in_a_body_is_a_400_naming_the_field(api, campaign, field, value):
    before = snapshot()
    response = api.patch(f"{API}/campaigns/{campaign.pk}", {field: value}, format="json")
    assert (response.status_code, list(response.json())) == (400, [field])
    assert snapshot() == before


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"max_attempts": "5"}, "max_attempts"),
        ({"max_attempts": 5.0}, "max_attempts"),
        ({"max_attempts": True}, "max_attempts"),
        ({"name": 123}, "name"),
        ({"name": ["a"]}, "name"),
        ({"agent": "1"}, "agent"),
        ({"starts_at": 1700000000}, "starts_at"),
    ],
)
def test_a_value_of_the_wrong_json_type_is_a_400_naming_the_field(api, campaign, body, field):
    response = api.patch(f"{API}/campaigns/{campaign.pk}", body, format="json")
    assert (response.status_code, list(response.json())) == (400, [field])


# ------------------------------------------------------------------------------------------- JSON bodies


def _json_routes(world: dict[str, Any]) -> list[tuple[str, str]]:
    """Every (method, path) of the OpenAPI document that takes a JSON body, ids filled in."""
    document = Client().get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    routes = []
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            if "application/json" in operation.get("requestBody", {}).get("content", {}):
                resource = path.removeprefix("/api/v1/").split("/")[0]
                path = path.replace("{member_id}", str(world.get("{member_id}", 1)))
                routes.append((method, path.replace("{id}", str(world.get(resource, 1)))))
    return routes


@pytest.fixture
def world(tenant: Any) -> dict[str, Any]:
    campaign = make_campaign(tenant)
    lead = make_lead(tenant, campaign)
    person = make_person(tenant)
    rotation = make_rotation(tenant, [person])
    incident = make_incident(tenant, person=person)
    team = transfer_target_create(
        tenant=tenant, name="Team", kind="group", members=[{"name": "Sam", "number": "+12125550191"}]
    )
    return {
        "campaigns": campaign.pk,
        "agent-profiles": campaign.agent_id,
        "contacts": lead.contact_id,
        "pbxs": make_pbx(tenant).pk,
        "sms-accounts": sms_account_create(tenant=tenant, kind="console").pk,
        "phone-numbers": make_number(tenant).pk,
        "inbound-flows": make_flow(tenant).pk,
        "oncall-people": person.pk,
        "oncall-groups": make_group(tenant, [person]).pk,
        "rotations": rotation.pk,
        "rotation-overrides": rotation_override_create(
            rotation=rotation,
            person=person,
            starts_at=timezone.now(),
            ends_at=timezone.now() + timedelta(hours=1),
        ).pk,
        "escalation-policies": make_policy(tenant, person).pk,
        "incidents": incident.pk,
        # A public IP literal: passes the URL policy without a DNS lookup.
        "transfer-targets": team.pk,
        "{member_id}": team.members.get().pk,
        "webhook-endpoints": webhook_endpoint_create(tenant=tenant, url="https://8.8.8.8/hooks").endpoint.pk,
    }


def test_every_json_route_refuses_deep_nesting_without_recursing(api, world):
    deep = '{"variables": ' + "[" * 990 + "]" * 990 + "}"  # 2 KB: was a RecursionError (500)
    routes = _json_routes(world)
    assert len(routes) >= 10
    for method, path in routes:
        response = api.generic(method.upper(), path, deep, content_type="application/json")
        assert response.status_code == 400, (method, path, response.content)
        assert "nested deeper than 32" in response.json()["detail"]


def test_nesting_up_to_the_limit_is_read(api):
    body = {"phone_number": "+12125550150", "variables": {"a": "b"}}
    assert api.post(f"{API}/contacts", body, format="json").status_code == 201
    within = '{"phone_number": "+12125550151", "variables": ' + "[" * 31 + "]" * 31 + "}"  # 32 levels
    response = api.generic("POST", f"{API}/contacts", within, content_type="application/json")
    assert response.status_code == 400  # refused by the field (not a dict), not by the depth limit
    assert "variables" in response.json()


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ('{"phone_number": "+12125550151", "variables": {"a": "x\\u0000y"}}', "variables"),
        ('{"phone_number": "+12125550152", "variables": {"a": "x\\ud800y"}}', "variables"),
        ('{"phone_number": "+12125550153", "variables": {"k\\u0000": "v"}}', "variables"),
        ('{"phone_number": "+1212555\\u00000153"}', "phone_number"),
    ],
)
def test_text_no_database_can_store_is_a_400_naming_the_field(api, text, field):
    before = snapshot()
    response = api.generic("POST", f"{API}/contacts", text, content_type="application/json")
    assert (response.status_code, list(response.json())) == (400, [field])
    assert snapshot() == before


@pytest.mark.parametrize("text", ['{"max_attempts": 1e999}', '{"max_attempts": NaN}', "[1, 2", "\xff"])
def test_unreadable_json_is_a_400(api, campaign, text):
    response = api.generic(
        "PATCH", f"{API}/campaigns/{campaign.pk}", text.encode("latin-1"), content_type="application/json"
    )
    assert response.status_code == 400
    assert "detail" in response.json()


def test_a_body_over_the_size_limit_is_a_json_413(api):
    body = json.dumps({"phone_number": "+12125550160", "name": "x" * settings.DATA_UPLOAD_MAX_MEMORY_SIZE})
    response = api.generic("POST", f"{API}/contacts", body, content_type="application/json")
    assert response.status_code == 413
    assert response["Content-Type"] == "application/json"
    assert "larger than" in response.json()["detail"]


def test_too_many_form_fields_is_a_json_400(api, campaign):
    fields = {f"field{n}": "x" for n in range(settings.DATA_UPLOAD_MAX_NUMBER_FIELDS + 1)}
    response = api.post(f"{API}/campaigns/{campaign.pk}/import", fields, format="multipart")
    assert response.status_code == 400
    assert response["Content-Type"] == "application/json"


def test_a_form_body_is_refused_where_json_is_expected(api):
    response = api.post(f"{API}/contacts", {"phone_number": "+12125550161"}, format="multipart")
    assert response.status_code == 415
    assert response["Content-Type"] == "application/json"


# ------------------------------------------------------------------------------- Django's own errors


def test_django_level_errors_are_json_under_the_api_and_html_elsewhere(settings):
    settings.ALLOWED_HOSTS = ["testserver"]
    client = Client()
    for path, status in ((f"{API}/nothing-here", 404), ("/api/v1/campaigns/1/nothing", 404)):
        response = client.get(path)
        assert (response.status_code, response["Content-Type"]) == (status, "application/json"), path
        assert response.json() == {"detail": "Not found."}
    bad_host = client.get(f"{API}/campaigns", HTTP_HOST="evil.example")
    assert (bad_host.status_code, bad_host["Content-Type"]) == (400, "application/json")
    assert client.get("/nothing-here").headers["Content-Type"].startswith("text/html")
    assert client.get("/healthz", HTTP_HOST="evil.example").headers["Content-Type"].startswith("text/html")


def test_an_unexpected_error_under_the_api_is_a_json_500(api, campaign, monkeypatch):
    def broken(**kwargs: Any) -> Any:
        raise RuntimeError("boom")

    monkeypatch.setattr("campaigns.selectors.campaign_stats", broken)
    api.raise_request_exception = False
    response = api.get(f"{API}/campaigns/{campaign.pk}/stats")
    assert (response.status_code, response["Content-Type"]) == (500, "application/json")
    assert response.json() == {"detail": "Internal server error."}


# ------------------------------------------------------------------------------------- constraints


def test_an_end_before_the_start_names_ends_at(api, campaign):
    before = snapshot()
    start = timezone.now()
    body = {"starts_at": (start.replace(year=start.year + 1)).isoformat(), "ends_at": start.isoformat()}
    response = api.patch(f"{API}/campaigns/{campaign.pk}", body, format="json")
    assert response.status_code == 400
    assert response.json() == {"ends_at": ["must be after starts_at"]}
    assert snapshot() == before


def test_a_duplicate_agent_name_names_the_name(api, tenant):
    agent = make_agent(tenant)
    response = api.post(f"{API}/agent-profiles", {"name": agent.name, "instructions": "Hi."}, format="json")
    assert (response.status_code, list(response.json())) == (400, ["name"])


# ---------------------------------------------------------------------------------------------- schema


def _document() -> dict[str, Any]:
    return dict(Client().get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json())


def test_blank_choices_of_answers_are_in_their_schema():
    """``""`` (no outcome yet, no disposition) is a value the answers hold: their schema must allow it."""
    properties = _document()["components"]["schemas"]
    for component, field in (("Lead", "last_outcome"), ("Attempt", "outcome"), ("Attempt", "disposition")):
        choices = properties[component]["properties"][field]["oneOf"]
        assert {"$ref": "#/components/schemas/BlankEnum"} in choices, (component, field)
    assert properties["BlankEnum"] == {"enum": [""]}


def test_every_route_documents_its_error_answers():
    document = _document()
    schemas = document["components"]["schemas"]
    assert {"Error", "ValidationError"} <= set(schemas)
    operations = [
        (path, method, operation)
        for path, methods in document["paths"].items()
        for method, operation in methods.items()
    ]
    assert len(operations) > 40
    for path, method, operation in operations:
        responses = operation["responses"]
        assert {"401", "403"} <= set(responses), (method, path)
        if "{id}" in path:
            assert "404" in responses, (method, path)
        if method != "get" or any(
            parameter["in"] == "query" for parameter in operation.get("parameters", [])
        ):
            ref = responses["400"]["content"]["application/json"]["schema"]["$ref"]
            assert ref == "#/components/schemas/ValidationError", (method, path)
        if "requestBody" in operation:
            assert {"413", "415"} <= set(responses), (method, path)
        for code in ("401", "403", "404", "413"):
            if code in responses:
                assert responses[code]["content"]["application/json"]["schema"] == {
                    "$ref": "#/components/schemas/Error"
                }
