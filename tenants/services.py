"""Writes for tenancy: tenants, memberships, API keys. Keyword-only ``<entity>_<action>`` functions."""

from __future__ import annotations

import hashlib
import secrets
from typing import TYPE_CHECKING

from django.db import transaction
from django.utils import timezone

from orchestrator.errors import InvalidInput, full_clean_or_raise
from tenants.models import ApiKey, AuditEntry, Membership, Tenant
from tenants.validators import is_timezone_name

if TYPE_CHECKING:
    # The configured user model: django-stubs resolves AUTH_USER_MODEL to this for type checking.
    from django.contrib.auth.models import User

API_KEY_MARKER = "vco_"
API_KEY_PREFIX_LENGTH = 8
# secrets.token_urlsafe(32): 32 random bytes, 43 URL-safe characters.
API_KEY_RANDOM_BYTES = 32


def api_key_hash(raw_key: str) -> str:
    """SHA-256 hex of the whole raw key; see ApiKey's docstring for why a fast hash is right here."""
    return hashlib.sha256(raw_key.encode()).hexdigest()


def tenant_create(
    *,
    name: str,
    slug: str,
    owner: User,
    default_timezone: str = "UTC",
    max_concurrent_calls: int = 5,
    calls_per_second: int = 5,
    inbound_reserve: int = 0,
    allow_own_pbx: bool = False,
) -> Tenant:
    """A new active tenant with ``owner`` as its owner member. ``allow_own_pbx``: the operator lets it bring
    its own PBX (otherwise it calls through the platform's PBXs it is placed on)."""
    if not name.strip():
        raise InvalidInput("name", "must not be empty")
    if not is_timezone_name(default_timezone):
        raise InvalidInput("default_timezone", f"{default_timezone!r} is not an IANA time zone name")
    if max_concurrent_calls < 1:
        raise InvalidInput("max_concurrent_calls", "must be at least 1")
    if calls_per_second < 1:
        raise InvalidInput("calls_per_second", "must be at least 1")
    if not 0 <= inbound_reserve < max_concurrent_calls:
        raise InvalidInput("inbound_reserve", "must be at least 0 and smaller than max_concurrent_calls")
    tenant = Tenant(
        name=name.strip(),
        slug=slug,
        default_timezone=default_timezone,
        max_concurrent_calls=max_concurrent_calls,
        calls_per_second=calls_per_second,
        inbound_reserve=inbound_reserve,
        allow_own_pbx=allow_own_pbx,
    )
    full_clean_or_raise(tenant)  # slug format and uniqueness; the unique index decides a race
    with transaction.atomic():
        tenant.save()
        Membership.objects.create(tenant=tenant, user=owner, role=Membership.Role.OWNER)
    return tenant


def membership_add(*, tenant: Tenant, user: User, role: str) -> Membership:
    """Make ``user`` a member of ``tenant`` with ``role``; an existing membership gets the new role."""
    if role not in Membership.Role.values:
        raise InvalidInput("role", f"must be one of {', '.join(Membership.Role.values)}")
    membership, _ = Membership.objects.update_or_create(tenant=tenant, user=user, defaults={"role": role})
    return membership


def api_key_create(*, tenant: Tenant, name: str, created_by: User | None = None) -> tuple[ApiKey, str]:
    """A new API key for ``tenant``: the stored row and the raw key, which is never stored and must be shown
    to the caller now (it cannot be recovered later)."""
    if not name.strip():
        raise InvalidInput("name", "must not be empty")
    token = secrets.token_urlsafe(API_KEY_RANDOM_BYTES)
    raw_key = f"{API_KEY_MARKER}{token}"
    api_key = ApiKey.objects.create(
        tenant=tenant,
        name=name.strip(),
        prefix=token[:API_KEY_PREFIX_LENGTH],
        key_hash=api_key_hash(raw_key),
        created_by=created_by,
    )
    return api_key, raw_key


def api_key_revoke(*, api_key: ApiKey) -> ApiKey:
    """Revoke ``api_key`` (idempotent: a revoked key keeps its first revocation time)."""
    ApiKey.objects.filter(pk=api_key.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
    api_key.refresh_from_db(fields=["revoked_at"])
    return api_key


def tenant_set_allow_own_pbx(*, tenant: Tenant, allowed: bool) -> Tenant:
    """The operator lets the tenant bring its own PBX (or stops it: its own PBXs stay, but it can add none
    and change none; the operator decides about the existing ones)."""
    if tenant.allow_own_pbx != allowed:
        tenant.allow_own_pbx = allowed
        tenant.save(update_fields=["allow_own_pbx"])
    return tenant


AUDIT_TARGET_MAX = 200


def audit_record(
    *,
    tenant: Tenant,
    actor: User | None,
    actor_label: str,
    via: str,
    action: str,
    target: str = "",
    detail: dict[str, object] | None = None,
) -> AuditEntry:
    """Record that ``actor`` (a user, or None for an API key named in ``actor_label``) changed something of
    ``tenant`` through ``via`` (``portal`` or ``api``). Called after the change succeeded."""
    return AuditEntry.objects.create(
        tenant=tenant,
        actor=actor if actor is not None and actor.is_authenticated else None,
        actor_label=actor_label[:200],
        via=via,
        action=action[:100],
        target=target[:AUDIT_TARGET_MAX],
        detail=detail or {},
    )
