"""The per-process ARI client pool: one client per distinct configuration, shared by the keys that have it;
a key whose configuration changes gets a new client and the old one is closed once no key uses it. No PBX
is contacted: clients are only built."""

from __future__ import annotations

import httpx
import pytest

from telephony.ari import AriClient, PbxConfig
from telephony.pool import AriClientPool


def config(url: str = "http://127.0.0.1:1", password: str = "pw") -> PbxConfig:  # noqa: S107 - a test value
    return PbxConfig(
        base_url=url, user="u", password=password, app="app", endpoint_template="PJSIP/{number}@t"
    )


@pytest.fixture
def closed(monkeypatch: pytest.MonkeyPatch) -> list[AriClient]:
    seen: list[AriClient] = []
    real = AriClient.close

    def close(self: AriClient) -> None:
        seen.append(self)
        real(self)

    monkeypatch.setattr(AriClient, "close", close)
    return seen


def test_keys_with_one_configuration_share_one_client_and_others_get_their_own() -> None:
    pool = AriClientPool()
    shared = pool.client_for(1, config())
    assert pool.client_for(2, config()) is shared
    assert pool.client_for(1, config()) is shared
    assert pool.client_for(3, config(url="http://127.0.0.1:2")) is not shared
    pool.close()


def test_a_changed_configuration_gets_a_new_client_and_the_old_one_is_closed_when_unused(
    closed: list[AriClient],
) -> None:
    pool = AriClientPool()
    first = pool.client_for(1, config())
    pool.client_for(2, config())

    changed = pool.client_for(1, config(password="rotated"))
    assert changed is not first
    assert closed == []  # key 2 still uses the old configuration

    assert pool.client_for(2, config(password="rotated")) is changed
    assert closed == [first]
    pool.close()


def test_the_transport_factory_builds_the_transport_of_a_new_client_only() -> None:
    pool = AriClientPool()
    built: list[PbxConfig] = []

    def transport(cfg: PbxConfig) -> httpx.BaseTransport:
        built.append(cfg)
        return httpx.HTTPTransport()

    client = pool.client_for(1, config(), transport=transport)
    assert pool.client_for(2, config(), transport=transport) is client
    assert built == [config()]
    pool.close()


def test_close_closes_every_client_and_the_pool_builds_new_ones_afterwards(closed: list[AriClient]) -> None:
    pool = AriClientPool()
    one = pool.client_for(1, config())
    two = pool.client_for(2, config(url="http://127.0.0.1:2"))

    pool.close()

    assert sorted(map(id, closed)) == sorted(map(id, [one, two]))
    assert pool.client_for(1, config()) is not one
    pool.close()
