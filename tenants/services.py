"""Writes for tenancy: tenants, memberships, API keys, invitations. Keyword-only ``<entity>_<action>``
functions.

Who may change whose role (tenants/roles.py, ``roles_grantable_by``): an owner any member to any role; an
admin only managers and viewers, and only to manager or viewer (never touches an owner or an admin). A
tenant always keeps at least one owner: the owners' rows are locked while a change that could take the last
one away is checked and made, so two owners demoting each other at once cannot both succeed.

Invitations work like API keys: a random token is mailed as a link (``<PUBLIC_BASE_URL>/invite/<token>``),
only its SHA-256 is stored; it works once, for :data:`INVITATION_TTL`, unless revoked.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import smtplib
from datetime import timedelta
from typing import TYPE_CHECKING

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.core.validators import validate_email
from django.db import transaction
from django.utils import timezone

from orchestrator.errors import InvalidInput, full_clean_or_raise
from tenants.models import ApiKey, AuditEntry, Invitation, Membership, Tenant
from tenants.roles import roles_grantable_by
from tenants.validators import is_timezone_name

if TYPE_CHECKING:
    # The configured user model: django-stubs resolves AUTH_USER_MODEL to this for type checking.
    from django.contrib.auth.models import User

logger = logging.getLogger(__name__)

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


# --------------------------------------------------------------------------------- members and roles
_OWNER = Membership.Role.OWNER
#: Roles from the most to the least powerful (an invitation never lowers an existing member's role).
ROLE_RANK: list[str] = [_OWNER, Membership.Role.ADMIN, Membership.Role.MANAGER, Membership.Role.VIEWER]
LAST_OWNER_MESSAGE = "A tenant needs at least one owner: make another member an owner first."


def _check_may_manage(*, by_role: str, member_role: str, new_role: str | None = None) -> None:
    """Refuse (naming the field) a change the acting role may not make: it may touch only members whose
    role it could grant, and grant only such roles."""
    grantable = roles_grantable_by(by_role)
    if member_role not in grantable:
        raise InvalidInput(
            "role", f"Your role ({by_role}) cannot change or remove a member who is {member_role}."
        )
    if new_role is not None and new_role not in grantable:
        allowed = ", ".join(grantable) or "none"
        raise InvalidInput("role", f"Your role ({by_role}) may give only these roles: {allowed}.")


def _lock_owners(tenant_id: int) -> list[int]:
    """Lock the tenant's owner rows (always first, in pk order: every role change takes the same locks in
    the same order) and return their ids."""
    return list(
        Membership.objects.select_for_update()
        .filter(tenant_id=tenant_id, role=_OWNER)
        .order_by("pk")
        .values_list("pk", flat=True)
    )


def membership_change_role(*, membership: Membership, role: str, by_role: str) -> Membership:
    """Give ``membership`` the role ``role``, as a member whose role is ``by_role``. Never takes away the
    tenant's last owner."""
    if role not in Membership.Role.values:
        raise InvalidInput("role", f"must be one of {', '.join(Membership.Role.values)}")
    with transaction.atomic():
        owners = _lock_owners(membership.tenant_id)
        current = Membership.objects.select_for_update().get(pk=membership.pk)
        _check_may_manage(by_role=by_role, member_role=current.role, new_role=role)
        if current.role != role:
            if current.role == _OWNER and owners == [current.pk]:
                raise InvalidInput("role", LAST_OWNER_MESSAGE)
            current.role = role
            current.save(update_fields=["role"])
    membership.role = current.role
    return membership


def membership_remove(*, membership: Membership, by_role: str) -> None:
    """Remove ``membership`` from its tenant, as a member whose role is ``by_role``; never the last owner.
    The user keeps their account (and their other tenants)."""
    with transaction.atomic():
        owners = _lock_owners(membership.tenant_id)
        current = Membership.objects.select_for_update().filter(pk=membership.pk).first()
        if current is None:
            return  # removed already
        _check_may_manage(by_role=by_role, member_role=current.role)
        if current.role == _OWNER and owners == [current.pk]:
            raise InvalidInput("role", LAST_OWNER_MESSAGE)
        current.delete()


# ------------------------------------------------------------------------------------------ invitations
INVITATION_TTL = timedelta(days=7)
INVITATION_TOKEN_BYTES = 32
INVITATION_PATH = "/invite/"
#: The user name of an account made by accepting an invitation is its e-mail address.
_USERNAME_MAX = 150
INVITATION_USED_MESSAGE = "This invitation has been used, revoked or has expired."


def invitation_token_hash(raw_token: str) -> str:
    """SHA-256 hex of the token (256 random bits: a fast hash is right, as for API keys)."""
    return hashlib.sha256(raw_token.encode()).hexdigest()


def invitation_url(raw_token: str) -> str:
    return f"{str(settings.PUBLIC_BASE_URL).rstrip('/')}{INVITATION_PATH}{raw_token}"


def _normalized_email(email: str) -> str:
    email = get_user_model().objects.normalize_email(email.strip())
    try:
        validate_email(email)
    except ValidationError as exc:
        raise InvalidInput("email", "Enter a valid e-mail address.") from exc
    if len(email) > _USERNAME_MAX:
        raise InvalidInput("email", f"must be at most {_USERNAME_MAX} characters")
    return email


def _invitation_mail(*, tenant: Tenant, invitation: Invitation, raw_token: str, inviter: str) -> None:
    role = Membership.Role(invitation.role).label
    body = (
        f"{inviter} invites you to join {tenant.name} as {role}.\n\n"
        f"Open this link to accept (it works once, until {invitation.expires_at:%Y-%m-%d %H:%M} UTC):\n\n"
        f"{invitation_url(raw_token)}\n\n"
        "If you did not expect this invitation, ignore this mail.\n"
    )
    send_mail(
        subject=f"Invitation to join {tenant.name}",
        message=body,
        from_email=None,  # DEFAULT_FROM_EMAIL
        recipient_list=[invitation.email],
    )


def invitation_create(
    *, tenant: Tenant, email: str, role: str, invited_by: User | None, by_role: str
) -> tuple[Invitation, str]:
    """Invite ``email`` to ``tenant`` with ``role`` (one the inviter's role ``by_role`` may grant) and mail
    the link. Returns the invitation and the raw token, which is not stored. An earlier pending invitation
    of the same address is revoked (the newest link is the one that works). When the mail cannot be sent,
    nothing is saved and the error names the address."""
    email = _normalized_email(email)
    if role not in Membership.Role.values:
        raise InvalidInput("role", f"must be one of {', '.join(Membership.Role.values)}")
    grantable = roles_grantable_by(by_role)
    if role not in grantable:
        raise InvalidInput(
            "role", f"Your role ({by_role}) may invite only as: {', '.join(grantable) or 'none'}."
        )
    if Membership.objects.filter(tenant=tenant, user__email__iexact=email).exists() or (
        Membership.objects.filter(tenant=tenant, user__username__iexact=email).exists()
    ):
        raise InvalidInput("email", "is already a member of this tenant")
    raw_token = secrets.token_urlsafe(INVITATION_TOKEN_BYTES)
    now = timezone.now()
    with transaction.atomic():
        Invitation.objects.filter(
            tenant=tenant, email__iexact=email, accepted_at__isnull=True, revoked_at__isnull=True
        ).update(revoked_at=now)
        invitation = Invitation.objects.create(
            tenant=tenant,
            email=email,
            role=role,
            token_hash=invitation_token_hash(raw_token),
            invited_by=invited_by,
            expires_at=now + INVITATION_TTL,
        )
        inviter = invited_by.get_username() if invited_by is not None else tenant.name
        try:
            # Inside the transaction on purpose: a mail that cannot be sent leaves no invitation behind.
            _invitation_mail(tenant=tenant, invitation=invitation, raw_token=raw_token, inviter=inviter)
        except (smtplib.SMTPException, OSError) as exc:
            logger.warning("invitation mail to %s failed: %s", email, exc)
            raise InvalidInput("email", f"The invitation mail could not be sent ({exc}); try again.") from exc
    return invitation, raw_token


def invitation_revoke(*, invitation: Invitation) -> Invitation:
    """Revoke a pending invitation (idempotent; an accepted one stays accepted)."""
    Invitation.objects.filter(pk=invitation.pk, accepted_at__isnull=True, revoked_at__isnull=True).update(
        revoked_at=timezone.now()
    )
    invitation.refresh_from_db(fields=["revoked_at"])
    return invitation


def invitation_accept(*, invitation: Invitation, user: User) -> Membership:
    """``user`` accepts ``invitation``: it is used up (one conditional UPDATE: of two accepts at once, one
    wins) and the user becomes a member with its role. An existing member keeps a higher role."""
    if not invitation.tenant.is_active:
        raise InvalidInput("token", f"{invitation.tenant.name} is suspended: it cannot take new members now.")
    now = timezone.now()
    with transaction.atomic():
        claimed = Invitation.objects.filter(
            pk=invitation.pk, accepted_at__isnull=True, revoked_at__isnull=True, expires_at__gt=now
        ).update(accepted_at=now, accepted_by=user)
        if not claimed:
            raise InvalidInput("token", INVITATION_USED_MESSAGE)
        membership, created = Membership.objects.get_or_create(
            tenant_id=invitation.tenant_id, user=user, defaults={"role": invitation.role}
        )
        if not created and ROLE_RANK.index(invitation.role) < ROLE_RANK.index(membership.role):
            membership.role = invitation.role
            membership.save(update_fields=["role"])
    invitation.accepted_at, invitation.accepted_by = now, user
    return membership


def invitation_accept_new_user(*, invitation: Invitation, password: str) -> tuple[User, Membership]:
    """Make an account for the invited address (its user name is the address) with ``password`` (checked
    by Django's password validators) and accept ``invitation`` with it, in one transaction."""
    user_model = get_user_model()
    email = invitation.email
    if user_model.objects.filter(username__iexact=email).exists() or (
        user_model.objects.filter(email__iexact=email).exists()
    ):
        raise InvalidInput("email", "An account with this e-mail address exists: sign in to accept.")
    user = user_model(username=email, email=email)
    try:
        user_model._meta.get_field("username").run_validators(email)
    except ValidationError as exc:
        raise InvalidInput("email", " ".join(exc.messages)) from exc
    try:
        validate_password(password, user)
    except ValidationError as exc:
        raise InvalidInput("password", " ".join(exc.messages)) from exc
    user.set_password(password)
    with transaction.atomic():
        user.save()
        membership = invitation_accept(invitation=invitation, user=user)
    return user, membership


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
