"""Opening a stored recording's file for a download."""

from __future__ import annotations

import logging

from django.core.files import File

from recordings.models import Recording
from recordings.storage import recordings_storage

logger = logging.getLogger(__name__)


def recording_open(*, recording: Recording) -> File | None:
    """The stored file, open for reading (the caller streams and closes it), or None when it is missing."""
    if recording.state != Recording.State.STORED or not recording.storage_key:
        return None
    try:
        return recordings_storage().open(recording.storage_key, "rb")
    except (FileNotFoundError, OSError) as exc:
        logger.warning(
            "recording %s: file %s cannot be opened: %r", recording.name, recording.storage_key, exc
        )
        return None
