"""The local supervisor and `manage.py runlocal`, with real child processes."""

from __future__ import annotations

import io
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import pytest
from django.conf import settings

from flows.management.commands.seed_after_hours import DEMO_SMS_AUTH_TOKEN, DEMO_SMS_WEBHOOK_ID
from orchestrator.management.commands.runlocal import SIM_PLAN, process_specs
from orchestrator.redis_client import get_redis
from orchestrator.supervisor import ProcessSpec, Supervisor
from orchestrator.tasks import HEARTBEAT_KEY, HEARTBEAT_TTL_S

pytestmark = pytest.mark.slow


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _wait_for_file(path: Path, timeout: float = 10) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_text():
            return path.read_text()
        time.sleep(0.05)
    raise AssertionError(f"{path} was not written")


def _python(code: str) -> list[str]:
    return [sys.executable, "-c", textwrap.dedent(code)]


def test_output_is_prefixed_and_a_dying_child_stops_everything(tmp_path):
    pid_file = tmp_path / "sleeper.pid"
    out = io.StringIO()
    supervisor = Supervisor(
        [
            ProcessSpec(
                "sleeper",
                _python(f"""
                    import os, time, pathlib
                    pathlib.Path({str(pid_file)!r}).write_text(str(os.getpid()))
                    time.sleep(60)
                """),
            ),
            ProcessSpec(
                "crasher",
                _python(f"""
                    import pathlib, sys, time
                    while not pathlib.Path({str(pid_file)!r}).exists():
                        time.sleep(0.05)
                    print("about to fail")
                    sys.exit(3)
                """),
            ),
        ],
        output=out,
        grace_period=5,
    )
    started = time.monotonic()
    assert supervisor.run() == 1
    assert time.monotonic() - started < 10
    sleeper_pid = int(pid_file.read_text())
    assert not _alive(sleeper_pid)
    lines = out.getvalue().splitlines()
    assert "crasher  | about to fail" in lines
    assert any("crasher exited with status 3; stopping everything" in line for line in lines)


def test_sigterm_stops_all_children_and_exits_zero(tmp_path):
    pid_file = tmp_path / "child.pid"
    child = f"""
        import os, pathlib, time
        pathlib.Path({str(pid_file)!r}).write_text(str(os.getpid()))
        time.sleep(60)
    """
    supervisor_code = f"""
        import sys
        from orchestrator.supervisor import ProcessSpec, Supervisor
        sys.exit(Supervisor([ProcessSpec("child", {_python(child)!r})]).run())
    """
    supervisor = subprocess.Popen(_python(supervisor_code), stdout=subprocess.PIPE, text=True)
    child_pid = int(_wait_for_file(pid_file))
    supervisor.send_signal(signal.SIGTERM)
    output, _ = supervisor.communicate(timeout=15)
    assert supervisor.returncode == 0, output
    assert not _alive(child_pid)
    assert "runlocal | stopping" in output


def test_a_child_that_ignores_sigterm_is_killed_after_the_grace_period(tmp_path):
    pid_file = tmp_path / "stubborn.pid"
    out = io.StringIO()
    supervisor = Supervisor(
        [
            ProcessSpec(
                "stubborn",
                _python(f"""
                    import os, pathlib, signal, time
                    signal.signal(signal.SIGTERM, signal.SIG_IGN)
                    pathlib.Path({str(pid_file)!r}).write_text(str(os.getpid()))
                    time.sleep(60)
                """),
            ),
        ],
        output=out,
        grace_period=1,
    )

    def stop_once_started() -> None:
        _wait_for_file(pid_file)
        supervisor.request_stop()

    threading.Thread(target=stop_once_started, daemon=True).start()
    assert supervisor.run() == 0
    assert not _alive(int(pid_file.read_text()))
    assert "ignored SIGTERM" in out.getvalue()


def test_process_specs_start_web_the_simulator_worker_beat_and_stasis(tmp_path):
    specs = {spec.name: spec for spec in process_specs(base_dir=tmp_path, python="py", environ={})}
    assert list(specs["web"].argv) == [
        "py", "-m", "uvicorn", "orchestrator.asgi:application",
        "--host", "127.0.0.1", "--port", "8000", "--no-server-header", "--timeout-graceful-shutdown", "3",
    ]  # fmt: skip
    sim = list(specs["sim"].argv)
    assert sim[:3] == ["py", "-m", "telephony.sim"]
    assert sim[sim.index("--host") + 1] == "127.0.0.1"
    assert sim[sim.index("--port") + 1] == "8088"
    assert sim[sim.index("--ari-user") + 1] == "asterisk"
    assert sim[sim.index("--ari-password") + 1] == "asterisk"
    assert "--plan" not in sim  # no plan file yet
    assert list(specs["worker"].argv)[:6] == ["py", "-m", "celery", "-A", "orchestrator", "worker"]
    assert list(specs["beat"].argv)[:6] == ["py", "-m", "celery", "-A", "orchestrator", "beat"]
    assert list(specs["stasis"].argv) == [
        "py",
        str(tmp_path / "manage.py"),
        "run_stasis",
        "--pbx",
        "demo-sim",
    ]
    assert list(specs) == ["web", "sim", "sms", "worker", "beat", "stasis", "agent", "media"]
    # The SMS stand-in posts the demo people's replies to the demo tenant's inbound webhook.
    sms = list(specs["sms"].argv)
    assert sms[:3] == ["py", "-m", "telephony.sim.sms"]
    assert sms[sms.index("--port") + 1] == "8089"
    assert sms[sms.index("--auth-token") + 1] == DEMO_SMS_AUTH_TOKEN
    assert sms[sms.index("--inbound-url") + 1] == (
        f"http://127.0.0.1:8000/webhooks/sms/twilio/{DEMO_SMS_WEBHOOK_ID}/inbound"
    )
    assert list(specs["media"].argv) == ["py", "-m", "media"]
    assert specs["media"].env["REALTIME_URL"] == "ws://127.0.0.1:8765/v1/realtime"
    assert specs["media"].env["MEDIA_LISTEN"] == "127.0.0.1:9092"
    assert specs["media"].env["CELERY_BROKER_URL"] == settings.CELERY_BROKER_URL
    assert list(specs["agent"].argv)[:5] == ["py", "-m", "media.localai", "--mode", "agent"]

    (tmp_path / SIM_PLAN).parent.mkdir(parents=True)
    (tmp_path / SIM_PLAN).write_text("{}\n")
    sim = list({s.name: s for s in process_specs(base_dir=tmp_path, python="py")}["sim"].argv)
    assert sim[sim.index("--plan") + 1] == str(tmp_path / SIM_PLAN)


def test_with_an_openai_key_the_media_worker_talks_to_openai_and_no_local_agent_runs(tmp_path):
    specs = {
        s.name: s for s in process_specs(base_dir=tmp_path, python="py", environ={"OPENAI_API_KEY": "k"})
    }
    assert "agent" not in specs
    assert "REALTIME_URL" not in specs["media"].env  # the worker's default: OpenAI's GA endpoint


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _runlocal(args: list[str], *, env: dict[str, str], cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "manage.py", "runlocal", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_runlocal_serves_healthz_then_stops_cleanly_on_sigterm(subprocess_env, project_root):
    port = _free_port()
    env = {**subprocess_env, "ALLOWED_HOSTS": "127.0.0.1"}  # Django answers 400 to other hosts unless DEBUG
    # Only the web runs here: /healthz is told beat and a worker are alive by their heartbeats in Redis.
    env["BEAT_LOCK_KEY"] = f"test:runlocal:beat-lock:{port}"
    redis = get_redis()
    redis.set(env["BEAT_LOCK_KEY"], "test-holder", ex=60)
    redis.set(HEARTBEAT_KEY, datetime.now(UTC).isoformat(), ex=HEARTBEAT_TTL_S)
    runlocal = _runlocal(["--only", "web", "--web-address", f"127.0.0.1:{port}"], env=env, cwd=project_root)
    try:
        deadline = time.monotonic() + 30
        status = None
        while time.monotonic() < deadline and runlocal.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as response:  # noqa: S310
                    status = response.status
                    break
            except OSError:  # not listening yet (URLError), or a slow first response on a busy machine
                time.sleep(0.2)
    finally:
        runlocal.send_signal(signal.SIGTERM)
        output, _ = runlocal.communicate(timeout=20)
    assert status == 200, output
    assert runlocal.returncode == 0, output
    # Prefixed child output (the request log line itself may lose the race with SIGTERM).
    assert re.search(r"^web +\| .*Uvicorn running on http://127\.0\.0\.1:", output, re.MULTILINE), output
    assert f"portal: http://127.0.0.1:{port}/" in output
    assert "runlocal | stopping" in output


def test_runlocal_exits_nonzero_when_a_process_dies(subprocess_env, project_root):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {**subprocess_env, "ALLOWED_HOSTS": "127.0.0.1"}
        runlocal = _runlocal(
            ["--only", "web", "--web-address", f"127.0.0.1:{port}"], env=env, cwd=project_root
        )
        output, _ = runlocal.communicate(timeout=60)
    assert runlocal.returncode == 1, output
    assert "already in use" in output
    assert "web exited with status" in output


def test_runlocal_rejects_an_unknown_process_name(subprocess_env, project_root):
    runlocal = _runlocal(["--only", "nope"], env=subprocess_env, cwd=project_root)
    output, _ = runlocal.communicate(timeout=60)
    assert runlocal.returncode != 0
    assert "unknown process" in output
