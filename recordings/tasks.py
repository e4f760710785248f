"""Recording tasks (thin: the work is in :mod:`recordings.services.recordings`)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from celery import Task, shared_task
from django.core.exceptions import ImproperlyConfigured

from campaigns.models import CallAttempt
from recordings.services import recordings as service
from telephony.ari import AriRetryableError
from wire import tasks as media_tasks

logger = logging.getLogger(__name__)

#: Pauses between fetch tries when the PBX cannot be read (then the recording is failed).
FETCH_RETRY_DELAYS_S: tuple[int, ...] = (5, 30, 120, 600, 1800)


@shared_task(bind=True, name="recordings.tasks.fetch_recording", max_retries=None, ignore_result=True)
def fetch_recording(self: Task, recording_id: int) -> str:
    """Bring the finished recording's file from the PBX into storage; retried while the PBX is unreachable."""
    try:
        recording = service.recording_fetch(recording_id=recording_id)
    except (AriRetryableError, ImproperlyConfigured) as exc:
        tries = self.request.retries
        if tries >= len(FETCH_RETRY_DELAYS_S) or isinstance(exc, ImproperlyConfigured):
            service.recording_give_up(recording_id=recording_id, error=f"could not fetch: {exc}")
            return "failed"
        logger.warning("recording %s: fetch failed (%s); retrying", recording_id, exc)
        raise self.retry(countdown=FETCH_RETRY_DELAYS_S[tries]) from exc
    return recording.state if recording is not None else "missing"


@shared_task(name="recordings.tasks.sweep", ignore_result=True)
def sweep() -> int:
    """Delete the recordings past their campaign's retention (beat: ``recordings-sweep``)."""
    return service.recordings_sweep()


@shared_task(name=media_tasks.RECORDING_CONSENT, ignore_result=True)
def media_recording_consent(call_id: str, tenant_id: int, granted: bool, at: float, **_extra: Any) -> str:
    """The agent's ``record_consent`` tool: the callee's answer, in the attempt's log."""
    try:
        attempt_id = UUID(str(call_id))
        tenant = int(str(tenant_id))
        when = datetime.fromtimestamp(float(at), tz=UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        logger.warning(
            "%s: call %r of tenant %r: unusable; dropped", media_tasks.RECORDING_CONSENT, call_id, tenant_id
        )
        return "dropped"
    try:
        service.recording_consent(attempt_id=attempt_id, tenant_id=tenant, granted=granted is True, at=when)
    except CallAttempt.DoesNotExist:
        return "dropped"
    return "done"
