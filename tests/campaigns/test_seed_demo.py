"""``manage.py seed_demo``: the demo tenant, PBX and running campaign, idempotently."""

from __future__ import annotations

import io
import re
from datetime import UTC, datetime

import pytest
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from campaigns.management.commands.seed_demo import (
    CANDIDATE_ZONES,
    DEMO_TIMEZONE,
    pick_demo_zone,
    zone_is_open,
)
from campaigns.models import Campaign, Contact, Lead, Pbx
from tenants.models import ApiKey, Tenant

pytestmark = pytest.mark.django_db


def _seed() -> str:
    out = io.StringIO()
    call_command("seed_demo", stdout=out)
    return out.getvalue()


def test_seeding_twice_makes_one_demo_and_the_printed_key_authenticates(settings):
    settings.PHONE_TEST_PREFIXES = ["+1555"]
    first = _seed()
    second = _seed()

    tenant = Tenant.objects.get()
    assert (tenant.slug, tenant.max_concurrent_calls, tenant.default_timezone) == ("demo", 5, DEMO_TIMEZONE)
    assert tenant.memberships.get().user.email == "demo@example.com"
    pbx = Pbx.objects.get()
    # The simulator is a platform PBX (the operator's), with the demo tenant placed on it.
    assert (list(pbx.tenants.all()), pbx.owner, pbx.name, pbx.ari_url, pbx.ari_user) == (
        [tenant],
        None,
        "demo-sim",
        "http://127.0.0.1:8088/",
        "asterisk",
    )
    assert (pbx.password_env, pbx.app_name, pbx.endpoint_template) == (
        "SIM_ARI_PASSWORD",
        "ai_agent",
        "PJSIP/{number}@trunk",
    )
    campaign = Campaign.objects.get()
    assert campaign.status == Campaign.Status.RUNNING
    assert campaign.max_concurrent_calls == 5
    assert set(campaign.retry_delays.values()) == {60}
    assert Contact.objects.count() == 50
    assert Lead.objects.filter(campaign=campaign, status=Lead.Status.WAITING).count() == 50
    numbers = sorted(Contact.objects.values_list("phone_number", flat=True))
    assert numbers[0] == "+15550200001"
    assert numbers[-1] == "+15550200050"
    assert len({contact.timezone for contact in Contact.objects.all()}) == 1
    assert ApiKey.objects.count() == 1

    keys = re.findall(r"vco_[A-Za-z0-9_-]+", first)
    assert len(set(keys)) == 1
    assert "vco_" not in second
    assert "already exists" in second

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {keys[0]}")
    response = client.get(f"/api/v1/campaigns/{campaign.pk}/stats")
    assert response.status_code == 200, response.content
    assert response.json()["leads_total"] == 50


def test_seed_refuses_without_the_test_prefix(settings):
    settings.PHONE_TEST_PREFIXES = []
    with pytest.raises(CommandError, match="PHONE_TEST_PREFIXES"):
        _seed()
    assert not Tenant.objects.exists()


@pytest.mark.parametrize("hour", range(24))
def test_some_real_zone_is_inside_the_demo_window_at_every_hour(hour):
    now = datetime(2026, 1, 15, hour, 30, tzinfo=UTC)
    zone = pick_demo_zone(now)
    assert zone in CANDIDATE_ZONES
    assert zone_is_open(zone, now)


def test_the_tenant_zone_is_preferred_when_open():
    assert pick_demo_zone(datetime(2026, 1, 15, 15, 0, tzinfo=UTC)) == DEMO_TIMEZONE  # 10:00 in New York
