"""The portal's recording fields on the campaign form (validated by the API serializer, named errors)."""

from __future__ import annotations

from django.urls import reverse

from campaigns.models import Campaign
from tests.campaigns.factories import make_agent, make_campaign
from tests.portal.test_campaigns import _form


def test_a_new_campaign_records_never_by_default_and_the_form_sets_the_mode(tenant, manager):
    agent = make_agent(tenant)
    page = manager.get(reverse("portal:campaign-new")).content.decode()
    assert 'name="recording_mode"' in page and '<option value="never" selected>' in page
    assert 'name="recording_retention_days"' in page and 'value="90"' in page
    response = manager.post(
        reverse("portal:campaign-new"),
        _form(agent.pk, recording_mode="after_consent", recording_retention_days="30"),
    )
    assert response.status_code == 302
    campaign = Campaign.objects.get()
    assert (campaign.recording_mode, campaign.recording_retention_days) == ("after_consent", 30)
    edit = manager.get(reverse("portal:campaign-edit", args=[campaign.pk])).content.decode()
    assert '<option value="after_consent" selected>' in edit and 'value="30"' in edit


def test_bad_recording_values_are_shown_beside_their_field(tenant, manager):
    campaign = make_campaign(tenant)
    for field, value in (("recording_mode", "sometimes"), ("recording_retention_days", "0")):
        response = manager.post(
            reverse("portal:campaign-edit", args=[campaign.pk]), _form(campaign.agent_id, **{field: value})
        )
        assert response.status_code == 400 and f'data-field="{field}"'.encode() in response.content
    campaign.refresh_from_db()
    assert (campaign.recording_mode, campaign.recording_retention_days) == ("never", 90)
