"""The transfers API: a tenant's transfer targets (a number, a queue or a round-robin group of reps with
their caps), their reps, and the read-only list of a call's transfers. Writes go through
``campaigns.services.transfers``; its InvalidInput names the field (``members[1].number``) in the 400."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import mixins, serializers, status
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound
from rest_framework.request import Request
from rest_framework.response import Response

from campaigns import transfer_selectors
from campaigns.models_transfers import (
    TRANSFER_ENDPOINT_MAX_LENGTH,
    TRANSFER_NAME_MAX_LENGTH,
    CallTransfer,
    TransferKind,
    TransferMode,
    TransferTarget,
    TransferTargetMember,
)
from campaigns.services.transfers import (
    MAX_CAP,
    MAX_MEMBERS,
    transfer_member_add,
    transfer_member_remove,
    transfer_member_update,
    transfer_target_create,
    transfer_target_delete,
    transfer_target_update,
)
from orchestrator.api import OutputModelSerializer
from orchestrator.viewsets import TenantViewSet


class TransferMemberSerializer(OutputModelSerializer[TransferTargetMember]):
    live = serializers.IntegerField(read_only=True, default=0, help_text="Its live transfers now.")

    class Meta:
        model = TransferTargetMember
        fields = ["id", "name", "number", "max_concurrent", "position", "enabled", "live"]
        read_only_fields = fields


class TransferTargetSerializer(OutputModelSerializer[TransferTarget]):
    members = TransferMemberSerializer(many=True, read_only=True)

    class Meta:
        model = TransferTarget
        fields = ["id", "name", "kind", "number", "endpoint", "mode", "members", "created_at", "updated_at"]
        read_only_fields = fields


class TransferMemberInputSerializer(serializers.Serializer[Any]):
    name = serializers.CharField(max_length=TRANSFER_NAME_MAX_LENGTH)
    number = serializers.CharField(max_length=32)
    max_concurrent = serializers.IntegerField(required=False, min_value=1, max_value=MAX_CAP)
    position = serializers.IntegerField(required=False, min_value=0, max_value=10_000)
    enabled = serializers.BooleanField(required=False)


class TransferTargetInputSerializer(serializers.Serializer[Any]):
    name = serializers.CharField(max_length=TRANSFER_NAME_MAX_LENGTH)
    kind = serializers.ChoiceField(choices=TransferKind.choices, default=TransferKind.NUMBER)
    number = serializers.CharField(max_length=32, required=False, allow_blank=True)
    endpoint = serializers.CharField(
        max_length=TRANSFER_ENDPOINT_MAX_LENGTH, required=False, allow_blank=True
    )
    mode = serializers.ChoiceField(choices=TransferMode.choices, default=TransferMode.WARM)
    members = serializers.ListField(
        child=TransferMemberInputSerializer(), required=False, max_length=MAX_MEMBERS
    )


class TransferTargetUpdateSerializer(serializers.Serializer[Any]):
    """The kind and the reps are not changed here (the reps have their own routes)."""

    name = serializers.CharField(max_length=TRANSFER_NAME_MAX_LENGTH, required=False)
    number = serializers.CharField(max_length=32, required=False, allow_blank=True)
    endpoint = serializers.CharField(
        max_length=TRANSFER_ENDPOINT_MAX_LENGTH, required=False, allow_blank=True
    )
    mode = serializers.ChoiceField(choices=TransferMode.choices, required=False)


class CallTransferSerializer(OutputModelSerializer[CallTransfer]):
    target_name = serializers.CharField(source="target.name", default="", read_only=True)
    member_name = serializers.CharField(source="member.name", default="", read_only=True)

    class Meta:
        model = CallTransfer
        fields = [
            "id", "attempt", "target", "target_name", "member", "member_name", "number", "endpoint", "mode",
            "state", "reason", "summary", "created_at", "answered_at", "connected_at", "ended_at",
        ]  # fmt: skip
        read_only_fields = fields


class CallTransferFilterSerializer(serializers.Serializer[Any]):
    attempt = serializers.UUIDField(required=False)


@extend_schema_view(
    create=extend_schema(request=TransferTargetInputSerializer),
    update=extend_schema(request=TransferTargetUpdateSerializer),
    partial_update=extend_schema(request=TransferTargetUpdateSerializer),
)
class TransferTargetViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, TenantViewSet):
    serializer_class = TransferTargetSerializer
    model = TransferTarget

    def tenant_queryset(self) -> QuerySet[Any]:
        return transfer_selectors.transfer_target_list(tenant=self.tenant)

    def _fresh(self, target: TransferTarget) -> Response:
        return self.output(self.tenant_queryset().get(pk=target.pk))

    def create(self, request: Request) -> Response:
        data = dict(self.validated(TransferTargetInputSerializer))
        target = transfer_target_create(tenant=self.tenant, **data)
        response = self._fresh(target)
        response.status_code = status.HTTP_201_CREATED
        return response

    def update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        target = self.get_object()
        changes = self.validated(TransferTargetUpdateSerializer, partial=kwargs.pop("partial", False))
        return self._fresh(transfer_target_update(target=target, **dict(changes)))

    def partial_update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return self.update(request, *args, partial=True, **kwargs)

    def destroy(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        transfer_target_delete(target=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(request=TransferMemberInputSerializer, responses=TransferTargetSerializer)
    @action(detail=True, methods=["post"])
    def members(self, request: Request, pk: str) -> Response:
        """Add a rep to a group."""
        target = self.get_object()
        transfer_member_add(target=target, data=dict(self.validated(TransferMemberInputSerializer)))
        response = self._fresh(target)
        response.status_code = status.HTTP_201_CREATED
        return response

    @extend_schema(request=TransferMemberInputSerializer, responses=TransferTargetSerializer)
    @action(detail=True, methods=["patch", "delete"], url_path=r"members/(?P<member_id>[0-9]+)")
    def member(self, request: Request, pk: str, member_id: str) -> Response:
        """Change a rep (name, number, cap, position, enabled) or remove them."""
        target = self.get_object()
        found = target.members.filter(pk=int(member_id)).first()
        if found is None:
            raise NotFound("No such member of this target.")
        if request.method == "DELETE":
            transfer_member_remove(member=found)
            return Response(status=status.HTTP_204_NO_CONTENT)
        data = dict(self.validated(TransferMemberInputSerializer, partial=True))
        transfer_member_update(member=found, data=data)
        return self._fresh(target)


class CallTransferViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, TenantViewSet):
    """The transfers of calls (``?attempt=<id>``: one call's), newest first. Read-only."""

    serializer_class = CallTransferSerializer
    model = CallTransfer

    def tenant_queryset(self) -> QuerySet[Any]:
        attempt = None
        if self.action == "list":
            attempt = self.query(CallTransferFilterSerializer).get("attempt")
        return transfer_selectors.call_transfer_list(tenant=self.tenant, attempt_id=attempt)
