"""Recording call events through the attempt sink (in its threads): a note in the attempt's log, and the
recordings app's hook makes the row when the recording finished."""

from __future__ import annotations

from datetime import timedelta

import pytest

from campaigns.models import AttemptEvent, CallAttempt
from campaigns.sink import AttemptEventSink
from recordings.models import Recording
from telephony.events import CallRecording
from tests.campaigns.test_dispatch import NOW
from tests.campaigns.test_sink import claimed_attempt
from tests.orm import in_thread

pytestmark = pytest.mark.django_db(transaction=True)


async def test_recording_events_are_noted_and_a_finished_one_becomes_a_recording(monkeypatch) -> None:
    fetched: list[int] = []
    monkeypatch.setattr("recordings.tasks.fetch_recording.delay", fetched.append)
    attempt: CallAttempt = await in_thread(claimed_attempt)
    call_id, name = str(attempt.pk), f"rec-{attempt.pk}"
    sink = AttemptEventSink(on_ended=lambda _tenant: None)
    try:
        await sink.handle(CallRecording(call_id, name, "started", NOW))
        await sink.handle(CallRecording(call_id, name, "finished", NOW + timedelta(seconds=20), duration=20))
    finally:
        sink.close()
    notes = await in_thread(
        lambda: [
            e.data
            for e in AttemptEvent.objects.filter(attempt_id=attempt.pk, type="recording").order_by("at")
        ]
    )
    assert notes == [
        {"name": name, "state": "started", "duration": 0},
        {"name": name, "state": "finished", "duration": 20},
    ]
    recording = await in_thread(lambda: Recording.objects.get(name=name))
    assert recording.attempt_id == attempt.pk and recording.state == "pending" and recording.duration == 20
    assert fetched == [recording.pk]  # after the commit
