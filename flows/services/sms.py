"""The flows' one door to SMS: ``messaging.services.message_send`` (contract 5), with the failures a page
records instead of raising."""

from __future__ import annotations

from messaging.models import Message
from messaging.services import message_send


class SmsUnavailable(Exception):
    """The message could not even be queued (a refused number, no usable account): the page fails, and the
    call leg races on."""


def sms_send(*, tenant_id: int, to: str, text: str, purpose: str, ref: str) -> Message:
    """Queue an SMS in the caller's transaction (the provider send runs after the commit); returns the
    messaging app's Message row."""
    try:
        return message_send(tenant_id=tenant_id, to=to, text=text, purpose=purpose, ref=ref, sender="")
    except (ValueError, LookupError) as exc:  # InvalidInput is a ValueError; an unknown tenant/account
        raise SmsUnavailable(str(exc)) from exc
