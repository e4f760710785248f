"""``run_stasis`` wires call actions: the Redis URL from settings, one command list per PBX row served."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.management import call_command

from telephony.stasis import StasisApp
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
