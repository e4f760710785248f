"""Database invariants of the tenancy models: they hold even for writes that bypass the services."""

from __future__ import annotations

import pytest
from django.db import IntegrityError, transaction

from tenants.models import Tenant

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "fields",
    [
        {"max_concurrent_calls": 5, "inbound_reserve": 5},
        {"max_concurrent_calls": 5, "inbound_reserve": 6},
        {"max_concurrent_calls": 0, "inbound_reserve": 0},
        {"calls_per_second": 0},
        {"status": "deleted"},
    ],
)
def test_tenant_limits_are_checked_by_the_database(fields):
    with pytest.raises(IntegrityError), transaction.atomic():
        Tenant.objects.create(name="T", slug="t", **fields)


def test_inbound_reserve_just_below_the_cap_is_allowed():
    tenant = Tenant.objects.create(name="T", slug="t", max_concurrent_calls=5, inbound_reserve=4)
    assert str(tenant) == "T (t)"


def test_lowering_the_cap_to_the_reserve_is_refused():
    tenant = Tenant.objects.create(name="T", slug="t", max_concurrent_calls=5, inbound_reserve=2)
    with pytest.raises(IntegrityError), transaction.atomic():
        Tenant.objects.filter(pk=tenant.pk).update(max_concurrent_calls=2)
