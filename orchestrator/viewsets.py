"""The tenant-scoped viewset every domain app's API builds on (campaigns, flows, messaging): scoping by the
request's tenant through a selector, the read/write role check, body type checks and plain answers."""

from __future__ import annotations

from types import ModuleType
from typing import Any, ClassVar, cast

from django.db.models import Model, QuerySet
from rest_framework import status, viewsets
from rest_framework.exceptions import ValidationError
from rest_framework.permissions import SAFE_METHODS
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import BaseSerializer, ListSerializer, Serializer

from orchestrator.api import check_json_types
from tenants.api.authentication import request_tenant
from tenants.api.permissions import TenantRolePermission
from tenants.models import Tenant
from tenants.services import audit_record


def check_nested_json_types(serializer: BaseSerializer[Any], data: Any) -> None:
    """:func:`orchestrator.api.check_json_types` on the body and on each item of its nested lists, with
    the errors under the list's name and the item's position (``{"steps": {"1": {"wait_s": [...]}}}``)."""
    check_json_types(serializer, data)
    if not isinstance(data, dict) or not isinstance(serializer, Serializer):
        return
    errors: dict[str, Any] = {}
    for name, field in serializer.fields.items():
        if not isinstance(field, ListSerializer) or not isinstance(data.get(name), list):
            continue
        for index, item in enumerate(data[name]):
            try:
                check_json_types(cast(BaseSerializer[Any], field.child), item)
            except ValidationError as exc:
                errors.setdefault(name, {})[str(index)] = exc.detail
    if errors:
        raise ValidationError(errors)


class AuditedViewSetMixin:
    """Every successful change made through the API lands in the tenant's audit log (who, when, which
    route)."""

    def finalize_response(self, request: Request, response: Response, *args: Any, **kwargs: Any) -> Response:
        response = super().finalize_response(request, response, *args, **kwargs)  # type: ignore[misc]
        tenant = getattr(request, "tenant", None)
        if request.method not in SAFE_METHODS and response.status_code < 400 and isinstance(tenant, Tenant):
            user = request.user
            api_key = getattr(user, "api_key", None)
            audit_record(
                tenant=tenant,
                actor=None if api_key is not None else user,  # type: ignore[arg-type]
                actor_label=f"API key {api_key.name}" if api_key is not None else str(user),
                via="api",
                action=f"{request.method} {request.path}",
                target=str(kwargs.get("pk", "")),
            )
        return response


class TenantViewSet(AuditedViewSetMixin, viewsets.GenericViewSet):
    """Tenant scoping and the read/write role check. A viewset names the selector that lists the tenant's
    rows (``selector`` in the module ``selectors``), or overrides :meth:`tenant_queryset`."""

    permission_classes = [TenantRolePermission]
    selectors: ClassVar[ModuleType | None] = None
    selector: str = ""
    throttle_scope: str = ""  # a route's own per-tenant rate, besides the tenant's (orchestrator/throttling)
    model: type[Model]

    @property
    def tenant(self) -> Tenant:
        return request_tenant(self.request)

    def tenant_queryset(self) -> QuerySet[Any]:
        queryset: QuerySet[Any] = getattr(self.selectors, self.selector)(tenant=self.tenant)
        return queryset

    def get_queryset(self) -> QuerySet[Any]:
        if getattr(self, "swagger_fake_view", False):  # schema generation: no request tenant
            return self.model._default_manager.none()
        return self.tenant_queryset()

    def get_serializer_context(self) -> dict[str, Any]:
        context = super().get_serializer_context()
        context["tenant"] = getattr(self.request, "tenant", None)
        return context

    def validated(self, serializer_class: type[BaseSerializer[Any]], *, partial: bool = False) -> Any:
        serializer = serializer_class(
            data=self.request.data, partial=partial, context=self.get_serializer_context()
        )
        check_nested_json_types(serializer, self.request.data)
        serializer.is_valid(raise_exception=True)
        return serializer.validated_data

    def query(self, serializer_class: type[BaseSerializer[Any]]) -> Any:
        # A plain dict, not the QueryDict: DRF reads an empty value in form data as "not given", so
        # ``?status=`` would silently list everything; here it is a 400 naming the parameter.
        params = dict(self.request.query_params.items())
        serializer = serializer_class(data=params, context=self.get_serializer_context())
        serializer.is_valid(raise_exception=True)
        return serializer.validated_data

    def output(self, instance: Any, *, code: int = status.HTTP_200_OK) -> Response:
        return Response(self.get_serializer(instance).data, status=code)
