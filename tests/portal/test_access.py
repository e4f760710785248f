"""Signing in, the tenant of a request, roles, the dashboard and its figures."""

from __future__ import annotations

import pytest
from django.core import mail
from django.test import Client
from django.urls import reverse

from campaigns.selectors import tenant_call_figures
from tenants.models import AuditEntry
from tenants.roles import Capability, role_can, roles_grantable_by
from tenants.services import membership_add
from tests.campaigns.factories import make_campaign, make_tenant, make_user

pytestmark = pytest.mark.django_db


def test_anonymous_visitors_are_sent_to_sign_in():
    response = Client().get("/")
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("portal:signin"))


def test_sign_in_with_a_password_lands_on_the_dashboard(tenant):
    user = make_user("pat@example.com")
    user.set_password("a-long-password-1")
    user.save()
    membership_add(tenant=tenant, user=user, role="manager")
    client = Client()
    response = client.post(
        reverse("portal:signin"), {"username": "pat@example.com", "password": "a-long-password-1"}
    )
    assert response.status_code == 302
    page = client.get(response["Location"])
    assert page.status_code == 200
    assert b"Acme Plumbing" in page.content
    assert b"Calls in progress" in page.content


def test_a_wrong_password_says_so_and_signs_nobody_in(tenant):
    user = make_user("sam@example.com")
    user.set_password("right-password-1")
    user.save()
    membership_add(tenant=tenant, user=user, role="viewer")
    client = Client()
    response = client.post(reverse("portal:signin"), {"username": "sam@example.com", "password": "wrong"})
    assert response.status_code == 200
    assert b"correct" in response.content  # Django's "Please enter a correct username and password"
    assert client.get("/").status_code == 302


def test_password_reset_mails_a_working_link(tenant):
    user = make_user("reset@example.com")
    user.set_password("old-password-1")  # Django mails no link for an account without a usable password
    user.save()
    membership_add(tenant=tenant, user=user, role="viewer")
    client = Client()
    response = client.post(reverse("portal:password-reset"), {"email": "reset@example.com"})
    assert response.status_code == 302
    assert len(mail.outbox) == 1
    link = next(line for line in mail.outbox[0].body.splitlines() if "/password-reset/" in line)
    path = link.split("://", 1)[1].split("/", 1)[1]
    form = client.get("/" + path, follow=True)
    assert b"Choose a new password" in form.content
    done = client.post(
        form.redirect_chain[-1][0], {"new_password1": "N3w-passphrase!", "new_password2": "N3w-passphrase!"}
    )
    assert done.status_code == 302
    user.refresh_from_db()
    assert user.check_password("N3w-passphrase!")


def test_a_member_of_two_tenants_switches_between_them(tenant):
    second = make_tenant(name="Second Shop")
    user = make_user()
    membership_add(tenant=tenant, user=user, role="manager")
    membership_add(tenant=second, user=user, role="viewer")
    client = Client()
    client.force_login(user)
    first_page = client.get("/").content.decode()
    shown = "Acme Plumbing" if '<a class="brand" href="/">Acme Plumbing' in first_page else "Second Shop"
    target = second if shown == "Acme Plumbing" else tenant
    response = client.post(reverse("portal:switch-tenant"), {"tenant": target.slug})
    assert response.status_code == 302
    assert f'<a class="brand" href="/">{target.name}' in client.get("/").content.decode()
    # A tenant the user does not belong to is not found, and the choice stays.
    stranger = make_tenant(name="Not Mine")
    assert client.post(reverse("portal:switch-tenant"), {"tenant": stranger.slug}).status_code == 404
    assert f'<a class="brand" href="/">{target.name}' in client.get("/").content.decode()


def test_a_user_without_a_tenant_is_told_so():
    client = Client()
    client.force_login(make_user())
    response = client.get("/")
    assert response.status_code == 403
    assert b"not a member of an active tenant" in response.content


def test_roles_capabilities():
    assert not role_can("viewer", Capability.WRITE)
    assert role_can("manager", Capability.WRITE) and not role_can("manager", Capability.SETTINGS)
    assert role_can("admin", Capability.SETTINGS) and not role_can("admin", Capability.OWN)
    assert role_can("owner", Capability.OWN)
    assert not role_can(None, Capability.READ)
    assert roles_grantable_by("admin") == ["manager", "viewer"]
    assert roles_grantable_by("manager") == []


def test_the_api_lets_a_manager_write_and_audits_it(tenant, client_as):
    client = client_as("manager")
    response = client.post("/api/v1/dnc", {"phone_number": "+12125550199"}, content_type="application/json")
    assert response.status_code == 201, response.content
    entry = AuditEntry.objects.get(tenant=tenant)
    assert entry.via == "api" and entry.action == "POST /api/v1/dnc"
    # A viewer is still refused, and nothing is audited for it.
    refused = client_as("viewer").post(
        "/api/v1/dnc", {"phone_number": "+12125550198"}, content_type="application/json"
    )
    assert refused.status_code == 403
    assert AuditEntry.objects.filter(tenant=tenant).count() == 1


def test_dashboard_figures_count_live_calls_and_stay_in_the_tenant(tenant, other_tenant, manager):
    make_campaign(tenant, name="Spring promo")
    figures = tenant_call_figures(tenant=tenant)
    assert figures["live"]["total"] == 0 and figures["live"]["cap"] == tenant.max_concurrent_calls
    assert len(figures["last_hour"]["minutes"]) == 60
    page = manager.get(reverse("portal:dashboard-figures"))
    assert page.status_code == 200
    assert b'data-live-calls="0"' in page.content


def test_the_dashboard_reads_in_a_handful_of_queries(tenant, manager, django_assert_max_num_queries):
    for n in range(5):
        make_campaign(tenant, name=f"C{n}")
    with django_assert_max_num_queries(16):
        assert manager.get("/").status_code == 200


def test_live_stream_needs_a_signed_in_member():
    assert Client().get(reverse("portal:live")).status_code == 403


def test_the_api_serves_the_dashboards_figures(tenant, client_as):
    make_campaign(tenant, name="Spring promo")
    response = client_as("viewer").get("/api/v1/dashboard")
    assert response.status_code == 200
    body = response.json()
    assert body["live"]["cap"] == tenant.max_concurrent_calls
    assert body["today"]["placed"] == 0
    assert len(body["last_hour"]["placed"]) == 60


def test_sign_in_is_rate_limited(settings, tenant):
    settings.AXES_FAILURE_LIMIT = 3
    user = make_user("locked@example.com")
    user.set_password("the-right-password-1")
    user.save()
    membership_add(tenant=tenant, user=user, role="manager")
    client = Client()
    url = reverse("portal:signin")
    for _ in range(2):
        assert client.post(url, {"username": "locked@example.com", "password": "nope"}).status_code == 200
    locked = client.post(url, {"username": "locked@example.com", "password": "nope"})
    assert locked.status_code == 429
    assert b"Too many sign-in attempts" in locked.content
    # Even the right password is refused while locked, and nobody is signed in.
    assert (
        client.post(url, {"username": "locked@example.com", "password": "the-right-password-1"}).status_code
        == 429
    )
    assert client.get("/").status_code == 302


def test_session_cookies_are_same_site_and_http_only(tenant, manager):
    response = Client().get(reverse("portal:signin"))
    assert response.status_code == 200
    cookie = response.cookies["csrftoken"]
    assert cookie["samesite"] == "Lax"
    user = make_user("cookie@example.com")
    user.set_password("cookie-password-1")
    user.save()
    membership_add(tenant=tenant, user=user, role="viewer")
    client = Client()
    signed_in = client.post(
        url := reverse("portal:signin"), {"username": "cookie@example.com", "password": "cookie-password-1"}
    )
    assert signed_in.status_code == 302, url
    session = signed_in.cookies["sessionid"]
    assert session["samesite"] == "Lax" and session["httponly"]
    assert int(session["max-age"]) == 12 * 3600
