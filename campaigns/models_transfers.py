"""Transfers to humans: a campaign's transfer targets and a durable row per transfer.

A target is a number, a queue (a dial string the operator allows, e.g. ``Local/sales@ai-queues``) or a
round-robin group of sales reps, each with a cap on their live transfers. The cap is counted from
:class:`CallTransfer` rows (durable truth, DESIGN.md §5 rule 1): a transfer is live while its state is
``dialing``/``briefing``/``connected`` and its attempt has not ended. The pick happens under a row lock on the
target (``campaigns.services.transfers``). Imported by ``campaigns.models``.
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q

from campaigns.models import E164_MAX_LENGTH, CallAttempt, Campaign
from tenants.models import Tenant

TRANSFER_NAME_MAX_LENGTH = 120
TRANSFER_ENDPOINT_MAX_LENGTH = 200


class TransferKind(models.TextChoices):
    NUMBER = "number", "A number"
    QUEUE = "queue", "A queue"
    GROUP = "group", "A round-robin group of reps"


class TransferMode(models.TextChoices):
    WARM = "warm", "Warm: the agent briefs the human first"
    COLD = "cold", "Cold: the callee goes straight to the human"


class TransferState(models.TextChoices):
    DIALING = "dialing", "Dialing the human"
    BRIEFING = "briefing", "The agent briefs the human"
    CONNECTED = "connected", "Connected"
    DECLINED = "declined", "Declined"
    NO_ANSWER = "no_answer", "No answer"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


#: A transfer in these states holds a slot of its rep (while its attempt lives).
LIVE_TRANSFER_STATES = (TransferState.DIALING, TransferState.BRIEFING, TransferState.CONNECTED)
#: What a transfer may become from each state (the sink applies the Stasis app's reports through it).
TRANSFER_TRANSITIONS: dict[str, frozenset[str]] = {
    TransferState.DIALING: frozenset(
        {"briefing", "connected", "declined", "no_answer", "failed", "cancelled"}
    ),
    TransferState.BRIEFING: frozenset({"connected", "declined", "no_answer", "failed", "cancelled"}),
    TransferState.CONNECTED: frozenset(),
    TransferState.DECLINED: frozenset(),
    TransferState.NO_ANSWER: frozenset(),
    TransferState.FAILED: frozenset(),
    TransferState.CANCELLED: frozenset(),
}


class TransferTarget(models.Model):
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="transfer_targets")
    name = models.CharField(max_length=TRANSFER_NAME_MAX_LENGTH)
    kind = models.CharField(max_length=8, choices=TransferKind.choices, default=TransferKind.NUMBER)
    number = models.CharField(max_length=E164_MAX_LENGTH, blank=True, help_text="E.164 (kind number).")
    endpoint = models.CharField(
        max_length=TRANSFER_ENDPOINT_MAX_LENGTH,
        blank=True,
        help_text="Kind queue: a dial string under one of the operator's allowed prefixes.",
    )
    mode = models.CharField(max_length=8, choices=TransferMode.choices, default=TransferMode.WARM)
    # Round robin: the position of the rep picked last (the next pick starts after it).
    last_position = models.IntegerField(default=-1)
    campaigns: models.ManyToManyField[Campaign, CampaignTransferTarget] = models.ManyToManyField(
        Campaign, through="CampaignTransferTarget", related_name="transfer_targets", blank=True
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["tenant", "name"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "name"], name="transfertarget_tenant_name"),
            models.CheckConstraint(
                condition=Q(kind__in=TransferKind.values), name="transfertarget_kind_valid"
            ),
            models.CheckConstraint(
                condition=Q(mode__in=TransferMode.values), name="transfertarget_mode_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.kind}, {self.mode})"


class TransferTargetMember(models.Model):
    """A sales rep of a group target."""

    target = models.ForeignKey(TransferTarget, on_delete=models.CASCADE, related_name="members")
    name = models.CharField(max_length=TRANSFER_NAME_MAX_LENGTH)
    number = models.CharField(max_length=E164_MAX_LENGTH)
    max_concurrent = models.PositiveIntegerField(default=1, help_text="Live transfers at most.")
    position = models.PositiveIntegerField(default=0)
    enabled = models.BooleanField(default=True)

    class Meta:
        ordering = ["target", "position", "pk"]
        constraints = [
            models.CheckConstraint(condition=Q(max_concurrent__gte=1), name="transfermember_cap_gte_1"),
        ]

    def __str__(self) -> str:
        return f"{self.name} {self.number}"


class CampaignTransferTarget(models.Model):
    """A campaign's targets, in order (the first is the agent's default)."""

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="transfer_target_links")
    target = models.ForeignKey(TransferTarget, on_delete=models.CASCADE, related_name="campaign_links")
    position = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["campaign", "position", "pk"]
        constraints = [
            models.UniqueConstraint(fields=["campaign", "target"], name="campaigntransfertarget_unique"),
        ]


class CallTransfer(models.Model):
    """One transfer of a call to a human: who was picked, and what became of it."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="call_transfers")
    attempt = models.ForeignKey(CallAttempt, on_delete=models.CASCADE, related_name="transfers")
    target = models.ForeignKey(
        TransferTarget, null=True, blank=True, on_delete=models.SET_NULL, related_name="transfers"
    )
    member = models.ForeignKey(
        TransferTargetMember, null=True, blank=True, on_delete=models.SET_NULL, related_name="transfers"
    )
    number = models.CharField(max_length=E164_MAX_LENGTH, blank=True)
    endpoint = models.CharField(max_length=TRANSFER_ENDPOINT_MAX_LENGTH, blank=True)
    mode = models.CharField(max_length=8, choices=TransferMode.choices)
    state = models.CharField(max_length=16, choices=TransferState.choices, default=TransferState.DIALING)
    reason = models.CharField(max_length=64, blank=True)
    summary = models.TextField(blank=True, help_text="Why the agent asked for a human.")
    created_at = models.DateTimeField(auto_now_add=True)
    answered_at = models.DateTimeField(null=True, blank=True, help_text="The human answered (briefing).")
    connected_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True, help_text="It did not happen (declined & co.).")

    class Meta:
        ordering = ["attempt", "created_at", "pk"]
        indexes = [
            models.Index(
                fields=["member"],
                condition=Q(state__in=["dialing", "briefing", "connected"]),
                name="calltransfer_live_member",
            ),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(state__in=TransferState.values), name="calltransfer_state_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.number or self.endpoint} {self.mode} {self.state}"
