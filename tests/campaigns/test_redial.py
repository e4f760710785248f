"""A campaign's redial: the leads whose last outcome is among the chosen ones (voicemail / no answer / busy
by default) go into a new draft campaign with the same settings; DNC'd numbers are left out; field-named
errors; another tenant's campaign is a 404 (API and portal)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from campaigns.models import Campaign, DncEntry, Lead
from campaigns.services.imports import leads_import_csv
from campaigns.services.redial import campaign_redial
from orchestrator.errors import InvalidInput
from tenants.services import membership_add
from tests.campaigns.factories import make_campaign, make_tenant, make_user
from tests.campaigns.test_api import API, api_client

pytestmark = pytest.mark.django_db

OUTCOMES = {
    "+12125550101": "no_answer",
    "+12125550102": "busy",
    "+12125550103": "voicemail",
    "+12125550104": "answered",
    "+12125550105": "voicemail_left",
    "+12125550106": "invalid_number",
    "+12125550107": "no_answer",  # on the DNC list
    "+12125550108": "",  # never called
}


def _finished_campaign(tenant=None) -> Campaign:
    tenant = tenant or make_tenant()
    campaign = make_campaign(
        tenant,
        starts_at=timezone.now() - timedelta(days=3),
        ends_at=timezone.now() - timedelta(days=1),
        max_attempts=5,
        ring_timeout=25,
        priority=7,
        retry_delays={"busy": 60},
        result_fields=[{"name": "interested", "type": "boolean"}],
    )
    leads_import_csv(campaign=campaign, data="phone_number\n" + "\n".join(OUTCOMES) + "\n")
    for number, outcome in OUTCOMES.items():
        Lead.objects.filter(campaign=campaign, contact__phone_number=number).update(
            last_outcome=outcome, status="done", next_due_at=None
        )
    DncEntry.objects.create(tenant=tenant, phone_number="+12125550107", source="api")
    Campaign.objects.filter(pk=campaign.pk).update(status="completed")
    campaign.refresh_from_db()
    return campaign


def _numbers(campaign: Campaign) -> list[str]:
    return sorted(campaign.leads.values_list("contact__phone_number", flat=True))


def test_redial_copies_the_settings_and_the_unreached_leads():
    source = _finished_campaign()
    copy = campaign_redial(campaign=source)
    assert copy.pk != source.pk and copy.status == "draft" and copy.name == f"{source.name} (redial)"
    for field in ("agent_id", "caller_id", "calling_windows", "max_attempts", "ring_timeout", "priority",
                  "retry_delays", "result_fields", "max_concurrent_calls", "tenant_id"):  # fmt: skip
        assert getattr(copy, field) == getattr(source, field), field
    assert _numbers(copy) == ["+12125550101", "+12125550102", "+12125550103", "+12125550105"]
    assert set(copy.leads.values_list("status", flat=True)) == {"waiting"}
    assert copy.leads.filter(next_due_at__isnull=True).count() == 0
    assert _numbers(source) == sorted(OUTCOMES)  # the source is untouched
    assert copy.starts_at is None and copy.ends_at is None  # the source's schedule is not copied

    only_busy = campaign_redial(campaign=source, outcomes=["busy"], name="Busy ones")
    assert (only_busy.name, _numbers(only_busy)) == ("Busy ones", ["+12125550102"])


def test_redial_refuses_bad_input_naming_the_field():
    source = _finished_campaign()
    for kwargs, field in (
        ({"outcomes": ["no_answer", "maybe"]}, "outcomes"),
        ({"outcomes": []}, "outcomes"),
        ({"name": "  "}, "name"),
    ):
        with pytest.raises(InvalidInput) as refused:
            campaign_redial(campaign=source, **kwargs)
        assert refused.value.field == field
    Campaign.objects.filter(pk=source.pk).update(status="running")
    source.refresh_from_db()
    with pytest.raises(InvalidInput) as refused:
        campaign_redial(campaign=source)
    assert refused.value.field == "status"
    assert Campaign.objects.count() == 1


def test_redial_over_the_api():
    source = _finished_campaign()
    client = api_client(source.tenant)
    made = client.post(f"{API}/campaigns/{source.pk}/redial", {"outcomes": ["voicemail"]}, format="json")
    assert made.status_code == 201, made.content
    assert made.json()["status"] == "draft" and made.json()["result_fields"] == source.result_fields
    assert _numbers(Campaign.objects.get(pk=made.json()["id"])) == ["+12125550103"]
    bad = client.post(f"{API}/campaigns/{source.pk}/redial", {"outcomes": ["nope"]}, format="json")
    assert bad.status_code == 400 and list(bad.json()) == ["outcomes"]
    foreign = _finished_campaign()
    assert client.post(f"{API}/campaigns/{foreign.pk}/redial", {}, format="json").status_code == 404


def test_redial_in_the_portal():
    source = _finished_campaign()
    manager = Client()
    user = make_user()
    membership_add(tenant=source.tenant, user=user, role="manager")
    manager.force_login(user)
    page = manager.get(reverse("portal:campaign", args=[source.pk])).content.decode()
    assert reverse("portal:campaign-redial", args=[source.pk]) in page
    assert f"/api/v1/campaigns/{source.pk}/export?of=attempts" in page
    form = manager.get(reverse("portal:campaign-redial", args=[source.pk]))
    assert form.status_code == 200 and b'value="no_answer" checked' in form.content
    done = manager.post(
        reverse("portal:campaign-redial", args=[source.pk]),
        {"name": "Second pass", "outcomes": ["no_answer", "busy"], "outcomes__present": "1"},
    )
    copy = Campaign.objects.get(name="Second pass")
    assert done.status_code == 302 and done["Location"] == reverse("portal:campaign", args=[copy.pk])
    assert _numbers(copy) == ["+12125550101", "+12125550102"]
    bad = manager.post(
        reverse("portal:campaign-redial", args=[source.pk]), {"name": "x", "outcomes__present": "1"}
    )
    assert bad.status_code == 400 and b'data-field="outcomes"' in bad.content
    foreign = _finished_campaign()
    assert manager.get(reverse("portal:campaign-redial", args=[foreign.pk])).status_code == 404
