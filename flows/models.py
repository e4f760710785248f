"""Inbound flows: numbers (DIDs) owned by tenants, what happens to a call to them (business hours, intake,
the agent, a transfer to the office), who is on call (people, groups, rotations with overrides), escalation
policies, and the incidents that page people, with their timeline and their notification legs (pages).

Models hold data and what the database can enforce (constraints). Rules that need settings or other rows
(a step's minimum wait, same-tenant references) are checked in ``flows.services``. State changes of
incidents and pages go through the tables of :mod:`flows.lifecycle`.

Every inbound call is recorded (:class:`InboundCall`, DESIGN.md §5 rule 5) with how it was handled.

Exactly-once (the subtle part): a step of an incident fires inside the transaction that moves its durable
timer from pending to fired (``timers.services.timer_fire``); the ``step_fired`` timeline row is UNIQUE per
(incident, round, step) and a page per (incident, round, step, person, channel), so even a bug that ran the
step's writes twice could not page twice.
"""

from __future__ import annotations

import re

from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django.utils import timezone

from campaigns.models import AgentProfile
from flows.lifecycle import IncidentStatus, PageStatus
from tenants.models import Tenant
from tenants.validators import validate_timezone

E164_MAX_LENGTH = 16
INTAKE_NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
WEEKDAY_CHOICES = [
    (0, "Monday"),
    (1, "Tuesday"),
    (2, "Wednesday"),
    (3, "Thursday"),
    (4, "Friday"),
    (5, "Saturday"),
    (6, "Sunday"),
]

DEFAULT_URGENT_REPLY = (
    "The on-call technician is being contacted now; you will get a text message when someone has taken it."
)
DEFAULT_CALLER_ACK_SMS = "{person} from {business} has your request and will be in touch shortly."
DEFAULT_TAKEN_SMS = "Incident {code} was taken by {person}. No action needed."
DEFAULT_FALLBACK_SMS = "Nobody acknowledged incident {code} from {caller} ({summary}). Please follow up."


def validate_intake_name(value: str) -> None:
    if not INTAKE_NAME_RE.match(value or ""):
        raise ValidationError(
            "%(value)s is not a field name: lower case letters, digits and _, starting with a letter "
            "(at most 40).",
            params={"value": value},
        )


# ------------------------------------------------------------------------------------------- on call


class OnCallPerson(models.Model):
    """Someone who may be paged: called on ``phone``, texted on ``sms_number`` (blank: ``phone``)."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="oncall_people")
    name = models.CharField(max_length=200)
    phone = models.CharField(max_length=E164_MAX_LENGTH, help_text="E.164 number to call.")
    sms_number = models.CharField(
        max_length=E164_MAX_LENGTH, blank=True, help_text="E.164 number to text (blank: the phone number)."
    )
    timezone = models.CharField(max_length=64, blank=True, validators=[validate_timezone])
    active = models.BooleanField(default=True, help_text="Inactive people are skipped by every step.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["tenant", "name", "pk"]
        verbose_name = "on-call person"
        verbose_name_plural = "on-call people"
        constraints = [
            models.UniqueConstraint(fields=["tenant", "name"], name="oncallperson_unique_tenant_name"),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def text_number(self) -> str:
        return self.sms_number or self.phone


class OnCallGroup(models.Model):
    """People paged together (a step targeting a group pages every active member)."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="oncall_groups")
    name = models.CharField(max_length=200)
    members = models.ManyToManyField(OnCallPerson, related_name="groups", blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["tenant", "name", "pk"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "name"], name="oncallgroup_unique_tenant_name"),
        ]

    def __str__(self) -> str:
        return self.name


class Rotation(models.Model):
    """Who is on call, in turn: the members (by ``RotationMember.position``) take over from each other at the
    hand-off time (``handoff_time`` in ``timezone``, each day, or each week on ``handoff_weekday``), counting
    from ``start_date`` (the first member's turn begins at the first hand-off on or after it). Overrides
    (:class:`RotationOverride`) replace whoever the turn says for a range of time."""

    class Handoff(models.TextChoices):
        DAILY = "daily", "Daily"
        WEEKLY = "weekly", "Weekly"

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="rotations")
    name = models.CharField(max_length=200)
    handoff = models.CharField(max_length=8, choices=Handoff.choices, default=Handoff.WEEKLY)
    handoff_weekday = models.PositiveSmallIntegerField(
        choices=WEEKDAY_CHOICES, default=0, help_text="Weekly hand-off day (0 = Monday)."
    )
    handoff_time = models.TimeField(default="09:00", help_text="Local time of the hand-off.")
    start_date = models.DateField(help_text="The first member's turn starts at the first hand-off from here.")
    timezone = models.CharField(max_length=64, default="UTC", validators=[validate_timezone])
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["tenant", "name", "pk"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "name"], name="rotation_unique_tenant_name"),
            models.CheckConstraint(
                condition=Q(handoff__in=["daily", "weekly"]), name="rotation_handoff_valid"
            ),
            models.CheckConstraint(
                condition=Q(handoff_weekday__gte=0, handoff_weekday__lte=6), name="rotation_weekday_valid"
            ),
        ]

    def __str__(self) -> str:
        return self.name


class RotationMember(models.Model):
    rotation = models.ForeignKey(Rotation, on_delete=models.CASCADE, related_name="members")
    person = models.ForeignKey(OnCallPerson, on_delete=models.CASCADE, related_name="rotation_turns")
    position = models.PositiveIntegerField()

    class Meta:
        ordering = ["rotation", "position", "pk"]
        constraints = [
            models.UniqueConstraint(fields=["rotation", "position"], name="rotationmember_unique_position"),
        ]

    def __str__(self) -> str:
        return f"{self.rotation_id}#{self.position}: {self.person_id}"


class RotationOverride(models.Model):
    """``person`` is on call for ``rotation`` from ``starts_at`` to ``ends_at`` (half-open), whoever the turn
    says. When overrides overlap, the one created last wins."""

    rotation = models.ForeignKey(Rotation, on_delete=models.CASCADE, related_name="overrides")
    person = models.ForeignKey(OnCallPerson, on_delete=models.CASCADE, related_name="rotation_overrides")
    starts_at = models.DateTimeField()
    ends_at = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["rotation", "starts_at", "pk"]
        indexes = [models.Index(fields=["rotation", "starts_at", "ends_at"], name="rotationoverride_range")]
        constraints = [
            models.CheckConstraint(
                condition=Q(ends_at__gt=models.F("starts_at")), name="rotationoverride_ends_after_start"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.person_id} on {self.rotation_id} {self.starts_at:%Y-%m-%d %H:%M}→{self.ends_at:%H:%M}"


class EscalationPolicy(models.Model):
    """Ordered steps (:class:`EscalationStep`), run once and then ``repeat`` more times (so ``repeat + 1``
    rounds); then the fallback: ``fallback_people`` are texted ``fallback_sms`` and, when
    ``fallback_callback``, the caller is called back at the flow's next opening."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="escalation_policies")
    name = models.CharField(max_length=200)
    repeat = models.PositiveSmallIntegerField(
        default=0, help_text="How many more times the steps run after the first round (0: once)."
    )
    fallback_people = models.ManyToManyField(OnCallPerson, related_name="fallback_of", blank=True)
    fallback_sms = models.TextField(
        blank=True,
        default=DEFAULT_FALLBACK_SMS,
        help_text="Text to the fallback people; {code}, {caller}, {summary}, {business} are filled in.",
    )
    fallback_callback = models.BooleanField(
        default=False, help_text="Call the caller back at the flow's next opening."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["tenant", "name", "pk"]
        verbose_name_plural = "escalation policies"
        constraints = [
            models.UniqueConstraint(fields=["tenant", "name"], name="escalationpolicy_unique_tenant_name"),
            models.CheckConstraint(condition=Q(repeat__lte=20), name="escalationpolicy_repeat_lte_20"),
        ]

    def __str__(self) -> str:
        return self.name


class EscalationStep(models.Model):
    """Notify one person, the current on-call of a rotation, or every member of a group, by call and/or
    SMS, then wait ``wait_s`` seconds (at least ``settings.FLOWS_MIN_STEP_WAIT_S``, checked by the
    services) before the next step."""

    class TargetKind(models.TextChoices):
        PERSON = "person", "Person"
        ROTATION = "rotation", "Rotation (who is on call)"
        GROUP = "group", "Group (everyone)"

    policy = models.ForeignKey(EscalationPolicy, on_delete=models.CASCADE, related_name="steps")
    position = models.PositiveIntegerField()
    target_kind = models.CharField(max_length=8, choices=TargetKind.choices)
    person = models.ForeignKey(
        OnCallPerson, null=True, blank=True, on_delete=models.PROTECT, related_name="escalation_steps"
    )
    rotation = models.ForeignKey(
        Rotation, null=True, blank=True, on_delete=models.PROTECT, related_name="escalation_steps"
    )
    group = models.ForeignKey(
        OnCallGroup, null=True, blank=True, on_delete=models.PROTECT, related_name="escalation_steps"
    )
    notify_call = models.BooleanField(default=True)
    notify_sms = models.BooleanField(default=True)
    wait_s = models.PositiveIntegerField(default=120, help_text="Seconds to wait for an acknowledgement.")

    class Meta:
        ordering = ["policy", "position", "pk"]
        constraints = [
            models.UniqueConstraint(fields=["policy", "position"], name="escalationstep_unique_position"),
            models.CheckConstraint(
                condition=(
                    Q(target_kind="person", person__isnull=False, rotation__isnull=True, group__isnull=True)
                    | Q(
                        target_kind="rotation",
                        person__isnull=True,
                        rotation__isnull=False,
                        group__isnull=True,
                    )
                    | Q(target_kind="group", person__isnull=True, rotation__isnull=True, group__isnull=False)
                ),
                name="escalationstep_one_target_of_its_kind",
                violation_error_message="A step targets exactly one person, rotation or group, of its kind.",
            ),
            models.CheckConstraint(
                condition=Q(notify_call=True) | Q(notify_sms=True),
                name="escalationstep_notifies_somehow",
                violation_error_message="A step notifies by call, by SMS or both.",
            ),
            models.CheckConstraint(condition=Q(wait_s__gte=1), name="escalationstep_wait_s_gte_1"),
        ]

    def __str__(self) -> str:
        return f"step {self.position} of policy {self.policy_id}"


# ------------------------------------------------------------------------------------------ flows


class InboundFlow(models.Model):
    """What happens to a call to the tenant's numbers that point here.

    The agent: ``agent`` (an agent profile shared with campaigns) with ``instructions`` appended (or used
    alone without a profile) and ``greeting`` (blank: the profile's). In business hours
    (:class:`BusinessHours` in ``timezone``, minus :class:`Holiday` dates): ``transfer`` to ``office_number``
    (falling back to the agent when nobody answers) or the ``agent`` answers. After hours the agent answers
    and, with ``agent_and_page``, may report the call urgent, which opens an incident paging per
    ``escalation_policy``."""

    class InHoursAction(models.TextChoices):
        TRANSFER = "transfer", "Transfer to the office line"
        AGENT = "agent", "The agent answers"

    class AfterHoursAction(models.TextChoices):
        AGENT = "agent", "The agent answers (takes a message)"
        AGENT_AND_PAGE = "agent_and_page", "The agent answers and may page the on-call"

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="inbound_flows")
    name = models.CharField(max_length=200)
    agent = models.ForeignKey(
        AgentProfile, null=True, blank=True, on_delete=models.PROTECT, related_name="inbound_flows"
    )
    instructions = models.TextField(blank=True, help_text="Added to the agent profile's instructions.")
    greeting = models.TextField(blank=True, help_text="What the agent says first (blank: the profile's).")
    voice = models.CharField(max_length=50, blank=True, help_text="Blank: the profile's (or alloy).")
    timezone = models.CharField(
        max_length=64, blank=True, validators=[validate_timezone], help_text="Blank: the tenant's default."
    )
    in_hours_action = models.CharField(
        max_length=16, choices=InHoursAction.choices, default=InHoursAction.AGENT
    )
    office_number = models.CharField(
        max_length=E164_MAX_LENGTH, blank=True, help_text="E.164 office line for in-hours transfers."
    )
    transfer_timeout_s = models.PositiveIntegerField(default=30)
    after_hours_action = models.CharField(
        max_length=16, choices=AfterHoursAction.choices, default=AfterHoursAction.AGENT_AND_PAGE
    )
    escalation_policy = models.ForeignKey(
        EscalationPolicy, null=True, blank=True, on_delete=models.PROTECT, related_name="flows"
    )
    business_name = models.CharField(max_length=200, blank=True, help_text="Used in texts (blank: tenant).")
    refusal_message = models.CharField(
        max_length=200,
        blank=True,
        help_text="Sound played to callers refused over the concurrency cap (blank: the platform's).",
    )
    urgent_reply = models.TextField(blank=True, default=DEFAULT_URGENT_REPLY)
    caller_ack_sms = models.TextField(
        blank=True, default=DEFAULT_CALLER_ACK_SMS, help_text="{person}, {business}, {code} are filled in."
    )
    taken_sms = models.TextField(
        blank=True, default=DEFAULT_TAKEN_SMS, help_text="{person}, {code} are filled in."
    )
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["tenant", "name", "pk"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "name"], name="inboundflow_unique_tenant_name"),
            models.CheckConstraint(
                condition=Q(in_hours_action__in=["transfer", "agent"]), name="inboundflow_in_hours_valid"
            ),
            models.CheckConstraint(
                condition=Q(after_hours_action__in=["agent", "agent_and_page"]),
                name="inboundflow_after_hours_valid",
            ),
            models.CheckConstraint(
                condition=~Q(in_hours_action="transfer") | ~Q(office_number=""),
                name="inboundflow_transfer_has_office_number",
                violation_error_message="An in-hours transfer needs the office number.",
            ),
        ]

    def __str__(self) -> str:
        return self.name


class IntakeField(models.Model):
    """A detail the agent must collect (``record_intake`` tool): ``name`` is the key of the call's intake."""

    flow = models.ForeignKey(InboundFlow, on_delete=models.CASCADE, related_name="intake_fields")
    name = models.CharField(max_length=40, validators=[validate_intake_name])
    label = models.CharField(max_length=200)
    required = models.BooleanField(default=False)
    position = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["flow", "position", "pk"]
        constraints = [
            models.UniqueConstraint(fields=["flow", "name"], name="intakefield_unique_flow_name"),
            models.CheckConstraint(
                condition=Q(name__regex=r"^[a-z][a-z0-9_]{0,39}$"), name="intakefield_name_valid"
            ),
        ]

    def __str__(self) -> str:
        return self.name


class BusinessHours(models.Model):
    """The flow is open on ``weekday`` from ``opens`` to ``closes`` (local time of the flow; ``closes`` =
    00:00 means midnight, the end of the day). Several ranges per day are allowed."""

    flow = models.ForeignKey(InboundFlow, on_delete=models.CASCADE, related_name="business_hours")
    weekday = models.PositiveSmallIntegerField(choices=WEEKDAY_CHOICES)
    opens = models.TimeField()
    closes = models.TimeField()

    class Meta:
        ordering = ["flow", "weekday", "opens", "pk"]
        verbose_name_plural = "business hours"
        constraints = [
            models.CheckConstraint(
                condition=Q(weekday__gte=0, weekday__lte=6), name="businesshours_weekday_valid"
            ),
            models.CheckConstraint(
                condition=Q(closes__gt=models.F("opens")) | Q(closes="00:00"),
                name="businesshours_closes_after_opens",
                violation_error_message="Closing time must be after the opening time (00:00 = midnight).",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_weekday_display()} {self.opens:%H:%M}-{self.closes:%H:%M}"


class Holiday(models.Model):
    """A local date on which the flow is closed all day (after-hours handling)."""

    flow = models.ForeignKey(InboundFlow, on_delete=models.CASCADE, related_name="holidays")
    date = models.DateField()
    name = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["flow", "date"]
        constraints = [models.UniqueConstraint(fields=["flow", "date"], name="holiday_unique_flow_date")]

    def __str__(self) -> str:
        return f"{self.date} {self.name}".strip()


class PhoneNumber(models.Model):
    """A DID owned by a tenant; calls to it follow ``flow`` (none: refused politely). Unique platform-wide."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="phone_numbers")
    number = models.CharField(max_length=E164_MAX_LENGTH, unique=True, help_text="E.164, e.g. +15551230000.")
    flow = models.ForeignKey(
        InboundFlow, null=True, blank=True, on_delete=models.SET_NULL, related_name="phone_numbers"
    )
    label = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["tenant", "number"]

    def __str__(self) -> str:
        return self.number


# ------------------------------------------------------------------------------------ inbound calls


class InboundCall(models.Model):
    """A call that entered the Stasis app from the dialplan (``Stasis(app,inbound,<DID>)``) and how it was
    handled. ``intake`` holds what the agent collected (``record_intake``), by intake field name."""

    class Status(models.TextChoices):
        LIVE = "live", "Live"
        ENDED = "ended", "Ended"

    class Handling(models.TextChoices):
        UNROUTED = "unrouted", "Not routed: told and hung up"
        AGENT = "agent", "Answered by the agent"
        TRANSFERRED = "transferred", "Transferred to the office line"
        REFUSED_OVER_CAP = "refused_over_cap", "Refused: over the concurrency cap"

    channel_id = models.CharField(max_length=150, unique=True, help_text="The caller's ARI channel id.")
    tenant = models.ForeignKey(
        Tenant, null=True, blank=True, on_delete=models.SET_NULL, related_name="inbound_calls"
    )
    flow = models.ForeignKey(
        InboundFlow, null=True, blank=True, on_delete=models.SET_NULL, related_name="inbound_calls"
    )
    phone_number = models.ForeignKey(
        PhoneNumber, null=True, blank=True, on_delete=models.SET_NULL, related_name="inbound_calls"
    )
    did = models.CharField(max_length=64, blank=True, help_text="The number that was called.")
    caller_number = models.CharField(max_length=64, blank=True)
    caller_name = models.CharField(max_length=200, blank=True)
    handling = models.CharField(max_length=16, choices=Handling.choices, default=Handling.UNROUTED)
    in_hours = models.BooleanField(null=True, blank=True, help_text="Within the flow's business hours.")
    message = models.CharField(max_length=200, blank=True, help_text="What the caller was played.")
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.LIVE)
    started_at = models.DateTimeField()
    answered_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    end_reason = models.CharField(max_length=32, blank=True)
    transferred_to = models.CharField(max_length=E164_MAX_LENGTH, blank=True)
    intake = models.JSONField(default=dict, blank=True, help_text="Intake values by field name.")
    # The media worker's end-of-call report (media.flow_call_report): what was said, for the business's
    # records.
    transcript = models.JSONField(default=list, blank=True, help_text="[{role, text, at}]: what was said.")
    media_metrics = models.JSONField(default=dict, blank=True)
    # The PBX row whose Stasis app took the call (its reconciliation closes it). A plain id: the PBX rows
    # belong to the outbound side, and this record must outlive them.
    pbx_id = models.IntegerField(null=True, blank=True)

    class Meta:
        ordering = ["-started_at"]
        indexes = [
            models.Index(fields=["status"], name="inboundcall_status"),
            models.Index(fields=["tenant"], condition=Q(status="live"), name="inboundcall_live_tenant"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=["live", "ended"]), name="inboundcall_status_valid"
            ),
            models.CheckConstraint(
                condition=Q(handling__in=["unrouted", "agent", "transferred", "refused_over_cap"]),
                name="inboundcall_handling_valid",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.caller_number or 'unknown'} → {self.did or '?'} ({self.status})"


# -------------------------------------------------------------------------------------- incidents

_INCIDENT_STATUSES = [status.value for status in IncidentStatus]
_PAGE_STATUSES = [status.value for status in PageStatus]


class Incident(models.Model):
    """An urgent call being escalated. ``policy_snapshot`` is the policy as it was when the incident opened
    (a later change of the policy never alters a running escalation): ``{"policy_id", "name", "repeat",
    "fallback": {"people": [{"id", "name", "sms_number"}], "sms", "callback"}, "steps": [{"position",
    "target_kind", "target_id", "target_name", "notify_call", "notify_sms", "wait_s"}]}``. A rotation step
    is resolved to its on-call person when the step fires (who is on call *then*); a group's members are
    taken when the step fires too.

    ``round`` / ``step`` are the position of the last fired step (0-based; ``step`` = -1 before the first).
    """

    class Status(models.TextChoices):
        OPEN = "open", "Open (escalating)"
        ACKNOWLEDGED = "acknowledged", "Acknowledged"
        EXHAUSTED = "exhausted", "Exhausted (nobody acknowledged; fallback ran)"
        RESOLVED = "resolved", "Resolved"

    class AckChoice(models.TextChoices):
        NONE = "", "Not chosen yet"
        CONNECT = "connect", "Connect to the caller now"
        LATER = "later", "Call back later"

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="incidents")
    inbound_call = models.ForeignKey(
        InboundCall, null=True, blank=True, on_delete=models.SET_NULL, related_name="incidents"
    )
    flow = models.ForeignKey(
        InboundFlow, null=True, blank=True, on_delete=models.SET_NULL, related_name="incidents"
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.OPEN)
    short_code = models.CharField(max_length=8, help_text="Short code people quote in SMS replies.")
    caller_number = models.CharField(max_length=64, blank=True)
    did = models.CharField(max_length=64, blank=True)
    intake = models.JSONField(default=dict, blank=True)
    summary = models.TextField(blank=True)
    policy_snapshot = models.JSONField(default=dict, blank=True)
    round = models.PositiveSmallIntegerField(default=0)
    step = models.IntegerField(default=-1)
    acknowledged_by = models.ForeignKey(
        OnCallPerson, null=True, blank=True, on_delete=models.SET_NULL, related_name="acknowledged_incidents"
    )
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    ack_channel = models.CharField(max_length=8, blank=True, help_text="call, sms, link or api.")
    ack_choice = models.CharField(max_length=8, choices=AckChoice.choices, blank=True, default="")
    resolved_at = models.DateTimeField(null=True, blank=True)
    exhausted_at = models.DateTimeField(null=True, blank=True)
    opened_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-opened_at", "-pk"]
        indexes = [
            models.Index(fields=["tenant", "status", "-opened_at"], name="incident_tenant_status"),
            models.Index(fields=["tenant", "-opened_at"], name="incident_tenant_opened"),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(status__in=_INCIDENT_STATUSES), name="incident_status_valid"),
            models.CheckConstraint(
                condition=Q(ack_choice__in=["", "connect", "later"]), name="incident_ack_choice_valid"
            ),
            # A short code names one incident among those still being handled (SMS "1 <code>").
            models.UniqueConstraint(
                fields=["tenant", "short_code"],
                condition=Q(status__in=["open", "acknowledged", "exhausted"]),
                name="incident_unique_active_short_code",
            ),
            # One incident per inbound call (the agent may call report_urgent twice).
            models.UniqueConstraint(
                fields=["inbound_call"],
                condition=Q(inbound_call__isnull=False),
                name="incident_unique_inbound_call",
            ),
        ]

    def __str__(self) -> str:
        return f"incident {self.short_code} ({self.status})"


class Page(models.Model):
    """One notification leg: a call or an SMS to one person for one step of one round. ``call_id`` is the
    flow call id of a call page (``wire.callids.new_flow_call_id``, the ARI channel id); ``message_id`` the
    messaging app's Message id of an SMS page (a plain id: messages outlive incidents' rows and vice versa).
    ``purpose`` ``callback`` is a call back to the caller (the fallback), not a page of a person."""

    class Channel(models.TextChoices):
        CALL = "call", "Call"
        SMS = "sms", "SMS"

    class Purpose(models.TextChoices):
        PAGE = "page", "Page an on-call person"
        TAKEN = "taken", "Tell a person someone else took it"
        CALLER = "caller", "Tell the caller"
        FALLBACK = "fallback", "Fallback text"
        CALLBACK = "callback", "Call the caller back"
        CONNECT = "connect", "Call the acknowledger to connect them to the caller"

    Status = PageStatus

    incident = models.ForeignKey(Incident, on_delete=models.CASCADE, related_name="pages")
    person = models.ForeignKey(
        OnCallPerson, null=True, blank=True, on_delete=models.SET_NULL, related_name="pages"
    )
    purpose = models.CharField(max_length=8, choices=Purpose.choices, default=Purpose.PAGE)
    round = models.PositiveSmallIntegerField(default=0)
    step = models.IntegerField(default=0)
    channel = models.CharField(max_length=4, choices=Channel.choices)
    to_number = models.CharField(max_length=E164_MAX_LENGTH)
    text = models.TextField(blank=True, help_text="The SMS body, or what the call says.")
    call_id = models.CharField(max_length=64, null=True, blank=True, unique=True)
    message_id = models.BigIntegerField(null=True, blank=True)
    pbx_id = models.IntegerField(null=True, blank=True)
    status = models.CharField(max_length=16, default=PageStatus.TO_SEND.value)
    error = models.TextField(blank=True)
    # A call leg's transcript (media.flow_call_report): what the person heard and said.
    transcript = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    sent_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    answered_at = models.DateTimeField(null=True, blank=True)
    responded_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["incident", "created_at", "pk"]
        indexes = [
            models.Index(fields=["incident", "status"], name="page_incident_status"),
            models.Index(fields=["message_id"], name="page_message_id"),
            models.Index(fields=["status", "created_at"], condition=Q(status="to_send"), name="page_to_send"),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(status__in=_PAGE_STATUSES), name="page_status_valid"),
            models.CheckConstraint(condition=Q(channel__in=["call", "sms"]), name="page_channel_valid"),
            # Exactly-once: a step pages a person once per channel, whatever ran twice.
            models.UniqueConstraint(
                fields=["incident", "round", "step", "person", "channel"],
                condition=Q(purpose="page"),
                name="page_unique_step_person_channel",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.channel} {self.purpose} to {self.to_number} ({self.status})"


class IncidentEvent(models.Model):
    """The incident's timeline: append-only, ordered by ``at`` then id (the liability record)."""

    class Kind(models.TextChoices):
        OPENED = "opened", "Opened"
        STEP_FIRED = "step_fired", "Step fired"
        CALLED = "called", "Called"
        TEXTED = "texted", "Texted"
        DELIVERED = "delivered", "SMS delivered"
        SMS_FAILED = "sms_failed", "SMS failed"
        CALL_FAILED = "call_failed", "Call failed"
        RINGING = "ringing", "Ringing"
        ANSWERED = "answered", "Answered"
        PRESSED = "pressed", "Key pressed"
        REPLIED = "replied", "SMS reply"
        DECLINED = "declined", "Declined"
        ACKNOWLEDGED = "acknowledged", "Acknowledged"
        CHOSE = "chose", "Chose connect / later"
        CONNECTING = "connecting", "Connecting to the caller"
        CONNECTED = "connected", "Connected to the caller"
        CONNECT_FAILED = "connect_failed", "Connection to the caller failed"
        CALL_ENDED = "call_ended", "Call ended"
        LEG_STOPPED = "leg_stopped", "Leg stopped"
        NO_TARGET = "no_target", "Step had nobody to notify"
        ROUND_STARTED = "round_started", "Round started"
        EXHAUSTED = "exhausted", "Escalation exhausted"
        FALLBACK = "fallback", "Fallback"
        CALLBACK_SCHEDULED = "callback_scheduled", "Caller callback scheduled"
        CALLBACK_PLACED = "callback_placed", "Caller called back"
        RESOLVED = "resolved", "Resolved"
        NOTE = "note", "Note"

    incident = models.ForeignKey(Incident, on_delete=models.CASCADE, related_name="events")
    at = models.DateTimeField(default=timezone.now)
    kind = models.CharField(max_length=24, choices=Kind.choices)
    person = models.ForeignKey(
        OnCallPerson, null=True, blank=True, on_delete=models.SET_NULL, related_name="incident_events"
    )
    page = models.ForeignKey(Page, null=True, blank=True, on_delete=models.SET_NULL, related_name="events")
    channel = models.CharField(max_length=8, blank=True, help_text="call, sms, link, api or system.")
    round = models.PositiveSmallIntegerField(null=True, blank=True)
    step = models.IntegerField(null=True, blank=True)
    detail = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["incident", "at", "pk"]
        indexes = [models.Index(fields=["incident", "at"], name="incidentevent_incident_at")]
        constraints = [
            # The heart of exactly-once: a step of a round fires once, whatever fired it twice.
            models.UniqueConstraint(
                fields=["incident", "round", "step"],
                condition=Q(kind="step_fired"),
                name="incidentevent_step_fires_once",
            ),
            models.UniqueConstraint(
                fields=["incident"],
                condition=Q(kind__in=["opened"]),
                name="incidentevent_opened_once",
            ),
            models.UniqueConstraint(
                fields=["incident"], condition=Q(kind="acknowledged"), name="incidentevent_acknowledged_once"
            ),
            models.UniqueConstraint(
                fields=["incident"], condition=Q(kind="exhausted"), name="incidentevent_exhausted_once"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.at:%H:%M:%S} {self.kind}"
