"""Portal test fixtures: a tenant with a member of each role, signed-in Django test clients, and a second
tenant whose rows must never show."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.test import Client

from tenants.models import Membership, Tenant
from tenants.services import membership_add
from tests.campaigns.factories import make_tenant, make_user


@pytest.fixture
def tenant(db: None) -> Tenant:
    return make_tenant(name="Acme Plumbing")


@pytest.fixture
def other_tenant(db: None) -> Tenant:
    return make_tenant(name="Other Co")


@pytest.fixture
def client_as(tenant: Tenant) -> Callable[..., Client]:
    """``client_as("viewer")``: a test client signed in as a new member of ``tenant`` with that role (or of
    ``of=<another tenant>``)."""

    def make(role: str = "manager", *, of: Tenant | None = None) -> Client:
        user = make_user()
        membership_add(tenant=of or tenant, user=user, role=role)
        client = Client()
        client.force_login(user)
        return client

    return make


@pytest.fixture
def manager(client_as: Callable[..., Client]) -> Client:
    return client_as(Membership.Role.MANAGER)


@pytest.fixture
def viewer(client_as: Callable[..., Client]) -> Client:
    return client_as(Membership.Role.VIEWER)


@pytest.fixture
def admin(client_as: Callable[..., Client]) -> Client:
    return client_as(Membership.Role.ADMIN)


@pytest.fixture
def owner(client_as: Callable[..., Client]) -> Client:
    return client_as(Membership.Role.OWNER)
