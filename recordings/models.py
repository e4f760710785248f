"""A call's recording: where its file is, what it is, and until when it is kept."""

from __future__ import annotations

from django.db import models
from django.db.models import Q

from campaigns.models import CallAttempt
from tenants.models import Tenant


class Recording(models.Model):
    """One mixed bridge recording of a call (both sides), named on the PBX ``rec-<attempt id>``.

    ``pending``: finished on the PBX, its file not fetched yet; ``stored``: the file is in the recordings
    storage under ``storage_key``; ``failed``: it could not be had (``error`` says why); ``deleted``: past
    its retention (or removed), file gone, the row kept as the record that it existed.
    """

    class State(models.TextChoices):
        PENDING = "pending", "Pending"
        STORED = "stored", "Stored"
        FAILED = "failed", "Failed"
        DELETED = "deleted", "Deleted"

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="recordings")
    attempt = models.ForeignKey(CallAttempt, on_delete=models.CASCADE, related_name="recordings")
    name = models.CharField(max_length=200, unique=True, help_text="The stored recording's name on the PBX.")
    state = models.CharField(max_length=16, choices=State.choices, default=State.PENDING)
    storage_key = models.CharField(max_length=500, blank=True)
    format = models.CharField(max_length=16, default="wav")
    duration = models.FloatField(null=True, blank=True, help_text="Seconds.")
    size = models.PositiveBigIntegerField(null=True, blank=True, help_text="Bytes.")
    sha256 = models.CharField(max_length=64, blank=True)
    error = models.CharField(max_length=300, blank=True)
    fetch_tries = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    stored_at = models.DateTimeField(null=True, blank=True)
    delete_after = models.DateTimeField(help_text="The campaign's retention ends: the sweep deletes it.")
    deleted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        indexes = [
            models.Index(fields=["tenant", "attempt"], name="recording_tenant_attempt"),
            # The retention sweep: live rows whose time is up.
            models.Index(
                fields=["delete_after"], name="recording_due_delete", condition=Q(deleted_at__isnull=True)
            ),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(state__in=["pending", "stored", "failed", "deleted"]),
                name="recording_state_valid",
            ),
        ]

    def __str__(self) -> str:
        return self.name
