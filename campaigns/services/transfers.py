"""Writes for transfers to humans: targets and their reps, a campaign's targets, the pick, the request from
the agent, and the Stasis app's reports.

The pick (:func:`transfer_pick`) locks the target row (``select_for_update``), so two calls wanting the same
group are picked one after the other: each sees the other's :class:`CallTransfer` row and a rep at their cap
(``max_concurrent`` live transfers, counted from the rows, never from a counter that can drift) is skipped.
Round robin: the pick starts after the rep picked last (``TransferTarget.last_position``).

A request (:func:`transfer_request`, the media worker's ``media.transfer_request`` task) picks, writes the
row and, once committed, pushes the ``transfer`` command to the Stasis app serving the attempt's PBX. When
nobody can be picked, the media worker is told at once on the call's reply channel
(``{"type": "transfer", "state": "failed", "reason": "no_target"|"all_busy"}``) and the agent says so.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any
from uuid import UUID

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Count

from campaigns.models import CallAttempt, Campaign
from campaigns.models_transfers import (
    LIVE_TRANSFER_STATES,
    TRANSFER_ENDPOINT_MAX_LENGTH,
    TRANSFER_NAME_MAX_LENGTH,
    TRANSFER_TRANSITIONS,
    CallTransfer,
    CampaignTransferTarget,
    TransferKind,
    TransferMode,
    TransferState,
    TransferTarget,
    TransferTargetMember,
)
from campaigns.phone import normalize_phone_number
from campaigns.services.briefs import endpoint_for_attempt
from orchestrator.errors import InvalidInput
from orchestrator.redis_client import get_redis
from telephony.stasis import command_key
from tenants.models import Tenant
from wire.brief import reply_channel

logger = logging.getLogger(__name__)

MAX_MEMBERS = 50
MAX_CAP = 100
SUMMARY_MAX_CHARS = 1000
_QUEUE_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


# ------------------------------------------------------------------------------------------ validation
def _name(value: object, field: str = "name") -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput(field, "is required")
    text = value.strip()
    if len(text) > TRANSFER_NAME_MAX_LENGTH:
        raise InvalidInput(field, f"at most {TRANSFER_NAME_MAX_LENGTH} characters")
    return text


def validate_queue_endpoint(value: object, field: str = "endpoint") -> str:
    """``Local/<queue>@<context>`` with a context of ``settings.TRANSFER_QUEUE_CONTEXTS``: a tenant never
    names an arbitrary dial string (it would reach any trunk or channel technology the PBX has)."""
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput(field, "is required for a queue: Local/<queue>@<context>")
    text = value.strip()
    contexts = list(settings.TRANSFER_QUEUE_CONTEXTS)
    tech, _, rest = text.partition("/")
    queue, _, context = rest.partition("@")
    if (
        len(text) > TRANSFER_ENDPOINT_MAX_LENGTH
        or tech != "Local"
        or not _QUEUE_NAME.match(queue)
        or context not in contexts
    ):
        allowed = ", ".join(contexts) or "none configured"
        raise InvalidInput(field, f"must be Local/<queue>@<context> with a context of: {allowed}")
    return text


def _mode(value: object, field: str = "mode") -> str:
    if value not in TransferMode.values:
        raise InvalidInput(field, f"must be one of {', '.join(TransferMode.values)}")
    return str(value)


def _member_fields(data: Mapping[str, Any], field: str, *, partial: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if not partial or "name" in data:
        out["name"] = _name(data.get("name"), f"{field}.name")
    if not partial or "number" in data:
        out["number"] = normalize_phone_number(str(data.get("number") or ""), field=f"{field}.number")
    if "max_concurrent" in data or not partial:
        cap = data.get("max_concurrent", 1)
        if isinstance(cap, bool) or not isinstance(cap, int) or not 1 <= cap <= MAX_CAP:
            raise InvalidInput(f"{field}.max_concurrent", f"must be a whole number from 1 to {MAX_CAP}")
        out["max_concurrent"] = cap
    if "position" in data:
        position = data["position"]
        if isinstance(position, bool) or not isinstance(position, int) or position < 0:
            raise InvalidInput(f"{field}.position", "must be a whole number, 0 or more")
        out["position"] = position
    if "enabled" in data:
        if not isinstance(data["enabled"], bool):
            raise InvalidInput(f"{field}.enabled", "must be true or false")
        out["enabled"] = data["enabled"]
    return out


def _check_kind_fields(kind: str, number: str, endpoint: str) -> tuple[str, str]:
    if kind == TransferKind.NUMBER:
        return normalize_phone_number(number or "", field="number"), ""
    if kind == TransferKind.QUEUE:
        return "", validate_queue_endpoint(endpoint)
    return "", ""


# ------------------------------------------------------------------------------------------- targets
@transaction.atomic
def transfer_target_create(
    *,
    tenant: Tenant,
    name: str,
    kind: str = TransferKind.NUMBER,
    number: str = "",
    endpoint: str = "",
    mode: str = TransferMode.WARM,
    members: Iterable[Mapping[str, Any]] = (),
) -> TransferTarget:
    """A new target; InvalidInput naming the field (``members[2].number`` for a rep) changes nothing."""
    name = _name(name)
    if kind not in TransferKind.values:
        raise InvalidInput("kind", f"must be one of {', '.join(TransferKind.values)}")
    mode = _mode(mode)
    number, endpoint = _check_kind_fields(kind, number, endpoint)
    member_rows = [_member_fields(m, f"members[{i}]") for i, m in enumerate(members)]
    if kind != TransferKind.GROUP and member_rows:
        raise InvalidInput("members", "only a group has members")
    if len(member_rows) > MAX_MEMBERS:
        raise InvalidInput("members", f"at most {MAX_MEMBERS}")
    if TransferTarget.objects.filter(tenant=tenant, name=name).exists():
        raise InvalidInput("name", "a transfer target with this name exists")
    try:
        with transaction.atomic():
            target = TransferTarget.objects.create(
                tenant=tenant, name=name, kind=kind, number=number, endpoint=endpoint, mode=mode
            )
    except IntegrityError as exc:
        raise InvalidInput("name", "a transfer target with this name exists") from exc
    for index, row in enumerate(member_rows):
        row.setdefault("position", index)
        TransferTargetMember.objects.create(target=target, **row)
    return target


@transaction.atomic
def transfer_target_update(*, target: TransferTarget, **changes: Any) -> TransferTarget:
    """Change some of name, number, endpoint, mode (the kind stays: make a new target instead)."""
    unknown = set(changes) - {"name", "number", "endpoint", "mode"}
    if unknown:
        raise InvalidInput(sorted(unknown)[0], "cannot be changed")
    if "name" in changes:
        name = _name(changes["name"])
        if (
            TransferTarget.objects.filter(tenant_id=target.tenant_id, name=name)
            .exclude(pk=target.pk)
            .exists()
        ):
            raise InvalidInput("name", "a transfer target with this name exists")
        target.name = name
    if "mode" in changes:
        target.mode = _mode(changes["mode"])
    number = changes.get("number", target.number)
    endpoint = changes.get("endpoint", target.endpoint)
    target.number, target.endpoint = _check_kind_fields(target.kind, number, endpoint)
    target.save()
    return target


def transfer_target_delete(*, target: TransferTarget) -> None:
    """Gone from its campaigns; its past transfers keep their number (target set to null)."""
    target.delete()


@transaction.atomic
def transfer_member_add(*, target: TransferTarget, data: Mapping[str, Any]) -> TransferTargetMember:
    if target.kind != TransferKind.GROUP:
        raise InvalidInput("target", "only a group has members")
    if target.members.count() >= MAX_MEMBERS:
        raise InvalidInput("members", f"at most {MAX_MEMBERS}")
    fields = _member_fields(data, "member")
    if "position" not in fields:
        last = target.members.order_by("-position").values_list("position", flat=True).first()
        fields["position"] = 0 if last is None else last + 1
    return TransferTargetMember.objects.create(target=target, **fields)


def transfer_member_update(*, member: TransferTargetMember, data: Mapping[str, Any]) -> TransferTargetMember:
    fields = _member_fields(data, "member", partial=True)
    for key, value in fields.items():
        setattr(member, key, value)
    member.save()
    return member


def transfer_member_remove(*, member: TransferTargetMember) -> None:
    member.delete()


@transaction.atomic
def campaign_set_transfer_targets(*, campaign: Campaign, target_ids: Iterable[object]) -> None:
    """The campaign's targets, in this order (the first is the agent's default). Ids of another tenant's
    targets are refused like unknown ones."""
    ids: list[int] = []
    for index, raw in enumerate(target_ids):
        if isinstance(raw, bool) or not isinstance(raw, int):
            raise InvalidInput(f"transfer_targets[{index}]", "must be a transfer target id")
        if raw in ids:
            raise InvalidInput(f"transfer_targets[{index}]", "is listed twice")
        ids.append(raw)
    found = set(
        TransferTarget.objects.filter(tenant_id=campaign.tenant_id, pk__in=ids).values_list("pk", flat=True)
    )
    for index, pk in enumerate(ids):
        if pk not in found:
            raise InvalidInput(f"transfer_targets[{index}]", "no such transfer target")
    # (A campaign read with its targets prefetched, e.g. by the API's list, shows the new ones.)
    getattr(campaign, "_prefetched_objects_cache", {}).pop("transfer_target_links", None)
    CampaignTransferTarget.objects.filter(campaign=campaign).delete()
    CampaignTransferTarget.objects.bulk_create(
        CampaignTransferTarget(campaign=campaign, target_id=pk, position=i) for i, pk in enumerate(ids)
    )


# ---------------------------------------------------------------------------------------------- pick
def _live_counts(member_ids: list[int]) -> dict[int, int]:
    """Live transfers per rep: in a live state and their attempt not ended (DESIGN.md §5 rule 1)."""
    rows = (
        CallTransfer.objects.filter(
            member_id__in=member_ids, state__in=LIVE_TRANSFER_STATES, attempt__ended_at__isnull=True
        )
        .values("member_id")
        .annotate(n=Count("pk"))
    )
    return {row["member_id"]: row["n"] for row in rows}


def transfer_pick(
    *, attempt: CallAttempt, target: TransferTarget, mode: str | None = None, summary: str = ""
) -> CallTransfer:
    """The transfer row for ``attempt`` to ``target`` (call inside a transaction). A group picks the next
    enabled rep under their cap, round robin, under a lock on the target row; nobody free: the row is
    written ``failed`` with reason ``all_busy``."""
    locked = TransferTarget.objects.select_for_update().get(pk=target.pk)
    transfer = CallTransfer(
        tenant_id=attempt.tenant_id,
        attempt=attempt,
        target=locked,
        mode=mode or locked.mode,
        summary=summary[:SUMMARY_MAX_CHARS],
    )
    if locked.kind == TransferKind.NUMBER:
        transfer.number = locked.number
        transfer.endpoint = endpoint_for_attempt(attempt)(locked.number)
    elif locked.kind == TransferKind.QUEUE:
        try:  # checked again when used: the operator may have withdrawn the context since
            transfer.endpoint = validate_queue_endpoint(locked.endpoint)
        except InvalidInput:
            transfer.endpoint = ""
    else:
        members = list(locked.members.filter(enabled=True).order_by("position", "pk"))
        live = _live_counts([m.pk for m in members])
        # Round robin: the reps after the one picked last first, then from the top.
        after = [m for m in members if m.position > locked.last_position]
        ordered = after + [m for m in members if m.position <= locked.last_position]
        chosen = next((m for m in ordered if live.get(m.pk, 0) < m.max_concurrent), None)
        if chosen is None:
            transfer.state = TransferState.FAILED
            transfer.reason = "all_busy" if members else "no_member"
        else:
            transfer.member = chosen
            transfer.number = chosen.number
            transfer.endpoint = endpoint_for_attempt(attempt)(chosen.number)
            locked.last_position = chosen.position
            locked.save(update_fields=["last_position", "updated_at"])
    if transfer.state == TransferState.DIALING and not transfer.endpoint:
        transfer.state, transfer.reason = TransferState.FAILED, "no_endpoint"
    transfer.save()
    return transfer


# ------------------------------------------------------------------------------------------- request
def transfer_request(
    *,
    attempt_id: UUID,
    tenant_id: int,
    target_id: int | None = None,
    mode: str | None = None,
    reason: str = "",
) -> CallTransfer | None:
    """The agent asks for a human (the ``media.transfer_request`` task): pick among the campaign's targets
    (``target_id``, else its first), write the row, and on commit send the Stasis app the ``transfer``
    command. ``CallAttempt.DoesNotExist`` unless the attempt is the tenant's; None when the campaign has no
    such target (the media worker is told)."""
    if mode is not None and mode not in TransferMode.values:
        raise InvalidInput("mode", f"must be one of {', '.join(TransferMode.values)}")
    with transaction.atomic():
        attempt = (
            CallAttempt.objects.select_related("campaign", "pbx")
            .select_for_update(of=("self",))
            .get(pk=attempt_id, tenant_id=tenant_id)
        )
        links = CampaignTransferTarget.objects.filter(campaign_id=attempt.campaign_id).select_related(
            "target"
        )
        if target_id is not None:
            links = links.filter(target_id=target_id)
        link = links.order_by("position", "pk").first()
        if link is None or attempt.ended_at is not None or attempt.pbx_id is None:
            why = "no_target" if link is None else "call_ended"
            transaction.on_commit(lambda: _tell_media(str(attempt_id), "failed", why))
            return None
        transfer = transfer_pick(attempt=attempt, target=link.target, mode=mode, summary=reason)
        if transfer.state == TransferState.FAILED:
            failed_reason = transfer.reason
            transaction.on_commit(lambda: _tell_media(str(attempt_id), "failed", failed_reason))
            return transfer
        command = {
            "action": "transfer",
            "call_id": str(attempt.pk),
            "transfer_id": str(transfer.pk),
            "mode": transfer.mode,
            "number": transfer.number or transfer.endpoint,
            "endpoint": transfer.endpoint,
            "caller_id": attempt.campaign.caller_id,
            "timeout_s": settings.TRANSFER_TIMEOUT_S,
            "summary": transfer.summary,
        }
        key = command_key(attempt.pbx_id)
        transaction.on_commit(lambda: _send_command(key, command))
    logger.info(
        "attempt %s: transfer %s (%s) to %s",
        attempt_id,
        transfer.pk,
        transfer.mode,
        transfer.number or transfer.endpoint,
    )
    return transfer


def _send_command(key: str, command: dict[str, Any]) -> None:
    get_redis().rpush(key, json.dumps(command, separators=(",", ":")))


def _tell_media(call_id: str, state: str, reason: str) -> None:
    payload = {"type": "transfer", "state": state, "reason": reason, "transfer_id": ""}
    get_redis().publish(reply_channel(call_id), json.dumps(payload, separators=(",", ":")))


# --------------------------------------------------------------------------------------- the reports
def transfer_apply_update(
    *, attempt_id: UUID, transfer_id: str, state: str, at: datetime, reason: str = ""
) -> bool:
    """The Stasis app's report of a transfer's state (``TransferUpdated``); True when it changed the row. A
    report that its state table does not allow (a late or repeated one) changes nothing."""
    try:
        pk = int(transfer_id)
    except ValueError:
        return False
    transfer = CallTransfer.objects.select_for_update().filter(pk=pk, attempt_id=attempt_id).first()
    if transfer is None:
        logger.warning("attempt %s: report for unknown transfer %r", attempt_id, transfer_id)
        return False
    if state == transfer.state or state not in TRANSFER_TRANSITIONS.get(transfer.state, frozenset()):
        if state not in ("dialing", transfer.state):
            logger.info("attempt %s: transfer %s: %s -> %s refused", attempt_id, pk, transfer.state, state)
        return False
    transfer.state = state
    fields = ["state"]
    if reason:
        transfer.reason = reason[:64]
        fields.append("reason")
    if state == TransferState.BRIEFING:
        transfer.answered_at = at
        fields.append("answered_at")
    elif state == TransferState.CONNECTED:
        transfer.connected_at = at
        fields.append("connected_at")
    else:
        transfer.ended_at = at
        fields.append("ended_at")
    transfer.save(update_fields=fields)
    return True


def transfers_live_for(member: TransferTargetMember) -> int:
    """The rep's live transfers now (for the API and the portal)."""
    return _live_counts([member.pk]).get(member.pk, 0)


__all__ = [
    "campaign_set_transfer_targets",
    "transfer_apply_update",
    "transfer_member_add",
    "transfer_member_remove",
    "transfer_member_update",
    "transfer_pick",
    "transfer_request",
    "transfer_target_create",
    "transfer_target_delete",
    "transfer_target_update",
    "transfers_live_for",
    "validate_queue_endpoint",
]
