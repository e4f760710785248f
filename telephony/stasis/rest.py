"""The ARI REST calls of the Stasis app: one ``aiohttp.ClientSession`` with Basic auth and explicit timeouts.

Raw aiohttp rather than aioari (see the app module): the app needs a handful of calls, each with a timeout,
and the credentials belong in an Authorization header, not in the URL.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

import aiohttp

from telephony.stasis.config import StasisConfig
from telephony.stasis.ids import seg

logger = logging.getLogger("telephony.stasis")


class AriRest:
    """The REST side of one PBX's ARI. :meth:`open` before use, :meth:`close` after."""

    def __init__(self, config: StasisConfig) -> None:
        self.config = config
        self.base = config.base_url.rstrip("/")
        self.session: aiohttp.ClientSession | None = None
        self._request_timeout = aiohttp.ClientTimeout(total=config.request_timeout_s)

    def open(self) -> aiohttp.ClientSession:
        """The session for REST and the events websocket (connect timeouts only: the websocket is long)."""
        timeout = aiohttp.ClientTimeout(
            total=None, connect=self.config.connect_timeout_s, sock_connect=self.config.connect_timeout_s
        )
        auth = aiohttp.encode_basic_auth(self.config.user, self.config.password)
        connector = aiohttp.TCPConnector(resolver=self.config.resolver) if self.config.resolver else None
        self.session = aiohttp.ClientSession(
            timeout=timeout, headers={"Authorization": auth}, connector=connector
        )
        return self.session

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()

    async def request(
        self, method: str, path: str, params: Mapping[str, str] | None = None, *, body: bool = False
    ) -> tuple[int | None, Any]:
        """One ARI request: (status, JSON body or None); status None when no response came (logged). The
        body is decoded when asked for (``body``) or when the status is an error (for the log)."""
        assert self.session is not None  # noqa: S101
        try:
            async with self.session.request(
                method, f"{self.base}/ari{path}", params=params, timeout=self._request_timeout
            ) as resp:
                raw = await resp.read()  # to the end, so the connection is kept
                status = resp.status
                if not raw or not (body or status >= 300):
                    return status, None
                try:
                    return status, json.loads(raw)
                except ValueError:
                    return status, None
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            logger.warning("stasis %s: ARI %s %s failed: %r", self.config.app, method, path, exc)
            return None, None

    async def hangup(self, channel_id: str, reason: str = "normal") -> int | None:
        """DELETE the channel: 204 when it existed, 404 when already gone, None when unreachable."""
        status, _ = await self.request("DELETE", f"/channels/{seg(channel_id)}", {"reason": reason})
        if status not in (200, 204, 404):
            logger.warning("stasis %s: hangup %s answered %s", self.config.app, channel_id, status)
        return status

    async def destroy_bridge(self, bridge_id: str) -> int | None:
        status, _ = await self.request("DELETE", f"/bridges/{seg(bridge_id)}")
        if status not in (200, 204, 404):
            logger.warning("stasis %s: destroy bridge %s answered %s", self.config.app, bridge_id, status)
        return status
