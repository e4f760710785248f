"""The webhooks API: the secret is answered once (create, rotate), field-named errors (the URL policy,
event types), another tenant's ids are 404, the delivery log with its filters, test event, redeliver; and
members without the settings capability cannot read endpoints."""

from __future__ import annotations

import pytest

from integrations import events
from integrations.models import WebhookDelivery
from integrations.services.deliveries import webhook_deliver, webhook_event_record
from integrations.services.endpoints import webhook_endpoint_create
from tests.campaigns.factories import make_tenant
from tests.campaigns.test_api import API, api_client

pytestmark = pytest.mark.django_db


def test_endpoints_crud_secret_once_and_field_named_errors(receiver, loopback_allowed):
    tenant = make_tenant()
    client = api_client(tenant)
    created = client.post(
        f"{API}/webhook-endpoints", {"url": receiver.url, "event_types": ["call.ended"]}, format="json"
    )
    assert created.status_code == 201, created.content
    body = created.json()
    assert body["secret"].startswith("whsec_") and body["event_types"] == ["call.ended"]
    endpoint_id = body["id"]
    shown = client.get(f"{API}/webhook-endpoints/{endpoint_id}").json()
    assert "secret" not in shown and body["secret"] not in str(client.get(f"{API}/webhook-endpoints").json())

    bad = client.post(f"{API}/webhook-endpoints", {"url": "http://127.0.0.2/x"}, format="json")
    assert bad.status_code == 400 and list(bad.json()) == ["url"]
    bad = client.post(f"{API}/webhook-endpoints", {"url": receiver.url, "event_types": ["x"]}, format="json")
    assert bad.status_code == 400 and list(bad.json()) == ["event_types"]
    bad = client.patch(f"{API}/webhook-endpoints/{endpoint_id}", {"url": "http://10.1.2.3/"}, format="json")
    assert bad.status_code == 400 and list(bad.json()) == ["url"]

    patched = client.patch(f"{API}/webhook-endpoints/{endpoint_id}", {"enabled": False}, format="json")
    assert patched.status_code == 200 and patched.json()["enabled"] is False
    rotated = client.post(f"{API}/webhook-endpoints/{endpoint_id}/rotate-secret").json()
    assert rotated["secret"].startswith("whsec_") and rotated["secret"] != body["secret"]

    foreign = webhook_endpoint_create(tenant=make_tenant(), url=receiver.url).endpoint
    assert client.get(f"{API}/webhook-endpoints/{foreign.pk}").status_code == 404
    assert client.post(f"{API}/webhook-endpoints/{foreign.pk}/test").status_code == 404
    assert client.post(f"{API}/webhook-endpoints/{foreign.pk}/rotate-secret").status_code == 404
    assert (
        client.patch(f"{API}/webhook-endpoints/{foreign.pk}", {"enabled": False}, format="json").status_code
        == 404
    )
    assert client.delete(f"{API}/webhook-endpoints/{foreign.pk}").status_code == 404
    assert client.delete(f"{API}/webhook-endpoints/{endpoint_id}").status_code == 204


def test_delivery_log_test_event_and_redeliver(receiver, loopback_allowed):
    tenant = make_tenant()
    client = api_client(tenant)
    endpoint = webhook_endpoint_create(tenant=tenant, url=receiver.url).endpoint
    test = client.post(f"{API}/webhook-endpoints/{endpoint.pk}/test")
    assert test.status_code == 202 and test.json()["event_type"] == "webhook.test"
    receiver.statuses = [500]
    assert webhook_deliver(delivery_id=test.json()["id"]).outcome == "retry"
    (other_id,) = webhook_event_record(tenant_id=tenant.pk, event_type=events.CALL_ENDED, data={"x": 1})

    log = client.get(f"{API}/webhook-deliveries").json()["results"]
    assert [d["id"] for d in log] == [str(other_id), test.json()["id"]]
    failed = log[1]
    assert failed["attempts"] == 1 and failed["last_status_code"] == 500 and failed["status"] == "pending"
    assert failed["response_excerpt"] == "ok" and failed["next_attempt_at"]
    assert "payload" not in failed
    detail = client.get(f"{API}/webhook-deliveries/{other_id}").json()
    assert detail["payload"]["data"] == {"x": 1}
    assert [d["id"] for d in client.get(f"{API}/webhook-deliveries?status=pending").json()["results"]]
    assert client.get(f"{API}/webhook-deliveries?status=lost").status_code == 400

    redelivered = client.post(f"{API}/webhook-deliveries/{test.json()['id']}/redeliver")
    assert redelivered.status_code == 202 and redelivered.json()["attempts"] == 0
    assert webhook_deliver(delivery_id=test.json()["id"]).outcome == "delivered"

    foreign = webhook_endpoint_create(tenant=make_tenant(), url=receiver.url).endpoint
    foreign_delivery = WebhookDelivery.objects.create(
        tenant=foreign.tenant, endpoint=foreign, event_type="call.ended", payload={}
    )
    assert client.get(f"{API}/webhook-deliveries/{foreign_delivery.pk}").status_code == 404
    assert client.post(f"{API}/webhook-deliveries/{foreign_delivery.pk}/redeliver").status_code == 404
