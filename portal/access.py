"""Who is signed in to the portal, in which tenant, and what their role lets them do.

Every portal page is a view wrapped in :func:`portal_view`, which:

* sends an anonymous visitor to the sign-in page (``?next=`` back here);
* finds the tenant: the one the user picked (kept in the session), else their first active membership; a
  user with no active membership sees a page that says so;
* refuses, with a 403 page, a request whose role lacks the view's capability (tenants/roles.py): a viewer's
  forged POST changes nothing;
* hands the view ``request.portal`` (:class:`PortalContext`), which the templates read as ``portal``.

Every query of a portal view is scoped by ``request.portal.tenant`` through the domain apps' selectors; an id
of another tenant's row is a 404, as in the API (DESIGN.md §5 rule 7).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import render

from tenants.models import Membership, Tenant
from tenants.roles import Capability, role_can
from tenants.selectors import memberships_for_user
from tenants.services import audit_record

if TYPE_CHECKING:
    from django.contrib.auth.models import User

SESSION_TENANT_KEY = "portal_tenant"
_R = TypeVar("_R", bound=HttpResponseBase)


@dataclass
class PortalContext:
    user: User
    membership: Membership
    memberships: list[Membership] = field(default_factory=list)

    @property
    def tenant(self) -> Tenant:
        return self.membership.tenant

    @property
    def role(self) -> str:
        return self.membership.role

    def can(self, capability: Capability | str) -> bool:
        return role_can(self.role, Capability(capability))

    @property
    def can_write(self) -> bool:
        return self.can(Capability.WRITE)

    @property
    def can_settings(self) -> bool:
        return self.can(Capability.SETTINGS)

    @property
    def can_own(self) -> bool:
        return self.can(Capability.OWN)


class PortalRequest(HttpRequest):
    """For type checking: a request that went through :func:`portal_view`."""

    portal: PortalContext
    user: User


def resolve_membership(request: HttpRequest) -> tuple[Membership | None, list[Membership]]:
    """The signed-in user's membership for the session's tenant (or their first active one), and all of
    their active memberships (for the tenant switcher)."""
    active = [m for m in memberships_for_user(user=request.user) if m.tenant.is_active]
    chosen = request.session.get(SESSION_TENANT_KEY)
    for membership in active:
        if membership.tenant.slug == chosen:
            return membership, active
    return (active[0] if active else None), active


def portal_view(
    capability: Capability = Capability.READ, *, write_methods_need: Capability | None = Capability.WRITE
) -> Callable[[Callable[..., _R]], Callable[..., _R | HttpResponse]]:
    """Wrap a portal view: sign-in, tenant, role. ``capability`` is needed for any method; a POST (PUT,
    PATCH, DELETE) also needs ``write_methods_need`` (WRITE unless given)."""

    def decorate(view: Callable[..., _R]) -> Callable[..., _R | HttpResponse]:
        @functools.wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> _R | HttpResponse:
            if not request.user.is_authenticated:
                return redirect_to_login(request.get_full_path())
            membership, memberships = resolve_membership(request)
            if membership is None:
                return render(request, "portal/no_tenant.html", status=403)
            portal = PortalContext(user=request.user, membership=membership, memberships=memberships)
            request.portal = portal  # type: ignore[attr-defined]
            needed = [capability]
            if request.method not in ("GET", "HEAD", "OPTIONS") and write_methods_need is not None:
                needed.append(write_methods_need)
            if not all(portal.can(c) for c in needed):
                return render(
                    request,
                    "portal/forbidden.html",
                    {"portal": portal, "needed": max(needed, key=_rank)},
                    status=403,
                )
            return view(request, *args, **kwargs)

        return wrapper

    return decorate


def _rank(capability: Capability) -> int:
    return [Capability.READ, Capability.WRITE, Capability.SETTINGS, Capability.OWN].index(capability)


def portal_audit(request: HttpRequest, action: str, target: str = "", **detail: Any) -> None:
    """Record a change the signed-in user made in the portal in the tenant's audit log (tenants.services)."""
    portal: PortalContext = request.portal  # type: ignore[attr-defined]
    audit_record(
        tenant=portal.tenant,
        actor=portal.user,
        actor_label=portal.user.get_username(),
        via="portal",
        action=action,
        target=target,
        detail=detail,
    )
