"""The URL policy (DESIGN.md §5 rule 8): where the platform may connect on a tenant's behalf, checked when a
URL is saved and again when it is used (a name may resolve elsewhere by then: DNS rebinding)."""

from __future__ import annotations

import ipaddress
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import aiohttp
import httpx
import pytest
from django.core.exceptions import ImproperlyConfigured

from campaigns.models import Pbx
from campaigns.services.pbx import pbx_ari_client, pbx_create
from orchestrator.errors import InvalidInput
from tenants.urlpolicy import PolicyResolver, PolicyTransport, TargetRefused, UrlNotAllowed, UrlPolicy
from tests.campaigns.factories import make_tenant

POLICY = UrlPolicy()


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.1.2.3",
        "172.31.255.1",
        "192.168.0.1",
        "169.254.169.254",
        "100.64.0.1",
        "0.0.0.0",  # noqa: S104 - an address to refuse, not one to bind
        "224.0.0.1",
        "255.255.255.255",
        "198.18.0.1",
        "192.0.2.1",
        "::1",
        "::",
        "fe80::1",
        "fd12:3456::1",
        "ff02::1",
        "::ffff:127.0.0.1",
        "::ffff:10.0.0.1",
        "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
        "2002:a9fe:a9fe::1",  # 6to4 of 169.254.169.254
    ],
)
def test_non_public_addresses_are_refused(address: str) -> None:
    assert not POLICY.address_allowed(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", ["93.184.215.14", "8.8.8.8", "2606:4700:4700::1111", "::ffff:8.8.8.8"])
def test_public_addresses_are_allowed(address: str) -> None:
    assert POLICY.address_allowed(ipaddress.ip_address(address))


def test_the_operator_may_allow_networks_and_names() -> None:
    policy = UrlPolicy.build(networks=["127.0.0.1/32", "10.0.0.0/8"], hosts=["Localhost."])
    assert policy.address_allowed(ipaddress.ip_address("127.0.0.1"))
    assert policy.address_allowed(ipaddress.ip_address("10.9.9.9"))
    assert not policy.address_allowed(ipaddress.ip_address("127.0.0.2"))
    assert policy.check("http://localhost:8088/")  # the name itself is allowed, whatever it resolves to


@pytest.mark.parametrize(
    "url",
    [
        "ftp://93.184.215.14/",
        "http:///nohost",
        "http://user:pw@93.184.215.14/",
        "http://93.184.215.14:99999/",
        "http://localhost:8088/",  # resolves to loopback
        "http://no-such-host.invalid/",
    ],
)
def test_urls_outside_the_policy_are_refused(url: str) -> None:
    with pytest.raises(UrlNotAllowed):
        POLICY.check(url)
    with pytest.raises(InvalidInput) as caught:
        POLICY.check_url(url, field="ari_url")
    assert caught.value.field == "ari_url"


def test_a_name_with_one_private_address_among_public_ones_is_refused(monkeypatch: pytest.MonkeyPatch):
    resolve_to(monkeypatch, {"mixed.example.test": ["93.184.215.14", "10.0.0.1"]})
    with pytest.raises(UrlNotAllowed, match="10.0.0.1"):
        POLICY.check("http://mixed.example.test/")


# ------------------------------------------------------------------------------------ at use time


def resolve_to(monkeypatch: pytest.MonkeyPatch, names: dict[str, list[str]]) -> None:
    """Make these names resolve to these addresses (the rest as usual)."""
    real = socket.getaddrinfo

    def fake(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host in names:
            return [
                (socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port or 0))
                for a in names[host]
            ]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", fake)


class Recorder(BaseHTTPRequestHandler):
    seen: list[dict[str, str]] = []

    def do_POST(self) -> None:  # noqa: N802 - the http.server API
        self.seen.append({"path": self.path, **{k.lower(): v for k, v in self.headers.items()}})
        body = b'{"id": "x", "state": "Down"}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST

    def log_message(self, format: str, *args: Any) -> None:
        return None


@pytest.fixture
def listener() -> Iterator[tuple[int, list[dict[str, str]]]]:
    """A local HTTP server standing for whatever sits on the platform's own network."""
    seen: list[dict[str, str]] = []
    handler = type("Handler", (Recorder,), {"seen": seen})
    server = HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], seen
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.django_db
def test_a_name_that_rebinds_to_the_platforms_network_is_refused_when_used(
    monkeypatch: pytest.MonkeyPatch, listener: tuple[int, list[dict[str, str]]]
) -> None:
    """Saved while the name resolved to a public address; when the worker is about to use it, it resolves
    to 127.0.0.1: nothing reaches the local listener, with or without the credentials."""
    port, seen = listener
    tenant = make_tenant(allow_own_pbx=True)
    resolve_to(monkeypatch, {"pbx.rebind.test": ["93.184.215.14"]})
    pbx = pbx_create(
        owner=tenant, name="own", ari_url=f"http://pbx.rebind.test:{port}/", ari_user="u", password="pw"
    )
    resolve_to(monkeypatch, {"pbx.rebind.test": ["127.0.0.1"]})
    with pytest.raises(ImproperlyConfigured, match="not allowed"):
        pbx_ari_client(pbx=pbx)
    # Even a client built before (or a rebinding between that check and the connection): the transport
    # checks again and connects only to the address it checked.
    client = httpx.Client(transport=PolicyTransport(POLICY))
    with pytest.raises(TargetRefused):
        client.post(f"http://pbx.rebind.test:{port}/ari/channels", auth=("u", "pw"))
    assert seen == []


@pytest.mark.django_db
def test_an_allowed_own_pbx_is_reached_at_the_checked_address_under_its_own_name(
    monkeypatch: pytest.MonkeyPatch, settings: Any, listener: tuple[int, list[dict[str, str]]]
) -> None:
    port, seen = listener
    settings.TENANT_URL_ALLOWED_NETWORKS = ["127.0.0.1/32"]
    resolve_to(monkeypatch, {"pbx.tenant.test": ["127.0.0.1"]})
    pbx = pbx_create(
        owner=make_tenant(allow_own_pbx=True),
        name="own",
        ari_url=f"http://pbx.tenant.test:{port}/",
        ari_user="u",
        password="tenant-pw",
        app_name="agent",
    )
    client = pbx_ari_client(pbx=Pbx.objects.get(pk=pbx.pk))
    client.originate(
        channel_id="c1", number="+12125550123", app_args="outbound,c1", caller_id="+1", timeout_s=5,
        variables={},
    )
    assert len(seen) == 1 and seen[0]["host"] == f"pbx.tenant.test:{port}"
    assert seen[0]["path"].startswith("/ari/channels")


async def test_the_aiohttp_resolver_keeps_connections_inside_the_policy(
    listener: tuple[int, list[dict[str, str]]],
) -> None:
    """What the Stasis app of a tenant's own PBX connects through: a name resolving to loopback is refused
    unless the operator allows it; nothing reaches the listener."""
    port, seen = listener
    refused = aiohttp.TCPConnector(resolver=PolicyResolver(POLICY))
    async with aiohttp.ClientSession(connector=refused) as session:
        with pytest.raises(aiohttp.ClientConnectorError):
            await session.post(f"http://localhost:{port}/ari/channels")
    assert seen == []
    policy = UrlPolicy.build(networks=["127.0.0.0/8", "::1/128"])
    allowed = aiohttp.TCPConnector(resolver=PolicyResolver(policy))
    async with aiohttp.ClientSession(connector=allowed) as session:
        async with session.post(f"http://localhost:{port}/ari/channels") as response:
            assert response.status == 200
    assert len(seen) == 1
