"""``run_stasis`` wires call actions: the Redis URL from settings, one command list per PBX row served."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from campaigns.services.pbx import pbx_create
from telephony.stasis import StasisApp
from tenants.urlpolicy import PolicyResolver
from tests.campaigns.factories import make_pbx, make_tenant

pytestmark = pytest.mark.django_db(transaction=True)


def test_run_stasis_takes_commands_for_every_pbx_row_it_serves(
    monkeypatch: pytest.MonkeyPatch, settings: Any
) -> None:
    pbx = make_pbx(make_tenant(), name="edge-c", ari_url="http://pbx9.example.com:8088", app_name="cmd_app")
    shared = make_pbx(
        make_tenant(), name="edge-c2", ari_url="http://pbx9.example.com:8088/", app_name="cmd_app"
    )
    make_pbx(make_tenant(), name="other", ari_url="http://pbx8.example.com:8088", app_name="cmd_app")
    monkeypatch.setenv("TEST_ARI_PASSWORD", "hunter2")
    seen: dict[str, StasisApp] = {}

    async def fake_run(app: StasisApp, signals: Any) -> None:
        seen["app"] = app

    monkeypatch.setattr("campaigns.management.commands.run_stasis.run_until_signalled", fake_run)
    call_command("run_stasis", pbx=str(pbx.pk))

    config = seen["app"].config
    assert config.redis_url == settings.REDIS_URL
    assert sorted(config.command_keys) == sorted(
        [f"stasis:commands:{pbx.pk}", f"stasis:commands:{shared.pk}"]
    )


def test_the_stasis_app_of_a_tenants_own_pbx_connects_only_where_the_url_policy_allows(
    monkeypatch: pytest.MonkeyPatch, settings: Any
) -> None:
    """A tenant's own PBX: its ARI URL is tenant input, checked again when the app starts (a name may
    resolve elsewhere by now), and the app's connections resolve through the policy."""
    settings.TENANT_URL_ALLOWED_NETWORKS = ["127.0.0.1/32"]
    tenant = make_tenant(allow_own_pbx=True)
    pbx = pbx_create(owner=tenant, name="own", ari_url="http://127.0.0.1:8088/", ari_user="u", password="pw")
    seen: dict[str, StasisApp] = {}

    async def fake_run(app: StasisApp, signals: Any) -> None:
        seen["app"] = app

    monkeypatch.setattr("campaigns.management.commands.run_stasis.run_until_signalled", fake_run)
    call_command("run_stasis", pbx=str(pbx.pk))
    assert isinstance(seen["app"].config.resolver, PolicyResolver)
    assert seen["app"].config.password == "pw"

    settings.TENANT_URL_ALLOWED_NETWORKS = []  # the operator withdrew the allowance
    with pytest.raises(CommandError, match="not allowed"):
        call_command("run_stasis", pbx=str(pbx.pk))
