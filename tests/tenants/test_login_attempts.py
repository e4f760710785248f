"""Sign-in attempt limiting (django-axes): every login that goes through django.contrib.auth.authenticate
with its request, the admin's today, is refused once a user name failed too often from one address."""

from __future__ import annotations

import pytest
from axes.models import AccessAttempt
from django.contrib.auth import authenticate
from django.contrib.auth.models import User
from django.test import Client, RequestFactory

pytestmark = pytest.mark.django_db

LOGIN = "/admin/login/"
PASSWORD = "a-long-enough-password"  # noqa: S105


@pytest.fixture
def staff() -> User:
    return User.objects.create_user(
        username="ops@example.com", email="ops@example.com", password=PASSWORD, is_staff=True
    )


def _login(client: Client, username: str, password: str, *, ip: str = "198.51.100.7"):
    return client.post(
        LOGIN, {"username": username, "password": password, "next": "/admin/"}, REMOTE_ADDR=ip
    )


def test_the_admin_login_locks_out_after_the_failure_limit(settings, staff):
    settings.AXES_FAILURE_LIMIT = 3
    client = Client()
    for _ in range(2):
        assert _login(client, staff.username, "wrong").status_code == 200  # the form again, with an error
    locked = _login(client, staff.username, "wrong")
    assert locked.status_code == 429
    # Locked out: even the right password is refused now, and the user is not signed in.
    refused = _login(client, staff.username, PASSWORD)
    assert refused.status_code == 429
    assert "_auth_user_id" not in client.session
    assert AccessAttempt.objects.filter(username=staff.username).exists()


def test_the_lockout_is_per_user_name_and_address(settings, staff):
    settings.AXES_FAILURE_LIMIT = 2
    client = Client()
    for _ in range(2):
        _login(client, staff.username, "wrong", ip="198.51.100.7")
    assert _login(client, staff.username, PASSWORD, ip="198.51.100.7").status_code == 429
    # The same user from another address still signs in (a stranger cannot lock the operator out).
    other = Client()
    assert _login(other, staff.username, PASSWORD, ip="203.0.113.9").status_code == 302
    assert other.session["_auth_user_id"] == str(staff.pk)


def test_a_successful_login_resets_the_failures(settings, staff):
    settings.AXES_FAILURE_LIMIT = 3
    client = Client()
    for _ in range(2):
        _login(client, staff.username, "wrong")
    assert _login(client, staff.username, PASSWORD).status_code == 302
    client.logout()
    for _ in range(2):
        assert _login(client, staff.username, "wrong").status_code == 200
    assert _login(client, staff.username, PASSWORD).status_code == 302


def test_any_sign_in_form_through_authenticate_is_covered(settings, staff):
    """A later portal login calls authenticate(request, ...): it counts and is locked out the same way."""
    settings.AXES_FAILURE_LIMIT = 2
    request = RequestFactory().post("/portal/login/", REMOTE_ADDR="192.0.2.44")
    for _ in range(2):
        assert authenticate(request, username=staff.username, password="wrong") is None
    assert authenticate(request, username=staff.username, password=PASSWORD) is None
    assert getattr(request, "axes_locked_out", False)
