"""Sending an SMS, through a pluggable backend (``settings.SMS_BACKEND``, a dotted path to a class).

The AI agent's ``send_sms`` tool reaches here through the ``media.send_sms`` task
(``campaigns.services.agent_actions.attempt_send_sms``, which records the message on the attempt). Until SMS
has providers of its own, the default :class:`ConsoleSmsBackend` only logs the message, which is enough for
the demo and the tests. A real backend implements :class:`SmsBackend`: ``send`` returns the provider's
message id, or raises :class:`SmsError` (``retryable`` says whether the same message may be tried again).
Every backend call must be bounded in time (DESIGN.md §4).
"""

from __future__ import annotations

import functools
import logging
import uuid
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

logger = logging.getLogger(__name__)

__all__ = ["ConsoleSmsBackend", "SmsBackend", "SmsError", "SmsMessage", "SmsSent", "get_backend", "sms_send"]

#: Longest text sent (ten concatenated GSM-7 segments).
MAX_SMS_LENGTH = 1600


@dataclass(frozen=True, slots=True)
class SmsMessage:
    tenant_id: int
    to: str  # E.164
    text: str
    sender: str = ""  # E.164 (the campaign's caller id), when the backend can use one
    attempt_id: str = ""  # the call the message was sent from, if any


@dataclass(frozen=True, slots=True)
class SmsSent:
    backend: str  # the backend's dotted path
    message_id: str


class SmsError(Exception):
    """The message was not sent. ``retryable``: the same message may succeed later (provider down)."""

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable


@runtime_checkable
class SmsBackend(Protocol):
    def send(self, message: SmsMessage) -> str:
        """Send the message; the provider's message id. Raises :class:`SmsError`."""
        ...


class ConsoleSmsBackend:
    """Sends nothing: logs the message (the attempt's log records it too, see the module docstring)."""

    def send(self, message: SmsMessage) -> str:
        message_id = f"console-{uuid.uuid4().hex}"
        logger.info(
            "SMS (console backend, not sent) %s to %s from %s (tenant %s, attempt %s): %s",
            message_id,
            message.to,
            message.sender or "-",
            message.tenant_id,
            message.attempt_id or "-",
            message.text,
        )
        return message_id


@functools.cache
def _backend_for(path: str) -> SmsBackend:
    try:
        backend_class = import_string(path)
    except ImportError as exc:
        raise ImproperlyConfigured(f"SMS_BACKEND {path!r} cannot be imported: {exc}") from exc
    backend = backend_class()
    if not isinstance(backend, SmsBackend):
        raise ImproperlyConfigured(f"SMS_BACKEND {path!r} has no send(message) method")
    return backend


def get_backend() -> SmsBackend:
    """This process's instance of ``settings.SMS_BACKEND`` (one per configured path)."""
    return _backend_for(settings.SMS_BACKEND)


def sms_send(message: SmsMessage) -> SmsSent:
    """Send through the configured backend; raises :class:`SmsError` when it was not sent."""
    if not message.text.strip():
        raise SmsError("empty message")
    if len(message.text) > MAX_SMS_LENGTH:
        raise SmsError(f"longer than {MAX_SMS_LENGTH} characters")
    message_id = get_backend().send(message)
    return SmsSent(backend=settings.SMS_BACKEND, message_id=message_id)
