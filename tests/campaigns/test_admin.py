"""Campaign admin: every page renders, forms validate like the services, secrets are never displayed."""

from __future__ import annotations

import pytest
from django.urls import reverse

from campaigns.models import AttemptEvent, CallAttempt, Campaign, Pbx
from campaigns.services.pbx import pbx_create, pbx_password, pbx_place
from tests.campaigns.factories import make_agent, make_lead, make_tenant
from tests.campaigns.test_models import make_attempt

pytestmark = pytest.mark.django_db

MODELS = ["pbx", "agentprofile", "campaign", "contact", "lead", "dncentry", "callattempt", "attemptevent"]


@pytest.mark.parametrize("model", MODELS)
def test_changelists_and_add_pages_render(admin_client, model):
    attempt = make_attempt(make_lead(make_tenant()))
    AttemptEvent.objects.create(attempt=attempt, kind="ari", type="StasisStart")
    assert admin_client.get(reverse(f"admin:campaigns_{model}_changelist")).status_code == 200
    add = admin_client.get(reverse(f"admin:campaigns_{model}_add")).status_code
    assert add == (403 if model in ("lead", "callattempt", "attemptevent") else 200)


def test_attempt_pages_are_read_only(admin_client):
    attempt = make_attempt(make_lead(make_tenant()))
    response = admin_client.post(
        reverse("admin:campaigns_callattempt_change", args=[attempt.pk]), {"state": "ended"}
    )
    assert response.status_code == 403
    attempt.refresh_from_db()
    assert attempt.state == "queued"
    assert (
        admin_client.get(reverse("admin:campaigns_callattempt_change", args=[attempt.pk])).status_code == 200
    )


def test_an_attempt_page_shows_what_the_agent_left_behind(admin_client):
    attempt = make_attempt(make_lead(make_tenant()))
    CallAttempt.objects.filter(pk=attempt.pk).update(
        transcript=[
            {"role": "agent", "text": "Hi Dana, this is Sam.", "at": "2025-01-15T15:00:11+00:00"},
            {"role": "caller", "text": "Please call me tomorrow.", "at": "2025-01-15T15:00:14+00:00"},
        ],
        media_metrics={"barge_ins": 3, "errors": ["realtime: boom"]},
        disposition="callback_requested",
        transferred_to="+12125550198",
    )
    page = admin_client.get(reverse("admin:campaigns_callattempt_change", args=[attempt.pk]))
    assert page.status_code == 200
    html = page.content.decode()
    assert "agent: Hi Dana, this is Sam.<br>" in html
    assert "caller: Please call me tomorrow." in html
    assert "realtime: boom" in html and "+12125550198" in html and "Callback requested" in html
    listing = admin_client.get(
        reverse("admin:campaigns_callattempt_changelist"), {"disposition": "callback_requested"}
    )
    assert listing.status_code == 200 and str(attempt.pk) in listing.content.decode()


def test_the_agent_profile_admin_validates_turn_detection(admin_client):
    agent = make_agent(make_tenant())
    url = reverse("admin:campaigns_agentprofile_change", args=[agent.pk])
    data = {
        "tenant": agent.tenant_id,
        "name": agent.name,
        "instructions": agent.instructions,
        "greeting": "",
        "voice": "alloy",
        "model": "gpt-realtime",
        "language": "en",
        "tools": '["end_call"]',
        "transfer_numbers": "[]",
        "turn_detection": "loud",
    }
    response = admin_client.post(url, data)
    assert response.status_code == 200 and "turn_detection" in response.context["adminform"].form.errors
    response = admin_client.post(url, {**data, "turn_detection": "semantic_vad"})
    assert response.status_code == 302, response.context["adminform"].form.errors
    agent.refresh_from_db()
    assert agent.turn_detection == "semantic_vad"


def pbx_form(tenant, *, placed=None, **overrides):
    """The PBX admin's form: a platform PBX with ``tenant`` placed on it (``placed``: the placement that
    exists already, on a change)."""
    placement = {
        "placements-TOTAL_FORMS": "1",
        "placements-INITIAL_FORMS": "1" if placed else "0",
        "placements-MIN_NUM_FORMS": "0",
        "placements-MAX_NUM_FORMS": "1000",
        "placements-0-tenant": tenant.pk,
        "placements-0-max_channels": "",
    }
    if placed:
        placement.update({"placements-0-id": placed.pk, "placements-0-pbx": placed.pbx_id})
    data = {
        **placement,
        "owner": "",
        "name": "asterisk-1",
        "ari_url": "http://127.0.0.1:8088/",
        "ari_user": "asterisk",
        "password_env": "",
        "new_password": "",
        "app_name": "ai_agent",
        "endpoint_template": "PJSIP/{number}@trunk",
        "max_channels": 100,
        "calls_per_second": 10,
        "enabled": "on",
    }
    data.update(overrides)
    return data


def test_pbx_admin_stores_a_new_password_encrypted_and_never_shows_it(admin_client):
    tenant = make_tenant()
    response = admin_client.post(
        reverse("admin:campaigns_pbx_add"), pbx_form(tenant, new_password="ari-secret")
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    pbx = Pbx.objects.get()
    assert pbx.password_encrypted and "ari-secret" not in pbx.password_encrypted
    assert pbx_password(pbx=pbx) == "ari-secret"
    body = admin_client.get(reverse("admin:campaigns_pbx_change", args=[pbx.pk])).content.decode()
    assert pbx.password_encrypted not in body
    assert "ari-secret" not in body

    assert list(pbx.tenants.all()) == [tenant]  # placed on it, from the inline

    # Saving again without a password keeps the stored one.
    response = admin_client.post(
        reverse("admin:campaigns_pbx_change", args=[pbx.pk]),
        pbx_form(tenant, placed=pbx.placements.get(), name="a2"),
    )
    assert response.status_code == 302
    pbx.refresh_from_db()
    assert (pbx.name, pbx_password(pbx=pbx)) == ("a2", "ari-secret")


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({}, "password_env"),
        ({"new_password": "x", "password_env": "ARI_PW"}, "new_password"),
        ({"password_env": "bad name"}, "password_env"),
        ({"password_env": "ARI_PW", "endpoint_template": "PJSIP/trunk"}, "endpoint_template"),
    ],
)
def test_pbx_admin_form_errors(admin_client, overrides, field):
    response = admin_client.post(reverse("admin:campaigns_pbx_add"), pbx_form(make_tenant(), **overrides))
    assert response.status_code == 200
    assert field in response.context["adminform"].form.errors
    assert not Pbx.objects.exists()


def test_a_tenants_own_pbx_takes_no_environment_variable_and_passes_the_url_policy(admin_client):
    """Even through the operator's admin: a tenant's own PBX never reads a platform environment variable,
    and its URL (tenant input) must pass the URL policy, or the use-time check would refuse it anyway."""
    tenant = make_tenant(allow_own_pbx=True)
    own = {"owner": tenant.pk, "placements-TOTAL_FORMS": "0"}
    response = admin_client.post(
        reverse("admin:campaigns_pbx_add"), pbx_form(tenant, **own, password_env="SECRET_KEY")
    )
    assert "password_env" in response.context["adminform"].form.errors
    response = admin_client.post(
        reverse("admin:campaigns_pbx_add"),
        pbx_form(tenant, **own, new_password="x", ari_url="http://169.254.169.254/"),
    )
    assert "ari_url" in response.context["adminform"].form.errors
    assert not Pbx.objects.exists()
    response = admin_client.post(
        reverse("admin:campaigns_pbx_add"),
        pbx_form(tenant, **own, new_password="x", ari_url="http://93.184.215.14:8088/"),
    )
    assert response.status_code == 302
    pbx = Pbx.objects.get()
    assert pbx.owner == tenant and list(pbx.tenants.all()) == [tenant]


def test_pbx_admin_can_switch_to_an_environment_variable(admin_client):
    tenant = make_tenant()
    pbx = pbx_create(name="asterisk-1", ari_url="http://127.0.0.1:8088/", ari_user="a", password="p")
    pbx_place(pbx=pbx, tenant=tenant)
    response = admin_client.post(
        reverse("admin:campaigns_pbx_change", args=[pbx.pk]),
        pbx_form(tenant, placed=pbx.placements.get(), password_env="ARI_PW"),
    )
    assert response.status_code == 302
    pbx.refresh_from_db()
    assert (pbx.password_env, pbx.password_encrypted) == ("ARI_PW", "")


def test_campaign_admin_form_enforces_the_tenant_cap_and_agent_tenant(admin_client):
    tenant, other = make_tenant(max_concurrent_calls=3), make_tenant()
    data = {
        "tenant": tenant.pk,
        "agent": make_agent(other).pk,
        "name": "c",
        "caller_id": "+14155550100",
        "status": "draft",
        "calling_windows": '{"mon": [["09:00", "17:00"]], "funday": []}',
        "max_concurrent_calls": 4,
        "max_attempts": 3,
        "retry_delays": '{"busy": 600}',
        "ring_timeout": 30,
        "priority": 0,
    }
    response = admin_client.post(reverse("admin:campaigns_campaign_add"), data)
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert {"agent", "max_concurrent_calls", "calling_windows"} <= set(errors)
    assert not Campaign.objects.exists()
