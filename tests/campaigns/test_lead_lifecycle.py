"""The lead life cycle as data (DESIGN §4, §5 rule 3): the transition table, refusals, properties over
shuffled and duplicated input sequences; and the services that move leads only through it."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from campaigns.lead_lifecycle import (
    INITIAL_STATUS,
    TRANSITIONS,
    LeadInput,
    LeadStatus,
    LeadTransition,
    sources,
    target,
    transition,
)
from campaigns.models import Lead
from campaigns.services.leads import lead_move, leads_move
from tests.campaigns.factories import make_campaign, make_contact, make_tenant

S = LeadStatus
I = LeadInput  # noqa: E741 - the table's inputs, as the attempt table's tests name theirs

# ------------------------------------------------------------------------------------------ the table

LEGAL = [
    (S.WAITING, I.CLAIMED, S.IN_ATTEMPT),
    (S.WAITING, I.ON_DNC, S.SUPPRESSED),
    (S.WAITING, I.DEFERRED, S.WAITING),
    (S.WAITING, I.REDECIDED_RETRY, S.WAITING),
    (S.WAITING, I.REDECIDED_DONE, S.DONE),
    (S.WAITING, I.OPTED_OUT, S.DONE),
    (S.IN_ATTEMPT, I.ON_DNC, S.SUPPRESSED),
    (S.IN_ATTEMPT, I.ATTEMPT_RETRY, S.WAITING),
    (S.IN_ATTEMPT, I.ATTEMPT_DONE, S.DONE),
    (S.IN_ATTEMPT, I.OPTED_OUT, S.DONE),
    (S.DONE, I.REDECIDED_RETRY, S.WAITING),
    (S.DONE, I.REDECIDED_DONE, S.DONE),
    (S.DONE, I.OPTED_OUT, S.DONE),
]

ILLEGAL = [
    # Claimed twice: one live attempt per lead.
    (S.IN_ATTEMPT, I.CLAIMED),
    (S.DONE, I.CLAIMED),
    # An attempt's end applies only to a lead in that attempt.
    (S.WAITING, I.ATTEMPT_RETRY),
    (S.WAITING, I.ATTEMPT_DONE),
    (S.DONE, I.ATTEMPT_RETRY),
    (S.DONE, I.ATTEMPT_DONE),
    # Deciding again is for an attempt that already ended, not a live one.
    (S.IN_ATTEMPT, I.REDECIDED_RETRY),
    (S.IN_ATTEMPT, I.REDECIDED_DONE),
    (S.IN_ATTEMPT, I.DEFERRED),
    (S.DONE, I.DEFERRED),
    (S.DONE, I.ON_DNC),
]


@pytest.mark.parametrize(("old", "lead_input", "new"), LEGAL)
def test_legal_transitions(old: LeadStatus, lead_input: LeadInput, new: LeadStatus) -> None:
    assert transition(old, lead_input) == LeadTransition(old, lead_input, new, True, "applied")


@pytest.mark.parametrize(("old", "lead_input"), ILLEGAL)
def test_illegal_transitions_are_refused(old: LeadStatus, lead_input: LeadInput) -> None:
    assert transition(old, lead_input) == LeadTransition(old, lead_input, old, False, "illegal")


@pytest.mark.parametrize("lead_input", list(LeadInput))
def test_suppressed_is_absorbing(lead_input: LeadInput) -> None:
    assert transition(S.SUPPRESSED, lead_input) == LeadTransition(
        S.SUPPRESSED, lead_input, S.SUPPRESSED, False, "terminal"
    )


def test_the_table_is_exactly_the_legal_list_and_every_pair_is_decided() -> None:
    assert dict(TRANSITIONS) == {(old, lead_input): new for old, lead_input, new in LEGAL}
    decided = {(old, i) for old, i, _ in LEGAL} | set(ILLEGAL) | {(S.SUPPRESSED, i) for i in LeadInput}
    assert decided == {(status, lead_input) for status in LeadStatus for lead_input in LeadInput}


def test_every_input_has_one_target_and_its_sources_are_where_it_is_legal() -> None:
    for lead_input in LeadInput:
        legal = [(old, new) for old, i, new in LEGAL if i is lead_input]
        assert legal, f"{lead_input} is never legal"
        assert {new for _, new in legal} == {target(lead_input)}
        assert sources(lead_input) == {old for old, _ in legal}


def test_the_statuses_are_the_models_and_a_lead_is_born_waiting() -> None:
    assert {status.value for status in LeadStatus} == set(Lead.Status.values)
    assert Lead._meta.get_field("status").default == INITIAL_STATUS


# ------------------------------------------------------------------------------------------ properties

inputs = st.sampled_from(list(LeadInput))
statuses = st.sampled_from(list(LeadStatus))

# What a lead goes through, then shuffled and with inputs duplicated (a redelivered task, a late report).
LEAD_STORIES = [
    [I.CLAIMED, I.ATTEMPT_RETRY, I.CLAIMED, I.ATTEMPT_DONE],
    [I.DEFERRED, I.CLAIMED, I.ATTEMPT_DONE, I.REDECIDED_RETRY, I.CLAIMED, I.ATTEMPT_DONE],
    [I.CLAIMED, I.OPTED_OUT, I.ATTEMPT_DONE],
    [I.CLAIMED, I.ON_DNC],
    [I.ON_DNC],
    [I.CLAIMED, I.ATTEMPT_DONE, I.REDECIDED_DONE, I.OPTED_OUT],
]


@st.composite
def shuffled_duplicated_stories(draw: st.DrawFn) -> list[LeadInput]:
    story = draw(st.sampled_from(LEAD_STORIES))
    duplicated = [lead_input for lead_input in story for _ in range(draw(st.integers(1, 3)))]
    extra = draw(st.lists(st.sampled_from(story), max_size=4))
    return draw(st.permutations(duplicated + extra))


def fold(
    sequence: list[LeadInput], start: LeadStatus = INITIAL_STATUS
) -> tuple[LeadStatus, list[LeadTransition]]:
    status = start
    steps = []
    for lead_input in sequence:
        step = transition(status, lead_input)
        assert step.old is status
        steps.append(step)
        status = step.new
    return status, steps


any_sequences = st.lists(inputs, max_size=30)


@given(statuses, st.one_of(any_sequences, shuffled_duplicated_stories()))
def test_a_lead_is_always_in_exactly_one_status_and_refusals_change_nothing(
    start: LeadStatus, sequence: list[LeadInput]
) -> None:
    final, steps = fold(sequence, start)
    assert final in LeadStatus
    for step in steps:
        assert step.applied == ((step.old, step.lead_input) in TRANSITIONS)
        if step.applied:
            assert step.new is TRANSITIONS[(step.old, step.lead_input)]
        else:
            assert step.new is step.old
            assert step.reason == ("terminal" if step.old is S.SUPPRESSED else "illegal")


@given(st.one_of(any_sequences, shuffled_duplicated_stories()))
def test_nothing_leaves_suppressed(sequence: list[LeadInput]) -> None:
    final, steps = fold([I.ON_DNC, *sequence])
    assert final is S.SUPPRESSED
    assert all(not step.applied for step in steps[1:])


@given(st.one_of(any_sequences, shuffled_duplicated_stories()))
def test_only_a_claim_starts_an_attempt_and_only_its_end_or_a_stop_leaves_it(
    sequence: list[LeadInput],
) -> None:
    _, steps = fold(sequence)
    for step in steps:
        if step.applied and step.new is S.IN_ATTEMPT:
            assert (step.old, step.lead_input) == (S.WAITING, I.CLAIMED)
        if step.applied and step.old is S.IN_ATTEMPT:
            assert step.lead_input in {I.ATTEMPT_RETRY, I.ATTEMPT_DONE, I.ON_DNC, I.OPTED_OUT}


@given(statuses, inputs)
def test_transition_never_raises_and_is_consistent_with_sources_and_target(
    status: LeadStatus, lead_input: LeadInput
) -> None:
    step = transition(status, lead_input)
    assert step.applied == (status in sources(lead_input))
    if step.applied:
        assert step.new is target(lead_input)


# ------------------------------------------------------------------------------------------ the services


def _leads(count: int) -> list[Lead]:
    tenant = make_tenant()
    campaign = make_campaign(tenant)
    return [
        Lead.objects.create(
            campaign=campaign,
            contact=make_contact(tenant, f"+1212555{1000 + n:04d}"),
            next_due_at=datetime.now(UTC),
        )
        for n in range(count)
    ]


@pytest.mark.django_db
def test_lead_move_applies_a_legal_move_in_memory_and_refuses_and_logs_an_illegal_one(caplog) -> None:
    [lead] = _leads(1)

    assert lead_move(lead=lead, by=I.CLAIMED).applied
    assert lead.status == Lead.Status.IN_ATTEMPT
    with caplog.at_level(logging.WARNING, logger="campaigns.services.leads"):
        refused = lead_move(lead=lead, by=I.CLAIMED)
    assert (refused.applied, refused.reason, lead.status) == (False, "illegal", Lead.Status.IN_ATTEMPT)
    assert "claimed refused in status in_attempt" in caplog.text
    lead.refresh_from_db()
    assert lead.status == Lead.Status.WAITING  # in memory only: the caller saves


@pytest.mark.django_db
def test_leads_move_updates_only_the_rows_the_table_allows(caplog) -> None:
    waiting, claimed, suppressed = _leads(3)
    Lead.objects.filter(pk=claimed.pk).update(status=Lead.Status.IN_ATTEMPT, next_due_at=None)
    Lead.objects.filter(pk=suppressed.pk).update(status=Lead.Status.SUPPRESSED, next_due_at=None)

    with caplog.at_level(logging.WARNING, logger="campaigns.services.leads"):
        moved = leads_move(
            lead_ids=[waiting.pk, claimed.pk, suppressed.pk], by=I.CLAIMED, next_due_at=None, wait_reason=""
        )

    assert moved == 1
    assert dict(Lead.objects.values_list("pk", "status")) == {
        waiting.pk: Lead.Status.IN_ATTEMPT,
        claimed.pk: Lead.Status.IN_ATTEMPT,
        suppressed.pk: Lead.Status.SUPPRESSED,
    }
    assert "2 of 3 lead(s): claimed refused" in caplog.text
