"""The message status table: forward only, final statuses absorbing, whatever order and however often
provider statuses arrive; the keywords."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from messaging.keywords import Keyword, keyword_of
from messaging.lifecycle import FINAL_STATUSES, MessageInput, MessageStatus, transition

ORDER = [MessageStatus.QUEUED, MessageStatus.SENDING, MessageStatus.SENT]


def test_the_usual_path_and_late_statuses():
    assert transition("queued", "accepted").status == MessageStatus.SENDING
    assert transition("sending", "sent").status == MessageStatus.SENT
    assert transition("sent", "delivered").status == MessageStatus.DELIVERED
    assert transition("delivered", "sent").reason == "terminal"
    assert transition("sent", "accepted").reason == "stale"
    assert transition("queued", "delivered").status == MessageStatus.DELIVERED  # intermediate ones lost
    assert transition("sending", "blocked").reason == "illegal"
    assert transition("queued", "opted_out").status == MessageStatus.OPTED_OUT


@given(st.lists(st.sampled_from(list(MessageInput)), max_size=12))
def test_any_sequence_never_moves_backwards_nor_out_of_a_final_status(events):
    status = MessageStatus.QUEUED
    for event in events:
        result = transition(status, event)
        if status in FINAL_STATUSES:
            assert not result.ok and result.status == status
        if result.ok:
            assert status not in FINAL_STATUSES
            if result.status in ORDER:
                assert ORDER.index(result.status) > ORDER.index(status)
            status = result.status
        else:
            assert result.status == status


def test_keywords():
    assert keyword_of(" stop ") == (Keyword.STOP, "STOP")
    assert keyword_of("Stop all") == (Keyword.STOP, "STOPALL")
    assert keyword_of("unsubscribe!") == (Keyword.STOP, "UNSUBSCRIBE")
    assert keyword_of("yes") == (Keyword.START, "YES")
    assert keyword_of("Info") == (Keyword.HELP, "INFO")
    assert keyword_of("please stop calling") is None
    assert keyword_of("1") is None
