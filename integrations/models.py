"""Webhook endpoints of a tenant and the delivery outbox.

A :class:`WebhookDelivery` is written in the same transaction as the event it reports (the outbox
pattern): it exists exactly when the event happened. Its id is the ``Webhook-Id`` header, the same on
every retry, so the receiver can drop a repeat. It is ``pending`` (due at ``next_attempt_at``) until the
receiver answers 2xx (``delivered``) or the attempts run out (``failed``); "redeliver" makes it pending
again.
"""

from __future__ import annotations

import uuid

from django.db import models
from django.db.models import Q
from django.utils import timezone

from tenants.models import Tenant

URL_MAX_LENGTH = 2000
EXCERPT_MAX_LENGTH = 1000


class WebhookEndpoint(models.Model):
    """Where a tenant wants its events posted. The URL passes the operator's URL policy
    (tenants/urlpolicy.py) when saved and again at every delivery; the secret is stored encrypted
    (orchestrator/crypto.py) and shown once, when created or rotated."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="webhook_endpoints")
    url = models.URLField(max_length=URL_MAX_LENGTH)
    description = models.CharField(max_length=200, blank=True)
    event_types = models.JSONField(default=list, blank=True, help_text="Event types to send; empty: all.")
    enabled = models.BooleanField(default=True)
    secret_encrypted = models.TextField(editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["tenant", "pk"]
        indexes = [models.Index(fields=["tenant", "enabled"], name="webhookendpoint_tenant_enabled")]

    def __str__(self) -> str:
        return self.url

    def wants(self, event_type: str) -> bool:
        return self.enabled and (not self.event_types or event_type in self.event_types)


class WebhookDelivery(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        DELIVERED = "delivered", "Delivered"
        FAILED = "failed", "Failed"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="webhook_deliveries")
    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries")
    event_type = models.CharField(max_length=64)
    event_id = models.UUIDField(
        default=uuid.uuid4, help_text="The event's id (one event, several endpoints)."
    )
    payload = models.JSONField(help_text="The request body, as sent.")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True, default=timezone.now)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    last_status_code = models.PositiveIntegerField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    response_excerpt = models.TextField(blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-pk"]
        verbose_name_plural = "webhook deliveries"
        indexes = [
            models.Index(fields=["tenant", "-created_at"], name="webhookdelivery_tenant_created"),
            models.Index(fields=["created_at"], name="webhookdelivery_created"),  # the log's pruning
            # The sweep: pending deliveries by due time.
            models.Index(
                fields=["next_attempt_at"], condition=Q(status="pending"), name="webhookdelivery_due"
            ),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=["pending", "delivered", "failed"]),
                name="webhookdelivery_status_valid",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.event_type} → {self.endpoint_id} ({self.status})"
