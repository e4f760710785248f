"""The attempt life cycle as data (DESIGN §4): the transition table, refusals, properties over shuffled and
duplicated event sequences, and the retry policy.

Pure functions: no database.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from campaigns.lifecycle import (
    DEFAULT_RETRY_DELAY_SECONDS,
    DONE_MAX_ATTEMPTS,
    DONE_NEVER_RETRY,
    DONE_SUCCESS,
    DONE_UNLESS_LISTED,
    FINAL_SUCCESS,
    LIVE_STATES,
    NEVER_RETRY,
    RETRY_CALLBACK,
    STATE_RANK,
    TRANSITIONS,
    AttemptInput,
    AttemptOutcome,
    AttemptState,
    EndEvidence,
    RetryDecision,
    Transition,
    consumes_attempt,
    is_live,
    retry_decision,
    transition,
    unseen_end_outcome,
)

S = AttemptState
E = AttemptInput
NOW = datetime(2025, 3, 4, 15, 0, tzinfo=UTC)


# ------------------------------------------------------------------------------------------ the table

LEGAL = [
    (S.QUEUED, E.ORIGINATE_ACCEPTED, S.DIALING),
    (S.QUEUED, E.ORIGINATE_FAILED, S.ENDED),
    (S.QUEUED, E.CANCELLED, S.ENDED),
    (S.QUEUED, E.ENDED, S.ENDED),  # a fast failure's events beat the HTTP 200
    (S.QUEUED, E.RINGING, S.RINGING),
    (S.QUEUED, E.ANSWERED, S.ANSWERED),
    (S.QUEUED, E.BRIDGED, S.BRIDGED),
    (S.DIALING, E.RINGING, S.RINGING),
    (S.DIALING, E.ANSWERED, S.ANSWERED),
    (S.DIALING, E.BRIDGED, S.BRIDGED),
    (S.DIALING, E.ENDED, S.ENDED),
    (S.RINGING, E.ANSWERED, S.ANSWERED),
    (S.RINGING, E.BRIDGED, S.BRIDGED),
    (S.RINGING, E.ENDED, S.ENDED),
    (S.ANSWERED, E.BRIDGED, S.BRIDGED),
    (S.ANSWERED, E.ENDED, S.ENDED),
    (S.BRIDGED, E.ENDED, S.ENDED),
]

REFUSED = [
    # the 200 processed after the events: harmless
    (S.DIALING, E.ORIGINATE_ACCEPTED, "duplicate"),
    (S.RINGING, E.ORIGINATE_ACCEPTED, "duplicate"),
    (S.ANSWERED, E.ORIGINATE_ACCEPTED, "duplicate"),
    (S.BRIDGED, E.ORIGINATE_ACCEPTED, "duplicate"),
    (S.RINGING, E.RINGING, "duplicate"),
    (S.ANSWERED, E.RINGING, "duplicate"),  # a late Ringing after StasisStart
    (S.BRIDGED, E.RINGING, "duplicate"),
    (S.ANSWERED, E.ANSWERED, "duplicate"),  # StasisStart replayed after a reconnect
    (S.BRIDGED, E.ANSWERED, "duplicate"),
    (S.BRIDGED, E.BRIDGED, "duplicate"),
    # the call exists: only its own end may close the attempt
    (S.DIALING, E.ORIGINATE_FAILED, "illegal"),
    (S.RINGING, E.ORIGINATE_FAILED, "illegal"),
    (S.ANSWERED, E.ORIGINATE_FAILED, "illegal"),
    (S.BRIDGED, E.ORIGINATE_FAILED, "illegal"),
    (S.DIALING, E.CANCELLED, "illegal"),
    (S.RINGING, E.CANCELLED, "illegal"),
    (S.ANSWERED, E.CANCELLED, "illegal"),
    (S.BRIDGED, E.CANCELLED, "illegal"),
] + [(S.ENDED, event, "terminal") for event in AttemptInput]


@pytest.mark.parametrize(("old", "event", "new"), LEGAL)
def test_legal_transitions(old: AttemptState, event: AttemptInput, new: AttemptState) -> None:
    assert transition(old, event) == Transition(old=old, event=event, new=new, applied=True, reason="applied")


@pytest.mark.parametrize(("old", "event", "reason"), REFUSED)
def test_refused_transitions(old: AttemptState, event: AttemptInput, reason: str) -> None:
    result = transition(old, event)
    assert result == Transition(old=old, event=event, new=old, applied=False, reason=reason)


def test_the_two_lists_cover_every_pair_and_match_the_table() -> None:
    legal = {(old, event): new for old, event, new in LEGAL}
    refused = {(old, event) for old, event, _ in REFUSED}
    assert dict(TRANSITIONS) == legal
    assert not legal.keys() & refused
    assert legal.keys() | refused == {(state, event) for state in AttemptState for event in AttemptInput}


def test_every_live_state_can_end_and_ended_is_the_only_terminal_state() -> None:
    for state in AttemptState:
        assert is_live(state) == (state in LIVE_STATES) == (state is not S.ENDED)
        if is_live(state):
            assert TRANSITIONS[(state, E.ENDED)] is S.ENDED


def test_the_table_only_moves_forward() -> None:
    for (old, _event), new in TRANSITIONS.items():
        assert STATE_RANK[new] > STATE_RANK[old]
    assert sorted(AttemptState, key=STATE_RANK.__getitem__) == [
        S.QUEUED,
        S.DIALING,
        S.RINGING,
        S.ANSWERED,
        S.BRIDGED,
        S.ENDED,
    ]


# ------------------------------------------------------------------------------------------ properties

events = st.sampled_from(list(AttemptInput))
states = st.sampled_from(list(AttemptState))


def _reachable_from_queued() -> set[AttemptState]:
    seen = {S.QUEUED}
    frontier = [S.QUEUED]
    while frontier:
        state = frontier.pop()
        for (old, _event), new in TRANSITIONS.items():
            if old is state and new not in seen:
                seen.add(new)
                frontier.append(new)
    return seen


REACHABLE = _reachable_from_queued()


def fold(
    sequence: list[AttemptInput], start: AttemptState = S.QUEUED
) -> tuple[AttemptState, list[Transition]]:
    state = start
    steps = []
    for event in sequence:
        step = transition(state, event)
        assert step.old is state
        steps.append(step)
        state = step.new
    return state, steps


# A realistic call, then shuffled and with events duplicated: what a reconnect or concurrent workers do.
CALL_STORIES = [
    [E.ORIGINATE_ACCEPTED, E.RINGING, E.ANSWERED, E.BRIDGED, E.ENDED],
    [E.ORIGINATE_ACCEPTED, E.ANSWERED, E.ENDED],
    [E.ORIGINATE_ACCEPTED, E.RINGING, E.ENDED],
    [E.ORIGINATE_ACCEPTED, E.ENDED],
    [E.ORIGINATE_FAILED],
    [E.CANCELLED],
]


@st.composite
def shuffled_duplicated_stories(draw: st.DrawFn) -> list[AttemptInput]:
    story = draw(st.sampled_from(CALL_STORIES))
    duplicated = [event for event in story for _ in range(draw(st.integers(1, 3)))]
    extra = draw(st.lists(st.sampled_from(story), max_size=4))
    return draw(st.permutations(duplicated + extra))


any_sequences = st.lists(events, max_size=30)


@given(st.one_of(any_sequences, shuffled_duplicated_stories()))
def test_folding_never_leaves_the_reach_of_the_table(sequence: list[AttemptInput]) -> None:
    final, steps = fold(sequence)
    assert final in REACHABLE
    for step in steps:
        assert step.new in REACHABLE
        assert step.applied == ((step.old, step.event) in TRANSITIONS)


@given(states, any_sequences)
def test_refused_events_never_change_the_state(start: AttemptState, sequence: list[AttemptInput]) -> None:
    _, steps = fold(sequence, start)
    for step in steps:
        if not step.applied:
            assert step.new is step.old
            assert step.reason in {"duplicate", "illegal", "terminal"}
        else:
            assert step.reason == "applied"
            assert step.new is TRANSITIONS[(step.old, step.event)]


@given(any_sequences)
def test_ended_is_absorbing(sequence: list[AttemptInput]) -> None:
    final, steps = fold(sequence, S.ENDED)
    assert final is S.ENDED
    assert all(not step.applied and step.reason == "terminal" for step in steps)


@given(st.one_of(any_sequences, shuffled_duplicated_stories()), st.data())
def test_a_sequence_containing_ended_always_ends_in_ended(
    sequence: list[AttemptInput], data: st.DataObject
) -> None:
    position = data.draw(st.integers(0, len(sequence)))
    final, _ = fold([*sequence[:position], E.ENDED, *sequence[position:]])
    assert final is S.ENDED


@given(states, st.one_of(any_sequences, shuffled_duplicated_stories()))
def test_the_state_only_moves_forward(start: AttemptState, sequence: list[AttemptInput]) -> None:
    _, steps = fold(sequence, start)
    for step in steps:
        assert STATE_RANK[step.new] >= STATE_RANK[step.old]
        assert (STATE_RANK[step.new] > STATE_RANK[step.old]) == step.applied


@given(shuffled_duplicated_stories())
def test_duplicates_change_nothing(sequence: list[AttemptInput]) -> None:
    """Delivering each event twice in a row ends in the same state as delivering it once."""
    once, _ = fold(sequence)
    twice, steps = fold([event for event in sequence for _ in range(2)])
    assert twice is once
    for first, second in zip(steps[::2], steps[1::2], strict=True):
        if first.applied:
            assert not second.applied and second.reason in {"duplicate", "terminal"}


@given(st.permutations([E.ORIGINATE_ACCEPTED, E.RINGING, E.ANSWERED, E.BRIDGED]))
def test_progress_in_any_order_reaches_bridged(sequence: list[AttemptInput]) -> None:
    final, steps = fold(sequence)
    assert final is S.BRIDGED
    assert all(step.applied or step.reason == "duplicate" for step in steps)


@given(states, events)
def test_transition_never_raises_and_reports_consistently(state: AttemptState, event: AttemptInput) -> None:
    step = transition(state, event)
    assert (step.old, step.event) == (state, event)
    assert step.applied == ((state, event) in TRANSITIONS)
    if state is S.ENDED:
        assert step.reason == "terminal"


# ------------------------------------------------------------------------------------------ retry policy

DELAYS = {"busy": 600, "no_answer": 3600, "congestion": 300, "failed": 120, "voicemail": 7200}


def decide(
    outcome: AttemptOutcome, attempts_made: int = 1, max_attempts: int = 3, **kw: object
) -> RetryDecision:
    return retry_decision(
        outcome=outcome,
        attempts_made=attempts_made,
        max_attempts=max_attempts,
        retry_delays=kw.get("retry_delays", DELAYS),  # type: ignore[arg-type]
        now=kw.get("now", NOW),  # type: ignore[arg-type]
        callback_at=kw.get("callback_at"),  # type: ignore[arg-type]
    )


def test_policy_sets() -> None:
    assert {AttemptOutcome.REJECTED, AttemptOutcome.INVALID_NUMBER, AttemptOutcome.OPTED_OUT} == NEVER_RETRY
    assert {AttemptOutcome.ANSWERED} == FINAL_SUCCESS


@pytest.mark.parametrize("outcome", sorted(NEVER_RETRY))
def test_never_retry_outcomes_are_done_even_with_budget_left(outcome: AttemptOutcome) -> None:
    assert decide(outcome, attempts_made=1, max_attempts=10) == RetryDecision.done(DONE_NEVER_RETRY)


def test_an_answered_call_finishes_the_lead() -> None:
    assert decide(AttemptOutcome.ANSWERED, attempts_made=1) == RetryDecision.done(DONE_SUCCESS)


@pytest.mark.parametrize("outcome", [AttemptOutcome.ANSWERED, AttemptOutcome.VOICEMAIL, AttemptOutcome.BUSY])
def test_a_callback_makes_the_lead_due_then_attempts_permitting(outcome: AttemptOutcome) -> None:
    later = NOW + timedelta(days=1)
    assert decide(outcome, attempts_made=1, callback_at=later) == RetryDecision.retry(later, RETRY_CALLBACK)
    # A time already past: due now.
    assert decide(outcome, callback_at=NOW - timedelta(hours=1)).at == NOW
    assert decide(outcome, attempts_made=3, max_attempts=3, callback_at=later) == RetryDecision.done(
        DONE_MAX_ATTEMPTS
    )


def test_a_callback_does_not_override_a_never_retry_outcome_and_must_be_aware() -> None:
    later = NOW + timedelta(days=1)
    assert decide(AttemptOutcome.OPTED_OUT, callback_at=later) == RetryDecision.done(DONE_NEVER_RETRY)
    with pytest.raises(ValueError, match="callback_at"):
        decide(AttemptOutcome.ANSWERED, callback_at=later.replace(tzinfo=None))


@pytest.mark.parametrize(
    ("outcome", "seconds"),
    [
        (AttemptOutcome.BUSY, 600),
        (AttemptOutcome.NO_ANSWER, 3600),
        (AttemptOutcome.CONGESTION, 300),
        (AttemptOutcome.FAILED, 120),
        (AttemptOutcome.VOICEMAIL, 7200),
    ],
)
def test_configured_delay_per_outcome(outcome: AttemptOutcome, seconds: int) -> None:
    decision = decide(outcome)
    assert decision.should_retry
    assert decision.at == NOW + timedelta(seconds=seconds)
    assert decision.reason == outcome.value


@pytest.mark.parametrize(
    "outcome", [AttemptOutcome.ERROR, AttemptOutcome.CANCELLED, AttemptOutcome.UNREACHABLE]
)
def test_unconfigured_outcomes_use_the_default_delay(outcome: AttemptOutcome) -> None:
    assert DEFAULT_RETRY_DELAY_SECONDS == 900
    decision = decide(outcome)
    assert decision == RetryDecision.retry(NOW + timedelta(seconds=900), reason=outcome.value)


def test_zero_delay_retries_right_away_and_negative_is_clamped() -> None:
    assert decide(AttemptOutcome.BUSY, retry_delays={"busy": 0}).at == NOW
    assert decide(AttemptOutcome.BUSY, retry_delays={"busy": -5}).at == NOW


@pytest.mark.parametrize("outcome", [AttemptOutcome.BUSY, AttemptOutcome.NO_ANSWER, AttemptOutcome.FAILED])
def test_max_attempts_spent_is_done(outcome: AttemptOutcome) -> None:
    assert decide(outcome, attempts_made=3, max_attempts=3) == RetryDecision.done(DONE_MAX_ATTEMPTS)
    assert decide(outcome, attempts_made=2, max_attempts=3).should_retry


def test_a_cancelled_attempt_does_not_consume_the_budget() -> None:
    assert not consumes_attempt(AttemptOutcome.CANCELLED)
    assert all(
        consumes_attempt(outcome) for outcome in AttemptOutcome if outcome is not AttemptOutcome.CANCELLED
    )
    # The caller does not count it, so a lead with 2 of 3 attempts made stays at 2 and is retried.
    assert decide(AttemptOutcome.CANCELLED, attempts_made=2, max_attempts=3).should_retry


def test_never_retry_wins_over_max_attempts_and_success_wins_over_everything() -> None:
    assert decide(AttemptOutcome.REJECTED, attempts_made=3).reason == DONE_NEVER_RETRY
    assert decide(AttemptOutcome.ANSWERED, attempts_made=3).reason == DONE_SUCCESS


def test_naive_now_is_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        decide(AttemptOutcome.BUSY, now=datetime(2025, 1, 1, 12, 0))  # noqa: DTZ001


@given(
    st.sampled_from(list(AttemptOutcome)),
    st.integers(0, 20),
    st.integers(1, 20),
    st.dictionaries(st.sampled_from([o.value for o in AttemptOutcome]), st.integers(0, 86_400)),
)
def test_retry_decision_properties(
    outcome: AttemptOutcome, attempts_made: int, max_attempts: int, delays: dict[str, int]
) -> None:
    decision = retry_decision(
        outcome=outcome, attempts_made=attempts_made, max_attempts=max_attempts, retry_delays=delays, now=NOW
    )
    if decision.should_retry:
        assert decision.at is not None and decision.at >= NOW
        assert outcome not in NEVER_RETRY | FINAL_SUCCESS
        assert attempts_made < max_attempts
    else:
        assert decision.at is None
        unlisted = outcome in DONE_UNLESS_LISTED and outcome.value not in delays
        assert outcome in NEVER_RETRY | FINAL_SUCCESS or attempts_made >= max_attempts or unlisted


# --------------------------------------------------------------------------------------- unseen ends


@pytest.mark.parametrize(
    ("reported", "evidence", "expected"),
    [
        # It reached its agent: answered, whatever was reported.
        ("unknown", EndEvidence(connected=True), "answered"),
        ("media_failed", EndEvidence(answered=True, connected=True), "answered"),
        # Answered, never reached its agent: the callee heard silence.
        ("unknown", EndEvidence(answered=True), "media_failed"),
        ("answered", EndEvidence(), "media_failed"),
        # What was seen before the gap says how it went.
        ("busy", EndEvidence(placed_during_gap=True), "busy"),
        ("no_answer", EndEvidence(), "no_answer"),
        # Nothing known: never "failed".
        ("unknown", EndEvidence(placed_during_gap=True), "app_unavailable"),
        ("unknown", EndEvidence(), "unknown"),
        ("failed", EndEvidence(), "unknown"),
    ],
)
def test_an_unseen_end_is_classified_from_the_evidence(
    reported: str, evidence: EndEvidence, expected: str
) -> None:
    assert unseen_end_outcome(AttemptOutcome(reported), evidence) is AttemptOutcome(expected)


@given(
    st.sampled_from(list(AttemptOutcome)),
    st.builds(EndEvidence, answered=st.booleans(), connected=st.booleans(), placed_during_gap=st.booleans()),
)
def test_an_unseen_end_is_never_a_guessed_failure_and_never_redials_a_conversation(
    reported: AttemptOutcome, evidence: EndEvidence
) -> None:
    outcome = unseen_end_outcome(reported, evidence)
    assert outcome not in (AttemptOutcome.FAILED, AttemptOutcome.ERROR)
    if evidence.connected:
        assert outcome is AttemptOutcome.ANSWERED  # a lead whose call reached its agent is not redialed
