"""The flows' one door to SMS: ``messaging.services.message_send`` (contract 5), looked up by name when
used (flows → messaging is an allowed direction; the messaging app may be deployed after this one)."""

from __future__ import annotations

from typing import Any

from django.utils.module_loading import import_string

MESSAGE_SEND = "messaging.services.message_send"


class SmsUnavailable(Exception):
    """The message could not even be queued (no messaging app, a refused number): the page fails, and the
    call leg races on."""


def sms_send(*, tenant_id: int, to: str, text: str, purpose: str, ref: str) -> Any:
    """Queue an SMS in the caller's transaction (the provider send runs after the commit); returns the
    messaging app's Message row."""
    try:
        message_send = import_string(MESSAGE_SEND)
    except ImportError as exc:
        raise SmsUnavailable(f"messaging is not installed: {exc}") from exc
    try:
        return message_send(tenant_id=tenant_id, to=to, text=text, purpose=purpose, ref=ref, sender="")
    except (ValueError, LookupError) as exc:  # InvalidInput is a ValueError; an unknown tenant/account
        raise SmsUnavailable(str(exc)) from exc
