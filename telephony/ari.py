"""The synchronous ARI REST client the Celery workers use to place and end calls.

One `AriClient` per PBX holds one `httpx.Client` (pooled keep-alive connections, HTTP Basic auth, explicit
connect/read/write/pool timeouts): every request this module makes is bounded in time. The Stasis app talks
to the same Asterisk through aioari and its events websocket; this module is only the REST side.

Errors are kept apart by what the caller should do next (DESIGN §4):

* `AriRetryableError`: the same request may succeed later. Connection refused/reset, any timeout, a
  protocol error, 5xx (503 "Asterisk not booted" is the common one), 408/429 from a proxy in front of ARI,
  and the stale 409 described below.
* `AriTerminalError`: repeating the request will not help. 4xx (bad parameters, 401 wrong credentials,
  403 ACL / read-only user, 404 unknown resource) and the originate 500 ``{"error":"Allocation failed"}``.
  Asterisk answers that 500 when the channel cannot be created at all: an unknown channel technology, or a
  driver that refuses the dial string (PROTOCOLS A1, §2.1). That is the PBX configuration or our
  `endpoint_template` being wrong; it fails the same way on every retry, so retrying would only burn the
  attempt's budget and hide a misconfiguration. (It is terminal *for this PBX*: a pool may still try another.)

The 409 rule (originate). The attempt id is the ARI ``channelId`` (DESIGN §5 rule 2). Asterisk refuses to
create a second channel with a live channel's id, answering **409** "Channel with given unique ID already
exists". So a 409 on originate means "perhaps placed", never "failed", and it is confirmed with
``GET /channels/{channelId}``:

* 200: our earlier originate was placed and the channel is alive. The result is
  ``OriginateResult(placed=True, already=True)`` with that snapshot. No second call is dialed.
* 404: no such channel. Asterisk 22.10.1 was seen answering a *stale* 409 on a keep-alive connection that had
  just received a 409 (PROTOCOLS A1 quirk), so the originate was not placed: `AriStaleConflictError`
  (retryable). The confirming GET is sent with ``Connection: close`` so that the connection which carried the
  409 is retired instead of going back to the pool with its stale error state.

Why a retry with the same ``channelId`` is safe. Whatever happened to the previous try (a timeout after the
request was sent, a worker killed mid-request, a Celery redelivery under ``acks_late``) the retry either
creates the channel (the previous try never reached Asterisk) or gets 409 and is reported as
``already=True``: one attempt id can never be two live channels, so retrying never dials the number twice
while the first call is up. What the channelId cannot cover is a first call that has already *ended* before
the retry (Asterisk forgets destroyed channels, so the retry would dial again); that case is closed on the
campaigns side: the originate task records that it sent the request, and a later run that may not know the
outcome asks ``GET /channels/{id}`` instead of sending again (``AriRetryableError.maybe_placed``).
For the same reason the 409-then-404 case is reported with its own subclass: the caller can tell "not
placed (stale 409)" from a plain transport failure, and must still re-check the attempt before retrying.

Logging names the channel id (the attempt id) on every call-affecting request; credentials are never logged
(they travel only in the Authorization header, and a base URL carrying ``user:password@`` is refused).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self
from urllib.parse import quote

import httpx

logger = logging.getLogger(__name__)

#: The body Asterisk sends when an originate cannot allocate a channel (unknown technology, refused dial
#: string): configuration, not load. See the module docstring.
ALLOCATION_FAILED = "Allocation failed"

# Statuses that a proxy or load balancer in front of ARI may send for a transient condition.
_RETRYABLE_4XX = frozenset({408, 429})


@dataclass(frozen=True)
class PbxConfig:
    """How to reach one Asterisk's ARI, and how to turn a phone number into a dial string.

    `base_url` is the HTTP server's root (``http://pbx1:8088``, plus the ``http.conf`` prefix if one is set),
    without ``/ari`` and without credentials.
    """

    base_url: str
    user: str
    password: str = field(repr=False)
    app: str
    endpoint_template: str  # e.g. "PJSIP/{number}@trunk"
    connect_timeout_s: float = 2.0
    read_timeout_s: float = 5.0
    max_connections: int = 10

    def endpoint_for(self, number: str) -> str:
        return self.endpoint_template.format(number=number)


class AriError(Exception):
    """An ARI request that did not do what was asked. `status` is None when no HTTP response arrived."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message if status is None else f"{status}: {message}")
        self.status = status
        self.message = message


class AriRetryableError(AriError):
    """Transient: the same request (same channelId) may be repeated later.

    ``maybe_placed`` says whether the request may have taken effect: True when it may have reached
    Asterisk and the answer was lost (a read/write timeout, a connection dropped mid-exchange, a gateway
    timeout, a 200 with an unreadable body); False when it certainly did not (connection refused, connect
    or pool timeout, an error status from Asterisk itself, the stale 409). The originate task uses it to
    decide between sending again and asking the PBX what became of the first try.
    """

    def __init__(self, message: str, *, status: int | None = None, maybe_placed: bool = False) -> None:
        super().__init__(message, status=status)
        self.maybe_placed = maybe_placed


class AriStaleConflictError(AriRetryableError):
    """Originate got 409 but the channel does not exist: the A1 stale-409 quirk; the call was not placed."""


class AriTerminalError(AriError):
    """Repeating the request will not help: bad parameters, credentials, or PBX configuration."""


@dataclass(frozen=True)
class OriginateResult:
    placed: bool
    already: bool
    channel: dict[str, Any]


class AriClient:
    """A pooled, time-bounded ARI REST client for one PBX. Thread-safe; close it (or use ``with``)."""

    def __init__(self, config: PbxConfig, *, transport: httpx.BaseTransport | None = None) -> None:
        url = httpx.URL(config.base_url)
        if url.userinfo:
            raise ValueError("PbxConfig.base_url must not carry credentials; use user/password")
        self.config = config
        self._client = httpx.Client(
            base_url=str(url).rstrip("/"),
            auth=httpx.BasicAuth(config.user, config.password),
            timeout=httpx.Timeout(
                connect=config.connect_timeout_s,
                read=config.read_timeout_s,
                write=config.read_timeout_s,
                pool=config.connect_timeout_s,
            ),
            limits=httpx.Limits(
                max_connections=config.max_connections,
                max_keepalive_connections=config.max_connections,
            ),
            headers={"Accept": "application/json"},
            transport=transport,
        )

    # ------------------------------------------------------------------------------------------ calls
    def originate(
        self,
        *,
        channel_id: str,
        number: str,
        app_args: str,
        caller_id: str,
        timeout_s: int,
        variables: dict[str, str],
    ) -> OriginateResult:
        """Place a call into the Stasis app, with `channel_id` (the attempt id) as the channel's id.

        Returns ``placed=True, already=False`` with the ``Down`` snapshot when Asterisk created the channel,
        or ``already=True`` with the live snapshot when a channel with this id already exists (409,
        confirmed). Raises `AriRetryableError` / `AriTerminalError` otherwise.
        """
        endpoint = self.config.endpoint_for(number)
        params = {
            "endpoint": endpoint,
            "app": self.config.app,
            "appArgs": app_args,
            "callerId": caller_id,
            "timeout": str(timeout_s),
            "channelId": channel_id,
        }
        logger.info("ARI originate channel=%s endpoint=%s", channel_id, endpoint)
        resp = self._request(
            "POST", "/ari/channels", channel_id=channel_id, params=params, json={"variables": variables}
        )
        if resp.status_code == 200:
            return OriginateResult(placed=True, already=False, channel=self._json_object(resp, channel_id))
        if resp.status_code == 409:
            return self._confirm_conflict(channel_id, resp)
        raise self._error_for(resp, channel_id=channel_id, originate=True)

    def _confirm_conflict(self, channel_id: str, conflict: httpx.Response) -> OriginateResult:
        logger.info("ARI originate channel=%s got 409 (%s); confirming", channel_id, _message_of(conflict))
        # Connection: close retires the connection that carried the 409 (A1: stale error state on a
        # keep-alive connection), whichever pooled connection the pool hands this GET.
        resp = self._request(
            "GET", f"/ari/channels/{_seg(channel_id)}", channel_id=channel_id, headers={"Connection": "close"}
        )
        if resp.status_code == 200:
            logger.info("ARI originate channel=%s already placed; not dialing again", channel_id)
            return OriginateResult(placed=True, already=True, channel=self._json_object(resp, channel_id))
        if resp.status_code == 404:
            logger.warning("ARI originate channel=%s: 409 but no such channel (stale 409)", channel_id)
            raise AriStaleConflictError(
                f"originate answered 409 ({_message_of(conflict)}) but channel {channel_id} does not exist",
                status=409,
            )
        raise self._error_for(resp, channel_id=channel_id)

    def get_channel(self, channel_id: str) -> dict[str, Any] | None:
        """The channel's snapshot, or None if Asterisk has no such channel (never created, or destroyed)."""
        resp = self._request("GET", f"/ari/channels/{_seg(channel_id)}", channel_id=channel_id)
        if resp.status_code == 200:
            return self._json_object(resp, channel_id)
        if resp.status_code == 404:
            return None
        raise self._error_for(resp, channel_id=channel_id)

    def list_channels(self) -> list[dict[str, Any]]:
        resp = self._request("GET", "/ari/channels")
        if resp.status_code != 200:
            raise self._error_for(resp)
        body = _json_of(resp)
        if not isinstance(body, list) or not all(isinstance(c, dict) for c in body):
            raise AriRetryableError("GET /ari/channels: expected a JSON list of channels", status=200)
        return body

    def hangup(self, channel_id: str, *, reason: str = "normal") -> bool:
        """Hang the channel up (``DELETE /channels/{id}?reason=``). False if it was already gone (404)."""
        logger.info("ARI hangup channel=%s reason=%s", channel_id, reason)
        resp = self._request(
            "DELETE", f"/ari/channels/{_seg(channel_id)}", channel_id=channel_id, params={"reason": reason}
        )
        if resp.status_code in (200, 204):
            return True
        if resp.status_code == 404:
            logger.info("ARI hangup channel=%s: already gone", channel_id)
            return False
        raise self._error_for(resp, channel_id=channel_id)

    # ------------------------------------------------------------------------------------ recordings
    def download_stored_recording(self, name: str, *, max_bytes: int, timeout_s: float) -> bytes | None:
        """The file of the stored recording ``name`` (``GET /recordings/stored/{name}/file``), None when
        the PBX has no such recording (404). Read in chunks, at most ``max_bytes`` (more raises
        `AriTerminalError`: it would not fit however often asked) and within ``timeout_s`` overall
        (`AriRetryableError` after that: a slow link may do better later)."""
        path = f"/ari/recordings/stored/{_seg(name)}/file"
        deadline = time.monotonic() + timeout_s
        try:
            with self._client.stream("GET", path, headers={"Accept": "*/*"}) as resp:
                if resp.status_code == 404:
                    return None
                if resp.status_code != 200:
                    resp.read()
                    raise self._error_for(resp)
                declared = resp.headers.get("content-length", "")
                if declared.isdigit() and int(declared) > max_bytes:
                    raise AriTerminalError(
                        f"GET {path}: {declared} bytes: more than {max_bytes} bytes", status=200
                    )
                chunks: list[bytes] = []
                size = 0
                for chunk in resp.iter_bytes(64 * 1024):
                    size += len(chunk)
                    if size > max_bytes:
                        raise AriTerminalError(f"GET {path}: more than {max_bytes} bytes", status=200)
                    if time.monotonic() > deadline:
                        raise AriRetryableError(f"GET {path}: not read within {timeout_s:.0f}s")
                    chunks.append(chunk)
                return b"".join(chunks)
        except httpx.TimeoutException as exc:
            raise AriRetryableError(f"GET {path}: timed out ({type(exc).__name__})") from exc
        except httpx.RequestError as exc:
            raise AriRetryableError(f"GET {path}: {type(exc).__name__}: {exc}") from exc

    def delete_stored_recording(self, name: str) -> bool:
        """``DELETE /recordings/stored/{name}``: False when it was gone already (404)."""
        resp = self._request("DELETE", f"/ari/recordings/stored/{_seg(name)}")
        if resp.status_code in (200, 204):
            return True
        if resp.status_code == 404:
            return False
        raise self._error_for(resp)

    def ping(self) -> bool:
        """True if the PBX answers ``GET /ari/asterisk/ping``; False if it is unreachable, slow or failing.

        Wrong credentials or a refused user (401/403) raise `AriTerminalError` rather than reading as "down":
        that is a configuration error that no amount of waiting fixes.
        """
        try:
            resp = self._request("GET", "/ari/asterisk/ping")
        except AriRetryableError as exc:
            logger.warning("ARI ping %s failed: %s", self.config.base_url, exc)
            return False
        if resp.status_code == 200:
            return True
        error = self._error_for(resp)
        if isinstance(error, AriTerminalError) and resp.status_code in (401, 403):
            raise error
        logger.warning("ARI ping %s failed: %s", self.config.base_url, error)
        return False

    # ------------------------------------------------------------------------------------- lifecycle
    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --------------------------------------------------------------------------------------- helpers
    def _request(
        self,
        method: str,
        path: str,
        *,
        channel_id: str | None = None,
        params: dict[str, str] | None = None,
        json: Any = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        """One HTTP exchange; any failure to get a response becomes `AriRetryableError`."""
        try:
            return self._client.request(method, path, params=params, json=json, headers=headers)
        except httpx.TimeoutException as exc:
            logger.warning("ARI %s %s channel=%s timed out: %r", method, path, channel_id, exc)
            # A connect or pool timeout never sent the request; a read/write timeout may have.
            sent = not isinstance(exc, httpx.ConnectTimeout | httpx.PoolTimeout)
            raise AriRetryableError(
                f"{method} {path}: timed out ({type(exc).__name__})", maybe_placed=sent
            ) from exc
        except httpx.UnsupportedProtocol as exc:
            # base_url is not http(s): configuration, not the network.
            raise AriTerminalError(f"{method} {path}: {exc}") from exc
        except httpx.RequestError as exc:
            # Connect refused/reset, protocol or decoding errors: nothing usable came back.
            logger.warning("ARI %s %s channel=%s failed: %r", method, path, channel_id, exc)
            raise AriRetryableError(
                f"{method} {path}: {type(exc).__name__}: {exc}",
                maybe_placed=not isinstance(exc, httpx.ConnectError),
            ) from exc

    def _json_object(self, resp: httpx.Response, channel_id: str) -> dict[str, Any]:
        body = _json_of(resp)
        if not isinstance(body, dict):
            # A 200 that is not a channel: a proxy page or a truncated body. Asking again is reasonable,
            # and with the same channelId it is safe (a placed channel answers 409 → confirmed).
            raise AriRetryableError(
                f"{resp.request.method} {resp.request.url.path}: expected a JSON object for channel "
                f"{channel_id}",
                status=resp.status_code,
                maybe_placed=resp.is_success,
            )
        return body

    def _error_for(
        self, resp: httpx.Response, *, channel_id: str | None = None, originate: bool = False
    ) -> AriError:
        status = resp.status_code
        message = _message_of(resp)
        what = f"{resp.request.method} {resp.request.url.path}"
        error: AriError
        if originate and status == 500 and message == ALLOCATION_FAILED:
            error = AriTerminalError(
                f"{what}: {message} (unknown technology or refused endpoint)", status=status
            )
        elif status >= 500 or status in _RETRYABLE_4XX:
            # A proxy's 502/504 may come after it forwarded the request; Asterisk's own errors mean no.
            error = AriRetryableError(f"{what}: {message}", status=status, maybe_placed=status in (502, 504))
        else:
            error = AriTerminalError(f"{what}: {message}", status=status)
        logger.warning("ARI %s channel=%s -> %s %s", what, channel_id, status, message)
        return error


def _seg(channel_id: str) -> str:
    """A channel id as one URL path segment (ids are free text: Local ";2" halves, dots, anything)."""
    return quote(channel_id, safe="")


def _json_of(resp: httpx.Response) -> Any:
    try:
        return resp.json()
    except ValueError:
        return None


def _message_of(resp: httpx.Response) -> str:
    """ARI's error text: ``{"message": ...}`` normally, ``{"error": ...}`` for "Allocation failed"."""
    body = _json_of(resp)
    if isinstance(body, dict):
        for key in ("message", "error"):
            value = body.get(key)
            if isinstance(value, str):
                return value
    text = resp.text.strip()
    return text[:200] if text else resp.reason_phrase
