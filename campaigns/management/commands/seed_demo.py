"""``manage.py seed_demo``: the demo tenant, PBX (the local simulator) and a running 50-contact campaign.

Idempotent: what exists is left as it is, so running it again (every ``make run`` does) changes nothing.
The one exception is the demo contacts' time zone (see ``Command.help``): when the zone stored by an earlier
run is no longer inside the demo window, a zone that is is picked again, so a later ``make run`` still dials.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from django.apps import apps
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.utils import timezone

from campaigns.lifecycle import AttemptOutcome
from campaigns.models import AGENT_TOOLS, WEEKDAYS, AgentProfile, Campaign, Contact, Pbx
from campaigns.phone import normalize_phone_number
from campaigns.services.agents import agent_profile_create
from campaigns.services.campaigns import campaign_create, campaign_start
from campaigns.services.contacts import contact_update, contact_upsert, lead_add
from campaigns.services.pbx import pbx_create, pbx_place
from orchestrator.errors import InvalidInput
from tenants.models import ApiKey, Tenant
from tenants.services import api_key_create, tenant_create

DEMO_SLUG = "demo"
DEMO_TENANT_NAME = "Demo"
DEMO_TIMEZONE = "America/New_York"
DEMO_CAP = 5
# Of the 5, kept free for inbound calls and their on-call page calls (the after-hours demo shares the tenant).
DEMO_INBOUND_RESERVE = 2
DEMO_OWNER_EMAIL = "demo@example.com"
# Local demo only: printed when the user is created, so the admin can be opened at once.
DEMO_OWNER_PASSWORD = "demo-password"  # noqa: S105
DEMO_API_KEY_NAME = "demo"
DEMO_PBX_NAME = "demo-sim"
DEMO_PBX_URL = "http://127.0.0.1:8088/"
DEMO_PBX_USER = "asterisk"
# runlocal sets it for its children (the simulator's password); the PBX row stores only the name.
DEMO_PBX_PASSWORD_ENV = "SIM_ARI_PASSWORD"  # noqa: S105 - a variable name, not a password
DEMO_AGENT_NAME = "Demo agent"
DEMO_TRANSFER_NUMBER = "+15550199999"
DEMO_CAMPAIGN_NAME = "Demo campaign"
DEMO_CALLER_ID = "+15550209999"
DEMO_CONTACTS = 50
# +15550200001 .. +15550200050: the "+1555020" prefix of deploy/sim-plan.yaml (a mix of behaviours).
DEMO_NUMBER_BASE = 15550200000
DEMO_TEST_PREFIX = "+1555"
DEMO_RETRY_DELAY_S = 60
# The campaign's windows: every day, inside the hard bounds (08:00-21:00 callee-local).
WINDOW_START = "09:00"
WINDOW_END = "20:00"
# Real zones, roughly one every 1-3 hours of UTC offset, tried for the demo contacts (first: the tenant's).
CANDIDATE_ZONES: tuple[str, ...] = (
    DEMO_TIMEZONE,
    "America/Chicago",
    "America/Denver",
    "America/Los_Angeles",
    "America/Anchorage",
    "Pacific/Honolulu",
    "Pacific/Pago_Pago",
    "Pacific/Kiritimati",
    "Pacific/Auckland",
    "Australia/Sydney",
    "Asia/Tokyo",
    "Asia/Shanghai",
    "Asia/Bangkok",
    "Asia/Kolkata",
    "Asia/Dubai",
    "Europe/Moscow",
    "Europe/Berlin",
    "Europe/London",
    "Atlantic/Azores",
    "America/Sao_Paulo",
    "America/Halifax",
)


def demo_number(index: int) -> str:
    return f"+{DEMO_NUMBER_BASE + index}"


def _minutes(hhmm: str) -> int:
    hours, minutes = hhmm.split(":")
    return int(hours) * 60 + int(minutes)


def zone_is_open(zone: str, now: datetime) -> bool:
    """Whether ``now`` is inside the demo window (09:00-20:00 daily) in ``zone``, with 10 minutes to go."""
    local = now.astimezone(ZoneInfo(zone))
    minute = local.hour * 60 + local.minute
    return _minutes(WINDOW_START) <= minute < _minutes(WINDOW_END) - 10


def pick_demo_zone(now: datetime) -> str | None:
    """The tenant's zone when it is open now, else the open candidate with the most window left; None when
    none is open (cannot happen with the candidates above, but the rules are never bent to dial)."""
    if zone_is_open(DEMO_TIMEZONE, now):
        return DEMO_TIMEZONE
    open_zones = [zone for zone in CANDIDATE_ZONES if zone_is_open(zone, now)]
    if not open_zones:
        return None

    def minutes_left(zone: str) -> int:
        local = now.astimezone(ZoneInfo(zone))
        return _minutes(WINDOW_END) - (local.hour * 60 + local.minute)

    return max(open_zones, key=minutes_left)


class Command(BaseCommand):
    help = (
        "Seed the demo (idempotent): tenant 'demo' (cap 5, 2 of them kept for inbound calls, "
        "America/New_York), owner demo@example.com, an API key (printed only when created), PBX "
        "'demo-sim' (the local simulator on 127.0.0.1:8088, password from $SIM_ARI_PASSWORD), an agent "
        "profile and a RUNNING campaign of 50 contacts +15550200001.. +15550200050 (the simulator plan's "
        "mix of behaviours) due now, with 60 s retry delays. The campaign may call every day 09:00-20:00 "
        "callee-local time, inside the hard 08:00-21:00 bounds, which are never bent. So that the demo "
        "dials whenever it is run, the contacts get an explicit time zone picked at seed time: "
        "America/New_York if it is inside 09:00-20:00 now, otherwise the real zone from a fixed list "
        "(Honolulu to Kiritimati) with the most of that window left. A later run re-picks it only if the "
        "stored zone has left the window. The numbers are fictional: PHONE_TEST_PREFIXES must include "
        "+1555 (make run sets it). Then the after-hours answering demo (manage.py seed_after_hours: the "
        "number +15550170000, its flow, three on-call technicians)."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            normalize_phone_number(demo_number(1))
        except InvalidInput as exc:
            raise CommandError(
                f"the demo numbers ({demo_number(1)}...) are fictional: "
                f"set PHONE_TEST_PREFIXES={DEMO_TEST_PREFIX}"
            ) from exc
        now = timezone.now()
        with transaction.atomic():
            tenant, raw_key = self._tenant_and_key()
            pbx = self._pbx(tenant)
            campaign = self._campaign(tenant)
            zone = self._contacts(tenant, campaign, now)
            if campaign.status == Campaign.Status.DRAFT:
                campaign = campaign_start(campaign=campaign)
                self.stdout.write(f"started campaign {campaign.name!r}")
        self.stdout.write(
            f"demo: tenant {tenant.slug!r} (id {tenant.pk}, cap {tenant.max_concurrent_calls}), "
            f"PBX {pbx.name!r} (id {pbx.pk}) at {pbx.ari_url}, campaign {campaign.name!r} (id {campaign.pk}, "
            f"{campaign.status}), {campaign.leads.count()} leads, contacts in {zone or 'no open zone'}"
        )
        if zone is None:
            self.stdout.write(
                self.style.WARNING("no candidate zone is inside 09:00-20:00 now: the demo will not dial yet")
            )
        if raw_key is not None:
            self.stdout.write(f"demo API key (shown once): {raw_key}")
            self.stdout.write(
                f"  curl -H 'Authorization: Bearer {raw_key}' "
                f"http://127.0.0.1:8000/api/v1/campaigns/{campaign.pk}/stats"
            )
        else:
            self.stdout.write(
                f"a demo API key {DEMO_API_KEY_NAME!r} already exists (it was shown once, when it was "
                f"created). Lost it? Get a new one with `manage.py create_api_key --tenant {DEMO_SLUG}`, "
                "the admin's 'Create an API key' action on the tenant, or POST /api/v1/api-keys"
            )
        # The after-hours answering demo on the same tenant: by name, since campaigns never imports flows.
        if apps.is_installed("flows"):
            call_command("seed_after_hours", stdout=self.stdout, stderr=self.stderr)

    # ------------------------------------------------------------------------------------------- parts
    def _tenant_and_key(self) -> tuple[Tenant, str | None]:
        user_model = get_user_model()
        user = user_model.objects.filter(username=DEMO_OWNER_EMAIL).first()
        if user is None:
            user = user_model.objects.create_superuser(
                username=DEMO_OWNER_EMAIL, email=DEMO_OWNER_EMAIL, password=DEMO_OWNER_PASSWORD
            )
            self.stdout.write(
                f"created admin user {DEMO_OWNER_EMAIL} with password {DEMO_OWNER_PASSWORD!r} "
                "(local demo only): http://127.0.0.1:8000/admin/"
            )
        tenant = Tenant.objects.filter(slug=DEMO_SLUG).first()
        if tenant is None:
            tenant = tenant_create(
                name=DEMO_TENANT_NAME,
                slug=DEMO_SLUG,
                owner=user,
                default_timezone=DEMO_TIMEZONE,
                max_concurrent_calls=DEMO_CAP,
                calls_per_second=DEMO_CAP,
                inbound_reserve=DEMO_INBOUND_RESERVE,
            )
            self.stdout.write(f"created tenant {tenant.slug!r}")
        raw_key: str | None = None
        if not ApiKey.objects.filter(tenant=tenant, name=DEMO_API_KEY_NAME, revoked_at__isnull=True).exists():
            _, raw_key = api_key_create(tenant=tenant, name=DEMO_API_KEY_NAME, created_by=user)
        return tenant, raw_key

    def _pbx(self, tenant: Tenant) -> Pbx:
        """The simulator as a platform PBX (the operator's: its password may come from the environment),
        with the demo tenant placed on it."""
        pbx = Pbx.objects.filter(owner__isnull=True, name=DEMO_PBX_NAME).first()
        if pbx is None:
            pbx = pbx_create(
                name=DEMO_PBX_NAME,
                ari_url=DEMO_PBX_URL,
                ari_user=DEMO_PBX_USER,
                password_env=DEMO_PBX_PASSWORD_ENV,
                app_name="ai_agent",
                endpoint_template="PJSIP/{number}@trunk",
            )
            self.stdout.write(f"created PBX {pbx.name!r}")
        pbx_place(pbx=pbx, tenant=tenant)
        return pbx

    def _campaign(self, tenant: Tenant) -> Campaign:
        campaign = Campaign.objects.filter(tenant=tenant, name=DEMO_CAMPAIGN_NAME).first()
        if campaign is not None:
            return campaign
        agent = AgentProfile.objects.filter(tenant=tenant, name=DEMO_AGENT_NAME).first()
        if agent is None:
            agent = agent_profile_create(
                tenant=tenant,
                name=DEMO_AGENT_NAME,
                instructions=(
                    "You are a friendly assistant calling {{first_name}} on behalf of the demo company to "
                    "ask whether they would like a short product walkthrough. Be brief and polite; if they "
                    "are not interested, thank them and end the call."
                ),
                greeting="Hi {{first_name}}, this is the demo assistant. Do you have a minute?",
                tools=list(AGENT_TOOLS),
                # The simulator's plan has a colleague answering on this number (deploy/sim-plan.yaml).
                transfer_numbers=[DEMO_TRANSFER_NUMBER],
            )
        campaign = campaign_create(
            tenant=tenant,
            agent=agent,
            name=DEMO_CAMPAIGN_NAME,
            caller_id=DEMO_CALLER_ID,
            calling_windows={day: [[WINDOW_START, WINDOW_END]] for day in WEEKDAYS},
            max_concurrent_calls=DEMO_CAP,
            max_attempts=3,
            retry_delays={
                str(outcome): DEMO_RETRY_DELAY_S
                for outcome in (
                    AttemptOutcome.BUSY,
                    AttemptOutcome.NO_ANSWER,
                    AttemptOutcome.CONGESTION,
                    AttemptOutcome.FAILED,
                    AttemptOutcome.VOICEMAIL,
                    AttemptOutcome.UNREACHABLE,
                )
            },
            ring_timeout=20,
        )
        self.stdout.write(f"created campaign {campaign.name!r}")
        return campaign

    def _contacts(self, tenant: Tenant, campaign: Campaign, now: datetime) -> str | None:
        numbers = [demo_number(i) for i in range(1, DEMO_CONTACTS + 1)]
        existing = {
            c.phone_number: c for c in Contact.objects.filter(tenant=tenant, phone_number__in=numbers)
        }
        stored_zones = {c.timezone for c in existing.values()}
        if len(existing) == len(numbers) and len(stored_zones) == 1:
            stored = stored_zones.pop()
            zone: str | None = stored if stored and zone_is_open(stored, now) else pick_demo_zone(now)
        else:
            zone = pick_demo_zone(now)
        created = 0
        for index, number in enumerate(numbers, start=1):
            contact = existing.get(number)
            if contact is None:
                contact = contact_upsert(
                    tenant=tenant,
                    phone_number=number,
                    name=f"Demo Contact {index:02d}",
                    timezone=zone or DEMO_TIMEZONE,
                    variables={"first_name": f"Contact{index:02d}"},
                )
            elif zone is not None and contact.timezone != zone:
                contact = contact_update(contact=contact, timezone=zone)
            _, was_created = lead_add(campaign=campaign, contact=contact)
            created += was_created
        if created:
            self.stdout.write(f"added {created} demo leads (due now)")
        return zone
