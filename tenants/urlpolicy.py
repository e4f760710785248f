"""Where the platform's workers may connect on a tenant's behalf (DESIGN.md §5 rule 8).

Every URL a tenant supplies (the ARI URL of a PBX it brings, and later SMS and webhook URLs) is a request
the platform will send from inside its own network, with whatever credentials the request carries. Left
open, a tenant could aim it at the metadata service of the cloud the platform runs in (169.254.169.254),
at the platform's own database or Redis, or at anything else on the operator's private network.

The policy: the URL must be ``http``/``https`` with a host and no credentials in it, and **every address
the host resolves to** must be a public unicast address. Loopback, link-local, private (RFC 1918, IPv6
ULA), shared (100.64/10), multicast, reserved, unspecified and documentation ranges are refused, as are
IPv4 addresses hidden in IPv6 (mapped, 6to4, NAT64 well-known prefix). The operator can allow networks or
host names (``TENANT_URL_ALLOWED_NETWORKS``, ``TENANT_URL_ALLOWED_HOSTS``), e.g. the simulator on
127.0.0.1 for the demo and the tests.

The check runs **when the URL is saved** (a clear 400 naming the field) **and again when it is used**: a
name that resolved to a public address yesterday may resolve to 127.0.0.1 now (DNS rebinding).
:class:`PolicyTransport` (httpx) resolves the host itself, checks the addresses and connects to the very
address it checked, keeping the host name for the ``Host`` header and TLS; :class:`PolicyResolver` does the
same for aiohttp.

URLs the **operator** configures (the platform's own PBX pool) are not tenant input and are not checked.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from orchestrator.errors import InvalidInput

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Ranges Python's ``is_global`` does not flag, or flags inconsistently across versions, refused anyway.
_ALWAYS_REFUSED: tuple[IPNetwork, ...] = tuple(
    ipaddress.ip_network(net)
    for net in (
        "0.0.0.0/8",
        "100.64.0.0/10",  # shared address space (carrier-grade NAT)
        "192.0.0.0/24",
        "198.18.0.0/15",  # benchmarking
        "64:ff9b::/96",  # NAT64: an IPv4 address in disguise (checked below too)
        "64:ff9b:1::/48",
        "2002::/16",  # 6to4: idem
    )
)


class UrlNotAllowed(ValueError):
    """The URL, or an address its host resolves to, is outside the policy."""


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in ipaddress.ip_network("64:ff9b::/96"):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


@dataclass(frozen=True)
class UrlPolicy:
    """Public addresses only, plus what the operator allows (networks, or host names taken as they are)."""

    allowed_networks: tuple[IPNetwork, ...] = ()
    allowed_hosts: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def from_settings(cls) -> UrlPolicy:
        from django.conf import settings  # noqa: PLC0415 - the module is importable without Django set up

        return cls.build(
            networks=getattr(settings, "TENANT_URL_ALLOWED_NETWORKS", ()),
            hosts=getattr(settings, "TENANT_URL_ALLOWED_HOSTS", ()),
        )

    @classmethod
    def build(cls, *, networks: Iterable[str] = (), hosts: Iterable[str] = ()) -> UrlPolicy:
        return cls(
            allowed_networks=tuple(
                ipaddress.ip_network(net.strip(), strict=False) for net in networks if net.strip()
            ),
            allowed_hosts=frozenset(host.strip().lower().rstrip(".") for host in hosts if host.strip()),
        )

    # ----------------------------------------------------------------------------------- addresses
    def address_allowed(self, address: IPAddress) -> bool:
        if any(address in net for net in self.allowed_networks):
            return True
        if isinstance(address, ipaddress.IPv6Address):
            embedded = _embedded_ipv4(address)
            if embedded is not None:
                return self.address_allowed(embedded)
            if address.scope_id:
                return False
        if any(address in net for net in _ALWAYS_REFUSED):
            return False
        return address.is_global and not address.is_multicast

    def resolve(self, host: str, port: int) -> list[str]:
        """The addresses of ``host`` (an IP literal or a name), all of them allowed, in resolver order;
        UrlNotAllowed when the name does not resolve or any address is refused (a name with one private
        address among public ones is refused: which one a client picks is not ours to decide)."""
        name = host.strip("[]").lower().rstrip(".")
        if not name:
            raise UrlNotAllowed("has no host")
        try:
            literal: IPAddress | None = ipaddress.ip_address(name)
        except ValueError:
            literal = None
        if literal is not None:
            if not self.address_allowed(literal):
                raise UrlNotAllowed(f"{literal} is not a public address")
            return [str(literal)]
        try:
            infos = socket.getaddrinfo(name, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError) as exc:
            raise UrlNotAllowed(f"host {name!r} does not resolve ({exc})") from None
        addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
        if name in self.allowed_hosts:
            return addresses
        for text in addresses:
            if not self.address_allowed(ipaddress.ip_address(text.split("%", 1)[0])):
                raise UrlNotAllowed(f"host {name!r} resolves to {text}, which is not a public address")
        if not addresses:
            raise UrlNotAllowed(f"host {name!r} does not resolve")
        return addresses

    # ----------------------------------------------------------------------------------------- URLs
    def check_url(self, url: str, *, field: str) -> None:
        """InvalidInput(``field``) unless ``url`` is an http(s) URL whose host resolves to allowed
        addresses only (see the module docstring)."""
        try:
            self.check(url)
        except UrlNotAllowed as exc:
            raise InvalidInput(field, f"is not allowed: {exc}") from None

    def check(self, url: str) -> list[str]:
        """The allowed addresses of the URL's host; UrlNotAllowed otherwise."""
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as exc:
            raise UrlNotAllowed(f"is not a valid URL ({exc})") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise UrlNotAllowed("must be an http:// or https:// URL with a host")
        if parts.username is not None or parts.password is not None:
            raise UrlNotAllowed("must not carry credentials")
        return self.resolve(parts.hostname, port or (443 if parts.scheme == "https" else 80))


class PolicyTransport(httpx.BaseTransport):
    """httpx transport that checks the policy on every request and connects to the checked address.

    The request keeps its ``Host`` header and its TLS server name (``sni_hostname``): only where the
    connection goes is pinned, so a name re-resolving to a forbidden address between the check and the
    connection (DNS rebinding) cannot slip through. A refused target raises :class:`TargetRefused`, an
    ``httpx.ConnectError``: no byte of the request was sent."""

    def __init__(self, policy: UrlPolicy, **transport_options: Any) -> None:
        self.policy = policy
        self._inner = httpx.HTTPTransport(**transport_options)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        host = request.url.host
        port = request.url.port or (443 if request.url.scheme == "https" else 80)
        try:
            address = self.policy.resolve(host, port)[0]
        except UrlNotAllowed as exc:
            raise TargetRefused(f"{host}: {exc}", request=request) from None
        if address != host:
            request.url = request.url.copy_with(host=address)
            request.extensions = {**request.extensions, "sni_hostname": host}
        return self._inner.handle_request(request)

    def close(self) -> None:
        self._inner.close()


class TargetRefused(httpx.ConnectError):
    """The URL policy refused where a request would have gone (nothing was sent)."""


class PolicyResolver(AbstractResolver):
    """aiohttp resolver that keeps only the policy's addresses and refuses a host that has any other (so
    an aiohttp session can only connect where the policy allows; IP literals bypass resolvers in aiohttp,
    so check a literal URL with :meth:`UrlPolicy.check` before connecting)."""

    def __init__(self, policy: UrlPolicy, inner: AbstractResolver | None = None) -> None:
        self.policy = policy
        self._inner = inner  # made on first use: aiohttp's resolvers need the running loop

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        if self._inner is None:
            self._inner = DefaultResolver()
        results = await self._inner.resolve(host, port, family)
        if host.lower().rstrip(".") in self.policy.allowed_hosts:
            return results
        for result in results:
            address = ipaddress.ip_address(str(result["host"]).split("%", 1)[0])
            if not self.policy.address_allowed(address):
                raise OSError(f"{host} resolves to {address}, which the URL policy does not allow")
        return results

    async def close(self) -> None:
        if self._inner is not None:
            await self._inner.close()
