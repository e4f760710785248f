"""Tenants, memberships and API keys: services and selectors against the real database."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone

from orchestrator.errors import InvalidInput
from tenants.models import ApiKey, Membership, Tenant
from tenants.selectors import api_key_authenticate, memberships_for_user, tenant_for_user
from tenants.services import api_key_create, api_key_revoke, membership_add, tenant_create
from tests.campaigns.factories import make_tenant, make_user

pytestmark = pytest.mark.django_db


# ------------------------------------------------------------------------------------------- tenants


def test_tenant_create_makes_the_owner_a_member():
    owner = make_user("owner@example.com")
    tenant = tenant_create(name="Acme", slug="acme", owner=owner, default_timezone="Europe/Paris")
    assert tenant.status == Tenant.Status.ACTIVE
    assert (tenant.max_concurrent_calls, tenant.calls_per_second, tenant.inbound_reserve) == (5, 5, 0)
    membership = Membership.objects.get(tenant=tenant)
    assert (membership.user, membership.role) == (owner, Membership.Role.OWNER)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"name": "  "}, "name"),
        ({"slug": "not a slug!"}, "slug"),
        ({"default_timezone": "Mars/Olympus"}, "default_timezone"),
        ({"default_timezone": "posix/Europe/Paris"}, "default_timezone"),
        ({"max_concurrent_calls": 0}, "max_concurrent_calls"),
        ({"max_concurrent_calls": 3, "inbound_reserve": 3}, "inbound_reserve"),
        ({"calls_per_second": 0}, "calls_per_second"),
    ],
)
def test_tenant_create_rejects_bad_input_naming_the_field_and_creates_nothing(overrides, field):
    fields = {"name": "Acme", "slug": "acme", "owner": make_user(), **overrides}
    with pytest.raises(InvalidInput) as raised:
        tenant_create(**fields)
    assert raised.value.field == field
    assert not Tenant.objects.exists()
    assert not Membership.objects.exists()


def test_tenant_slug_is_unique():
    make_tenant(slug="acme")
    with pytest.raises(InvalidInput) as raised:
        make_tenant(slug="acme")
    assert raised.value.field == "slug"


def test_membership_add_creates_then_changes_the_role():
    tenant = make_tenant()
    user = make_user()
    assert membership_add(tenant=tenant, user=user, role="viewer").role == "viewer"
    assert membership_add(tenant=tenant, user=user, role="admin").role == "admin"
    assert Membership.objects.filter(tenant=tenant, user=user).count() == 1
    with pytest.raises(InvalidInput, match="role"):
        membership_add(tenant=tenant, user=user, role="superuser")


def test_membership_is_unique_per_tenant_and_user():
    tenant = make_tenant()
    user = make_user()
    Membership.objects.create(tenant=tenant, user=user, role="viewer")
    with pytest.raises(IntegrityError), transaction.atomic():
        Membership.objects.create(tenant=tenant, user=user, role="admin")


def test_tenant_for_user_and_memberships_for_user():
    alice = make_user()
    first = make_tenant(owner=alice, name="B first", slug="first")
    assert tenant_for_user(user=alice) == first
    second = make_tenant(name="A second", slug="second")
    membership_add(tenant=second, user=alice, role="viewer")
    # Two tenants: no implicit choice, but each is reachable by slug.
    assert tenant_for_user(user=alice) is None
    assert tenant_for_user(user=alice, slug="second") == second
    assert [m.tenant for m in memberships_for_user(user=alice)] == [second, first]  # by name
    stranger = make_user()
    assert tenant_for_user(user=stranger, slug="first") is None
    assert list(memberships_for_user(user=stranger)) == []


# ------------------------------------------------------------------------------------------ API keys


def test_api_key_create_stores_only_a_hash_and_authenticates():
    tenant = make_tenant()
    api_key, raw_key = api_key_create(tenant=tenant, name="ci")
    assert raw_key.startswith("vco_")
    assert len(raw_key) == 4 + 43  # 32 random bytes, URL-safe base64
    assert api_key.prefix == raw_key[4:12]
    stored = ApiKey.objects.values().get(pk=api_key.pk)
    assert stored["key_hash"] == hashlib.sha256(raw_key.encode()).hexdigest()
    assert raw_key not in {str(value) for value in stored.values()}
    assert raw_key[12:] not in "".join(str(value) for value in stored.values())

    found = api_key_authenticate(raw_key=raw_key)
    assert found == api_key
    assert found is not None and found.tenant == tenant


def test_each_key_is_different():
    tenant = make_tenant()
    raw_keys = {api_key_create(tenant=tenant, name=f"k{i}")[1] for i in range(5)}
    assert len(raw_keys) == 5


@pytest.mark.parametrize(
    "mangle",
    [
        lambda key: key[:-1] + ("A" if key[-1] != "A" else "B"),  # same prefix, wrong rest
        lambda key: key[:-1],
        lambda key: key.replace("vco_", "xyz_"),
        lambda key: "vco_",
        lambda key: "",
        lambda key: key + "x" * 500,
    ],
)
def test_wrong_keys_do_not_authenticate(mangle):
    _, raw_key = api_key_create(tenant=make_tenant(), name="k")
    assert api_key_authenticate(raw_key=mangle(raw_key)) is None


def test_a_key_sharing_a_prefix_with_another_still_finds_its_own_row():
    tenant = make_tenant()
    api_key, raw_key = api_key_create(tenant=tenant, name="real")
    ApiKey.objects.create(tenant=tenant, name="twin", prefix=api_key.prefix, key_hash="0" * 64)
    assert api_key_authenticate(raw_key=raw_key) == api_key


def test_revoked_key_does_not_authenticate_and_revoking_is_idempotent():
    api_key, raw_key = api_key_create(tenant=make_tenant(), name="k")
    api_key_revoke(api_key=api_key)
    first_revocation = api_key.revoked_at
    assert first_revocation is not None
    assert api_key_authenticate(raw_key=raw_key) is None
    api_key_revoke(api_key=api_key)
    assert api_key.revoked_at == first_revocation


def test_key_of_a_suspended_tenant_does_not_authenticate():
    tenant = make_tenant()
    _, raw_key = api_key_create(tenant=tenant, name="k")
    Tenant.objects.filter(pk=tenant.pk).update(status=Tenant.Status.SUSPENDED)
    assert api_key_authenticate(raw_key=raw_key) is None
    Tenant.objects.filter(pk=tenant.pk).update(status=Tenant.Status.ACTIVE)
    assert api_key_authenticate(raw_key=raw_key) is not None


def test_last_used_at_is_written_at_most_once_a_minute():
    api_key, raw_key = api_key_create(tenant=make_tenant(), name="k")
    assert api_key.last_used_at is None
    api_key_authenticate(raw_key=raw_key)
    api_key.refresh_from_db()
    first_use = api_key.last_used_at
    assert first_use is not None

    api_key_authenticate(raw_key=raw_key)
    api_key.refresh_from_db()
    assert api_key.last_used_at == first_use  # within the minute: no write

    long_ago = timezone.now() - timedelta(minutes=5)
    ApiKey.objects.filter(pk=api_key.pk).update(last_used_at=long_ago)
    api_key_authenticate(raw_key=raw_key)
    api_key.refresh_from_db()
    assert api_key.last_used_at is not None and api_key.last_used_at > long_ago + timedelta(minutes=4)


def test_api_key_create_needs_a_name():
    with pytest.raises(InvalidInput, match="name"):
        api_key_create(tenant=make_tenant(), name=" ")
