"""REST serializers of the inbound flows: output shapes, and input shapes that only check types. The rules
(numbers, hours, intake names, waits, text bounds, same-tenant references) are the services'
(flows/services/setup*.py), whose InvalidInput becomes a 400 naming the field (orchestrator/api.py).
Serializers never save: views call the services.

A reference by id to another tenant's row, at the top of a body or inside a nested list (a policy step's
person), is "No such object in this tenant" (400 naming the field), as in campaigns' API.
"""

from __future__ import annotations

from typing import Any

from django.db.models import Model, QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from flows import setup_selectors
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
    RotationOverride,
)
from flows.services.setup import MAX_TRANSFER_TIMEOUT_S
from flows.services.setup_oncall import MAX_REPEAT, MAX_WAIT_S
from orchestrator.api import ObjectIdField, OutputModelSerializer
from tenants.models import Tenant


@extend_schema_field(OpenApiTypes.INT)
class ScopedIdField(serializers.PrimaryKeyRelatedField):
    """A reference by id to a row of the request's tenant (``flows.setup_selectors.<scoped>``); any other
    id is "does not exist" (400 naming the field)."""

    def __init__(self, *, scoped: str, **kwargs: Any) -> None:
        self.scoped = scoped
        kwargs.setdefault(
            "error_messages", {"does_not_exist": "No such object in this tenant (id {pk_value})."}
        )
        super().__init__(**kwargs)

    def get_queryset(self) -> QuerySet[Model]:
        tenant: Tenant = self.context["tenant"]
        queryset: QuerySet[Model] = getattr(setup_selectors, self.scoped)(tenant=tenant)
        return queryset


@extend_schema_field({"type": "string", "pattern": "^[0-2][0-9]:[0-5][0-9]$", "example": "09:00"})
class HourMinuteField(serializers.Field):
    """A time of day, answered as ``HH:MM`` (local time of the flow or rotation)."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs["read_only"] = True
        super().__init__(**kwargs)

    def to_representation(self, value: Any) -> str:
        return f"{value:%H:%M}"


def _ids(scoped: str, **kwargs: Any) -> Any:
    """A list of ids of the tenant's rows (in the order given)."""
    return ScopedIdField(scoped=scoped, many=True, **kwargs)


# ------------------------------------------------------------------------------------- phone numbers


class PhoneNumberSerializer(OutputModelSerializer[PhoneNumber]):
    class Meta:
        model = PhoneNumber
        fields = ["id", "number", "label", "flow", "created_at"]
        read_only_fields = fields


class PhoneNumberInputSerializer(serializers.Serializer[Any]):
    number = serializers.CharField(max_length=32, help_text="E.164, e.g. +15551230000 (unique).")
    label = serializers.CharField(required=False, allow_blank=True, max_length=200)  # type: ignore[assignment]
    flow = ScopedIdField(scoped="inbound_flow_list", required=False, allow_null=True)


# ------------------------------------------------------------------------------------- inbound flows


class BusinessHoursSerializer(serializers.ModelSerializer[BusinessHours]):
    opens = HourMinuteField()
    closes = HourMinuteField()

    class Meta:
        model = BusinessHours
        fields = ["weekday", "opens", "closes"]
        read_only_fields = fields


class HolidaySerializer(serializers.ModelSerializer[Holiday]):
    class Meta:
        model = Holiday
        fields = ["date", "name"]
        read_only_fields = fields


class IntakeFieldSerializer(serializers.ModelSerializer[IntakeField]):
    class Meta:
        model = IntakeField
        fields = ["name", "label", "required"]
        read_only_fields = fields


class InboundFlowSerializer(OutputModelSerializer[InboundFlow]):
    business_hours = BusinessHoursSerializer(many=True, read_only=True)
    holidays = HolidaySerializer(many=True, read_only=True)
    intake_fields = IntakeFieldSerializer(many=True, read_only=True)
    phone_numbers = serializers.SerializerMethodField(help_text="The tenant's numbers routed here.")

    class Meta:
        model = InboundFlow
        fields = [
            "id",
            "name",
            "agent",
            "instructions",
            "greeting",
            "voice",
            "timezone",
            "in_hours_action",
            "office_number",
            "transfer_timeout_s",
            "after_hours_action",
            "escalation_policy",
            "business_name",
            "refusal_message",
            "urgent_reply",
            "caller_ack_sms",
            "taken_sms",
            "enabled",
            "business_hours",
            "holidays",
            "intake_fields",
            "phone_numbers",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields

    @extend_schema_field(serializers.ListField(child=serializers.CharField()))
    def get_phone_numbers(self, flow: InboundFlow) -> list[str]:
        return sorted(number.number for number in flow.phone_numbers.all())


class BusinessHoursInputSerializer(serializers.Serializer[Any]):
    weekday = serializers.IntegerField(min_value=0, max_value=6, help_text="0 = Monday … 6 = Sunday.")
    opens = serializers.TimeField(help_text="HH:MM, local time of the flow.")
    closes = serializers.TimeField(help_text="HH:MM, after opens; 00:00 means midnight.")


class HolidayInputSerializer(serializers.Serializer[Any]):
    date = serializers.DateField()
    name = serializers.CharField(required=False, allow_blank=True, max_length=200)


class IntakeFieldInputSerializer(serializers.Serializer[Any]):
    name = serializers.CharField(max_length=40, help_text="^[a-z][a-z0-9_]{0,39}$, the key of the value.")
    label = serializers.CharField(required=False, allow_blank=True, max_length=100)  # type: ignore[assignment]
    required = serializers.BooleanField(required=False)  # type: ignore[assignment]


class InboundFlowInputSerializer(serializers.Serializer[Any]):
    """An inbound flow; ``business_hours``, ``holidays`` and ``intake_fields``, when given, replace the
    flow's whole list (no business hours: always after hours)."""

    name = serializers.CharField(max_length=200)
    agent = ScopedIdField(scoped="agent_profile_list", required=False, allow_null=True)
    instructions = serializers.CharField(required=False, allow_blank=True, max_length=8000)
    greeting = serializers.CharField(required=False, allow_blank=True, max_length=500)
    voice = serializers.CharField(required=False, allow_blank=True, max_length=50)
    timezone = serializers.CharField(required=False, allow_blank=True, max_length=64)
    in_hours_action = serializers.ChoiceField(choices=InboundFlow.InHoursAction.choices, required=False)
    office_number = serializers.CharField(required=False, allow_blank=True, max_length=32)
    transfer_timeout_s = serializers.IntegerField(
        required=False, min_value=5, max_value=MAX_TRANSFER_TIMEOUT_S
    )
    after_hours_action = serializers.ChoiceField(choices=InboundFlow.AfterHoursAction.choices, required=False)
    escalation_policy = ScopedIdField(scoped="escalation_policy_list", required=False, allow_null=True)
    business_name = serializers.CharField(required=False, allow_blank=True, max_length=200)
    refusal_message = serializers.CharField(required=False, allow_blank=True, max_length=200)
    urgent_reply = serializers.CharField(required=False, allow_blank=True, max_length=500)
    caller_ack_sms = serializers.CharField(required=False, allow_blank=True, max_length=480)
    taken_sms = serializers.CharField(required=False, allow_blank=True, max_length=480)
    enabled = serializers.BooleanField(required=False)
    business_hours = BusinessHoursInputSerializer(many=True, required=False, max_length=50)  # type: ignore[call-arg]
    holidays = HolidayInputSerializer(many=True, required=False, max_length=400)  # type: ignore[call-arg]
    intake_fields = IntakeFieldInputSerializer(many=True, required=False, max_length=30)  # type: ignore[call-arg]


class FlowHoursSerializer(serializers.Serializer[Any]):
    flow_id = serializers.IntegerField()
    timezone = serializers.CharField()
    open_now = serializers.BooleanField()
    next_opening = serializers.DateTimeField(allow_null=True)


# ------------------------------------------------------------------------------------------ on call


class OnCallPersonSerializer(OutputModelSerializer[OnCallPerson]):
    class Meta:
        model = OnCallPerson
        fields = ["id", "name", "phone", "sms_number", "timezone", "active", "created_at"]
        read_only_fields = fields


class OnCallPersonInputSerializer(serializers.Serializer[Any]):
    name = serializers.CharField(max_length=200)
    phone = serializers.CharField(max_length=32, help_text="E.164 number to call.")
    sms_number = serializers.CharField(
        required=False, allow_blank=True, max_length=32, help_text="E.164 number to text (blank: phone)."
    )
    timezone = serializers.CharField(required=False, allow_blank=True, max_length=64)
    active = serializers.BooleanField(required=False)


class OnCallGroupSerializer(OutputModelSerializer[OnCallGroup]):
    members: Any = serializers.PrimaryKeyRelatedField(many=True, read_only=True)

    class Meta:
        model = OnCallGroup
        fields = ["id", "name", "members", "created_at"]
        read_only_fields = fields


class OnCallGroupInputSerializer(serializers.Serializer[Any]):
    name = serializers.CharField(max_length=200)
    members = _ids("oncall_person_list", required=False, help_text="Ids of on-call people.")


class RotationOverrideSerializer(OutputModelSerializer[RotationOverride]):
    class Meta:
        model = RotationOverride
        fields = ["id", "rotation", "person", "starts_at", "ends_at", "created_at"]
        read_only_fields = fields


class RotationSerializer(OutputModelSerializer[Rotation]):
    members = serializers.SerializerMethodField(help_text="Ids of the people, in turn order.")
    overrides = RotationOverrideSerializer(many=True, read_only=True)
    handoff_time = HourMinuteField()

    class Meta:
        model = Rotation
        fields = [
            "id",
            "name",
            "handoff",
            "handoff_weekday",
            "handoff_time",
            "start_date",
            "timezone",
            "members",
            "overrides",
            "created_at",
        ]
        read_only_fields = fields

    @extend_schema_field(serializers.ListField(child=serializers.IntegerField()))
    def get_members(self, rotation: Rotation) -> list[int]:
        return [member.person_id for member in rotation.members.all()]


class RotationInputSerializer(serializers.Serializer[Any]):
    name = serializers.CharField(max_length=200)
    handoff = serializers.ChoiceField(choices=Rotation.Handoff.choices, required=False)
    handoff_weekday = serializers.IntegerField(required=False, min_value=0, max_value=6)
    handoff_time = serializers.TimeField(required=False, help_text="HH:MM, local to the rotation.")
    start_date = serializers.DateField()
    timezone = serializers.CharField(required=False, allow_blank=True, max_length=64)
    members = _ids("oncall_person_list", required=False, help_text="Ids of on-call people, in turn order.")


class RotationOverrideInputSerializer(serializers.Serializer[Any]):
    rotation = ScopedIdField(scoped="rotation_list")
    person = ScopedIdField(scoped="oncall_person_list")
    starts_at = serializers.DateTimeField()
    ends_at = serializers.DateTimeField()


class RotationOverrideUpdateSerializer(serializers.Serializer[Any]):
    person = ScopedIdField(scoped="oncall_person_list")
    starts_at = serializers.DateTimeField()
    ends_at = serializers.DateTimeField()


class RotationOverrideFilterSerializer(serializers.Serializer[Any]):
    rotation = ObjectIdField(required=False)


class OnCallNowQuerySerializer(serializers.Serializer[Any]):
    rotation = ObjectIdField(required=False)
    at = serializers.DateTimeField(required=False, help_text="When (default: now).")


class OnCallNowSerializer(serializers.Serializer[Any]):
    rotation = serializers.IntegerField()
    rotation_name = serializers.CharField()
    at = serializers.DateTimeField()
    person = OnCallPersonSerializer(allow_null=True)


# ----------------------------------------------------------------------------------------- policies


class EscalationStepSerializer(serializers.ModelSerializer[EscalationStep]):
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
        read_only_fields = fields


class EscalationPolicySerializer(OutputModelSerializer[EscalationPolicy]):
    steps = EscalationStepSerializer(many=True, read_only=True)
    fallback_people: Any = serializers.PrimaryKeyRelatedField(many=True, read_only=True)

    class Meta:
        model = EscalationPolicy
        fields = [
            "id",
            "name",
            "repeat",
            "steps",
            "fallback_people",
            "fallback_sms",
            "fallback_callback",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class EscalationStepInputSerializer(serializers.Serializer[Any]):
    target_kind = serializers.ChoiceField(choices=EscalationStep.TargetKind.choices)
    person = ScopedIdField(scoped="oncall_person_list", required=False, allow_null=True)
    rotation = ScopedIdField(scoped="rotation_list", required=False, allow_null=True)
    group = ScopedIdField(scoped="oncall_group_list", required=False, allow_null=True)
    notify_call = serializers.BooleanField(required=False, default=True)
    notify_sms = serializers.BooleanField(required=False, default=True)
    wait_s = serializers.IntegerField(
        required=False,
        default=120,
        min_value=1,
        max_value=MAX_WAIT_S,
        help_text="Seconds to wait for an acknowledgement (at least the server's FLOWS_MIN_STEP_WAIT_S).",
    )


class EscalationPolicyInputSerializer(serializers.Serializer[Any]):
    """A policy; ``steps`` (in order) and ``fallback_people``, when given, replace the whole list."""

    name = serializers.CharField(max_length=200)
    steps = EscalationStepInputSerializer(many=True, max_length=20)  # type: ignore[call-arg]
    repeat = serializers.IntegerField(required=False, min_value=0, max_value=MAX_REPEAT)
    fallback_people = _ids("oncall_person_list", required=False)
    fallback_sms = serializers.CharField(required=False, allow_blank=True, max_length=480)
    fallback_callback = serializers.BooleanField(required=False)


# ---------------------------------------------------------------------------------------- incidents


class IncidentSerializer(OutputModelSerializer[Incident]):
    class Meta:
        model = Incident
        fields = [
            "id",
            "short_code",
            "status",
            "flow",
            "inbound_call",
            "did",
            "caller_number",
            "summary",
            "intake",
            "round",
            "step",
            "acknowledged_by",
            "acknowledged_at",
            "ack_channel",
            "ack_choice",
            "opened_at",
            "exhausted_at",
            "resolved_at",
            "updated_at",
        ]
        read_only_fields = fields


class PageSerializer(OutputModelSerializer[Page]):
    status = serializers.CharField(read_only=True)

    class Meta:
        model = Page
        fields = [
            "id",
            "purpose",
            "person",
            "round",
            "step",
            "channel",
            "to_number",
            "text",
            "status",
            "error",
            "created_at",
            "sent_at",
            "delivered_at",
            "answered_at",
            "responded_at",
            "ended_at",
        ]
        read_only_fields = fields


class IncidentDetailSerializer(IncidentSerializer):
    """An incident with its policy as it was when it opened and its notification legs (pages)."""

    pages = PageSerializer(many=True, read_only=True)

    class Meta(IncidentSerializer.Meta):
        fields = [*IncidentSerializer.Meta.fields, "policy_snapshot", "pages"]
        read_only_fields = fields


class IncidentEventSerializer(OutputModelSerializer[IncidentEvent]):
    person_name = serializers.SerializerMethodField()

    class Meta:
        model = IncidentEvent
        fields = ["id", "at", "kind", "person", "person_name", "page", "channel", "round", "step", "detail"]
        read_only_fields = fields

    def get_person_name(self, event: IncidentEvent) -> str:
        return event.person.name if event.person is not None else ""


class IncidentFilterSerializer(serializers.Serializer[Any]):
    status = serializers.ChoiceField(choices=Incident.Status.choices, required=False)
    flow = ObjectIdField(required=False)
    number = serializers.CharField(required=False, max_length=32, help_text="The number called (E.164).")
    caller = serializers.CharField(required=False, max_length=32, help_text="The caller's number (E.164).")
    since = serializers.DateTimeField(required=False, help_text="Opened at or after.")
    until = serializers.DateTimeField(required=False, help_text="Opened before.")
    acknowledged_by = ObjectIdField(required=False, help_text="Id of the on-call person.")


class IncidentAcknowledgeSerializer(serializers.Serializer[Any]):
    person = ScopedIdField(
        scoped="oncall_person_list",
        required=False,
        allow_null=True,
        help_text="Who takes it (an on-call person's id; none: a manager through the API).",
    )


class IncidentResolveSerializer(serializers.Serializer[Any]):
    note = serializers.CharField(required=False, allow_blank=True, max_length=2000)


# ------------------------------------------------------------------------------------ inbound calls


class InboundCallSerializer(OutputModelSerializer[InboundCall]):
    incident = serializers.SerializerMethodField(help_text="The incident the call opened, if any.")

    class Meta:
        model = InboundCall
        fields = [
            "id",
            "channel_id",
            "flow",
            "phone_number",
            "did",
            "caller_number",
            "caller_name",
            "handling",
            "in_hours",
            "message",
            "status",
            "started_at",
            "answered_at",
            "ended_at",
            "end_reason",
            "transferred_to",
            "intake",
            "transcript",
            "incident",
        ]
        read_only_fields = fields

    @extend_schema_field(serializers.IntegerField(allow_null=True))
    def get_incident(self, call: InboundCall) -> int | None:
        incidents = list(call.incidents.all())
        return incidents[0].pk if incidents else None


class InboundCallFilterSerializer(serializers.Serializer[Any]):
    status = serializers.ChoiceField(choices=InboundCall.Status.choices, required=False)
    handling = serializers.ChoiceField(choices=InboundCall.Handling.choices, required=False)
    flow = ObjectIdField(required=False)
    number = serializers.CharField(required=False, max_length=32, help_text="The number called (E.164).")
    caller = serializers.CharField(required=False, max_length=32, help_text="The caller's number (E.164).")
    since = serializers.DateTimeField(required=False, help_text="Started at or after.")
    until = serializers.DateTimeField(required=False, help_text="Started before.")
