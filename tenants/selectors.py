"""Reads for tenancy: API key authentication, a user's tenants and memberships, a tenant's members and
invitations, its audit log."""

from __future__ import annotations

import hmac
from datetime import timedelta
from typing import TYPE_CHECKING

from django.contrib.auth.models import AnonymousUser
from django.db.models import Case, IntegerField, Q, QuerySet, Value, When
from django.utils import timezone

from tenants.models import ApiKey, AuditEntry, Invitation, Membership, Tenant
from tenants.services import (
    API_KEY_MARKER,
    API_KEY_PREFIX_LENGTH,
    ROLE_RANK,
    api_key_hash,
    invitation_token_hash,
)

if TYPE_CHECKING:
    # The configured user model: django-stubs resolves AUTH_USER_MODEL to this for type checking.
    from django.contrib.auth.models import User

# last_used_at is for humans ("is this key still in use?"): one write a minute per key is plenty, and
# writing on every request would turn each authenticated read into a row update.
LAST_USED_RESOLUTION = timedelta(minutes=1)
# A raw key is far shorter than this; anything longer is refused before hashing.
_MAX_RAW_KEY_LENGTH = 200


def api_key_authenticate(*, raw_key: str) -> ApiKey | None:
    """The active key matching ``raw_key`` (with its tenant loaded), or None for a malformed, unknown or
    revoked key, or a key of a suspended tenant."""
    if not raw_key.startswith(API_KEY_MARKER) or len(raw_key) > _MAX_RAW_KEY_LENGTH:
        return None
    prefix = raw_key[len(API_KEY_MARKER) : len(API_KEY_MARKER) + API_KEY_PREFIX_LENGTH]
    if len(prefix) != API_KEY_PREFIX_LENGTH:
        return None
    presented_hash = api_key_hash(raw_key)
    # Several keys may share a prefix (unlikely: 64**8 values); compare each in constant time.
    candidates = ApiKey.objects.select_related("tenant").filter(prefix=prefix)
    match = next((key for key in candidates if hmac.compare_digest(key.key_hash, presented_hash)), None)
    if match is None or match.revoked_at is not None or not match.tenant.is_active:
        return None
    now = timezone.now()
    # One conditional UPDATE, no read-then-write: concurrent requests cannot both decide to write.
    updated = (
        ApiKey.objects.filter(pk=match.pk)
        .filter(Q(last_used_at__isnull=True) | Q(last_used_at__lt=now - LAST_USED_RESOLUTION))
        .update(last_used_at=now)
    )
    if updated:
        match.last_used_at = now
    return match


def memberships_for_user(*, user: User | AnonymousUser) -> QuerySet[Membership]:
    """The user's memberships with their tenants, suspended tenants included (the caller decides)."""
    if not user.is_authenticated:
        return Membership.objects.none()
    return Membership.objects.select_related("tenant").filter(user=user).order_by("tenant__name")


def tenant_for_user(*, user: User | AnonymousUser, slug: str | None = None) -> Tenant | None:
    """The tenant ``user`` belongs to: the one named by ``slug``, or, without a slug, the user's only
    tenant. None when the user is not a member of it, or belongs to several tenants and no slug is given."""
    memberships = memberships_for_user(user=user)
    if slug is not None:
        memberships = memberships.filter(tenant__slug=slug)
    found = list(memberships[:2])
    if len(found) != 1:
        return None
    return found[0].tenant


def membership_for_user(*, user: User | AnonymousUser, slug: str | None = None) -> Membership | None:
    """Like :func:`tenant_for_user`, but the membership (tenant and role): the one for ``slug``, or the
    user's only one; None when there is no such membership or, without a slug, several."""
    memberships = memberships_for_user(user=user)
    if slug is not None:
        memberships = memberships.filter(tenant__slug=slug)
    found = list(memberships[:2])
    return found[0] if len(found) == 1 else None


def api_key_list(*, tenant: Tenant) -> QuerySet[ApiKey]:
    """The tenant's API keys, revoked ones included, newest first."""
    return ApiKey.objects.filter(tenant=tenant).order_by("-created_at", "-pk")


def tenant_by_slug(*, slug: str) -> Tenant | None:
    """The tenant with this slug, suspended or not; None when there is none."""
    return Tenant.objects.filter(slug=slug).first()


def audit_list(
    *, tenant: Tenant, actor_label: str | None = None, action: str | None = None
) -> QuerySet[AuditEntry]:
    """The tenant's audit log, newest first; optionally one actor's or actions starting with ``action``."""
    entries = AuditEntry.objects.filter(tenant=tenant)
    if actor_label:
        entries = entries.filter(actor_label=actor_label)
    if action:
        entries = entries.filter(action__startswith=action)
    return entries.order_by("-at", "-pk")


def member_list(*, tenant: Tenant) -> QuerySet[Membership]:
    """The tenant's members with their users: owners first, then admins, managers, viewers; by name."""
    rank = Case(
        *(When(role=role, then=Value(index)) for index, role in enumerate(ROLE_RANK)),
        default=Value(len(ROLE_RANK)),
        output_field=IntegerField(),
    )
    return (
        Membership.objects.filter(tenant=tenant)
        .select_related("user")
        .annotate(role_rank=rank)
        .order_by("role_rank", "user__username", "pk")
    )


def invitation_list(*, tenant: Tenant, pending_only: bool = True) -> QuerySet[Invitation]:
    """The tenant's invitations, newest first, with who sent them; by default only those that still work
    (not accepted, not revoked, not expired)."""
    invitations = Invitation.objects.filter(tenant=tenant).select_related("invited_by")
    if pending_only:
        invitations = invitations.filter(
            accepted_at__isnull=True, revoked_at__isnull=True, expires_at__gt=timezone.now()
        )
    return invitations.order_by("-created_at", "-pk")


# The states an invitation can be in, as invitation_state returns them.
INVITATION_PENDING = "pending"
INVITATION_ACCEPTED = "accepted"
INVITATION_REVOKED = "revoked"
INVITATION_EXPIRED = "expired"


def invitation_state(invitation: Invitation) -> str:
    """``pending`` (it still works), ``accepted``, ``revoked`` or ``expired``."""
    if invitation.accepted_at is not None:
        return INVITATION_ACCEPTED
    if invitation.revoked_at is not None:
        return INVITATION_REVOKED
    if invitation.expires_at <= timezone.now():
        return INVITATION_EXPIRED
    return INVITATION_PENDING


def invitation_for_token(*, raw_token: str) -> Invitation | None:
    """The invitation whose link carries ``raw_token`` (in any state, with its tenant), or None."""
    if not raw_token or len(raw_token) > _MAX_RAW_KEY_LENGTH:
        return None
    return (
        Invitation.objects.select_related("tenant", "invited_by")
        .filter(token_hash=invitation_token_hash(raw_token))
        .first()
    )


AUDIT_ACTORS_SHOWN = 200


def audit_actor_labels(*, tenant: Tenant) -> list[str]:
    """Who appears in the tenant's audit log (user names, API key names), for a filter's choices."""
    return list(
        AuditEntry.objects.filter(tenant=tenant)
        .order_by("actor_label")
        .values_list("actor_label", flat=True)
        .distinct()[:AUDIT_ACTORS_SHOWN]
    )
