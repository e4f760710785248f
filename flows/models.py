"""Inbound calls: calls that entered the Stasis app from the dialplan (``Stasis(app,inbound,<DID>)``).

Today no inbound flow routes them: the Stasis app answers, plays a message saying the number cannot take
the call, and hangs up, and each call is recorded here so that nothing reaches the PBX unseen. The
after-hours flows (numbers owned by tenants, business hours, on-call escalation) will route them.
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q


class InboundCall(models.Model):
    class Status(models.TextChoices):
        LIVE = "live", "Live"
        ENDED = "ended", "Ended"

    class Handling(models.TextChoices):
        UNROUTED = "unrouted", "Not routed: told and hung up"

    channel_id = models.CharField(max_length=150, unique=True, help_text="The caller's ARI channel id.")
    did = models.CharField(max_length=64, blank=True, help_text="The number that was called.")
    caller_number = models.CharField(max_length=64, blank=True)
    caller_name = models.CharField(max_length=200, blank=True)
    handling = models.CharField(max_length=16, choices=Handling.choices, default=Handling.UNROUTED)
    message = models.CharField(max_length=200, blank=True, help_text="What the caller was played.")
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.LIVE)
    started_at = models.DateTimeField()
    ended_at = models.DateTimeField(null=True, blank=True)
    end_reason = models.CharField(max_length=32, blank=True)
    # The PBX row whose Stasis app took the call (its reconciliation closes it). A plain id: the PBX rows
    # belong to the outbound side, and this record must outlive them.
    pbx_id = models.IntegerField(null=True, blank=True)

    class Meta:
        ordering = ["-started_at"]
        indexes = [models.Index(fields=["status"], name="inboundcall_status")]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=["live", "ended"]), name="inboundcall_status_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.caller_number or 'unknown'} → {self.did or '?'} ({self.status})"
