"""An after-hours incident's life reaches the tenant's webhooks: incident.opened, acknowledged and resolved,
each recorded in the transaction of the change."""

from __future__ import annotations

from typing import Any

import pytest

from flows.services.incidents import incident_acknowledge, incident_resolve
from integrations.models import WebhookDelivery
from integrations.services.endpoints import webhook_endpoint_create
from tests.flows.test_escalation import open_incident

pytestmark = pytest.mark.django_db


def test_incident_events_reach_the_webhooks(setup: Any, outside: Any, settings: Any) -> None:
    settings.TENANT_URL_ALLOWED_NETWORKS = ["127.0.0.1/32"]
    webhook_endpoint_create(
        tenant=setup.tenant,
        url="http://127.0.0.1:9/hooks",
        event_types=["incident.opened", "incident.acknowledged", "incident.resolved"],
    )
    incident = open_incident(setup)
    assert incident_acknowledge(incident_id=incident.pk, person_id=setup.alice.pk, channel="api")
    assert incident_resolve(incident_id=incident.pk, by="test")
    deliveries = list(
        WebhookDelivery.objects.order_by("created_at", "pk").values_list("event_type", "payload")
    )
    assert [kind for kind, _ in deliveries] == [
        "incident.opened",
        "incident.acknowledged",
        "incident.resolved",
    ]
    assert [payload["data"]["status"] for _, payload in deliveries] == ["open", "acknowledged", "resolved"]
    assert {payload["data"]["incident_id"] for _, payload in deliveries} == {incident.pk}
    assert deliveries[0][1]["data"]["short_code"] == incident.short_code
