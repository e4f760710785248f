"""Webhooks end to end on real processes: a Celery worker and beat deliver to a real HTTP receiver that
fails twice (500) and then accepts. The event is delivered once accepted, every try with the same
Webhook-Id and a valid signature, the tries spaced by the configured backoff (seconds here, minutes in
production). A delivery whose enqueue was lost is sent by the beat sweep alone (the guarantee)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator

import pytest
from django.db import transaction

from integrations import events
from integrations.models import WebhookDelivery
from integrations.services.deliveries import webhook_event_record
from integrations.services.endpoints import webhook_endpoint_create
from integrations.signing import verify
from orchestrator.celery import app
from tests.campaigns.factories import make_tenant
from tests.e2e.stack import Stack
from tests.integrations.receiver import Receiver

pytestmark = [
    pytest.mark.slow,
    pytest.mark.postgres,
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(120),
]


def wait_until(predicate: Callable[[], bool], *, what: str, stack: Stack, timeout: float = 40) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}\n{stack.logs()}")


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    the_receiver = Receiver().start()
    try:
        yield the_receiver
    finally:
        the_receiver.stop()


def test_a_webhook_is_signed_retried_after_two_failures_and_delivered_once(
    stack: Stack, receiver: Receiver, settings, monkeypatch
):
    monkeypatch.setitem(app.conf, "task_default_queue", stack.queue)
    settings.TENANT_URL_ALLOWED_NETWORKS = ["127.0.0.1/32"]  # the operator admits the local receiver
    stack.env.update(
        TENANT_URL_ALLOWED_NETWORKS="127.0.0.1/32",
        WEBHOOK_BACKOFF_S="1,2",
        WEBHOOK_MAX_ATTEMPTS="5",
        WEBHOOKS_SWEEP_S="1",
    )
    tenant = make_tenant()
    made = webhook_endpoint_create(tenant=tenant, url=receiver.url, event_types=[events.CALL_ENDED])
    receiver.statuses = [500, 500]
    stack.start_worker(concurrency=2)
    stack.start_beat()

    with transaction.atomic():  # enqueued when it commits, as in the end of a call
        (delivery_id,) = webhook_event_record(
            tenant_id=tenant.pk,
            event_type=events.CALL_ENDED,
            data={"attempt_id": "a-1", "outcome": "answered"},
        )
    wait_until(
        lambda: WebhookDelivery.objects.get(pk=delivery_id).status == "delivered",
        what="delivery",
        stack=stack,
    )
    time.sleep(3)  # long enough for any duplicate try (sweep, countdown) to show up
    assert [r.status for r in receiver.received] == [500, 500, 200]
    assert {r.headers["webhook-id"] for r in receiver.received} == {str(delivery_id)}
    for request in receiver.received:
        assert verify(made.secret, request.headers["webhook-signature"], request.body)
        assert json.loads(request.body)["data"] == {"attempt_id": "a-1", "outcome": "answered"}
    gaps = [
        later.at - earlier.at
        for earlier, later in zip(receiver.received, receiver.received[1:], strict=False)
    ]
    assert gaps[0] >= 0.9 and gaps[1] >= 1.9, gaps  # the backoff schedule: 1 s, then 2 s
    row = WebhookDelivery.objects.get(pk=delivery_id)
    assert row.attempts == 3 and row.last_status_code == 200 and row.response_excerpt == "ok"

    # A delivery whose enqueue was lost (written without its after-commit message): the sweep sends it.
    lost = WebhookDelivery.objects.create(
        tenant=tenant, endpoint=made.endpoint, event_type=events.CALL_ENDED, payload={"lost": True}
    )
    wait_until(
        lambda: WebhookDelivery.objects.get(pk=lost.pk).status == "delivered", what="sweep", stack=stack
    )
    assert receiver.received[-1].headers["webhook-id"] == str(lost.pk)
