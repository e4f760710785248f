"""What the fault suite checks, as pure functions of two records: the PBX simulator's record of every call
(``GET /sim/calls``) and the product's attempts (and leads), joined by channel id = attempt id.

The simulator is the witness: it knows what each callee did (answered or not, heard the agent or not, was
busy, never picked up) whatever the product saw or missed. An attempt's outcome is judged against that:

=====================================  ======================================================================
what the simulator recorded            outcomes that are true to it
=====================================  ======================================================================
answered, the callee heard the agent   ``answered`` (a conversation; even when its end was not seen)
answered, heard at most an apology     ``answered`` or ``media_failed`` (the media worker's own apology,
                                       when no agent can talk, cannot be told from the agent by ear:
                                       up to APOLOGY_MAX_MS heard is either; not a conversation)
answered, media up but nothing heard   ``answered`` or ``media_failed``
answered, no media leg ever served     ``media_failed`` (DESIGN.md §5.5: its own outcome)
answered into an absent Stasis app     ``app_unavailable`` (simulator: ``ended_by: stasis_failed``)
  either, answered and ended while     ``unknown`` too, if the product recorded no answer: nothing it can
  the Stasis app was gone              read afterwards tells (Asterisk forgets a channel once it is gone)
busy / no answer / rejected ...        that outcome; ``unknown`` too if the call ended in a fault window;
                                       ``app_unavailable`` too if it was placed while the Stasis app was
                                       gone (true: nobody listened; how it ended nobody saw)
not answered, hung up by the product   ``no_answer``; ``unknown`` too in a fault window
no call at all (never dialed)          a non-call outcome (cancelled, error, failed, unknown, ...)
=====================================  ======================================================================

``unknown``, ``app_unavailable`` and ``media_failed`` are the product's own failures DESIGN.md §5.5/§5.9
ask for: a call whose end nobody saw, placed while nobody listened, or answered without its agent.

Besides outcomes: every simulator call has an attempt and each attempt id was dialed at most once; a lead
whose callee had a conversation is not dialed again unless the agent scheduled a callback; nothing is live
after settling, nor ever past its hard maximum; no lead is left due and undialed; no call is placed while
the Stasis app or every media worker is known to be down (DESIGN.md §5.9: "outages", which start once the
product could have noticed).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

LIVE_STATES = frozenset({"queued", "dialing", "ringing", "answered", "bridged"})
# Outcomes that claim a call reached the callee's phone and got an answer from it (or its network).
CALL_OUTCOMES = frozenset(
    {"answered", "busy", "no_answer", "rejected", "congestion", "unreachable", "invalid_number", "voicemail"}
)
# What an attempt that never reached the PBX may say about itself.
NOT_DIALED_OUTCOMES = frozenset({"cancelled", "error", "failed", "unknown", "app_unavailable"})
# The outcome of a call that did not answer, from the cause the simulator ended it with (Q.850).
CAUSE_OUTCOMES: Mapping[int, str] = {
    1: "invalid_number",
    3: "unreachable",
    17: "busy",
    19: "no_answer",
    21: "rejected",
    28: "invalid_number",
    34: "congestion",
}
# An attempt ended this long after its hard maximum was live past it (the end is written a moment later).
OVERDUE_GRACE = timedelta(seconds=10)
# A waiting lead due this long before the end of the run was left behind by dispatch.
STALL_GRACE = timedelta(seconds=15)


@dataclass(frozen=True)
class AttemptRow:
    id: str
    lead_id: int
    tenant_id: int
    number: str
    state: str
    outcome: str
    queued_at: datetime
    originate_sent_at: datetime | None
    answered_at: datetime | None
    ended_at: datetime | None
    callback_at: datetime | None
    error: str = ""

    @property
    def started_at(self) -> datetime:
        return self.originate_sent_at or self.queued_at


@dataclass(frozen=True)
class LeadRow:
    id: int
    number: str
    status: str
    next_due_at: datetime | None


@dataclass(frozen=True)
class FaultWindow:
    """From just before the fault's injection (events in flight when a process dies are lost with it) to a
    little after the component was back. ``witness_lost``: the fault took the product's only witness of
    answers and ends with it (the Stasis app), so an answer in the window may have left no trace at all."""

    name: str
    start: datetime
    end: datetime
    witness_lost: bool = False

    def contains(self, instant: datetime | None) -> bool:
        return instant is not None and self.start <= instant <= self.end


def parse_time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def heard_ms(call: Mapping[str, Any]) -> float:
    return float((call.get("heard") or {}).get("heard_ms") or 0)


def media_served(call: Mapping[str, Any]) -> bool:
    """A media worker took the call's AudioSocket leg: it sent audio (silence included) back on it."""
    return any((leg.get("frames_in") or 0) > 0 for leg in call.get("media") or [])


#: The longest the media worker's apology lasts (spoken by espeak-ng, or the special information tone): what
#: a callee hears when no agent can talk to it (no brief, no speech model). Heard audio up to this long may
#: be only that.
APOLOGY_MAX_MS = 3000.0


def had_conversation(call: Mapping[str, Any]) -> bool:
    return call.get("answered_at") is not None and heard_ms(call) > APOLOGY_MAX_MS


@dataclass(frozen=True)
class Expectation:
    """The outcomes true to a simulator call (or to its absence), and the evidence in words."""

    allowed: frozenset[str]
    evidence: str


def expected_outcomes(
    call: Mapping[str, Any] | None, windows: Sequence[FaultWindow], *, product_saw_answer: bool = True
) -> Expectation:
    """``product_saw_answer``: the attempt has an answer time (the product recorded the answer)."""
    if call is None:
        return Expectation(NOT_DIALED_OUTCOMES, "never dialed (no call on the PBX)")
    if call.get("state") not in (None, "ended"):
        return Expectation(
            frozenset(), f"still live on the PBX ({call.get('state')}): no outcome is true yet"
        )
    ended_by = call.get("ended_by")
    if call.get("answered_at") is not None:
        # Answered and ended while the Stasis app was gone: nothing the product can read afterwards says it
        # was answered (Asterisk keeps no record of a channel once it is gone), so "unknown" is a truth it
        # can tell too, as long as it had not recorded the answer.
        blind = [
            w.name
            for w in windows
            if w.witness_lost
            and w.contains(parse_time(call.get("answered_at")))
            and w.contains(parse_time(call.get("ended_at")))
        ]
        unseen = {"unknown"} if blind and not product_saw_answer else set()
        if ended_by == "stasis_failed":
            return Expectation(frozenset({"app_unavailable", *unseen}), "answered into an absent Stasis app")
        if heard_ms(call) > APOLOGY_MAX_MS:
            return Expectation(
                frozenset({"answered"}), f"answered, callee heard the agent {heard_ms(call):.0f} ms"
            )
        if heard_ms(call) > 0:
            return Expectation(
                frozenset({"answered", "media_failed"}),
                f"answered, callee heard {heard_ms(call):.0f} ms: the agent, or only the worker's apology",
            )
        if media_served(call):
            return Expectation(frozenset({"answered", "media_failed"}), "answered, media up, agent not heard")
        if unseen:
            return Expectation(
                frozenset({"media_failed", "unknown"}),
                f"answered and ended in fault window {blind[0]}, media never came up (ended by {ended_by})",
            )
        return Expectation(
            frozenset({"media_failed"}), f"answered, media never came up (ended by {ended_by})"
        )
    ended_at = parse_time(call.get("ended_at"))
    in_window = [w.name for w in windows if w.contains(ended_at)]
    extra = {"unknown"} if in_window else set()
    if any(w.witness_lost and w.contains(parse_time(call.get("created_at"))) for w in windows):
        extra.add("app_unavailable")
    window_note = f", ended in fault window {in_window[0]}" if in_window else ""
    if ended_by == "app":
        return Expectation(
            frozenset({"no_answer", *extra}), f"not answered, hung up by the product{window_note}"
        )
    cause = call.get("cause")
    if ended_by == "timeout":
        true = "no_answer"
    elif isinstance(cause, int) and cause in CAUSE_OUTCOMES:
        true = CAUSE_OUTCOMES[cause]
    else:
        return Expectation(frozenset(extra), f"not answered, cause {cause} ended by {ended_by}{window_note}")
    return Expectation(frozenset({true, *extra}), f"{true} (cause {cause}, ended by {ended_by}){window_note}")


@dataclass(frozen=True)
class Finding:
    attempt_id: str
    number: str
    what: str

    def __str__(self) -> str:
        return f"{self.attempt_id} {self.number}: {self.what}"


@dataclass
class Verdict:
    calls: int = 0
    conversations: int = 0  # calls whose callee heard the agent: what the redial rule protects
    duplicates: list[Finding] = field(default_factory=list)  # one attempt id dialed more than once
    unrecorded: list[Finding] = field(default_factory=list)  # a PBX call with no attempt
    wrong_outcomes: list[Finding] = field(default_factory=list)
    redialed_answered: list[Finding] = field(default_factory=list)
    stuck: list[Finding] = field(default_factory=list)  # live after settling
    overdue: list[Finding] = field(default_factory=list)  # live past the hard maximum
    stalled_leads: list[Finding] = field(default_factory=list)  # due and never dialed, or in an ended attempt
    placed_while_down: list[Finding] = field(default_factory=list)  # during an outage (rule 9)
    cap_breaches: list[str] = field(default_factory=list)

    def failures(self) -> dict[str, list[str]]:
        named = {
            "dialed twice for one attempt": self.duplicates,
            "dialed without an attempt": self.unrecorded,
            "wrong outcome": self.wrong_outcomes,
            "answered contact redialed": self.redialed_answered,
            "live after settling": self.stuck,
            "live past the hard maximum": self.overdue,
            "lead left behind": self.stalled_leads,
            "placed while its Stasis app or media worker was known down": self.placed_while_down,
        }
        failures = {name: [str(f) for f in found] for name, found in named.items() if found}
        if self.cap_breaches:
            failures["cap exceeded"] = list(self.cap_breaches)
        return failures

    def report(self) -> str:
        return "\n".join(
            f"{name} ({len(items)}):\n" + "\n".join(f"  {item}" for item in items)
            for name, items in self.failures().items()
        )


def judge(
    *,
    calls: Iterable[Mapping[str, Any]],
    attempts: Iterable[AttemptRow],
    leads: Iterable[LeadRow] = (),
    windows: Sequence[FaultWindow] = (),
    outages: Sequence[FaultWindow] = (),
    peaks: Mapping[int, int] | None = None,
    caps: Mapping[int, int] | None = None,
    hard_max_s: float,
    now: datetime,
) -> Verdict:
    outbound = [c for c in calls if c.get("direction", "outbound") == "outbound"]
    attempts = list(attempts)
    verdict = Verdict(calls=len(outbound), conversations=sum(1 for c in outbound if had_conversation(c)))
    by_id = {a.id: a for a in attempts}

    calls_by_id: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for placed in outbound:
        calls_by_id[str(placed["id"])].append(placed)
    for call_id, same in calls_by_id.items():
        if len(same) > 1:
            verdict.duplicates.append(Finding(call_id, str(same[0].get("number")), f"{len(same)} calls"))
        if call_id not in by_id:
            first = same[0]
            verdict.unrecorded.append(
                Finding(
                    call_id, str(first.get("number")), f"created {first.get('created_at')}, no attempt row"
                )
            )

    for placed in outbound:
        created = parse_time(placed.get("created_at"))
        for outage in outages:
            if outage.contains(created):
                verdict.placed_while_down.append(
                    Finding(
                        str(placed["id"]), str(placed.get("number")), f"placed {created} during {outage.name}"
                    )
                )

    hard_max = timedelta(seconds=hard_max_s)
    for attempt in attempts:
        same = calls_by_id.get(attempt.id, [])
        call = same[-1] if same else None
        if attempt.state in LIVE_STATES:
            sim_state = call.get("state") if call else "no call"
            verdict.stuck.append(Finding(attempt.id, attempt.number, f"{attempt.state} (PBX: {sim_state})"))
            if now - attempt.started_at > hard_max:
                verdict.overdue.append(
                    Finding(
                        attempt.id, attempt.number, f"still {attempt.state} {now - attempt.started_at} on"
                    )
                )
            continue
        if attempt.ended_at is not None and attempt.ended_at - attempt.started_at > hard_max + OVERDUE_GRACE:
            verdict.overdue.append(
                Finding(
                    attempt.id, attempt.number, f"ended {attempt.ended_at - attempt.started_at} after start"
                )
            )
        expectation = expected_outcomes(call, windows, product_saw_answer=attempt.answered_at is not None)
        if attempt.outcome not in expectation.allowed:
            allowed = "|".join(sorted(expectation.allowed)) or "(none)"
            verdict.wrong_outcomes.append(
                Finding(
                    attempt.id,
                    attempt.number,
                    f"outcome {attempt.outcome or '(none)'!r}, true: {allowed} — PBX: {expectation.evidence}"
                    + (f"; error: {attempt.error[:120]}" if attempt.error else ""),
                )
            )

    by_lead: dict[int, list[AttemptRow]] = defaultdict(list)
    for attempt in attempts:
        by_lead[attempt.lead_id].append(attempt)
    for mine in by_lead.values():
        mine.sort(key=lambda a: a.queued_at)
        for index, attempt in enumerate(mine):
            same = calls_by_id.get(attempt.id, [])
            if not any(had_conversation(c) for c in same) or attempt.callback_at is not None:
                continue
            for later in mine[index + 1 :]:
                verdict.redialed_answered.append(
                    Finding(
                        later.id, later.number, f"dialed again after the conversation of attempt {attempt.id}"
                    )
                )
            break

    live_leads = {a.lead_id for a in attempts if a.state in LIVE_STATES}
    for lead in leads:
        if lead.status == "waiting" and lead.next_due_at is not None and lead.next_due_at < now - STALL_GRACE:
            verdict.stalled_leads.append(
                Finding(str(lead.id), lead.number, f"waiting, due since {now - lead.next_due_at}, not dialed")
            )
        elif lead.status == "in_attempt" and lead.id not in live_leads:
            verdict.stalled_leads.append(
                Finding(str(lead.id), lead.number, "in_attempt with no live attempt")
            )

    for tenant_id, cap in (caps or {}).items():
        peak = (peaks or {}).get(tenant_id, 0)
        if peak > cap:
            verdict.cap_breaches.append(f"tenant {tenant_id}: {peak} live calls on the PBX, cap {cap}")
    return verdict


def describe_call(call: Mapping[str, Any] | None) -> str:
    """The simulator's record of a call in one line: the evidence an outcome is judged against."""
    if call is None:
        return "PBX: no call"
    legs = [
        f"{leg.get('frames_in', 0)} in/{leg.get('frames_out', 0)} out"
        + (f" {leg['end_reason']}" if leg.get("end_reason") else "")
        for leg in call.get("media") or []
    ]
    return (
        f"PBX: {call.get('state')} created {call.get('created_at')} answered {call.get('answered_at')} "
        f"ended {call.get('ended_at')} cause {call.get('cause')} by {call.get('ended_by')}, "
        f"heard {heard_ms(call):.0f} ms, media legs [{'; '.join(legs)}]"
    )


def count_by_outcome(attempts: Iterable[AttemptRow]) -> Counter[str]:
    return Counter(a.outcome or a.state for a in attempts)
