"""The after-hours demo: ``seed_demo`` also seeds the after-hours line (idempotently), and
``place_inbound_call`` asks a real simulator process to place an inbound call that reaches the Stasis app
with the DID."""

from __future__ import annotations

import asyncio
import io
import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import pytest
from django.core.management import CommandError, call_command

from campaigns.models import Pbx
from campaigns.services.pbx import pbx_create
from flows.management.commands.place_inbound_call import inbound_request
from flows.management.commands.seed_after_hours import DID, PEOPLE, STEP_WAIT_S
from flows.models import (
    BusinessHours,
    EscalationPolicy,
    EscalationStep,
    InboundFlow,
    IntakeField,
    OnCallPerson,
    PhoneNumber,
    Rotation,
    RotationMember,
)
from tenants.models import Tenant
from tests.flows.test_api import snapshot

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]
SIM_USER = "asterisk"
SIM_PASSWORD = "demo-test-sim"  # noqa: S105 - a throwaway credential of a local test simulator
APP = "ai_agent"


def _seed(*args: str) -> str:
    out = io.StringIO()
    call_command("seed_demo", *args, stdout=out)
    return out.getvalue()


def _rows() -> dict[str, Any]:
    rows: dict[str, Any] = dict(snapshot())
    rows["BusinessHours"] = list(BusinessHours.objects.order_by("pk").values())
    rows["RotationMember"] = list(RotationMember.objects.order_by("pk").values())
    return rows


def test_seed_demo_seeds_the_after_hours_line_once(settings):
    settings.PHONE_TEST_PREFIXES = ["+1555"]
    settings.FLOWS_MIN_STEP_WAIT_S = 30
    first = _seed()
    rows = _rows()
    second = _seed()
    assert _rows() == rows  # idempotent
    assert "created inbound flow" in first and "created inbound flow" not in second
    assert "place_inbound_call --did +15550170000 --from +15550179999" in second

    tenant = Tenant.objects.get(slug="demo")
    assert tenant.inbound_reserve == 2
    number = PhoneNumber.objects.get(number=DID)
    flow = number.flow
    assert flow is not None and (number.tenant, flow.tenant) == (tenant, tenant)
    assert not flow.business_hours.exists()  # always after hours
    assert flow.after_hours_action == InboundFlow.AfterHoursAction.AGENT_AND_PAGE
    assert list(IntakeField.objects.filter(flow=flow).values_list("name", flat=True)) == [
        "name",
        "callback_number",
        "address",
        "problem",
        "urgency",
    ]
    policy = flow.escalation_policy
    assert isinstance(policy, EscalationPolicy) and policy.fallback_callback
    steps = list(EscalationStep.objects.filter(policy=policy).order_by("position"))
    assert [(s.person.phone if s.person else "", s.wait_s, s.notify_call, s.notify_sms) for s in steps] == [
        (number, STEP_WAIT_S, True, True) for _, number in PEOPLE
    ]
    rotation = Rotation.objects.get(tenant=tenant)
    members = [m.person.phone for m in rotation.members.order_by("position")]
    assert members == [number for _, number in PEOPLE]
    assert OnCallPerson.objects.filter(tenant=tenant).count() == 4


def test_office_hours_can_be_set(settings):
    settings.PHONE_TEST_PREFIXES = ["+1555"]
    _seed()
    out = io.StringIO()
    call_command("seed_after_hours", "--office-hours", "09:00-17:00", stdout=out)
    flow = InboundFlow.objects.get(tenant__slug="demo")
    assert sorted(flow.business_hours.values_list("weekday", flat=True)) == [0, 1, 2, 3, 4]
    with pytest.raises(CommandError, match="HH:MM-HH:MM"):
        call_command("seed_after_hours", "--office-hours", "nine to five", stdout=out)
    with pytest.raises(CommandError, match="closes"):
        call_command("seed_after_hours", "--office-hours", "17:00-09:00", stdout=out)


def test_seed_after_hours_needs_the_demo_tenant(settings):
    settings.PHONE_TEST_PREFIXES = ["+1555"]
    with pytest.raises(CommandError, match="seed_demo"):
        call_command("seed_after_hours", stdout=io.StringIO())


# --------------------------------------------------------------------------------- place_inbound_call


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def simulator(tmp_path: Path) -> Iterator[str]:
    """A PBX simulator process (the product's own, as `make run` starts it), its URL."""
    port = _free_port()
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"default": {"behaviour": "answer", "after": 0}}))
    log = (tmp_path / "sim.log").open("w")
    proc = subprocess.Popen(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "telephony.sim", "--host", "127.0.0.1", "--port", str(port),
         "--ari-user", SIM_USER, "--ari-password", SIM_PASSWORD, "--plan", str(plan),
         "--log-level", "WARNING"],
        cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(f"{url}/ari/asterisk/ping", auth=(SIM_USER, SIM_PASSWORD), timeout=1).is_success:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"the simulator did not start: {(tmp_path / 'sim.log').read_text()}")
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


class StasisListener:
    """A Stasis app connected to the simulator's events websocket, in a thread of its own, collecting the
    StasisStart events it receives."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.events: list[dict[str, Any]] = []
        self.connected = threading.Event()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    async def _run(self) -> None:
        ws_url = self.url.replace("http://", "ws://") + f"/ari/events?app={APP}"
        headers = {"Authorization": aiohttp.encode_basic_auth(SIM_USER, SIM_PASSWORD)}
        async with aiohttp.ClientSession(headers=headers) as session, session.ws_connect(ws_url) as ws:
            self.connected.set()
            while not self.stop.is_set():
                try:
                    message = await ws.receive(timeout=0.2)
                except TimeoutError:
                    continue
                if message.type != aiohttp.WSMsgType.TEXT:
                    break
                event = json.loads(message.data)
                if event.get("type") == "StasisStart":
                    self.events.append(event)

    def __enter__(self) -> StasisListener:
        self.thread.start()
        assert self.connected.wait(10), "no events websocket"
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(10)


def _demo_pbx(url: str, monkeypatch: pytest.MonkeyPatch) -> Pbx:
    monkeypatch.setenv("TEST_SIM_ARI_PASSWORD", SIM_PASSWORD)
    return pbx_create(
        name="demo-sim",
        ari_url=url + "/",
        ari_user=SIM_USER,
        password_env="TEST_SIM_ARI_PASSWORD",
        app_name=APP,
        endpoint_template="PJSIP/{number}@trunk",
    )


def test_place_inbound_call_reaches_the_stasis_app_with_the_did(simulator, settings, monkeypatch):
    settings.PHONE_TEST_PREFIXES = ["+1555"]
    _demo_pbx(simulator, monkeypatch)
    out = io.StringIO()
    with StasisListener(simulator) as app:
        call_command(
            "place_inbound_call",
            "--did",
            "+15550170000",
            "--from",
            "+1 555 017 9999",
            "--name",
            "Alex",
            "--say",
            "It is an emergency, the furnace is out.",
            stdout=out,
        )
        deadline = time.monotonic() + 10
        while not app.events and time.monotonic() < deadline:
            time.sleep(0.05)
    text = out.getvalue()
    assert "is no tenant's number: the call will be refused" in text
    call_id = text.split("inbound call ", 1)[1].split()[0]
    assert [event["args"] for event in app.events] == [["inbound", "+15550170000"]]
    channel = app.events[0]["channel"]
    assert channel["id"] == call_id and channel["caller"] == {"name": "Alex", "number": "+15550179999"}
    call = httpx.get(f"{simulator}/sim/calls/{call_id}", auth=(SIM_USER, SIM_PASSWORD), timeout=5).json()
    assert (call["direction"], call["number"], call["app"]) == ("inbound", "+15550179999", APP)


def test_place_inbound_call_says_what_went_wrong(simulator, settings, monkeypatch):
    settings.PHONE_TEST_PREFIXES = ["+1555"]
    with pytest.raises(CommandError, match="seed_demo"):
        call_command("place_inbound_call", "--did", "+15550170000", "--from", "+15550179999")
    pbx = _demo_pbx(simulator, monkeypatch)
    with pytest.raises(CommandError, match="--from"):
        call_command("place_inbound_call", "--did", "+15550170000", "--from", "nobody")
    # A wrong password: the simulator refuses (401), and the command says so.
    monkeypatch.setenv("TEST_SIM_ARI_PASSWORD", "wrong")
    with pytest.raises(CommandError, match="refused the call \\(401\\)"):
        call_command("place_inbound_call", "--did", "+15550170000", "--from", "+15550179999")
    Pbx.objects.filter(pk=pbx.pk).update(ari_url=f"http://127.0.0.1:{_free_port()}/")
    with pytest.raises(CommandError, match="did not answer"):
        call_command("place_inbound_call", "--did", "+15550170000", "--from", "+15550179999")


def test_the_request_body_scripts_the_caller_only_when_asked():
    plain = inbound_request(did="+1", caller="+2", app="a")
    assert "behaviour" not in plain
    assert plain["answered"] is False  # as the shipped dialplan: the flow decides whether to answer
    body = inbound_request(did="+1", caller="+2", app="a", say="Help", say_at=3, hangup_after=30)
    assert body["behaviour"] == {
        "behaviour": "answer",
        "after": 0,
        "say": [{"at": 3, "text": "Help", "caption": True}],
        "hangup_after": 30,
    }
