"""``manage.py pbx``: the operator manages the platform's PBX pool and who may use it."""

from __future__ import annotations

import io
import sys

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from campaigns.models import Pbx, PbxPlacement
from campaigns.services.pbx import pbx_password
from tests.campaigns.factories import make_tenant

pytestmark = pytest.mark.django_db


def run(*args: str, stdin: str = "") -> str:
    out = io.StringIO()
    real = sys.stdin
    sys.stdin = io.StringIO(stdin)
    try:
        call_command("pbx", *args, stdout=out)
    finally:
        sys.stdin = real
    return out.getvalue()


def test_the_operator_adds_a_pbx_places_tenants_on_it_and_lists_them(monkeypatch):
    acme, globex = make_tenant(slug="acme"), make_tenant(slug="globex")
    run("add", "ast-1", "--ari-url", "http://10.0.0.5:8088", "--ari-user", "ari", "--password-env", "AST1_PW")
    run("add", "ast-2", "--ari-url", "http://10.0.0.6:8088", "--ari-user", "ari", "--password-stdin",
        stdin="pw2\n")  # fmt: skip
    run("place", "ast-1", "--tenant", "acme", "--max-channels", "20")
    run("place", "ast-1", "--tenant", "globex")
    run("place", "ast-1", "--tenant", "acme", "--max-channels", "30")  # a repeat changes the share
    ast1, ast2 = Pbx.objects.get(name="ast-1"), Pbx.objects.get(name="ast-2")
    assert ast1.owner is None and ast1.password_env == "AST1_PW"  # private addresses: the operator's call
    assert pbx_password(pbx=ast2) == "pw2" and "pw2" not in ast2.password_encrypted
    assert PbxPlacement.objects.get(pbx=ast1, tenant=acme).max_channels == 30
    assert PbxPlacement.objects.get(pbx=ast1, tenant=globex).max_channels is None
    listing = run("list")
    assert "ast-1" in listing and "tenant acme\tshare 30" in listing and "AST1_PW" not in listing

    run("unplace", "ast-1", "--tenant", "globex")
    assert list(ast1.tenants.all()) == [acme]


def test_the_operator_decides_who_may_bring_a_pbx():
    tenant = make_tenant(slug="byo")
    run("allow-own", "--tenant", "byo")
    tenant.refresh_from_db()
    assert tenant.allow_own_pbx
    run("allow-own", "--tenant", "byo", "--no")
    tenant.refresh_from_db()
    assert not tenant.allow_own_pbx


def test_mistakes_are_clear_errors():
    with pytest.raises(CommandError, match="no tenant"):
        run("allow-own", "--tenant", "nobody")
    with pytest.raises(CommandError, match="no platform PBX"):
        run("place", "nope", "--tenant", make_tenant().slug)
    with pytest.raises(CommandError, match="endpoint_template"):
        run("add", "x", "--ari-url", "http://h:1", "--ari-user", "u", "--password-env", "P",
            "--endpoint-template", "PJSIP/trunk")  # fmt: skip
