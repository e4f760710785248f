"""Telnyx, through its JSON API (httpx): ``POST /v2/messages`` with ``Authorization: Bearer <API key>``, and
its webhooks' Ed25519 signatures.

* Send: ``{"from", "to", "text", "webhook_url"}`` (plus ``messaging_profile_id`` when set). Errors come as
  ``{"errors": [{"code": "40300", "title": ..., "detail": ...}]}``; 40300 ("Blocked due to STOP message")
  is ``opted_out``; 5xx, 429 and transport errors (timeouts) are retryable; other 4xx terminal.
* Webhooks: ``telnyx-signature-ed25519`` is the base64 signature of ``f"{telnyx-timestamp}|{raw body}"``
  made with the account's key pair; the public key (base64 of the 32-byte raw key, from the Telnyx portal)
  is stored on the account. A timestamp further than ``tolerance_s`` from now is refused (replays).
"""

from __future__ import annotations

import base64
import binascii
import time
from typing import Any

import httpx
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from messaging.lifecycle import TELNYX_STATUSES, MessageInput
from messaging.providers import OutboundSms, ProviderConfig, ProviderError, SendResult, parse_price
from tenants.urlpolicy import PolicyTransport, UrlPolicy

TELNYX_API = "https://api.telnyx.com"
#: Telnyx's "Blocked due to STOP message".
TELNYX_OPTED_OUT = "40300"
SIGNATURE_HEADER = "telnyx-signature-ed25519"
TIMESTAMP_HEADER = "telnyx-timestamp"


class TelnyxProvider:
    def __init__(self, config: ProviderConfig, *, default_api_base: str = "") -> None:
        self.config = config
        self.api_base = (config.api_base or default_api_base or TELNYX_API).rstrip("/")

    def _client(self) -> httpx.Client:
        transport = PolicyTransport(UrlPolicy.from_settings()) if self.config.tenant_url else None
        return httpx.Client(timeout=self.config.timeout_s, transport=transport, follow_redirects=False)

    def send(self, sms: OutboundSms) -> SendResult:
        if not self.config.secret:
            raise ProviderError("the Telnyx account has no API key", retryable=False)
        body: dict[str, Any] = {"to": sms.to, "text": sms.body}
        if sms.from_number:
            body["from"] = sms.from_number
        if self.config.messaging_profile_id:
            body["messaging_profile_id"] = self.config.messaging_profile_id
        if sms.status_callback_url:
            body["webhook_url"] = sms.status_callback_url
            body["use_profile_webhooks"] = False
        try:
            with self._client() as client:
                response = client.post(
                    f"{self.api_base}/v2/messages",
                    json=body,
                    headers={"Authorization": f"Bearer {self.config.secret}", "Accept": "application/json"},
                )
        except httpx.HTTPError as exc:
            raise ProviderError(f"Telnyx unreachable: {exc}", retryable=True, code="network") from exc
        try:
            answer = response.json()
        except ValueError:
            answer = {}
        if response.status_code >= 400 or not isinstance(answer, dict):
            raise _error(response.status_code, answer)
        data = answer.get("data") or {}
        recipients = data.get("to") or [{}]
        status = str((recipients[0] or {}).get("status") or "queued")
        cost = data.get("cost") or {}
        return SendResult(
            provider_message_id=str(data.get("id") or ""),
            event=TELNYX_STATUSES.get(status, MessageInput.ACCEPTED),
            segments=int(data["parts"]) if isinstance(data.get("parts"), int) and data["parts"] > 0 else None,
            price=parse_price(cost.get("amount")) if isinstance(cost, dict) else None,
            price_unit=str(cost.get("currency") or "") if isinstance(cost, dict) else "",
            from_number=str((data.get("from") or {}).get("phone_number") or sms.from_number),
        )


def _error(status: int, answer: Any) -> ProviderError:
    errors = answer.get("errors") if isinstance(answer, dict) else None
    first = errors[0] if isinstance(errors, list) and errors and isinstance(errors[0], dict) else {}
    code = str(first.get("code") or status)
    text = str(first.get("detail") or first.get("title") or f"HTTP {status}")
    if code == TELNYX_OPTED_OUT:
        return ProviderError(text, retryable=False, code=code, opted_out=True)
    return ProviderError(text, retryable=status >= 500 or status == 429, code=code)


def verify_signature(
    *,
    public_key: str,
    body: bytes,
    signature: str,
    timestamp: str,
    tolerance_s: float,
    now: float | None = None,
) -> bool:
    """True when ``signature`` (base64) is the account key's Ed25519 signature of ``timestamp|body`` and the
    timestamp is within ``tolerance_s`` of now. Any malformed part is simply not valid."""
    try:
        sent_at = int(timestamp)
        key = Ed25519PublicKey.from_public_bytes(base64.b64decode(public_key, validate=True))
        raw_signature = base64.b64decode(signature, validate=True)
    except (ValueError, binascii.Error):
        return False
    current = time.time() if now is None else now
    if abs(current - sent_at) > tolerance_s:
        return False
    try:
        key.verify(raw_signature, timestamp.encode() + b"|" + body)
    except InvalidSignature:
        return False
    return True
