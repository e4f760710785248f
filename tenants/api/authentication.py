"""Who is calling the REST API, and for which tenant.

Two ways in, tried in this order:

* **API key**: ``Authorization: Bearer vco_...`` (the key printed by ``manage.py create_tenant`` or made in
  the admin). The key belongs to one tenant and acts with **admin** rights in it (it can change campaigns,
  contacts, DNC and PBXs, but it is not a person, so it is never an owner). A malformed, unknown or revoked
  key, or a key of a suspended tenant, is a 401 with ``WWW-Authenticate: Bearer``.
* **Django session** (the portal, the browsable docs): the logged-in user's tenant is their only
  membership, or, for a member of several tenants, the one whose slug is in the ``X-Tenant`` header. The
  user's role in that tenant applies (viewer: read only; admin/owner: read and write). A user with no
  (matching) membership, or whose tenant is suspended, gets a 403 from the permission classes.

Either way the request carries ``request.tenant`` (a Tenant or None) and ``request.tenant_role``.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework.authentication import BaseAuthentication, SessionAuthentication, get_authorization_header
from rest_framework.exceptions import AuthenticationFailed, NotAuthenticated, PermissionDenied
from rest_framework.request import Request

from tenants.models import ApiKey, Membership, Tenant
from tenants.selectors import api_key_authenticate, membership_for_user

TENANT_HEADER = "X-Tenant"


class ApiKeyPrincipal:
    """The ``request.user`` of an API-key request: not a Django user, but authenticated."""

    is_authenticated = True
    is_anonymous = False
    is_active = True
    is_staff = False
    is_superuser = False

    def __init__(self, api_key: ApiKey) -> None:
        self.api_key = api_key
        self.pk = None
        self.id = None
        self.username = f"api-key:{api_key.prefix}"

    def __str__(self) -> str:
        return self.username


def _set_tenant(request: Request, tenant: Tenant | None, role: str | None) -> None:
    # On the DRF request and on the Django request under it, so middleware and logging see it too.
    for target in (request, request._request):
        setattr(target, "tenant", tenant)  # noqa: B010 - not an attribute the type declares
        setattr(target, "tenant_role", role)  # noqa: B010


class ApiKeyAuthentication(BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request: Request) -> tuple[Any, Any] | None:
        parts = get_authorization_header(request).split()
        if not parts or parts[0].lower() != self.keyword.lower().encode():
            return None  # not ours: let the next class (session) try
        if len(parts) != 2:
            raise AuthenticationFailed("Invalid Authorization header: expected 'Bearer <API key>'.")
        try:
            raw_key = parts[1].decode("ascii")
        except UnicodeDecodeError as exc:
            raise AuthenticationFailed("Invalid API key.") from exc
        api_key = api_key_authenticate(raw_key=raw_key)
        if api_key is None:
            raise AuthenticationFailed("Invalid, revoked or suspended API key.")
        _set_tenant(request, api_key.tenant, Membership.Role.ADMIN)
        return ApiKeyPrincipal(api_key), api_key

    def authenticate_header(self, request: Request) -> str:
        return f'{self.keyword} realm="api"'


class TenantSessionAuthentication(SessionAuthentication):
    """Session login (with DRF's CSRF check for unsafe methods) plus the tenant from the memberships."""

    def authenticate(self, request: Request) -> tuple[Any, Any] | None:
        result = super().authenticate(request)
        if result is None:
            return None
        user = result[0]
        slug = request.headers.get(TENANT_HEADER) or None
        membership = membership_for_user(user=user, slug=slug)
        if membership is None or not membership.tenant.is_active:
            _set_tenant(request, None, None)
        else:
            _set_tenant(request, membership.tenant, membership.role)
        return result


def request_tenant(request: Request) -> Tenant:
    """The tenant of an authenticated request (the permission classes have already required one)."""
    tenant = getattr(request, "tenant", None)
    if tenant is None:
        if not request.user or not request.user.is_authenticated:
            raise NotAuthenticated()
        raise PermissionDenied(NO_TENANT_MESSAGE)
    assert isinstance(tenant, Tenant)  # noqa: S101 - set only by the classes above
    return tenant


NO_TENANT_MESSAGE = (
    f"No tenant for this user: it must be a member of an active tenant, and name it in the {TENANT_HEADER} "
    "header (its slug) when it belongs to several."
)


class ApiKeyScheme(OpenApiAuthenticationExtension):
    """How the OpenAPI document (``/api/schema/``) describes the API key."""

    target_class = ApiKeyAuthentication
    name = "ApiKey"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {"type": "http", "scheme": "bearer", "description": "A tenant API key: vco_..."}


class TenantSessionScheme(OpenApiAuthenticationExtension):
    target_class = TenantSessionAuthentication
    name = "Session"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {
            "type": "apiKey",
            "in": "cookie",
            "name": "sessionid",
            "description": f"A logged-in member; {TENANT_HEADER}: <slug> picks the tenant among several.",
        }
