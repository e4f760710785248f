"""``manage.py create_tenant`` end to end: tenant, owner, and an API key that works, printed once."""

from __future__ import annotations

import io
import re

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command

from tenants.models import ApiKey, Membership, Tenant
from tenants.selectors import api_key_authenticate

pytestmark = pytest.mark.django_db

_KEY = re.compile(r"\bvco_[A-Za-z0-9_-]{43}\b")


def run(*args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("create_tenant", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_creates_tenant_owner_and_a_working_api_key():
    out, _ = run(
        "--name", "Acme Sales", "--slug", "acme", "--owner-email", "boss@acme.test",
        "--timezone", "America/New_York", "--max-concurrent-calls", "8",
    )  # fmt: skip
    tenant = Tenant.objects.get(slug="acme")
    assert (tenant.name, tenant.default_timezone, tenant.max_concurrent_calls) == (
        "Acme Sales",
        "America/New_York",
        8,
    )
    owner = User.objects.get(email="boss@acme.test")
    assert not owner.has_usable_password()
    assert Membership.objects.get(tenant=tenant, user=owner).role == "owner"

    keys = _KEY.findall(out)
    assert len(keys) == 1, out
    assert "not be shown again" in out or "shown only this once" in out
    authenticated = api_key_authenticate(raw_key=keys[0])
    assert authenticated is not None and authenticated.tenant == tenant
    assert ApiKey.objects.filter(tenant=tenant).count() == 1


def test_owner_password_is_set_for_a_new_user():
    run("--name", "A", "--slug", "a", "--owner-email", "pat@a.test", "--owner-password", "correct-horse-42")
    assert User.objects.get(email="pat@a.test").check_password("correct-horse-42")


def test_an_existing_user_becomes_the_owner_and_keeps_their_password():
    existing = User.objects.create_user(username="pat", email="Pat@A.test", password="old-password-42")
    _, err = run(
        "--name", "A", "--slug", "a", "--owner-email", "pat@a.test", "--owner-password", "new-pw-12345"
    )
    assert "ignored" in err
    existing.refresh_from_db()
    assert existing.check_password("old-password-42")
    assert Membership.objects.get(tenant__slug="a").user == existing
    assert User.objects.count() == 1


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["--owner-email", "not-an-email"], "--owner-email"),
        (["--slug", "Bad Slug!"], "--slug"),
        (["--timezone", "Nowhere/Special"], "--timezone"),
        (["--max-concurrent-calls", "0"], "--max-concurrent-calls"),
        (["--name", "   "], "--name"),
        (["--owner-password", "123"], "--owner-password"),
    ],
)
def test_bad_options_raise_command_error_naming_the_option_and_change_nothing(args, option):
    base = {"--name": "Acme", "--slug": "acme", "--owner-email": "boss@acme.test"}
    base.update(dict(zip(args[::2], args[1::2], strict=True)))
    with pytest.raises(CommandError, match=re.escape(option)):
        run(*[item for pair in base.items() for item in pair])
    assert not Tenant.objects.exists()
    assert not User.objects.exists()
    assert not ApiKey.objects.exists()


def test_duplicate_slug_is_a_command_error():
    run("--name", "A", "--slug", "acme", "--owner-email", "a@a.test")
    with pytest.raises(CommandError, match="--slug"):
        run("--name", "B", "--slug", "acme", "--owner-email", "b@b.test")
    assert not User.objects.filter(email="b@b.test").exists()


def test_missing_required_option_is_a_command_error():
    with pytest.raises(CommandError, match="--owner-email"):
        run("--name", "A", "--slug", "a")
