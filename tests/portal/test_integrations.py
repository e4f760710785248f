"""The portal's outgoing webhooks: add an endpoint (the secret shown once, field-named errors from the API's
rules), edit it, rotate the secret, send a test event, the delivery log and redeliver; admins only, and
another tenant's endpoint or delivery is a 404."""

from __future__ import annotations

import pytest
from django.urls import reverse

from integrations.models import WebhookDelivery, WebhookEndpoint
from integrations.services.deliveries import webhook_deliver
from integrations.services.endpoints import webhook_endpoint_create
from tests.integrations.receiver import Receiver


@pytest.fixture
def receiver(settings):
    settings.TENANT_URL_ALLOWED_NETWORKS = ["127.0.0.1/32"]
    the_receiver = Receiver().start()
    yield the_receiver
    the_receiver.stop()


def test_add_edit_rotate_test_and_redeliver(tenant, other_tenant, admin, receiver):
    page = admin.post(
        reverse("portal:webhook-endpoints"),
        {"url": receiver.url, "description": "CRM", "event_types": ["call.ended", "lead.finished"],
         "event_types__present": "1", "enabled": "on", "enabled__present": "1"},
    )  # fmt: skip
    assert page.status_code == 200
    endpoint = WebhookEndpoint.objects.get(tenant=tenant)
    html = page.content.decode()
    assert 'id="webhook-secret"' in html and "no-cache" in page.headers["Cache-Control"]
    assert endpoint.event_types == ["call.ended", "lead.finished"] and endpoint.enabled
    detail_url = reverse("portal:webhook-endpoint", args=[endpoint.pk])
    assert 'id="webhook-secret"' not in admin.get(detail_url).content.decode()  # shown once

    refused = admin.post(reverse("portal:webhook-endpoints"), {"url": "http://10.0.0.1/"})
    assert refused.status_code == 400 and b'data-field="url"' in refused.content
    assert WebhookEndpoint.objects.filter(tenant=tenant).count() == 1

    edited = admin.post(
        detail_url, {"url": receiver.url, "event_types__present": "1", "enabled__present": "1"}
    )
    assert edited.status_code == 302
    endpoint.refresh_from_db()
    assert endpoint.event_types == [] and not endpoint.enabled

    rotated = admin.post(reverse("portal:webhook-endpoint-rotate", args=[endpoint.pk]))
    assert b'id="webhook-secret"' in rotated.content

    assert admin.post(reverse("portal:webhook-endpoint-test", args=[endpoint.pk])).status_code == 302
    delivery = WebhookDelivery.objects.get(endpoint=endpoint)
    receiver.statuses = [500]
    webhook_deliver(delivery_id=delivery.pk)
    log = admin.get(detail_url).content.decode()
    assert f'data-delivery="{delivery.pk}"' in log and "webhook.test" in log and "HTTP 500" in log

    assert admin.post(reverse("portal:webhook-delivery-redeliver", args=[delivery.pk])).status_code == 302
    delivery.refresh_from_db()
    assert delivery.attempts == 0 and delivery.status == "pending"


def test_another_tenants_endpoint_is_404_and_managers_are_refused(
    tenant, other_tenant, admin, manager, receiver
):
    theirs = webhook_endpoint_create(tenant=other_tenant, url=receiver.url).endpoint
    delivery = WebhookDelivery.objects.create(
        tenant=other_tenant, endpoint=theirs, event_type="call.ended", payload={}
    )
    assert admin.get(reverse("portal:webhook-endpoint", args=[theirs.pk])).status_code == 404
    assert admin.post(reverse("portal:webhook-endpoint-test", args=[theirs.pk])).status_code == 404
    assert admin.post(reverse("portal:webhook-endpoint-delete", args=[theirs.pk])).status_code == 404
    assert admin.post(reverse("portal:webhook-delivery-redeliver", args=[delivery.pk])).status_code == 404
    assert theirs.url not in admin.get(reverse("portal:webhook-endpoints")).content.decode()
    assert manager.get(reverse("portal:webhook-endpoints")).status_code == 403
