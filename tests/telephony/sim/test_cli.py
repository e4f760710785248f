"""`python -m telephony.sim`: the command line, started as a real subprocess."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from wire import audiosocket

from .conftest import MediaServer, wait_until

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[3]
BUSY_NUMBER = "+15550400001"
TALKING_NUMBER = "+15550400003"


def env() -> dict[str, str]:
    """The environment without SIM_* settings, so only the command line counts."""
    out = {k: v for k, v in os.environ.items() if not k.startswith("SIM_")}
    out["PYTHONPATH"] = str(ROOT) + os.pathsep + out.get("PYTHONPATH", "")
    return out


def run(*args: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "telephony.sim", *args],
        cwd=ROOT,
        env=env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_help_documents_the_options() -> None:
    result = run("--help")
    assert result.returncode == 0, result.stderr
    for option in ("--host", "--port", "--ari-user", "--ari-password", "--plan"):
        assert option in result.stdout, option
    assert "/sim/calls" in result.stdout and "SIM_ARI_PASSWORD" in result.stdout


def test_a_missing_password_exits_non_zero_with_a_message() -> None:
    result = run("--port", str(free_port()))
    assert result.returncode != 0
    assert "--ari-password" in result.stderr and "required" in result.stderr


def test_the_password_can_come_from_the_environment() -> None:
    """SIM_ARI_PASSWORD satisfies the requirement: parsing goes on to the plan (which fails here)."""
    e = env()
    e["SIM_ARI_PASSWORD"] = "x"
    result = subprocess.run(
        [sys.executable, "-m", "telephony.sim", "--plan", "/nonexistent/plan.yaml"],
        cwd=ROOT,
        env=e,
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    assert result.returncode == 2
    assert "cannot read plan" in result.stderr


def test_an_invalid_plan_exits_2_naming_the_problem(tmp_path: Path) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text('numbers:\n  "+15550400009": {behaviour: answer, after: soon}\n')
    result = run("--port", str(free_port()), "--ari-password", "x", "--plan", str(plan))
    assert result.returncode == 2
    assert "numbers[+15550400009].after: expected a number, got 'soon'" in result.stderr
    plan.write_text("numbers:\n  '1': bogus\n")
    result = run("--port", str(free_port()), "--ari-password", "x", "--plan", str(plan))
    assert result.returncode == 2
    assert "numbers[1].behaviour: unknown behaviour 'bogus'" in result.stderr
    result = run("--port", str(free_port()), "--ari-password", "x", "--plan", str(tmp_path / "missing.yaml"))
    assert result.returncode == 2 and "cannot read plan" in result.stderr


@pytest.fixture
def simulator(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], str]]:
    plan = tmp_path / "plan.yaml"
    plan.write_text(
        f'numbers:\n  "{BUSY_NUMBER}": busy\n'
        f'  "{TALKING_NUMBER}": {{behaviour: answer, after: 0,'
        f' say: [{{at: 0.3, text: "Hello there, a test."}}], dtmf: [{{at: 0.1, digits: "5"}}]}}\n'
        "default: {behaviour: answer, after: 0, say: []}\n"
    )
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "telephony.sim",
            "--port",
            str(port),
            "--ari-password",
            "x",
            "--plan",
            str(plan),
            "--log-level",
            "WARNING",
        ],
        cwd=ROOT,
        env=env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        yield proc, base
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=10)


async def wait_up(base: str, proc: subprocess.Popen[str], auth: dict[str, str]) -> dict[str, object]:
    deadline = time.monotonic() + 10
    async with aiohttp.ClientSession(headers=auth) as session:
        while True:
            assert proc.poll() is None, f"the simulator exited: {proc.communicate()}"
            try:
                async with session.get(f"{base}/ari/asterisk/info") as resp:
                    if resp.status == 200:
                        return dict(await resp.json())
            except aiohttp.ClientConnectionError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError("the simulator did not come up within 10 s")
            await asyncio.sleep(0.1)


async def test_subprocess_serves_ari_routes_the_plan_and_stops_on_sigterm(
    simulator: tuple[subprocess.Popen[str], str],
) -> None:
    proc, base = simulator
    auth = {"Authorization": aiohttp.encode_basic_auth("asterisk", "x")}  # the default --ari-user
    info = await wait_up(base, proc, auth)
    assert info["system"]["version"] == "22.10.1"  # type: ignore[index]

    async with aiohttp.ClientSession(headers=auth) as session:
        wrong = {"Authorization": aiohttp.encode_basic_auth("asterisk", "y")}
        async with session.get(f"{base}/ari/asterisk/info", headers=wrong) as resp:
            assert resp.status == 401
        ws = await session.ws_connect(f"{base}/ari/events", params={"app": "ai_agent"})
        try:
            await asyncio.sleep(0.1)
            cid = str(uuid.uuid4())
            async with session.post(
                f"{base}/ari/channels",
                params={
                    "endpoint": f"PJSIP/{BUSY_NUMBER}@trunk",
                    "app": "ai_agent",
                    "channelId": cid,
                },
            ) as resp:
                assert resp.status == 200, await resp.text()
            statuses: list[str] = []
            destroyed = None
            while destroyed is None:
                msg = await ws.receive(timeout=5)
                assert msg.type == aiohttp.WSMsgType.TEXT, msg
                event = json.loads(msg.data)
                if event["type"] == "Dial":
                    statuses.append(event["dialstatus"])
                elif event["type"] == "ChannelDestroyed":
                    destroyed = event
            assert statuses == ["", "BUSY"]
            assert destroyed["cause"] == 17 and destroyed["channel"]["id"] == cid
            # a number that is not planned gets the default: answered at once
            other = str(uuid.uuid4())
            async with session.post(
                f"{base}/ari/channels",
                params={
                    "endpoint": "PJSIP/+15550400002@trunk",
                    "app": "ai_agent",
                    "channelId": other,
                },
            ) as resp:
                assert resp.status == 200
            while True:
                event = json.loads((await ws.receive(timeout=5)).data)
                if event["type"] == "StasisStart":
                    assert event["channel"]["id"] == other
                    break

            # SIGTERM with the events websocket still open and a call up: a clean exit
            started = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            msg = await ws.receive(timeout=5)
            assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED)
        finally:
            await ws.close()
    returncode = await asyncio.to_thread(proc.wait, 10)
    assert returncode == 0, proc.communicate()
    assert time.monotonic() - started < 5


async def test_subprocess_audiosocket_on_the_production_event_loop(
    simulator: tuple[subprocess.Popen[str], str],
) -> None:
    """`python -m telephony.sim` runs on uvloop when installed: AudioSocket must work there too."""
    proc, base = simulator
    auth = {"Authorization": aiohttp.encode_basic_auth("asterisk", "x")}
    await wait_up(base, proc, auth)
    media = MediaServer()
    await media.start()
    async with aiohttp.ClientSession(headers=auth) as session:
        ws = await session.ws_connect(f"{base}/ari/events", params={"app": "ai_agent"})
        try:
            await asyncio.sleep(0.1)
            cid = str(uuid.uuid4())
            async with session.post(
                f"{base}/ari/channels",
                params={"endpoint": f"PJSIP/{TALKING_NUMBER}@trunk", "app": "ai_agent", "channelId": cid},
            ) as resp:
                assert resp.status == 200
            while json.loads((await ws.receive(timeout=5)).data)["type"] != "StasisStart":
                pass
            bridge = str(uuid.uuid4())
            async with session.post(f"{base}/ari/bridges", params={"bridgeId": bridge}) as resp:
                assert resp.status == 200
            media_id = str(uuid.uuid4())
            params = {
                "app": "ai_agent", "external_host": media.address, "encapsulation": "audiosocket",
                "transport": "tcp", "format": "slin16", "data": media_id, "channelId": media_id,
            }  # fmt: skip
            async with session.post(f"{base}/ari/channels/externalMedia", params=params) as resp:
                assert resp.status == 200, await resp.text()
            # The leg enters the app after the request returned (as on Asterisk): bridge it after that.
            while True:
                event = json.loads((await ws.receive(timeout=5)).data)
                if event["type"] == "StasisStart" and event["channel"]["id"] == media_id:
                    break
            async with session.post(
                f"{base}/ari/bridges/{bridge}/addChannel", params={"channel": f"{cid},{media_id}"}
            ) as resp:
                assert resp.status == 204
            await wait_until(lambda: len(media.connections) == 1 and len(media.connections[0].audio()) >= 20)
            conn = media.connections[0]
            assert conn.frames[0][1] == audiosocket.KIND_UUID and str(conn.uuid) == media_id
            assert {k for _, k, _ in conn.audio()} == {0x12}
            assert conn.dtmf() == "5"
            for _ in range(25):  # speak to the callee: half a second, paced
                conn.send(audiosocket.encode(0x12, b"\x10\x27" * 320))
                await asyncio.sleep(0.02)
            await asyncio.sleep(0.2)
            async with session.get(f"{base}/sim/calls/{cid}") as resp:
                record = await resp.json()
            assert 400 <= record["heard"]["heard_ms"] <= 600
            assert record["media"][0]["frames_in"] == 25
        finally:
            await ws.close()
            await media.close()
