"""Call outcome classification (PROTOCOLS.md A3): one test per trace recorded on a real Asterisk 22.10.1,
table tests of ``classify`` for PJSIP-style events, and robustness to duplicated/replayed events."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from telephony.outcomes import CallEndTracker, CallOutcome, classify
from tests.asterisk_reference import load_trace, trace_paths

# Every recorded trace and what its originated (or, inbound, dialplan-entered) channel should classify as.
TRACE_OUTCOMES = {
    "outbound_busy": CallOutcome.BUSY,
    "outbound_congestion": CallOutcome.CONGESTION,
    "outbound_rejected_cause21": CallOutcome.REJECTED,
    "outbound_no_answer_timeout5": CallOutcome.NO_ANSWER,
    "outbound_answered_callee_hangs_up_unbridged": CallOutcome.ANSWERED,
    "outbound_answered_bridged_slin16_app_hangs_up": CallOutcome.ANSWERED,
    "outbound_answered_bridged_slin24_dtmf_callee_hangs_up": CallOutcome.ANSWERED,
    "outbound_answered_bridged_slin_transfer_to_human": CallOutcome.ANSWERED,
    "outbound_answered_bridged_ulaw_app_hangs_up": CallOutcome.ANSWERED,
    "inbound_stasis_from_dialplan": CallOutcome.ANSWERED,
}


def _id(event: dict[str, Any], key: str) -> str | None:
    obj = event.get(key)
    return obj.get("id") if isinstance(obj, dict) else None


def call_channel(trace: dict[str, Any]) -> tuple[str, bool]:
    """The channel whose outcome the trace shows, and whether it entered Stasis from the dialplan."""
    body = trace["request"].get("originate_body")
    if body:
        return body["id"], False
    first_start = next(event for event in trace["events"] if event["type"] == "StasisStart")
    return first_start["channel"]["id"], True


def channel_events(trace: dict[str, Any], channel_id: str) -> list[dict[str, Any]]:
    return [e for e in trace["events"] if channel_id in (_id(e, "channel"), _id(e, "peer"))]


def test_every_trace_is_covered() -> None:
    assert {path.stem for path in trace_paths()} == set(TRACE_OUTCOMES)


@pytest.mark.parametrize(("name", "expected"), sorted(TRACE_OUTCOMES.items()))
def test_recorded_trace(name: str, expected: CallOutcome) -> None:
    trace = load_trace(name)
    channel_id, inbound = call_channel(trace)
    tracker = CallEndTracker(ends_on_stasis_end=inbound)
    for event in channel_events(trace, channel_id):
        tracker.feed(event)
    assert tracker.ended
    assert tracker.outcome() is expected

    # Fed the whole stream, a tracker that knows its channel filters out the ;2 half and the media leg.
    filtering = CallEndTracker(channel_id, ends_on_stasis_end=inbound)
    for event in trace["events"]:
        filtering.feed(event)
    assert (filtering.ended, filtering.outcome(), filtering.cause) == (True, expected, tracker.cause)


def test_recorded_details() -> None:
    """The fields the caller stores, from the traces where they are telling."""
    busy = load_trace("outbound_busy")
    tracker = CallEndTracker(busy["request"]["originate_body"]["id"])
    for event in busy["events"]:
        tracker.feed(event)
    assert (tracker.dialstatus, tracker.cause, tracker.destroyed_cause_txt) == ("BUSY", 0, "Unknown")

    rejected = load_trace("outbound_rejected_cause21")
    tracker = CallEndTracker(rejected["request"]["originate_body"]["id"])
    for event in rejected["events"]:
        tracker.feed(event)
    # Dial says NOANSWER; only the cause says it was a rejection (pitfall 13).
    assert (tracker.dialstatus, tracker.cause, tracker.hangup_request_cause) == ("NOANSWER", 21, 21)
    assert tracker.destroyed_cause_txt == "Call Rejected"

    timeout = load_trace("outbound_no_answer_timeout5")
    tracker = CallEndTracker(timeout["request"]["originate_body"]["id"])
    for event in timeout["events"]:
        tracker.feed(event)
    assert (tracker.dialstatus, tracker.cause, tracker.answered) == ("RINGING", 19, False)


def test_app_hangup_soft_cause_is_a_flag_not_a_cause() -> None:
    trace = load_trace("outbound_answered_bridged_ulaw_app_hangs_up")
    tracker = CallEndTracker(trace["request"]["originate_body"]["id"])
    for event in trace["events"]:
        tracker.feed(event)
    assert tracker.hangup_request_cause is None  # the DELETE's "cause: 32, soft: true" was ignored
    assert tracker.cause == 16


def test_inbound_call_ends_on_stasis_end() -> None:
    trace = load_trace("inbound_stasis_from_dialplan")
    channel_id, _ = call_channel(trace)
    without = CallEndTracker(channel_id)
    for event in trace["events"]:
        without.feed(event)
    # No ChannelDestroyed ever reaches the app for a dialplan-entered call (A4).
    assert without.left_stasis and not without.ended


@pytest.mark.parametrize("name", sorted(TRACE_OUTCOMES))
def test_duplicated_and_replayed_events_give_the_same_result(name: str) -> None:
    trace = load_trace(name)
    channel_id, inbound = call_channel(trace)
    events = channel_events(trace, channel_id)
    once = CallEndTracker(ends_on_stasis_end=inbound)
    for event in events:
        once.feed(event)
    doubled = CallEndTracker(ends_on_stasis_end=inbound)
    for event in events:
        doubled.feed(event)
        doubled.feed(event)
    replayed = CallEndTracker(ends_on_stasis_end=inbound)
    for event in events + events:  # a reconnect replaying what was already seen
        replayed.feed(event)
    for tracker in (doubled, replayed):
        assert (tracker.outcome(), tracker.cause, tracker.dialstatus, tracker.ended) == (
            once.outcome(),
            once.cause,
            once.dialstatus,
            once.ended,
        )


# ------------------------------------------------------------------------------------------ classify

PJSIP_CASES = [
    # (cause, tech_cause = SIP status, dialstatus, expected): a PJSIP trunk channel carries the cause itself
    (17, 486, "BUSY", CallOutcome.BUSY),
    (17, 600, "BUSY", CallOutcome.BUSY),
    (21, 603, "NOANSWER", CallOutcome.REJECTED),
    (21, 403, "NOANSWER", CallOutcome.REJECTED),
    (21, None, "NOANSWER", CallOutcome.REJECTED),
    (1, 404, "NOANSWER", CallOutcome.INVALID_NUMBER),
    (1, 604, "NOANSWER", CallOutcome.INVALID_NUMBER),
    (28, 484, "NOANSWER", CallOutcome.INVALID_NUMBER),
    (22, None, "NOANSWER", CallOutcome.INVALID_NUMBER),
    (3, 420, "CHANUNAVAIL", CallOutcome.UNREACHABLE),
    (20, None, "CHANUNAVAIL", CallOutcome.UNREACHABLE),
    (27, 502, "NOANSWER", CallOutcome.UNREACHABLE),
    (19, 480, "NOANSWER", CallOutcome.NO_ANSWER),
    (19, None, "RINGING", CallOutcome.NO_ANSWER),  # originate timeout (22.8+)
    (18, 408, "NOANSWER", CallOutcome.NO_ANSWER),
    (34, 503, "CONGESTION", CallOutcome.CONGESTION),
    (38, 500, "NOANSWER", CallOutcome.CONGESTION),
    (42, None, "", CallOutcome.CONGESTION),
    (58, 488, "NOANSWER", CallOutcome.FAILED),  # no common codec: our side
    (127, 487, "NOANSWER", CallOutcome.FAILED),
    (102, 504, "", CallOutcome.FAILED),
    # cause 21 from our trunk's authentication, not the callee: retryable failure, not "never retry"
    (21, 401, "NOANSWER", CallOutcome.FAILED),
    (21, 407, "NOANSWER", CallOutcome.FAILED),
    # cause 0: the dialstatus decides (a Local channel's busy / congestion, a pre-22.8 timeout)
    (0, None, "BUSY", CallOutcome.BUSY),
    (0, None, "CONGESTION", CallOutcome.CONGESTION),
    (0, None, "CHANUNAVAIL", CallOutcome.UNREACHABLE),
    (0, None, "NOANSWER", CallOutcome.NO_ANSWER),
    (0, None, "RINGING", CallOutcome.NO_ANSWER),
    (0, None, "CANCEL", CallOutcome.CANCELLED),
    (0, None, "ANSWER", CallOutcome.ANSWERED),
    (None, None, "busy", CallOutcome.BUSY),  # case-insensitive; no ChannelDestroyed seen yet
    (0, None, "", CallOutcome.FAILED),
    (None, None, "", CallOutcome.FAILED),
    (0, None, "PROGRESS", CallOutcome.FAILED),
    # cause 0 with a telling SIP status: the SIP status is the tiebreak over a coarse dialstatus
    (0, 404, "NOANSWER", CallOutcome.INVALID_NUMBER),
    (0, 484, "", CallOutcome.INVALID_NUMBER),
    (0, 603, "NOANSWER", CallOutcome.REJECTED),
    (0, 486, "", CallOutcome.BUSY),
    # normal clearing before answer: a specific dialstatus if any, else no_answer
    (16, None, "", CallOutcome.NO_ANSWER),
    (16, None, "RINGING", CallOutcome.NO_ANSWER),
    (31, None, "", CallOutcome.NO_ANSWER),
    (16, None, "BUSY", CallOutcome.BUSY),
    (16, None, "CANCEL", CallOutcome.CANCELLED),
    (16, None, "CHANUNAVAIL", CallOutcome.UNREACHABLE),
    (16, None, "ANSWER", CallOutcome.ANSWERED),  # answered but StasisStart never reached us (A11)
    (16, 486, "", CallOutcome.BUSY),
    (99, None, "BUSY", CallOutcome.FAILED),  # an unexpected non-zero cause is not overridden
]


@pytest.mark.parametrize(("cause", "tech_cause", "dialstatus", "expected"), PJSIP_CASES)
def test_classify(cause: int | None, tech_cause: int | None, dialstatus: str, expected: CallOutcome) -> None:
    assert classify(answered=False, cause=cause, dialstatus=dialstatus, tech_cause=tech_cause) is expected


@pytest.mark.parametrize(("cause", "tech_cause", "dialstatus", "_"), PJSIP_CASES)
def test_answered_wins_over_everything(
    cause: int | None, tech_cause: int | None, dialstatus: str, _: object
) -> None:
    assert (
        classify(answered=True, cause=cause, dialstatus=dialstatus, tech_cause=tech_cause)
        is CallOutcome.ANSWERED
    )


def test_call_outcome_values_match_attempt_outcomes() -> None:
    from campaigns.lifecycle import AttemptOutcome  # the test may look across the boundary; the code may not

    assert {o.value for o in CallOutcome} <= {o.value for o in AttemptOutcome}


def test_telephony_outcomes_import_nothing_from_campaigns() -> None:
    source = (Path(__file__).resolve().parents[2] / "telephony/outcomes.py").read_text()
    assert "campaigns" not in [
        line.split()[1].split(".")[0] for line in source.splitlines() if line.startswith(("import ", "from "))
    ]


# ------------------------------------------------------------------------------- PJSIP-style streams

CH = "attempt-1"


def pjsip_stream(*, cause: int, tech_cause: int, dialstatus: str) -> list[dict[str, Any]]:
    """What a PJSIP trunk channel reports: the cause and SIP status on the originated channel itself."""
    return [
        {"type": "Dial", "peer": {"id": CH}, "dialstatus": ""},
        {"type": "ChannelStateChange", "channel": {"id": CH, "state": "Ringing"}},
        {"type": "Dial", "peer": {"id": CH}, "dialstatus": "RINGING"},
        {"type": "ChannelHangupRequest", "channel": {"id": CH}, "cause": cause, "tech_cause": tech_cause},
        {"type": "Dial", "peer": {"id": CH}, "dialstatus": dialstatus},
        {
            "type": "ChannelDestroyed",
            "channel": {"id": CH},
            "cause": cause,
            "cause_txt": "x",
            "tech_cause": tech_cause,
        },
    ]


@pytest.mark.parametrize(
    ("cause", "tech_cause", "dialstatus", "expected"),
    [
        (17, 486, "BUSY", CallOutcome.BUSY),
        (21, 603, "NOANSWER", CallOutcome.REJECTED),
        (1, 404, "NOANSWER", CallOutcome.INVALID_NUMBER),
        (3, 420, "CHANUNAVAIL", CallOutcome.UNREACHABLE),
        (19, 480, "NOANSWER", CallOutcome.NO_ANSWER),
        (34, 503, "CONGESTION", CallOutcome.CONGESTION),
    ],
)
def test_pjsip_event_stream(cause: int, tech_cause: int, dialstatus: str, expected: CallOutcome) -> None:
    tracker = CallEndTracker(CH)
    for event in pjsip_stream(cause=cause, tech_cause=tech_cause, dialstatus=dialstatus):
        tracker.feed(event)
    assert (tracker.ended, tracker.outcome(), tracker.cause, tracker.tech_cause) == (
        True,
        expected,
        cause,
        tech_cause,
    )


def test_a_late_progress_status_does_not_replace_a_final_one() -> None:
    tracker = CallEndTracker(CH)
    tracker.feed({"type": "Dial", "peer": {"id": CH}, "dialstatus": "BUSY"})
    tracker.feed({"type": "Dial", "peer": {"id": CH}, "dialstatus": "RINGING"})
    tracker.feed({"type": "ChannelDestroyed", "channel": {"id": CH}, "cause": 0, "cause_txt": "Unknown"})
    assert (tracker.dialstatus, tracker.outcome()) == ("BUSY", CallOutcome.BUSY)


def test_events_after_channel_destroyed_change_nothing() -> None:
    tracker = CallEndTracker(CH)
    tracker.feed({"type": "ChannelDestroyed", "channel": {"id": CH}, "cause": 19, "cause_txt": "x"})
    tracker.feed({"type": "StasisStart", "channel": {"id": CH}})
    tracker.feed({"type": "ChannelDestroyed", "channel": {"id": CH}, "cause": 16})
    assert (tracker.outcome(), tracker.cause, tracker.answered) == (CallOutcome.NO_ANSWER, 19, False)


def test_malformed_events_are_ignored() -> None:
    tracker = CallEndTracker()
    for event in (
        {},
        {"type": "Dial", "dialstatus": None},
        {"type": "ChannelHangupRequest", "cause": "not a number"},
        {"type": "ChannelDestroyed", "cause": None, "cause_txt": 5},
    ):
        tracker.feed(event)
    assert tracker.ended
    assert (tracker.cause, tracker.dialstatus, tracker.outcome()) == (None, "", CallOutcome.FAILED)
