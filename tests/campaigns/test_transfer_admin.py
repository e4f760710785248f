"""Transfer admin: pages render, the target form validates like the services, transfers are read-only."""

from __future__ import annotations

import json

import pytest
from django.urls import reverse

from campaigns.models import TransferTarget
from tests.campaigns.factories import make_tenant

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("model", ["transfertarget", "calltransfer"])
def test_transfer_pages_render(admin_client, model):
    assert admin_client.get(reverse(f"admin:campaigns_{model}_changelist")).status_code == 200
    add = admin_client.get(reverse(f"admin:campaigns_{model}_add")).status_code
    assert add == (403 if model == "calltransfer" else 200)


@pytest.mark.parametrize(
    ("kind", "number", "endpoint", "field"),
    [("number", "123", "", "number"), ("queue", "", "PJSIP/x@trunk", "endpoint")],
)
def test_the_target_form_validates_like_the_service(admin_client, kind, number, endpoint, field):
    tenant = make_tenant()
    data = {
        "tenant": tenant.pk, "name": "Desk", "kind": kind, "number": number, "endpoint": endpoint,
        "mode": "warm", "members-TOTAL_FORMS": 0, "members-INITIAL_FORMS": 0,
    }  # fmt: skip
    response = admin_client.post(reverse("admin:campaigns_transfertarget_add"), data)
    assert response.status_code == 200
    assert field in response.context["adminform"].form.errors
    assert not TransferTarget.objects.exists()
    data |= {"number": "+12125550190", "endpoint": "Local/sales@ai-queues"}
    response = admin_client.post(reverse("admin:campaigns_transfertarget_add"), data)
    assert response.status_code == 302, response.context["adminform"].form.errors
    target = TransferTarget.objects.get()
    assert (target.number, target.endpoint) == (
        ("+12125550190", "") if kind == "number" else ("", "Local/sales@ai-queues")
    )


def test_a_campaigns_targets_in_its_admin_must_be_its_tenants(admin_client):
    from campaigns.services.transfers import transfer_target_create
    from tests.campaigns.factories import make_campaign

    campaign = make_campaign(make_tenant())
    theirs = transfer_target_create(tenant=make_tenant(), name="Theirs", number="+12125550190")
    mine = transfer_target_create(tenant=campaign.tenant, name="Mine", number="+12125550191")
    page = admin_client.get(reverse("admin:campaigns_campaign_change", args=[campaign.pk]))
    initial = page.context["adminform"].form.initial.items()
    # JSON fields post as JSON text, as the browser sends what the page shows.
    data = {k: json.dumps(v) if isinstance(v, dict | list) else v for k, v in initial if v is not None}
    links = "transfer_target_links"
    data |= {
        "tenant": campaign.tenant_id, "agent": campaign.agent_id, "retry_delays": '{"busy": 600}',
        "calling_windows": '{"mon": [["09:00", "17:00"]]}',
        f"{links}-TOTAL_FORMS": 1, f"{links}-INITIAL_FORMS": 0, f"{links}-0-target": theirs.pk,
        f"{links}-0-position": 0,
    }  # fmt: skip
    data.pop("id", None)
    response = admin_client.post(reverse("admin:campaigns_campaign_change", args=[campaign.pk]), data)
    assert response.status_code == 200 and not campaign.transfer_target_links.exists()
    assert b"This transfer target belongs to another tenant." in response.content
    data[f"{links}-0-target"] = mine.pk
    response = admin_client.post(reverse("admin:campaigns_campaign_change", args=[campaign.pk]), data)
    assert response.status_code == 302
    assert [link.target_id for link in campaign.transfer_target_links.all()] == [mine.pk]
