"""``manage.py seed_after_hours``: the after-hours answering demo (``seed_demo`` runs it after its own part).

On the demo tenant (``demo``, made by ``seed_demo``, which keeps 2 of its 5 calls for inbound calls), as
the after-hours line of "Acme Heating & Cooling":

* its number +15550170000, routed to the flow "After hours": no business hours by default, so every call is
  after hours (``--office-hours 09:00-17:00`` sets Monday-Friday hours instead; in hours the agent answers
  without paging). The agent takes the intake (name, callback_number, address, problem, urgency) and, when
  the caller says it is urgent, opens an incident;
* three on-call technicians in a daily rotation "Technicians", scripted by the simulator's demo plan
  (deploy/sim-plan.yaml for their phones, deploy/sim-sms.yaml for their texts): Pat (+15550170001) never
  answers, Sam (+15550170002) answers and declines with key 2, Jo (+15550170003) does not pick up but
  replies "1" by SMS 40 s after the text; and a manager, Morgan (+15550170009), texted as the fallback;
* the policy "Night escalation": Pat, then Sam, then Jo, by call and SMS at the same time, 120 s each;
  then the fallback (Morgan texted, the caller called back at the next opening).

The steps name the people one by one so the demo plays the same every day; the rotation is there to show
``GET /api/v1/oncall/now`` (a step can target it instead: ``{"target_kind": "rotation"}``).

Idempotent: what exists is left as it is (only ``--office-hours`` changes the flow's hours when given).
"""

from __future__ import annotations

import uuid
from datetime import date
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from campaigns.models import AgentProfile
from campaigns.phone import normalize_phone_number
from campaigns.services.agents import agent_profile_create
from flows.models import EscalationPolicy, InboundFlow, OnCallPerson, PhoneNumber, Rotation
from flows.services.setup import inbound_flow_create, inbound_flow_update, phone_number_create
from flows.services.setup_oncall import escalation_policy_create, oncall_person_create, rotation_create
from messaging.models import SmsAccount
from messaging.services.accounts import sms_account_create
from orchestrator.errors import InvalidInput
from tenants.models import Tenant

SLUG = "demo"  # seed_demo's tenant
BUSINESS_NAME = "Acme Heating & Cooling"
TIMEZONE = "America/New_York"
DID = "+15550170000"
CALLER = "+15550179999"  # scripted in deploy/sim-plan.yaml: reports an emergency
AGENT_NAME = "After-hours agent"
FLOW_NAME = "After hours"
ROTATION_NAME = "Technicians"
POLICY_NAME = "Night escalation"
STEP_WAIT_S = 120
PEOPLE = (
    ("Pat Lee", "+15550170001"),  # never answers, never replies
    ("Sam Ortiz", "+15550170002"),  # answers and declines (key 2)
    ("Jo Kim", "+15550170003"),  # replies "1" by SMS after 40 s
)
MANAGER = ("Morgan Diaz", "+15550170009")
INTAKE = [
    {"name": "name", "label": "Caller's name", "required": True},
    {"name": "callback_number", "label": "Callback number", "required": True},
    {"name": "address", "label": "Service address", "required": True},
    {"name": "problem", "label": "What is wrong", "required": True},
    {"name": "urgency", "label": "Urgent or can it wait until morning", "required": False},
]
INSTRUCTIONS = (
    "You answer the phone for Acme Heating & Cooling outside office hours. Be calm and brief. Collect the "
    "caller's name, a callback number, the service address, what is wrong and whether it is urgent, and "
    "record them with the record_intake tool. If there is no heat in freezing weather, a gas smell, water "
    "leaking or anything unsafe, call report_urgent with a one-line summary and tell the caller that the "
    "on-call technician is being contacted. Otherwise tell them the office will call back in the morning."
)
GREETING = "Acme Heating and Cooling, after-hours line. How can I help you?"
# The demo's SMS goes to the local SMS stand-in that `make run` starts (manage.py runlocal), which speaks the
# Twilio API: the tenant gets a Twilio account with these throwaway local credentials, and a fixed webhook id
# so that the stand-in knows where to post the people's replies.
DEMO_SMS_ACCOUNT_SID = "AC" + "d" * 32
DEMO_SMS_AUTH_TOKEN = "local-sms-stand-in-token"  # noqa: S105 - a throwaway credential of a local stand-in
DEMO_SMS_WEBHOOK_ID = uuid.UUID("00000000-0000-4000-8000-00000000d3e0")


def _office_hours(text: str) -> list[dict[str, Any]]:
    try:
        opens, closes = text.split("-", 1)
    except ValueError:
        raise CommandError("--office-hours takes HH:MM-HH:MM, e.g. 09:00-17:00") from None
    return [{"weekday": day, "opens": opens.strip(), "closes": closes.strip()} for day in range(5)]


class Command(BaseCommand):
    help = (
        f"Seed the after-hours demo (idempotent) on seed_demo's tenant {SLUG!r}: the number {DID}, a flow "
        "that is after hours unless --office-hours is given, intake fields (name, callback_number, "
        "address, problem, urgency), three scripted on-call technicians in a rotation, a manager, and a "
        f"policy paging them one after the other every {STEP_WAIT_S} s (call + SMS). seed_demo runs it."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--office-hours",
            default=None,
            help="Monday-Friday business hours HH:MM-HH:MM (default: none, always after hours).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            normalize_phone_number(DID)
        except InvalidInput as exc:
            raise CommandError(
                f"the demo numbers are fictional: set PHONE_TEST_PREFIXES=+1555 ({exc})"
            ) from exc
        tenant = Tenant.objects.filter(slug=SLUG).first()
        if tenant is None:
            raise CommandError(f"no tenant {SLUG!r}: run `manage.py seed_demo` (it runs this command too)")
        hours = _office_hours(options["office_hours"]) if options["office_hours"] else None
        try:
            with transaction.atomic():
                people = self._people(tenant)
                self._rotation(tenant, people[:3])
                policy = self._policy(tenant, people)
                flow = self._flow(tenant, policy, hours)
                number = self._number(tenant, flow)
                sms = self._sms_account(tenant)
        except InvalidInput as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(
            f"after-hours demo: tenant {tenant.slug!r} (id {tenant.pk}), number {number.number} -> flow "
            f"{flow.name!r} (id {flow.pk}, {flow.business_hours.count()} business-hour ranges), policy "
            f"{policy.name!r} ({policy.steps.count()} steps of {STEP_WAIT_S} s)"
        )
        self.stdout.write(
            f"  SMS: {sms.kind} account (webhook id {sms.webhook_id}); with `make run` the texts go to the"
            f" local SMS stand-in and the replies come back signed\n"
            f"  place a call: manage.py place_inbound_call --did {DID} --from {CALLER}\n"
            f"  then: GET /api/v1/incidents, /api/v1/incidents/<id>/timeline, /api/v1/inbound-calls"
        )

    # ------------------------------------------------------------------------------------------- parts
    def _sms_account(self, tenant: Tenant) -> SmsAccount:
        """The tenant's SMS account; a Twilio one pointed (by TWILIO_API_BASE) at the local stand-in unless it
        has one already (an operator's real account is never replaced)."""
        account = SmsAccount.objects.filter(tenant=tenant).first()
        if account is not None:
            return account
        account = sms_account_create(
            tenant=tenant,
            kind="twilio",
            username=DEMO_SMS_ACCOUNT_SID,
            secret=DEMO_SMS_AUTH_TOKEN,
            from_numbers=[DID],
            by_tenant=False,
        )
        SmsAccount.objects.filter(pk=account.pk).update(webhook_id=DEMO_SMS_WEBHOOK_ID)
        account.webhook_id = DEMO_SMS_WEBHOOK_ID
        return account

    def _people(self, tenant: Tenant) -> list[OnCallPerson]:
        people = []
        for name, number in (*PEOPLE, MANAGER):
            person = OnCallPerson.objects.filter(tenant=tenant, name=name).first()
            if person is None:
                person = oncall_person_create(tenant=tenant, name=name, phone=number, timezone=TIMEZONE)
                self.stdout.write(f"created on-call person {name} ({number})")
            people.append(person)
        return people

    def _rotation(self, tenant: Tenant, members: list[OnCallPerson]) -> Rotation:
        rotation = Rotation.objects.filter(tenant=tenant, name=ROTATION_NAME).first()
        if rotation is None:
            rotation = rotation_create(
                tenant=tenant,
                name=ROTATION_NAME,
                members=members,
                handoff=Rotation.Handoff.DAILY,
                handoff_time="08:00",
                start_date=date(2026, 1, 5),
                timezone=TIMEZONE,
            )
            self.stdout.write(f"created rotation {ROTATION_NAME!r}")
        return rotation

    def _policy(self, tenant: Tenant, people: list[OnCallPerson]) -> EscalationPolicy:
        policy = EscalationPolicy.objects.filter(tenant=tenant, name=POLICY_NAME).first()
        if policy is None:
            policy = escalation_policy_create(
                tenant=tenant,
                name=POLICY_NAME,
                steps=[
                    {"target_kind": "person", "person": person, "wait_s": STEP_WAIT_S}
                    for person in people[:3]
                ],
                fallback_people=[people[3]],
                fallback_callback=True,
            )
            self.stdout.write(f"created escalation policy {POLICY_NAME!r}")
        return policy

    def _flow(
        self, tenant: Tenant, policy: EscalationPolicy, hours: list[dict[str, Any]] | None
    ) -> InboundFlow:
        flow = InboundFlow.objects.filter(tenant=tenant, name=FLOW_NAME).first()
        if flow is None:
            agent = AgentProfile.objects.filter(tenant=tenant, name=AGENT_NAME).first()
            if agent is None:
                agent = agent_profile_create(
                    tenant=tenant,
                    name=AGENT_NAME,
                    instructions=INSTRUCTIONS,
                    greeting=GREETING,
                    tools=["end_call"],
                )
            flow = inbound_flow_create(
                tenant=tenant,
                name=FLOW_NAME,
                agent=agent,
                timezone=TIMEZONE,
                in_hours_action=InboundFlow.InHoursAction.AGENT,
                after_hours_action=InboundFlow.AfterHoursAction.AGENT_AND_PAGE,
                escalation_policy=policy,
                business_name=BUSINESS_NAME,
                intake_fields=INTAKE,
                business_hours=hours or [],
            )
            self.stdout.write(f"created inbound flow {FLOW_NAME!r}")
        elif hours is not None:
            flow = inbound_flow_update(flow=flow, business_hours=hours)
            self.stdout.write(f"set the business hours of {FLOW_NAME!r}")
        return flow

    def _number(self, tenant: Tenant, flow: InboundFlow) -> PhoneNumber:
        number = PhoneNumber.objects.filter(number=DID).first()
        if number is None:
            number = phone_number_create(tenant=tenant, number=DID, flow=flow, label="After-hours line")
            self.stdout.write(f"created number {DID}")
        elif number.tenant_id != tenant.pk:
            raise CommandError(f"{DID} belongs to another tenant ({number.tenant}): release it first")
        return number
