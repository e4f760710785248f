"""Getting a new API key when the first one is lost: ``/api/v1/api-keys`` (create: shown once; list: never
a secret; delete: revoke), ``manage.py create_api_key``, and what ``seed_demo`` says about it."""

from __future__ import annotations

import io
import re

import pytest
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from tenants.models import ApiKey, Membership
from tenants.services import api_key_create, membership_add
from tests.campaigns.factories import make_tenant, make_user

pytestmark = pytest.mark.django_db

KEYS = "/api/v1/api-keys"


def bearer(raw_key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw_key}")
    return client


def member(tenant, role: str) -> APIClient:
    user = make_user()
    membership_add(tenant=tenant, user=user, role=role)
    client = APIClient()
    client.force_login(user)
    return client


def test_an_owner_creates_a_key_that_is_shown_once_and_works():
    tenant = make_tenant()
    owner = member(tenant, Membership.Role.OWNER)

    response = owner.post(KEYS, {"name": "crm sync"}, format="json")

    assert response.status_code == 201, response.content
    body = response.json()
    assert body["name"] == "crm sync" and body["key"].startswith("vco_")
    assert "no-store" in response["Cache-Control"]
    assert bearer(body["key"]).get("/api/v1/campaigns").status_code == 200
    stored = ApiKey.objects.get(pk=body["id"])
    assert stored.tenant == tenant and stored.created_by is not None
    assert body["key"] not in stored.key_hash

    listed = owner.get(KEYS).json()["results"]
    assert [row["id"] for row in listed] == [body["id"]]
    assert "key" not in listed[0] and "key_hash" not in listed[0]
    assert listed[0]["masked_key"] == f"vco_{stored.prefix}…"
    assert body["key"] not in owner.get(f"{KEYS}/{body['id']}").content.decode()


def test_revoking_a_key_stops_it_and_keeps_it_listed():
    tenant = make_tenant()
    _, first = api_key_create(tenant=tenant, name="first")
    second_key, second = api_key_create(tenant=tenant, name="second")
    client = bearer(first)

    assert client.delete(f"{KEYS}/{second_key.pk}").status_code == 204
    assert bearer(second).get("/api/v1/campaigns").status_code == 401
    assert client.delete(f"{KEYS}/{second_key.pk}").status_code == 204  # again: still revoked
    row = next(row for row in client.get(KEYS).json()["results"] if row["id"] == second_key.pk)
    assert row["revoked_at"] is not None


def test_a_viewer_may_not_see_make_or_revoke_keys():
    tenant = make_tenant()
    key, _ = api_key_create(tenant=tenant, name="existing")
    viewer = member(tenant, Membership.Role.VIEWER)
    assert viewer.get(KEYS).status_code == 403
    assert viewer.post(KEYS, {"name": "mine"}, format="json").status_code == 403
    assert viewer.delete(f"{KEYS}/{key.pk}").status_code == 403
    assert ApiKey.objects.filter(tenant=tenant).count() == 1
    assert ApiKey.objects.get(pk=key.pk).revoked_at is None


def test_another_tenants_key_is_not_found_and_stays():
    tenant, other = make_tenant(), make_tenant()
    _, raw = api_key_create(tenant=tenant, name="mine")
    foreign, _ = api_key_create(tenant=other, name="theirs")
    client = bearer(raw)
    assert client.get(f"{KEYS}/{foreign.pk}").status_code == 404
    assert client.delete(f"{KEYS}/{foreign.pk}").status_code == 404
    assert ApiKey.objects.get(pk=foreign.pk).revoked_at is None
    assert foreign.pk not in [row["id"] for row in client.get(KEYS).json()["results"]]


@pytest.mark.parametrize("body", [{}, {"name": ""}, {"name": "   "}, {"name": "x" * 101}, {"name": 5}])
def test_a_bad_key_name_is_a_400_naming_it(body):
    tenant = make_tenant()
    _, raw = api_key_create(tenant=tenant, name="mine")
    response = bearer(raw).post(KEYS, body, format="json")
    assert (response.status_code, list(response.json())) == (400, ["name"])
    assert ApiKey.objects.filter(tenant=tenant).count() == 1


def test_create_api_key_prints_a_new_working_key_once():
    tenant = make_tenant()
    out = io.StringIO()
    call_command("create_api_key", "--tenant", tenant.slug, "--name", "laptop", stdout=out)
    [raw] = re.findall(r"vco_[A-Za-z0-9_-]+", out.getvalue())
    assert ApiKey.objects.get(tenant=tenant).name == "laptop"
    assert bearer(raw).get("/api/v1/campaigns").status_code == 200


def test_create_api_key_names_what_is_wrong():
    with pytest.raises(CommandError, match="--tenant: no tenant"):
        call_command("create_api_key", "--tenant", "nope")
    tenant = make_tenant()
    with pytest.raises(CommandError, match="--name"):
        call_command("create_api_key", "--tenant", tenant.slug, "--name", " ")


def test_seed_demo_says_how_to_get_a_new_key_when_one_exists(settings):
    settings.PHONE_TEST_PREFIXES = ["+1555"]
    call_command("seed_demo", stdout=io.StringIO())
    out = io.StringIO()
    call_command("seed_demo", stdout=out)
    assert "vco_" not in out.getvalue()
    assert "manage.py create_api_key --tenant demo" in out.getvalue()
    assert "POST /api/v1/api-keys" in out.getvalue()
