"""The lead's life cycle, as data: its statuses, the inputs that move them, and the one table of legal moves.

A lead is always in exactly one of *waiting* (with a due time), *in an attempt*, *done* or *suppressed*
(DESIGN.md §5 rule 3). Every change of ``Lead.status`` goes through :func:`transition` (one lead in memory:
``campaigns.services.leads.lead_move``; many rows in one UPDATE: ``leads_move``, which filters on the input's
legal from-statuses, :func:`sources`). A refused move changes nothing and is logged by the caller (h11
``_state.py`` style, as :mod:`campaigns.lifecycle` does for attempts).

* A lead is born ``waiting`` (added to a campaign, due now).
* ``waiting → in_attempt`` when a dispatch pass claims it into a new attempt; ``in_attempt`` is left only
  when that attempt ends (the retry policy: ``waiting`` again or ``done``), or when the number turns out to
  be on the DNC list right before dialing, or when the callee opts out during the call.
* A ``done`` lead may be decided again after the fact: a callback the agent asked for arrived after the
  call's end, or an answered call turns out to be none (its agent never spoke) — due again, or done for
  another reason.
* ``suppressed`` is absorbing: its number may never be dialed.

Every input has exactly one target status, so a bulk move is one ``UPDATE … WHERE status IN (sources)``.

This module imports nothing from Django so it can be property-tested on its own.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType


class LeadStatus(StrEnum):
    """The values of ``campaigns.models.Lead.Status``."""

    WAITING = "waiting"  # due at next_due_at
    IN_ATTEMPT = "in_attempt"  # exactly one live CallAttempt
    DONE = "done"  # see done_reason
    SUPPRESSED = "suppressed"  # never dialable (DNC)


#: The status a new lead has.
INITIAL_STATUS = LeadStatus.WAITING


class LeadInput(StrEnum):
    """What can happen to a lead: the inputs of :data:`TRANSITIONS`."""

    CLAIMED = "claimed"  # a dispatch pass claimed it into a new attempt
    ON_DNC = "on_dnc"  # its number is on the tenant's DNC list (found at claim, or by the re-check)
    DEFERRED = "deferred"  # due later without being dialed (outside its calling window at claim time)
    ATTEMPT_RETRY = "attempt_retry"  # its attempt ended and the retry policy says: due again
    ATTEMPT_DONE = "attempt_done"  # its attempt ended and the retry policy says: done
    # Its last attempt's end decided again after the fact (a late callback; an answered call whose agent
    # never spoke): due again, or done for another reason.
    REDECIDED_RETRY = "redecided_retry"
    REDECIDED_DONE = "redecided_done"
    OPTED_OUT = "opted_out"  # the callee asked not to be called again (during or after a call)


# The whole table: (status, input) -> new status. Any pair not listed is refused.
TRANSITIONS: Mapping[tuple[LeadStatus, LeadInput], LeadStatus] = MappingProxyType(
    {
        # waiting: due at next_due_at
        (LeadStatus.WAITING, LeadInput.CLAIMED): LeadStatus.IN_ATTEMPT,
        (LeadStatus.WAITING, LeadInput.ON_DNC): LeadStatus.SUPPRESSED,
        (LeadStatus.WAITING, LeadInput.DEFERRED): LeadStatus.WAITING,
        # A late callback moves the due time of a lead that waits for its retry.
        (LeadStatus.WAITING, LeadInput.REDECIDED_RETRY): LeadStatus.WAITING,
        # A late report re-classifies the end that made it wait (a machine took the call and the message
        # was left after all): done.
        (LeadStatus.WAITING, LeadInput.REDECIDED_DONE): LeadStatus.DONE,
        # The agent's "stop calling me" reported after the call's end, when the lead already waits again.
        (LeadStatus.WAITING, LeadInput.OPTED_OUT): LeadStatus.DONE,
        # in_attempt: its one live attempt decides
        (LeadStatus.IN_ATTEMPT, LeadInput.ON_DNC): LeadStatus.SUPPRESSED,
        (LeadStatus.IN_ATTEMPT, LeadInput.ATTEMPT_RETRY): LeadStatus.WAITING,
        (LeadStatus.IN_ATTEMPT, LeadInput.ATTEMPT_DONE): LeadStatus.DONE,
        (LeadStatus.IN_ATTEMPT, LeadInput.OPTED_OUT): LeadStatus.DONE,
        # done: only decided again after the fact, or opted out
        (LeadStatus.DONE, LeadInput.REDECIDED_RETRY): LeadStatus.WAITING,
        (LeadStatus.DONE, LeadInput.REDECIDED_DONE): LeadStatus.DONE,
        (LeadStatus.DONE, LeadInput.OPTED_OUT): LeadStatus.DONE,
        # suppressed: absorbing
    }
)

REASON_APPLIED = "applied"
REASON_ILLEGAL = "illegal"
REASON_TERMINAL = "terminal"


@dataclass(frozen=True)
class LeadTransition:
    """The result of offering ``lead_input`` to a lead in status ``old``: ``applied`` (reason
    ``"applied"``), or refused with ``new == old`` and reason ``"terminal"`` (the lead is suppressed) or
    ``"illegal"``."""

    old: LeadStatus
    lead_input: LeadInput
    new: LeadStatus
    applied: bool
    reason: str


def transition(status: LeadStatus, lead_input: LeadInput) -> LeadTransition:
    """Looks ``(status, input)`` up in :data:`TRANSITIONS`. Never raises for a well-typed input."""
    new = TRANSITIONS.get((status, lead_input))
    if new is not None:
        return LeadTransition(old=status, lead_input=lead_input, new=new, applied=True, reason=REASON_APPLIED)
    reason = REASON_TERMINAL if status is LeadStatus.SUPPRESSED else REASON_ILLEGAL
    return LeadTransition(old=status, lead_input=lead_input, new=status, applied=False, reason=reason)


def target(lead_input: LeadInput) -> LeadStatus:
    """The one status ``lead_input`` leads to (from every status it is legal in)."""
    return _TARGET[lead_input]


def sources(lead_input: LeadInput) -> frozenset[LeadStatus]:
    """The statuses in which ``lead_input`` is legal (the ``WHERE status IN …`` of a bulk move)."""
    return _SOURCES[lead_input]


def _targets() -> dict[LeadInput, LeadStatus]:
    targets: dict[LeadInput, LeadStatus] = {}
    for (_, lead_input), new in TRANSITIONS.items():
        if targets.setdefault(lead_input, new) is not new:
            raise AssertionError(f"lead input {lead_input} has two target statuses")
    return targets


_TARGET: Mapping[LeadInput, LeadStatus] = MappingProxyType(_targets())
_SOURCES: Mapping[LeadInput, frozenset[LeadStatus]] = MappingProxyType(
    {
        lead_input: frozenset(old for (old, other), _ in TRANSITIONS.items() if other is lead_input)
        for lead_input in LeadInput
    }
)
