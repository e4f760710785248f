"""Transfer admin: pages render, the target form validates like the services, transfers are read-only."""

from __future__ import annotations

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
