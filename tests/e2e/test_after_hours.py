"""After-hours answering and on-call escalation end to end (issue 11), every part a real process: the PBX
simulator (the callers and the on-call people, by its plan), the Stasis app, the real media worker with the
local Realtime stand-in (it "hears" the callers' captioned words and calls ``record_intake`` /
``report_urgent``), Celery workers and beat (durable timers, pages, SMS), the SMS stand-in (the Twilio API
the product's SDK calls; signed status callbacks and replies) and the product's web process (webhooks, the
acknowledgement link).

Outcomes are judged from what really happened: the simulator's record of the calls (originated, rung,
answered, keys, bridged, hung up by whom) and the stand-in's record of the texts it received, as well as
the incidents' timelines in the database.

The processes are started once and shared by the module's tests (booting Django in each costs seconds). The
database is emptied after each test; the Stasis app reads its PBX row only when it starts, so each test
re-creates that row with the same id for its own tenant, and gives the simulator its plan. Every test uses
numbers of its own, so the simulator's and the stand-in's records of one test never mix with another's.
Step waits are shortened by configuration (FLOWS_MIN_STEP_WAIT_S); the sweep runs every SWEEP_S.
"""

from __future__ import annotations

import os
import re
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from datetime import time as dtime
from functools import partial
from typing import Any

import httpx
import pytest
from django.conf import settings

from campaigns.models import Pbx
from campaigns.services.pbx import pbx_create, pbx_place
from flows.models import (
    BusinessHours,
    EscalationPolicy,
    EscalationStep,
    InboundCall,
    InboundFlow,
    Incident,
    IncidentEvent,
    IntakeField,
    OnCallPerson,
    Page,
    PhoneNumber,
)
from messaging.models import Message, OptOut, SmsAccount, WebhookReceipt
from telephony.sim.sms import twilio_signature
from tenants.models import Tenant
from tests.campaigns.factories import make_agent, make_tenant
from tests.conftest import PROJECT_ROOT, database_url
from tests.e2e.stack import PASSWORD_ENV, SIM_APP, SIM_USER, Proc, Stack, free_port, zone_where_it_is
from tests.messaging.conftest import ACCOUNT_SID, PRODUCT_NUMBER, TOKEN, twilio_account

pytestmark = [
    pytest.mark.slow,
    pytest.mark.postgres,
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(180),
]

SWEEP_S = 2.0  # TIMERS_SWEEP_S of the processes: beat's sweep of overdue timers
RING_S = 30  # FLOWS_PAGE_RING_S: how long a page call rings
PBX_ID = 9001  # the simulator's PBX row: its Stasis app serves this id across the module's tests
WEBHOOK_ID = uuid.uuid4()  # every test's SMS account gets it: the stand-in's inbound URL names it
INTAKE = [("name", "Name"), ("callback_number", "Callback number"), ("problem", "Problem")]

Kind = IncidentEvent.Kind


# ----------------------------------------------------------------------------------------- the processes


@dataclass
class Shared:
    stack: Stack
    workers: list[Proc] = field(default_factory=list)

    # ------------------------------------------------------------------------------- what happened
    def logs(self) -> str:
        return self.stack.logs(80)

    def wait(self, predicate: Callable[[], Any], *, what: str, timeout: float = 30) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(0.1)
        raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}\n{self.logs()}")

    def calls(self, number: str | None = None) -> list[dict[str, Any]]:
        """The simulator's record of its calls (to or from ``number``), oldest first."""
        params = {"state": "all", **({"number": number} if number else {})}
        with self.stack.sim() as sim:
            calls = sim.get("/sim/calls", params=params).json()["calls"]
        return sorted(calls, key=lambda c: c["created_at"])

    def call(self, call_id: str) -> dict[str, Any]:
        with self.stack.sim() as sim:
            return dict(sim.get(f"/sim/calls/{call_id}").json())

    def ended(self, call_id: str) -> dict[str, Any] | None:
        """The simulator's record of the call once it ended (None while it lasts)."""
        call = self.call(call_id)
        return call if call["state"] == "ended" else None

    def bridges(self) -> list[dict[str, Any]]:
        with self.stack.sim() as sim:
            return list(sim.get("/ari/bridges").json())

    def texts(self, to: str) -> list[dict[str, Any]]:
        """What the SMS stand-in received for ``to`` (sid, to, from, body, status, time)."""
        answer = httpx.get(f"{self.stack.sms_url}/sim/sms/messages", params={"to": to}, timeout=5)
        return sorted(answer.json(), key=lambda m: m["time"])

    def sms_script(self, script: dict[str, Any]) -> None:
        httpx.put(f"{self.stack.sms_url}/sim/sms/script", json=script, timeout=5).raise_for_status()

    def sms_reply(self, *, sender: str, body: str) -> dict[str, Any]:
        """A person texts the product's number (the stand-in posts it, signed, to the inbound webhook)."""
        answer = httpx.post(
            f"{self.stack.sms_url}/sim/sms/reply",
            json={"from": sender, "to": PRODUCT_NUMBER, "body": body},
            timeout=15,
        )
        answer.raise_for_status()
        return dict(answer.json())

    # ------------------------------------------------------------------------------------- the PBX
    def pbx_for(self, tenant: Tenant, plan: dict[str, Any]) -> Pbx:
        """The simulator follows ``plan``; the PBX row its Stasis app serves (the same id in every test) is
        the tenant's."""
        with self.stack.sim() as sim:
            assert sim.put("/sim/plan", json=plan).status_code == 204
        return pbx_row(tenant, self.stack.ari_url)

    def inbound(
        self,
        *,
        did: str,
        caller: str,
        name: str = "",
        say: str = "",
        at: float = 1.0,
        hangup_after: float = 30,
    ) -> str:
        """A call to ``did`` entering the Stasis app unanswered (as the shipped dialplan); the caller speaks
        ``say`` (captioned: the local agent hears the words) ``at`` s after the app answered."""
        behaviour: dict[str, Any] = {"behaviour": "answer", "after": 0, "hangup_after": hangup_after}
        if say:
            behaviour["say"] = [{"at": at, "text": say, "caption": True}]
        spec = {
            "did": did.lstrip("+"),
            "caller_number": caller,
            "caller_name": name,
            "app": SIM_APP,
            "answered": False,
            "behaviour": behaviour,
        }
        with self.stack.sim() as sim:
            answer = sim.post("/sim/inbound", json=spec)
        assert answer.status_code == 200, answer.text
        return str(answer.json()["call"])

    # --------------------------------------------------------------------------------- workers
    def start_worker(self, name: str) -> Proc:
        proc = self.stack.start_worker(name, concurrency=4)
        self.workers.append(proc)
        return proc

    def wait_ready(self, timeout: float = 90) -> None:
        """The shared processes serve (a loaded machine takes its time to boot Django in each of them)."""

        def web_serves() -> bool:
            try:
                return httpx.get(f"{self.stack.web_url}/ack/nothing", timeout=2).status_code == 404
            except httpx.HTTPError:
                return False

        self.wait(web_serves, what="the web process serving", timeout=timeout)
        for worker in self.workers:
            self.wait(partial(worker_ready, worker), what=f"{worker.name} ready", timeout=timeout)


@pytest.fixture(scope="module")
def shared(
    django_db_setup: None, django_db_blocker: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Shared]:
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="tests.settings",
        PYTHONPATH=os.pathsep.join(filter(None, [str(PROJECT_ROOT), env.get("PYTHONPATH")])),
        REDIS_URL=settings.REDIS_URL,
        DATABASE_URL=database_url(),
        DJANGO_LOG_LEVEL="INFO",
        FLOWS_MIN_STEP_WAIT_S="1",
        TIMERS_SWEEP_S=str(SWEEP_S),
        FLOWS_PAGE_RING_S=str(RING_S),
        ALLOWED_HOSTS="127.0.0.1,localhost",
    )
    stack = Stack(directory=tmp_path_factory.mktemp("after-hours") / "stack", env=env)
    # The web's and the stand-in's addresses are named before anything starts: the product gives the
    # provider status callback URLs on PUBLIC_BASE_URL (and checks signatures over it), and sends through
    # TWILIO_API_BASE.
    web_port, sms_port = free_port(), free_port()
    public = f"http://127.0.0.1:{web_port}"
    stack.env.update(PUBLIC_BASE_URL=public, TWILIO_API_BASE=f"http://127.0.0.1:{sms_port}")
    the = Shared(stack)
    try:
        stack.start_sms_standin(
            auth_token=TOKEN,
            inbound_url=f"{public}/webhooks/sms/twilio/{WEBHOOK_ID}/inbound",
            port=sms_port,
        )
        stack.start_sim({"default": {"behaviour": "busy"}})
        stack.start_realtime(extra=["--reply-ms", "1200", "--speed", "5"])
        stack.start_media_worker()
        # The Stasis app reads its PBX row once, when it starts; each test then owns a row of that id.
        with django_db_blocker.unblock():
            pbx_row(None, stack.ari_url)
        stack.start_stasis(PBX_ID)
        the.start_worker("worker")
        stack.start_beat()
        stack.start_web(port=web_port)
        stack.wait_stasis_connected(timeout=90)
        with django_db_blocker.unblock():
            Pbx.objects.filter(pk=PBX_ID).delete()
        the.wait_ready()
        yield the
    finally:
        stop_all(stack.procs)


def worker_ready(worker: Proc) -> bool:
    return " ready." in worker.tail(400)


def stop_all(procs: list[Proc], timeout: float = 15) -> None:
    """SIGTERM to every process at once, then wait for each (SIGKILL past the timeout)."""
    for proc in procs:
        if proc.alive():
            proc.popen.terminate()
    for proc in procs:
        proc.stop(timeout)


@pytest.fixture
def the(shared: Shared) -> Iterator[Shared]:
    try:
        yield shared
    finally:
        print(shared.logs())  # shown by pytest only when the test failed


# ------------------------------------------------------------------------------------------- the tenant


def pbx_row(tenant: Tenant | None, ari_url: str) -> Pbx:
    """The PBX row of the simulator (id ``PBX_ID``), with ``tenant`` placed on it."""
    Pbx.objects.filter(pk=PBX_ID).delete()
    pbx = pbx_create(
        name="sim", ari_url=ari_url, ari_user=SIM_USER, password_env=PASSWORD_ENV, app_name=SIM_APP,
        endpoint_template="PJSIP/{number}@trunk", max_channels=20, calls_per_second=20,
    )  # fmt: skip
    Pbx.objects.filter(pk=pbx.pk).update(id=PBX_ID)
    pbx = Pbx.objects.get(pk=PBX_ID)
    if tenant is not None:
        pbx_place(pbx=pbx, tenant=tenant)
    return pbx


def sms_account(tenant: Tenant) -> SmsAccount:
    """The tenant's Twilio account (the stand-in's credentials), on the webhook URL the stand-in posts to."""
    account = twilio_account(tenant)
    SmsAccount.objects.filter(pk=account.pk).update(webhook_id=WEBHOOK_ID)
    account.refresh_from_db()
    return account


def person(tenant: Tenant, name: str, phone: str, sms: str = "") -> OnCallPerson:
    return OnCallPerson.objects.create(tenant=tenant, name=name, phone=phone, sms_number=sms)


def flow_on(
    tenant: Tenant,
    did: str,
    steps: list[tuple[OnCallPerson, int, bool, bool]],
    *,
    open_now: bool = False,
    in_hours_action: str = "agent",
    office: str = "",
) -> InboundFlow:
    """An after-hours flow (agent_and_page, intake fields, hours 09:00-17:00 every day in a zone where it is
    now closed, or open with ``open_now``) on the DID, paging by a policy of ``steps`` (person, wait_s,
    call, SMS)."""
    agent = make_agent(
        tenant,
        instructions="You answer the phone for Acme Heating.",
        greeting="Acme Heating, how can I help?",
    )
    policy = EscalationPolicy.objects.create(tenant=tenant, name=f"Night {did}")
    for position, (who, wait_s, call, sms) in enumerate(steps):
        EscalationStep.objects.create(
            policy=policy, position=position, target_kind="person", person=who, wait_s=wait_s,
            notify_call=call, notify_sms=sms,
        )  # fmt: skip
    flow = InboundFlow.objects.create(
        tenant=tenant,
        name=f"Line {did}",
        agent=agent,
        timezone=zone_where_it_is(12 if open_now else 2),
        in_hours_action=in_hours_action,
        office_number=office,
        after_hours_action="agent_and_page",
        escalation_policy=policy,
        business_name="Acme Heating",
    )
    for weekday in range(7):
        BusinessHours.objects.create(flow=flow, weekday=weekday, opens=dtime(9, 0), closes=dtime(17, 0))
    for position, (name, label) in enumerate(INTAKE):
        IntakeField.objects.create(flow=flow, name=name, label=label, required=True, position=position)
    PhoneNumber.objects.create(tenant=tenant, number=did, flow=flow)
    return flow


def urgent_words(name: str, callback: str) -> str:
    return f"My name is {name}, my furnace stopped, this is an emergency, call me back at {callback}"


def when(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


def timeline(incident: Incident) -> list[IncidentEvent]:
    return list(IncidentEvent.objects.filter(incident=incident).order_by("at", "pk"))


def kinds_of(events: list[IncidentEvent], kind: str, **detail: Any) -> list[IncidentEvent]:
    return [e for e in events if e.kind == kind and all(e.detail.get(k) == v for k, v in detail.items())]


def incident_of(the: Shared, call_id: str, timeout: float = 40) -> Incident:
    return the.wait(
        lambda: Incident.objects.filter(inbound_call__channel_id=call_id).first(),
        what="the agent to report the call urgent (an incident)",
        timeout=timeout,
    )


# ------------------------------------------------------------------------------------------ 1. the race

RACE_DID = "+15551230000"
RACE_CALLER = "+19175550100"
RACE_CALLBACK = "+15557001234"
P1_PHONE, P1_SMS = "+15550001001", "+15550001101"  # does not answer, never replies
P2_PHONE, P2_SMS = "+15550001002", "+15550001102"  # does not answer; replies "1" by SMS
RACE_WAIT_S = 8

PLAN: dict[str, Any] = {
    "default": {"behaviour": "busy", "after": 0.1},
    "numbers": {
        P1_PHONE: {"behaviour": "no_answer"},
        P2_PHONE: {"behaviour": "no_answer"},
    },
}


def test_the_race_call_and_text_escalate_and_an_sms_reply_takes_it(the: Shared) -> None:
    tenant = make_tenant(max_concurrent_calls=5)
    account = sms_account(tenant)
    pat = person(tenant, "Pat", P1_PHONE, P1_SMS)
    sam = person(tenant, "Sam", P2_PHONE, P2_SMS)
    flow_on(tenant, RACE_DID, [(pat, RACE_WAIT_S, True, True), (sam, 60, True, True)])
    the.sms_script({P1_SMS: {"never": True}, P2_SMS: {"never": True}})
    the.pbx_for(tenant, PLAN)

    # The caller reaches the agent after hours, gives the details and says it is an emergency.
    call_id = the.inbound(
        did=RACE_DID, caller=RACE_CALLER, name="Ann", say=urgent_words("Ann", RACE_CALLBACK), hangup_after=25
    )
    incident = incident_of(the, call_id)
    inbound = the.wait(
        lambda: InboundCall.objects.filter(channel_id=call_id, intake__callback_number=RACE_CALLBACK).first(),
        what="the intake on the inbound call",
    )
    assert inbound.handling == "agent" and inbound.in_hours is False
    assert inbound.intake["name"] == "Ann" and "furnace" in inbound.intake["problem"], inbound.intake

    # Step 1: Pat is called and texted at the same time (the simulator's and the stand-in's own records).
    [pat_call] = the.wait(lambda: the.calls(P1_PHONE), what="Pat's page call")
    [pat_text] = the.wait(lambda: the.texts(P1_SMS), what="Pat's page SMS")
    assert abs(when(pat_call["created_at"]) - pat_text["time"]) < 1.0, (pat_call["created_at"], pat_text)
    assert incident.short_code in pat_text["body"] and "Reply 1" in pat_text["body"]
    assert f"{the.stack.web_url}/ack/" in pat_text["body"]
    assert pat_call["app_args"][0] == "outbound" and pat_call["state"] in ("dialing", "ringing")

    # Nobody acknowledges: after the step's wait, Sam is called and texted; Pat's phone still rings.
    [sam_call] = the.wait(lambda: the.calls(P2_PHONE), what="Sam's page call", timeout=RACE_WAIT_S + 15)
    [sam_text] = the.wait(lambda: the.texts(P2_SMS), what="Sam's page SMS")
    # From step 1's firing (its deadline's origin): Pat's own originate may have lagged behind it.
    fired = IncidentEvent.objects.get(incident=incident, kind="step_fired", round=0, step=0).at.timestamp()
    late = when(sam_call["created_at"]) - fired
    assert RACE_WAIT_S - 0.1 <= late <= RACE_WAIT_S + SWEEP_S + 1.5, late
    assert abs(when(sam_call["created_at"]) - sam_text["time"]) < 1.0
    assert the.call(pat_call["id"])["state"] == "ringing"

    # Sam replies "1" through the signed webhook.
    reply = the.sms_reply(sender=P2_SMS, body="1")
    assert reply["webhook_status"] == 200
    the.wait(
        lambda: Incident.objects.filter(pk=incident.pk, status="acknowledged").exists(),
        what="the incident acknowledged",
    )
    incident.refresh_from_db()
    assert (incident.acknowledged_by_id, incident.ack_channel) == (sam.pk, "sms")

    # Both ringing page calls are hung up by the product, never answered.
    for ringing in (pat_call, sam_call):
        ended = the.wait(
            partial(the.ended, ringing["id"]),
            what=f"the page call to {ringing['number']} hung up",
        )
        assert ended["ended_by"] == "app" and ended["answered_at"] is None, ended
        assert when(ended["ended_at"]) - when(ringing["created_at"]) < RING_S - 5

    # "Taken by Sam" to Pat, the confirmation to the caller's callback number; Sam gets nothing more.
    taken = the.wait(lambda: the.texts(P1_SMS)[1:], what="the taken SMS to Pat")
    assert [t["body"] for t in taken] == [
        f"Incident {incident.short_code} was taken by Sam. No action needed."
    ]
    [confirm] = the.wait(lambda: the.texts(RACE_CALLBACK), what="the caller's confirmation SMS")
    assert "Sam from Acme Heating has your request" in confirm["body"]
    assert len(the.texts(P2_SMS)) == 1

    # The timeline: complete and in order.
    the.wait(
        lambda: IncidentEvent.objects.filter(incident=incident, kind=Kind.CALL_ENDED).count() == 2,
        what="both page calls' ends on the timeline",
    )
    the.wait(
        lambda: IncidentEvent.objects.filter(incident=incident, kind=Kind.DELIVERED).count() == 4,
        what="the four SMS delivered",
    )
    events = timeline(incident)
    at = {id(e): e.at for e in events}
    assert events[0].kind == Kind.OPENED
    [step1] = [e for e in events if e.kind == Kind.STEP_FIRED and e.step == 0]
    [step2] = [e for e in events if e.kind == Kind.STEP_FIRED and e.step == 1]
    pages = {(p.person_id, p.channel, p.purpose): p for p in Page.objects.filter(incident=incident)}
    person_of = {p.pk: p.person_id for p in pages.values()}
    called = {person_of[e.page_id]: e for e in kinds_of(events, Kind.CALLED) if e.page_id}
    texted = {person_of[e.page_id]: e for e in kinds_of(events, Kind.TEXTED, purpose="page") if e.page_id}
    [replied] = kinds_of(events, Kind.REPLIED)
    [acked] = kinds_of(events, Kind.ACKNOWLEDGED)
    stopped = {e.page_id for e in kinds_of(events, Kind.LEG_STOPPED)}
    [taken_event] = kinds_of(events, Kind.TEXTED, purpose="taken")
    [caller_event] = kinds_of(events, Kind.TEXTED, purpose="caller")
    assert at[id(step1)] <= at[id(called[pat.pk])] and at[id(step1)] <= at[id(texted[pat.pk])]
    assert abs((called[pat.pk].at - texted[pat.pk].at).total_seconds()) < 1.0
    assert max(called[pat.pk].at, texted[pat.pk].at) < step2.at
    assert (step2.at - step1.at).total_seconds() >= RACE_WAIT_S - 0.1
    assert step2.at <= called[sam.pk].at and step2.at <= texted[sam.pk].at
    assert max(called[sam.pk].at, texted[sam.pk].at) <= replied.at <= acked.at
    assert replied.page_id == pages[(sam.pk, "sms", "page")].pk and acked.person_id == sam.pk
    assert {pages[(pat.pk, "call", "page")].pk, pages[(sam.pk, "call", "page")].pk} <= stopped
    assert acked.at <= taken_event.at and acked.at <= caller_event.at
    assert len(kinds_of(events, Kind.DELIVERED)) == 4  # Pat's and Sam's pages, "taken", the confirmation
    assert all(events[0].at <= e.at for e in events)
    # Each leg's own story in order: sent first, then what happened to it.
    for page in pages.values():
        story = [e.kind for e in events if e.page_id == page.pk]
        assert story and story[0] == (Kind.CALLED if page.channel == "call" else Kind.TEXTED), story
        if page.channel == "call":
            assert story[-1] == Kind.CALL_ENDED and Kind.LEG_STOPPED in story, story
        else:
            assert story.index(Kind.DELIVERED) > 0, story

    # The same reply delivered twice by the provider (same MessageSid, signed): it acts once.
    before = [(e.kind, e.page_id) for e in timeline(incident)]
    params = {
        "AccountSid": ACCOUNT_SID, "ApiVersion": "2010-04-01", "Body": "1", "From": P2_SMS,
        "MessageSid": reply["sid"], "NumMedia": "0", "NumSegments": "1", "SmsMessageSid": reply["sid"],
        "SmsSid": reply["sid"], "SmsStatus": "received", "To": PRODUCT_NUMBER,
    }  # fmt: skip
    url = f"{the.stack.web_url}/webhooks/sms/twilio/{account.webhook_id}/inbound"
    again = httpx.post(url, data=params, headers={"X-Twilio-Signature": twilio_signature(TOKEN, url, params)})
    assert again.status_code == 200, again.text
    time.sleep(1.5)
    assert WebhookReceipt.objects.filter(kind="inbound", event_key=reply["sid"]).count() == 1
    assert Message.objects.filter(direction="in", from_number=P2_SMS).count() == 1
    assert [(e.kind, e.page_id) for e in timeline(incident)] == before
    assert len(the.texts(P1_SMS)) == 2 and len(the.texts(P2_SMS)) == 1


# ------------------------------------------------------------------- 2. by key, by link, a decline; STOP

CONNECT_DID, CONNECT_CALLER, CONNECT_CALLBACK = "+15551230001", "+19175550201", "+15557002001"
DEE_PHONE, DEE_SMS = "+15550002001", "+15550002101"  # answers, presses 1, then 1 again (connect)
DECLINE_DID, DECLINE_CALLER, DECLINE_CALLBACK = "+15551230002", "+19175550202", "+15557002002"
DEC_PHONE, DEC_SMS = "+15550002002", "+15550002102"  # answers and presses 2; then texts STOP
LIN_PHONE, LIN_SMS = "+15550002003", "+15550002103"  # answers, no key; accepts and connects by link

ACK_PLAN: dict[str, Any] = {
    "default": {"behaviour": "busy", "after": 0.1},
    "numbers": {
        DEE_PHONE: {
            "behaviour": "answer",
            "after": 0.5,
            "dtmf": [{"at": 3.0, "digits": "1"}, {"at": 6.0, "digits": "1"}],
            "hangup_after": 16,
        },
        CONNECT_CALLBACK: {"behaviour": "answer", "after": 0.5, "say": [{"at": 0.5, "text": "Hello?"}]},
        DEC_PHONE: {
            "behaviour": "answer",
            "after": 0.5,
            "dtmf": [{"at": 3.0, "digits": "2"}],
            "hangup_after": 12,
        },
        LIN_PHONE: {"behaviour": "answer", "after": 1.0, "hangup_after": 25},
        DECLINE_CALLBACK: {"behaviour": "answer", "after": 0.5, "say": [{"at": 0.5, "text": "Hello?"}]},
    },
}


def test_acknowledge_by_key_and_connect_by_link_and_a_decline_moves_on_at_once(the: Shared) -> None:
    tenant = make_tenant(max_concurrent_calls=8)
    account = sms_account(tenant)
    dee = person(tenant, "Dee", DEE_PHONE, DEE_SMS)
    dec = person(tenant, "Dec", DEC_PHONE, DEC_SMS)
    lin = person(tenant, "Lin", LIN_PHONE, LIN_SMS)
    flow_on(tenant, CONNECT_DID, [(dee, 60, True, True)])
    flow_on(tenant, DECLINE_DID, [(dec, 60, True, True), (lin, 60, True, True)])
    the.sms_script({DEE_SMS: {"never": True}, DEC_SMS: {"never": True}, LIN_SMS: {"never": True}})
    the.pbx_for(tenant, ACK_PLAN)

    connect_call = the.inbound(
        did=CONNECT_DID, caller=CONNECT_CALLER, say=urgent_words("Cy", CONNECT_CALLBACK), hangup_after=12
    )
    decline_call = the.inbound(
        did=DECLINE_DID, caller=DECLINE_CALLER, say=urgent_words("Di", DECLINE_CALLBACK), hangup_after=12
    )
    connected = incident_of(the, connect_call)
    declined = incident_of(the, decline_call)

    # --- By key: Dee answers (the notification is spoken to her), presses 1 (accepted), then 1 (connect):
    # the product calls the caller back and bridges both legs.
    the.wait(
        lambda: Incident.objects.filter(pk=connected.pk, ack_choice="connect").exists(),
        what="Dee's acceptance and choice by key",
        timeout=30,
    )
    connected.refresh_from_db()
    assert (connected.acknowledged_by_id, connected.ack_channel) == (dee.pk, "call")
    [dee_call] = the.calls(DEE_PHONE)
    page_call_id = Page.objects.get(incident=connected, person=dee, channel="call").call_id
    assert page_call_id and dee_call["id"] == page_call_id and dee_call["answered_at"] is not None
    xfer = f"xfer-{page_call_id}"
    bridge = the.wait(
        lambda: next((b for b in the.bridges() if {page_call_id, xfer} <= set(b["channels"])), None),
        what="Dee bridged with the caller's callback leg",
    )
    callback_leg = the.call(xfer)
    assert callback_leg["number"] == CONNECT_CALLBACK and callback_leg["answered_at"] is not None, (
        callback_leg
    )
    assert [d["digit"] for d in the.call(page_call_id)["dtmf_sent"]] == ["1", "1"]
    assert the.call(page_call_id)["heard"]["heard_ms"] > 0, "Dee heard the spoken notification"
    assert len(bridge["channels"]) == 2, bridge  # the person and the caller, the agent's media leg gone
    the.wait(
        lambda: IncidentEvent.objects.filter(incident=connected, kind=Kind.CONNECTED).exists(),
        what="connected on the timeline",
    )
    kinds = [e.kind for e in timeline(connected)]
    for expected in (Kind.PRESSED, Kind.ACKNOWLEDGED, Kind.CHOSE, Kind.CONNECTED):
        assert expected in kinds, kinds
    assert kinds.index(Kind.ACKNOWLEDGED) < kinds.index(Kind.CHOSE) < kinds.index(Kind.CONNECTED)
    [confirm] = the.wait(lambda: the.texts(CONNECT_CALLBACK), what="the connected caller's confirmation")
    assert "Dee from Acme Heating" in confirm["body"]
    assert len(the.texts(DEE_SMS)) == 1  # her page; she took it: no "taken" text

    # --- A decline: Dec presses 2; the next step (Lin) fires at once, not after the 60 s wait.
    the.wait(lambda: the.texts(LIN_SMS), what="Lin paged after Dec's decline", timeout=30)
    [dec_call] = the.calls(DEC_PHONE)
    [lin_call] = the.wait(lambda: the.calls(LIN_PHONE), what="Lin's page call")
    [key] = dec_call["dtmf_sent"]
    assert key["digit"] == "2"
    pressed_at = when(dec_call["answered_at"]) + key["at"]
    assert when(lin_call["created_at"]) - pressed_at < 5.0  # the step after at once, not 60 s later
    events = timeline(declined)
    [declined_event] = kinds_of(events, Kind.DECLINED)
    [step2] = [e for e in events if e.kind == Kind.STEP_FIRED and e.step == 1]
    assert 0 <= (step2.at - declined_event.at).total_seconds() < 5.0

    # Dec texts STOP: later texts to Dec are blocked (the "taken" one below).
    assert the.sms_reply(sender=DEC_SMS, body="STOP")["webhook_status"] == 200
    the.wait(
        lambda: OptOut.objects.filter(tenant=tenant, phone_number=DEC_SMS).exists(), what="Dec's opt-out"
    )
    dec_texts = len(the.texts(DEC_SMS))

    # A reply "1" from Lin's number with a bad signature: refused, and nothing changes.
    url = f"{the.stack.web_url}/webhooks/sms/twilio/{account.webhook_id}/inbound"
    forged = {"AccountSid": ACCOUNT_SID, "Body": "1", "From": LIN_SMS, "MessageSid": "SM" + "f" * 32,
              "SmsStatus": "received", "To": PRODUCT_NUMBER}  # fmt: skip
    signature = twilio_signature("not-the-auth-token", url, forged)
    refused = httpx.post(url, data=forged, headers={"X-Twilio-Signature": signature}, timeout=10)
    assert refused.status_code == 403
    time.sleep(1.0)
    assert not WebhookReceipt.objects.filter(event_key=forged["MessageSid"]).exists()
    assert not Message.objects.filter(direction="in", from_number=LIN_SMS).exists()
    assert Incident.objects.get(pk=declined.pk).status == "open"

    # Lin answered her page call, but an answered call is no acknowledgement (voicemail answers too).
    assert the.call(lin_call["id"])["answered_at"] is not None
    assert Incident.objects.get(pk=declined.pk).status == "open"

    # --- By link: Lin opens the link of the SMS the stand-in received (GET changes nothing), then accepts.
    [lin_text] = the.texts(LIN_SMS)
    link = re.search(r"(http://\S+/ack/\S+)", lin_text["body"])
    assert link, lin_text
    page = httpx.get(link.group(1), timeout=10)
    assert page.status_code == 200 and 'value="accept"' in page.text
    assert Incident.objects.get(pk=declined.pk).status == "open"
    accepted = httpx.post(link.group(1), data={"action": "accept"}, timeout=10)
    assert accepted.status_code == 200 and "Done." in accepted.text, accepted.text
    declined.refresh_from_db()
    assert (declined.status, declined.acknowledged_by_id, declined.ack_channel) == (
        "acknowledged",
        lin.pk,
        "link",
    )

    # Lin's page call is hung up; the caller is confirmed; the "taken" text to Dec is blocked (STOP).
    ended = the.wait(partial(the.ended, lin_call["id"]), what="Lin's page call hung up")
    assert ended["ended_by"] == "app", ended
    [confirm] = the.wait(lambda: the.texts(DECLINE_CALLBACK), what="the caller's confirmation")
    assert "Lin from Acme Heating" in confirm["body"]
    taken = the.wait(
        lambda: Message.objects.filter(to_number=DEC_SMS, purpose="flows.taken").first(),
        what="the taken text to Dec",
    )
    time.sleep(1.0)
    taken.refresh_from_db()
    assert taken.status == "blocked", taken.status
    assert len(the.texts(DEC_SMS)) == dec_texts == 1

    # Then she chooses by link to be connected now: the product calls her, then bridges her with the caller.
    connect = httpx.post(link.group(1), data={"action": "connect"}, timeout=10)
    assert connect.status_code == 200 and "Done." in connect.text, connect.text
    leg = the.wait(
        lambda: Page.objects.filter(incident=declined, purpose="connect", call_id__isnull=False).first(),
        what="the call to Lin to connect her",
    )
    leg_id = str(leg.call_id)
    the.wait(
        lambda: next((b for b in the.bridges() if {leg_id, f"xfer-{leg_id}"} <= set(b["channels"])), None),
        what="Lin bridged with the caller's callback leg",
    )
    assert the.call(leg_id)["number"] == LIN_PHONE
    assert the.call(f"xfer-{leg_id}")["number"] == DECLINE_CALLBACK
    the.wait(
        lambda: IncidentEvent.objects.filter(incident=declined, kind=Kind.CONNECTED).exists(),
        what="connected on the timeline",
    )


# --------------------------------------------------------------------- 3. business hours and the cap

HOURS_DID = "+15551230003"
OFFICE = "+15550003000"
IN_HOURS_CALLER, OVER_CAP_CALLER, AFTER_HOURS_CALLER = "+19175550301", "+19175550302", "+19175550303"
REFUSAL = "sound:all-circuits-busy-now"

HOURS_PLAN: dict[str, Any] = {
    "default": {"behaviour": "busy", "after": 0.1},
    "numbers": {OFFICE: {"behaviour": "answer", "after": 0.5, "say": [{"at": 0.3, "text": "Acme office."}]}},
}


def test_business_hours_and_after_hours_on_one_number_and_a_call_over_the_cap(the: Shared) -> None:
    tenant = make_tenant(max_concurrent_calls=1)
    sms_account(tenant)
    nobody = person(tenant, "Nobody", "+15550003999")
    flow = flow_on(
        tenant,
        HOURS_DID,
        [(nobody, 60, False, True)],
        open_now=True,
        in_hours_action="transfer",
        office=OFFICE,
    )
    InboundFlow.objects.filter(pk=flow.pk).update(refusal_message=REFUSAL)
    the.pbx_for(tenant, HOURS_PLAN)

    # In business hours: the caller is put through to the office line.
    first = the.inbound(did=HOURS_DID, caller=IN_HOURS_CALLER, hangup_after=60)
    [office] = the.wait(
        lambda: [c for c in the.calls(OFFICE) if c["answered_at"]], what="the office line answering"
    )
    the.wait(
        lambda: next((b for b in the.bridges() if {first, office["id"]} <= set(b["channels"])), None),
        what="the caller bridged with the office",
    )
    call = InboundCall.objects.get(channel_id=first)
    assert (call.in_hours, call.handling, call.transferred_to) == (True, "transferred", OFFICE)

    # Over the tenant's cap (1, held by that call): refused politely, a playback then the hang-up.
    second = the.inbound(did=HOURS_DID, caller=OVER_CAP_CALLER, hangup_after=60)
    refused = the.wait(partial(the.ended, second), what="the call over the cap hung up")
    assert refused["playbacks"] == [REFUSAL] and refused["ended_by"] == "app", refused
    assert refused["said"] == [] and refused["media"] == []  # never reached the agent
    over = InboundCall.objects.get(channel_id=second)
    assert (over.handling, over.message) == ("refused_over_cap", REFUSAL)
    assert the.call(first)["state"] == "up"

    # The caller hangs up; now it is night there (the flow's zone moved around the real clock).
    with the.stack.sim() as sim:
        assert sim.post(f"/sim/calls/{first}/hangup", json={}).status_code == 200
    the.wait(
        lambda: InboundCall.objects.filter(channel_id=first, status="ended").exists(),
        what="the first call's end",
    )
    InboundFlow.objects.filter(pk=flow.pk).update(timezone=zone_where_it_is(2))
    third = the.inbound(did=HOURS_DID, caller=AFTER_HOURS_CALLER, hangup_after=6)
    ended = the.wait(partial(the.ended, third), what="the after-hours call", timeout=30)
    assert ended["heard"]["heard_ms"] > 0 and ended["media"], "the agent answered"
    after = InboundCall.objects.get(channel_id=third)
    assert (after.in_hours, after.handling, after.transferred_to) == (False, "agent", "")
    assert len(the.calls(OFFICE)) == 1  # no transfer after hours


# ------------------------------------------------------------------ 4. a worker killed between steps

KILL_DID, KILL_CALLER, KILL_CALLBACK = "+15551230004", "+19175550401", "+15557004001"
K1_PHONE, K1_SMS = "+15550004001", "+15550004101"
K2_PHONE, K2_SMS = "+15550004002", "+15550004102"
KILL_WAIT_S = 15

KILL_PLAN: dict[str, Any] = {
    "default": {"behaviour": "busy", "after": 0.1},
    "numbers": {K1_PHONE: {"behaviour": "no_answer"}, K2_PHONE: {"behaviour": "no_answer"}},
}


def test_a_worker_killed_between_two_steps_the_next_still_fires_once_by_the_sweep(the: Shared) -> None:
    tenant = make_tenant(max_concurrent_calls=5)
    sms_account(tenant)
    kim = person(tenant, "Kim", K1_PHONE, K1_SMS)
    kai = person(tenant, "Kai", K2_PHONE, K2_SMS)
    flow_on(tenant, KILL_DID, [(kim, KILL_WAIT_S, True, True), (kai, 60, True, True)])
    the.sms_script({K1_SMS: {"never": True}, K2_SMS: {"never": True}})
    the.pbx_for(tenant, KILL_PLAN)

    call_id = the.inbound(
        did=KILL_DID, caller=KILL_CALLER, say=urgent_words("Kit", KILL_CALLBACK), hangup_after=15
    )
    incident = incident_of(the, call_id)
    the.wait(lambda: the.texts(K1_SMS) and the.calls(K1_PHONE), what="step 1 (Kim called and texted)")
    the.wait(
        lambda: Message.objects.filter(to_number=K1_SMS, status="delivered").exists(),
        what="Kim's SMS delivered",
    )
    step1 = IncidentEvent.objects.get(incident=incident, kind=Kind.STEP_FIRED, step=0)

    # Every worker dies (the countdown message of step 2 held by it is lost with it); a new one starts.
    for worker in the.workers:
        worker.kill9()
    replacement = the.start_worker(f"worker{len(the.workers) + 1}")
    the.wait(lambda: " ready." in replacement.tail(200), what="the replacement worker", timeout=KILL_WAIT_S)

    [kai_text] = the.wait(lambda: the.texts(K2_SMS), what="step 2 (Kai texted)", timeout=KILL_WAIT_S + 20)
    [step2] = IncidentEvent.objects.filter(incident=incident, kind=Kind.STEP_FIRED, step=1)
    due = datetime.fromisoformat(step2.detail["due_at"])
    assert abs((due - step1.at).total_seconds() - KILL_WAIT_S) < 0.5
    late = (step2.at - due).total_seconds()
    assert 0 <= late <= SWEEP_S + 1.5, late
    assert kai_text["time"] - due.timestamp() <= SWEEP_S + 2.5

    # Exactly once: one step_fired row, one text and one call to Kai, even after the sweeps that follow.
    time.sleep(SWEEP_S * 2 + 1)
    assert IncidentEvent.objects.filter(incident=incident, kind=Kind.STEP_FIRED, step=1).count() == 1
    assert len(the.texts(K2_SMS)) == 1
    assert len(the.calls(K2_PHONE)) == 1
    assert Page.objects.filter(incident=incident, person=kai, purpose="page").count() == 2
