"""The fault suite's judge on made-up records: each rule passes what is true and catches what is not, so a
green fault run means the product kept the rules, not that the judge looked away. No processes, no
database: these run in every test run."""

from __future__ import annotations

import itertools
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.faults.judge import AttemptRow, FaultWindow, LeadRow, Verdict, judge

T0 = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
HARD_MAX_S = 44
_ids = itertools.count(1)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def sim_call(
    attempt_id: str,
    *,
    answered: bool = False,
    heard_ms: float = 0,
    media_frames: int = 0,
    cause: int = 16,
    ended_by: str = "callee",
    ended_s: float = 8,
    tenant: int = 1,
) -> dict[str, Any]:
    """A record as ``GET /sim/calls`` gives it (the fields the judge reads)."""
    return {
        "id": attempt_id,
        "direction": "outbound",
        "number": f"+1212555{attempt_id[-4:]}",
        "state": "ended",
        "created_at": at(0).isoformat(),
        "answered_at": at(1).isoformat() if answered else None,
        "ended_at": at(ended_s).isoformat(),
        "cause": cause,
        "ended_by": ended_by,
        "heard": {"heard_ms": heard_ms},
        "media": [{"frames_in": media_frames}] if media_frames else [],
        "variables": {"TENANT_ID": str(tenant)},
    }


def attempt(
    outcome: str, *, lead: int | None = None, state: str = "ended", queued_s: float = 0
) -> AttemptRow:
    n = next(_ids)
    return AttemptRow(
        id=f"00000000-0000-0000-0000-{n:012d}",
        lead_id=lead if lead is not None else n,
        tenant_id=1,
        number=f"+1212555{n:04d}",
        state=state,
        outcome=outcome,
        queued_at=at(queued_s),
        originate_sent_at=at(queued_s),
        answered_at=None,
        ended_at=at(queued_s + 8) if state == "ended" else None,
        callback_at=None,
    )


def run(
    pairs: list[tuple[AttemptRow, dict[str, Any] | None]],
    *,
    windows: list[FaultWindow] | None = None,
    leads: list[LeadRow] | None = None,
    now_s: float = 30,
    extra_calls: list[dict[str, Any]] | None = None,
    peaks: dict[int, int] | None = None,
) -> Verdict:
    calls = [call for _, call in pairs if call is not None] + (extra_calls or [])
    return judge(
        calls=calls,
        attempts=[a for a, _ in pairs],
        leads=leads or [],
        windows=windows or [],
        peaks=peaks or {1: 1},
        caps={1: 5},
        hard_max_s=HARD_MAX_S,
        now=at(now_s),
    )


def talked(outcome: str = "answered") -> tuple[AttemptRow, dict[str, Any]]:
    a = attempt(outcome)
    return a, sim_call(a.id, answered=True, heard_ms=5500, media_frames=300)


def test_outcomes_true_to_the_pbx_record_pass() -> None:
    busy, no_answer, rejected = attempt("busy"), attempt("no_answer"), attempt("rejected")
    verdict = run(
        [
            talked(),
            (busy, sim_call(busy.id, cause=17)),
            (no_answer, sim_call(no_answer.id, cause=19, ended_by="timeout")),
            (rejected, sim_call(rejected.id, cause=21)),
        ]
    )
    assert verdict.failures() == {}
    assert verdict.calls == 4


def test_a_conversation_recorded_as_a_failure_is_wrong() -> None:
    for outcome in ("failed", "error", "unknown", "media_failed", "no_answer"):
        verdict = run([talked(outcome)])
        assert len(verdict.wrong_outcomes) == 1, outcome
        assert "true: answered" in verdict.wrong_outcomes[0].what


def test_heard_no_longer_than_an_apology_may_be_either_and_may_be_redialed() -> None:
    a = attempt("media_failed")
    apology = sim_call(a.id, answered=True, heard_ms=2000, media_frames=100)
    assert run([(replace(a, outcome="answered"), apology)]).failures() == {}
    again = attempt("busy", lead=a.lead_id, queued_s=20)
    assert run([(a, apology), (again, sim_call(again.id, cause=17))]).failures() == {}


def test_media_that_never_came_up_is_not_answered() -> None:
    a = attempt("answered")
    no_media = sim_call(a.id, answered=True, ended_by="app")
    assert len(run([(a, no_media)]).wrong_outcomes) == 1
    assert run([(replace(a, outcome="media_failed"), no_media)]).failures() == {}
    # Media up but the agent never heard: either is true.
    silent = sim_call(a.id, answered=True, media_frames=40)
    assert run([(a, silent)]).failures() == {}
    assert run([(replace(a, outcome="media_failed"), silent)]).failures() == {}


def test_an_answer_into_an_absent_stasis_app_is_app_unavailable() -> None:
    a = attempt("app_unavailable")
    call = sim_call(a.id, answered=True, ended_by="stasis_failed", ended_s=1)
    assert run([(a, call)]).failures() == {}
    for wrong in ("failed", "answered", "media_failed", "unknown"):
        assert len(run([(replace(a, outcome=wrong), call)]).wrong_outcomes) == 1, wrong
    # Unknown too when the product had nothing to see it by: the Stasis app was gone throughout.
    gone = FaultWindow("stasis", at(0.5), at(12), witness_lost=True)
    assert run([(replace(a, outcome="unknown"), call)], windows=[gone]).failures() == {}


def test_unknown_only_for_unanswered_calls_that_ended_in_a_fault_window() -> None:
    window = FaultWindow("stasis", at(5), at(12))
    busy = attempt("unknown")
    inside = sim_call(busy.id, cause=17, ended_s=8)
    outside = sim_call(busy.id, cause=17, ended_s=20)
    assert run([(busy, inside)], windows=[window]).failures() == {}
    assert len(run([(busy, outside)], windows=[window]).wrong_outcomes) == 1
    assert len(run([(busy, inside)]).wrong_outcomes) == 1  # no fault at all
    a, call = talked("unknown")
    assert len(run([(a, call)], windows=[FaultWindow("x", at(0), at(20))]).wrong_outcomes) == 1


def test_app_unavailable_for_an_unanswered_call_only_if_placed_while_the_stasis_app_was_gone() -> None:
    """Placed while nobody listened (DESIGN.md §5.9 / A11): "app_unavailable" is true of it whatever the
    callee did; placed before the app went, it is not."""
    gone = FaultWindow("stasis", at(5), at(12), witness_lost=True)
    a = attempt("app_unavailable")
    placed_in_gap = {**sim_call(a.id, cause=17, ended_s=9), "created_at": at(6).isoformat()}
    placed_before = {**sim_call(a.id, cause=17, ended_s=9), "created_at": at(1).isoformat()}
    assert run([(a, placed_in_gap)], windows=[gone]).failures() == {}
    assert len(run([(a, placed_before)], windows=[gone]).wrong_outcomes) == 1
    not_stasis = FaultWindow("media", at(5), at(12))
    assert len(run([(a, placed_in_gap)], windows=[not_stasis]).wrong_outcomes) == 1


def test_an_attempt_never_dialed_claims_no_call() -> None:
    assert run([(attempt("error"), None), (attempt("cancelled"), None)]).failures() == {}
    for claim in ("answered", "busy", "no_answer"):
        assert len(run([(attempt(claim), None)]).wrong_outcomes) == 1, claim


def test_an_attempt_ended_while_its_call_is_still_up_is_wrong() -> None:
    a = attempt("busy")
    call = {**sim_call(a.id, cause=17), "state": "ringing", "ended_at": None}
    assert len(run([(a, call)]).wrong_outcomes) == 1


def test_dialing_one_attempt_twice_and_calls_without_attempts_are_caught() -> None:
    a, call = talked()
    verdict = run([(a, call)], extra_calls=[dict(call), sim_call("not-an-attempt", cause=17)])
    assert [f.attempt_id for f in verdict.duplicates] == [a.id]
    assert [f.attempt_id for f in verdict.unrecorded] == ["not-an-attempt"]


def test_a_conversation_is_not_redialed_unless_a_callback_was_asked_for() -> None:
    first, call = talked()
    again = attempt("busy", lead=first.lead_id, queued_s=20)
    verdict = run([(first, call), (again, sim_call(again.id, cause=17))])
    assert [f.attempt_id for f in verdict.redialed_answered] == [again.id]
    with_callback = replace(first, callback_at=at(3600))
    assert run([(with_callback, call), (again, sim_call(again.id, cause=17))]).redialed_answered == []
    # A busy first attempt may be retried.
    busy = attempt("busy")
    retry = attempt("busy", lead=busy.lead_id, queued_s=12)
    assert run([(busy, sim_call(busy.id, cause=17)), (retry, sim_call(retry.id, cause=17))]).failures() == {}


def test_live_attempts_after_settling_and_past_the_hard_maximum() -> None:
    young = attempt("", state="answered", queued_s=20)
    old = attempt("", state="dialing", queued_s=0)
    verdict = run([(young, None), (old, None)], now_s=50)
    assert {f.attempt_id for f in verdict.stuck} == {young.id, old.id}
    assert [f.attempt_id for f in verdict.overdue] == [old.id]
    late = replace(attempt("answered"), ended_at=at(HARD_MAX_S + 30))
    call = sim_call(late.id, answered=True, heard_ms=100, media_frames=10)
    assert [f.attempt_id for f in run([(late, call)], now_s=100).overdue] == [late.id]


def test_leads_left_behind_and_caps_exceeded() -> None:
    leads = [
        LeadRow(1, "+12125550001", "waiting", at(0)),  # due long ago, never dialed
        LeadRow(2, "+12125550002", "waiting", at(100)),  # due later: fine
        LeadRow(3, "+12125550003", "in_attempt", None),  # no live attempt holds it
        LeadRow(4, "+12125550004", "done", None),
    ]
    verdict = run([], leads=leads, now_s=60, peaks={1: 6})
    assert [f.attempt_id for f in verdict.stalled_leads] == ["1", "3"]
    assert verdict.cap_breaches == ["tenant 1: 6 live calls on the PBX, cap 5"]


def test_no_call_is_placed_while_a_component_is_known_down() -> None:
    during, after = attempt("media_failed"), attempt("answered")
    placed_during = {**sim_call(during.id, answered=True, ended_by="app"), "created_at": at(10).isoformat()}
    placed_after = {
        **sim_call(after.id, answered=True, heard_ms=900, media_frames=100),
        "created_at": at(21).isoformat(),
    }
    outage = FaultWindow("media outage", at(5), at(20))
    verdict = judge(
        calls=[placed_during, placed_after],
        attempts=[during, after],
        outages=[outage],
        hard_max_s=HARD_MAX_S,
        now=at(60),
    )
    assert [f.attempt_id for f in verdict.placed_while_down] == [during.id]
    assert list(verdict.failures()) == ["placed while its Stasis app or media worker was known down"]


def test_unknown_for_an_answer_the_dying_stasis_app_took_with_it() -> None:
    a = attempt("unknown")
    silent = sim_call(a.id, answered=True, ended_s=7)  # answered at 1 s, no media, the callee left at 7 s
    stasis_gone = FaultWindow("stasis", at(0.5), at(12), witness_lost=True)
    assert run([(a, silent)], windows=[stasis_gone]).failures() == {}
    # But not when the product had recorded the answer, nor when another fault left the Stasis app up.
    recorded = replace(a, answered_at=at(1))
    assert len(run([(recorded, silent)], windows=[stasis_gone]).wrong_outcomes) == 1
    worker_gone = FaultWindow("worker", at(0.5), at(12))
    assert len(run([(a, silent)], windows=[worker_gone]).wrong_outcomes) == 1
    # Nor for a conversation: the media worker's report tells of it.
    b, talk = talked("unknown")
    assert len(run([(b, talk)], windows=[stasis_gone]).wrong_outcomes) == 1
