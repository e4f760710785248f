"""Reads for transfers (``campaigns.models_transfers``): a tenant's targets with their reps, a call's
transfers. Every query is scoped by tenant."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from django.db.models import Count, Prefetch, Q, QuerySet

from campaigns.models_transfers import (
    LIVE_TRANSFER_STATES,
    CallTransfer,
    CampaignTransferTarget,
    TransferTarget,
    TransferTargetMember,
)
from tenants.models import Tenant


def campaign_transfer_links_prefetch(prefix: str = "") -> Prefetch[Any]:
    """A campaign's targets in one query, for the call brief (``prefix``: the path to the campaign)."""
    return Prefetch(
        f"{prefix}transfer_target_links", queryset=CampaignTransferTarget.objects.select_related("target")
    )


def transfer_target_list(*, tenant: Tenant) -> QuerySet[TransferTarget]:
    """The tenant's targets, each with its reps (``live`` on each: its live transfers now)."""
    members = TransferTargetMember.objects.annotate(
        live=Count(
            "transfers",
            filter=Q(transfers__state__in=LIVE_TRANSFER_STATES, transfers__attempt__ended_at__isnull=True),
        )
    ).order_by("position", "pk")
    return (
        TransferTarget.objects.filter(tenant=tenant)
        .prefetch_related(Prefetch("members", queryset=members))
        .order_by("name", "pk")
    )


def call_transfer_list(*, tenant: Tenant, attempt_id: UUID | None = None) -> QuerySet[CallTransfer]:
    transfers = CallTransfer.objects.filter(tenant=tenant).select_related("target", "member")
    if attempt_id is not None:
        transfers = transfers.filter(attempt_id=attempt_id)
    return transfers.order_by("-created_at", "-pk")
