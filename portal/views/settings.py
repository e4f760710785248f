"""Portal pages: the tenant's settings, for its admins and owners (Capability.SETTINGS).

* **Index**: what there is to set, with a line of state each. A manager or viewer sees their own account
  and that their role cannot change settings (no links to the pages they would be refused).
* **API keys**: create one (the raw key is shown once, on the answer to the POST, never stored, never in a
  flash message: that would keep it in the session until shown), list them, revoke one.
* **Members**: who belongs to the tenant with which role; change a role or remove a member within what the
  acting role may grant (tenants/roles.py ``roles_grantable_by``: an admin never touches an owner or an
  admin); the last owner can be neither demoted nor removed (tenants/services.py).
* **Invitations**: invite an address with a role (a link is mailed; only its hash is kept), list the pending
  ones, revoke one. Accepting is ``portal:invite-accept`` (portal/views/auth.py).
* **SMS**: the provider credentials, write-only (the secret is never rendered back; the page says whether
  one is set), through the messaging API's input serializer and services; the webhook URLs to paste.
* **Webhooks**: the provider webhook URLs and how their signatures are checked.
* **Audit log**: who changed what, filtered by actor and action, paginated.

Every write records an audit entry after it succeeded (``portal_audit``).
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import path
from django.utils.cache import add_never_cache_headers
from django.views.decorators.http import require_POST

from messaging.api.serializers import SmsAccountInputSerializer
from messaging.models import Provider, SmsAccount
from messaging.selectors import sms_account_list
from messaging.services.accounts import (
    sms_account_create,
    sms_account_delete,
    sms_account_has_secret,
    sms_account_update,
    webhook_status,
)
from orchestrator.errors import InvalidInput
from portal.access import PortalRequest, portal_audit, portal_view
from portal.forms import Bound, bind, initial
from portal.pagination import paginate
from tenants.api.serializers import ApiKeyInputSerializer
from tenants.models import ApiKey, Membership
from tenants.roles import Capability, role_can, roles_grantable_by
from tenants.selectors import (
    api_key_list,
    audit_actor_labels,
    audit_list,
    invitation_list,
    member_list,
)
from tenants.services import (
    api_key_create,
    api_key_revoke,
    invitation_create,
    invitation_revoke,
    membership_change_role,
    membership_remove,
)

_ROLE_LABELS = dict(Membership.Role.choices)


def _portal(request: HttpRequest) -> PortalRequest:
    return request  # type: ignore[return-value]  # portal_view has set request.portal


def _role_choices(role: str) -> list[tuple[str, str]]:
    return [(r, _ROLE_LABELS[r]) for r in roles_grantable_by(role)]


def _member_label(membership: Membership) -> str:
    return f"member {membership.user.get_username()}"


def _key_label(api_key: ApiKey) -> str:
    return f"API key {api_key.pk} ({api_key.name})"


# ------------------------------------------------------------------------------------------------ index
@portal_view()  # any member: a manager or viewer sees their own account and why there is nothing else
def index(request: HttpRequest) -> HttpResponse:
    portal = _portal(request).portal
    context: dict[str, Any] = {"title": "Settings"}
    if portal.can_settings:
        tenant = portal.tenant
        account = sms_account_list(tenant=tenant).first()
        context.update(
            active_keys=api_key_list(tenant=tenant).filter(revoked_at__isnull=True).count(),
            member_count=member_list(tenant=tenant).count(),
            pending_invitations=invitation_list(tenant=tenant).count(),
            sms_account=account,
            sms_has_secret=account is not None and sms_account_has_secret(account),
        )
    return render(request, "portal/settings/index.html", context)


# --------------------------------------------------------------------------------------------- API keys
@portal_view(Capability.SETTINGS)
def api_keys(request: HttpRequest) -> HttpResponse:
    """List the keys; a POST creates one and answers with this page showing its raw key once."""
    portal = _portal(request).portal
    form = Bound()
    created: tuple[ApiKey, str] | None = None
    if request.method == "POST":
        form = bind(ApiKeyInputSerializer, request.POST)
        if form.ok:
            try:
                created = api_key_create(tenant=portal.tenant, name=form.data["name"], created_by=portal.user)
            except InvalidInput as exc:
                form.add_invalid(exc)
            else:
                portal_audit(request, "api_key.create", _key_label(created[0]))
                form = Bound()
    page = paginate(request, api_key_list(tenant=portal.tenant).select_related("created_by"))
    status = 400 if form.errors else 200
    response = render(
        request,
        "portal/settings/api_keys.html",
        {"title": "API keys", "form": form, "page": page, "created": created},
        status=status,
    )
    if created is not None:
        add_never_cache_headers(response)  # the raw key must not be kept by any cache
    return response


@require_POST
@portal_view(Capability.SETTINGS)
def api_key_revoke_view(request: HttpRequest, pk: int) -> HttpResponse:
    portal = _portal(request).portal
    api_key = get_object_or_404(api_key_list(tenant=portal.tenant), pk=pk)
    if api_key.revoked_at is None:
        api_key_revoke(api_key=api_key)
        portal_audit(request, "api_key.revoke", _key_label(api_key))
        messages.success(request, f"API key “{api_key.name}” revoked: it no longer works.")
    return redirect("portal:api-keys")


# ---------------------------------------------------------------------------------------------- members
def _members_page(
    request: HttpRequest, *, row_errors: dict[int, str] | None = None, status: int = 200
) -> HttpResponse:
    portal = _portal(request).portal
    grantable = roles_grantable_by(portal.role)
    page = paginate(request, member_list(tenant=portal.tenant))
    rows = [{"m": m, "manageable": m.role in grantable} for m in page]
    return render(
        request,
        "portal/settings/members.html",
        {
            "title": "Members",
            "page": page,
            "rows": rows,
            "role_choices": _role_choices(portal.role),
            "row_errors": row_errors or {},
            "pending_invitations": invitation_list(tenant=portal.tenant).count(),
        },
        status=status,
    )


@portal_view(Capability.SETTINGS)
def members(request: HttpRequest) -> HttpResponse:
    return _members_page(request)


@require_POST
@portal_view(Capability.SETTINGS)
def member_role(request: HttpRequest, pk: int) -> HttpResponse:
    portal = _portal(request).portal
    membership = get_object_or_404(member_list(tenant=portal.tenant), pk=pk)
    before = membership.role
    try:
        membership_change_role(membership=membership, role=request.POST.get("role", ""), by_role=portal.role)
    except InvalidInput as exc:
        return _members_page(request, row_errors={membership.pk: exc.message}, status=400)
    if membership.role != before:
        portal_audit(request, "member.role", _member_label(membership), before=before, after=membership.role)
        messages.success(request, f"{membership.user.get_username()} is now {_ROLE_LABELS[membership.role]}.")
    if membership.pk == portal.membership.pk and not role_can(membership.role, Capability.SETTINGS):
        return redirect("portal:settings")  # you gave away your own access to this page
    return redirect("portal:members")


@require_POST
@portal_view(Capability.SETTINGS)
def member_remove(request: HttpRequest, pk: int) -> HttpResponse:
    portal = _portal(request).portal
    membership = get_object_or_404(member_list(tenant=portal.tenant), pk=pk)
    try:
        membership_remove(membership=membership, by_role=portal.role)
    except InvalidInput as exc:
        return _members_page(request, row_errors={membership.pk: exc.message}, status=400)
    portal_audit(request, "member.remove", _member_label(membership), role=membership.role)
    messages.success(request, f"{membership.user.get_username()} no longer belongs to {portal.tenant.name}.")
    if membership.pk == portal.membership.pk:
        return redirect("portal:dashboard")  # you left: the portal finds your next tenant, if any
    return redirect("portal:members")


# ------------------------------------------------------------------------------------------ invitations
@portal_view(Capability.SETTINGS)
def invitations(request: HttpRequest) -> HttpResponse:
    """The pending invitations; a POST invites an address (the link is mailed, never shown here)."""
    portal = _portal(request).portal
    form = Bound()
    if request.method == "POST":
        form = Bound(
            values={"email": request.POST.get("email", ""), "role": request.POST.get("role", "")},
            submitted=True,
        )
        if not form.values["email"].strip():
            form.add_error("email", "This field is required.")
        else:
            try:
                invitation, _ = invitation_create(
                    tenant=portal.tenant,
                    email=form.values["email"],
                    role=form.values["role"],
                    invited_by=portal.user,
                    by_role=portal.role,
                )
            except InvalidInput as exc:
                form.add_invalid(exc)
            else:
                portal_audit(
                    request, "invitation.create", f"invitation of {invitation.email}", role=invitation.role
                )
                messages.success(
                    request,
                    f"Invitation mailed to {invitation.email}: the link works once, for 7 days.",
                )
                return redirect("portal:invitations")
    page = paginate(request, invitation_list(tenant=portal.tenant))
    return render(
        request,
        "portal/settings/invitations.html",
        {"title": "Invitations", "form": form, "page": page, "role_choices": _role_choices(portal.role)},
        status=400 if form.errors else 200,
    )


@require_POST
@portal_view(Capability.SETTINGS)
def invitation_revoke_view(request: HttpRequest, pk: int) -> HttpResponse:
    portal = _portal(request).portal
    invitation = get_object_or_404(invitation_list(tenant=portal.tenant, pending_only=False), pk=pk)
    if invitation.accepted_at is None and invitation.revoked_at is None:
        invitation_revoke(invitation=invitation)
        portal_audit(request, "invitation.revoke", f"invitation of {invitation.email}")
        messages.success(
            request, f"The invitation of {invitation.email} is revoked: its link no longer works."
        )
    return redirect("portal:invitations")


# -------------------------------------------------------------------------------------------------- SMS
_SMS_FIELDS = ("kind", "username", "public_key", "messaging_profile_id", "api_base", "enabled")


def _sms_initial(account: SmsAccount | None) -> Bound:
    if account is None:
        return initial({"kind": Provider.TWILIO, "enabled": True})
    values: dict[str, Any] = {name: getattr(account, name) for name in _SMS_FIELDS}
    values["from_numbers"] = "\n".join(account.from_numbers)
    return initial(values)  # never the secret: it is write-only


@portal_view(Capability.SETTINGS)
def sms_settings(request: HttpRequest) -> HttpResponse:
    """The tenant's SMS provider account: create or change it (a blank secret keeps the current one)."""
    portal = _portal(request).portal
    account = sms_account_list(tenant=portal.tenant).first()
    form = _sms_initial(account)
    if request.method == "POST":
        post = request.POST.copy()
        numbers_text = post.get("from_numbers", "")
        post.setlist("from_numbers", numbers_text.replace(",", "\n").split())
        if not post.get("secret", "").strip():
            post.pop("secret", None)  # blank: keep the current secret
        post.pop("secret_env", None)  # operator-only (the admin); never from the portal
        form = bind(
            SmsAccountInputSerializer,
            post,
            partial=account is not None,
            context={"tenant": portal.tenant},
        )
        form.values["from_numbers"] = numbers_text
        if form.ok:
            try:
                if account is None:
                    account = sms_account_create(tenant=portal.tenant, by_tenant=True, **form.data)
                    action = "sms_account.create"
                else:
                    account = sms_account_update(account=account, by_tenant=True, **form.data)
                    action = "sms_account.update"
            except InvalidInput as exc:
                form.add_invalid(exc)
                account = sms_account_list(tenant=portal.tenant).first()  # the stored state, unchanged
            else:
                changed = sorted(k for k in form.data if k != "secret")
                portal_audit(
                    request,
                    action,
                    f"SMS account ({account.get_kind_display()})",
                    fields=changed,
                    secret_changed="secret" in form.data,
                )
                messages.success(request, "SMS settings saved.")
                return redirect("portal:sms-settings")
        form.values.pop("secret", None)  # never rendered back, not even the one just typed
        form.values.pop("secret_env", None)
    return render(
        request,
        "portal/settings/sms.html",
        {
            "title": "SMS provider",
            "form": form,
            "account": account,
            "has_secret": account is not None and sms_account_has_secret(account),
            "webhooks": webhook_status(account) if account is not None else None,
            "kinds": Provider.choices,
        },
        status=400 if form.errors else 200,
    )


@require_POST
@portal_view(Capability.SETTINGS)
def sms_settings_delete(request: HttpRequest) -> HttpResponse:
    portal = _portal(request).portal
    account = get_object_or_404(sms_account_list(tenant=portal.tenant))
    label = f"SMS account ({account.get_kind_display()})"
    sms_account_delete(account=account)
    portal_audit(request, "sms_account.delete", label)
    messages.success(request, "SMS account removed: messages now go to the console provider (sent nowhere).")
    return redirect("portal:sms-settings")


# ------------------------------------------------------------------------------------------- webhooks
@portal_view(Capability.SETTINGS)
def webhooks(request: HttpRequest) -> HttpResponse:
    portal = _portal(request).portal
    account = sms_account_list(tenant=portal.tenant).first()
    return render(
        request,
        "portal/settings/webhooks.html",
        {
            "title": "Webhooks",
            "account": account,
            "webhooks": webhook_status(account) if account is not None else None,
        },
    )


# ------------------------------------------------------------------------------------------- audit log
@portal_view(Capability.SETTINGS)
def audit(request: HttpRequest) -> HttpResponse:
    portal = _portal(request).portal
    actor = request.GET.get("actor", "").strip()
    action = request.GET.get("action", "").strip()
    page = paginate(
        request, audit_list(tenant=portal.tenant, actor_label=actor or None, action=action or None)
    )
    return render(
        request,
        "portal/settings/audit.html",
        {
            "title": "Audit log",
            "page": page,
            "actor": actor,
            "action": action,
            "actors": audit_actor_labels(tenant=portal.tenant),
            "filtered": bool(actor or action),
        },
    )


urlpatterns = [
    path("", index, name="settings"),
    path("api-keys/", api_keys, name="api-keys"),
    path("api-keys/<int:pk>/revoke", api_key_revoke_view, name="api-key-revoke"),
    path("members/", members, name="members"),
    path("members/<int:pk>/role", member_role, name="member-role"),
    path("members/<int:pk>/remove", member_remove, name="member-remove"),
    path("invitations/", invitations, name="invitations"),
    path("invitations/<int:pk>/revoke", invitation_revoke_view, name="invitation-revoke"),
    path("sms/", sms_settings, name="sms-settings"),
    path("sms/delete", sms_settings_delete, name="sms-settings-delete"),
    path("webhooks/", webhooks, name="webhooks"),
    path("audit/", audit, name="audit"),
]
