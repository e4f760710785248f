"""The synchronous ARI client against the PBX simulator over real TCP, and against tiny stub servers for
the failures the simulator does not produce (no answer at all, the stale 409, 503).

The simulator is aiohttp; it runs on its own event loop in a background thread so the blocking client can
be driven from plain synchronous tests, exactly as a Celery worker would drive it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from telephony.ari import (
    AriClient,
    AriError,
    AriRetryableError,
    AriStaleConflictError,
    AriTerminalError,
    OriginateResult,
    PbxConfig,
)
from telephony.sim.plan import parse_plan
from tests.telephony.sim.conftest import APP, PASSWORD, USER, start_sim

NUMBER = "+15550100001"


# ------------------------------------------------------------------------------------------- fixtures
@dataclass
class ThreadedSim:
    port: int
    http: httpx.Client  # for /sim inspection, separate from the client under test

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def config(self, **overrides: Any) -> PbxConfig:
        cfg = PbxConfig(
            base_url=self.base,
            user=USER,
            password=PASSWORD,
            app=APP,
            endpoint_template="PJSIP/{number}@trunk",
        )
        return replace(cfg, **overrides)

    def calls(self) -> list[dict[str, Any]]:
        resp = self.http.get("/sim/calls")
        assert resp.status_code == 200, resp.text
        calls: list[dict[str, Any]] = resp.json()["calls"]
        return calls

    def call(self, call_id: str) -> dict[str, Any]:
        resp = self.http.get(f"/sim/calls/{call_id}")
        assert resp.status_code == 200, resp.text
        body: dict[str, Any] = resp.json()
        return body


@pytest.fixture
def sim() -> Iterator[ThreadedSim]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="pbx-sim", daemon=True)
    thread.start()
    # Callees ring until the originate timeout, so a placed channel stays alive for the whole test.
    plan = parse_plan({"default": "no_answer"})
    runner, _pbx, port = asyncio.run_coroutine_threadsafe(start_sim(plan), loop).result(10)
    http = httpx.Client(base_url=f"http://127.0.0.1:{port}", auth=(USER, PASSWORD), timeout=5)
    try:
        yield ThreadedSim(port=port, http=http)
    finally:
        http.close()
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()


@pytest.fixture
def client(sim: ThreadedSim) -> Iterator[AriClient]:
    with AriClient(sim.config()) as c:
        yield c


def originate(client: AriClient, channel_id: str, number: str = NUMBER) -> OriginateResult:
    return client.originate(
        channel_id=channel_id,
        number=number,
        app_args=f"outbound,{channel_id}",
        caller_id='"Acme" <+15550009999>',
        timeout_s=30,
        variables={"ATTEMPT_ID": channel_id},
    )


def offline_config(port: int, **overrides: Any) -> PbxConfig:
    cfg = PbxConfig(
        base_url=f"http://127.0.0.1:{port}",
        user=USER,
        password=PASSWORD,
        app=APP,
        endpoint_template="PJSIP/{number}@trunk",
        connect_timeout_s=0.5,
        read_timeout_s=0.5,
    )
    return replace(cfg, **overrides)


def wait_until(pred: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.02)


@dataclass
class StubServer:
    """An HTTP/1.1 keep-alive server answering fixed (status, JSON) per method, recording what it got."""

    answers: dict[str, tuple[int, Any]]
    seen: list[tuple[str, str, dict[str, str], int]] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    @property
    def port(self) -> int:
        assert self.server is not None
        return self.server.server_address[1]

    def start(self) -> None:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                stub.seen.append(
                    (self.command, self.path, dict(self.headers.items()), self.client_address[1])
                )
                status, body = stub.answers.get(self.command, (404, {"message": "Resource not found"}))
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_DELETE = _answer

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


@pytest.fixture
def stub() -> Iterator[StubServer]:
    server = StubServer(answers={})
    server.start()
    yield server
    server.stop()


# ------------------------------------------------------------------------------------------ originate
def test_originate_returns_the_down_snapshot_and_sends_every_parameter(
    sim: ThreadedSim, client: AriClient
) -> None:
    channel_id = str(uuid.uuid4())
    result = originate(client, channel_id)

    assert result.placed and not result.already
    assert result.channel["id"] == channel_id
    assert result.channel["state"] == "Down"
    assert result.channel["name"].startswith("PJSIP/trunk-")

    call = sim.call(channel_id)
    assert call["endpoint"] == f"PJSIP/{NUMBER}@trunk"
    assert call["app"] == APP
    assert call["app_args"] == ["outbound", channel_id]
    # `variables` went in the JSON body and were set on the channel.
    resp = sim.http.get(f"/ari/channels/{channel_id}/variable", params={"variable": "ATTEMPT_ID"})
    assert resp.status_code == 200 and resp.json()["value"] == channel_id
    assert client.get_channel(channel_id) is not None
    assert channel_id in [c["id"] for c in client.list_channels()]


def test_repeated_originate_with_the_same_channel_id_is_already_placed_and_dials_once(
    sim: ThreadedSim, client: AriClient
) -> None:
    channel_id = str(uuid.uuid4())
    first = originate(client, channel_id)
    second = originate(client, channel_id)

    assert first.placed and not first.already
    assert second.placed and second.already
    assert second.channel["id"] == channel_id
    assert [c["id"] for c in sim.calls()] == [channel_id]


def test_unknown_technology_is_terminal(sim: ThreadedSim) -> None:
    with AriClient(sim.config(endpoint_template="Foo/{number}")) as client:
        with pytest.raises(AriTerminalError) as info:
            originate(client, str(uuid.uuid4()))
    assert info.value.status == 500
    assert info.value.message.endswith("Allocation failed (unknown technology or refused endpoint)")
    assert sim.calls() == []


def test_missing_app_is_terminal_400(sim: ThreadedSim) -> None:
    with AriClient(sim.config(app="")) as client:
        with pytest.raises(AriTerminalError) as info:
            originate(client, str(uuid.uuid4()))
    assert info.value.status == 400
    assert sim.calls() == []


def test_wrong_password_is_terminal_401(sim: ThreadedSim) -> None:
    with AriClient(sim.config(password="wrong")) as client:
        with pytest.raises(AriTerminalError) as info:
            originate(client, str(uuid.uuid4()))
        assert info.value.status == 401
        # A health check must not report bad credentials as "PBX down".
        with pytest.raises(AriTerminalError):
            client.ping()
    assert sim.calls() == []


def test_server_down_is_retryable_and_quick() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # The port is closed now: connection refused.
    with AriClient(offline_config(port)) as client:
        start = time.monotonic()
        with pytest.raises(AriRetryableError) as info:
            originate(client, str(uuid.uuid4()))
        assert time.monotonic() - start < 3
        assert info.value.status is None
        assert info.value.maybe_placed is False  # refused: the request never left
        assert client.ping() is False


def test_read_timeout_is_retryable_within_the_configured_timeout() -> None:
    # A listening socket that never accepts: the kernel completes the handshake, nobody ever answers.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        port = listener.getsockname()[1]
        with AriClient(offline_config(port, read_timeout_s=0.5)) as client:
            start = time.monotonic()
            with pytest.raises(AriRetryableError) as info:
                originate(client, str(uuid.uuid4()))
            elapsed = time.monotonic() - start
    assert 0.4 <= elapsed < 2.0, elapsed
    assert "timed out" in info.value.message
    assert info.value.status is None
    assert info.value.maybe_placed is True  # sent, answer lost: the PBX may have placed the call


def test_stale_409_with_no_such_channel_is_retryable(stub: StubServer) -> None:
    stub.answers = {
        "POST": (409, {"message": "Channel with given unique ID already exists"}),
        "GET": (404, {"message": "Channel not found"}),
    }
    channel_id = str(uuid.uuid4())
    with AriClient(offline_config(stub.port)) as client:
        with pytest.raises(AriRetryableError) as info:
            originate(client, channel_id)
    assert isinstance(info.value, AriStaleConflictError)
    assert info.value.status == 409
    assert info.value.maybe_placed is False
    methods = [(m, p.split("?")[0]) for m, p, _, _ in stub.seen]
    assert methods == [("POST", "/ari/channels"), ("GET", f"/ari/channels/{channel_id}")]
    # The confirming GET retires the connection that carried the 409 (A1 keep-alive quirk).
    assert stub.seen[1][2].get("Connection", "").lower() == "close"


def test_409_confirmed_by_a_live_channel_is_already_placed(stub: StubServer) -> None:
    channel_id = str(uuid.uuid4())
    snapshot = {"id": channel_id, "name": "PJSIP/trunk-00000001", "state": "Ringing"}
    stub.answers = {
        "POST": (409, {"message": "Channel with given unique ID already exists"}),
        "GET": (200, snapshot),
    }
    with AriClient(offline_config(stub.port)) as client:
        result = originate(client, channel_id)
    assert result == OriginateResult(placed=True, already=True, channel=snapshot)


@pytest.mark.parametrize(("status", "maybe_placed"), [(500, False), (502, True), (503, False), (504, True)])
def test_other_5xx_is_retryable(stub: StubServer, status: int, maybe_placed: bool) -> None:
    stub.answers = {"POST": (status, {"message": "Asterisk not booted"})}
    with AriClient(offline_config(stub.port)) as client:
        with pytest.raises(AriRetryableError) as info:
            originate(client, str(uuid.uuid4()))
    assert info.value.status == status
    # Asterisk's own errors mean "not placed"; a gateway's 502/504 may come after forwarding the request.
    assert info.value.maybe_placed is maybe_placed


# --------------------------------------------------------------------------------------------- hangup
def test_hangup_of_a_live_channel_ends_the_call_by_the_app(sim: ThreadedSim, client: AriClient) -> None:
    channel_id = str(uuid.uuid4())
    originate(client, channel_id)

    assert client.hangup(channel_id) is True

    wait_until(lambda: sim.call(channel_id)["state"] == "ended")
    call = sim.call(channel_id)
    assert call["ended_by"] == "app"
    assert call["cause"] == 16
    assert client.get_channel(channel_id) is None
    # Hanging up again is not an error: it is already gone.
    assert client.hangup(channel_id) is False


def test_hangup_of_an_unknown_channel_is_false(client: AriClient) -> None:
    assert client.hangup(str(uuid.uuid4())) is False


def test_hangup_with_a_bad_reason_is_terminal(sim: ThreadedSim, client: AriClient) -> None:
    channel_id = str(uuid.uuid4())
    originate(client, channel_id)
    with pytest.raises(AriTerminalError) as info:
        client.hangup(channel_id, reason="no_such_reason")
    assert info.value.status == 400


# ------------------------------------------------------------------------------------- misc behaviour
def test_ping(client: AriClient) -> None:
    assert client.ping() is True


def test_keep_alive_connection_is_reused(stub: StubServer) -> None:
    stub.answers = {"GET": (200, {"ping": "pong"})}
    with AriClient(offline_config(stub.port)) as client:
        for _ in range(5):
            assert client.ping() is True
    assert len(stub.seen) == 5
    assert len({client_port for *_, client_port in stub.seen}) == 1


def test_password_is_never_logged_or_shown(
    sim: ThreadedSim, client: AriClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    channel_id = str(uuid.uuid4())
    originate(client, channel_id)
    originate(client, channel_id)
    client.hangup(channel_id)
    with AriClient(sim.config(password="wrong-" + PASSWORD)) as bad, pytest.raises(AriError):
        originate(bad, str(uuid.uuid4()))

    assert channel_id in caplog.text
    assert PASSWORD not in caplog.text
    assert PASSWORD not in repr(sim.config())


def test_credentials_in_the_base_url_are_refused() -> None:
    with pytest.raises(ValueError, match="credentials"):
        AriClient(offline_config(1, base_url=f"http://{USER}:{PASSWORD}@127.0.0.1:1"))


def test_endpoint_for() -> None:
    assert offline_config(1).endpoint_for("+15550100001") == "PJSIP/+15550100001@trunk"
