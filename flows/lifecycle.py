"""The incident's and the page's life cycles, as data (like campaigns/lifecycle.py): their statuses, the
inputs that move them, and the one table of legal moves each. A pair not in a table is refused (the caller
logs it and changes nothing): events arrive twice (a webhook retried, a DTMF replayed, a timer fired late).

Incident
--------
``open`` (escalating: steps fire, pages race) → ``acknowledged`` (someone took it explicitly: a key, an SMS
reply, the link, the API) → ``resolved``. When every round of the policy ran without an acknowledgement the
fallback runs and the incident is ``exhausted``; someone may still acknowledge it later (the manager got
the fallback text), and any state but ``resolved`` may be resolved. ``resolved`` is absorbing.

Page
----
One notification leg (a call or an SMS to one person for one step of one round). ``to_send`` (written in the
step's transaction; its side effect is enqueued on commit, and the sweep re-enqueues it if the worker died
after the commit) → ``sent`` (the call was placed / the message was accepted by messaging) → for a call
``answered`` → ``ended``; ``accepted`` / ``declined`` record the person's explicit answer. ``cancelled``:
stopped before it could matter (another person acknowledged, the incident was resolved). ``failed``: the
call could not be placed or the SMS was refused by the provider (the other channel races on).

This module imports nothing from Django so it can be tested on its own.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType


class IncidentStatus(StrEnum):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    EXHAUSTED = "exhausted"
    RESOLVED = "resolved"


class IncidentInput(StrEnum):
    ACKNOWLEDGE = "acknowledge"
    EXHAUST = "exhaust"
    RESOLVE = "resolve"


INCIDENT_TRANSITIONS: Mapping[tuple[IncidentStatus, IncidentInput], IncidentStatus] = MappingProxyType(
    {
        (IncidentStatus.OPEN, IncidentInput.ACKNOWLEDGE): IncidentStatus.ACKNOWLEDGED,
        (IncidentStatus.OPEN, IncidentInput.EXHAUST): IncidentStatus.EXHAUSTED,
        (IncidentStatus.OPEN, IncidentInput.RESOLVE): IncidentStatus.RESOLVED,
        (IncidentStatus.EXHAUSTED, IncidentInput.ACKNOWLEDGE): IncidentStatus.ACKNOWLEDGED,
        (IncidentStatus.EXHAUSTED, IncidentInput.RESOLVE): IncidentStatus.RESOLVED,
        (IncidentStatus.ACKNOWLEDGED, IncidentInput.RESOLVE): IncidentStatus.RESOLVED,
    }
)

#: Statuses in which the escalation still runs (steps fire).
ESCALATING: frozenset[IncidentStatus] = frozenset({IncidentStatus.OPEN})
#: Statuses that can still be acknowledged.
ACKNOWLEDGEABLE: frozenset[IncidentStatus] = frozenset({IncidentStatus.OPEN, IncidentStatus.EXHAUSTED})


class PageStatus(StrEnum):
    TO_SEND = "to_send"
    SENT = "sent"
    ANSWERED = "answered"  # calls only: answered (by a person or a voicemail: not an acknowledgement)
    ACCEPTED = "accepted"
    DECLINED = "declined"
    ENDED = "ended"  # the call ended, or the SMS was delivered/left alone, without an answer
    CANCELLED = "cancelled"
    FAILED = "failed"


class PageInput(StrEnum):
    SENT = "sent"
    ANSWERED = "answered"
    ACCEPTED = "accepted"
    DECLINED = "declined"
    ENDED = "ended"
    CANCELLED = "cancelled"
    FAILED = "failed"


#: Pages whose leg may still act (ring, be answered, get a reply): the ones an acknowledgement stops.
PAGE_PENDING: frozenset[PageStatus] = frozenset({PageStatus.TO_SEND, PageStatus.SENT, PageStatus.ANSWERED})
#: Call pages whose channel may exist on the PBX (count against the tenant's cap; listed as live calls).
PAGE_CALL_LIVE: frozenset[PageStatus] = frozenset(
    {PageStatus.TO_SEND, PageStatus.SENT, PageStatus.ANSWERED, PageStatus.ACCEPTED}
)

PAGE_TRANSITIONS: Mapping[tuple[PageStatus, PageInput], PageStatus] = MappingProxyType(
    {
        (PageStatus.TO_SEND, PageInput.SENT): PageStatus.SENT,
        (PageStatus.TO_SEND, PageInput.CANCELLED): PageStatus.CANCELLED,
        (PageStatus.TO_SEND, PageInput.FAILED): PageStatus.FAILED,
        # Call events may beat the originate's answer (as for attempts).
        (PageStatus.TO_SEND, PageInput.ANSWERED): PageStatus.ANSWERED,
        (PageStatus.TO_SEND, PageInput.ENDED): PageStatus.ENDED,
        (PageStatus.TO_SEND, PageInput.ACCEPTED): PageStatus.ACCEPTED,
        (PageStatus.TO_SEND, PageInput.DECLINED): PageStatus.DECLINED,
        (PageStatus.SENT, PageInput.ANSWERED): PageStatus.ANSWERED,
        # An SMS reply answers a sent page directly.
        (PageStatus.SENT, PageInput.ACCEPTED): PageStatus.ACCEPTED,
        (PageStatus.SENT, PageInput.DECLINED): PageStatus.DECLINED,
        (PageStatus.SENT, PageInput.ENDED): PageStatus.ENDED,
        (PageStatus.SENT, PageInput.CANCELLED): PageStatus.CANCELLED,
        (PageStatus.SENT, PageInput.FAILED): PageStatus.FAILED,
        (PageStatus.ANSWERED, PageInput.ACCEPTED): PageStatus.ACCEPTED,
        (PageStatus.ANSWERED, PageInput.DECLINED): PageStatus.DECLINED,
        (PageStatus.ANSWERED, PageInput.ENDED): PageStatus.ENDED,
        (PageStatus.ANSWERED, PageInput.CANCELLED): PageStatus.CANCELLED,
        # An SMS that answered (a reply) may still get its delivery receipt late: nothing to change.
        # A failed SMS may still be replied to? No: the provider refused it, nobody received it.
        # An ended call page may still get a late reply through the *other* page (the SMS), never itself.
    }
)


@dataclass(frozen=True, slots=True)
class Move:
    """What a transition lookup answered: ``to`` when legal, else ``None`` and the reason."""

    to: str | None
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.to is not None


def incident_transition(status: str, event: IncidentInput) -> Move:
    try:
        current = IncidentStatus(status)
    except ValueError:
        return Move(None, "unknown_status")
    target = INCIDENT_TRANSITIONS.get((current, event))
    if target is None:
        return Move(None, "terminal" if current == IncidentStatus.RESOLVED else "illegal")
    return Move(target.value)


def page_transition(status: str, event: PageInput) -> Move:
    try:
        current = PageStatus(status)
    except ValueError:
        return Move(None, "unknown_status")
    target = PAGE_TRANSITIONS.get((current, event))
    if target is None:
        return Move(None, "illegal")
    return Move(target.value)


def page_sources(event: PageInput) -> list[str]:
    """The statuses ``event`` is legal from: a bulk move is one ``UPDATE … WHERE status IN (sources)``."""
    return sorted(status.value for (status, ev) in PAGE_TRANSITIONS if ev == event)


def incident_sources(event: IncidentInput) -> list[str]:
    return sorted(status.value for (status, ev) in INCIDENT_TRANSITIONS if ev == event)
