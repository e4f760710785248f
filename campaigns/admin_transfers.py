"""Admin for transfers: targets with their reps inline (validated by the services' checks), and the
transfers of calls, read-only (written by the call machinery). Imported by ``campaigns.admin``."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin

from campaigns.models_transfers import (
    CallTransfer,
    CampaignTransferTarget,
    TransferKind,
    TransferTarget,
    TransferTargetMember,
)
from campaigns.phone import normalize_phone_number
from campaigns.services.transfers import validate_queue_endpoint
from orchestrator.admin_forms import ReadOnlyAdmin, clean_with


class TransferTargetForm(forms.ModelForm):
    class Meta:
        model = TransferTarget
        fields = ["tenant", "name", "kind", "number", "endpoint", "mode"]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        kind = cleaned.get("kind")
        if kind == TransferKind.NUMBER:
            clean_with(self, "number", lambda value: normalize_phone_number(value or "", field="number"))
            cleaned["endpoint"] = ""
        elif kind == TransferKind.QUEUE:
            clean_with(self, "endpoint", validate_queue_endpoint)
            cleaned["number"] = ""
        else:
            cleaned["number"] = cleaned["endpoint"] = ""
        return cleaned


class TransferTargetMemberForm(forms.ModelForm):
    class Meta:
        model = TransferTargetMember
        fields = ["name", "number", "max_concurrent", "position", "enabled"]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        clean_with(self, "number", lambda value: normalize_phone_number(value or "", field="number"))
        return cleaned


class TransferTargetMemberInline(admin.TabularInline):
    model = TransferTargetMember
    form = TransferTargetMemberForm
    extra = 0


class CampaignTransferTargetFormSet(forms.BaseInlineFormSet):
    def clean(self) -> None:
        super().clean()
        tenant_id = getattr(self.instance, "tenant_id", None)
        for form in self.forms:
            target = form.cleaned_data.get("target") if hasattr(form, "cleaned_data") else None
            if target is not None and tenant_id is not None and target.tenant_id != tenant_id:
                form.add_error("target", "This transfer target belongs to another tenant.")


class CampaignTransferTargetInline(admin.TabularInline):
    """A campaign's transfer targets, in order (the first is the agent's default); on the campaign admin."""

    model = CampaignTransferTarget
    formset = CampaignTransferTargetFormSet
    fields = ["target", "position"]
    extra = 0


@admin.register(TransferTarget)
class TransferTargetAdmin(admin.ModelAdmin):
    form = TransferTargetForm
    inlines = [TransferTargetMemberInline]
    list_display = ["name", "tenant", "kind", "mode", "number", "endpoint", "created_at"]
    list_filter = ["kind", "mode", "tenant"]
    search_fields = ["name", "number", "endpoint", "tenant__name", "tenant__slug"]


@admin.register(CallTransfer)
class CallTransferAdmin(ReadOnlyAdmin):
    list_display = [
        "attempt",
        "tenant",
        "target",
        "member",
        "number",
        "mode",
        "state",
        "reason",
        "created_at",
    ]
    list_filter = ["state", "mode", "tenant"]
    search_fields = ["number", "endpoint", "attempt__id"]
    list_select_related = ["target", "member", "tenant"]
