"""Reads of recordings, always scoped to one tenant."""

from __future__ import annotations

from uuid import UUID

from django.db.models import QuerySet

from recordings.models import Recording
from tenants.models import Tenant


def recording_list(
    *, tenant: Tenant, campaign_id: int | None = None, attempt_id: UUID | None = None
) -> QuerySet[Recording]:
    """The tenant's recordings (newest first), of one campaign or one attempt when given."""
    recordings = Recording.objects.filter(tenant=tenant).select_related("attempt")
    if campaign_id is not None:
        recordings = recordings.filter(attempt__campaign_id=campaign_id)
    if attempt_id is not None:
        recordings = recordings.filter(attempt_id=attempt_id)
    return recordings.order_by("-created_at", "-pk")


def recording_for_download(*, tenant: Tenant, recording_id: int) -> Recording | None:
    """The tenant's stored recording (its file is there), or None: another tenant's, deleted, not stored."""
    return (
        Recording.objects.filter(tenant=tenant, pk=recording_id, state=Recording.State.STORED)
        .exclude(storage_key="")
        .first()
    )
