"""Recordings: started when the campaign says so, fetched from the PBX when finished, deleted after retention.

* :func:`recording_on_call_event` is a call-event hook (``settings.TELEPHONY_EVENT_HOOKS``): the attempt sink
  runs it in the transaction that applies each call event. ``CallBridged`` of a campaign that records every
  call asks the Stasis app to record (the command list, after commit); ``CallRecording`` ``finished`` makes
  the :class:`~recordings.models.Recording` row and, after commit, the fetch task.
* :func:`recording_fetch` downloads the file from the PBX over ARI (bounded in time and size), stores it in
  the recordings storage, records its size, SHA-256 and duration, and then deletes it on the PBX.
* :func:`recordings_sweep` deletes what is past its ``delete_after`` (the campaign's retention): the file,
  and the row is marked deleted (kept as the record that the call was recorded).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import wave
from datetime import datetime, timedelta
from uuid import UUID

from django.conf import settings
from django.core.files.base import ContentFile
from django.db import transaction
from django.db.models import F
from django.utils import timezone
from redis.exceptions import RedisError

from campaigns.models import AttemptEvent, CallAttempt, Campaign
from campaigns.services.attempts import attempt_event_append
from campaigns.services.pbx import pbx_ari_client
from orchestrator.redis_client import get_redis
from recordings.models import Recording
from recordings.storage import recordings_storage
from telephony.ari import AriError, AriTerminalError
from telephony.events import CallBridged, CallEvent, CallRecording
from telephony.stasis import command_key

logger = logging.getLogger(__name__)

FILE_EXTENSIONS = {
    "wav": "wav",
    "wav16": "wav",
    "sln": "sln",
    "sln16": "sln16",
    "ulaw": "ulaw",
    "alaw": "alaw",
}


# ------------------------------------------------------------------------------------------ call events
def recording_on_call_event(*, attempt_id: UUID, event: CallEvent) -> None:
    """The attempt sink's hook, inside the transaction that applied ``event`` (see the module docstring)."""
    if isinstance(event, CallBridged):
        _record_if_always(attempt_id=attempt_id)
    elif isinstance(event, CallRecording) and event.state == "finished":
        recording_finished(attempt_id=attempt_id, name=event.name, duration=event.duration, at=event.at)


def recording_command(*, attempt_id: UUID, pbx_id: int) -> None:
    """Ask the Stasis app serving the PBX row to record the call (after the transaction commits)."""
    command = json.dumps({"action": "record", "call_id": str(attempt_id)})

    def push() -> None:
        try:
            get_redis().rpush(command_key(pbx_id), command)
        except RedisError as exc:
            logger.warning("attempt %s: record command not sent (%s)", attempt_id, exc)

    transaction.on_commit(push)


def _record_if_always(*, attempt_id: UUID) -> None:
    row = (
        CallAttempt.objects.filter(pk=attempt_id, campaign__recording_mode=Campaign.RecordingMode.ALWAYS)
        .values_list("pbx_id", flat=True)
        .first()
    )
    if row is not None:
        recording_command(attempt_id=attempt_id, pbx_id=row)


def recording_finished(*, attempt_id: UUID, name: str, duration: int, at: datetime) -> Recording | None:
    """The call's recording finished on the PBX: its row (once per name, kept until the campaign's
    retention is over) and, after commit, the task that fetches the file."""
    attempt = CallAttempt.objects.select_related("campaign").filter(pk=attempt_id).first()
    if attempt is None:
        return None
    recording, created = Recording.objects.get_or_create(
        name=name[:200],
        defaults={
            "tenant_id": attempt.tenant_id,
            "attempt": attempt,
            "duration": float(duration) if duration else None,
            "delete_after": at + timedelta(days=attempt.campaign.recording_retention_days),
        },
    )
    if created:
        from recordings.tasks import fetch_recording  # the task module imports this one

        pk = recording.pk
        transaction.on_commit(lambda: fetch_recording.delay(pk))
    return recording


def recording_consent(*, attempt_id: UUID, tenant_id: int, granted: bool, at: datetime) -> bool:
    """The callee's answer to "may we record this call?", in the attempt's log (the evidence)."""
    with transaction.atomic():
        attempt = (
            CallAttempt.objects.select_for_update(no_key=True, of=("self",))
            .filter(pk=attempt_id, tenant_id=tenant_id)
            .first()
        )
        if attempt is None:
            raise CallAttempt.DoesNotExist(attempt_id)
        attempt_event_append(
            attempt=attempt,
            kind=AttemptEvent.Kind.NOTE,
            type="recording_consent",
            data={"granted": granted},
            at=at,
        )
    return True


# ------------------------------------------------------------------------------------------ fetching
def wav_seconds(data: bytes) -> float | None:
    """The duration of a WAV file's audio, None when it is not a WAV file that can be read."""
    try:
        with wave.open(io.BytesIO(data)) as wav:
            rate = wav.getframerate()
            return round(wav.getnframes() / rate, 3) if rate else None
    except (wave.Error, EOFError):
        return None


def _fail(recording: Recording, error: str) -> Recording:
    Recording.objects.filter(pk=recording.pk, state=Recording.State.PENDING).update(
        state=Recording.State.FAILED, error=error[:300]
    )
    recording.refresh_from_db()
    return recording


def recording_fetch(*, recording_id: int) -> Recording | None:
    """Bring a finished recording's file from the PBX into the recordings storage, then delete it on the PBX.

    Raises ``AriRetryableError`` when the PBX could not be read now (the task retries); a file too large,
    one the PBX no longer has, or a call without a PBX marks the recording failed. Safe to run twice: only a
    pending recording is fetched, and only one run's file is kept."""
    recording = Recording.objects.select_related("attempt__pbx").filter(pk=recording_id).first()
    if recording is None or recording.state != Recording.State.PENDING:
        return recording
    attempt = recording.attempt
    if attempt.pbx is None:
        return _fail(recording, "the call has no PBX")
    Recording.objects.filter(pk=recording.pk).update(fetch_tries=F("fetch_tries") + 1)
    client = pbx_ari_client(pbx=attempt.pbx)
    try:
        data = client.download_stored_recording(
            recording.name,
            max_bytes=settings.RECORDINGS_MAX_BYTES,
            timeout_s=settings.RECORDINGS_FETCH_TIMEOUT_S,
        )
    except AriTerminalError as exc:
        return _fail(recording, f"not fetched: {exc}")
    if data is None:
        return _fail(recording, "the PBX has no such recording")
    storage = recordings_storage()
    extension = FILE_EXTENSIONS.get(recording.format, "bin")
    key = storage.save(
        f"{attempt.tenant_id}/{attempt.campaign_id}/{recording.name}.{extension}", ContentFile(data)
    )
    duration = wav_seconds(data) if extension == "wav" else None
    stored = Recording.objects.filter(pk=recording.pk, state=Recording.State.PENDING).update(
        state=Recording.State.STORED,
        storage_key=key,
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        duration=duration if duration is not None else recording.duration,
        stored_at=timezone.now(),
        error="",
    )
    if not stored:  # another run stored it first, or the sweep deleted it meanwhile: keep no second copy
        storage.delete(key)
    try:
        client.delete_stored_recording(recording.name)
    except AriError as exc:  # the copy is safe here; the PBX's one is only disk space there
        logger.warning("recording %s: stored, but not deleted on the PBX: %s", recording.name, exc)
    recording.refresh_from_db()
    logger.info("recording %s: %s (%s bytes)", recording.name, recording.state, recording.size)
    return recording


def recording_give_up(*, recording_id: int, error: str) -> None:
    """The fetch task ran out of tries: the recording is failed (it stays on the PBX for an operator)."""
    recording = Recording.objects.filter(pk=recording_id).first()
    if recording is not None:
        _fail(recording, error)


# ------------------------------------------------------------------------------------------ retention
def recording_delete(*, recording: Recording, now: datetime | None = None) -> bool:
    """Delete the recording's file (storage, and the PBX's copy if it was never fetched) and mark the row
    deleted. False when the file could not be deleted now (the sweep tries again)."""
    now = now or timezone.now()
    if recording.storage_key:
        try:
            recordings_storage().delete(recording.storage_key)
        except Exception as exc:  # noqa: BLE001 - any backend's failure: keep the row live, retry next sweep
            logger.warning("recording %s: file not deleted (%r); will retry", recording.name, exc)
            return False
    elif recording.state == Recording.State.PENDING and recording.attempt.pbx is not None:
        try:
            pbx_ari_client(pbx=recording.attempt.pbx).delete_stored_recording(recording.name)
        except AriError as exc:
            logger.warning("recording %s: not deleted on the PBX: %s", recording.name, exc)
    Recording.objects.filter(pk=recording.pk, deleted_at__isnull=True).update(
        state=Recording.State.DELETED, deleted_at=now, storage_key=""
    )
    return True


def recordings_sweep(*, now: datetime | None = None, limit: int = 500) -> int:
    """Delete up to ``limit`` recordings past their retention; how many were deleted."""
    now = now or timezone.now()
    due = (
        Recording.objects.select_related("attempt__pbx")
        .filter(deleted_at__isnull=True, delete_after__lte=now)
        .order_by("delete_after")[:limit]
    )
    return sum(1 for recording in due if recording_delete(recording=recording, now=now))
