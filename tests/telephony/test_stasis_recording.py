"""The call controller's bridge recording: the ``record`` command, and ARI recording events as call events."""

from __future__ import annotations

from typing import Any

from telephony.events import CallEnded, CallRecording
from telephony.stasis.connection import _ignorable
from telephony.stasis.intents import DestroyBridge, HangUp, PublishReply, RecordBridge, StopRecording

from .test_stasis_controller import CALL, Driver, destroyed, of, transfer_command

NAME = f"rec-{CALL}"


def recording_event(kind: str, name: str = NAME, **extra: Any) -> dict[str, Any]:
    return {
        "type": kind,
        "recording": {"name": name, "format": "wav", "target_uri": f"bridge:bridge-{CALL}", **extra},
    }


def test_record_is_refused_until_the_callee_is_bridged_with_the_agent() -> None:
    d = Driver()
    d.answered_call()  # answered, media not bridged yet
    out = d.command({"action": "record", "call_id": CALL})
    assert not of(out, RecordBridge)
    assert of(out, PublishReply)[0].payload == {
        "type": "recording",
        "state": "refused",
        "reason": "not_bridged",
    }
    assert not of(d.command({"action": "record", "call_id": "no-such-call"}), RecordBridge)


def test_record_starts_a_mixed_bridge_recording_once_and_reports_its_events() -> None:
    d = Driver()
    d.bridged()
    out = d.command({"action": "record", "call_id": CALL})
    record = of(out, RecordBridge)[0]
    assert (record.bridge_id, record.name, record.format) == (f"bridge-{CALL}", NAME, "wav")
    assert not of(d.answer(record, 201), CallRecording)  # the event says it started
    again = d.command({"action": "record", "call_id": CALL})
    assert not of(again, RecordBridge) and of(again, PublishReply)[0].payload["reason"] == "already_recording"
    out = d.event(recording_event("RecordingStarted", state="recording", duration=0))
    (started,) = of(out, CallRecording)
    assert (started.call_id, started.name, started.state) == (CALL, NAME, "started")
    assert of(out, PublishReply)[0].payload == {"type": "recording", "state": "started"}
    # The call ends: the media leg goes, the recording is stopped (its bridge still there), then the bridge.
    out = d.event(destroyed(CALL), after=20)
    assert of(out, CallEnded)
    out = d.answer(of(out, HangUp)[0], 204)
    stop = of(out, StopRecording)[0]
    assert stop.name == NAME and not of(out, DestroyBridge)
    destroy = of(d.answer(stop, 204), DestroyBridge)[0]
    d.answer(destroy, 204)
    out = d.event(recording_event("RecordingFinished", state="done", duration=20))
    (finished,) = of(out, CallRecording)
    assert (finished.call_id, finished.state, finished.duration) == (CALL, "finished", 20)
    assert not of(out, PublishReply)  # nobody is on the call to tell


def test_a_refused_record_request_is_a_failed_recording() -> None:
    d = Driver()
    d.bridged()
    record = of(d.command({"action": "record", "call_id": CALL}), RecordBridge)[0]
    out = d.answer(record, 409, {"message": "Recording already exists"})
    (failed,) = of(out, CallRecording)
    assert (failed.state, failed.cause) == ("failed", "http_409")
    assert of(out, PublishReply)[0].payload["state"] == "failed"
    out = d.event(recording_event("RecordingFailed", cause="disk full"))
    assert of(out, CallRecording)[0].cause == "disk full"


def test_recordings_not_ours_are_ignored_and_recording_events_are_not_dropped_unread() -> None:
    d = Driver()
    d.bridged()
    assert not of(d.event(recording_event("RecordingFinished", name="voicemail-42")), CallRecording)
    assert not of(d.event(recording_event("RecordingFinished", name="rec-")), CallRecording)
    for kind in ("RecordingStarted", "RecordingFinished", "RecordingFailed"):
        assert not _ignorable('{"type": "%s", "recording": {"name": "rec-x"}}' % kind)  # noqa: UP031


def test_the_recording_goes_on_through_a_transfer_the_bridge_stays() -> None:
    d = Driver()
    d.bridged()
    d.ctl.connected = True
    d.answer(of(d.command({"action": "record", "call_id": CALL}), RecordBridge)[0], 201)
    out = d.command(transfer_command(timeout_s=20))
    # a transfer never touches the call's recording: no stop, and the bridge is kept
    assert not of(out, DestroyBridge) and d.ctl.calls[CALL].recording == NAME
