"""The messaging REST API (``/api/v1/``), tenant-scoped like campaigns/api: every queryset comes from a
selector scoped by ``request.tenant`` (another tenant's id is a 404); validation errors name the field.

* ``GET /messages`` (filters: direction, status, to, from, purpose, ref, since), ``GET /messages/{id}``;
* ``GET|POST /sms-opt-outs``, ``GET|DELETE /sms-opt-outs/{id}``;
* ``GET|POST /sms-accounts``, ``GET|PUT|PATCH|DELETE /sms-accounts/{id}`` (admins and owners only): the
  tenant's own provider credentials, stored encrypted and never returned.
"""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import mixins, status
from rest_framework.request import Request
from rest_framework.response import Response

from messaging import selectors
from messaging.api import serializers as s
from messaging.models import Message, OptOut, SmsAccount
from messaging.services.accounts import sms_account_create, sms_account_delete, sms_account_update
from messaging.services.optouts import opt_out_create, opt_out_remove
from orchestrator.viewsets import TenantViewSet
from tenants.api.permissions import TenantAdminPermission

_TenantViewSet = TenantViewSet  # orchestrator/viewsets.py; each viewset overrides tenant_queryset


@extend_schema_view(list=extend_schema(parameters=[s.MessageFilterSerializer]))
class MessageViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, _TenantViewSet):
    serializer_class = s.MessageSerializer
    model = Message

    def tenant_queryset(self) -> QuerySet[Any]:
        if self.action != "list":
            return selectors.message_list(tenant=self.tenant)
        # A plain dict, not the QueryDict: "?status=" is then a 400 naming it, not "no filter".
        query = s.MessageFilterSerializer(data=dict(self.request.query_params.items()))
        query.is_valid(raise_exception=True)
        filters = query.validated_data
        return selectors.message_list(
            tenant=self.tenant,
            direction=filters.get("direction"),
            status=filters.get("status"),
            to_number=filters.get("to"),
            from_number=filters.get("from"),
            purpose=filters.get("purpose"),
            ref=filters.get("ref"),
            since=filters.get("since"),
        )


@extend_schema_view(create=extend_schema(request=s.OptOutInputSerializer))
class OptOutViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, _TenantViewSet):
    serializer_class = s.OptOutSerializer
    model = OptOut

    def tenant_queryset(self) -> QuerySet[Any]:
        return selectors.opt_out_list(tenant=self.tenant)

    def create(self, request: Request) -> Response:
        data = self.validated(s.OptOutInputSerializer)
        return self.output(opt_out_create(tenant=self.tenant, **data), code=status.HTTP_201_CREATED)

    def destroy(self, request: Request, pk: str) -> Response:
        entry = self.get_object()
        opt_out_remove(tenant_id=self.tenant.pk, phone_number=entry.phone_number)
        return Response(status=status.HTTP_204_NO_CONTENT)


@extend_schema_view(
    create=extend_schema(request=s.SmsAccountInputSerializer),
    update=extend_schema(request=s.SmsAccountInputSerializer),
    partial_update=extend_schema(request=s.SmsAccountInputSerializer),
)
class SmsAccountViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, _TenantViewSet):
    permission_classes = [TenantAdminPermission]
    serializer_class = s.SmsAccountSerializer
    model = SmsAccount

    def tenant_queryset(self) -> QuerySet[Any]:
        return selectors.sms_account_list(tenant=self.tenant)

    def create(self, request: Request) -> Response:
        data = self.validated(s.SmsAccountInputSerializer)
        account = sms_account_create(tenant=self.tenant, by_tenant=True, **data)
        return self.output(account, code=status.HTTP_201_CREATED)

    def update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        account = self.get_object()
        changes = self.validated(s.SmsAccountInputSerializer, partial=kwargs.pop("partial", False))
        return self.output(sms_account_update(account=account, by_tenant=True, **changes))

    def partial_update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return self.update(request, *args, partial=True, **kwargs)

    def destroy(self, request: Request, pk: str) -> Response:
        sms_account_delete(account=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)
