"""SMS: a tenant's provider account, its messages (both directions), its opt-out list, and the receipts of
provider webhooks (what makes a provider's retry act once).

**Credentials** (DESIGN.md §5 rule 8) come from exactly one source, as for a PBX's password: an environment
variable named by ``secret_env`` (an operator-only option, set in the admin) or ``secret_encrypted`` (a
Fernet token, orchestrator/crypto.py; what a tenant's own credentials always are). The secret is Twilio's
Auth Token or Telnyx's API key; ``username`` is Twilio's Account SID; ``public_key`` is Telnyx's webhook
public key (Ed25519, base64). ``api_base`` (empty: the platform's setting) must pass the URL policy when a
tenant sets it. ``webhook_id`` is the unguessable part of the account's webhook URLs.
"""

from __future__ import annotations

import uuid

from django.db import models
from django.db.models import Q

from messaging.lifecycle import MessageStatus
from tenants.models import Tenant


class Provider(models.TextChoices):
    CONSOLE = "console", "Console (logs only, sends nothing)"
    TWILIO = "twilio", "Twilio"
    TELNYX = "telnyx", "Telnyx"


class SmsAccount(models.Model):
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="sms_accounts")
    kind = models.CharField(max_length=16, choices=Provider.choices)
    username = models.CharField(
        max_length=100, blank=True, help_text="Twilio: the Account SID (AC...). Telnyx: unused."
    )
    secret_env = models.CharField(
        max_length=100,
        blank=True,
        help_text="Operator only: the environment variable holding the Auth Token / API key.",
    )
    secret_encrypted = models.TextField(blank=True, editable=False)
    public_key = models.CharField(
        max_length=200, blank=True, help_text="Telnyx: the webhook signing public key (base64 Ed25519)."
    )
    messaging_profile_id = models.CharField(max_length=100, blank=True, help_text="Telnyx only, optional.")
    api_base = models.URLField(blank=True, help_text="Empty: the provider's API (or the platform's setting).")
    from_numbers = models.JSONField(
        default=list, blank=True, help_text="E.164 numbers; the first is default."
    )
    webhook_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["tenant", "pk"]
        verbose_name = "SMS account"
        constraints = [
            # One account per tenant: it sends every message of the tenant and owns its webhooks.
            models.UniqueConstraint(fields=["tenant"], name="smsaccount_one_per_tenant"),
            models.CheckConstraint(
                condition=Q(kind__in=["console", "twilio", "telnyx"]), name="smsaccount_kind_valid"
            ),
            models.CheckConstraint(
                condition=Q(secret_env="") | Q(secret_encrypted=""),
                name="smsaccount_one_secret_source",
                violation_error_message="Set at most one secret source: env var or stored.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} account of tenant {self.tenant_id}"


class Message(models.Model):
    class Direction(models.TextChoices):
        OUT = "out", "Outbound"
        IN = "in", "Inbound"

    class Status(models.TextChoices):  # messaging.lifecycle.MessageStatus, as model choices
        QUEUED = "queued", "Queued"
        SENDING = "sending", "Accepted by the provider"
        SENT = "sent", "Sent to the carrier"
        DELIVERED = "delivered", "Delivered"
        UNDELIVERED = "undelivered", "Undelivered"
        FAILED = "failed", "Failed"
        BLOCKED = "blocked", "Blocked (opted out with this tenant)"
        OPTED_OUT = "opted_out", "Refused by the provider: opted out"
        RECEIVED = "received", "Received"

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="messages")
    account = models.ForeignKey(
        SmsAccount, null=True, blank=True, on_delete=models.SET_NULL, related_name="messages"
    )
    direction = models.CharField(max_length=3, choices=Direction.choices)
    to_number = models.CharField(max_length=32)
    from_number = models.CharField(max_length=32, blank=True)
    body = models.TextField()
    provider = models.CharField(max_length=16, choices=Provider.choices)
    provider_message_id = models.CharField(max_length=100, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices)
    error_code = models.CharField(max_length=32, blank=True)
    error_message = models.CharField(max_length=500, blank=True)
    segments = models.PositiveSmallIntegerField(default=1)
    price = models.DecimalField(max_digits=10, decimal_places=5, null=True, blank=True)
    price_unit = models.CharField(max_length=8, blank=True)
    purpose = models.CharField(max_length=32, blank=True, help_text="What the sender uses it for, e.g. page.")
    ref = models.CharField(max_length=200, blank=True, help_text="The sender's reference, e.g. flows.page:7.")
    tries = models.PositiveSmallIntegerField(default=0, help_text="Send tries made so far.")
    next_try_at = models.DateTimeField(null=True, blank=True, help_text="When the next send try is due.")
    created_at = models.DateTimeField(auto_now_add=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        indexes = [
            models.Index(fields=["tenant", "-created_at"], name="message_tenant_created"),
            models.Index(fields=["provider", "provider_message_id"], name="message_provider_id"),
            models.Index(fields=["status", "next_try_at"], name="message_status_next_try"),
            models.Index(fields=["tenant", "ref"], name="message_tenant_ref"),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(direction__in=["out", "in"]), name="message_direction_valid"),
            models.CheckConstraint(
                condition=Q(status__in=[s.value for s in MessageStatus]), name="message_status_valid"
            ),
            # An inbound message is stored once, however often the provider posts it.
            models.UniqueConstraint(
                fields=["provider", "provider_message_id"],
                condition=Q(direction="in"),
                name="message_unique_inbound_provider_id",
            ),
        ]

    def __str__(self) -> str:
        arrow = "→" if self.direction == self.Direction.OUT else "←"
        other = self.to_number if self.direction == self.Direction.OUT else self.from_number
        return f"SMS {arrow} {other} ({self.status})"


class OptOut(models.Model):
    """A number that asked this tenant to stop texting it (STOP), or that a provider says opted out."""

    class Source(models.TextChoices):
        KEYWORD = "keyword", "Replied with a stop keyword"
        PROVIDER = "provider", "The provider refused: opted out"
        API = "api", "Added through the API"
        ADMIN = "admin", "Added by the operator"

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="sms_opt_outs")
    phone_number = models.CharField(max_length=32)
    source = models.CharField(max_length=16, choices=Source.choices)
    keyword = models.CharField(max_length=32, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["tenant", "-created_at"]
        verbose_name = "SMS opt-out"
        constraints = [
            models.UniqueConstraint(fields=["tenant", "phone_number"], name="optout_unique_tenant_number"),
        ]

    def __str__(self) -> str:
        return f"{self.phone_number} opted out of tenant {self.tenant_id}"


class WebhookReceipt(models.Model):
    """One provider webhook, stored by the web process and acted on once by a worker.

    ``event_key`` identifies the event for its account: Twilio's MessageSid for an inbound message,
    ``MessageSid:MessageStatus`` for a status callback; Telnyx's event id. A provider's retry of the same
    event finds its receipt and changes nothing. ``processed_at`` is set in the transaction that applies it.
    """

    class Kind(models.TextChoices):
        INBOUND = "inbound", "Inbound message"
        STATUS = "status", "Status callback"

    account = models.ForeignKey(SmsAccount, on_delete=models.CASCADE, related_name="receipts")
    provider = models.CharField(max_length=16, choices=Provider.choices)
    kind = models.CharField(max_length=8, choices=Kind.choices)
    event_key = models.CharField(max_length=200)
    payload = models.JSONField(default=dict)
    message = models.ForeignKey(
        Message, null=True, blank=True, on_delete=models.SET_NULL, related_name="receipts"
    )
    received_at = models.DateTimeField(auto_now_add=True)
    processed_at = models.DateTimeField(null=True, blank=True)
    tries = models.PositiveSmallIntegerField(default=0)
    outcome = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["-received_at", "-pk"]
        indexes = [models.Index(fields=["processed_at", "received_at"], name="receipt_unprocessed")]
        constraints = [
            models.UniqueConstraint(fields=["account", "event_key"], name="receipt_unique_account_event"),
        ]

    def __str__(self) -> str:
        return f"{self.provider} {self.kind} {self.event_key}"
