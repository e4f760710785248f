"""How an originated call ended, from its ARI events (PROTOCOLS.md A3, §2.2, §2.4, pitfalls 11 and 13).

**Neither field alone classifies a call.** What a real Asterisk 22.10.1 reported for the originated
channel (the ``;1`` half of a Local channel):

============================  ===============================================================
callee did                    events seen for the originated channel
============================  ===============================================================
answered                      ``Dial ANSWER``, ``ChannelStateChange Up``, ``StasisStart``
busy                          ``Dial BUSY``, ``ChannelDestroyed cause=0`` (only ``;2`` has 17)
congestion                    ``Dial CONGESTION``, ``ChannelDestroyed cause=0`` (``;2``: 34)
rejected (cause 21)           ``ChannelHangupRequest 21``, ``ChannelDestroyed 21``, ``Dial NOANSWER``
rang past the timeout         ``Dial RINGING``, ``ChannelDestroyed cause=19`` (no NOANSWER Dial)
============================  ===============================================================

So busy/congestion on a Local channel only show in ``Dial.dialstatus`` (the cause is 0), while a rejection
shows ``NOANSWER`` in ``Dial`` and only the cause says 21. The rule (A3): **answered if StasisStart was
seen; else the hangup cause when it is non-zero; else the last non-empty ``dialstatus``; else failed.**
A PJSIP trunk channel carries the cause itself (and from 22.7.0 ``tech_cause`` = the SIP status).

Decisions beyond the reference, each a judgement call:

* **Cause 16 (normal clearing) or 31 (normal, unspecified) before answer** says nothing about *why* the
  call was not answered: a Local ``;2`` whose dialplan hung up without answering, a far end that gave up,
  or our own ``DELETE`` while it rang (the default DELETE cause is 16). These "weak" causes defer to a
  specific ``dialstatus`` (BUSY, CONGESTION, CHANUNAVAIL, CANCEL…) or a telling SIP status when there is
  one; otherwise the call is **no_answer**: the phone was reached and nobody picked up, which is what a
  user reading the report expects and what is safe to retry (``failed`` would suggest our fault).
* **Dial RINGING as the last status** (no cause) is no_answer: before 22.8.0 an originate timeout
  reported cause 0 and no NOANSWER Dial event (asterisk/asterisk#1660).
* **tech_cause is a tiebreak only**: when the cause is 0 or weak, a SIP status that names the reason
  (404/484/485/604 → invalid_number, 486/600 → busy, 603 → rejected, 408/480 → no_answer,
  503 → congestion) wins over the dialstatus, which is coarser (a 603 arrives as ``NOANSWER``). One case
  where it overrides a cause: cause 21 with SIP 401/407 is our trunk failing authentication, not the
  callee refusing, so it is **failed** (retryable) rather than rejected (never retried); otherwise a
  misconfigured trunk would silently finish every lead of a campaign.
* ``ChannelHangupRequest`` with ``soft: true`` carries a soft-hangup *flag* (32 for ``DELETE``), not a
  Q.850 code (pitfall 13), so its cause is ignored. A hard ``ChannelHangupRequest`` cause is used only
  when ``ChannelDestroyed`` has none.

:class:`CallOutcome` values equal the matching campaign attempt outcome values, so the campaign side can
map by value; this module imports nothing from ``campaigns`` (DESIGN.md §3).
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from types import MappingProxyType
from typing import Any


class CallOutcome(StrEnum):
    ANSWERED = "answered"
    BUSY = "busy"
    NO_ANSWER = "no_answer"
    REJECTED = "rejected"
    CONGESTION = "congestion"
    UNREACHABLE = "unreachable"
    INVALID_NUMBER = "invalid_number"
    FAILED = "failed"
    CANCELLED = "cancelled"
    # Answered, but the call's media (the AudioSocket leg to the agent) never came up: the callee heard
    # silence and was hung up on. Not a success; retried by the campaign's rules.
    MEDIA_FAILED = "media_failed"
    # The end was not seen (the app was not listening) and nothing seen before says how it ended. The
    # orchestrator refines it from what it recorded itself (campaigns.lifecycle.unseen_end_outcome).
    UNKNOWN = "unknown"


# Q.850 causes (PROTOCOLS.md §2.4) that say what happened on their own.
CAUSE_OUTCOMES: Mapping[int, CallOutcome] = MappingProxyType(
    {
        1: CallOutcome.INVALID_NUMBER,  # unallocated number (SIP 404, 485, 604)
        3: CallOutcome.UNREACHABLE,  # no route to destination (SIP 420)
        17: CallOutcome.BUSY,  # user busy (SIP 486, 600)
        18: CallOutcome.NO_ANSWER,  # no user responding (SIP 408)
        19: CallOutcome.NO_ANSWER,  # user alerting, no answer (SIP 480, 483; originate timeout)
        20: CallOutcome.UNREACHABLE,  # subscriber absent (unregistered endpoint)
        21: CallOutcome.REJECTED,  # call rejected (SIP 401, 403, 407, 603)
        22: CallOutcome.INVALID_NUMBER,  # number changed
        27: CallOutcome.UNREACHABLE,  # destination out of order (SIP 502)
        28: CallOutcome.INVALID_NUMBER,  # invalid number format (SIP 484)
        34: CallOutcome.CONGESTION,  # circuit/channel congestion (SIP 503, other 5xx)
        38: CallOutcome.CONGESTION,  # network out of order (SIP 500)
        41: CallOutcome.CONGESTION,  # temporary failure
        42: CallOutcome.CONGESTION,  # switching equipment congestion
    }
)

# Causes that end a call normally; before answer they do not explain the missing answer.
WEAK_CAUSES: frozenset[int] = frozenset({16, 31})

# Final Dial statuses (app_dial / main/dial.c names).
DIALSTATUS_OUTCOMES: Mapping[str, CallOutcome] = MappingProxyType(
    {
        "ANSWER": CallOutcome.ANSWERED,
        "BUSY": CallOutcome.BUSY,
        "CONGESTION": CallOutcome.CONGESTION,
        "NOANSWER": CallOutcome.NO_ANSWER,
        "CHANUNAVAIL": CallOutcome.UNREACHABLE,
        "CANCEL": CallOutcome.CANCELLED,
        # The last status before a pre-22.8 originate timeout, which reported cause 0 (pitfall 11).
        "RINGING": CallOutcome.NO_ANSWER,
    }
)
# Progress statuses: they never replace a final status already seen (events may be reordered).
PROGRESS_DIALSTATUSES: frozenset[str] = frozenset({"RINGING", "PROGRESS", "PROCEEDING"})

# SIP final responses that name the reason better than a zero/weak cause or a coarse dialstatus.
SIP_STATUS_OUTCOMES: Mapping[int, CallOutcome] = MappingProxyType(
    {
        404: CallOutcome.INVALID_NUMBER,
        484: CallOutcome.INVALID_NUMBER,
        485: CallOutcome.INVALID_NUMBER,
        604: CallOutcome.INVALID_NUMBER,
        486: CallOutcome.BUSY,
        600: CallOutcome.BUSY,
        603: CallOutcome.REJECTED,
        408: CallOutcome.NO_ANSWER,
        480: CallOutcome.NO_ANSWER,
        503: CallOutcome.CONGESTION,
    }
)
# Cause 21 with these SIP statuses is our own trunk's authentication failing, not the callee refusing.
SIP_AUTH_FAILURES: frozenset[int] = frozenset({401, 407})


def classify(
    *, answered: bool, cause: int | None, dialstatus: str, tech_cause: int | None = None
) -> CallOutcome:
    """The outcome of one originated call (PROTOCOLS.md A3; see the module docstring for the choices)."""
    if answered:
        return CallOutcome.ANSWERED
    cause = cause or 0
    status = (dialstatus or "").strip().upper()
    if cause == 21 and tech_cause in SIP_AUTH_FAILURES:
        return CallOutcome.FAILED
    if cause and cause not in WEAK_CAUSES:
        return CAUSE_OUTCOMES.get(cause, CallOutcome.FAILED)
    # The cause is 0 (a Local channel's busy/congestion, a pre-22.8 timeout) or a normal clearing.
    if tech_cause is not None and tech_cause in SIP_STATUS_OUTCOMES:
        return SIP_STATUS_OUTCOMES[tech_cause]
    if status in DIALSTATUS_OUTCOMES:
        return DIALSTATUS_OUTCOMES[status]
    if cause in WEAK_CAUSES:
        return CallOutcome.NO_ANSWER
    return CallOutcome.FAILED


def _int_or_none(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    return None


def _channel_id(event: Mapping[str, Any], key: str) -> str | None:
    obj = event.get(key)
    if isinstance(obj, Mapping):
        value = obj.get("id")
        return value if isinstance(value, str) else None
    return None


class CallEndTracker:
    """Accumulates what the ARI events of ONE channel say about how its call ended.

    Feed it every event for the channel (in arrival order; duplicates are harmless) and read
    :meth:`outcome`. With ``channel_id`` set, events about other channels (a Local ``;2`` half, the media
    leg) are ignored: an event is about the channel when its ``channel.id`` equals it, or, for ``Dial``
    (which names the dialed channel as ``peer``), its ``peer.id``.

    ``ended`` becomes true on ``ChannelDestroyed``, and also on ``StasisEnd`` when ``ends_on_stasis_end``
    (a call that entered Stasis from the dialplan: the app never sees its ``ChannelDestroyed``, A4). After
    ``ChannelDestroyed`` the record is frozen: a replayed earlier event cannot change the result.
    """

    def __init__(self, channel_id: str | None = None, *, ends_on_stasis_end: bool = False) -> None:
        self.channel_id = channel_id
        self.ends_on_stasis_end = ends_on_stasis_end
        self.answered = False  # StasisStart seen
        self.dialstatus = ""  # last non-empty Dial.dialstatus (a final one is never replaced by progress)
        self.hangup_request_cause: int | None = None  # last hard (not soft) ChannelHangupRequest
        self.hangup_request_tech_cause: int | None = None
        self.destroyed = False
        self.destroyed_cause: int | None = None
        self.destroyed_cause_txt = ""
        self.destroyed_tech_cause: int | None = None
        self.left_stasis = False  # StasisEnd seen
        self.ended = False

    def _concerns_me(self, event: Mapping[str, Any]) -> bool:
        if self.channel_id is None:
            return True
        if _channel_id(event, "channel") == self.channel_id:
            return True
        return event.get("type") == "Dial" and _channel_id(event, "peer") == self.channel_id

    def feed(self, event: Mapping[str, Any]) -> None:
        if self.destroyed or not self._concerns_me(event):
            return
        kind = event.get("type")
        if kind == "StasisStart":
            self.answered = True
        elif kind == "StasisEnd":
            self.left_stasis = True
            if self.ends_on_stasis_end:
                self.ended = True
        elif kind == "Dial":
            raw = event.get("dialstatus")
            status = raw.strip().upper() if isinstance(raw, str) else ""
            have_final = bool(self.dialstatus) and self.dialstatus not in PROGRESS_DIALSTATUSES
            if status and not (status in PROGRESS_DIALSTATUSES and have_final):
                self.dialstatus = status
        elif kind == "ChannelHangupRequest":
            if not event.get("soft"):  # a soft hangup's cause is a flag (32 = DELETE), not Q.850
                self.hangup_request_cause = _int_or_none(event.get("cause"))
                tech = _int_or_none(event.get("tech_cause"))
                if tech is not None:
                    self.hangup_request_tech_cause = tech
        elif kind == "ChannelDestroyed":
            self.destroyed = True
            self.ended = True
            self.destroyed_cause = _int_or_none(event.get("cause"))
            cause_txt = event.get("cause_txt")
            self.destroyed_cause_txt = cause_txt if isinstance(cause_txt, str) else ""
            self.destroyed_tech_cause = _int_or_none(event.get("tech_cause"))

    @property
    def cause(self) -> int | None:
        """ChannelDestroyed's cause when non-zero (authoritative, §2.2), else a hard hangup request's."""
        if self.destroyed_cause:
            return self.destroyed_cause
        if self.hangup_request_cause:
            return self.hangup_request_cause
        return self.destroyed_cause

    @property
    def tech_cause(self) -> int | None:
        """The technology's own code (for PJSIP the SIP status, 22.7.0+), to store with the attempt."""
        if self.destroyed_tech_cause is not None:
            return self.destroyed_tech_cause
        return self.hangup_request_tech_cause

    @property
    def decisive(self) -> bool:
        """Whether what was seen says how the call went without its end: answered, destroyed, a final Dial
        status (BUSY, NOANSWER...) or a hard hangup cause. Progress (RINGING) alone is not."""
        return (
            self.answered
            or self.destroyed
            or (bool(self.dialstatus) and self.dialstatus not in PROGRESS_DIALSTATUSES)
            or bool(self.hangup_request_cause)
        )

    def outcome(self) -> CallOutcome:
        """The classification of what was seen so far (meaningful once ``ended``)."""
        return classify(
            answered=self.answered, cause=self.cause, dialstatus=self.dialstatus, tech_cause=self.tech_cause
        )
