"""Handlers the tests name in MESSAGING_REPLY_HANDLERS / MESSAGING_STATUS_HANDLERS (by dotted path)."""

from __future__ import annotations

from messaging.models import Message

REPLIES: list[tuple[int, str]] = []
STATUSES: list[tuple[int, str]] = []


def consume_digits(*, message: Message) -> bool:
    """Consumes replies that are digits (as the flows' page handler takes "1")."""
    REPLIES.append((message.pk, message.body))
    return message.body.strip().isdigit()


def record_status(*, message: Message) -> None:
    STATUSES.append((message.pk, message.status))
