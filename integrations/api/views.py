"""The webhooks REST API (``/api/v1/``), for admins and owners (and API keys), tenant-scoped (another
tenant's id is a 404):

* ``GET|POST /webhook-endpoints``, ``GET|PUT|PATCH|DELETE /webhook-endpoints/{id}``: the secret is in the
  answer to the POST only; ``POST /webhook-endpoints/{id}/rotate-secret`` answers a new one (once);
  ``POST /webhook-endpoints/{id}/test`` sends a ``webhook.test`` event (the delivery is answered).
* ``GET /webhook-deliveries`` (filters: endpoint, status), ``GET /webhook-deliveries/{id}`` (with the
  payload), ``POST /webhook-deliveries/{id}/redeliver``.
"""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import mixins, status
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import BaseSerializer

from integrations import selectors
from integrations.api import serializers as s
from integrations.models import WebhookDelivery, WebhookEndpoint
from integrations.services.deliveries import webhook_redeliver, webhook_test_send
from integrations.services.endpoints import (
    EndpointWithSecret,
    webhook_endpoint_create,
    webhook_endpoint_delete,
    webhook_endpoint_rotate_secret,
    webhook_endpoint_update,
)
from orchestrator.viewsets import TenantViewSet
from tenants.api.permissions import TenantAdminPermission


@extend_schema_view(
    create=extend_schema(
        request=s.WebhookEndpointInputSerializer, responses=s.WebhookEndpointWithSecretSerializer
    ),
    update=extend_schema(request=s.WebhookEndpointInputSerializer),
    partial_update=extend_schema(request=s.WebhookEndpointInputSerializer),
)
class WebhookEndpointViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, TenantViewSet):
    permission_classes = [TenantAdminPermission]
    serializer_class = s.WebhookEndpointSerializer
    model = WebhookEndpoint

    def tenant_queryset(self) -> QuerySet[Any]:
        return selectors.webhook_endpoint_list(tenant=self.tenant)

    def _with_secret(self, made: EndpointWithSecret, *, code: int = status.HTTP_200_OK) -> Response:
        context = {**self.get_serializer_context(), "secret": made.secret}
        return Response(
            s.WebhookEndpointWithSecretSerializer(made.endpoint, context=context).data, status=code
        )

    def create(self, request: Request) -> Response:
        data = self.validated(s.WebhookEndpointInputSerializer)
        made = webhook_endpoint_create(tenant=self.tenant, **data)
        return self._with_secret(made, code=status.HTTP_201_CREATED)

    def update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        endpoint = self.get_object()
        changes = self.validated(s.WebhookEndpointInputSerializer, partial=kwargs.pop("partial", False))
        return self.output(webhook_endpoint_update(endpoint=endpoint, **changes))

    def partial_update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return self.update(request, *args, partial=True, **kwargs)

    def destroy(self, request: Request, pk: str) -> Response:
        webhook_endpoint_delete(endpoint=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(request=None, responses=s.WebhookEndpointWithSecretSerializer)
    @action(detail=True, methods=["post"], url_path="rotate-secret")
    def rotate_secret(self, request: Request, pk: str) -> Response:
        return self._with_secret(webhook_endpoint_rotate_secret(endpoint=self.get_object()))

    @extend_schema(request=None, responses={202: s.WebhookDeliverySerializer})
    @action(detail=True, methods=["post"])
    def test(self, request: Request, pk: str) -> Response:
        delivery = webhook_test_send(endpoint=self.get_object())
        body = s.WebhookDeliverySerializer(delivery, context=self.get_serializer_context()).data
        return Response(body, status=status.HTTP_202_ACCEPTED)


@extend_schema_view(list=extend_schema(parameters=[s.WebhookDeliveryFilterSerializer]))
class WebhookDeliveryViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, TenantViewSet):
    permission_classes = [TenantAdminPermission]
    serializer_class = s.WebhookDeliverySerializer
    model = WebhookDelivery

    def get_serializer_class(self) -> type[BaseSerializer[Any]]:
        return s.WebhookDeliveryDetailSerializer if self.action == "retrieve" else s.WebhookDeliverySerializer

    def tenant_queryset(self) -> QuerySet[Any]:
        if self.action != "list":
            return selectors.webhook_delivery_list(tenant=self.tenant)
        filters = self.query(s.WebhookDeliveryFilterSerializer)
        return selectors.webhook_delivery_list(
            tenant=self.tenant, endpoint_id=filters.get("endpoint"), status=filters.get("status")
        ).defer("payload")

    @extend_schema(request=None, responses={202: s.WebhookDeliverySerializer})
    @action(detail=True, methods=["post"])
    def redeliver(self, request: Request, pk: str) -> Response:
        delivery = webhook_redeliver(delivery=self.get_object())
        return self.output(delivery, code=status.HTTP_202_ACCEPTED)
