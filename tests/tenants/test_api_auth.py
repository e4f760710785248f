"""REST API authentication and roles: API keys (Bearer), sessions with memberships, X-Tenant."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from campaigns.models import DncEntry
from campaigns.services.dnc import dnc_add
from tenants.models import Membership, Tenant
from tenants.services import api_key_create, api_key_revoke, membership_add
from tests.campaigns.factories import make_pbx, make_tenant, make_user

pytestmark = pytest.mark.django_db

DNC = "/api/v1/dnc"


@pytest.fixture
def tenant() -> Tenant:
    tenant = make_tenant()
    dnc_add(tenant=tenant, phone_number="+12125550123", source="api")
    return tenant


def bearer(raw_key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw_key}")
    return client


def session(user, tenant_slug: str | None = None) -> APIClient:
    client = APIClient()
    client.force_login(user)
    if tenant_slug:
        client.credentials(HTTP_X_TENANT=tenant_slug)
    return client


# ------------------------------------------------------------------------------------------- API keys


def test_no_credentials_is_401_with_a_bearer_challenge():
    response = APIClient().get(DNC)
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    "header",
    ["Bearer vco_notarealkeyatall", "Bearer nonsense", "Bearer", "Bearer a b", "bearer vco_x"],
)
def test_a_bad_key_is_401(tenant, header):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=header)
    response = client.get(DNC)
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_a_valid_key_sees_its_tenant(tenant):
    _, raw_key = api_key_create(tenant=tenant, name="ci")
    response = bearer(raw_key).get(DNC)
    assert response.status_code == 200
    assert [row["phone_number"] for row in response.json()["results"]] == ["+12125550123"]


def test_a_revoked_key_is_401(tenant):
    api_key, raw_key = api_key_create(tenant=tenant, name="ci")
    assert bearer(raw_key).get(DNC).status_code == 200
    api_key_revoke(api_key=api_key)
    assert bearer(raw_key).get(DNC).status_code == 401


def test_a_key_of_a_suspended_tenant_is_401(tenant):
    _, raw_key = api_key_create(tenant=tenant, name="ci")
    Tenant.objects.filter(pk=tenant.pk).update(status=Tenant.Status.SUSPENDED)
    assert bearer(raw_key).get(DNC).status_code == 401


def test_an_api_key_acts_as_admin(tenant):
    _, raw_key = api_key_create(tenant=tenant, name="ci")
    client = bearer(raw_key)
    assert client.post(DNC, {"phone_number": "+12125550124"}, format="json").status_code == 201
    assert client.get("/api/v1/pbxs").status_code == 200


# ------------------------------------------------------------------------------------------- sessions


def test_a_session_with_one_membership_uses_that_tenant(tenant):
    owner = Membership.objects.get(tenant=tenant).user
    make_tenant()  # someone else's tenant: invisible
    response = session(owner).get(DNC)
    assert response.status_code == 200
    assert [row["phone_number"] for row in response.json()["results"]] == ["+12125550123"]


def test_a_member_of_several_tenants_names_one_with_x_tenant(tenant):
    user = Membership.objects.get(tenant=tenant).user
    second = make_tenant()
    membership_add(tenant=second, user=user, role=Membership.Role.ADMIN)
    response = session(user).get(DNC)
    assert response.status_code == 403
    assert "X-Tenant" in response.json()["detail"]
    assert len(session(user, tenant.slug).get(DNC).json()["results"]) == 1
    assert session(user, second.slug).get(DNC).json()["results"] == []


def test_x_tenant_of_a_tenant_the_user_is_not_in_is_403(tenant):
    user = Membership.objects.get(tenant=tenant).user
    outsider_tenant = make_tenant()
    assert session(user, outsider_tenant.slug).get(DNC).status_code == 403


def test_a_user_without_membership_is_403():
    assert session(make_user()).get(DNC).status_code == 403


def test_a_suspended_tenant_is_403_for_its_members(tenant):
    user = Membership.objects.get(tenant=tenant).user
    Tenant.objects.filter(pk=tenant.pk).update(status=Tenant.Status.SUSPENDED)
    assert session(user).get(DNC).status_code == 403


# ---------------------------------------------------------------------------------------------- roles


def test_a_viewer_reads_but_does_not_write(tenant):
    viewer = make_user()
    membership_add(tenant=tenant, user=viewer, role=Membership.Role.VIEWER)
    client = session(viewer)
    assert client.get(DNC).status_code == 200
    before = DncEntry.objects.count()
    response = client.post(DNC, {"phone_number": "+12125550124"}, format="json")
    assert response.status_code == 403
    assert DncEntry.objects.count() == before


@pytest.mark.parametrize("role", [Membership.Role.ADMIN, Membership.Role.OWNER])
def test_admins_and_owners_write(tenant, role):
    user = make_user()
    membership_add(tenant=tenant, user=user, role=role)
    response = session(user).post(DNC, {"phone_number": "+12125550124"}, format="json")
    assert response.status_code == 201


def test_pbxs_are_for_admins_and_owners_only(tenant):
    pbx = make_pbx(tenant)
    viewer, admin = make_user(), make_user()
    membership_add(tenant=tenant, user=viewer, role=Membership.Role.VIEWER)
    membership_add(tenant=tenant, user=admin, role=Membership.Role.ADMIN)
    assert session(viewer).get("/api/v1/pbxs").status_code == 403
    assert session(viewer).get(f"/api/v1/pbxs/{pbx.pk}").status_code == 403
    assert session(admin).get("/api/v1/pbxs").status_code == 200


def test_session_writes_need_the_csrf_token(tenant):
    owner = Membership.objects.get(tenant=tenant).user
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(owner)
    response = client.post(DNC, {"phone_number": "+12125550124"}, format="json")
    assert response.status_code == 403
    assert "CSRF" in response.json()["detail"]
