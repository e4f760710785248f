"""Fixtures of the messaging tests: a tenant with a Twilio (or Telnyx) account, the SMS stand-in as a real
process, and helpers to post signed webhooks through Django's test client."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from twilio.request_validator import RequestValidator

from messaging.models import SmsAccount
from messaging.services.accounts import sms_account_create
from tenants.models import Tenant
from tests.campaigns.factories import make_tenant

TOKEN = "test-auth-token-0123456789abcdef"
ACCOUNT_SID = "AC" + "0" * 32
PRODUCT_NUMBER = "+15550100000"
PROJECT_ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class StandIn:
    def __init__(self, port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
        self.port = port
        self.proc = proc
        self.log = log
        self.url = f"http://127.0.0.1:{port}"

    def messages(self, to: str | None = None) -> list[dict[str, Any]]:
        params = {"to": to} if to else None
        return list(httpx.get(f"{self.url}/sim/sms/messages", params=params, timeout=5).json())

    def script(self, script: dict[str, Any]) -> None:
        httpx.put(f"{self.url}/sim/sms/script", json=script, timeout=5).raise_for_status()

    def reply(self, *, sender: str, to: str, body: str) -> dict[str, Any]:
        answer = httpx.post(
            f"{self.url}/sim/sms/reply", json={"from": sender, "to": to, "body": body}, timeout=15
        )
        answer.raise_for_status()
        return dict(answer.json())


def start_standin(tmp_path: Path, *, inbound_url: str = "", script: dict[str, Any] | None = None) -> StandIn:
    port = free_port()
    script_file = tmp_path / "sms-script.json"
    script_file.write_text(json.dumps(script or {}))
    log = tmp_path / "sms-standin.log"
    with open(log, "ab") as out:
        proc = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            [sys.executable, "-m", "telephony.sim.sms", "--port", str(port), "--auth-token", TOKEN,
             "--inbound-url", inbound_url, "--script", str(script_file), "--status-delay", "0.05"],
            cwd=PROJECT_ROOT, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )  # fmt: skip
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}/sim/sms/messages", timeout=1)
            return StandIn(port, proc, log)
        except httpx.HTTPError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"the SMS stand-in did not start: {log.read_text()}")


@pytest.fixture
def standin(tmp_path: Path) -> Iterator[StandIn]:
    running = start_standin(tmp_path)
    try:
        yield running
    finally:
        running.proc.terminate()
        running.proc.wait(10)


@pytest.fixture
def tenant() -> Tenant:
    return make_tenant()


def twilio_account(tenant: Tenant, **fields: Any) -> SmsAccount:
    return sms_account_create(
        tenant=tenant,
        kind="twilio",
        username=ACCOUNT_SID,
        secret=TOKEN,
        from_numbers=[PRODUCT_NUMBER],
        by_tenant=False,
        **fields,
    )


def sign(url: str, params: dict[str, str], token: str = TOKEN) -> str:
    return str(RequestValidator(token).compute_signature(url, params))


def inbound_params(*, body: str, sender: str = "+15550001111", sid: str = "SM" + "a" * 32) -> dict[str, str]:
    return {
        "AccountSid": ACCOUNT_SID,
        "ApiVersion": "2010-04-01",
        "Body": body,
        "From": sender,
        "MessageSid": sid,
        "NumMedia": "0",
        "NumSegments": "1",
        "SmsMessageSid": sid,
        "SmsSid": sid,
        "SmsStatus": "received",
        "To": PRODUCT_NUMBER,
    }
