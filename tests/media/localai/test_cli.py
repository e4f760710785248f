"""``python -m media.localai`` in its own process: the READY line, failure flags, clean stop on SIGTERM."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

pytestmark = pytest.mark.slow


@asynccontextmanager
async def stand_in(project_root: Path, *args: str) -> AsyncIterator[tuple[str, asyncio.subprocess.Process]]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "media.localai",
        "--port",
        "0",
        "--log-level",
        "WARNING",
        *args,
        cwd=project_root,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 20)).decode().strip()
        assert line.startswith("READY ws://127.0.0.1:"), line
        yield line.removeprefix("READY "), proc
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_fail_session_update_then_sigterm_stops_cleanly(project_root: Path) -> None:
    async with stand_in(project_root, "--fail-session-update") as (url, proc):
        async with connect(f"{url}?model=gpt-realtime", open_timeout=5) as ws:
            assert json.loads(await asyncio.wait_for(ws.recv(), 5))["type"] == "session.created"
            await ws.send(json.dumps({"type": "session.update", "session": {"type": "realtime"}}))
            error = json.loads(await asyncio.wait_for(ws.recv(), 5))
            assert error["type"] == "error" and error["error"]["type"] == "server_error"
            proc.send_signal(signal.SIGTERM)  # with a call still connected
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 10)
            assert ws.close_code == 1001  # going away
        assert await asyncio.wait_for(proc.wait(), 10) == 0


async def test_drop_after_s_flag(project_root: Path) -> None:
    async with stand_in(project_root, "--drop-after-s", "0.2") as (url, proc):
        async with connect(f"{url}?model=gpt-realtime", open_timeout=5) as ws:
            await asyncio.wait_for(ws.recv(), 5)
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 5)
            assert ws.close_code == 1011
        proc.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(proc.wait(), 10) == 0


async def test_rules_file_and_bad_arguments(project_root: Path, tmp_path: Path) -> None:
    rules = tmp_path / "rules.json"
    rules.write_text(
        json.dumps([{"match": "magic word", "tool": "end_call", "arguments": {"reason": "magic"}}])
    )
    async with stand_in(project_root, "--rules", str(rules), "--speed", "0") as (url, proc):
        async with connect(f"{url}?model=gpt-realtime", open_timeout=5) as ws:
            await asyncio.wait_for(ws.recv(), 5)
            tool = {"type": "function", "name": "end_call", "parameters": {"type": "object"}}
            await ws.send(
                json.dumps({"type": "session.update", "session": {"type": "realtime", "tools": [tool]}})
            )
            item = {
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": "the MAGIC WORD"}],
            }
            await ws.send(json.dumps({"type": "conversation.item.create", "item": item}))
            await ws.send(json.dumps({"type": "response.create"}))
            async with asyncio.timeout(5):
                while (event := json.loads(await ws.recv()))[
                    "type"
                ] != "response.function_call_arguments.done":
                    pass
            assert event["name"] == "end_call" and json.loads(event["arguments"]) == {"reason": "magic"}
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 10) == 0
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "media.localai",
        "--rules",
        str(bad),
        cwd=project_root,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 2 and b"rules must be a JSON list" in err
