"""The REST API under /api/v1/: tenant isolation (a foreign id is 404), bad input (400 naming the field,
nothing changed), CSV import, campaign status changes, stats, why-not-dialed, DNC, pagination, schema."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.conf import settings
from django.contrib.staticfiles import finders
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import get_resolver
from django.utils import timezone
from rest_framework.test import APIClient

from campaigns.models import (
    AgentProfile,
    AttemptEvent,
    CallAttempt,
    Campaign,
    Contact,
    ContactConsent,
    ContactImport,
    DncEntry,
    Lead,
    Pbx,
)
from campaigns.services.consent import consent_create
from campaigns.services.dnc import dnc_add
from campaigns.services.imports import MAX_IMPORT_BYTES
from campaigns.services.pbx import pbx_password
from tenants.models import ApiKey, Tenant
from tenants.services import api_key_create
from tests.campaigns.factories import (
    make_agent,
    make_campaign,
    make_contact,
    make_lead,
    make_pbx,
    make_tenant,
)
from tests.campaigns.test_transfer_api import TRANSFER_ROUTES
from tests.flows.routes import DETAIL_ROUTES as FLOWS_DETAIL_ROUTES

pytestmark = pytest.mark.django_db

API = "/api/v1"


def api_client(tenant: Tenant) -> APIClient:
    _, raw_key = api_key_create(tenant=tenant, name="test")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw_key}")
    return client


def make_attempt(lead: Lead, **fields: Any) -> CallAttempt:
    """A finished attempt row with one event (test data: the dispatcher makes real ones)."""
    defaults: dict[str, Any] = {"state": "ended", "outcome": "busy", "ended_at": timezone.now()}
    defaults.update(fields)
    attempt = CallAttempt.objects.create(
        tenant=lead.campaign.tenant,
        campaign=lead.campaign,
        lead=lead,
        number=lead.contact.phone_number,
        **defaults,
    )
    AttemptEvent.objects.create(attempt=attempt, kind="state", type="queued->ended", data={})
    return attempt


@pytest.fixture
def tenant() -> Tenant:
    # The operator lets it bring its own PBX (the PBX routes' bad-input cases need to get that far).
    return make_tenant(allow_own_pbx=True)


@pytest.fixture
def api(tenant: Tenant) -> APIClient:
    return api_client(tenant)


@pytest.fixture
def world(tenant: Tenant) -> dict[str, Any]:
    """One of each object in ``tenant`` ("mine") and in another tenant ("foreign")."""
    objects: dict[str, Any] = {}
    for side, owner in (("mine", tenant), ("foreign", make_tenant())):
        agent = make_agent(owner)
        campaign = make_campaign(owner, agent=agent)
        lead = make_lead(owner, campaign, "+12125550123")
        objects[side] = {
            "agent": agent,
            "campaign": campaign,
            "contact": lead.contact,
            "consent": consent_create(
                contact=lead.contact, source="web form", captured_at=timezone.now() - timedelta(days=1)
            ),
            "lead": lead,
            "attempt": make_attempt(lead),
            "dnc": dnc_add(tenant=owner, phone_number="+12125550199", source="api"),
            "pbx": make_pbx(owner),
            "api_key": api_key_create(tenant=owner, name="listed")[0],
            "contact_import": ContactImport.objects.create(
                tenant=owner, campaign=campaign, data=b"", rows_total=2_000, created_by="test"
            ),
        }
    return objects


def snapshot() -> dict[str, list[dict[str, Any]]]:
    models = [
        AgentProfile,
        Campaign,
        Contact,
        ContactConsent,
        Lead,
        CallAttempt,
        AttemptEvent,
        DncEntry,
        Pbx,
        ContactImport,
    ]
    rows = {model.__name__: list(model._default_manager.order_by("pk").values()) for model in models}
    # A key's last use is bookkeeping of the request itself, not a change it made.
    rows["ApiKey"] = [dict(row) for row in ApiKey.objects.order_by("pk").values("pk", "name", "revoked_at")]
    return rows


# ---------------------------------------------------------------------------------- tenant isolation

DETAIL_REQUESTS = [
    ("get", "agent-profiles/{agent}"),
    ("put", "agent-profiles/{agent}"),
    ("patch", "agent-profiles/{agent}"),
    ("delete", "agent-profiles/{agent}"),
    ("get", "campaigns/{campaign}"),
    ("put", "campaigns/{campaign}"),
    ("patch", "campaigns/{campaign}"),
    ("delete", "campaigns/{campaign}"),
    ("post", "campaigns/{campaign}/start"),
    ("post", "campaigns/{campaign}/pause"),
    ("post", "campaigns/{campaign}/resume"),
    ("get", "campaigns/{campaign}/stats"),
    ("post", "campaigns/{campaign}/import"),
    ("get", "campaigns/{campaign}/export"),
    ("post", "campaigns/{campaign}/voicemail-audio"),
    ("delete", "campaigns/{campaign}/voicemail-audio"),
    ("post", "campaigns/{campaign}/redial"),
    ("get", "contacts/{contact}"),
    ("put", "contacts/{contact}"),
    ("patch", "contacts/{contact}"),
    ("delete", "contacts/{contact}"),
    ("get", "contacts/{contact}/consents"),
    ("post", "contacts/{contact}/consents"),
    ("post", "contacts/{contact}/consents/{consent}/revoke"),
    ("get", "leads/{lead}"),
    ("get", "leads/{lead}/why"),
    ("get", "leads/{lead}/brief"),
    ("get", "attempts/{attempt}"),
    ("get", "dnc/{dnc}"),
    ("delete", "dnc/{dnc}"),
    ("get", "pbxs/{pbx}"),
    ("get", "imports/{contact_import}"),
    ("put", "pbxs/{pbx}"),
    ("patch", "pbxs/{pbx}"),
    ("delete", "pbxs/{pbx}"),
    ("get", "api-keys/{api_key}"),
    ("delete", "api-keys/{api_key}"),
]


def _url(template: str, objects: dict[str, Any]) -> str:
    return f"{API}/" + template.format(**{name: obj.pk for name, obj in objects.items()})


def test_every_route_with_an_id_is_in_the_isolation_table():
    """A new endpoint taking an object id must be added to DETAIL_REQUESTS (and so proven tenant-scoped)."""

    def walk(patterns: list[Any], prefix: str = "") -> Iterator[str]:
        for pattern in patterns:
            if hasattr(pattern, "url_patterns"):
                yield from walk(pattern.url_patterns, prefix + str(pattern.pattern))
            else:
                yield prefix + str(pattern.pattern)

    routes = {
        re.sub(r"\(\?P<\w+>[^)]+\)", "{}", route.removeprefix("api/v1/^").removesuffix("$"))
        for route in walk(get_resolver().url_patterns)
        if route.startswith("api/v1/") and "<pk>" in route and "<format>" not in route
    }
    covered = {re.sub(r"\{\w+\}", "{}", template) for _, template in DETAIL_REQUESTS}
    # The inbound flows' routes are proven tenant-scoped by their own table (tests/flows/test_api.py).
    covered |= {re.sub(r"\{\w+\}", "{}", template) for template, _ in FLOWS_DETAIL_ROUTES}
    # The messaging routes: each one's foreign-tenant 404 is in tests/messaging/test_api.py.
    covered |= {"messages/{}", "sms-opt-outs/{}", "sms-accounts/{}"}
    # The recordings routes: each one's foreign-tenant 404 is in tests/recordings/test_api.py.
    covered |= {"recordings/{}", "recordings/{}/download"}
    covered |= TRANSFER_ROUTES  # each one's foreign-tenant 404: tests/campaigns/test_transfer_api.py
    # The webhook routes: each one's foreign-tenant 404 is in tests/integrations/test_api.py.
    covered |= {
        "webhook-endpoints/{}", "webhook-endpoints/{}/test", "webhook-endpoints/{}/rotate-secret",
        "webhook-deliveries/{}", "webhook-deliveries/{}/redeliver",
    }  # fmt: skip
    assert routes and routes == covered


@pytest.mark.parametrize(("method", "template"), DETAIL_REQUESTS)
def test_another_tenants_object_is_not_found_and_unchanged(api, world, method, template):
    before = snapshot()
    response = getattr(api, method)(_url(template, world["foreign"]), {}, format="json")
    assert response.status_code == 404, response.content
    assert snapshot() == before


@pytest.mark.parametrize(("method", "template"), [r for r in DETAIL_REQUESTS if r[0] == "get"])
def test_own_object_is_found(api, world, method, template):
    assert api.get(_url(template, world["mine"])).status_code == 200


UNKNOWN_UUID = "5f0c2a1e-7b3d-4c59-9a8e-2d6f1b0c4e71"


@pytest.mark.parametrize(
    "template",
    # A fixed unknown UUID: a random one would give each xdist worker a different test id (collection error).
    ["agent-profiles/999999", "campaigns/nope", "attempts/not-a-uuid", f"attempts/{UNKNOWN_UUID}", "leads/0"],
)
def test_unknown_or_malformed_ids_are_not_found(api, template):
    assert api.get(f"{API}/{template}").status_code == 404


@pytest.mark.parametrize(
    ("path", "name"),
    [
        ("agent-profiles", "agent"),
        ("campaigns", "campaign"),
        ("contacts", "contact"),
        ("leads", "lead"),
        ("attempts", "attempt"),
        ("dnc", "dnc"),
        ("pbxs", "pbx"),
        ("imports", "contact_import"),
    ],
)
def test_lists_hold_only_the_tenants_rows(api, world, path, name):
    response = api.get(f"{API}/{path}")
    assert response.status_code == 200
    ids = [row["id"] for row in response.json()["results"]]
    assert ids == [str(world["mine"][name].pk) if name == "attempt" else world["mine"][name].pk]


# -------------------------------------------------------------------------------------------- bad input

GOOD_CAMPAIGN = {"name": "Spring", "caller_id": "+14155550100"}
# A tenant's own PBX: its ARI URL must be a public address (the URL policy; an IP literal needs no DNS).
GOOD_PBX = {
    "name": "pbx-new",
    "ari_url": "http://93.184.215.14:8088/",
    "ari_user": "asterisk",
    "password": "pw",
}

BAD_REQUESTS: list[tuple[str, str, Any, str]] = [
    ("post", "agent-profiles", {"name": "A", "instructions": "Hi", "tools": ["fly"]}, "tools"),
    ("post", "agent-profiles", {"name": "A"}, "instructions"),
    ("patch", "agent-profiles/{agent}", {"transfer_numbers": ["123"]}, "transfer_numbers"),
    (
        "post",
        "agent-profiles",
        {"name": "A", "instructions": "Hi", "turn_detection": "fast"},
        "turn_detection",
    ),
    ("patch", "agent-profiles/{agent}", {"turn_detection": "none"}, "turn_detection"),
    ("patch", "agent-profiles/{agent}", {"turn_detection": ["server_vad"]}, "turn_detection"),
    ("post", "campaigns", {**GOOD_CAMPAIGN, "agent": "{agent}", "caller_id": "12"}, "caller_id"),
    ("post", "campaigns", {**GOOD_CAMPAIGN, "agent": "{foreign_agent}"}, "agent"),
    (
        "post",
        "campaigns",
        {**GOOD_CAMPAIGN, "agent": "{agent}", "max_concurrent_calls": 999},
        "max_concurrent_calls",
    ),
    (
        "post",
        "campaigns",
        {**GOOD_CAMPAIGN, "agent": "{agent}", "calling_windows": {"xyz": []}},
        "calling_windows",
    ),
    ("patch", "campaigns/{campaign}", {"retry_delays": {"bogus": 5}}, "retry_delays"),
    ("patch", "campaigns/{campaign}", {"ring_timeout": 10_000}, "ring_timeout"),
    ("patch", "campaigns/{campaign}", {"agent": "{foreign_agent}"}, "agent"),
    ("post", "contacts", {"phone_number": "not a number"}, "phone_number"),
    ("post", "contacts", {"phone_number": "+12125550123"}, "phone_number"),  # exists already
    ("post", "contacts", {"phone_number": "+12125550140", "timezone": "Mars/Base"}, "timezone"),
    ("patch", "contacts/{contact}", {"variables": {"a": [1]}}, "variables"),
    ("patch", "contacts/{contact}", {"timezone": "Nowhere/Land"}, "timezone"),
    ("post", "leads", {"campaign": "{foreign_campaign}", "contact": "{contact}"}, "campaign"),
    ("post", "leads", {"campaign": "{campaign}", "contact": "{foreign_contact}"}, "contact"),
    ("get", "leads?status=flying", None, "status"),
    ("get", "attempts?state=flying", None, "state"),
    ("get", "attempts?outcome=great", None, "outcome"),
    ("get", "attempts?campaign=abc", None, "campaign"),
    ("post", "dnc", {"phone_number": "12345"}, "phone_number"),
    ("get", "dnc/check?number=abc", None, "number"),
    ("get", "dnc/check", None, "number"),
    ("post", "pbxs", {**GOOD_PBX, "ari_url": "ftp://pbx"}, "ari_url"),
    ("post", "pbxs", {**GOOD_PBX, "endpoint_template": "PJSIP/{who}"}, "endpoint_template"),
    ("post", "pbxs", {k: v for k, v in GOOD_PBX.items() if k != "password"}, "password"),
    ("patch", "pbxs/{pbx}", {"max_channels": 0}, "max_channels"),
    ("patch", "pbxs/{pbx}", {"password_env": "not a name"}, "password_env"),
    ("post", "campaigns/{campaign}/import", {}, "file"),
]


def _fill(value: Any, world: dict[str, Any]) -> Any:
    names = {name: obj.pk for name, obj in world["mine"].items()}
    names.update({f"foreign_{name}": obj.pk for name, obj in world["foreign"].items()})
    if isinstance(value, str) and value.startswith("{") and value.endswith("}") and value[1:-1] in names:
        return names[value[1:-1]]
    if isinstance(value, str):
        return value.format(**names) if "{" in value and "PJSIP" not in value else value
    if isinstance(value, dict):
        return {key: _fill(item, world) for key, item in value.items()}
    return value


@pytest.mark.parametrize(("method", "path", "body", "field"), BAD_REQUESTS)
def test_bad_input_is_a_400_naming_the_field_and_changes_nothing(api, world, method, path, body, field):
    before = snapshot()
    url = f"{API}/{_fill(path, world)}"
    if method == "get":
        response = api.get(url)
    else:
        content = "multipart" if path.endswith("/import") else "json"
        response = getattr(api, method)(url, _fill(body, world), format=content)
    assert response.status_code == 400, response.content
    assert field in response.json(), response.json()
    assert isinstance(response.json()[field], list)
    assert snapshot() == before


def test_good_writes_go_through_the_services(api, world):
    agent = world["mine"]["agent"]
    response = api.post(f"{API}/campaigns", {**GOOD_CAMPAIGN, "agent": agent.pk}, format="json")
    assert response.status_code == 201, response.content
    created = Campaign.objects.get(pk=response.json()["id"])
    assert (created.tenant, created.status, created.caller_id) == (agent.tenant, "draft", "+14155550100")

    response = api.patch(f"{API}/campaigns/{created.pk}", {"priority": 5}, format="json")
    assert (response.status_code, response.json()["priority"]) == (200, 5)

    response = api.post(
        f"{API}/contacts",
        {"phone_number": "+1 212 555 0150", "variables": {"first_name": "Ann"}},
        format="json",
    )
    assert response.status_code == 201, response.content
    assert response.json()["phone_number"] == "+12125550150"

    contact_id = response.json()["id"]
    response = api.post(f"{API}/leads", {"campaign": created.pk, "contact": contact_id}, format="json")
    assert (response.status_code, response.json()["status"]) == (201, "waiting")
    again = api.post(f"{API}/leads", {"campaign": created.pk, "contact": contact_id}, format="json")
    assert (again.status_code, again.json()["id"]) == (200, response.json()["id"])

    assert api.delete(f"{API}/campaigns/{created.pk}").status_code == 204
    assert not Campaign.objects.filter(pk=created.pk).exists()


def test_an_agent_in_use_cannot_be_deleted(api, world):
    response = api.delete(f"{API}/agent-profiles/{world['mine']['agent'].pk}")
    assert response.status_code == 400
    assert "agent" in response.json()


# ----------------------------------------------------------------------------------------------- PBXs


def test_pbx_password_is_write_only_and_never_returned(api, tenant):
    response = api.post(f"{API}/pbxs", {**GOOD_PBX, "password": "s3cret-pw"}, format="json")
    assert response.status_code == 201, response.content
    pbx = Pbx.objects.get(pk=response.json()["id"])
    assert pbx.owner == tenant and list(pbx.tenants.all()) == [tenant]  # its own PBX, and placed on it
    assert pbx.password_encrypted and "s3cret-pw" not in pbx.password_encrypted
    for body in (response, api.get(f"{API}/pbxs/{pbx.pk}"), api.get(f"{API}/pbxs")):
        text = body.content.decode()
        assert "s3cret-pw" not in text and "password" not in text and pbx.password_encrypted not in text
    assert response.json()["own"]["ari_url"] == GOOD_PBX["ari_url"]

    response = api.patch(f"{API}/pbxs/{pbx.pk}", {"password": "n3w", "enabled": False}, format="json")
    assert response.status_code == 200, response.content
    pbx.refresh_from_db()
    assert (pbx.password_env, pbx_password(pbx=pbx), pbx.enabled) == ("", "n3w", False)


# ------------------------------------------------------------- the platform's secrets and network (rule 8)

PLATFORM_SECRETS = [
    "SIM_ARI_PASSWORD",
    "SECRET_KEY",
    "FIELD_ENCRYPTION_KEY",
    "OPENAI_API_KEY",
    "DATABASE_URL",
]


@pytest.mark.parametrize("variable", PLATFORM_SECRETS)
def test_a_tenant_cannot_name_an_environment_variable_on_any_pbx_route(api, world, variable, monkeypatch):
    """The probe: POST /pbxs with password_env=SIM_ARI_PASSWORD and an ari_url of the tenant's own made the
    worker send that variable in the Basic auth header. Never again: refused on create and on change, and
    nothing is stored."""
    monkeypatch.setenv(variable, "the-platforms-secret")
    before = snapshot()
    own = api.post(f"{API}/pbxs", {**GOOD_PBX, "name": "mine-2"}, format="json").json()["id"]
    before = snapshot()
    for method, url in (
        ("post", f"{API}/pbxs"),
        ("patch", f"{API}/pbxs/{own}"),
        ("put", f"{API}/pbxs/{own}"),
        ("patch", f"{API}/pbxs/{world['mine']['pbx'].pk}"),
    ):
        body = {**GOOD_PBX, "password_env": variable}
        body.pop("password")
        response = getattr(api, method)(url, body, format="json")
        assert response.status_code == 400, (method, url, response.content)
        assert "password_env" in response.json(), (method, url, response.content)
    assert snapshot() == before
    assert (
        not Pbx.objects.exclude(password_env="")
        .exclude(pk=world["mine"]["pbx"].pk)
        .exclude(pk=world["foreign"]["pbx"].pk)
        .exists()
    )


FORBIDDEN_TARGETS = [
    "http://169.254.169.254/latest/meta-data/",  # the cloud's metadata service
    "http://127.0.0.1:6379/",  # the platform's own Redis
    "http://localhost:5432/",
    "http://10.0.0.8:8088/",
    "http://192.168.1.10:8088/",
    "http://172.16.0.1:8088/",
    "http://100.64.0.1:8088/",
    "http://[::1]:8088/",
    "http://[fd00::1]:8088/",
    "http://[::ffff:127.0.0.1]:8088/",
    "http://[fe80::1]:8088/",
    "http://0.0.0.0:8088/",
    "http://user:pw@93.184.215.14:8088/",
]


@pytest.mark.parametrize("url", FORBIDDEN_TARGETS)
def test_a_tenant_cannot_aim_the_workers_at_a_forbidden_address(api, url):
    before = snapshot()
    response = api.post(f"{API}/pbxs", {**GOOD_PBX, "ari_url": url}, format="json")
    assert response.status_code == 400 and "ari_url" in response.json(), response.content
    assert snapshot() == before


def test_the_operator_may_allow_a_network_for_tenants_urls(api, settings):
    settings.TENANT_URL_ALLOWED_NETWORKS = ["10.0.0.0/24"]
    response = api.post(f"{API}/pbxs", {**GOOD_PBX, "ari_url": "http://10.0.0.8:8088/"}, format="json")
    assert response.status_code == 201, response.content
    outside = {**GOOD_PBX, "name": "x", "ari_url": "http://10.0.1.8:8088/"}
    response = api.post(f"{API}/pbxs", outside, format="json")
    assert response.status_code == 400


def test_a_tenant_without_the_operators_leave_cannot_bring_a_pbx_and_never_changes_a_platform_one(world):
    other = api_client(make_tenant())
    platform = world["mine"]["pbx"]
    mine = api_client(platform.tenants.get())
    before = snapshot()
    assert other.post(f"{API}/pbxs", GOOD_PBX, format="json").status_code == 403
    assert mine.patch(f"{API}/pbxs/{platform.pk}", {"enabled": False}, format="json").status_code == 403
    assert mine.delete(f"{API}/pbxs/{platform.pk}").status_code == 403
    assert snapshot() == before
    # What it sees of a platform PBX: its name and share, whether it can take calls; no URL, no user.
    shown = mine.get(f"{API}/pbxs/{platform.pk}").json()
    assert shown == {
        "id": platform.pk,
        "name": platform.name,
        "platform": True,
        "share": None,
        "enabled": True,
        "connected": True,  # (the tests' health stand-in: every PBX listening)
        "own": None,
    }


# ------------------------------------------------------------------------------------------ campaigns


def test_campaign_start_pause_resume(api, world):
    campaign = world["mine"]["campaign"]
    url = f"{API}/campaigns/{campaign.pk}"
    assert api.post(f"{url}/pause").status_code == 400  # a draft does not pause
    assert api.post(f"{url}/resume").json() == {"status": ["cannot resume a draft campaign"]}
    response = api.post(f"{url}/start")
    assert (response.status_code, response.json()["status"]) == (200, "running")
    assert api.post(f"{url}/start").json()["status"] == "running"  # repeated: no-op
    assert api.post(f"{url}/pause").json()["status"] == "paused"
    assert api.post(f"{url}/start").status_code == 400  # a paused campaign is resumed, not started
    assert api.post(f"{url}/resume").json()["status"] == "running"
    campaign.refresh_from_db()
    assert campaign.status == "running"


def test_an_archived_campaign_cannot_start_or_resume(api, world):
    campaign = world["mine"]["campaign"]
    Campaign.objects.filter(pk=campaign.pk).update(status="archived")
    for action in ("start", "resume", "pause"):
        response = api.post(f"{API}/campaigns/{campaign.pk}/{action}")
        assert response.status_code == 400
        assert response.json() == {"status": [f"cannot {action} a archived campaign"]}
    campaign.refresh_from_db()
    assert campaign.status == "archived"


def test_a_campaign_past_its_end_cannot_start(api, world):
    campaign = world["mine"]["campaign"]
    Campaign.objects.filter(pk=campaign.pk).update(ends_at=timezone.now() - timedelta(days=1))
    response = api.post(f"{API}/campaigns/{campaign.pk}/start")
    assert (response.status_code, list(response.json())) == (400, ["ends_at"])


def test_a_running_campaign_cannot_be_deleted(api, world):
    campaign = world["mine"]["campaign"]
    api.post(f"{API}/campaigns/{campaign.pk}/start")
    assert api.delete(f"{API}/campaigns/{campaign.pk}").status_code == 400
    assert Campaign.objects.filter(pk=campaign.pk).exists()


def test_campaign_stats(api, tenant):
    campaign = make_campaign(tenant)
    leads = [make_lead(tenant, campaign, f"+1212555014{i}") for i in range(5)]
    make_attempt(leads[0], outcome="busy")
    make_attempt(leads[1], outcome="busy")
    make_attempt(leads[2], outcome="answered")
    make_attempt(leads[3], state="ringing", outcome="", ended_at=None)
    Lead.objects.filter(pk=leads[3].pk).update(status="in_attempt", next_due_at=None)
    Lead.objects.filter(pk=leads[2].pk).update(status="done", next_due_at=None)
    stats = api.get(f"{API}/campaigns/{campaign.pk}/stats").json()
    assert stats["leads"] == {"waiting": 3, "in_attempt": 1, "done": 1, "suppressed": 0}
    assert stats["leads_total"] == 5
    assert stats["attempts_by_outcome"]["busy"] == 2
    assert stats["attempts_by_outcome"]["answered"] == 1
    assert sum(stats["attempts_by_outcome"].values()) == 3
    assert stats["attempts_by_state"]["ringing"] == 1
    assert (stats["live_calls"], stats["attempts_total"]) == (1, 4)


def test_why_not_dialed(api, world):
    lead = world["mine"]["lead"]
    response = api.get(f"{API}/leads/{lead.pk}/why")
    assert response.status_code == 200
    body = response.json()
    assert (body["lead_id"], body["status"], body["dialable_now"]) == (lead.pk, "waiting", False)
    assert "campaign_not_running" in [reason["code"] for reason in body["reasons"]]

    dnc_add(tenant=lead.campaign.tenant, phone_number=lead.contact.phone_number, source="api")
    codes = [reason["code"] for reason in api.get(f"{API}/leads/{lead.pk}/why").json()["reasons"]]
    assert "dnc" in codes


def test_attempt_list_filters_and_detail_with_events(api, world, tenant):
    mine = world["mine"]
    other_lead = make_lead(tenant, mine["campaign"], "+12125550160")
    live = make_attempt(other_lead, state="dialing", outcome="", ended_at=None)
    rows = api.get(f"{API}/attempts?state=dialing").json()["results"]
    assert [row["id"] for row in rows] == [str(live.pk)]
    rows = api.get(f"{API}/attempts?outcome=busy&campaign={mine['campaign'].pk}").json()["results"]
    assert [row["id"] for row in rows] == [str(mine["attempt"].pk)]
    rows = api.get(f"{API}/attempts?lead={other_lead.pk}").json()["results"]
    assert [row["id"] for row in rows] == [str(live.pk)]
    detail = api.get(f"{API}/attempts/{mine['attempt'].pk}").json()
    assert [event["type"] for event in detail["events"]] == ["queued->ended"]
    assert "events" not in api.get(f"{API}/attempts").json()["results"][0]


def test_attempts_show_what_the_agent_left_behind_read_only(api, world):
    attempt = world["mine"]["attempt"]
    callback = timezone.now() + timedelta(days=1)
    transcript = [{"role": "agent", "text": "Hello", "at": "2025-01-15T15:00:11+00:00"}]
    CallAttempt.objects.filter(pk=attempt.pk).update(
        transcript=transcript,
        media_metrics={"barge_ins": 2, "errors": []},
        disposition="interested",
        callback_at=callback,
        transferred_to="+12125550198",
    )

    detail = api.get(f"{API}/attempts/{attempt.pk}").json()
    assert detail["transcript"] == transcript
    assert detail["media_metrics"] == {"barge_ins": 2, "errors": []}
    assert (detail["disposition"], detail["transferred_to"]) == ("interested", "+12125550198")
    assert detail["callback_at"] is not None
    [row] = api.get(f"{API}/attempts").json()["results"]
    assert (row["disposition"], row["transferred_to"]) == ("interested", "+12125550198")
    assert "transcript" not in row and "media_metrics" not in row  # the list stays light
    # Read-only: there is no write endpoint for attempts.
    assert (
        api.patch(f"{API}/attempts/{attempt.pk}", {"disposition": "other"}, format="json").status_code == 405
    )


def test_an_agent_profile_takes_its_turn_detection(api):
    body = {"name": "Semantic", "instructions": "Hi", "turn_detection": "semantic_vad"}
    response = api.post(f"{API}/agent-profiles", body, format="json")
    assert response.status_code == 201, response.content
    assert response.json()["turn_detection"] == "semantic_vad"
    agent_id = response.json()["id"]
    response = api.patch(f"{API}/agent-profiles/{agent_id}", {"turn_detection": "server_vad"}, format="json")
    assert response.status_code == 200, response.content
    assert AgentProfile.objects.get(pk=agent_id).turn_detection == "server_vad"
    default = api.post(f"{API}/agent-profiles", {"name": "Default", "instructions": "Hi"}, format="json")
    assert default.json()["turn_detection"] == "server_vad"


def test_lead_list_filters(api, world, tenant):
    campaign = make_campaign(tenant)
    lead = make_lead(tenant, campaign, "+12125550170")
    rows = api.get(f"{API}/leads?campaign={campaign.pk}").json()["results"]
    assert [row["id"] for row in rows] == [lead.pk]
    assert rows[0]["contact"]["phone_number"] == "+12125550170"
    assert api.get(f"{API}/leads?status=done").json()["results"] == []


# ------------------------------------------------------------------------------------------------ DNC


def test_dnc_add_check_remove(api):
    response = api.post(f"{API}/dnc", {"phone_number": "+1 (212) 555-0177", "note": "asked"}, format="json")
    assert response.status_code == 201, response.content
    entry = response.json()
    assert (entry["phone_number"], entry["source"]) == ("+12125550177", "api")
    assert api.get(f"{API}/dnc/check", {"number": "+12125550177"}).json() == {
        "number": "+12125550177",
        "on_dnc": True,
    }
    assert api.get(f"{API}/dnc/check", {"number": "+12125550178"}).json()["on_dnc"] is False
    assert api.delete(f"{API}/dnc/{entry['id']}").status_code == 204
    assert api.get(f"{API}/dnc/check", {"number": "+12125550177"}).json()["on_dnc"] is False


def test_dnc_check_is_per_tenant(api, world):
    foreign_number = world["foreign"]["dnc"].phone_number
    DncEntry.objects.filter(tenant=world["mine"]["dnc"].tenant).delete()
    assert api.get(f"{API}/dnc/check", {"number": foreign_number}).json()["on_dnc"] is False


# ----------------------------------------------------------------------------------------- pagination


def test_pagination_default_and_cap(api, tenant):
    DncEntry.objects.bulk_create(
        DncEntry(tenant=tenant, phone_number=f"+1212555{n:04d}", source="api") for n in range(230)
    )
    body = api.get(f"{API}/dnc").json()
    assert (body["count"], len(body["results"])) == (230, 50)
    assert body["next"]
    assert len(api.get(f"{API}/dnc", {"page_size": 10_000}).json()["results"]) == 200
    assert len(api.get(f"{API}/dnc", {"page_size": 7}).json()["results"]) == 7


# ------------------------------------------------------------------------------------------ CSV import


def _import(api: APIClient, campaign: Campaign, text: str, *, multipart: bool = True) -> Any:
    url = f"{API}/campaigns/{campaign.pk}/import"
    if multipart:
        upload = SimpleUploadedFile("leads.csv", text.encode(), content_type="text/csv")
        return api.post(url, {"file": upload}, format="multipart")
    return api.generic("POST", url, text, content_type="text/csv")


CSV = (
    "phone_number,name,timezone,first_name,plan\n"
    "+12125550101,Ann Lee,America/New_York,Ann,gold\n"  # row 2
    "12345,Bad Number,,Bob,\n"  # row 3: bad number
    "+1 212 555 0102,Cy,,Cy,silver\n"  # row 4
    "+12125550101,Ann Again,,Ann,\n"  # row 5: repeats row 2
    "+12125550103,Di,Mars/Base,Di,\n"  # row 6: bad time zone
)


@pytest.mark.parametrize("multipart", [True, False])
def test_csv_import_reports_rows_and_only_valid_rows_become_leads(api, tenant, multipart):
    campaign = make_campaign(tenant)
    response = _import(api, campaign, CSV, multipart=multipart)
    assert response.status_code == 200, response.content
    report = response.json()
    assert (report["created"], report["updated"]) == (2, 0)
    assert [(error["row"], error["field"]) for error in report["errors"]] == [
        (3, "phone_number"),
        (5, "phone_number"),
        (6, "timezone"),
    ]
    assert "repeats row 2" in report["errors"][1]["message"]
    leads = Lead.objects.filter(campaign=campaign).select_related("contact")
    assert sorted(lead.contact.phone_number for lead in leads) == ["+12125550101", "+12125550102"]
    ann = Contact.objects.get(tenant=tenant, phone_number="+12125550101")
    assert (ann.name, ann.timezone, ann.variables) == (
        "Ann Lee",
        "America/New_York",
        {"first_name": "Ann", "plan": "gold"},
    )
    assert not Contact.objects.filter(phone_number="+12125550103").exists()

    # The same file again: nothing new, the same two rows are "unchanged", the same errors.
    again = _import(api, campaign, CSV, multipart=multipart).json()
    assert (again["created"], again["updated"], again["unchanged"]) == (0, 0, 2)
    assert again["errors"] == report["errors"]
    assert Lead.objects.filter(campaign=campaign).count() == 2
    assert Contact.objects.filter(tenant=tenant).count() == 2


def test_csv_import_reports_only_really_changed_rows_as_updated(api, tenant):
    campaign = make_campaign(tenant)
    text = "phone_number,name,plan\n+12125550101,Ann,gold\n+12125550102,Bo,silver\n"
    assert _import(api, campaign, text).json()["created"] == 2
    again = _import(api, campaign, text.replace("Bo,silver", "Bo,gold")).json()
    assert (again["created"], again["updated"], again["unchanged"]) == (0, 1, 1)
    assert Contact.objects.get(tenant=tenant, phone_number="+12125550102").variables == {"plan": "gold"}
    # A contact already in the tenant that a file gives to a new campaign is "created" there.
    other = _import(api, make_campaign(tenant), text).json()
    assert (other["created"], other["updated"], other["unchanged"]) == (2, 0, 0)


def test_csv_import_uses_existing_contacts_of_the_tenant(api, tenant):
    campaign = make_campaign(tenant)
    make_contact(tenant, "+12125550101", name="Old")
    report = _import(api, campaign, "phone_number,name\n+12125550101,New\n").json()
    assert (report["created"], report["updated"], report["errors"]) == (1, 0, [])
    assert Contact.objects.get(tenant=tenant, phone_number="+12125550101").name == "New"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("name,first_name\nAnn,Ann\n", "phone_number"),
        ("phone_number,x,x\n+12125550101,1,2\n", "repeated"),
    ],
)
def test_csv_import_refuses_an_unusable_file(api, tenant, text, message):
    campaign = make_campaign(tenant)
    before = snapshot()
    response = _import(api, campaign, text)
    assert response.status_code == 400
    assert message in response.json()["file"][0]
    assert snapshot() == before


def test_csv_import_size_and_row_caps(api, tenant, monkeypatch):
    campaign = make_campaign(tenant)
    big = "phone_number\n" + "+12125550101\n" * (MAX_IMPORT_BYTES // 13 + 10)
    response = _import(api, campaign, big, multipart=False)
    assert (response.status_code, list(response.json())) == (400, ["file"])
    monkeypatch.setattr("campaigns.services.imports.MAX_IMPORT_ROWS", 2)
    rows = "phone_number\n+12125550101\n+12125550102\n+12125550104\n"
    response = _import(api, campaign, rows)
    assert response.status_code == 400
    assert "more than 2 rows" in response.json()["file"][0]
    assert not Lead.objects.filter(campaign=campaign).exists()


def test_csv_row_with_the_wrong_number_of_cells_is_reported(api, tenant):
    campaign = make_campaign(tenant)
    report = _import(api, campaign, "phone_number,name\n+12125550101,A,extra\n+12125550102,B\n").json()
    assert report["created"] == 1
    assert report["errors"] == [{"row": 2, "field": "file", "message": "has 3 cells, the header 2"}]


# ------------------------------------------------------------------------------------- schema and docs


def test_schema_is_an_openapi_document():
    response = APIClient().get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    document = response.json()
    assert document["openapi"].startswith("3.")
    assert "/api/v1/campaigns/{id}/import" in document["paths"]
    assert "/api/v1/leads/{id}/why" in document["paths"]
    assert "ApiKey" in document["components"]["securitySchemes"]
    assert "password" not in document["components"]["schemas"]["Pbx"]["properties"]


def test_docs_page_is_served_with_local_assets():
    response = APIClient().get("/api/docs/")
    assert response.status_code == 200
    page = response.content.decode()
    assert "swagger-ui" in page
    assets = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert assets and all(url.startswith(settings.STATIC_URL) or url.startswith("/static/") for url in assets)
    assert all(finders.find(url.split("/static/", 1)[1]) for url in assets)  # shipped, not from a CDN


def test_a_duplicate_agent_name_is_a_400(api, world):
    before = snapshot()
    body = {"name": world["mine"]["agent"].name, "instructions": "Hello."}
    response = api.post(f"{API}/agent-profiles", body, format="json")
    assert response.status_code == 400, response.content
    assert set(response.json()) <= {"name", "non_field_errors"}
    assert snapshot() == before
