"""Writes for campaigns: creation, settings, status (start, pause, resume) and deletion."""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from campaigns.amd import (
    NOTSURE_ACTIONS,
    VOICEMAIL_ACTIONS,
    VOICEMAIL_LEAVE_MESSAGE,
    VOICEMAIL_TEXT_MAX,
    validate_amd_settings,
    voicemail_audio_from_wav,
)
from campaigns.lifecycle import LIVE_STATES, AttemptOutcome
from campaigns.models import (
    MAX_RECORDING_RETENTION_DAYS,
    AgentProfile,
    Campaign,
    VoicemailAudio,
    default_calling_windows,
    default_retry_delays,
)
from campaigns.phone import normalize_phone_number
from campaigns.results import validate_result_fields
from campaigns.services.transfers import campaign_set_transfer_targets
from campaigns.variables import campaign_missing_variables
from orchestrator.errors import InvalidInput, full_clean_or_raise
from tenants.models import Tenant

MAX_RING_TIMEOUT = 300  # seconds; a PBX or carrier gives up long before
MAX_RETRY_DELAY = 30 * 86_400


def validate_calling_windows(data: object) -> dict[str, Any]:
    """The windows JSON, checked by campaigns.windows.parse_windows; InvalidInput naming the bad key."""
    from campaigns.windows import parse_windows  # lazy: keeps the model layer free of the windows module

    try:
        parse_windows(data)
    except ValueError as exc:
        raise InvalidInput("calling_windows", str(exc).removeprefix("calling_windows: ")) from exc
    if not isinstance(data, dict):  # parse_windows takes any Mapping; JSON needs a dict
        raise InvalidInput("calling_windows", "must be an object of weekday -> intervals")
    return data


def validate_retry_delays(data: object) -> dict[str, int]:
    """Outcome → seconds; the keys must be attempt outcomes, the values whole seconds (0 = right away)."""
    if not isinstance(data, dict):
        raise InvalidInput("retry_delays", "must be an object of outcome -> seconds")
    outcomes = {outcome.value for outcome in AttemptOutcome}
    for key, value in data.items():
        if key not in outcomes:
            raise InvalidInput(
                "retry_delays", f"{key!r} is not an outcome (one of {', '.join(sorted(outcomes))})"
            )
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_RETRY_DELAY:
            raise InvalidInput(
                "retry_delays", f"{key}: must be whole seconds between 0 and {MAX_RETRY_DELAY}"
            )
    return dict(data)


def validate_compliance(fields: dict[str, Any]) -> dict[str, Any]:
    """The compliance fields among ``fields`` (prior consent, AI disclosure), checked and normalised."""
    from campaigns.disclosure import validate_disclosure
    from campaigns.models import ConsentKind

    cleaned: dict[str, Any] = {}
    if "requires_prior_consent" in fields:
        if not isinstance(fields["requires_prior_consent"], bool):
            raise InvalidInput("requires_prior_consent", "must be true or false")
        cleaned["requires_prior_consent"] = fields["requires_prior_consent"]
    if "prior_consent_kind" in fields:
        if fields["prior_consent_kind"] not in ConsentKind.values:
            raise InvalidInput("prior_consent_kind", f"must be one of {', '.join(ConsentKind.values)}")
        cleaned["prior_consent_kind"] = fields["prior_consent_kind"]
    if "disclosure" in fields:
        try:
            cleaned["disclosure"] = validate_disclosure(fields["disclosure"])
        except ValueError as exc:
            raise InvalidInput("disclosure", str(exc)) from exc
    return cleaned


def _validate(*, tenant: Tenant, fields: dict[str, Any]) -> dict[str, Any]:
    """Checks the fields given (those absent are not checked) and returns them normalised."""
    cleaned = dict(fields)
    if "agent" in fields:
        agent = fields["agent"]
        # Tenant isolation (DESIGN.md §5 rule 7): another tenant's profile is "not found", not "forbidden".
        if not isinstance(agent, AgentProfile) or agent.tenant_id != tenant.pk:
            raise InvalidInput("agent", "no such agent profile in this tenant")
    if "name" in fields and not str(fields["name"]).strip():
        raise InvalidInput("name", "must not be empty")
    if "caller_id" in fields:
        cleaned["caller_id"] = normalize_phone_number(fields["caller_id"], field="caller_id")
    if "calling_windows" in fields:
        cleaned["calling_windows"] = validate_calling_windows(fields["calling_windows"])
    if "retry_delays" in fields:
        cleaned["retry_delays"] = validate_retry_delays(fields["retry_delays"])
    if "max_concurrent_calls" in fields:
        cap = fields["max_concurrent_calls"]
        if not isinstance(cap, int) or cap < 1:
            raise InvalidInput("max_concurrent_calls", "must be at least 1")
        if cap > tenant.max_concurrent_calls:
            raise InvalidInput(
                "max_concurrent_calls",
                f"{cap} exceeds the tenant's limit of {tenant.max_concurrent_calls} concurrent calls",
            )
    if "max_attempts" in fields and (
        not isinstance(fields["max_attempts"], int) or fields["max_attempts"] < 1
    ):
        raise InvalidInput("max_attempts", "must be at least 1")
    if "result_fields" in fields:
        cleaned["result_fields"] = validate_result_fields(fields["result_fields"])
    if "ring_timeout" in fields:
        ring_timeout = fields["ring_timeout"]
        if not isinstance(ring_timeout, int) or not 1 <= ring_timeout <= MAX_RING_TIMEOUT:
            raise InvalidInput("ring_timeout", f"must be between 1 and {MAX_RING_TIMEOUT} seconds")
    cleaned.update(validate_compliance(fields))
    if "recording_mode" in fields and fields["recording_mode"] not in Campaign.RecordingMode.values:
        raise InvalidInput("recording_mode", f"must be one of {', '.join(Campaign.RecordingMode.values)}")
    if "recording_retention_days" in fields:
        days = fields["recording_retention_days"]
        whole = isinstance(days, int) and not isinstance(days, bool)
        if not whole or not 1 <= days <= MAX_RECORDING_RETENTION_DAYS:
            raise InvalidInput(
                "recording_retention_days", f"must be whole days between 1 and {MAX_RECORDING_RETENTION_DAYS}"
            )
    _validate_amd(fields, cleaned)
    for field in ("starts_at", "ends_at"):
        value = fields.get(field)
        if value is not None and (not isinstance(value, datetime) or value.tzinfo is None):
            raise InvalidInput(field, "must be a timezone-aware date and time")
    return cleaned


def _validate_amd(fields: dict[str, Any], cleaned: dict[str, Any]) -> None:
    """Answering-machine detection and voicemail settings (campaigns/amd.py)."""
    if "amd_enabled" in fields and not isinstance(fields["amd_enabled"], bool):
        raise InvalidInput("amd_enabled", "must be true or false")
    if "amd_settings" in fields:
        cleaned["amd_settings"] = validate_amd_settings(fields["amd_settings"])
    if "amd_notsure_action" in fields and fields["amd_notsure_action"] not in NOTSURE_ACTIONS:
        raise InvalidInput("amd_notsure_action", f"must be one of {', '.join(NOTSURE_ACTIONS)}")
    if "voicemail_action" in fields and fields["voicemail_action"] not in VOICEMAIL_ACTIONS:
        raise InvalidInput("voicemail_action", f"must be one of {', '.join(VOICEMAIL_ACTIONS)}")
    if "voicemail_message_text" in fields:
        text = fields["voicemail_message_text"]
        if not isinstance(text, str) or len(text) > VOICEMAIL_TEXT_MAX:
            raise InvalidInput(
                "voicemail_message_text", f"must be text of at most {VOICEMAIL_TEXT_MAX} characters"
            )
        # Spoken word for word by the agent: control characters have no place in it (prompt input).
        cleaned["voicemail_message_text"] = "".join(
            ch for ch in text if ch.isprintable() or ch in "\n "
        ).strip()


def campaign_set_voicemail_audio(*, campaign: Campaign, wav: bytes | None) -> Campaign:
    """Store the campaign's recorded voicemail message from an uploaded WAV (checked and converted to the
    media worker's 16-bit mono 24 kHz PCM, at most 60 s), or remove it (``wav`` None)."""
    converted = voicemail_audio_from_wav(wav) if wav is not None else None
    with transaction.atomic():
        VoicemailAudio.objects.filter(campaign=campaign).delete()
        if converted is None:
            campaign.voicemail_audio_sha256, campaign.voicemail_audio_seconds = "", None
        else:
            pcm, seconds = converted
            digest = hashlib.sha256(pcm).hexdigest()
            VoicemailAudio.objects.create(campaign=campaign, pcm=pcm, sha256=digest, seconds=seconds)
            campaign.voicemail_audio_sha256, campaign.voicemail_audio_seconds = digest, seconds
        campaign.save(update_fields=["voicemail_audio_sha256", "voicemail_audio_seconds", "updated_at"])
    return campaign


def campaign_create(
    *,
    tenant: Tenant,
    agent: AgentProfile,
    name: str,
    caller_id: str,
    calling_windows: dict[str, Any] | None = None,
    starts_at: datetime | None = None,
    ends_at: datetime | None = None,
    max_concurrent_calls: int | None = None,
    max_attempts: int = 3,
    retry_delays: dict[str, int] | None = None,
    ring_timeout: int = 30,
    priority: int = 0,
    recording_mode: str = Campaign.RecordingMode.NEVER,
    recording_retention_days: int = 90,
    transfer_targets: list[int] | None = None,
    amd_enabled: bool = False,
    amd_settings: dict[str, Any] | None = None,
    amd_notsure_action: str = "human",
    voicemail_action: str = "hang_up",
    voicemail_message_text: str = "",
    result_fields: list[dict[str, Any]] | None = None,
    **compliance: Any,
) -> Campaign:
    """A new draft campaign. ``max_concurrent_calls`` defaults to (and may not exceed) the tenant's cap.
    ``compliance``: ``requires_prior_consent``, ``prior_consent_kind``, ``disclosure`` (model defaults).

    The caps are checked here for a clear error; the dispatcher still enforces both the campaign's and the
    tenant's cap at claim time, so a tenant cap lowered later is honoured too.
    """
    fields = _validate(
        tenant=tenant,
        fields={
            "agent": agent,
            "name": name,
            "caller_id": caller_id,
            "calling_windows": default_calling_windows() if calling_windows is None else calling_windows,
            "starts_at": starts_at,
            "ends_at": ends_at,
            "max_concurrent_calls": tenant.max_concurrent_calls
            if max_concurrent_calls is None
            else max_concurrent_calls,
            "max_attempts": max_attempts,
            "retry_delays": default_retry_delays() if retry_delays is None else retry_delays,
            "ring_timeout": ring_timeout,
            "priority": priority,
            **_compliance_fields(compliance),
            "recording_mode": recording_mode,
            "recording_retention_days": recording_retention_days,
            "amd_enabled": amd_enabled,
            "amd_settings": amd_settings or {},
            "amd_notsure_action": amd_notsure_action,
            "voicemail_action": voicemail_action,
            "voicemail_message_text": voicemail_message_text,
            "result_fields": result_fields or [],
        },
    )
    campaign = Campaign(tenant=tenant, **fields)
    full_clean_or_raise(campaign)
    with transaction.atomic():
        campaign.save()
        if transfer_targets:
            campaign_set_transfer_targets(campaign=campaign, target_ids=transfer_targets)
    return campaign


_COMPLIANCE_FIELDS = frozenset({"requires_prior_consent", "prior_consent_kind", "disclosure"})


def _compliance_fields(given: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(given) - _COMPLIANCE_FIELDS)
    if unknown:
        raise TypeError(f"campaign_create() got an unexpected keyword argument {unknown[0]!r}")
    return given


_UPDATABLE = _COMPLIANCE_FIELDS | frozenset(
    {
        "agent",
        "name",
        "caller_id",
        "calling_windows",
        "starts_at",
        "ends_at",
        "max_concurrent_calls",
        "max_attempts",
        "retry_delays",
        "ring_timeout",
        "priority",
        "recording_mode",
        "recording_retention_days",
        "amd_enabled",
        "amd_settings",
        "amd_notsure_action",
        "voicemail_action",
        "voicemail_message_text",
        "result_fields",
    }
)


def campaign_update(*, campaign: Campaign, **changes: Any) -> Campaign:
    """Change campaign settings (not its status: that has services of its own), validated as on create."""
    targets = changes.pop("transfer_targets", None)
    unknown = sorted(set(changes) - _UPDATABLE)
    if unknown:
        raise InvalidInput(unknown[0], "cannot be changed here")
    cleaned = _validate(tenant=campaign.tenant, fields=changes)
    for field, value in cleaned.items():
        setattr(campaign, field, value)
    full_clean_or_raise(campaign)
    with transaction.atomic():
        campaign.save(update_fields=[*cleaned, "updated_at"])
        if targets is not None:
            campaign_set_transfer_targets(campaign=campaign, target_ids=targets)
    return campaign


# Status changes: (allowed from, to). Repeating a change that already happened is a no-op (a retried
# request must not fail), every other change is refused with InvalidInput("status", ...).
_START = (frozenset({Campaign.Status.DRAFT}), Campaign.Status.RUNNING)
_PAUSE = (frozenset({Campaign.Status.RUNNING}), Campaign.Status.PAUSED)
_RESUME = (frozenset({Campaign.Status.PAUSED}), Campaign.Status.RUNNING)


def _campaign_move(*, campaign: Campaign, action: str, allowed_from: frozenset[str], to: str) -> Campaign:
    with transaction.atomic():
        # The row lock orders concurrent status changes of one campaign (no check-then-act).
        locked = Campaign.objects.select_for_update(no_key=True).get(pk=campaign.pk)
        if locked.status == to:
            return locked
        if locked.status not in allowed_from:
            raise InvalidInput("status", f"cannot {action} a {locked.status} campaign")
        if to == Campaign.Status.RUNNING and locked.ends_at is not None and locked.ends_at <= timezone.now():
            raise InvalidInput("ends_at", "has passed: move it later before running the campaign")
        if (
            to == Campaign.Status.RUNNING
            and locked.voicemail_action == VOICEMAIL_LEAVE_MESSAGE
            and not locked.voicemail_message_text
            and not locked.voicemail_audio_sha256
        ):
            raise InvalidInput(
                "voicemail_message_text", "a message (text or recorded audio) is needed to leave one"
            )
        if to == Campaign.Status.RUNNING:
            # A contact lacking a variable the agent's texts use would hear a blank ("Hi , this is...").
            missing = campaign_missing_variables(campaign=locked)
            if missing.lacking:
                raise InvalidInput("variables", missing.describe())
        locked.status = to
        locked.save(update_fields=["status", "updated_at"])
    return locked


def campaign_start(*, campaign: Campaign) -> Campaign:
    """draft → running. The periodic dispatch sweep picks its due leads up. Refused (``variables``) while a
    contact to call lacks a variable the agent's instructions or greeting use (campaigns/variables.py)."""
    return _campaign_move(campaign=campaign, action="start", allowed_from=_START[0], to=_START[1])


def campaign_pause(*, campaign: Campaign) -> Campaign:
    """running → paused. Calls in progress go on; queued attempts are cancelled by the originate re-check."""
    return _campaign_move(campaign=campaign, action="pause", allowed_from=_PAUSE[0], to=_PAUSE[1])


def campaign_resume(*, campaign: Campaign) -> Campaign:
    """paused → running, checked like :func:`campaign_start`."""
    return _campaign_move(campaign=campaign, action="resume", allowed_from=_RESUME[0], to=_RESUME[1])


def campaign_delete(*, campaign: Campaign) -> None:
    """Delete a campaign with its leads and attempts; not while it runs or has calls in progress."""
    with transaction.atomic():
        locked = Campaign.objects.select_for_update(no_key=True).get(pk=campaign.pk)
        if locked.status == Campaign.Status.RUNNING:
            raise InvalidInput("status", "cannot delete a running campaign: pause it first")
        if locked.call_attempts.filter(state__in=[state.value for state in LIVE_STATES]).exists():
            raise InvalidInput("status", "the campaign has calls in progress")
        locked.delete()
