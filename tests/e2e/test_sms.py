"""SMS end to end over real HTTP and real processes: a Celery worker sends through the official Twilio SDK to
the SMS stand-in, which posts signed status callbacks and a person's scripted reply to the product's
webhooks (Django's live server); the worker acts on them. STOP from a phone blocks later messages (the
stand-in receives nothing), START allows them again."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
from django.db import transaction

from messaging.models import Message, OptOut, WebhookReceipt
from messaging.services import message_send
from orchestrator.celery import app
from tests.campaigns.factories import make_tenant
from tests.e2e.stack import Stack
from tests.messaging.conftest import PRODUCT_NUMBER, start_standin, twilio_account

pytestmark = [
    pytest.mark.slow,
    pytest.mark.postgres,
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(180),
]

PAGED = "+15550007001"
OTHER = "+15550007002"


def wait_until(predicate: Callable[[], bool], *, what: str, stack: Stack, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}\n{stack.logs()}")


def test_sms_through_the_sdk_the_standin_and_signed_webhooks(
    stack: Stack, live_server, tmp_path: Path, monkeypatch
):
    monkeypatch.setitem(app.conf, "task_default_queue", stack.queue)
    tenant = make_tenant()

    def send(to: str, text: str) -> Message:
        with transaction.atomic():  # enqueued when it commits, as in a flow's service
            return message_send(tenant_id=tenant.pk, to=to, text=text, purpose="page", ref="e2e")

    account = twilio_account(tenant)
    inbound = f"{live_server.url}/webhooks/sms/twilio/{account.webhook_id}/inbound"
    standin = start_standin(tmp_path, inbound_url=inbound, script={PAGED: {"reply": "1", "after": 0.3}})
    try:
        stack.start_worker(
            concurrency=2,
            env={
                "TWILIO_API_BASE": standin.url,
                "PUBLIC_BASE_URL": live_server.url,
                "MESSAGING_REPLY_HANDLERS": "tests.messaging.handlers.consume_digits",
            },
        )
        # SDK -> stand-in -> signed status callbacks -> the row is delivered.
        page = send(PAGED, "Urgent: no heat at 12 Elm St. Reply 1 to accept.")
        wait_until(
            lambda: Message.objects.get(pk=page.pk).status == "delivered", what="delivered", stack=stack
        )
        page.refresh_from_db()
        assert page.provider_message_id.startswith("SM") and page.sent_at and page.delivered_at
        [seen] = standin.messages(to=PAGED)
        assert seen["sid"] == page.provider_message_id

        # The person's scripted reply "1", signed, stored once and consumed by the reply handler.
        wait_until(
            lambda: WebhookReceipt.objects.filter(kind="inbound", processed_at__isnull=False).exists(),
            what="the reply processed",
            stack=stack,
        )
        [reply] = Message.objects.filter(direction="in")
        assert (reply.from_number, reply.to_number, reply.body) == (PAGED, PRODUCT_NUMBER, "1")
        receipt = WebhookReceipt.objects.get(kind="inbound")
        assert (receipt.outcome, receipt.tries) == ("consumed by tests.messaging.handlers.consume_digits", 1)
        statuses = set(WebhookReceipt.objects.filter(kind="status").values_list("event_key", flat=True))
        assert statuses == {f"{page.provider_message_id}:sent", f"{page.provider_message_id}:delivered"}

        # STOP from a phone: later messages to it are blocked, and the stand-in receives nothing.
        assert standin.reply(sender=OTHER, to=PRODUCT_NUMBER, body="STOP")["webhook_status"] == 200
        wait_until(
            lambda: OptOut.objects.filter(phone_number=OTHER).exists(), what="the opt-out", stack=stack
        )
        blocked = send(OTHER, "Another page")
        assert blocked.status == "blocked"
        time.sleep(1.0)
        assert Message.objects.get(pk=blocked.pk).status == "blocked"
        assert standin.messages(to=OTHER) == []

        # START: allowed again.
        standin.reply(sender=OTHER, to=PRODUCT_NUMBER, body="START")
        wait_until(lambda: not OptOut.objects.filter(phone_number=OTHER).exists(), what="opt-in", stack=stack)
        again = send(OTHER, "Another page")
        wait_until(
            lambda: Message.objects.get(pk=again.pk).status == "delivered", what="delivered", stack=stack
        )
        assert len(standin.messages(to=OTHER)) == 1
    finally:
        standin.proc.terminate()
        standin.proc.wait(10)
