"""The webhook outbox against a real local HTTP receiver: signed requests with a stable Webhook-Id, retried
with the configured backoff after failures until accepted, given up after the configured tries, the URL
policy applied when saved and again when sending, and events recorded in the transaction of the change."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from campaigns.lifecycle import AttemptInput, AttemptOutcome, AttemptState
from campaigns.models import CallAttempt, Lead
from campaigns.services.agent_actions import attempt_add_to_dnc, attempt_schedule_callback
from campaigns.services.call_events import attempt_apply
from integrations import events
from integrations.models import WebhookDelivery, WebhookEndpoint
from integrations.services.deliveries import (
    webhook_deliver,
    webhook_deliveries_due,
    webhook_deliveries_prune,
    webhook_event_record,
    webhook_redeliver,
    webhook_test_send,
)
from integrations.services.endpoints import webhook_endpoint_create, webhook_endpoint_rotate_secret
from integrations.signing import verify
from orchestrator.errors import InvalidInput
from tests.campaigns.factories import make_lead, make_tenant
from tests.integrations.receiver import Receiver

pytestmark = pytest.mark.django_db


@pytest.fixture
def backoff(settings):
    settings.WEBHOOK_BACKOFF_S = [30, 120]
    settings.WEBHOOK_MAX_ATTEMPTS = 4
    settings.WEBHOOK_TIMEOUT_S = 5


def _deliver_when_due(delivery_id):
    due = WebhookDelivery.objects.get(pk=delivery_id).next_attempt_at
    return webhook_deliver(delivery_id=delivery_id, now=due)


def test_a_delivery_fails_twice_then_is_accepted_with_the_same_id_and_a_valid_signature(
    receiver: Receiver, loopback_allowed, backoff
):
    tenant = make_tenant()
    made = webhook_endpoint_create(tenant=tenant, url=receiver.url, event_types=[events.LEAD_FINISHED])
    receiver.statuses = [500, 500]
    (delivery_id,) = webhook_event_record(
        tenant_id=tenant.pk, event_type=events.LEAD_FINISHED, data={"lead_id": 7, "at": timezone.now()}
    )

    first = webhook_deliver(delivery_id=delivery_id)
    assert (first.outcome, first.status_code, first.retry_in_s) == ("retry", 500, 30)
    row = WebhookDelivery.objects.get(pk=delivery_id)
    assert row.status == "pending" and row.attempts == 1 and row.last_status_code == 500
    assert row.response_excerpt == "ok" and row.last_error == "HTTP 500"
    assert row.next_attempt_at is not None
    assert 29 <= (row.next_attempt_at - timezone.now()).total_seconds() <= 31
    # Not due yet: a sweep or a repeated message sends nothing.
    assert webhook_deliver(delivery_id=delivery_id).outcome == "skipped"
    assert delivery_id not in webhook_deliveries_due()
    assert len(receiver.received) == 1

    second = _deliver_when_due(delivery_id)
    assert (second.outcome, second.retry_in_s) == ("retry", 120)
    third = _deliver_when_due(delivery_id)
    assert third.outcome == "delivered"
    assert _deliver_when_due(delivery_id).outcome == "skipped"  # delivered once

    row.refresh_from_db()
    assert row.status == "delivered" and row.attempts == 3 and row.last_status_code == 200
    assert row.delivered_at is not None and row.next_attempt_at is None
    assert [r.status for r in receiver.received] == [500, 500, 200]
    assert {r.headers["webhook-id"] for r in receiver.received} == {str(delivery_id)}
    for request in receiver.received:
        assert verify(made.secret, request.headers["webhook-signature"], request.body)
        assert request.headers["webhook-event"] == "lead.finished"
        assert request.headers["content-type"] == "application/json"
    body = json.loads(receiver.received[-1].body)
    assert body["type"] == "lead.finished" and body["data"]["lead_id"] == 7 and body["tenant_id"] == tenant.pk
    assert len({r.body for r in receiver.received}) == 1  # the same body on every try


def test_a_delivery_gives_up_after_the_configured_tries_and_can_be_redelivered(
    receiver: Receiver, loopback_allowed, backoff
):
    tenant = make_tenant()
    webhook_endpoint_create(tenant=tenant, url=receiver.url)
    receiver.statuses = [503] * 4
    (delivery_id,) = webhook_event_record(tenant_id=tenant.pk, event_type=events.CALL_ENDED, data={})
    outcomes = [webhook_deliver(delivery_id=delivery_id).outcome]
    outcomes += [_deliver_when_due(delivery_id).outcome for _ in range(3)]
    assert outcomes == ["retry", "retry", "retry", "failed"]
    row = WebhookDelivery.objects.get(pk=delivery_id)
    assert row.status == "failed" and row.attempts == 4 and row.next_attempt_at is None
    assert webhook_deliver(delivery_id=delivery_id).outcome == "skipped"

    webhook_redeliver(delivery=row)
    assert webhook_deliver(delivery_id=delivery_id).outcome == "delivered"
    assert {r.headers["webhook-id"] for r in receiver.received} == {str(delivery_id)}
    assert len(receiver.received) == 5


def test_the_answer_read_is_capped_and_a_timeout_is_a_failed_try(
    receiver: Receiver, loopback_allowed, backoff, settings
):
    settings.WEBHOOK_RESPONSE_MAX_BYTES = 100
    receiver.answer_body = b"x" * 10_000
    tenant = make_tenant()
    webhook_endpoint_create(tenant=tenant, url=receiver.url)
    (delivery_id,) = webhook_event_record(tenant_id=tenant.pk, event_type=events.CALL_ENDED, data={})
    assert webhook_deliver(delivery_id=delivery_id).outcome == "delivered"
    assert WebhookDelivery.objects.get(pk=delivery_id).response_excerpt == "x" * 100

    # A port nobody listens on: a connection error is a failed try, with the error recorded.
    WebhookEndpoint.objects.filter(tenant=tenant).update(url="http://127.0.0.1:9/hooks")
    (delivery_id,) = webhook_event_record(tenant_id=tenant.pk, event_type=events.CALL_ENDED, data={})
    assert webhook_deliver(delivery_id=delivery_id).outcome == "retry"
    row = WebhookDelivery.objects.get(pk=delivery_id)
    assert row.last_status_code is None and "ConnectError" in row.last_error


def test_the_url_policy_is_checked_when_saved_and_again_when_sending(receiver: Receiver, settings, backoff):
    tenant = make_tenant()
    for url in (receiver.url, "http://169.254.169.254/latest", "http://10.0.0.1/x", "ftp://example.com/"):
        with pytest.raises(InvalidInput) as refused:
            webhook_endpoint_create(tenant=tenant, url=url)
        assert refused.value.field == "url"
    settings.TENANT_URL_ALLOWED_NETWORKS = ["127.0.0.1/32"]
    webhook_endpoint_create(tenant=tenant, url=receiver.url)
    (delivery_id,) = webhook_event_record(tenant_id=tenant.pk, event_type=events.CALL_ENDED, data={})
    # The operator narrows the policy after the endpoint was saved: the send is refused, nothing sent.
    settings.TENANT_URL_ALLOWED_NETWORKS = []
    assert webhook_deliver(delivery_id=delivery_id).outcome == "retry"
    row = WebhookDelivery.objects.get(pk=delivery_id)
    assert "TargetRefused" in row.last_error and "not a public address" in row.last_error
    assert receiver.received == []


def test_events_go_only_to_enabled_endpoints_that_subscribe(receiver: Receiver, loopback_allowed):
    tenant, other = make_tenant(), make_tenant()
    calls = webhook_endpoint_create(tenant=tenant, url=receiver.url, event_types=[events.CALL_ENDED]).endpoint
    everything = webhook_endpoint_create(tenant=tenant, url=receiver.url + "/all").endpoint
    webhook_endpoint_create(tenant=tenant, url=receiver.url + "/off", enabled=False)
    webhook_endpoint_create(tenant=other, url=receiver.url + "/other")
    ids = webhook_event_record(tenant_id=tenant.pk, event_type=events.CALL_ENDED, data={})
    assert {d.endpoint_id for d in WebhookDelivery.objects.filter(pk__in=ids)} == {calls.pk, everything.pk}
    ids = webhook_event_record(tenant_id=tenant.pk, event_type=events.INCIDENT_OPENED, data={})
    assert [d.endpoint_id for d in WebhookDelivery.objects.filter(pk__in=ids)] == [everything.pk]
    with pytest.raises(InvalidInput) as bad:
        webhook_endpoint_create(tenant=tenant, url=receiver.url, event_types=["call.exploded"])
    assert bad.value.field == "event_types"


def test_test_events_and_secret_rotation(receiver: Receiver, loopback_allowed):
    tenant = make_tenant()
    made = webhook_endpoint_create(tenant=tenant, url=receiver.url, event_types=[events.CALL_ENDED])
    rotated = webhook_endpoint_rotate_secret(endpoint=made.endpoint)
    assert rotated.secret != made.secret
    assert made.secret not in made.endpoint.secret_encrypted  # stored encrypted
    delivery = webhook_test_send(endpoint=made.endpoint)
    assert webhook_deliver(delivery_id=delivery.pk).outcome == "delivered"
    (request,) = receiver.received
    assert json.loads(request.body)["type"] == "webhook.test"
    assert verify(rotated.secret, request.headers["webhook-signature"], request.body)
    assert not verify(made.secret, request.headers["webhook-signature"], request.body)


def test_a_calls_end_records_call_ended_and_lead_finished_in_its_transaction(receiver, loopback_allowed):
    tenant = make_tenant()
    webhook_endpoint_create(tenant=tenant, url=receiver.url)
    lead = make_lead(tenant)
    Lead.objects.filter(pk=lead.pk).update(status=Lead.Status.IN_ATTEMPT, next_due_at=None)
    attempt = CallAttempt.objects.create(
        tenant=tenant, campaign=lead.campaign, lead=lead, number=lead.contact.phone_number,
        state=AttemptState.BRIDGED, answered_at=timezone.now() - timedelta(seconds=30),
    )  # fmt: skip

    # A rolled-back end leaves no delivery behind (the outbox is written in the end's transaction).
    with pytest.raises(RuntimeError), transaction.atomic():
        attempt_apply(attempt_id=attempt.pk, event=AttemptInput.ENDED, outcome=AttemptOutcome.ANSWERED)
        raise RuntimeError("rolled back")
    assert not WebhookDelivery.objects.exists()

    attempt_apply(attempt_id=attempt.pk, event=AttemptInput.ENDED, outcome=AttemptOutcome.ANSWERED)
    kinds = dict(WebhookDelivery.objects.values_list("event_type", "payload"))
    assert set(kinds) == {"call.ended", "lead.finished"}
    assert kinds["call.ended"]["data"]["attempt_id"] == str(attempt.pk)
    assert kinds["call.ended"]["data"]["outcome"] == "answered"
    assert kinds["lead.finished"]["data"]["status"] == "done"

    # A callback: callback.scheduled (the lead is then waiting, not finished again).
    attempt_schedule_callback(
        attempt_id=attempt.pk, tenant_id=tenant.pk, at=(timezone.now() + timedelta(days=1)).isoformat()
    )
    assert WebhookDelivery.objects.filter(event_type="callback.scheduled").count() == 1


def test_a_busy_end_that_retries_reports_no_lead_finished(receiver, loopback_allowed):
    tenant = make_tenant()
    webhook_endpoint_create(tenant=tenant, url=receiver.url)
    lead = make_lead(tenant)
    Lead.objects.filter(pk=lead.pk).update(status=Lead.Status.IN_ATTEMPT, next_due_at=None)
    attempt = CallAttempt.objects.create(
        tenant=tenant, campaign=lead.campaign, lead=lead, number=lead.contact.phone_number,
        state=AttemptState.RINGING,
    )  # fmt: skip
    attempt_apply(attempt_id=attempt.pk, event=AttemptInput.ENDED, outcome=AttemptOutcome.BUSY)
    assert list(WebhookDelivery.objects.values_list("event_type", flat=True)) == ["call.ended"]


def test_a_stop_calling_me_finishes_the_lead_and_reports_it(receiver, loopback_allowed):
    tenant = make_tenant()
    webhook_endpoint_create(tenant=tenant, url=receiver.url, event_types=[events.LEAD_FINISHED])
    lead = make_lead(tenant)
    Lead.objects.filter(pk=lead.pk).update(status=Lead.Status.IN_ATTEMPT, next_due_at=None)
    attempt = CallAttempt.objects.create(
        tenant=tenant, campaign=lead.campaign, lead=lead, number=lead.contact.phone_number,
        state=AttemptState.BRIDGED, answered_at=timezone.now(),
    )  # fmt: skip
    assert attempt_add_to_dnc(attempt_id=attempt.pk, tenant_id=tenant.pk)
    attempt_apply(attempt_id=attempt.pk, event=AttemptInput.ENDED, outcome=AttemptOutcome.ANSWERED)
    (finished,) = WebhookDelivery.objects.filter(event_type="lead.finished")  # once, not again at the end
    assert finished.payload["data"]["done_reason"] == "opted_out"


def test_the_delivery_log_is_pruned_after_its_retention_but_pending_ones_are_kept(
    receiver, loopback_allowed, settings
):
    settings.WEBHOOK_LOG_RETENTION_DAYS = 30
    tenant = make_tenant()
    endpoint = webhook_endpoint_create(tenant=tenant, url=receiver.url).endpoint
    old = timezone.now() - timedelta(days=31)
    rows = {
        status: WebhookDelivery.objects.create(
            tenant=tenant,
            endpoint=endpoint,
            event_type="call.ended",
            payload={},
            status=status,
            created_at=old,
        )
        for status in ("delivered", "failed", "pending")
    }
    recent = WebhookDelivery.objects.create(
        tenant=tenant, endpoint=endpoint, event_type="call.ended", payload={}
    )
    assert webhook_deliveries_prune() == 2
    assert set(WebhookDelivery.objects.values_list("pk", flat=True)) == {rows["pending"].pk, recent.pk}
