"""The tenant's API keys over the REST API (``/api/v1/api-keys``), for its admins and owners (and API
keys, which act as admin): create one (its secret is in that answer only), list them (never a secret),
revoke one (``DELETE``; the row stays, with its revocation time). A viewer gets a 403; another tenant's key
is a 404 (DESIGN.md §5 rule 7). Keys are made by ``tenants.services.api_key_create``, as in the admin's
"Create an API key" action and ``manage.py create_api_key``.
"""

from __future__ import annotations

from django.contrib.auth.models import User
from django.db.models import QuerySet
from django.utils.cache import add_never_cache_headers
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.request import Request
from rest_framework.response import Response

from orchestrator.api import check_json_types
from orchestrator.viewsets import AuditedViewSetMixin
from tenants.api.authentication import request_tenant
from tenants.api.permissions import TenantAdminPermission
from tenants.api.serializers import ApiKeyCreatedSerializer, ApiKeyInputSerializer, ApiKeySerializer
from tenants.models import ApiKey
from tenants.selectors import api_key_list
from tenants.services import api_key_create, api_key_revoke


class ApiKeyViewSet(
    AuditedViewSetMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet
):
    permission_classes = [TenantAdminPermission]
    serializer_class = ApiKeySerializer

    def get_queryset(self) -> QuerySet[ApiKey]:
        if getattr(self, "swagger_fake_view", False):  # schema generation: no request tenant
            return ApiKey.objects.none()
        return api_key_list(tenant=request_tenant(self.request))

    @extend_schema(request=ApiKeyInputSerializer, responses={201: ApiKeyCreatedSerializer})
    def create(self, request: Request) -> Response:
        serializer = ApiKeyInputSerializer(data=request.data)
        check_json_types(serializer, request.data)
        serializer.is_valid(raise_exception=True)
        # A person's key records who made it; a key made with an API key has no person behind it.
        user = request.user if isinstance(request.user, User) else None
        api_key, raw_key = api_key_create(
            tenant=request_tenant(request), name=serializer.validated_data["name"], created_by=user
        )
        response = Response(
            {**ApiKeySerializer(api_key).data, "key": raw_key}, status=status.HTTP_201_CREATED
        )
        add_never_cache_headers(response)  # the secret must not be kept by any cache
        return response

    @extend_schema(responses={204: None})
    def destroy(self, request: Request, pk: str) -> Response:
        api_key_revoke(api_key=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)
