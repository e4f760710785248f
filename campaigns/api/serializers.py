"""REST serializers: output shapes, and input shapes that only check types. The rules (numbers, windows,
caps, same-tenant references) are the services' (campaigns/services), whose InvalidInput becomes a 400
naming the field (orchestrator/api.py). Serializers never save: views call the services.
"""

from __future__ import annotations

from typing import Any

from django.db.models import Model, QuerySet
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from campaigns import selectors
from campaigns.lifecycle import AttemptOutcome, AttemptState
from campaigns.models import (
    MAX_RECORDING_RETENTION_DAYS,
    AgentProfile,
    AttemptEvent,
    CallAttempt,
    Campaign,
    Contact,
    ContactConsent,
    ContactImport,
    DncEntry,
    Lead,
    Pbx,
)
from orchestrator.api import MAX_POSITIVE_INT, ObjectIdField, OutputModelSerializer
from tenants.models import Tenant


@extend_schema_field(OpenApiTypes.INT)
class TenantScopedPrimaryKeyField(serializers.PrimaryKeyRelatedField):
    """A reference by id to a row of the request's tenant; any other id is "does not exist" (400)."""

    def __init__(self, *, scoped: str, **kwargs: Any) -> None:
        self.scoped = scoped  # name of the selector giving the tenant's rows
        kwargs.setdefault(
            "error_messages", {"does_not_exist": "No such object in this tenant (id {pk_value})."}
        )
        super().__init__(**kwargs)

    def get_queryset(self) -> QuerySet[Model]:
        tenant: Tenant = self.context["tenant"]
        queryset: QuerySet[Model] = getattr(selectors, self.scoped)(tenant=tenant)
        return queryset


# ------------------------------------------------------------------------------------------------- agents


class AgentProfileSerializer(OutputModelSerializer[AgentProfile]):
    class Meta:
        model = AgentProfile
        fields = [
            "id",
            "name",
            "instructions",
            "greeting",
            "voice",
            "model",
            "language",
            "tools",
            "transfer_numbers",
            "turn_detection",
            "created_at",
        ]
        read_only_fields = fields


class AgentProfileInputSerializer(serializers.Serializer[Any]):
    name = serializers.CharField(max_length=100)
    instructions = serializers.CharField()
    greeting = serializers.CharField(required=False, allow_blank=True)
    voice = serializers.CharField(required=False, max_length=50)
    model = serializers.CharField(required=False, max_length=100)
    language = serializers.CharField(required=False, max_length=16)
    tools = serializers.JSONField(required=False)
    transfer_numbers = serializers.JSONField(required=False)
    # Checked by the service (campaigns.services.agents.validate_turn_detection): 400 naming the field.
    turn_detection = serializers.CharField(required=False, max_length=32)


# ---------------------------------------------------------------------------------------------- campaigns


class CampaignSerializer(OutputModelSerializer[Campaign]):
    class Meta:
        model = Campaign
        fields = [
            "id",
            "name",
            "agent",
            "caller_id",
            "status",
            "calling_windows",
            "starts_at",
            "ends_at",
            "max_concurrent_calls",
            "max_attempts",
            "retry_delays",
            "ring_timeout",
            "priority",
            "requires_prior_consent",
            "prior_consent_kind",
            "disclosure",
            "recording_mode",
            "recording_retention_days",
            "transfer_targets",
            "amd_enabled",
            "amd_settings",
            "amd_notsure_action",
            "voicemail_action",
            "voicemail_message_text",
            "voicemail_audio_seconds",
            "result_fields",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields

    transfer_targets = serializers.SerializerMethodField(
        help_text="The ids of its transfer targets, in order (the first is the agent's default)."
    )

    def get_transfer_targets(self, campaign: Campaign) -> list[int]:
        return [link.target_id for link in campaign.transfer_target_links.all()]


class CampaignInputSerializer(serializers.Serializer[Any]):
    name = serializers.CharField(max_length=200)
    agent = TenantScopedPrimaryKeyField(scoped="agent_profile_list")
    caller_id = serializers.CharField(max_length=32)
    calling_windows = serializers.JSONField(required=False)
    starts_at = serializers.DateTimeField(required=False, allow_null=True)
    ends_at = serializers.DateTimeField(required=False, allow_null=True)
    max_concurrent_calls = serializers.IntegerField(required=False, min_value=1, max_value=MAX_POSITIVE_INT)
    max_attempts = serializers.IntegerField(required=False, min_value=1, max_value=MAX_POSITIVE_INT)
    retry_delays = serializers.JSONField(required=False)
    ring_timeout = serializers.IntegerField(required=False, min_value=1, max_value=MAX_POSITIVE_INT)
    priority = serializers.IntegerField(required=False, min_value=-1000, max_value=1000)
    # Compliance: checked by the service (campaigns.services.campaigns.validate_compliance).
    requires_prior_consent = serializers.BooleanField(required=False)
    prior_consent_kind = serializers.CharField(required=False, max_length=32)
    disclosure = serializers.CharField(
        required=False, allow_blank=True, trim_whitespace=False, max_length=2000
    )
    recording_mode = serializers.ChoiceField(choices=Campaign.RecordingMode.choices, required=False)
    recording_retention_days = serializers.IntegerField(
        required=False, min_value=1, max_value=MAX_RECORDING_RETENTION_DAYS
    )
    transfer_targets = serializers.ListField(
        child=serializers.IntegerField(min_value=1), required=False, max_length=20
    )
    # Answering-machine detection and voicemail, checked by the service (campaigns/amd.py): 400 naming
    # the field. The recorded message is uploaded on its own (POST .../voicemail-audio).
    amd_enabled = serializers.BooleanField(required=False)
    amd_settings = serializers.JSONField(required=False)
    amd_notsure_action = serializers.CharField(required=False, max_length=16)
    voicemail_action = serializers.CharField(required=False, max_length=16)
    voicemail_message_text = serializers.CharField(
        required=False, allow_blank=True, max_length=1000, trim_whitespace=False
    )
    # [{name, type, choices, required, description}], checked by campaigns/results.py
    result_fields = serializers.JSONField(required=False)


class RedialInputSerializer(serializers.Serializer[Any]):
    outcomes = serializers.ListField(
        child=serializers.CharField(max_length=32), required=False, max_length=40
    )
    name = serializers.CharField(max_length=200, required=False)


class ExportQuerySerializer(serializers.Serializer[Any]):
    of = serializers.ChoiceField(choices=["leads", "attempts"], required=False, default="leads")
    format = serializers.ChoiceField(choices=["csv", "json", "jsonl"], required=False, default="csv")


class CampaignStatsSerializer(serializers.Serializer[Any]):
    campaign_id = serializers.IntegerField()
    status = serializers.CharField()
    leads = serializers.DictField(child=serializers.IntegerField())
    leads_total = serializers.IntegerField()
    attempts_by_outcome = serializers.DictField(child=serializers.IntegerField())
    attempts_by_state = serializers.DictField(child=serializers.IntegerField())
    attempts_total = serializers.IntegerField()
    live_calls = serializers.IntegerField()
    answered_30d = serializers.IntegerField(help_text="Calls answered by a person in the last 30 days.")
    abandoned_30d = serializers.IntegerField(help_text="Of those, no agent audio within 2 s of the answer.")
    abandonment_rate_30d = serializers.FloatField(allow_null=True)
    slowed = serializers.BooleanField(help_text="Over 3% (of at least 20 answered): dialing at half its cap.")


class ImportErrorSerializer(serializers.Serializer[Any]):
    row = serializers.IntegerField()
    field = serializers.CharField()
    message = serializers.CharField()


class ImportWarningSerializer(serializers.Serializer[Any]):
    column = serializers.CharField()
    message = serializers.CharField()


class ImportReportSerializer(serializers.Serializer[Any]):
    created = serializers.IntegerField()
    updated = serializers.IntegerField(help_text="Rows already in the campaign whose contact changed.")
    unchanged = serializers.IntegerField(help_text="Rows already in the campaign, contact as it was.")
    errors = ImportErrorSerializer(many=True)  # type: ignore[assignment]  # popped by the metaclass
    errors_not_shown = serializers.IntegerField(required=False)
    warnings = ImportWarningSerializer(many=True)


class ContactImportSerializer(OutputModelSerializer[ContactImport]):
    """A CSV import run by a worker: its status, its progress and, once done, the inline import's report."""

    url = serializers.SerializerMethodField(help_text="Where to poll this import.")
    report = ImportReportSerializer(
        allow_null=True, read_only=True, help_text="The import's report, once its status is done."
    )

    class Meta:
        model = ContactImport
        fields = [
            "id",
            "url",
            "campaign",
            "status",
            "rows_total",
            "rows_done",
            "report",
            "error",
            "created_by",
            "created_at",
            "started_at",
            "finished_at",
        ]
        read_only_fields = fields

    def get_url(self, instance: ContactImport) -> str:
        return reverse("contact-import-detail", args=[instance.pk])


# ----------------------------------------------------------------------------------------------- contacts


class ContactSerializer(OutputModelSerializer[Contact]):
    class Meta:
        model = Contact
        fields = ["id", "phone_number", "name", "timezone", "variables", "created_at"]
        read_only_fields = fields


class ContactConsentSerializer(OutputModelSerializer[ContactConsent]):
    class Meta:
        model = ContactConsent
        fields = ["id", "contact", "kind", "source", "captured_at", "evidence", "revoked_at", "created_at"]
        read_only_fields = fields


class ContactConsentInputSerializer(serializers.Serializer[Any]):
    # Types only: the rules (kinds, required source and time, lengths) are campaigns.services.consent's.
    kind = serializers.CharField(required=False, max_length=32)
    source = serializers.CharField(required=False, allow_blank=True, max_length=1000)  # type: ignore[assignment]
    captured_at = serializers.DateTimeField(required=False, allow_null=True)
    evidence = serializers.CharField(required=False, allow_blank=True, max_length=10_000)


class ContactInputSerializer(serializers.Serializer[Any]):
    phone_number = serializers.CharField(max_length=32)
    name = serializers.CharField(required=False, allow_blank=True, max_length=200)
    timezone = serializers.CharField(required=False, allow_blank=True, max_length=64)
    variables = serializers.JSONField(required=False)


class ContactUpdateSerializer(serializers.Serializer[Any]):
    name = serializers.CharField(required=False, allow_blank=True, max_length=200)
    timezone = serializers.CharField(required=False, allow_blank=True, max_length=64)
    variables = serializers.JSONField(required=False)


# -------------------------------------------------------------------------------------------------- leads


class LeadSerializer(OutputModelSerializer[Lead]):
    contact = ContactSerializer(read_only=True)

    class Meta:
        model = Lead
        fields = [
            "id",
            "campaign",
            "contact",
            "status",
            "attempts",
            "next_due_at",
            "last_outcome",
            "done_reason",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class LeadInputSerializer(serializers.Serializer[Any]):
    campaign = TenantScopedPrimaryKeyField(scoped="campaign_list")
    contact = TenantScopedPrimaryKeyField(scoped="contact_list")


class LeadFilterSerializer(serializers.Serializer[Any]):
    campaign = ObjectIdField(required=False)
    status = serializers.ChoiceField(choices=Lead.Status.choices, required=False)


class LeadWhySerializer(serializers.Serializer[Any]):
    lead_id = serializers.IntegerField()
    status = serializers.CharField()
    dialable_now = serializers.BooleanField()
    next_dial_at = serializers.DateTimeField(allow_null=True)
    reasons = serializers.ListField(child=serializers.DictField())


class LeadBriefSerializer(serializers.Serializer[Any]):
    """What a call to the lead would tell the agent now (campaigns.variables.lead_brief_preview)."""

    lead_id = serializers.IntegerField()
    campaign_id = serializers.IntegerField()
    agent_id = serializers.IntegerField()
    instructions = serializers.CharField()
    greeting = serializers.CharField()
    variables_used = serializers.ListField(child=serializers.CharField())
    variables_missing = serializers.ListField(
        child=serializers.CharField(), help_text="Used but blank for this contact: said as nothing."
    )
    variables = serializers.DictField(child=serializers.CharField(), help_text="The values used.")


# ----------------------------------------------------------------------------------------------- attempts


class AttemptEventSerializer(OutputModelSerializer[AttemptEvent]):
    class Meta:
        model = AttemptEvent
        fields = ["id", "at", "kind", "type", "data"]
        read_only_fields = fields


class AttemptSerializer(OutputModelSerializer[CallAttempt]):
    class Meta:
        model = CallAttempt
        fields = [
            "id",
            "campaign",
            "lead",
            "pbx",
            "number",
            "state",
            "outcome",
            "queued_at",
            "originated_at",
            "ringing_at",
            "answered_at",
            "ended_at",
            "cause",
            "cause_txt",
            "dialstatus",
            "tech_cause",
            "duration_s",
            "error",
            "disposition",
            "callback_at",
            "transferred_to",
            "answered_by",
            "amd_status",
            "amd_cause",
            "machine_source",
            "voicemail_left_at",
            "results",
            "summary",
        ]
        read_only_fields = fields


class AttemptDetailSerializer(AttemptSerializer):
    """An attempt with what the AI agent's call left behind (transcript, media metrics) and its log."""

    events = AttemptEventSerializer(many=True, read_only=True)

    class Meta(AttemptSerializer.Meta):
        fields = [
            *AttemptSerializer.Meta.fields, "results_source", "summarized_at", "transcript", "media_metrics",
            "events",
        ]  # fmt: skip
        read_only_fields = fields


class AttemptFilterSerializer(serializers.Serializer[Any]):
    campaign = ObjectIdField(required=False)
    lead = ObjectIdField(required=False)
    state = serializers.ChoiceField(choices=[state.value for state in AttemptState], required=False)
    outcome = serializers.ChoiceField(choices=[outcome.value for outcome in AttemptOutcome], required=False)


# -------------------------------------------------------------------------------------------------- DNC


class DncEntrySerializer(OutputModelSerializer[DncEntry]):
    class Meta:
        model = DncEntry
        fields = ["id", "phone_number", "source", "note", "created_at"]
        read_only_fields = fields


class DncInputSerializer(serializers.Serializer[Any]):
    phone_number = serializers.CharField(max_length=32)
    note = serializers.CharField(required=False, allow_blank=True, max_length=2000)


class DncCheckSerializer(serializers.Serializer[Any]):
    number = serializers.CharField(max_length=32)


class DncCheckResultSerializer(serializers.Serializer[Any]):
    number = serializers.CharField()
    on_dnc = serializers.BooleanField()


# ------------------------------------------------------------------------------------------------- PBXs


class OwnPbxSerializer(serializers.ModelSerializer[Pbx]):
    """How the tenant's own PBX is reached (it gave all of it; its password is never returned)."""

    class Meta:
        model = Pbx
        fields = ["ari_url", "ari_user", "app_name", "endpoint_template", "max_channels", "calls_per_second"]
        read_only_fields = fields


class PbxSerializer(serializers.ModelSerializer[Pbx]):
    """A PBX the tenant may place calls on. A platform PBX (the operator's) shows only its name, the
    tenant's share of its channels and whether it can take calls now; no URL, no credential. The tenant's
    own PBX also shows how it is reached (``own``). No password, nor where it comes from, is ever shown."""

    platform = serializers.BooleanField(source="is_platform", help_text="Operated by the platform.")
    share = serializers.IntegerField(
        allow_null=True, help_text="The tenant's share of the PBX's channels (null: no share of its own)."
    )
    connected = serializers.SerializerMethodField(
        help_text="Its Stasis app is listening and a media worker is up: calls can be placed on it now."
    )
    own = serializers.SerializerMethodField(help_text="How the tenant's own PBX is reached (null: platform).")

    class Meta:
        model = Pbx
        fields = ["id", "name", "platform", "share", "enabled", "connected", "own"]
        read_only_fields = fields

    @extend_schema_field(serializers.BooleanField())
    def get_connected(self, pbx: Pbx) -> bool:
        health = self.context.get("pbx_health")
        return bool(health is not None and health.usable(pbx.pk))

    @extend_schema_field(OwnPbxSerializer(allow_null=True))
    def get_own(self, pbx: Pbx) -> dict[str, Any] | None:
        return None if pbx.is_platform else dict(OwnPbxSerializer(pbx).data)


class PbxInputSerializer(serializers.Serializer[Any]):
    """The tenant's own PBX (only when the operator allows it). The ARI password is stored encrypted and
    never returned; naming an environment variable instead (``password_env``) is an operator-only option
    and refused here."""

    name = serializers.CharField(max_length=100)
    ari_url = serializers.CharField(max_length=200)
    ari_user = serializers.CharField(max_length=100)
    password = serializers.CharField(required=False, write_only=True, trim_whitespace=False, max_length=500)
    app_name = serializers.CharField(required=False, max_length=73)
    endpoint_template = serializers.CharField(required=False, max_length=200)
    max_channels = serializers.IntegerField(required=False, min_value=1, max_value=MAX_POSITIVE_INT)
    calls_per_second = serializers.IntegerField(required=False, min_value=1, max_value=MAX_POSITIVE_INT)
    enabled = serializers.BooleanField(required=False)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if isinstance(self.initial_data, dict) and "password_env" in self.initial_data:
            raise serializers.ValidationError(
                {"password_env": ["is an operator-only option: send the password (it is stored encrypted)"]}
            )
        return attrs
