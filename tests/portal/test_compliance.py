"""The portal's compliance pieces: the campaign form's consent and disclosure fields, a contact's consent
page (record, revoke, roles, tenants), the lead's "why not dialed" with no consent, and the abandonment
figures on the campaign page and the dashboard."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from campaigns.models import Campaign, ContactConsent
from campaigns.services.consent import consent_create
from tests.campaigns.factories import make_agent, make_campaign, make_contact, make_lead
from tests.campaigns.test_compliance import abandoning_campaign

pytestmark = pytest.mark.django_db


def _form(agent_id: int, **overrides: object) -> dict[str, object]:
    data: dict[str, object] = {
        "name": "Consent only",
        "agent": agent_id,
        "caller_id": "+14155550100",
        "max_concurrent_calls": "1",
        "calling_windows": '{"mon": [["09:00", "17:00"]]}',
        "retry_delays": '{"busy": 600}',
        "requires_prior_consent__present": "1",
        "requires_prior_consent": "on",
        "prior_consent_kind": "prior_express_written",
        "disclosure": "Hello, this is {company}'s AI assistant.",
    }
    data.update(overrides)
    return data


def test_the_campaign_form_sets_and_clears_the_compliance_fields(tenant, manager):
    agent = make_agent(tenant)
    page = manager.get(reverse("portal:campaign-new"))
    assert b'id="campaign-compliance"' in page.content
    assert b"This is an AI assistant calling on behalf of {company}." in page.content  # the default

    created = manager.post(reverse("portal:campaign-new"), _form(agent.pk))
    assert created.status_code == 302, created.content.decode()[:2000]
    campaign = Campaign.objects.get(tenant=tenant)
    assert (campaign.requires_prior_consent, campaign.prior_consent_kind, campaign.disclosure) == (
        True,
        "prior_express_written",
        "Hello, this is {company}'s AI assistant.",
    )
    # An unticked box (only its "present" marker is sent) clears it.
    form = _form(agent.pk)
    del form["requires_prior_consent"]
    assert manager.post(reverse("portal:campaign-edit", args=[campaign.pk]), form).status_code == 302
    campaign.refresh_from_db()
    assert campaign.requires_prior_consent is False


def test_a_bad_disclosure_is_shown_beside_its_field(tenant, manager):
    agent = make_agent(tenant)
    response = manager.post(reverse("portal:campaign-new"), _form(agent.pk, disclosure="Hi {agent_name}"))
    assert response.status_code == 400
    assert b'data-field="disclosure"' in response.content
    assert not Campaign.objects.exists()


def test_a_contacts_consents_are_recorded_and_revoked(tenant, manager):
    contact = make_contact(tenant, "+12125550190")
    url = reverse("portal:contact-consents", args=[contact.pk])
    assert b'data-empty="true"' in manager.get(url).content

    bad = manager.post(url, {"kind": "prior_express", "source": "", "captured_at": "2025-01-10T09:00"})
    assert bad.status_code == 400 and b'data-field="source"' in bad.content
    assert (
        manager.post(
            url, {"kind": "prior_express", "source": "web form", "captured_at": "2025-01-10T09:00"}
        ).status_code
        == 302
    )
    [consent] = ContactConsent.objects.filter(contact=contact)
    assert consent.source == "web form" and consent.revoked_at is None

    revoked = manager.post(reverse("portal:contact-consent-revoke", args=[contact.pk, consent.pk]))
    assert revoked.status_code == 302
    consent.refresh_from_db()
    assert consent.revoked_at is not None


def test_a_viewer_reads_but_cannot_record(tenant, viewer):
    contact = make_contact(tenant, "+12125550191")
    url = reverse("portal:contact-consents", args=[contact.pk])
    page = viewer.get(url)
    assert page.status_code == 200 and b'id="consent-form"' not in page.content
    response = viewer.post(url, {"source": "web", "captured_at": "2025-01-10T09:00"})
    assert response.status_code == 403 and not ContactConsent.objects.exists()


def test_another_tenants_contact_is_not_found(other_tenant, manager):
    contact = make_contact(other_tenant, "+12125550192")
    consent = consent_create(contact=contact, source="web", captured_at=timezone.now() - timedelta(days=1))
    assert manager.get(reverse("portal:contact-consents", args=[contact.pk])).status_code == 404
    assert (
        manager.post(reverse("portal:contact-consent-revoke", args=[contact.pk, consent.pk])).status_code
        == 404
    )
    consent.refresh_from_db()
    assert consent.revoked_at is None


def test_the_lead_page_says_consent_is_missing_and_links_to_the_consents(tenant, manager):
    campaign = make_campaign(tenant, requires_prior_consent=True)
    lead = make_lead(tenant, campaign, "+12125550193")
    page = manager.get(reverse("portal:lead-why", args=[lead.pk]))
    assert b"holds no valid one" in page.content
    assert reverse("portal:contact-consents", args=[lead.contact_id]).encode() in page.content


def test_the_campaign_page_and_the_dashboard_show_the_abandonment_rate(tenant, manager):
    campaign = abandoning_campaign(tenant, answered=20, abandoned=1)
    page = manager.get(reverse("portal:campaign", args=[campaign.pk]))
    assert b'id="campaign-abandonment"' in page.content and b'id="campaign-slowed"' in page.content
    assert b"1 of 20 answered" in page.content
    dashboard = manager.get(reverse("portal:dashboard-figures"))
    assert b'id="dashboard-abandonment"' in dashboard.content and b"slowed" in dashboard.content
