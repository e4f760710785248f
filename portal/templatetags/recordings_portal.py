"""Template helpers of the portal's recordings: a call's recordings, the campaign form's recording choices."""

from __future__ import annotations

from typing import Any

from django import template

from campaigns.models import CallAttempt, Campaign
from recordings.selectors import recording_list

register = template.Library()


@register.inclusion_tag("portal/recordings/_call.html")
def call_recordings(attempt: CallAttempt) -> dict[str, Any]:
    """The recordings of a call (its page; ``attempt`` is already the viewer's tenant's)."""
    recordings = list(recording_list(tenant=attempt.tenant, attempt_id=attempt.pk))
    return {"attempt": attempt, "recordings": recordings}


@register.simple_tag
def recording_mode_choices() -> list[tuple[str, str]]:
    return [(str(value), str(label)) for value, label in Campaign.RecordingMode.choices]
