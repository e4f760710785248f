"""Signing in and out, password reset, switching tenant, and (local development only) the demo sign-in link.

Sign-in goes through ``django.contrib.auth.authenticate``, so django-axes counts failures and locks a name
after AXES_FAILURE_LIMIT attempts from one address. Password reset mails a one-hour link (Django's token,
which dies once the password changes) and says the same whether or not the address is known.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import get_user_model, login, logout
from django.contrib.auth import views as auth_views
from django.core import signing
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import redirect
from django.urls import path, reverse_lazy
from django.views.decorators.http import require_POST

from portal.access import SESSION_TENANT_KEY, portal_view, resolve_membership

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
    login(request, user, backend="django.contrib.auth.backends.ModelBackend")
    return HttpResponseRedirect(reverse_lazy("portal:dashboard"))


urlpatterns = [
    path("signin", SignInView.as_view(), name="signin"),
    path("signout", signout, name="signout"),
    path("switch-tenant", switch_tenant, name="switch-tenant"),
    path("signin/demo/<str:token>", demo_signin, name="demo-signin"),
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
