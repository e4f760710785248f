"""Twilio, through the official SDK (``twilio``): ``POST /2010-04-01/Accounts/{sid}/Messages.json``.

* Where it connects: the SDK's Api domain has a ``base_url`` (``https://api.twilio.com``); it is replaced
  by the account's ``api_base`` or ``settings.TWILIO_API_BASE`` when set (the local SMS stand-in,
  telephony/sim/sms.py, in the demo and the tests). A tenant-supplied base is checked against the URL
  policy right before each send.
* Timeouts: the SDK's ``TwilioHttpClient(timeout=...)`` (connect and read); no retries inside the SDK (the
  Celery task retries, with backoff and a bound).
* Errors: a ``TwilioRestException`` carries the HTTP status and Twilio's error code: 21610 (the recipient
  replied STOP to this sender) is ``opted_out``; 5xx and 429 are retryable; other 4xx terminal. A
  ``requests`` exception (timeout, refused connection) is retryable.
"""

from __future__ import annotations

import requests
from twilio.base.exceptions import TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

from messaging.lifecycle import TWILIO_STATUSES, MessageInput
from messaging.providers import OutboundSms, ProviderConfig, ProviderError, SendResult, parse_price
from tenants.urlpolicy import UrlNotAllowed, UrlPolicy

#: Twilio's "Attempt to send to unsubscribed recipient".
TWILIO_OPTED_OUT = 21610


class TwilioProvider:
    def __init__(self, config: ProviderConfig, *, default_api_base: str = "") -> None:
        self.config = config
        self.api_base = config.api_base or default_api_base

    def client(self) -> Client:
        client = Client(
            self.config.username,
            self.config.secret,
            http_client=TwilioHttpClient(timeout=self.config.timeout_s),
        )
        if self.api_base:
            client.api.base_url = self.api_base.rstrip("/")
        return client

    def send(self, sms: OutboundSms) -> SendResult:
        if not self.config.username or not self.config.secret:
            raise ProviderError("the Twilio account has no Account SID or Auth Token", retryable=False)
        if self.config.tenant_url and self.api_base:
            try:
                UrlPolicy.from_settings().check(self.api_base)
            except UrlNotAllowed as exc:
                raise ProviderError(f"api_base is not allowed: {exc}", retryable=False) from None
        options: dict[str, str] = {"to": sms.to, "body": sms.body}
        if sms.from_number:
            options["from_"] = sms.from_number
        if sms.status_callback_url:
            options["status_callback"] = sms.status_callback_url
        try:
            created = self.client().messages.create(**options)
        except TwilioRestException as exc:
            code = str(exc.code or exc.status)
            if exc.code == TWILIO_OPTED_OUT:
                raise ProviderError(
                    exc.msg or "opted out", retryable=False, code=code, opted_out=True
                ) from exc
            retryable = exc.status >= 500 or exc.status == 429
            raise ProviderError(exc.msg or f"HTTP {exc.status}", retryable=retryable, code=code) from exc
        except requests.RequestException as exc:
            raise ProviderError(f"Twilio unreachable: {exc}", retryable=True, code="network") from exc
        try:
            segments: int | None = int(created.num_segments or 0) or None
        except ValueError:
            segments = None
        return SendResult(
            provider_message_id=str(created.sid),
            event=TWILIO_STATUSES.get(str(created.status), MessageInput.ACCEPTED),
            segments=segments,
            price=parse_price(created.price),
            price_unit=str(created.price_unit or ""),
            from_number=str(created.from_ or sms.from_number),
        )
