"""Reads for inbound calls."""

from __future__ import annotations

from collections.abc import Iterable

from flows.models import InboundCall


def inbound_live_channel_ids(*, pbx_ids: Iterable[int] | None = None) -> set[str]:
    """The channel ids of inbound calls not ended yet (of these PBX rows' Stasis app, when given)."""
    calls = InboundCall.objects.filter(status=InboundCall.Status.LIVE)
    if pbx_ids is not None:
        calls = calls.filter(pbx_id__in=list(pbx_ids))
    return set(calls.values_list("channel_id", flat=True))
