"""A message's status, as data: the normalised statuses, what moves them, and the one function that decides.

Every status change of an outbound :class:`messaging.models.Message` goes through :func:`transition`.

* **Statuses only move forward.** ``queued`` (our row, not handed to the provider yet) < ``sending`` (the
  provider accepted it and queued it) < ``sent`` (handed to the carrier) < a final status. Provider status
  callbacks arrive late, twice, or out of order (Twilio posts ``sent`` and ``delivered`` from different
  machines): an input whose target is not ahead of the current status is ``"stale"`` and changes nothing,
  so a late ``sent`` never moves a ``delivered`` message back.
* **Final statuses are absorbing**: ``delivered``, ``undelivered``, ``failed``, ``blocked`` (our opt-out
  list said no; never handed to a provider), ``opted_out`` (the provider refused: the recipient opted out
  with it, e.g. Twilio 21610). Anything after them is ``"terminal"``.
* ``blocked`` can only happen before the provider has the message (the check right before sending).
* Inbound messages are ``received`` from the start and never change.

Provider statuses are mapped to inputs by the providers (:data:`TWILIO_STATUSES`, :data:`TELNYX_STATUSES`).
This module imports nothing from Django so it can be property-tested on its own.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType


class MessageStatus(StrEnum):
    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    DELIVERED = "delivered"
    UNDELIVERED = "undelivered"
    FAILED = "failed"
    BLOCKED = "blocked"
    OPTED_OUT = "opted_out"
    RECEIVED = "received"


class MessageInput(StrEnum):
    ACCEPTED = "accepted"  # the provider took it (its status queued/accepted/sending)
    SENT = "sent"  # handed to the carrier
    DELIVERED = "delivered"
    UNDELIVERED = "undelivered"  # the carrier could not deliver it
    FAILED = "failed"  # the provider refused it, or every try failed
    BLOCKED = "blocked"  # on the tenant's opt-out list
    OPTED_OUT = "opted_out"  # the provider refused: the recipient opted out with it


FINAL_STATUSES: frozenset[MessageStatus] = frozenset(
    {
        MessageStatus.DELIVERED,
        MessageStatus.UNDELIVERED,
        MessageStatus.FAILED,
        MessageStatus.BLOCKED,
        MessageStatus.OPTED_OUT,
        MessageStatus.RECEIVED,
    }
)
LIVE_STATUSES: frozenset[MessageStatus] = frozenset(
    {MessageStatus.QUEUED, MessageStatus.SENDING, MessageStatus.SENT}
)

_TARGET: Mapping[MessageInput, MessageStatus] = MappingProxyType(
    {
        MessageInput.ACCEPTED: MessageStatus.SENDING,
        MessageInput.SENT: MessageStatus.SENT,
        MessageInput.DELIVERED: MessageStatus.DELIVERED,
        MessageInput.UNDELIVERED: MessageStatus.UNDELIVERED,
        MessageInput.FAILED: MessageStatus.FAILED,
        MessageInput.BLOCKED: MessageStatus.BLOCKED,
        MessageInput.OPTED_OUT: MessageStatus.OPTED_OUT,
    }
)

# The whole table: (status, input) -> new status. A pair not listed is stale (already passed), terminal
# (the message is final) or illegal (see transition()).
TRANSITIONS: Mapping[tuple[MessageStatus, MessageInput], MessageStatus] = MappingProxyType(
    {
        **{(MessageStatus.QUEUED, event): target for event, target in _TARGET.items()},
        **{
            (MessageStatus.SENDING, event): target
            for event, target in _TARGET.items()
            if event not in (MessageInput.ACCEPTED, MessageInput.BLOCKED)
        },
        **{
            (MessageStatus.SENT, event): target
            for event, target in _TARGET.items()
            if event not in (MessageInput.ACCEPTED, MessageInput.SENT, MessageInput.BLOCKED)
        },
    }
)


@dataclass(frozen=True, slots=True)
class Transition:
    ok: bool
    status: MessageStatus  # the new status (the current one when not ok)
    reason: str = ""  # "stale", "terminal" or "illegal" when not ok


def transition(current: MessageStatus | str, event: MessageInput | str) -> Transition:
    """Where ``event`` takes a message in status ``current`` (see the module docstring)."""
    status = MessageStatus(current)
    event = MessageInput(event)
    target = TRANSITIONS.get((status, event))
    if target is not None:
        return Transition(True, target)
    if status in FINAL_STATUSES:
        return Transition(False, status, "terminal")
    if event is MessageInput.BLOCKED:
        return Transition(False, status, "illegal")  # the provider has it already: too late to block
    return Transition(False, status, "stale")


#: Twilio's message statuses (MessageStatus of a callback, ``status`` of the REST resource) as inputs.
TWILIO_STATUSES: Mapping[str, MessageInput] = MappingProxyType(
    {
        "accepted": MessageInput.ACCEPTED,
        "scheduled": MessageInput.ACCEPTED,
        "queued": MessageInput.ACCEPTED,
        "sending": MessageInput.ACCEPTED,
        "sent": MessageInput.SENT,
        "delivered": MessageInput.DELIVERED,
        "read": MessageInput.DELIVERED,
        "partially_delivered": MessageInput.UNDELIVERED,
        "undelivered": MessageInput.UNDELIVERED,
        "failed": MessageInput.FAILED,
        "canceled": MessageInput.FAILED,
    }
)

#: Telnyx's per-recipient statuses (``payload.to[].status``) as inputs.
TELNYX_STATUSES: Mapping[str, MessageInput] = MappingProxyType(
    {
        "queued": MessageInput.ACCEPTED,
        "sending": MessageInput.ACCEPTED,
        "sent": MessageInput.SENT,
        "delivery_unconfirmed": MessageInput.SENT,
        "delivered": MessageInput.DELIVERED,
        "delivery_failed": MessageInput.UNDELIVERED,
        "expired": MessageInput.UNDELIVERED,
        "sending_failed": MessageInput.FAILED,
    }
)
