"""Signing in and out, password reset, switching tenant, accepting an invitation, and (local development
only) the demo sign-in link.

Sign-in goes through ``django.contrib.auth.authenticate``, so django-axes counts failures and locks a name
after AXES_FAILURE_LIMIT attempts from one address. Password reset mails a one-hour link (Django's token,
which dies once the password changes) and says the same whether or not the address is known.

An invitation link (``/invite/<token>``, mailed by tenants.services.invitation_create) opens a page; only a
POST from it acts (mail scanners and link previews fetch links). A signed-in user joins with one button; an
anonymous visitor signs in first (and comes back here) or makes an account for the invited address with a
password (Django's password validators) and joins. A used, revoked or expired link gets a page that says
which, and an unknown one a 404.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import get_user_model, login, logout
from django.contrib.auth import views as auth_views
from django.core import signing
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import redirect, render
from django.urls import path, reverse, reverse_lazy
from django.utils.cache import add_never_cache_headers
from django.views.decorators.http import require_http_methods, require_POST

from orchestrator.errors import InvalidInput
from portal.access import SESSION_TENANT_KEY, portal_view, resolve_membership
from tenants.models import Invitation, Membership
from tenants.selectors import INVITATION_PENDING, invitation_for_token, invitation_state
from tenants.services import audit_record, invitation_accept, invitation_accept_new_user

_MODEL_BACKEND = "django.contrib.auth.backends.ModelBackend"

DEMO_SIGNIN_SALT = "portal.demo-signin"
DEMO_SIGNIN_MAX_AGE_S = 24 * 3600


class SignInView(auth_views.LoginView):
    template_name = "portal/auth/signin.html"
    redirect_authenticated_user = True


@require_POST
def signout(request: HttpRequest) -> HttpResponse:
    logout(request)  # flushes the session: the tenant choice goes with it
    messages.info(request, "You are signed out.")
    return redirect("portal:signin")


@require_POST
@portal_view(write_methods_need=None)  # any member may switch, a viewer too
def switch_tenant(request: HttpRequest) -> HttpResponse:
    """Make another of the user's tenants the current one (only one the user is an active member of)."""
    slug = request.POST.get("tenant", "")
    _, memberships = resolve_membership(request)
    if not any(m.tenant.slug == slug for m in memberships):
        raise Http404("No such tenant.")
    request.session[SESSION_TENANT_KEY] = slug
    return redirect("portal:dashboard")


def demo_signin_token(user_id: int) -> str:
    return signing.dumps(user_id, salt=DEMO_SIGNIN_SALT)


def demo_signin(request: HttpRequest, token: str) -> HttpResponse:
    """``make run``'s link straight into the portal as the demo owner. Only with DEBUG on: a signed token
    (SECRET_KEY) that names the user and expires after a day."""
    if not settings.DEBUG:
        raise Http404()
    try:
        user_id = signing.loads(token, salt=DEMO_SIGNIN_SALT, max_age=DEMO_SIGNIN_MAX_AGE_S)
    except signing.BadSignature as exc:
        raise Http404() from exc
    user = get_user_model().objects.filter(pk=user_id, is_active=True).first()
    if user is None:
        raise Http404()
    login(request, user, backend=_MODEL_BACKEND)
    return HttpResponseRedirect(reverse_lazy("portal:dashboard"))


def _invite_unusable(request: HttpRequest, invitation: Invitation | None, state: str) -> HttpResponse:
    """The page of a link that does not work: unknown (404), or used, revoked or expired (410)."""
    response = render(
        request,
        "portal/auth/invite_unusable.html",
        {"invitation": invitation, "state": state},
        status=404 if invitation is None else 410,
    )
    add_never_cache_headers(response)
    return response


def _invite_joined(request: HttpRequest, invitation: Invitation, membership: Membership) -> HttpResponse:
    user = membership.user
    audit_record(
        tenant=invitation.tenant,
        actor=user,
        actor_label=user.get_username(),
        via="portal",
        action="invitation.accept",
        target=f"invitation of {invitation.email}",
        detail={"role": membership.role},
    )
    request.session[SESSION_TENANT_KEY] = invitation.tenant.slug  # land in the tenant just joined
    messages.success(
        request, f"Welcome to {invitation.tenant.name}: you are a member as {membership.get_role_display()}."
    )
    return redirect("portal:dashboard")


@require_http_methods(["GET", "HEAD", "POST"])
def invite_accept(request: HttpRequest, token: str) -> HttpResponse:
    invitation = invitation_for_token(raw_token=token)
    if invitation is None:
        return _invite_unusable(request, None, "unknown")
    state = invitation_state(invitation)
    if state != INVITATION_PENDING:
        return _invite_unusable(request, invitation, state)
    user_model = get_user_model()
    has_account = (
        user_model.objects.filter(username__iexact=invitation.email).exists()
        or user_model.objects.filter(email__iexact=invitation.email).exists()
    )
    errors: dict[str, list[str]] = {}
    if request.method == "POST":
        try:
            if request.user.is_authenticated:
                membership = invitation_accept(invitation=invitation, user=request.user)
                return _invite_joined(request, invitation, membership)
            password = request.POST.get("password1", "")
            if password != request.POST.get("password2", ""):
                errors["password2"] = ["The two passwords are not the same."]
            else:
                user, membership = invitation_accept_new_user(invitation=invitation, password=password)
                login(request, user, backend=_MODEL_BACKEND)
                return _invite_joined(request, invitation, membership)
        except InvalidInput as exc:
            if exc.field == "token":
                invitation.refresh_from_db()
                if invitation_state(invitation) != INVITATION_PENDING:  # used or revoked meanwhile
                    return _invite_unusable(request, invitation, invitation_state(invitation))
            errors.setdefault(exc.field, []).append(exc.message)
    context: dict[str, Any] = {
        "invitation": invitation,
        "role_label": Membership.Role(invitation.role).label,
        "has_account": has_account,
        "errors": errors,
        "signin_url": f"{reverse('portal:signin')}?{urlencode({'next': request.path})}",
    }
    response = render(request, "portal/auth/invite.html", context, status=400 if errors else 200)
    add_never_cache_headers(response)
    return response


urlpatterns = [
    path("signin", SignInView.as_view(), name="signin"),
    path("signout", signout, name="signout"),
    path("switch-tenant", switch_tenant, name="switch-tenant"),
    path("signin/demo/<str:token>", demo_signin, name="demo-signin"),
    path("invite/<str:token>", invite_accept, name="invite-accept"),
    path(
        "password-reset",
        auth_views.PasswordResetView.as_view(
            template_name="portal/auth/password_reset.html",
            email_template_name="portal/auth/password_reset_email.txt",
            subject_template_name="portal/auth/password_reset_subject.txt",
            success_url=reverse_lazy("portal:password-reset-done"),
        ),
        name="password-reset",
    ),
    path(
        "password-reset/sent",
        auth_views.PasswordResetDoneView.as_view(template_name="portal/auth/password_reset_done.html"),
        name="password-reset-done",
    ),
    path(
        "password-reset/<uidb64>/<token>",
        auth_views.PasswordResetConfirmView.as_view(
            template_name="portal/auth/password_reset_confirm.html",
            success_url=reverse_lazy("portal:password-reset-complete"),
        ),
        name="password-reset-confirm",
    ),
    path(
        "password-reset/done",
        auth_views.PasswordResetCompleteView.as_view(
            template_name="portal/auth/password_reset_complete.html"
        ),
        name="password-reset-complete",
    ),
]
