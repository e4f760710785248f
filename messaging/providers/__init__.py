"""SMS providers: one small class per provider, chosen by the account's kind (:func:`provider_for`).

A provider sends one message (:meth:`SmsProvider.send`) and returns what the provider said
(:class:`SendResult`), or raises :class:`ProviderError`: ``retryable`` for a timeout, a refused connection,
a 5xx or a 429 (the same message may succeed later); ``opted_out`` when the provider refuses because the
recipient opted out with it (Twilio 21610, Telnyx 40300: recorded, never retried); anything else is terminal.
Every request has a timeout (``SMS_PROVIDER_TIMEOUT_S``). Providers do no database work.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol

from messaging.lifecycle import MessageInput

__all__ = ["OutboundSms", "ProviderConfig", "ProviderError", "SendResult", "SmsProvider", "provider_for"]


@dataclass(frozen=True, slots=True)
class ProviderConfig:
    """An account's resolved settings (the secret decrypted or read from its environment variable)."""

    kind: str
    username: str = ""
    secret: str = ""
    api_base: str = ""  # empty: the provider's own API
    tenant_url: bool = False  # api_base came from the tenant: connect through the URL policy
    messaging_profile_id: str = ""
    timeout_s: float = 10.0


@dataclass(frozen=True, slots=True)
class OutboundSms:
    message_id: int
    tenant_id: int
    to: str
    from_number: str
    body: str
    status_callback_url: str = ""  # where the provider posts this message's status ("" for none)


@dataclass(frozen=True, slots=True)
class SendResult:
    provider_message_id: str
    event: MessageInput  # ACCEPTED (queued at the provider) or SENT
    segments: int | None = None
    price: Decimal | None = None
    price_unit: str = ""
    from_number: str = ""


class ProviderError(Exception):
    """Not sent. ``retryable``: try again later; ``opted_out``: the recipient opted out with the provider."""

    def __init__(self, message: str, *, retryable: bool, code: str = "", opted_out: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.retryable = retryable and not opted_out
        self.code = code
        self.opted_out = opted_out


class SmsProvider(Protocol):
    def send(self, sms: OutboundSms) -> SendResult: ...


def provider_for(config: ProviderConfig) -> SmsProvider:
    if config.kind == "twilio":
        from messaging.providers.twilio import TwilioProvider  # noqa: PLC0415 - the SDK loads on first use

        return TwilioProvider(config)
    if config.kind == "telnyx":
        from messaging.providers.telnyx import TelnyxProvider  # noqa: PLC0415

        return TelnyxProvider(config)
    if config.kind == "console":
        from messaging.providers.console import ConsoleProvider  # noqa: PLC0415

        return ConsoleProvider(config)
    raise ValueError(f"unknown SMS provider {config.kind!r}")


def parse_price(value: object) -> Decimal | None:
    """A provider's price (Twilio gives "-0.00750", Telnyx "0.0040"), as a positive cost."""
    if value in (None, ""):
        return None
    try:
        return abs(Decimal(str(value)))
    except ArithmeticError:
        return None
