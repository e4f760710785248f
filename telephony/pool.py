"""A process's pool of ARI REST clients: one :class:`~telephony.ari.AriClient` per distinct configuration.

Callers describe a PBX with a plain :class:`~telephony.ari.PbxConfig` and name it with a key of their own
(the domain's row id): this module knows nothing of where the configuration comes from.

* One client per distinct configuration, shared by every key that has it (e.g. one Asterisk serving many
  tenants, each with a row of its own): one connection pool per Asterisk, not one per row.
* Cached by the whole configuration (URL, user, password, app, template), so any change to a key's
  configuration (or to the secret it was built from) gives that key a new client; the old one is closed
  once no key uses it. Comparing the effective configuration is stricter than any "updated at" stamp.
* ``transport``: builds the HTTP transport of a new client (e.g. one that connects only to addresses a URL
  policy allows); called only when a client is created.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable

import httpx

from telephony.ari import AriClient, PbxConfig

__all__ = ["AriClientPool", "ari_clients"]


class AriClientPool:
    """Thread-safe; one per process is enough (:data:`ari_clients`)."""

    def __init__(self) -> None:
        self._clients: dict[PbxConfig, AriClient] = {}
        self._config_of: dict[Hashable, PbxConfig] = {}
        self._lock = threading.Lock()

    def client_for(
        self,
        key: Hashable,
        config: PbxConfig,
        *,
        transport: Callable[[PbxConfig], httpx.BaseTransport] | None = None,
    ) -> AriClient:
        """The pooled client for ``config``, recorded as the one ``key`` uses now."""
        stale: AriClient | None = None
        with self._lock:
            previous = self._config_of.get(key)
            self._config_of[key] = config
            client = self._clients.get(config)
            if client is None:
                client = self._clients[config] = AriClient(
                    config, transport=transport(config) if transport is not None else None
                )
            if previous is not None and previous != config and previous not in self._config_of.values():
                stale = self._clients.pop(previous, None)
        if stale is not None:
            stale.close()
        return client

    def close(self) -> None:
        """Close every client (e.g. at shutdown); the pool stays usable and builds new ones on demand."""
        with self._lock:
            clients = list(self._clients.values())
            self._clients.clear()
            self._config_of.clear()
        for client in clients:
            client.close()


#: This process's pool.
ari_clients = AriClientPool()
