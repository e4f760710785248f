"""The outbound campaign domain: PBXs, agent profiles, campaigns, contacts, leads, the do-not-call list,
call attempts and their event log.

Models hold data and the invariants the database can enforce (constraints); validation that needs other
rows or other modules (tenant caps, same-tenant references, calling windows) is in ``campaigns.services``.

A lead is always in exactly one state (DESIGN.md §5 rule 3): waiting (with a next-due time), in an
attempt, done or suppressed. At most one attempt per lead is live at a time (rule 2): a partial unique
index on ``CallAttempt.lead`` over the live states makes a second concurrent claim fail in the database.
"""

from __future__ import annotations

import uuid

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone

from campaigns.disclosure import DEFAULT_DISCLOSURE
from campaigns.lifecycle import LIVE_STATES, AttemptOutcome, AttemptState
from tenants.models import Tenant
from tenants.validators import validate_timezone

E164_MAX_LENGTH = 16  # "+" and at most 15 digits
CONTACT_NAME_MAX_LENGTH = 200

AGENT_TOOLS: tuple[str, ...] = (
    "end_call",
    "transfer_to_human",
    "schedule_callback",
    "set_disposition",
    "add_to_dnc",
    "send_sms",
    # Given to the agent by the brief when the campaign records after consent (the profile need not list it).
    "record_consent",
    "transfer_decision",
    "save_results",  # the campaign's result fields (campaigns/results.py); given whenever it has some
)

#: The longest a campaign may keep its call recordings.
MAX_RECORDING_RETENTION_DAYS = 3650

WEEKDAYS: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def default_calling_windows() -> dict[str, list[list[str]]]:
    """Monday to Friday, 09:00 to 17:00 callee-local time."""
    return {day: [["09:00", "17:00"]] for day in WEEKDAYS[:5]}


DEFAULT_RETRY_DELAYS: dict[str, int] = {
    AttemptOutcome.BUSY: 600,
    AttemptOutcome.NO_ANSWER: 3600,
    AttemptOutcome.CONGESTION: 300,
    AttemptOutcome.FAILED: 900,
    AttemptOutcome.VOICEMAIL: 7200,
    AttemptOutcome.MACHINE_DETECTED: 7200,
    # (voicemail_left: not retried unless listed: the message was left, the lead is done)
    AttemptOutcome.UNREACHABLE: 3600,
    # Our side failed (media, the Stasis app) or the end was not seen: the callee had no conversation.
    AttemptOutcome.MEDIA_FAILED: 300,
    AttemptOutcome.APP_UNAVAILABLE: 300,
    AttemptOutcome.UNKNOWN: 3600,
}


def default_retry_delays() -> dict[str, int]:
    """Seconds to wait before retrying a lead after each retryable outcome."""
    return {str(outcome): delay for outcome, delay in DEFAULT_RETRY_DELAYS.items()}


def default_tools() -> list[str]:
    return ["end_call"]


_OUTCOME_CHOICES = [(outcome.value, outcome.value.replace("_", " ")) for outcome in AttemptOutcome]
_LIVE_STATE_VALUES = sorted(state.value for state in LIVE_STATES)


class Pbx(models.Model):
    """An Asterisk (or the simulator) reached over ARI.

    **PBXs are the operator's resource** (DESIGN.md §5 rule 8): a platform pool (``owner`` empty) that
    tenants are placed on (:class:`PbxPlacement`, managed in the admin and with ``manage.py pbx``). A tenant
    sees only its placements (a name, its share of channels, whether it is up), never a URL or a credential.
    A tenant the operator allows (``Tenant.allow_own_pbx``) may bring its own PBX (``owner`` = that tenant):
    its ARI URL must pass the URL policy (tenants/urlpolicy.py), when saved and when used, and its password is
    only ever stored encrypted.

    The ARI password comes from exactly one source: an environment variable named by ``password_env`` (an
    operator-only option: never for a tenant's own PBX) or ``password_encrypted`` (a Fernet token, see
    orchestrator/crypto.py). Read it with ``campaigns.services.pbx.pbx_password``."""

    owner = models.ForeignKey(
        Tenant,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="own_pbxs",
        help_text="Empty for the platform's PBXs; the tenant that brought it otherwise.",
    )
    tenants: models.ManyToManyField[Tenant, PbxPlacement] = models.ManyToManyField(
        Tenant, through="PbxPlacement", related_name="pbxs", blank=True
    )
    name = models.CharField(max_length=100)
    ari_url = models.URLField(help_text="Base URL of ARI's HTTP server, e.g. http://127.0.0.1:8088/")
    ari_user = models.CharField(max_length=100)
    password_env = models.CharField(
        max_length=100,
        blank=True,
        help_text="Name of the environment variable holding the ARI password (platform PBXs only).",
    )
    password_encrypted = models.TextField(blank=True, editable=False)
    app_name = models.CharField(max_length=100, default="ai_agent", help_text="The Stasis application name.")
    endpoint_template = models.CharField(
        max_length=200, default="PJSIP/{number}@trunk", help_text="Dial string; {number} is the E.164 number."
    )
    max_channels = models.PositiveIntegerField(default=100, help_text="Live calls on this PBX, all tenants.")
    calls_per_second = models.PositiveIntegerField(default=10)
    enabled = models.BooleanField(default=True)

    class Meta:
        ordering = ["name", "pk"]
        verbose_name = "PBX"
        verbose_name_plural = "PBXs"
        constraints = [
            models.UniqueConstraint(
                fields=["name"], condition=Q(owner__isnull=True), name="pbx_unique_platform_name"
            ),
            models.UniqueConstraint(fields=["owner", "name"], name="pbx_unique_owner_name"),
            models.CheckConstraint(
                condition=(Q(password_env="") & ~Q(password_encrypted=""))
                | (~Q(password_env="") & Q(password_encrypted="")),
                name="pbx_exactly_one_password_source",
                violation_error_message="Set exactly one ARI password source: env var or stored.",
            ),
            models.CheckConstraint(
                condition=Q(owner__isnull=True) | Q(password_env=""),
                name="pbx_own_password_is_stored",
                violation_error_message="A tenant's own PBX keeps its password stored (encrypted), never "
                "in an environment variable.",
            ),
            models.CheckConstraint(condition=Q(max_channels__gte=1), name="pbx_max_channels_gte_1"),
            models.CheckConstraint(condition=Q(calls_per_second__gte=1), name="pbx_calls_per_second_gte_1"),
        ]

    def __str__(self) -> str:
        return self.name if self.owner_id is None else f"{self.name} (own PBX of tenant {self.owner_id})"

    @property
    def is_platform(self) -> bool:
        return self.owner_id is None


class PbxPlacement(models.Model):
    """A tenant may place calls on a PBX: the platform's placing it there, or its own PBX. ``max_channels``
    is the tenant's share of the PBX's channels (empty: no share of its own beyond its concurrency cap)."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="pbx_placements")
    pbx = models.ForeignKey(Pbx, on_delete=models.CASCADE, related_name="placements")
    max_channels = models.PositiveIntegerField(
        null=True, blank=True, help_text="The tenant's share of the PBX's channels (empty: no share)."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["tenant", "pbx"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "pbx"], name="pbxplacement_unique_tenant_pbx"),
            models.CheckConstraint(
                condition=Q(max_channels__isnull=True) | Q(max_channels__gte=1),
                name="pbxplacement_max_channels_gte_1",
            ),
        ]

    def __str__(self) -> str:
        return f"tenant {self.tenant_id} on PBX {self.pbx_id}"


class TurnDetection(models.TextChoices):
    """How the Realtime session decides the caller finished speaking (the media worker's session.update);
    ``AgentProfile.TurnDetection``."""

    SERVER_VAD = "server_vad", "Server VAD (silence-based)"
    SEMANTIC_VAD = "semantic_vad", "Semantic VAD (meaning-based)"


class AgentProfile(models.Model):
    """What the AI agent is told and how it sounds. ``instructions`` may use ``{{variables}}`` from the
    contact (see campaigns/prompts.py)."""

    TurnDetection = TurnDetection

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="agent_profiles")
    name = models.CharField(max_length=100)
    instructions = models.TextField()
    greeting = models.TextField(blank=True)
    voice = models.CharField(max_length=50, default="alloy")
    model = models.CharField(max_length=100, default="gpt-realtime")
    language = models.CharField(max_length=16, default="en")
    tools = models.JSONField(default=default_tools, blank=True, help_text="Tool names, see AGENT_TOOLS.")
    transfer_numbers = models.JSONField(default=list, blank=True, help_text="E.164 numbers for transfers.")
    turn_detection = models.CharField(
        max_length=16, choices=TurnDetection.choices, default=TurnDetection.SERVER_VAD
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["tenant", "name"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "name"], name="agentprofile_unique_tenant_name"),
            models.CheckConstraint(
                condition=Q(turn_detection__in=TurnDetection.values),
                name="agentprofile_turn_detection_valid",
            ),
        ]

    def __str__(self) -> str:
        return self.name


class ConsentKind(models.TextChoices):
    """Prior express consent (TCPA): written consent is the stronger kind and satisfies both."""

    PRIOR_EXPRESS = "prior_express", "Prior express consent"
    PRIOR_EXPRESS_WRITTEN = "prior_express_written", "Prior express written consent"


class Campaign(models.Model):
    class Status(models.TextChoices):
        DRAFT = "draft", "Draft"
        RUNNING = "running", "Running"
        PAUSED = "paused", "Paused"
        COMPLETED = "completed", "Completed"
        ARCHIVED = "archived", "Archived"

    class RecordingMode(models.TextChoices):
        NEVER = "never", "Never"
        ALWAYS = "always", "Every call"
        AFTER_CONSENT = "after_consent", "Only after the callee consents"

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="campaigns")
    agent = models.ForeignKey(AgentProfile, on_delete=models.PROTECT, related_name="campaigns")
    name = models.CharField(max_length=200)
    caller_id = models.CharField(max_length=E164_MAX_LENGTH, help_text="E.164 number presented to callees.")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.DRAFT)
    calling_windows = models.JSONField(
        default=default_calling_windows,
        help_text='Callee-local hours per weekday, e.g. {"mon": [["09:00", "17:00"]]}.',
    )
    starts_at = models.DateTimeField(null=True, blank=True)
    ends_at = models.DateTimeField(null=True, blank=True)
    max_concurrent_calls = models.PositiveIntegerField(default=1)
    max_attempts = models.PositiveIntegerField(default=3)
    retry_delays = models.JSONField(
        default=default_retry_delays, help_text="Outcome → seconds before a retry."
    )
    ring_timeout = models.PositiveIntegerField(default=30, help_text="Seconds to ring before giving up.")
    priority = models.IntegerField(default=0, help_text="Higher runs first.")
    # Compliance (TCPA): dial only contacts with a valid prior express consent (ContactConsent) of at least
    # this kind; and what the agent says first (FCC 2024: an AI voice is an "artificial voice").
    requires_prior_consent = models.BooleanField(
        default=False, help_text="Dial only contacts with a valid prior express consent."
    )
    prior_consent_kind = models.CharField(
        max_length=32,
        choices=ConsentKind.choices,
        default=ConsentKind.PRIOR_EXPRESS,
        help_text="The least consent that counts (written consent also satisfies plain express consent).",
    )
    disclosure = models.TextField(
        default=DEFAULT_DISCLOSURE,
        help_text='Said first on every call; "{company}" is the tenant\'s name. Recording notice appended.',
    )
    recording_mode = models.CharField(
        max_length=16,
        choices=RecordingMode.choices,
        default=RecordingMode.NEVER,
        help_text="Record calls (both sides, mixed): never, always, or only once the callee consents.",
    )
    recording_retention_days = models.PositiveIntegerField(
        default=90,
        validators=[MinValueValidator(1), MaxValueValidator(MAX_RECORDING_RETENTION_DAYS)],
        help_text="Days a call recording is kept; it is deleted after that.",
    )
    # Answering-machine detection and voicemail (campaigns/amd.py).
    amd_enabled = models.BooleanField(
        default=False, help_text="Run Asterisk's AMD() on every answered call before the agent speaks."
    )
    amd_settings = models.JSONField(
        default=dict, blank=True, help_text="AMD() thresholds (ms); missing ones keep Asterisk's defaults."
    )
    amd_notsure_action = models.CharField(
        max_length=16,
        choices=[("human", "Treat as a person"), ("machine", "Treat as a machine")],
        default="human",
        help_text="What NOTSURE (too long) and initial-silence results count as.",
    )
    voicemail_action = models.CharField(
        max_length=16,
        choices=[("hang_up", "Hang up"), ("leave_message", "Leave a message")],
        default="hang_up",
    )
    voicemail_message_text = models.TextField(
        blank=True, help_text="What the agent says after the beep (when no recorded message is set)."
    )
    # The recorded message (its audio in VoicemailAudio, not loaded with every campaign): its sha256 names it
    # in Redis for the media worker; blank when there is none.
    voicemail_audio_sha256 = models.CharField(max_length=64, blank=True, editable=False)
    voicemail_audio_seconds = models.FloatField(null=True, blank=True, editable=False)
    result_fields = models.JSONField(
        default=list,
        blank=True,
        help_text="What each call should find out: [{name, type, choices, required, description}] "
        "(campaigns/results.py); the agent's save_results tool and the summary pass fill them.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["tenant", "-priority", "name"]
        indexes = [models.Index(fields=["status", "-priority"], name="campaign_status_priority")]
        constraints = [
            models.CheckConstraint(
                condition=Q(max_concurrent_calls__gte=1), name="campaign_max_concurrent_calls_gte_1"
            ),
            models.CheckConstraint(condition=Q(max_attempts__gte=1), name="campaign_max_attempts_gte_1"),
            models.CheckConstraint(condition=Q(ring_timeout__gte=1), name="campaign_ring_timeout_gte_1"),
            models.CheckConstraint(
                condition=Q(starts_at__isnull=True)
                | Q(ends_at__isnull=True)
                | Q(ends_at__gt=models.F("starts_at")),
                name="campaign_ends_after_start",
            ),
            models.CheckConstraint(
                condition=Q(status__in=["draft", "running", "paused", "completed", "archived"]),
                name="campaign_status_valid",
            ),
        ]

    def __str__(self) -> str:
        return self.name


class VoicemailAudio(models.Model):
    """A campaign's recorded voicemail message, as the media worker plays it: raw 16-bit mono PCM at 24 kHz,
    at most 60 s (campaigns/amd.py). Apart from the campaign so that reading a campaign never loads it."""

    campaign = models.OneToOneField(Campaign, on_delete=models.CASCADE, related_name="voicemail_audio")
    pcm = models.BinaryField()
    sha256 = models.CharField(max_length=64)
    seconds = models.FloatField()
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"voicemail message of {self.campaign_id} ({self.seconds:.1f} s)"


class Contact(models.Model):
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="contacts")
    phone_number = models.CharField(max_length=E164_MAX_LENGTH, help_text="E.164, e.g. +14155550123.")
    name = models.CharField(max_length=CONTACT_NAME_MAX_LENGTH, blank=True)
    timezone = models.CharField(
        max_length=64,
        blank=True,
        validators=[validate_timezone],
        help_text="IANA name; blank when the number's zone is ambiguous or unknown.",
    )
    variables = models.JSONField(default=dict, blank=True, help_text="Template variables (text → text).")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["tenant", "phone_number"]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "phone_number"], name="contact_unique_tenant_phone_number"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} {self.phone_number}".strip()


class ContactConsent(models.Model):
    """A contact's prior express consent to be called (TCPA), with where and when it was given.

    Valid while not revoked and captured no later than now; a campaign with ``requires_prior_consent`` dials
    only contacts with a valid one of at least its ``prior_consent_kind`` (campaigns.selectors.consent_*).
    Revoking keeps the row (the record of what was held when)."""

    Kind = ConsentKind

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="contact_consents")
    contact = models.ForeignKey(Contact, on_delete=models.CASCADE, related_name="consents")
    kind = models.CharField(max_length=32, choices=ConsentKind.choices, default=ConsentKind.PRIOR_EXPRESS)
    source = models.CharField(max_length=200, help_text='Where it was given, e.g. "web form example.com/x".')
    captured_at = models.DateTimeField(help_text="When the callee gave it.")
    evidence = models.TextField(blank=True, help_text="e.g. the form's text, an IP address, a recording id.")
    revoked_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["contact", "-captured_at", "pk"]
        indexes = [
            # The dispatcher's claim asks "has this contact a valid consent" for every lead it reads.
            models.Index(
                fields=["contact", "kind"], condition=Q(revoked_at__isnull=True), name="consent_valid_contact"
            ),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(kind__in=["prior_express", "prior_express_written"]), name="consent_kind_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} for {self.contact_id} ({self.source})"


class Lead(models.Model):
    """A contact in a campaign: the unit the dispatcher schedules."""

    class Status(models.TextChoices):
        WAITING = "waiting", "Waiting"  # due at next_due_at
        IN_ATTEMPT = "in_attempt", "In attempt"  # exactly one live CallAttempt
        DONE = "done", "Done"  # see done_reason
        SUPPRESSED = "suppressed", "Suppressed"  # never dialable (DNC, invalid, removed)

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="leads")
    contact = models.ForeignKey(Contact, on_delete=models.CASCADE, related_name="leads")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.WAITING)
    attempts = models.PositiveIntegerField(default=0)
    next_due_at = models.DateTimeField(null=True, blank=True)
    last_outcome = models.CharField(max_length=32, choices=_OUTCOME_CHOICES, blank=True)
    done_reason = models.CharField(max_length=64, blank=True)
    wait_reason = models.CharField(
        max_length=32,
        blank=True,
        help_text="Why a waiting lead is due later: the outcome it retries after, callback, outside_window.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["campaign", "next_due_at", "pk"]
        indexes = [
            # The sweep: due waiting leads across campaigns, and within one campaign.
            models.Index(fields=["status", "next_due_at"], name="lead_status_due"),
            models.Index(fields=["campaign", "status", "next_due_at"], name="lead_campaign_status_due"),
        ]
        constraints = [
            models.UniqueConstraint(fields=["campaign", "contact"], name="lead_unique_campaign_contact"),
            models.CheckConstraint(
                condition=Q(status__in=["waiting", "in_attempt", "done", "suppressed"]),
                name="lead_status_valid",
            ),
            # Rule 3: a waiting lead always has a due time, or no sweep would ever pick it up.
            models.CheckConstraint(
                condition=~Q(status="waiting") | Q(next_due_at__isnull=False),
                name="lead_waiting_has_next_due_at",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.contact.phone_number} in {self.campaign} ({self.status})"


class ContactImport(models.Model):
    """A CSV import too large to run within its request (more rows than ``IMPORT_INLINE_MAX_ROWS``):
    the upload, kept until the import ends, its progress and, when done, the same report an inline import
    answers (campaigns/services/imports.py). A worker writes it in batches, each committed with the
    counts so far, so a run that crashed resumes after the last committed batch."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="contact_imports")
    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="contact_imports")
    created_by = models.CharField(max_length=150, blank=True, help_text="Who uploaded it (user or API key).")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    # The uploaded file as sent; emptied when the import ends. Never logged nor shown by the API.
    data = models.BinaryField(editable=False)
    rows_total = models.PositiveIntegerField(help_text="Rows of the file (blank lines not counted).")
    rows_done = models.PositiveIntegerField(default=0, help_text="Rows refused or written so far.")
    # Written rows so far, by what became of them (the report's created/updated/unchanged).
    leads_created = models.PositiveIntegerField(default=0)
    leads_updated = models.PositiveIntegerField(default=0)
    leads_unchanged = models.PositiveIntegerField(default=0)
    report = models.JSONField(null=True, blank=True, help_text="The import's report, once done.")
    error = models.TextField(blank=True, help_text="Why the import failed.")
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        indexes = [models.Index(fields=["tenant", "-created_at"], name="contactimport_tenant_created")]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=["queued", "running", "done", "failed"]),
                name="contactimport_status_valid",
            ),
        ]

    def __str__(self) -> str:
        return f"import {self.pk} into {self.campaign_id} ({self.status})"


class DncEntry(models.Model):
    """A number the tenant must never call (do-not-call list)."""

    class Source(models.TextChoices):
        API = "api", "API"
        CSV = "csv", "CSV import"
        AGENT = "agent", "Agent (during a call)"
        OPT_OUT = "opt_out", "Opt-out (SMS reply, keypress)"
        ADMIN = "admin", "Admin"

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="dnc_entries")
    phone_number = models.CharField(max_length=E164_MAX_LENGTH)
    source = models.CharField(max_length=16, choices=Source.choices)
    note = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["tenant", "phone_number"]
        verbose_name = "DNC entry"
        verbose_name_plural = "DNC entries"
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "phone_number"], name="dncentry_unique_tenant_phone_number"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.phone_number} ({self.source})"


class AttemptDisposition(models.TextChoices):
    """What the agent concluded about a call (the set_disposition tool); ``CallAttempt.Disposition``."""

    INTERESTED = "interested", "Interested"
    NOT_INTERESTED = "not_interested", "Not interested"
    CALLBACK_REQUESTED = "callback_requested", "Callback requested"
    WRONG_NUMBER = "wrong_number", "Wrong number"
    VOICEMAIL = "voicemail", "Voicemail"
    DO_NOT_CALL = "do_not_call", "Do not call"
    OTHER = "other", "Other"


class CallAttempt(models.Model):
    """One call placed (or about to be placed) for a lead. The id is the ARI channelId, so a repeated
    originate of the same attempt is refused by the PBX (409) instead of dialing twice.

    The fields after ``error`` are what the AI agent's call left behind, written by the media worker's
    Celery tasks (campaigns.services.agent_actions) and the Stasis sink (a transfer)."""

    Disposition = AttemptDisposition

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # Denormalised from the campaign so live-call counts per tenant are one index scan.
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="call_attempts")
    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="call_attempts")
    lead = models.ForeignKey(Lead, on_delete=models.CASCADE, related_name="call_attempts")
    pbx = models.ForeignKey(
        Pbx, null=True, blank=True, on_delete=models.SET_NULL, related_name="call_attempts"
    )
    number = models.CharField(max_length=E164_MAX_LENGTH, help_text="The E.164 number dialed.")
    state = models.CharField(
        max_length=16,
        choices=[(state.value, state.value) for state in AttemptState],
        default=AttemptState.QUEUED.value,
    )
    outcome = models.CharField(max_length=32, choices=_OUTCOME_CHOICES, blank=True)
    queued_at = models.DateTimeField(default=timezone.now)
    originated_at = models.DateTimeField(null=True, blank=True)
    originate_sent_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="When the originate request was sent, before its answer came: a later run of the "
        "originate task that finds this set asks the PBX about the channel instead of dialing again.",
    )
    ringing_at = models.DateTimeField(null=True, blank=True)
    answered_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    cause = models.IntegerField(null=True, blank=True, help_text="Q.850 hangup cause.")
    cause_txt = models.CharField(max_length=100, blank=True)
    dialstatus = models.CharField(max_length=32, blank=True)
    tech_cause = models.IntegerField(null=True, blank=True, help_text="e.g. the SIP status code.")
    duration_s = models.FloatField(null=True, blank=True)
    error = models.TextField(blank=True)
    transcript = models.JSONField(
        default=list, blank=True, help_text='Turns: [{"role": "agent"|"caller"|"system", "text", "at"}].'
    )
    media_metrics = models.JSONField(
        default=dict, blank=True, help_text="The media worker's figures for the call, and its errors."
    )
    disposition = models.CharField(max_length=32, choices=Disposition.choices, blank=True)
    callback_at = models.DateTimeField(
        null=True, blank=True, help_text="The callee asked to be called back then: the lead is due then."
    )
    transferred_to = models.CharField(
        max_length=E164_MAX_LENGTH, blank=True, help_text="The E.164 number the call was transferred to."
    )
    # Who answered: Asterisk's AMD() (amd_status/amd_cause as it set AMDSTATUS/AMDCAUSE) and the media
    # worker's second opinion (a beep, a voicemail greeting); machine_source says which decided "machine".
    answered_by = models.CharField(
        max_length=8,
        blank=True,
        choices=[("human", "Human"), ("machine", "Machine"), ("unknown", "Unknown")],
    )
    amd_status = models.CharField(max_length=16, blank=True)
    amd_cause = models.CharField(max_length=64, blank=True)
    machine_source = models.CharField(
        max_length=8, blank=True, choices=[("amd", "AMD"), ("beep", "Beep"), ("greeting", "Greeting")]
    )
    voicemail_left_at = models.DateTimeField(
        null=True, blank=True, help_text="When the campaign's voicemail message finished playing."
    )
    results = models.JSONField(
        default=dict, blank=True, help_text="The campaign's result fields as this call filled them."
    )
    results_source = models.JSONField(
        default=dict, blank=True, help_text='Who filled each result: "agent" (during the call) or "summary".'
    )
    summary = models.TextField(blank=True, help_text="A short summary of the call (the summary pass).")
    summarized_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-queued_at"]
        indexes = [
            models.Index(fields=["tenant", "state"], name="attempt_tenant_state"),
            models.Index(fields=["campaign", "state"], name="attempt_campaign_state"),
            models.Index(fields=["pbx", "state"], name="attempt_pbx_state"),
            # The dispatch pass counts the live attempts of a tenant (per campaign) and of its PBXs on every
            # call: these stay as small as the live calls, however many ended attempts the table holds.
            models.Index(
                fields=["tenant", "campaign"],
                condition=Q(state__in=_LIVE_STATE_VALUES),
                name="attempt_live_tenant_campaign",
            ),
            models.Index(fields=["pbx"], condition=Q(state__in=_LIVE_STATE_VALUES), name="attempt_live_pbx"),
            # The 30-day abandonment rate of a campaign (campaigns.selectors.campaign_abandonment_rates).
            models.Index(
                fields=["campaign", "answered_at"],
                condition=Q(answered_at__isnull=False),
                name="attempt_campaign_answered",
            ),
        ]
        constraints = [
            # DESIGN.md §5 rule 2: one live attempt per lead, enforced by a partial unique index.
            models.UniqueConstraint(
                fields=["lead"],
                condition=Q(state__in=_LIVE_STATE_VALUES),
                name="attempt_one_live_per_lead",
                violation_error_message="This lead already has a live call attempt.",
            ),
            models.CheckConstraint(
                condition=Q(disposition__in=["", *AttemptDisposition.values]),
                name="attempt_disposition_valid",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.number} {self.state}{f' ({self.outcome})' if self.outcome else ''}"

    @property
    def is_live(self) -> bool:
        return self.state in _LIVE_STATE_VALUES


class AttemptEvent(models.Model):
    """Append-only log of what happened to an attempt: raw ARI events, state changes, notes."""

    class Kind(models.TextChoices):
        ARI = "ari", "ARI event"
        STATE = "state", "State change"
        NOTE = "note", "Note"

    attempt = models.ForeignKey(CallAttempt, on_delete=models.CASCADE, related_name="events")
    at = models.DateTimeField(default=timezone.now)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    type = models.CharField(max_length=100, help_text='e.g. "StasisStart" or "dialing->ringing".')
    data = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["attempt", "at", "pk"]
        indexes = [models.Index(fields=["attempt", "at"], name="attemptevent_attempt_at")]

    def __str__(self) -> str:
        return f"{self.kind} {self.type}"


# Transfers live in their own module of this app; imported here so Django registers their models.
from campaigns.models_transfers import (  # noqa: E402, F401
    CallTransfer,
    CampaignTransferTarget,
    TransferTarget,
    TransferTargetMember,
)
