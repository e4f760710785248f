"""Tenancy admin: API keys are created only by the tenant action (shown once), and no hash is displayed."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from tenants.models import ApiKey
from tenants.selectors import api_key_authenticate
from tenants.services import api_key_create
from tests.campaigns.factories import make_tenant

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("model", ["tenant", "membership", "apikey"])
def test_changelists_render(admin_client, model):
    make_tenant()
    assert admin_client.get(reverse(f"admin:tenants_{model}_changelist")).status_code == 200


def test_api_keys_cannot_be_added_through_the_form(admin_client):
    assert admin_client.get(reverse("admin:tenants_apikey_add")).status_code == 403


def test_api_key_pages_never_show_the_hash(admin_client):
    api_key, raw_key = api_key_create(tenant=make_tenant(), name="ci")
    for url in (
        reverse("admin:tenants_apikey_changelist"),
        reverse("admin:tenants_apikey_change", args=[api_key.pk]),
    ):
        body = admin_client.get(url).content.decode()
        assert api_key.key_hash not in body
        assert raw_key not in body
        assert f"vco_{api_key.prefix}" in body


def test_tenant_action_creates_a_key_and_shows_it_once(admin_client, admin_user):
    tenant = make_tenant()
    response = admin_client.post(
        reverse("admin:tenants_tenant_changelist"),
        {"action": "create_api_key", "_selected_action": [tenant.pk]},
    )
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    body = response.content.decode()
    assert "will not be shown again" in body
    (raw_key,) = set(re.findall(r"vco_[A-Za-z0-9_-]{43}", body))
    api_key = api_key_authenticate(raw_key=raw_key)
    assert api_key is not None and api_key.tenant == tenant and api_key.created_by == admin_user


def test_revoke_action(admin_client):
    api_key, raw_key = api_key_create(tenant=make_tenant(), name="ci")
    admin_client.post(
        reverse("admin:tenants_apikey_changelist"), {"action": "revoke", "_selected_action": [api_key.pk]}
    )
    assert api_key_authenticate(raw_key=raw_key) is None
    assert ApiKey.objects.get(pk=api_key.pk).revoked_at is not None
