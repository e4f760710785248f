"""Sending through the providers over real HTTP: the Twilio SDK against the SMS stand-in (a process of its
own), Telnyx's JSON API against a small local server. Retryable errors are retried a bounded number of
times with backoff; an opt-out refusal (Twilio 21610, Telnyx 40300) is recorded and never retried."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from django.utils import timezone

from messaging.models import Message, OptOut
from messaging.services import message_send
from messaging.services.accounts import sms_account_create
from messaging.tasks import send_message, sweep
from orchestrator.errors import InvalidInput
from tests.messaging.conftest import PRODUCT_NUMBER, twilio_account

pytestmark = pytest.mark.django_db

PERSON = "+15550002222"


@pytest.fixture
def retries(monkeypatch) -> list[tuple[Any, float]]:
    scheduled: list[tuple[Any, float]] = []
    monkeypatch.setattr(
        send_message, "apply_async", lambda args, countdown: scheduled.append((args[0], countdown))
    )
    return scheduled


@pytest.fixture
def twilio(standin, settings, tenant):
    settings.TWILIO_API_BASE = standin.url
    settings.PUBLIC_BASE_URL = "http://product.test"
    return twilio_account(tenant)


def test_the_sdk_sends_to_the_standin_with_a_status_callback_per_message(twilio, standin, tenant):
    message = message_send(
        tenant_id=tenant.pk, to=PERSON, text="Urgent: no heat at 12 Elm St", purpose="page"
    )
    assert message.status == "queued" and message.from_number == PRODUCT_NUMBER
    assert send_message.run(message.pk) == "sent"
    assert send_message.run(message.pk) == "skipped"  # a second copy of the task

    message.refresh_from_db()
    assert message.status == "sending"  # accepted and queued by the provider
    assert message.provider == "twilio" and message.provider_message_id.startswith("SM")
    assert (message.tries, message.segments) == (1, 1)
    [sent] = standin.messages(to=PERSON)
    assert (sent["sid"], sent["from"], sent["body"]) == (
        message.provider_message_id,
        PRODUCT_NUMBER,
        message.body,
    )


def test_21610_is_recorded_as_opted_out_and_never_retried(twilio, standin, tenant, retries):
    standin.script({PERSON: {"error": 21610}})
    message = message_send(tenant_id=tenant.pk, to=PERSON, text="hi")
    assert send_message.run(message.pk) == "opted_out"
    message.refresh_from_db()
    assert (message.status, message.error_code, message.tries) == ("opted_out", "21610", 1)
    assert OptOut.objects.get(tenant=tenant, phone_number=PERSON).source == "provider"
    assert retries == []
    assert send_message.run(message.pk) == "skipped"
    assert message_send(tenant_id=tenant.pk, to=PERSON, text="again").status == "blocked"
    assert standin.messages() == []


def test_a_provider_timeout_is_retried_a_bounded_number_of_times_then_failed(
    twilio, standin, tenant, settings, retries
):
    settings.SMS_PROVIDER_TIMEOUT_S = 0.3
    settings.SMS_SEND_MAX_TRIES = 3
    settings.SMS_RETRY_BACKOFF_S = 0.0
    standin.script({PERSON: {"delay": 2}})
    message = message_send(tenant_id=tenant.pk, to=PERSON, text="hi")
    assert send_message.run(message.pk) == "retry"
    message.refresh_from_db()
    assert (message.status, message.tries, message.error_code) == ("queued", 1, "network")
    assert send_message.run(message.pk) == "retry"
    assert send_message.run(message.pk) == "failed"
    message.refresh_from_db()
    assert (message.status, message.tries) == ("failed", 3)
    assert [message_id for message_id, _ in retries] == [message.pk, message.pk]
    assert send_message.run(message.pk) == "skipped"


def test_backoff_grows_and_a_5xx_is_retryable_a_4xx_terminal(twilio, standin, tenant, settings, retries):
    settings.SMS_RETRY_BACKOFF_S = 5.0
    standin.script({PERSON: {"http_status": 503}, "+15550003333": {"http_status": 400}})
    message = message_send(tenant_id=tenant.pk, to=PERSON, text="hi")
    assert send_message.run(message.pk) == "retry"
    assert send_message.run(message.pk) == "skipped"  # early: its retry is not due yet
    Message.objects.filter(pk=message.pk).update(next_try_at=timezone.now())
    assert send_message.run(message.pk) == "retry"
    assert [countdown for _, countdown in retries] == [5.0, 10.0]
    refused = message_send(tenant_id=tenant.pk, to="+15550003333", text="hi")
    assert send_message.run(refused.pk) == "failed"
    assert retries[2:] == []


def test_the_sweep_enqueues_a_queued_message_whose_task_was_lost(tenant, monkeypatch):
    enqueued: list[int] = []
    monkeypatch.setattr(send_message, "delay", enqueued.append)
    message = message_send(tenant_id=tenant.pk, to=PERSON, text="hi")
    assert sweep.run() == {"messages": 0, "receipts": 0}
    Message.objects.filter(pk=message.pk).update(next_try_at=timezone.now() - timedelta(minutes=5))
    assert sweep.run() == {"messages": 1, "receipts": 0}
    assert enqueued == [message.pk]


def test_a_tenant_api_base_must_pass_the_url_policy(tenant):
    with pytest.raises(InvalidInput) as error:
        sms_account_create(
            tenant=tenant, kind="twilio", username="AC" + "1" * 32, secret="x", api_base="http://127.0.0.1:9/"
        )
    assert error.value.field == "api_base"
    with pytest.raises(InvalidInput) as error:
        sms_account_create(tenant=tenant, kind="twilio", username="AC" + "1" * 32, secret="x", secret_env="X")
    assert error.value.field == "secret"


# -------------------------------------------------------------------------------------------- Telnyx
class _Telnyx(BaseHTTPRequestHandler):
    requests: list[dict[str, Any]] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        answer: dict[str, Any]
        type(self).requests.append({"path": self.path, "auth": self.headers["Authorization"], "body": body})
        if body["to"] == "+15550004444":
            status, answer = 403, {"errors": [{"code": "40300", "title": "Blocked due to STOP message"}]}
        else:
            recipient = {"phone_number": body["to"], "status": "queued"}
            status, answer = 200, {
                "data": {"id": "40317-uuid", "parts": 2, "cost": {"amount": "0.0080", "currency": "USD"},
                         "from": {"phone_number": body["from"]}, "to": [recipient]}
            }  # fmt: skip
        data = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def telnyx_api(settings) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Telnyx)
    _Telnyx.requests = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    settings.TELNYX_API_BASE = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield settings.TELNYX_API_BASE
    finally:
        server.shutdown()


def test_telnyx_sends_json_with_the_bearer_key_and_a_webhook_per_message(telnyx_api, tenant, settings):
    settings.PUBLIC_BASE_URL = "https://product.example"
    account = sms_account_create(
        tenant=tenant,
        kind="telnyx",
        secret="KEY-123",
        public_key="A" * 43 + "=",
        from_numbers=[PRODUCT_NUMBER],
    )
    message = message_send(tenant_id=tenant.pk, to=PERSON, text="hello")
    assert send_message.run(message.pk) == "sent"
    message.refresh_from_db()
    assert (message.status, message.provider_message_id, message.segments) == ("sending", "40317-uuid", 2)
    assert (str(message.price), message.price_unit) == ("0.00800", "USD")
    [request] = _Telnyx.requests
    assert request["path"] == "/v2/messages" and request["auth"] == "Bearer KEY-123"
    assert request["body"]["webhook_url"] == (
        f"https://product.example/webhooks/sms/telnyx/{account.webhook_id}?m={message.pk}"
    )

    blocked = message_send(tenant_id=tenant.pk, to="+15550004444", text="hello")
    assert send_message.run(blocked.pk) == "opted_out"
    blocked.refresh_from_db()
    assert (blocked.status, blocked.error_code) == ("opted_out", "40300")
