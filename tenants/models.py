"""Tenancy: tenants, who belongs to them (and with which role), and their API keys.

Limits that the dispatcher enforces (DESIGN.md §5 rule 1) live on the tenant: ``max_concurrent_calls`` is
the hard cap of live calls, ``inbound_reserve`` of which are kept free for inbound calls, and
``calls_per_second`` bounds how fast originates are sent.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q

from tenants.validators import validate_timezone


class Tenant(models.Model):
    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        SUSPENDED = "suspended", "Suspended"  # no calls, no API access

    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=64, unique=True)
    default_timezone = models.CharField(max_length=64, default="UTC", validators=[validate_timezone])
    max_concurrent_calls = models.PositiveIntegerField(default=5)
    calls_per_second = models.PositiveIntegerField(default=5)
    inbound_reserve = models.PositiveIntegerField(
        default=0, help_text="Calls of max_concurrent_calls kept free for inbound calls."
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    allow_own_pbx = models.BooleanField(
        default=False,
        help_text="The operator lets this tenant bring its own PBX (its ARI URL passes the URL policy; "
        "its password is stored encrypted). Otherwise it calls through the platform's PBXs only.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=Q(max_concurrent_calls__gte=1), name="tenant_max_concurrent_calls_gte_1"
            ),
            models.CheckConstraint(
                condition=Q(calls_per_second__gte=1), name="tenant_calls_per_second_gte_1"
            ),
            models.CheckConstraint(
                condition=Q(inbound_reserve__lt=models.F("max_concurrent_calls")),
                name="tenant_inbound_reserve_lt_max_concurrent_calls",
                violation_error_message="The inbound reserve must be below the concurrent call cap.",
            ),
            models.CheckConstraint(
                condition=Q(status__in=["active", "suspended"]), name="tenant_status_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.slug})"

    @property
    def is_active(self) -> bool:
        return self.status == self.Status.ACTIVE


class Membership(models.Model):
    class Role(models.TextChoices):
        OWNER = "owner", "Owner"
        ADMIN = "admin", "Admin"
        MANAGER = "manager", "Manager"  # runs campaigns, calls, contacts and flows; no tenant settings
        VIEWER = "viewer", "Viewer"

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.VIEWER)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["tenant", "user"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "user"], name="membership_unique_tenant_user"),
            models.CheckConstraint(
                condition=Q(role__in=["owner", "admin", "manager", "viewer"]), name="membership_role_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.user} is {self.role} of {self.tenant.slug}"


class ApiKey(models.Model):
    """A tenant's API key. Only a hash is stored; the raw key (``vco_<prefix><rest>``) is shown once.

    ``key_hash`` is a plain SHA-256 of the raw key, not a slow password hash (PBKDF2, Argon2): the key is 32
    random bytes from ``secrets.token_urlsafe``, so it has 256 bits of entropy and cannot be guessed or
    brute-forced from its hash, which is all that key stretching protects against for low-entropy human
    passwords. A fast hash keeps authentication, done on every API request, cheap. ``prefix`` (the eight
    characters after ``vco_``) finds the candidate row without a full-table scan and lets people tell keys
    apart in lists; it is not secret.
    """

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=8, db_index=True)
    key_hash = models.CharField(max_length=64, unique=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["tenant", "-created_at"]
        verbose_name = "API key"

    def __str__(self) -> str:
        state = " (revoked)" if self.revoked_at else ""
        return f"{self.name} vco_{self.prefix}…{state}"


class Invitation(models.Model):
    """An invitation to join a tenant with a role, sent by e-mail as a link carrying a random token. Only the
    token's SHA-256 is stored (as for API keys); it works once, until ``expires_at``."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="invitations")
    email = models.EmailField()
    role = models.CharField(max_length=16, choices=Membership.Role.choices, default=Membership.Role.VIEWER)
    token_hash = models.CharField(max_length=64, unique=True)
    invited_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    accepted_at = models.DateTimeField(null=True, blank=True)
    accepted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["tenant", "-created_at"]

    def __str__(self) -> str:
        return f"{self.email} invited to {self.tenant.slug} as {self.role}"


class AuditEntry(models.Model):
    """Who changed what in a tenant: one row per successful change made in the portal or the API.

    ``actor_label`` keeps the user name or API key name as it was, so the entry still reads after the user
    or key is gone."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="audit_entries")
    at = models.DateTimeField(auto_now_add=True, db_index=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    actor_label = models.CharField(max_length=200)
    via = models.CharField(max_length=16, help_text="portal or api")
    action = models.CharField(max_length=100, help_text='e.g. "campaign.start" or "POST /api/v1/dnc"')
    target = models.CharField(max_length=200, blank=True, help_text='e.g. "campaign 12 (Spring promo)"')
    detail = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-at", "-pk"]
        indexes = [models.Index(fields=["tenant", "-at"], name="audit_tenant_at")]
        verbose_name_plural = "audit entries"

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M} {self.actor_label} {self.action} {self.target}"
