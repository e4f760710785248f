"""Admin for the campaign domain.

Forms validate through the same functions as the services, so the admin cannot store what the API would
refuse. Call attempts and their events are written by the call machinery only: read-only here. The PBX
admin is the operator's: the platform's PBX pool, which tenants are placed on (inline), and tenants' own
PBXs. It takes a new ARI password (write-only field, stored encrypted) or, for a platform PBX only, an
environment variable name, and never displays the stored ciphertext. A tenant's own PBX must pass the URL
policy, as through the API.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.http import HttpRequest

# Transfers have their own admin module (same app): its admins register on import.
from campaigns.admin_transfers import CampaignTransferTargetInline
from campaigns.amd import validate_amd_settings
from campaigns.models import (
    AgentProfile,
    AttemptEvent,
    CallAttempt,
    Campaign,
    Contact,
    ContactConsent,
    DncEntry,
    Lead,
    Pbx,
    PbxPlacement,
)
from campaigns.phone import normalize_phone_number
from campaigns.results import validate_result_fields
from campaigns.services.agents import validate_tools, validate_transfer_numbers
from campaigns.services.campaigns import (
    validate_calling_windows,
    validate_compliance,
    validate_retry_delays,
)
from campaigns.services.contacts import validate_variables
from campaigns.services.pbx import (
    pbx_apply_password,
    pbx_place,
    validate_ari_url,
    validate_endpoint_template,
    validate_own_ari_url,
)
from orchestrator.admin_forms import ReadOnlyAdmin, clean_with
from orchestrator.errors import InvalidInput

# ------------------------------------------------------------------------------------------------- PBX


class PbxForm(forms.ModelForm):
    # ARI is usually plain HTTP on a private address: a URL typed without a scheme means http://.
    ari_url = forms.URLField(assume_scheme="http", help_text=Pbx._meta.get_field("ari_url").help_text)
    new_password = forms.CharField(
        required=False,
        strip=False,
        widget=forms.PasswordInput(render_value=False),
        help_text="Stored encrypted. Leave empty to keep the current password source.",
    )

    class Meta:
        model = Pbx
        fields = [
            "owner",
            "name",
            "ari_url",
            "ari_user",
            "password_env",
            "new_password",
            "app_name",
            "endpoint_template",
            "max_channels",
            "calls_per_second",
            "enabled",
        ]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        clean_with(self, "ari_url", validate_ari_url)
        if cleaned.get("owner") is not None:
            clean_with(self, "ari_url", validate_own_ari_url)
        clean_with(self, "endpoint_template", validate_endpoint_template)
        new_password = cleaned.get("new_password") or ""
        password_env = cleaned.get("password_env") or ""
        if password_env and cleaned.get("owner") is not None:
            self.add_error("password_env", "A tenant's own PBX keeps its password stored: give a password.")
        elif new_password and password_env:
            self.add_error("new_password", "Give either a password or an environment variable, not both.")
        elif new_password:
            # Applied to the instance now, before the model's validation (its check constraint) runs in
            # _post_clean; password_encrypted is not a form field, so construct_instance leaves it alone.
            pbx_apply_password(pbx=self.instance, password=new_password)
        elif password_env:
            try:
                pbx_apply_password(pbx=self.instance, password_env=password_env)
            except InvalidInput as exc:
                self.add_error("password_env", exc.message)
        elif not (self.instance.pk and self.instance.password_encrypted):
            self.add_error(
                "password_env", "Give the ARI password: an environment variable name or a password."
            )
        return cleaned


class PbxPlacementInline(admin.TabularInline):
    model = PbxPlacement
    extra = 1
    autocomplete_fields = ["tenant"]
    verbose_name = "tenant placed on this PBX"
    verbose_name_plural = "tenants placed on this PBX (max channels: the tenant's share)"


@admin.register(Pbx)
class PbxAdmin(admin.ModelAdmin):
    form = PbxForm
    inlines = [PbxPlacementInline]
    list_display = ["name", "owner", "ari_url", "ari_user", "password_source", "max_channels", "enabled"]
    list_filter = ["enabled", ("owner", admin.EmptyFieldListFilter)]
    search_fields = ["name", "ari_url", "owner__name", "owner__slug", "placements__tenant__slug"]

    @admin.display(description="password")
    def password_source(self, obj: Pbx) -> str:
        return f"env {obj.password_env}" if obj.password_env else "stored (encrypted)"

    def save_model(self, request: HttpRequest, obj: Pbx, form: forms.ModelForm, change: bool) -> None:
        super().save_model(request, obj, form, change)
        if obj.owner is not None:
            pbx_place(pbx=obj, tenant=obj.owner)  # a tenant's own PBX is always one it may use


# --------------------------------------------------------------------------------------- agent profiles


class AgentProfileForm(forms.ModelForm):
    class Meta:
        model = AgentProfile
        fields = "__all__"

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        clean_with(self, "tools", validate_tools)
        clean_with(self, "transfer_numbers", validate_transfer_numbers)
        return cleaned


@admin.register(AgentProfile)
class AgentProfileAdmin(admin.ModelAdmin):
    form = AgentProfileForm
    list_display = ["name", "tenant", "model", "voice", "language", "turn_detection", "created_at"]
    list_filter = ["model", "language", "turn_detection", "tenant"]
    search_fields = ["name", "instructions", "tenant__name", "tenant__slug"]
    readonly_fields = ["created_at"]


# ------------------------------------------------------------------------------------------- campaigns


class CampaignForm(forms.ModelForm):
    class Meta:
        model = Campaign
        fields = "__all__"

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        tenant = cleaned.get("tenant")
        agent = cleaned.get("agent")
        if tenant is not None and agent is not None and agent.tenant_id != tenant.pk:
            self.add_error("agent", "This agent profile belongs to another tenant.")
        cap = cleaned.get("max_concurrent_calls")
        if tenant is not None and cap is not None and cap > tenant.max_concurrent_calls:
            self.add_error(
                "max_concurrent_calls", f"Exceeds the tenant's limit of {tenant.max_concurrent_calls}."
            )
        clean_with(self, "caller_id", lambda value: normalize_phone_number(value, field="caller_id"))
        clean_with(self, "calling_windows", validate_calling_windows)
        clean_with(self, "retry_delays", validate_retry_delays)
        clean_with(self, "disclosure", lambda value: validate_compliance({"disclosure": value})["disclosure"])
        clean_with(self, "amd_settings", validate_amd_settings)
        clean_with(self, "result_fields", validate_result_fields)
        return cleaned


@admin.register(Campaign)
class CampaignAdmin(admin.ModelAdmin):
    form = CampaignForm
    list_display = ["name", "tenant", "status", "priority", "max_concurrent_calls", "starts_at", "ends_at"]
    list_filter = ["status", "tenant"]
    search_fields = ["name", "caller_id", "tenant__name", "tenant__slug"]
    readonly_fields = ["created_at", "updated_at", "voicemail_audio_sha256", "voicemail_audio_seconds"]
    autocomplete_fields = ["agent"]
    inlines = [CampaignTransferTargetInline]


# ------------------------------------------------------------------------------------ contacts and DNC


class ContactForm(forms.ModelForm):
    class Meta:
        model = Contact
        fields = "__all__"

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        clean_with(self, "phone_number", normalize_phone_number)
        clean_with(self, "variables", validate_variables)
        return cleaned


class ContactConsentInline(admin.TabularInline):
    """A contact's consents, as a record: recorded and revoked through the API, a CSV import or the portal
    (campaigns/services/consent.py), never edited or deleted here."""

    model = ContactConsent
    extra = 0
    fields = readonly_fields = ("kind", "source", "captured_at", "evidence", "revoked_at", "created_at")
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Contact)
class ContactAdmin(admin.ModelAdmin):
    form = ContactForm
    inlines = [ContactConsentInline]
    list_display = ["phone_number", "name", "tenant", "timezone", "created_at"]
    list_filter = ["tenant"]
    search_fields = ["phone_number", "name"]
    readonly_fields = ["created_at"]


class DncEntryForm(forms.ModelForm):
    class Meta:
        model = DncEntry
        fields = "__all__"

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        clean_with(self, "phone_number", normalize_phone_number)
        return cleaned


@admin.register(DncEntry)
class DncEntryAdmin(admin.ModelAdmin):
    form = DncEntryForm
    list_display = ["phone_number", "tenant", "source", "created_at"]
    list_filter = ["source", "tenant"]
    search_fields = ["phone_number", "note"]
    readonly_fields = ["created_at"]


# ---------------------------------------------------------------------------------- leads and attempts


@admin.register(Lead)
class LeadAdmin(admin.ModelAdmin):
    list_display = ["contact", "campaign", "status", "attempts", "next_due_at", "last_outcome", "done_reason"]
    list_filter = ["status", "last_outcome", "campaign__tenant", "campaign"]
    search_fields = ["contact__phone_number", "contact__name", "campaign__name"]
    list_select_related = ["contact", "campaign"]
    # The dispatcher owns a lead's state; the admin may look, not move it behind the state machine's back.
    readonly_fields = [
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

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class AttemptEventInline(admin.TabularInline):
    model = AttemptEvent
    extra = 0
    fields = ["at", "kind", "type", "data"]
    readonly_fields = ["at", "kind", "type", "data"]
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(CallAttempt)
class CallAttemptAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "number",
        "tenant",
        "campaign",
        "state",
        "outcome",
        "disposition",
        "queued_at",
        "duration_s",
    ]
    list_filter = ["state", "outcome", "disposition", "answered_by", "tenant"]
    search_fields = ["id", "number", "campaign__name"]
    list_select_related = ["tenant", "campaign"]
    date_hierarchy = "queued_at"
    inlines = [AttemptEventInline]
    # What the AI agent's call left behind, after the call's own fields (the transcript also as text).
    _AGENT_FIELDS = ("disposition", "callback_at", "transferred_to", "transcript_text", "media_metrics")

    def get_fields(self, request: HttpRequest, obj: Any = None) -> list[Any]:
        last = {*self._AGENT_FIELDS, "transcript"}
        fields = [name for name in super().get_fields(request, obj) if name not in last]
        return [*fields, *self._AGENT_FIELDS, "transcript"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[Any]:
        return [*super().get_readonly_fields(request, obj), "transcript_text"]

    @admin.display(description="Transcript (text)")
    def transcript_text(self, obj: CallAttempt) -> str:
        lines = []
        for turn in obj.transcript if isinstance(obj.transcript, list) else []:
            if isinstance(turn, dict):
                lines.append(f"[{turn.get('at', '')}] {turn.get('role', '?')}: {turn.get('text', '')}")
        return "\n".join(lines) or "-"


@admin.register(AttemptEvent)
class AttemptEventAdmin(ReadOnlyAdmin):
    list_display = ["attempt", "at", "kind", "type"]
    list_filter = ["kind"]
    search_fields = ["attempt__id", "type"]
    list_select_related = ["attempt"]
