"""Role permissions of the REST API (see tenants/api/authentication.py for how the role is found).

* ``TenantRolePermission``: every member may read; writing (POST, PUT, PATCH, DELETE) needs the ``write``
  capability (manager, admin, owner).
* ``TenantAdminPermission``: the ``settings`` capability (admin or owner) for everything, reading included
  (PBXs: URLs, users).
API keys act as admin. Which role may do what is decided in tenants/roles.py, for the portal too.
"""

from __future__ import annotations

from typing import Any

from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework.request import Request

from tenants.api.authentication import NO_TENANT_MESSAGE
from tenants.roles import Capability, role_can


class TenantRolePermission(BasePermission):
    message = NO_TENANT_MESSAGE

    def has_permission(self, request: Request, view: Any) -> bool:
        if not (request.user and request.user.is_authenticated):
            return False
        if getattr(request, "tenant", None) is None:
            self.message = NO_TENANT_MESSAGE
            return False
        if request.method in SAFE_METHODS:
            return True
        self.message = "Your role in this tenant is read-only (viewer); changes need manager, admin or owner."
        return role_can(getattr(request, "tenant_role", None), Capability.WRITE)


class TenantAdminPermission(BasePermission):
    message = NO_TENANT_MESSAGE

    def has_permission(self, request: Request, view: Any) -> bool:
        if not (request.user and request.user.is_authenticated):
            return False
        if getattr(request, "tenant", None) is None:
            self.message = NO_TENANT_MESSAGE
            return False
        self.message = "Only a tenant admin or owner may do this."
        return role_can(getattr(request, "tenant_role", None), Capability.SETTINGS)
