"""Provider webhooks through Django (the test client): the signature is checked over the URL Twilio called
(403 and nothing stored otherwise), a provider's retry acts once, STOP/START/HELP are the product's, other
replies go to the reply handlers; Telnyx's Ed25519 signatures."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from django.test import Client

from messaging.models import Message, OptOut, SmsAccount, WebhookReceipt
from messaging.services import message_send
from messaging.services.accounts import sms_account_create
from messaging.services.webhooks import receipt_process
from messaging.tasks import process_receipt
from tests.messaging import handlers
from tests.messaging.conftest import PRODUCT_NUMBER, inbound_params, sign, twilio_account

pytestmark = pytest.mark.django_db

PERSON = "+15550001111"


@pytest.fixture(autouse=True)
def _handlers(settings):
    settings.MESSAGING_REPLY_HANDLERS = ["tests.messaging.handlers.consume_digits"]
    settings.MESSAGING_STATUS_HANDLERS = ["tests.messaging.handlers.record_status"]
    handlers.REPLIES.clear()
    handlers.STATUSES.clear()


def inbound_url(account: SmsAccount, host: str = "http://testserver") -> str:
    return f"{host}/webhooks/sms/twilio/{account.webhook_id}/inbound"


def post_inbound(client: Client, account: SmsAccount, params: dict[str, str], **headers: Any) -> Any:
    url = inbound_url(account)
    signature = headers.pop("signature", None) or sign(url, params)
    return client.post(url, params, HTTP_X_TWILIO_SIGNATURE=signature, **headers)


def run_enqueued(callbacks: list[Any], monkeypatch) -> list[int]:
    """Run the on-commit callbacks, capturing the receipt ids they enqueue, then process those."""
    ids: list[int] = []
    monkeypatch.setattr(process_receipt, "delay", lambda receipt_id: ids.append(receipt_id))
    for callback in callbacks:
        callback()
    for receipt_id in ids:
        receipt_process(receipt_id=receipt_id)
    return ids


def test_a_signed_inbound_reply_is_stored_answered_with_empty_twiml_and_handled_once(
    tenant, client, monkeypatch, django_capture_on_commit_callbacks
):
    account = twilio_account(tenant)
    params = inbound_params(body="1", sender=PERSON)
    with django_capture_on_commit_callbacks() as callbacks:
        started = time.monotonic()
        response = post_inbound(client, account, params)
        elapsed = time.monotonic() - started
        again = post_inbound(client, account, params)  # the provider's retry
    assert response.status_code == 200 and elapsed < 2
    assert response["Content-Type"].startswith("text/xml")
    assert response.content == b'<?xml version="1.0" encoding="UTF-8"?><Response/>'
    assert again.status_code == 200
    assert run_enqueued(callbacks, monkeypatch) == [WebhookReceipt.objects.get().pk]

    [message] = Message.objects.filter(direction="in")
    assert (message.tenant_id, message.from_number, message.to_number, message.body, message.status) == (
        tenant.pk, PERSON, PRODUCT_NUMBER, "1", "received",
    )  # fmt: skip
    assert handlers.REPLIES == [(message.pk, "1")]
    receipt = WebhookReceipt.objects.get()
    assert receipt.outcome == "consumed by tests.messaging.handlers.consume_digits"
    assert receipt_process(receipt_id=receipt.pk) == "done"  # a second run of the task acts not
    assert handlers.REPLIES == [(message.pk, "1")]


@pytest.mark.parametrize(
    "signature", ["", "bm90IGEgc2lnbmF0dXJl", "other-token", "tampered-body", "other-url"]
)
def test_a_bad_signature_is_refused_403_and_nothing_is_stored(
    tenant, client, signature, django_capture_on_commit_callbacks
):
    account = twilio_account(tenant)
    params = inbound_params(body="1")
    url = inbound_url(account)
    forged = {
        "": "",
        "bm90IGEgc2lnbmF0dXJl": "bm90IGEgc2lnbmF0dXJl",
        "other-token": sign(url, params, token="another-token"),
        "tampered-body": sign(url, {**params, "Body": "2"}),
        "other-url": sign(url.replace("inbound", "status"), params),
    }[signature]
    with django_capture_on_commit_callbacks() as callbacks:
        response = client.post(url, params, HTTP_X_TWILIO_SIGNATURE=forged)
    assert response.status_code == 403
    assert callbacks == []
    assert not WebhookReceipt.objects.exists() and not Message.objects.exists()


def test_an_unknown_account_is_404_and_the_status_route_takes_status_callbacks_only(tenant, client):
    account = twilio_account(tenant)
    params = inbound_params(body="1")
    url = inbound_url(account).replace(str(account.webhook_id), "00000000-0000-4000-8000-000000000000")
    assert client.post(url, params, HTTP_X_TWILIO_SIGNATURE=sign(url, params)).status_code == 404
    status_url = inbound_url(account).replace("inbound", "status")
    assert (
        client.post(status_url, params, HTTP_X_TWILIO_SIGNATURE=sign(status_url, params)).status_code == 400
    )
    assert not WebhookReceipt.objects.exists()


def test_behind_a_proxy_the_public_url_or_forwarded_scheme_is_what_twilio_signed(tenant, client, settings):
    account = twilio_account(tenant)
    public = "https://sms.example.com"
    settings.PUBLIC_BASE_URL = public
    params = inbound_params(body="hello", sid="SM" + "b" * 32)
    signature = sign(inbound_url(account, public), params)
    assert client.post(inbound_url(account), params, HTTP_X_TWILIO_SIGNATURE=signature).status_code == 200
    settings.PUBLIC_BASE_URL = "http://127.0.0.1:8000"
    params = inbound_params(body="hello", sid="SM" + "c" * 32)
    signature = sign(inbound_url(account, "https://testserver"), params)
    response = client.post(
        inbound_url(account), params, HTTP_X_TWILIO_SIGNATURE=signature, HTTP_X_FORWARDED_PROTO="https"
    )
    assert response.status_code == 200
    assert WebhookReceipt.objects.count() == 2


def test_stop_blocks_later_messages_start_allows_them_again_help_answers(
    tenant, client, monkeypatch, django_capture_on_commit_callbacks
):
    account = twilio_account(tenant)
    with django_capture_on_commit_callbacks() as callbacks:
        post_inbound(client, account, inbound_params(body="  Stop ", sid="SM" + "1" * 32))
    run_enqueued(callbacks, monkeypatch)
    assert OptOut.objects.filter(
        tenant=tenant, phone_number=PERSON, source="keyword", keyword="STOP"
    ).exists()
    assert handlers.REPLIES == []  # a keyword is not a reply

    blocked = message_send(tenant_id=tenant.pk, to=PERSON, text="Urgent job", purpose="page")
    assert blocked.status == "blocked"

    with django_capture_on_commit_callbacks() as callbacks:
        post_inbound(client, account, inbound_params(body="unstop", sid="SM" + "2" * 32))
    run_enqueued(callbacks, monkeypatch)
    assert not OptOut.objects.filter(tenant=tenant).exists()
    assert message_send(tenant_id=tenant.pk, to=PERSON, text="Urgent job", purpose="page").status == "queued"

    with django_capture_on_commit_callbacks() as callbacks:
        post_inbound(client, account, inbound_params(body="HELP", sid="SM" + "3" * 32))
    run_enqueued(callbacks, monkeypatch)
    help_reply = Message.objects.get(purpose="help")
    assert tenant.name in help_reply.body and help_reply.to_number == PERSON
    assert help_reply.from_number == PRODUCT_NUMBER and help_reply.status == "queued"


@pytest.mark.parametrize("word", ["STOPALL", "unsubscribe", "Cancel", "END", "quit", "stop."])
def test_every_stop_word_opts_out(tenant, client, monkeypatch, django_capture_on_commit_callbacks, word):
    account = twilio_account(tenant)
    with django_capture_on_commit_callbacks() as callbacks:
        post_inbound(client, account, inbound_params(body=word))
    run_enqueued(callbacks, monkeypatch)
    assert OptOut.objects.filter(tenant=tenant, phone_number=PERSON).exists()


def test_status_callbacks_move_forward_only_and_a_late_one_changes_nothing(
    tenant, client, monkeypatch, django_capture_on_commit_callbacks
):
    account = twilio_account(tenant)
    message = message_send(tenant_id=tenant.pk, to=PERSON, text="hi")
    Message.objects.filter(pk=message.pk).update(status="sending", provider_message_id="SM" + "d" * 32)
    url = f"http://testserver/webhooks/sms/twilio/{account.webhook_id}/status?m={message.pk}"

    def status(value: str) -> None:
        params = {"AccountSid": "AC" + "0" * 32, "MessageSid": "SM" + "d" * 32, "MessageStatus": value,
                  "SmsStatus": value, "To": PERSON, "From": PRODUCT_NUMBER}  # fmt: skip
        with django_capture_on_commit_callbacks() as callbacks:
            response = client.post(url, params, HTTP_X_TWILIO_SIGNATURE=sign(url, params))
        assert response.status_code == 204
        run_enqueued(callbacks, monkeypatch)

    status("delivered")
    status("sent")  # late
    status("delivered")  # repeated: its receipt exists
    message.refresh_from_db()
    assert message.status == "delivered" and message.delivered_at is not None and message.sent_at is not None
    assert handlers.STATUSES == [(message.pk, "delivered")]
    assert WebhookReceipt.objects.count() == 2


# -------------------------------------------------------------------------------------------- Telnyx
def telnyx_account(tenant) -> tuple[SmsAccount, Ed25519PrivateKey]:
    key = Ed25519PrivateKey.generate()
    public = base64.b64encode(key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)).decode()
    account = sms_account_create(
        tenant=tenant, kind="telnyx", secret="KEY-telnyx", public_key=public, from_numbers=[PRODUCT_NUMBER]
    )
    return account, key


def telnyx_event(text: str, *, event_id: str = "evt-1") -> bytes:
    return json.dumps(
        {"data": {"event_type": "message.received", "id": event_id, "occurred_at": "2026-01-01T00:00:00Z",
                  "payload": {"id": "msg-" + event_id, "direction": "inbound", "text": text, "parts": 1,
                              "from": {"phone_number": PERSON}, "to": [{"phone_number": PRODUCT_NUMBER}]}}}
    ).encode()  # fmt: skip


def post_telnyx(
    client: Client, account: SmsAccount, body: bytes, key: Ed25519PrivateKey, *, at: float | None = None
):
    timestamp = str(int(at if at is not None else time.time()))
    signature = base64.b64encode(key.sign(timestamp.encode() + b"|" + body)).decode()
    return client.post(
        f"/webhooks/sms/telnyx/{account.webhook_id}",
        body,
        content_type="application/json",
        HTTP_TELNYX_SIGNATURE_ED25519=signature,
        HTTP_TELNYX_TIMESTAMP=timestamp,
    )


def test_telnyx_a_signed_event_is_stored_once_and_handled(
    tenant, client, monkeypatch, django_capture_on_commit_callbacks
):
    account, key = telnyx_account(tenant)
    with django_capture_on_commit_callbacks() as callbacks:
        assert post_telnyx(client, account, telnyx_event("2"), key).status_code == 204
        assert post_telnyx(client, account, telnyx_event("2"), key).status_code == 204
    run_enqueued(callbacks, monkeypatch)
    [message] = Message.objects.filter(direction="in")
    assert (message.provider, message.body, message.from_number) == ("telnyx", "2", PERSON)
    assert handlers.REPLIES == [(message.pk, "2")]


def test_telnyx_a_bad_signature_a_foreign_key_or_an_old_timestamp_is_refused(tenant, client):
    account, key = telnyx_account(tenant)
    body = telnyx_event("1")
    assert post_telnyx(client, account, body, Ed25519PrivateKey.generate()).status_code == 403
    assert post_telnyx(client, account, body, key, at=time.time() - 3600).status_code == 403
    signature = base64.b64encode(key.sign(b"1|" + body)).decode()
    response = client.post(
        f"/webhooks/sms/telnyx/{account.webhook_id}",
        body.replace(b'"1"', b'"9"'),
        content_type="application/json",
        HTTP_TELNYX_SIGNATURE_ED25519=signature,
        HTTP_TELNYX_TIMESTAMP="1",
    )
    assert response.status_code == 403
    assert not WebhookReceipt.objects.exists() and not Message.objects.exists()
