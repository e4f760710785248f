"""Fixtures of the flows tests: a tenant with a PBX, a DID routed to an after-hours flow, three on-call
people in a weekly rotation and a two-step policy; stand-ins for the PBX's ARI client and for messaging.

The side effects run inline: ``flows.services.outbox.send`` runs the page tasks' services at once (after
the commit, as the Celery worker would), the timers' countdown messages are recorded and never sent (the
tests fire timers with a controlled clock, through ``timers_sweep(now=...)``, exactly as the beat sweep does).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import date, time
from typing import Any

import pytest

from flows.models import (
    BusinessHours,
    EscalationPolicy,
    EscalationStep,
    Holiday,
    InboundFlow,
    IntakeField,
    OnCallPerson,
    PhoneNumber,
    Rotation,
    RotationMember,
)
from flows.services import outbox, pages
from tests.campaigns.factories import make_agent, make_pbx, make_tenant
from timers import services as timer_services

DID = "+15551230000"
_ids = itertools.count(1)


class FakeAri:
    """The PBX's ARI client as flows use it: originate, get_channel, hangup (recorded)."""

    def __init__(self) -> None:
        self.originated: list[dict[str, Any]] = []
        self.hung_up: list[str] = []
        self.channels: set[str] = set()

    def originate(self, **kwargs: Any) -> Any:
        self.originated.append(kwargs)
        self.channels.add(kwargs["channel_id"])
        return type("R", (), {"placed": True, "already": False, "channel": {"id": kwargs["channel_id"]}})()

    def get_channel(self, channel_id: str) -> dict[str, Any] | None:
        return {"id": channel_id} if channel_id in self.channels else None

    def hangup(self, channel_id: str, *, reason: str = "normal") -> bool:
        self.hung_up.append(channel_id)
        return channel_id in self.channels


@dataclass
class StubMessage:
    """Stand-in for ``messaging.models.Message`` (contract 5) until the messaging app is merged: only the
    fields the flows read."""

    pk: int
    tenant_id: int
    to_number: str = ""
    from_number: str = ""
    body: str = ""
    status: str = "queued"
    ref: str = ""
    purpose: str = ""
    error_code: str = ""
    error_message: str = ""
    created_at: Any = None
    delivered_at: Any = None
    updated_at: Any = None


@dataclass
class Outside:
    ari: FakeAri = field(default_factory=FakeAri)
    sms: list[StubMessage] = field(default_factory=list)
    sms_down: bool = False
    sent_tasks: list[tuple[str, tuple[Any, ...]]] = field(default_factory=list)
    timer_messages: list[tuple[Any, ...]] = field(default_factory=list)

    def texts_to(self, number: str) -> list[str]:
        return [m.body for m in self.sms if m.to_number == number]


@pytest.fixture
def outside(monkeypatch: pytest.MonkeyPatch) -> Outside:
    world = Outside()

    # STAND-IN for messaging.services.message_send (contract 5), test-only: the messaging app is built in
    # parallel; the lead's integration test runs the real one.
    def message_send(*, tenant_id: int, to: str, text: str, purpose: str, ref: str) -> StubMessage:
        if world.sms_down:
            from flows.services.sms import SmsUnavailable  # noqa: PLC0415

            raise SmsUnavailable("provider outage")
        message = StubMessage(next(_ids), tenant_id, to_number=to, body=text, ref=ref, purpose=purpose)
        world.sms.append(message)
        return message

    monkeypatch.setattr(pages, "sms_send", message_send)
    monkeypatch.setattr(pages, "pbx_ari_client", lambda *, pbx: world.ari)

    def send(name: str, args: tuple[Any, ...], countdown: float = 0.0) -> None:
        world.sent_tasks.append((name, args))
        if name == outbox.PAGE_SEND:
            pages.page_send(page_id=args[0])
        elif name == outbox.PAGE_HANGUP:
            pages.page_hangup(page_id=args[0])

    monkeypatch.setattr(outbox, "send", send)
    monkeypatch.setattr(timer_services, "send_fire", lambda *args: world.timer_messages.append(args))
    return world


@dataclass
class Setup:
    tenant: Any
    pbx: Any
    flow: InboundFlow
    number: PhoneNumber
    policy: EscalationPolicy
    rotation: Rotation
    alice: OnCallPerson
    bob: OnCallPerson
    carol: OnCallPerson
    manager: OnCallPerson


@pytest.fixture
def setup(outside: Outside) -> Setup:
    tenant = make_tenant(max_concurrent_calls=3, default_timezone="America/New_York")
    pbx = make_pbx(tenant)
    agent = make_agent(tenant, instructions="You answer for Acme Heating.", greeting="Acme Heating, hello.")
    alice = OnCallPerson.objects.create(tenant=tenant, name="Alice", phone="+15550000001")
    bob = OnCallPerson.objects.create(
        tenant=tenant, name="Bob", phone="+15550000002", sms_number="+15550000012"
    )
    carol = OnCallPerson.objects.create(tenant=tenant, name="Carol", phone="+15550000003")
    manager = OnCallPerson.objects.create(tenant=tenant, name="Manager", phone="+15550000009")
    rotation = Rotation.objects.create(
        tenant=tenant,
        name="Techs",
        handoff="weekly",
        handoff_weekday=0,
        handoff_time=time(9, 0),
        start_date=date(2026, 1, 5),
        timezone="America/New_York",
    )
    for position, person in enumerate([bob, carol, alice]):
        RotationMember.objects.create(rotation=rotation, person=person, position=position)
    policy = EscalationPolicy.objects.create(tenant=tenant, name="Night", repeat=1, fallback_callback=True)
    policy.fallback_people.add(manager)
    EscalationStep.objects.create(policy=policy, position=0, target_kind="person", person=alice, wait_s=120)
    EscalationStep.objects.create(
        policy=policy, position=1, target_kind="rotation", rotation=rotation, wait_s=120
    )
    flow = InboundFlow.objects.create(
        tenant=tenant,
        name="Main line",
        agent=agent,
        in_hours_action="transfer",
        office_number="+15550009999",
        after_hours_action="agent_and_page",
        escalation_policy=policy,
        business_name="Acme Heating",
    )
    for weekday in range(5):
        BusinessHours.objects.create(flow=flow, weekday=weekday, opens=time(9, 0), closes=time(17, 0))
    Holiday.objects.create(flow=flow, date=date(2026, 12, 25), name="Christmas")
    for position, (name, label, required) in enumerate(
        [("name", "Name", True), ("callback_number", "Callback number", True), ("problem", "Problem", True)]
    ):
        IntakeField.objects.create(flow=flow, name=name, label=label, required=required, position=position)
    number = PhoneNumber.objects.create(tenant=tenant, number=DID, flow=flow)
    return Setup(tenant, pbx, flow, number, policy, rotation, alice, bob, carol, manager)
