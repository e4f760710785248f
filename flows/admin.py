"""Admin for inbound flows and on-call (the operator's view of every tenant's setup).

Forms validate through the same functions as the services (flows/services/setup*.py), so the admin cannot
store what the API would refuse: E.164 numbers, time zones, intake names, a step's minimum wait, cleaned and
bounded tenant text, and rows linked within one tenant only. Inlines: a flow's business hours, holidays and
intake fields; a rotation's members and overrides; a policy's steps. Incidents (with their timeline and
pages) and inbound calls are written by the call machinery only: read-only here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django import forms
from django.contrib import admin
from django.forms.models import BaseInlineFormSet
from django.http import HttpRequest

from flows.models import (
    BusinessHours,
    EscalationPolicy,
    EscalationStep,
    Holiday,
    InboundCall,
    InboundFlow,
    Incident,
    IncidentEvent,
    IntakeField,
    OnCallGroup,
    OnCallPerson,
    Page,
    PhoneNumber,
    Rotation,
    RotationMember,
    RotationOverride,
)
from flows.services.escalation import step_wait_validate
from flows.services.setup import (
    CALLER_ACK_PLACEHOLDERS,
    TAKEN_PLACEHOLDERS,
    clean_phone,
    clean_timezone,
)
from flows.services.setup_oncall import FALLBACK_PLACEHOLDERS, MAX_REPEAT
from flows.services.setup_text import (
    GREETING_MAX,
    INSTRUCTIONS_MAX,
    LABEL_MAX,
    SMS_TEMPLATE_MAX,
    SPOKEN_MAX,
    check_urls,
    clean_name,
    clean_template,
    clean_text,
)
from orchestrator.admin_forms import ReadOnlyAdmin, clean_with


def _same_tenant(form: forms.BaseForm, tenant_id: int | None, fields: tuple[str, ...]) -> None:
    for field in fields:
        value: Any = form.cleaned_data.get(field)
        rows: list[Any] = list(value) if hasattr(value, "__iter__") else [value]
        for row in rows:
            if row is not None and tenant_id is not None and getattr(row, "tenant_id", None) != tenant_id:
                form.add_error(field, f"{row} belongs to another tenant.")


class ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False
    show_change_link = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class TenantChildFormSet(BaseInlineFormSet):
    """An inline whose rows link to other tenant rows (``tenant_fields``): all of the parent's tenant."""

    tenant_fields: tuple[str, ...] = ()

    def clean(self) -> None:
        super().clean()
        tenant_id = getattr(self.instance, "tenant_id", None)
        for form in self.forms:
            if form.cleaned_data and not form.cleaned_data.get("DELETE"):
                _same_tenant(form, tenant_id, self.tenant_fields)


# ------------------------------------------------------------------------------------------ on call


class OnCallPersonForm(forms.ModelForm):
    class Meta:
        model = OnCallPerson
        fields = ["tenant", "name", "phone", "sms_number", "timezone", "active"]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        clean_with(self, "name", clean_name)
        clean_with(self, "phone", lambda v: clean_phone(v, field="phone"))
        clean_with(self, "sms_number", lambda v: clean_phone(v, field="sms_number", blank=True))
        clean_with(self, "timezone", clean_timezone)
        return cleaned


@admin.register(OnCallPerson)
class OnCallPersonAdmin(admin.ModelAdmin):
    form = OnCallPersonForm
    list_display = ("name", "tenant", "phone", "sms_number", "timezone", "active")
    list_filter = ("active", "tenant")
    search_fields = ("name", "phone", "sms_number")


class OnCallGroupForm(forms.ModelForm):
    class Meta:
        model = OnCallGroup
        fields = ["tenant", "name", "members"]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        clean_with(self, "name", clean_name)
        tenant = cleaned.get("tenant")
        _same_tenant(self, tenant.pk if tenant else None, ("members",))
        return cleaned


@admin.register(OnCallGroup)
class OnCallGroupAdmin(admin.ModelAdmin):
    form = OnCallGroupForm
    list_display = ("name", "tenant")
    list_filter = ("tenant",)
    search_fields = ("name",)
    filter_horizontal = ("members",)


class RotationPeopleFormSet(TenantChildFormSet):
    tenant_fields = ("person",)


class RotationMemberInline(admin.TabularInline):
    model = RotationMember
    formset = RotationPeopleFormSet
    extra = 0
    ordering = ("position",)


class RotationOverrideInline(admin.TabularInline):
    model = RotationOverride
    formset = RotationPeopleFormSet
    extra = 0


class RotationForm(forms.ModelForm):
    class Meta:
        model = Rotation
        fields = ["tenant", "name", "handoff", "handoff_weekday", "handoff_time", "start_date", "timezone"]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        clean_with(self, "name", clean_name)
        clean_with(self, "timezone", lambda v: clean_timezone(v, blank=False))
        return cleaned


@admin.register(Rotation)
class RotationAdmin(admin.ModelAdmin):
    form = RotationForm
    list_display = ("name", "tenant", "handoff", "handoff_time", "timezone", "start_date")
    list_filter = ("handoff", "tenant")
    search_fields = ("name",)
    inlines = [RotationMemberInline, RotationOverrideInline]


def _wait_s(value: Any) -> Any:
    step_wait_validate(value)
    return value


class EscalationStepForm(forms.ModelForm):
    class Meta:
        model = EscalationStep
        fields = [
            "position",
            "target_kind",
            "person",
            "rotation",
            "group",
            "notify_call",
            "notify_sms",
            "wait_s",
        ]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        clean_with(self, "wait_s", _wait_s)
        return cleaned


class EscalationStepFormSet(TenantChildFormSet):
    tenant_fields = ("person", "rotation", "group")


class EscalationStepInline(admin.TabularInline):
    model = EscalationStep
    form = EscalationStepForm
    formset = EscalationStepFormSet
    extra = 0
    ordering = ("position",)


class EscalationPolicyForm(forms.ModelForm):
    class Meta:
        model = EscalationPolicy
        fields = ["tenant", "name", "repeat", "fallback_people", "fallback_sms", "fallback_callback"]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        clean_with(self, "name", clean_name)
        repeat = cleaned.get("repeat")
        if repeat is not None and repeat > MAX_REPEAT:
            self.add_error("repeat", f"at most {MAX_REPEAT}")
        clean_with(
            self,
            "fallback_sms",
            lambda v: clean_template(
                v, field="fallback_sms", placeholders=FALLBACK_PLACEHOLDERS, max_length=SMS_TEMPLATE_MAX
            ),
        )
        tenant = cleaned.get("tenant")
        _same_tenant(self, tenant.pk if tenant else None, ("fallback_people",))
        return cleaned


@admin.register(EscalationPolicy)
class EscalationPolicyAdmin(admin.ModelAdmin):
    form = EscalationPolicyForm
    list_display = ("name", "tenant", "repeat", "fallback_callback", "updated_at")
    list_filter = ("tenant",)
    search_fields = ("name",)
    filter_horizontal = ("fallback_people",)
    inlines = [EscalationStepInline]


# ------------------------------------------------------------------------------------------- flows


class BusinessHoursInline(admin.TabularInline):
    model = BusinessHours
    extra = 0


class HolidayInline(admin.TabularInline):
    model = Holiday
    extra = 0


class IntakeFieldForm(forms.ModelForm):
    class Meta:
        model = IntakeField
        fields = ["position", "name", "label", "required"]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        clean_with(self, "label", lambda v: clean_text(v, field="label", max_length=LABEL_MAX))
        return cleaned


class IntakeFieldInline(admin.TabularInline):
    model = IntakeField
    form = IntakeFieldForm
    extra = 0
    ordering = ("position",)


def _spoken(field: str, max_length: int) -> Callable[[Any], str]:
    def clean(value: Any) -> str:
        text = clean_text(value, field=field, max_length=max_length)
        check_urls(text, field=field)
        return text

    return clean


def _template(field: str, placeholders: tuple[str, ...]) -> Callable[[Any], str]:
    def clean(value: Any) -> str:
        return clean_template(value, field=field, placeholders=placeholders, max_length=SMS_TEMPLATE_MAX)

    return clean


class InboundFlowForm(forms.ModelForm):
    class Meta:
        model = InboundFlow
        fields = "__all__"

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        clean_with(self, "name", clean_name)
        clean_with(
            self,
            "instructions",
            lambda v: clean_text(v, field="instructions", max_length=INSTRUCTIONS_MAX, multiline=True),
        )
        clean_with(self, "greeting", _spoken("greeting", GREETING_MAX))
        clean_with(self, "urgent_reply", _spoken("urgent_reply", SPOKEN_MAX))
        clean_with(self, "timezone", clean_timezone)
        clean_with(self, "office_number", lambda v: clean_phone(v, field="office_number", blank=True))
        clean_with(self, "caller_ack_sms", _template("caller_ack_sms", CALLER_ACK_PLACEHOLDERS))
        clean_with(self, "taken_sms", _template("taken_sms", TAKEN_PLACEHOLDERS))
        tenant = cleaned.get("tenant")
        _same_tenant(self, tenant.pk if tenant else None, ("agent", "escalation_policy"))
        return cleaned


@admin.register(InboundFlow)
class InboundFlowAdmin(admin.ModelAdmin):
    form = InboundFlowForm
    list_display = ("name", "tenant", "in_hours_action", "after_hours_action", "escalation_policy", "enabled")
    list_filter = ("enabled", "in_hours_action", "after_hours_action", "tenant")
    search_fields = ("name",)
    inlines = [BusinessHoursInline, HolidayInline, IntakeFieldInline]


class PhoneNumberForm(forms.ModelForm):
    class Meta:
        model = PhoneNumber
        fields = ["tenant", "number", "flow", "label"]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        clean_with(self, "number", lambda v: clean_phone(v, field="number"))
        tenant = cleaned.get("tenant")
        _same_tenant(self, tenant.pk if tenant else None, ("flow",))
        return cleaned


@admin.register(PhoneNumber)
class PhoneNumberAdmin(admin.ModelAdmin):
    form = PhoneNumberForm
    list_display = ("number", "tenant", "flow", "label", "created_at")
    list_filter = ("tenant",)
    search_fields = ("number", "label")


# ------------------------------------------------------------------------------ calls and incidents


@admin.register(InboundCall)
class InboundCallAdmin(ReadOnlyAdmin):
    """Inbound calls are recorded by the Stasis app's sink; the admin only shows them."""

    list_display = ("started_at", "did", "caller_number", "caller_name", "handling", "status", "ended_at")
    list_filter = ("status", "handling")
    search_fields = ("did", "caller_number", "caller_name", "channel_id")


class IncidentEventInline(ReadOnlyInline):
    model = IncidentEvent
    fields = ("at", "kind", "person", "channel", "round", "step", "detail")
    readonly_fields = fields
    ordering = ("at", "pk")


class PageInline(ReadOnlyInline):
    model = Page
    fields = ("created_at", "purpose", "person", "channel", "to_number", "status", "sent_at", "responded_at")
    readonly_fields = fields


@admin.register(Incident)
class IncidentAdmin(ReadOnlyAdmin):
    """Incidents, their timeline (the liability record) and pages: written by the engine only."""

    list_display = ("short_code", "tenant", "status", "caller_number", "did", "acknowledged_by", "opened_at")
    list_filter = ("status", "tenant")
    search_fields = ("short_code", "caller_number", "did")
    inlines = [PageInline, IncidentEventInline]
