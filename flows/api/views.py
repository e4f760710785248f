"""The tenant-scoped REST API of inbound flows and on-call (``/api/v1/``), in the shape of campaigns' API
(campaigns/api/views.py): views only translate HTTP to service and selector calls.

* every queryset comes from a selector scoped by ``request.tenant`` (flows/setup_selectors.py) and detail
  views look ids up in it, so another tenant's id is a 404 (DESIGN.md §5 rule 7); an id inside a body
  (a flow's policy, a step's person) that is not the tenant's is a 400 naming the field;
* input serializers check types (nested lists too); the services check the rest and raise InvalidInput,
  answered as ``400 {"<field>": ["<message>"]}`` (rule 6);
* members read, admins/owners (and API keys) write (tenants/api/permissions.py); every request counts
  against the tenant's rate (orchestrator/throttling.py); lists are paginated (orchestrator/api.py).
"""

from __future__ import annotations

from datetime import timedelta
from types import ModuleType
from typing import Any, ClassVar

from django.db.models import Model, QuerySet
from django.utils import timezone
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import mixins, status
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import BaseSerializer

from campaigns.phone import normalize_phone_number
from flows import setup_selectors as selectors
from flows.api import serializers as s
from flows.models import (
    EscalationPolicy,
    InboundCall,
    InboundFlow,
    Incident,
    OnCallGroup,
    OnCallPerson,
    PhoneNumber,
    Rotation,
    RotationOverride,
)
from flows.selectors import flow_is_open, flow_next_opening, flow_timezone
from flows.services.incident_actions import (
    incident_acknowledge_by_api,
    incident_escalate_by_api,
    incident_resolve_by_api,
)
from flows.services.setup import (
    inbound_flow_create,
    inbound_flow_delete,
    inbound_flow_update,
    phone_number_create,
    phone_number_delete,
    phone_number_update,
)
from flows.services.setup_oncall import (
    escalation_policy_create,
    escalation_policy_delete,
    escalation_policy_update,
    oncall_group_create,
    oncall_group_delete,
    oncall_group_update,
    oncall_person_create,
    oncall_person_delete,
    oncall_person_update,
    rotation_create,
    rotation_delete,
    rotation_override_create,
    rotation_override_delete,
    rotation_override_update,
    rotation_update,
)
from orchestrator.errors import InvalidInput
from orchestrator.viewsets import TenantViewSet

#: How far from now ``oncall/now?at=`` may look (the turn arithmetic of a rotation stays in range).
ON_CALL_HORIZON = timedelta(days=3660)


class FlowsViewSet(TenantViewSet):
    """Tenant scoping and the read/write role check for the viewsets below (orchestrator/viewsets.py)."""

    selectors: ClassVar[ModuleType | None] = selectors

    def fresh(self, instance: Model) -> Any:
        """The row again through the selector (its nested lists prefetched), for the answer."""
        return self.get_queryset().get(pk=instance.pk)


class _Crud(mixins.ListModelMixin, mixins.RetrieveModelMixin, FlowsViewSet):
    """List, retrieve, and create/PUT/PATCH/DELETE through ``create_object`` / ``update_object`` /
    ``delete_object`` (the services)."""

    input_serializer: type[BaseSerializer[Any]]

    def create_object(self, data: dict[str, Any]) -> Model:
        raise NotImplementedError

    def update_object(self, instance: Any, changes: dict[str, Any]) -> Model:
        raise NotImplementedError

    def delete_object(self, instance: Any) -> None:
        raise NotImplementedError

    def create(self, request: Request) -> Response:
        data = self.validated(self.input_serializer)
        return self.output(self.fresh(self.create_object(dict(data))), code=status.HTTP_201_CREATED)

    def update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        instance = self.get_object()
        changes = self.validated(self.input_serializer, partial=kwargs.pop("partial", False))
        return self.output(self.fresh(self.update_object(instance, dict(changes))))

    def partial_update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return self.update(request, *args, partial=True, **kwargs)

    def destroy(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        self.delete_object(self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)


def _write_schema(input_serializer: type[BaseSerializer[Any]]) -> Any:
    return extend_schema_view(
        create=extend_schema(request=input_serializer),
        update=extend_schema(request=input_serializer),
        partial_update=extend_schema(request=input_serializer),
    )


# ------------------------------------------------------------------------------------- phone numbers


@_write_schema(s.PhoneNumberInputSerializer)
class PhoneNumberViewSet(_Crud):
    """The tenant's numbers (DIDs), each routed to an inbound flow (none: callers are refused politely)."""

    serializer_class = s.PhoneNumberSerializer
    input_serializer = s.PhoneNumberInputSerializer
    selector = "phone_number_list"
    model = PhoneNumber

    def create_object(self, data: dict[str, Any]) -> Model:
        return phone_number_create(tenant=self.tenant, **data)

    def update_object(self, instance: PhoneNumber, changes: dict[str, Any]) -> Model:
        return phone_number_update(phone_number=instance, **changes)

    def delete_object(self, instance: PhoneNumber) -> None:
        phone_number_delete(phone_number=instance)


# ------------------------------------------------------------------------------------- inbound flows


@_write_schema(s.InboundFlowInputSerializer)
class InboundFlowViewSet(_Crud):
    """What happens to calls to the tenant's numbers: the agent, business hours (weekly ranges in the
    flow's timezone, holidays), in hours (agent or transfer to the office line) and after hours (the agent,
    which may page the on-call per the escalation policy), and the intake fields the agent collects."""

    serializer_class = s.InboundFlowSerializer
    input_serializer = s.InboundFlowInputSerializer
    selector = "inbound_flow_list"
    model = InboundFlow

    def create_object(self, data: dict[str, Any]) -> Model:
        return inbound_flow_create(tenant=self.tenant, **data)

    def update_object(self, instance: InboundFlow, changes: dict[str, Any]) -> Model:
        return inbound_flow_update(flow=instance, **changes)

    def delete_object(self, instance: InboundFlow) -> None:
        inbound_flow_delete(flow=instance)

    @extend_schema(responses=s.FlowHoursSerializer, description="Whether the flow is in business hours now.")
    @action(detail=True, methods=["get"])
    def hours(self, request: Request, pk: str) -> Response:
        flow = self.get_object()
        now = timezone.now()
        return Response(
            {
                "flow_id": flow.pk,
                "timezone": flow_timezone(flow=flow),
                "open_now": flow_is_open(flow=flow, at=now),
                "next_opening": flow_next_opening(flow=flow, after=now),
            }
        )


# ------------------------------------------------------------------------------------------ on call


@_write_schema(s.OnCallPersonInputSerializer)
class OnCallPersonViewSet(_Crud):
    serializer_class = s.OnCallPersonSerializer
    input_serializer = s.OnCallPersonInputSerializer
    selector = "oncall_person_list"
    model = OnCallPerson

    def create_object(self, data: dict[str, Any]) -> Model:
        return oncall_person_create(tenant=self.tenant, **data)

    def update_object(self, instance: OnCallPerson, changes: dict[str, Any]) -> Model:
        return oncall_person_update(person=instance, **changes)

    def delete_object(self, instance: OnCallPerson) -> None:
        oncall_person_delete(person=instance)


@_write_schema(s.OnCallGroupInputSerializer)
class OnCallGroupViewSet(_Crud):
    serializer_class = s.OnCallGroupSerializer
    input_serializer = s.OnCallGroupInputSerializer
    selector = "oncall_group_list"
    model = OnCallGroup

    def create_object(self, data: dict[str, Any]) -> Model:
        return oncall_group_create(tenant=self.tenant, **data)

    def update_object(self, instance: OnCallGroup, changes: dict[str, Any]) -> Model:
        return oncall_group_update(group=instance, **changes)

    def delete_object(self, instance: OnCallGroup) -> None:
        oncall_group_delete(group=instance)


@_write_schema(s.RotationInputSerializer)
class RotationViewSet(_Crud):
    """Rotations: ``members`` (ids, in turn order) hand over daily or weekly; overrides are under
    ``/rotation-overrides``."""

    serializer_class = s.RotationSerializer
    input_serializer = s.RotationInputSerializer
    selector = "rotation_list"
    model = Rotation

    def create_object(self, data: dict[str, Any]) -> Model:
        return rotation_create(tenant=self.tenant, **data)

    def update_object(self, instance: Rotation, changes: dict[str, Any]) -> Model:
        return rotation_update(rotation=instance, **changes)

    def delete_object(self, instance: Rotation) -> None:
        rotation_delete(rotation=instance)


@extend_schema_view(
    list=extend_schema(parameters=[s.RotationOverrideFilterSerializer]),
    create=extend_schema(request=s.RotationOverrideInputSerializer),
    update=extend_schema(request=s.RotationOverrideUpdateSerializer),
    partial_update=extend_schema(request=s.RotationOverrideUpdateSerializer),
)
class RotationOverrideViewSet(_Crud):
    """``person`` is on call for ``rotation`` from ``starts_at`` to ``ends_at``, whoever the turn says."""

    serializer_class = s.RotationOverrideSerializer
    input_serializer = s.RotationOverrideUpdateSerializer
    selector = "rotation_override_list"
    model = RotationOverride

    def get_queryset(self) -> QuerySet[Any]:
        if getattr(self, "swagger_fake_view", False) or self.action != "list":
            return super().get_queryset()
        filters = self.query(s.RotationOverrideFilterSerializer)
        return selectors.rotation_override_list(tenant=self.tenant, rotation_id=filters.get("rotation"))

    def create(self, request: Request) -> Response:
        data = self.validated(s.RotationOverrideInputSerializer)
        override = rotation_override_create(**data)
        return self.output(self.fresh(override), code=status.HTTP_201_CREATED)

    def update_object(self, instance: RotationOverride, changes: dict[str, Any]) -> Model:
        return rotation_override_update(override=instance, **changes)

    def delete_object(self, instance: RotationOverride) -> None:
        rotation_override_delete(override=instance)


class OnCallViewSet(FlowsViewSet):
    """Who is on call."""

    serializer_class = s.OnCallNowSerializer
    model = Rotation

    @extend_schema(
        parameters=[s.OnCallNowQuerySerializer],
        responses=s.OnCallNowSerializer(many=True),
        description="Who each rotation (or the one given: a filter, like the lists', so an id the tenant "
        "does not have lists nothing) puts on call now (or at ``at``), overrides first.",
    )
    @action(detail=False, methods=["get"], pagination_class=None)
    def now(self, request: Request) -> Response:
        query = self.query(s.OnCallNowQuerySerializer)
        now = timezone.now()
        at = query.get("at") or now
        if abs(at - now) > ON_CALL_HORIZON:
            raise InvalidInput("at", "must be within 10 years of now")
        rows = selectors.on_call_now(tenant=self.tenant, at=at, rotation_id=query.get("rotation"))
        body = [
            {
                "rotation": rotation.pk,
                "rotation_name": rotation.name,
                "at": at,
                "person": person,
            }
            for rotation, person in rows
        ]
        return Response(s.OnCallNowSerializer(body, many=True).data)


@_write_schema(s.EscalationPolicyInputSerializer)
class EscalationPolicyViewSet(_Crud):
    """Ordered steps (a person, a rotation's on-call or a group; by call and/or SMS; then wait ``wait_s``),
    run ``repeat + 1`` times, then the fallback. Open incidents keep the policy as it was."""

    serializer_class = s.EscalationPolicySerializer
    input_serializer = s.EscalationPolicyInputSerializer
    selector = "escalation_policy_list"
    model = EscalationPolicy

    def create_object(self, data: dict[str, Any]) -> Model:
        return escalation_policy_create(tenant=self.tenant, **data)

    def update_object(self, instance: EscalationPolicy, changes: dict[str, Any]) -> Model:
        return escalation_policy_update(policy=instance, **changes)

    def delete_object(self, instance: EscalationPolicy) -> None:
        escalation_policy_delete(policy=instance)


# ---------------------------------------------------------------------------------------- incidents


@extend_schema_view(list=extend_schema(parameters=[s.IncidentFilterSerializer]))
class IncidentViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, FlowsViewSet):
    """Incidents (urgent calls being escalated): list with filters, detail with the intake, the policy as
    it was and the pages, the ordered timeline, and acknowledge / resolve / escalate now."""

    serializer_class = s.IncidentSerializer
    selector = "incident_detail_list"
    model = Incident

    def get_serializer_class(self) -> type[BaseSerializer[Any]]:
        if self.action == "list":
            return s.IncidentSerializer
        if self.action == "timeline":
            return s.IncidentEventSerializer
        return s.IncidentDetailSerializer

    def get_queryset(self) -> QuerySet[Any]:
        if getattr(self, "swagger_fake_view", False) or self.action != "list":
            return super().get_queryset()
        filters = self.query(s.IncidentFilterSerializer)
        number = filters.get("number")
        caller = filters.get("caller")
        return selectors.incident_search(
            tenant=self.tenant,
            status=filters.get("status"),
            flow_id=filters.get("flow"),
            number=normalize_phone_number(number, field="number") if number else None,
            caller=normalize_phone_number(caller, field="caller") if caller else None,
            since=filters.get("since"),
            until=filters.get("until"),
            acknowledged_by=filters.get("acknowledged_by"),
        )

    @extend_schema(
        responses=s.IncidentEventSerializer(many=True),
        description="The incident's timeline in order (time, then the order written): every step, call, "
        "text, delivery, answer, key, reply, acknowledgement and resolution.",
    )
    @action(detail=True, methods=["get"], pagination_class=None)
    def timeline(self, request: Request, pk: str) -> Response:
        incident = self.get_object()
        events = selectors.incident_events(incident=incident)
        return Response(s.IncidentEventSerializer(events, many=True).data)

    @extend_schema(request=s.IncidentAcknowledgeSerializer, responses=s.IncidentDetailSerializer)
    @action(detail=True, methods=["post"])
    def acknowledge(self, request: Request, pk: str) -> Response:
        incident = self.get_object()
        data = self.validated(s.IncidentAcknowledgeSerializer)
        incident_acknowledge_by_api(incident=incident, person=data.get("person"), by=str(request.user))
        return self.output(self.fresh(incident))

    @extend_schema(request=s.IncidentResolveSerializer, responses=s.IncidentDetailSerializer)
    @action(detail=True, methods=["post"])
    def resolve(self, request: Request, pk: str) -> Response:
        incident = self.get_object()
        data = self.validated(s.IncidentResolveSerializer)
        incident_resolve_by_api(incident=incident, note=data.get("note", ""), by=str(request.user))
        return self.output(self.fresh(incident))

    @extend_schema(request=None, responses=s.IncidentDetailSerializer)
    @action(detail=True, methods=["post"])
    def escalate(self, request: Request, pk: str) -> Response:
        incident = incident_escalate_by_api(incident=self.get_object())
        return self.output(self.fresh(incident))


# ------------------------------------------------------------------------------------ inbound calls


@extend_schema_view(list=extend_schema(parameters=[s.InboundCallFilterSerializer]))
class InboundCallViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, FlowsViewSet):
    """Calls to the tenant's numbers, with how they were handled and what the agent collected (intake)."""

    serializer_class = s.InboundCallSerializer
    selector = "inbound_call_search"
    model = InboundCall

    def get_queryset(self) -> QuerySet[Any]:
        if getattr(self, "swagger_fake_view", False) or self.action != "list":
            return super().get_queryset()
        filters = self.query(s.InboundCallFilterSerializer)
        number = filters.get("number")
        caller = filters.get("caller")
        return selectors.inbound_call_search(
            tenant=self.tenant,
            status=filters.get("status"),
            handling=filters.get("handling"),
            flow_id=filters.get("flow"),
            number=normalize_phone_number(number, field="number") if number else None,
            caller=normalize_phone_number(caller, field="caller") if caller else None,
            since=filters.get("since"),
            until=filters.get("until"),
        )
