"""Portal members and invitations: roles changed only within what the acting role may grant, the last owner
kept, invitations mailed, accepted once, refused when used, revoked or expired."""

from __future__ import annotations

import re
import smtplib
import threading
from collections.abc import Callable, Sequence
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.core import mail
from django.core.mail import EmailMessage
from django.core.mail.backends.base import BaseEmailBackend
from django.db import connections
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from orchestrator.errors import InvalidInput
from tenants.models import AuditEntry, Invitation, Membership, Tenant
from tenants.selectors import invitation_list
from tenants.services import (
    invitation_accept,
    invitation_create,
    invitation_token_hash,
    membership_add,
    membership_change_role,
    membership_remove,
)
from tests.campaigns.factories import make_tenant, make_user

pytestmark = pytest.mark.django_db

GOOD_PASSWORD = "Corr3ct-horse-battery"


def _member(tenant: Tenant, role: str) -> tuple[Client, Membership]:
    user = make_user()
    membership = membership_add(tenant=tenant, user=user, role=role)
    client = Client()
    client.force_login(user)
    return client, membership


def _owner_of(tenant: Tenant) -> Membership:
    return Membership.objects.get(tenant=tenant, role="owner")  # make_tenant's owner


def _actions(tenant: Tenant) -> list[str]:
    return list(AuditEntry.objects.filter(tenant=tenant).order_by("pk").values_list("action", flat=True))


def _role(membership: Membership) -> str:
    return Membership.objects.get(pk=membership.pk).role


# ---------------------------------------------------------------------------------------------- the list
def test_members_are_listed_with_their_roles(tenant, other_tenant):
    client, me = _member(tenant, "owner")
    _, viewer = _member(tenant, "viewer")
    _member(other_tenant, "manager")
    html = client.get(reverse("portal:members")).content.decode()
    assert html.count("data-member-id=") == 3  # the tenant's first owner, me, the viewer
    assert f'data-member="{viewer.user.get_username()}"' in html
    # An owner may set any role: the select offers all four.
    assert html.count('<option value="owner"') == 3


def test_an_admin_sees_no_controls_for_owners_and_admins(tenant):
    client, me = _member(tenant, "admin")
    _, other_admin = _member(tenant, "admin")
    _, manager = _member(tenant, "manager")
    html = client.get(reverse("portal:members")).content.decode()
    assert f'id="member-{manager.pk}-role"' in html and f'data-remove="{manager.pk}"' in html
    for untouchable in (_owner_of(tenant), other_admin, me):
        assert f'id="member-{untouchable.pk}-role"' not in html
        assert f'data-remove="{untouchable.pk}"' not in html
    assert '<option value="owner"' not in html and '<option value="admin"' not in html


@pytest.mark.parametrize("rows", [3, 40])
def test_the_member_list_reads_in_a_handful_of_queries(rows, tenant, django_assert_max_num_queries):
    client, _ = _member(tenant, "owner")
    for _ in range(rows):
        membership_add(tenant=tenant, user=make_user(), role="viewer")
    with django_assert_max_num_queries(10):
        response = client.get(reverse("portal:members"))
    assert response.content.count(b"data-member-id=") == rows + 2


@pytest.mark.parametrize("rows", [3, 40])
def test_the_invitation_list_reads_in_a_handful_of_queries(rows, tenant, django_assert_max_num_queries):
    client, me = _member(tenant, "owner")
    for n in range(rows):
        invitation_create(
            tenant=tenant, email=f"p{n}@example.com", role="viewer", invited_by=me.user, by_role="owner"
        )
    with django_assert_max_num_queries(10):
        response = client.get(reverse("portal:invitations"))
    assert response.content.count(b"data-invitation=") == rows


# ------------------------------------------------------------------------------------------ role changes
def test_an_owner_changes_a_role_and_it_is_audited(tenant):
    client, _ = _member(tenant, "owner")
    _, member = _member(tenant, "viewer")
    response = client.post(reverse("portal:member-role", args=[member.pk]), {"role": "admin"})
    assert response.status_code == 302
    assert _role(member) == "admin"
    entry = AuditEntry.objects.get(tenant=tenant)
    assert entry.action == "member.role" and entry.detail == {"before": "viewer", "after": "admin"}
    assert member.user.get_username() in entry.target


def test_an_admin_changes_managers_and_viewers_only(tenant):
    client, _ = _member(tenant, "admin")
    _, manager = _member(tenant, "manager")
    _, other_admin = _member(tenant, "admin")
    owner = _owner_of(tenant)
    assert (
        client.post(reverse("portal:member-role", args=[manager.pk]), {"role": "viewer"}).status_code == 302
    )
    assert _role(manager) == "viewer"
    # Cannot promote to admin or owner.
    for role in ("admin", "owner"):
        response = client.post(reverse("portal:member-role", args=[manager.pk]), {"role": role})
        assert response.status_code == 400
        assert b'data-field="role"' in response.content and b"may give only" in response.content
        assert _role(manager) == "viewer"
    # Cannot touch an owner or another admin, to demote or to remove.
    for target in (owner, other_admin):
        refused = client.post(reverse("portal:member-role", args=[target.pk]), {"role": "viewer"})
        assert refused.status_code == 400 and b"cannot change or remove" in refused.content
        assert client.post(reverse("portal:member-remove", args=[target.pk])).status_code == 400
        assert Membership.objects.get(pk=target.pk).role == target.role
    assert _actions(tenant) == ["member.role"]


def test_the_last_owner_can_be_neither_demoted_nor_removed(tenant):
    owner = _owner_of(tenant)
    client = Client()
    client.force_login(owner.user)
    response = client.post(reverse("portal:member-role", args=[owner.pk]), {"role": "admin"})
    assert response.status_code == 400 and b"at least one owner" in response.content
    response = client.post(reverse("portal:member-remove", args=[owner.pk]))
    assert response.status_code == 400 and b"at least one owner" in response.content
    assert _role(owner) == "owner"
    assert _actions(tenant) == []
    with pytest.raises(InvalidInput):
        membership_remove(membership=owner, by_role="owner")


def test_with_two_owners_one_may_step_down_but_not_both(tenant):
    first = _owner_of(tenant)
    client, second = _member(tenant, "owner")
    response = client.post(reverse("portal:member-role", args=[second.pk]), {"role": "viewer"})
    # The second owner demoted themselves: out of settings, back to the settings index.
    assert response.status_code == 302 and response["Location"] == reverse("portal:settings")
    assert _role(second) == "viewer"
    with pytest.raises(InvalidInput):
        membership_change_role(membership=first, role="manager", by_role="owner")
    assert _role(first) == "owner"


def test_removing_a_member_keeps_their_account(tenant):
    client, _ = _member(tenant, "admin")
    _, viewer = _member(tenant, "viewer")
    assert client.post(reverse("portal:member-remove", args=[viewer.pk])).status_code == 302
    assert not Membership.objects.filter(pk=viewer.pk).exists()
    assert get_user_model().objects.filter(pk=viewer.user_id).exists()
    assert _actions(tenant) == ["member.remove"]


def test_another_tenants_members_are_not_found(tenant, other_tenant):
    client, _ = _member(tenant, "owner")
    _, theirs = _member(other_tenant, "viewer")
    assert client.post(reverse("portal:member-role", args=[theirs.pk]), {"role": "admin"}).status_code == 404
    assert client.post(reverse("portal:member-remove", args=[theirs.pk])).status_code == 404
    assert _role(theirs) == "viewer"


@pytest.mark.parametrize("role", ["manager", "viewer"])
def test_managers_and_viewers_cannot_change_members(role, tenant):
    client, _ = _member(tenant, role)
    _, target = _member(tenant, "viewer")
    invitation, _ = invitation_create(
        tenant=tenant, email="x@example.com", role="viewer", invited_by=None, by_role="owner"
    )
    mail.outbox.clear()
    posts = [
        (reverse("portal:member-role", args=[target.pk]), {"role": "admin"}),
        (reverse("portal:member-remove", args=[target.pk]), {}),
        (reverse("portal:invitations"), {"email": "new@example.com", "role": "viewer"}),
        (reverse("portal:invitation-revoke", args=[invitation.pk]), {}),
    ]
    for url, data in posts:
        assert client.post(url, data).status_code == 403, url
    assert _role(target) == "viewer"
    assert Invitation.objects.filter(tenant=tenant).count() == 1
    invitation.refresh_from_db()
    assert invitation.revoked_at is None
    assert mail.outbox == []
    assert _actions(tenant) == []


# ------------------------------------------------------------------------------------------- invitations
def _link_from_mail() -> str:
    body = str(mail.outbox[-1].body)
    match = re.search(r"https?://\S+/invite/(\S+)", body)
    assert match, body
    return "/invite/" + match.group(1)


def test_invitation_end_to_end_for_a_new_person(tenant, settings):
    settings.PUBLIC_BASE_URL = "https://portal.example"
    client, me = _member(tenant, "admin")
    response = client.post(
        reverse("portal:invitations"), {"email": "New.Person@Example.com", "role": "manager"}
    )
    assert response.status_code == 302
    # Mailed, with a link; only the token's hash is stored.
    assert len(mail.outbox) == 1 and mail.outbox[0].to == ["New.Person@example.com"]
    assert "https://portal.example/invite/" in mail.outbox[0].body
    link = _link_from_mail()
    token = link.rsplit("/", 1)[1]
    invitation = Invitation.objects.get(tenant=tenant)
    assert invitation.token_hash == invitation_token_hash(token) and token not in invitation.token_hash
    assert abs(invitation.expires_at - invitation.created_at - timedelta(days=7)) < timedelta(seconds=5)
    assert invitation.role == "manager" and invitation.invited_by == me.user
    pending = client.get(reverse("portal:invitations")).content.decode()
    assert "New.Person@example.com" in pending and token not in pending

    visitor = Client()
    page = visitor.get(link)
    assert page.status_code == 200 and b'id="invite-signup-form"' in page.content
    assert b"Acme Plumbing" in page.content
    # A weak password is refused by Django's validators; nothing is made.
    weak = visitor.post(link, {"password1": "123", "password2": "123"})
    assert weak.status_code == 400 and b'data-field="password"' in weak.content
    mismatch = visitor.post(link, {"password1": GOOD_PASSWORD, "password2": GOOD_PASSWORD + "x"})
    assert mismatch.status_code == 400 and b'data-field="password2"' in mismatch.content
    assert not get_user_model().objects.filter(email__iexact="new.person@example.com").exists()

    joined = visitor.post(link, {"password1": GOOD_PASSWORD, "password2": GOOD_PASSWORD})
    assert joined.status_code == 302 and joined["Location"] == reverse("portal:dashboard")
    user = get_user_model().objects.get(username="New.Person@example.com")
    assert user.check_password(GOOD_PASSWORD)
    assert Membership.objects.get(tenant=tenant, user=user).role == "manager"
    dashboard = visitor.get(joined["Location"])
    assert dashboard.status_code == 200 and b'data-role="manager"' in dashboard.content
    invitation.refresh_from_db()
    assert invitation.accepted_by == user and invitation.accepted_at is not None
    # Single use: the link now says so, to anyone.
    for someone in (visitor, Client()):
        used = someone.get(link)
        assert used.status_code == 410 and b'data-state="accepted"' in used.content
        assert someone.post(link, {"password1": GOOD_PASSWORD, "password2": GOOD_PASSWORD}).status_code == 410
    assert Membership.objects.filter(tenant=tenant, user=user).count() == 1
    assert _actions(tenant) == ["invitation.create", "invitation.accept"]
    accept = AuditEntry.objects.get(tenant=tenant, action="invitation.accept")
    assert accept.actor == user and accept.via == "portal"


def test_a_signed_in_user_joins_with_one_button(tenant):
    other = make_tenant(name="Elsewhere")
    user = make_user("sam@example.com")
    membership_add(tenant=other, user=user, role="owner")
    invitation, token = invitation_create(
        tenant=tenant, email="sam@example.com", role="viewer", invited_by=None, by_role="owner"
    )
    client = Client()
    client.force_login(user)
    page = client.get(f"/invite/{token}")
    assert page.status_code == 200 and b'id="invite-accept-form"' in page.content
    assert b"invite-signup-form" not in page.content
    response = client.post(f"/invite/{token}")
    assert response.status_code == 302
    assert Membership.objects.get(tenant=tenant, user=user).role == "viewer"
    # The portal now shows the tenant just joined.
    assert b'<a class="brand" href="/">Acme Plumbing' in client.get("/").content


def test_an_anonymous_person_with_an_account_is_sent_to_sign_in_and_back(tenant):
    user = make_user("pat@example.com")
    user.set_password(GOOD_PASSWORD)
    user.save()
    _, token = invitation_create(
        tenant=tenant, email="pat@example.com", role="viewer", invited_by=None, by_role="owner"
    )
    client = Client()
    page = client.get(f"/invite/{token}").content.decode()
    assert 'id="invite-signin"' in page and "invite-signup-form" not in page
    signin = client.post(
        reverse("portal:signin"),
        {"username": "pat@example.com", "password": GOOD_PASSWORD, "next": f"/invite/{token}"},
    )
    assert signin.status_code == 302 and signin["Location"] == f"/invite/{token}"
    assert client.post(f"/invite/{token}").status_code == 302
    assert Membership.objects.filter(tenant=tenant, user=user).exists()
    # Making a second account for the same address is refused.
    _, again = invitation_create(
        tenant=make_tenant(), email="pat@example.com", role="viewer", invited_by=None, by_role="owner"
    )
    refused = Client().post(f"/invite/{again}", {"password1": GOOD_PASSWORD, "password2": GOOD_PASSWORD})
    assert refused.status_code == 400 and b"sign in to accept" in refused.content


def test_an_expired_invitation_is_refused(tenant):
    invitation, token = invitation_create(
        tenant=tenant, email="late@example.com", role="viewer", invited_by=None, by_role="owner"
    )
    Invitation.objects.filter(pk=invitation.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    page = Client().get(f"/invite/{token}")
    assert page.status_code == 410 and b'data-state="expired"' in page.content
    assert b"expired" in page.content
    response = Client().post(f"/invite/{token}", {"password1": GOOD_PASSWORD, "password2": GOOD_PASSWORD})
    assert response.status_code == 410
    assert not get_user_model().objects.filter(username="late@example.com").exists()
    assert not invitation_list(tenant=tenant).exists()


def test_a_revoked_invitation_is_refused_and_unknown_links_are_404(tenant):
    client, _ = _member(tenant, "admin")
    invitation, token = invitation_create(
        tenant=tenant, email="gone@example.com", role="viewer", invited_by=None, by_role="owner"
    )
    assert client.post(reverse("portal:invitation-revoke", args=[invitation.pk])).status_code == 302
    invitation.refresh_from_db()
    assert invitation.revoked_at is not None
    page = Client().get(f"/invite/{token}")
    assert page.status_code == 410 and b'data-state="revoked"' in page.content
    assert Client().get("/invite/not-a-real-token").status_code == 404
    assert _actions(tenant) == ["invitation.revoke"]
    assert b"No pending invitations." in client.get(reverse("portal:invitations")).content


def test_a_new_invitation_replaces_the_pending_one(tenant):
    first, first_token = invitation_create(
        tenant=tenant, email="twice@example.com", role="viewer", invited_by=None, by_role="owner"
    )
    _, second_token = invitation_create(
        tenant=tenant, email="TWICE@example.com", role="manager", invited_by=None, by_role="owner"
    )
    assert Client().get(f"/invite/{first_token}").status_code == 410
    assert Client().get(f"/invite/{second_token}").status_code == 200


def test_invitation_rules(tenant, other_tenant):
    client, me = _member(tenant, "admin")
    # An admin may not invite an owner or an admin.
    for role in ("owner", "admin"):
        response = client.post(reverse("portal:invitations"), {"email": "boss@example.com", "role": role})
        assert response.status_code == 400 and b'data-field="role"' in response.content
    # A bad address, and a member's address, are refused beside the field.
    bad = client.post(reverse("portal:invitations"), {"email": "not-an-address", "role": "viewer"})
    assert bad.status_code == 400 and b'data-field="email"' in bad.content
    member = client.post(reverse("portal:invitations"), {"email": me.user.email, "role": "viewer"})
    assert member.status_code == 400 and b"already a member" in member.content
    assert not Invitation.objects.exists() and mail.outbox == []
    assert _actions(tenant) == []
    # Another tenant's invitation is not found.
    theirs, _ = invitation_create(
        tenant=other_tenant, email="x@example.com", role="viewer", invited_by=None, by_role="owner"
    )
    assert client.post(reverse("portal:invitation-revoke", args=[theirs.pk])).status_code == 404
    theirs.refresh_from_db()
    assert theirs.revoked_at is None


def test_an_invitation_never_lowers_an_existing_role(tenant):
    owner = _owner_of(tenant)
    invitation, _ = invitation_create(
        tenant=tenant, email="someone@example.com", role="viewer", invited_by=None, by_role="owner"
    )
    membership = invitation_accept(invitation=invitation, user=owner.user)
    assert membership.role == "owner" and _role(owner) == "owner"


def test_an_invitation_is_accepted_once_even_when_raced(tenant):
    invitation, _ = invitation_create(
        tenant=tenant, email="race@example.com", role="viewer", invited_by=None, by_role="owner"
    )
    stale = Invitation.objects.get(pk=invitation.pk)  # a second request read it before the first accepted
    invitation_accept(invitation=invitation, user=make_user())
    with pytest.raises(InvalidInput):
        invitation_accept(invitation=stale, user=make_user())
    assert Membership.objects.filter(tenant=tenant, role="viewer").count() == 1


def test_a_suspended_tenant_takes_no_new_members(tenant):
    _, token = invitation_create(
        tenant=tenant, email="s@example.com", role="viewer", invited_by=None, by_role="owner"
    )
    Tenant.objects.filter(pk=tenant.pk).update(status="suspended")
    response = Client().post(f"/invite/{token}", {"password1": GOOD_PASSWORD, "password2": GOOD_PASSWORD})
    assert response.status_code == 400 and b"suspended" in response.content
    assert not get_user_model().objects.filter(username="s@example.com").exists()


def test_the_operators_admin_lists_invitations_and_audit_entries_read_only(tenant, admin_client):
    invitation, token = invitation_create(
        tenant=tenant, email="ops@example.com", role="viewer", invited_by=None, by_role="owner"
    )
    page = admin_client.get(reverse("admin:tenants_invitation_changelist"))
    assert page.status_code == 200 and b"ops@example.com" in page.content
    assert invitation.token_hash.encode() not in page.content and token.encode() not in page.content
    assert admin_client.get(reverse("admin:tenants_invitation_add")).status_code == 403
    response = admin_client.post(
        reverse("admin:tenants_invitation_changelist"),
        {"action": "revoke", "_selected_action": [invitation.pk]},
    )
    assert response.status_code == 302
    invitation.refresh_from_db()
    assert invitation.revoked_at is not None
    assert admin_client.get(reverse("admin:tenants_auditentry_changelist")).status_code == 200
    assert admin_client.get(reverse("admin:tenants_auditentry_add")).status_code == 403


def _race(*calls: Callable[[], object]) -> list[BaseException]:
    """Run ``calls`` at once, each in its own thread and database connection; their errors."""
    start = threading.Barrier(len(calls))
    errors: list[BaseException] = []

    def run(call: Callable[[], object]) -> None:
        try:
            start.wait(timeout=10)
            call()
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(call,)) for call in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return errors


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_owners_demoting_each_other_at_once_leave_one_owner():
    tenant = make_tenant(name="Race Co")
    first = _owner_of(tenant)
    second = membership_add(tenant=tenant, user=make_user(), role="owner")
    errors = _race(
        lambda: membership_change_role(membership=first, role="viewer", by_role="owner"),
        lambda: membership_change_role(membership=second, role="viewer", by_role="owner"),
    )
    assert len(errors) == 1 and isinstance(errors[0], InvalidInput), errors
    assert Membership.objects.filter(tenant=tenant, role="owner").count() == 1


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_an_invitation_accepted_twice_at_once_makes_one_member():
    tenant = make_tenant(name="Race Co")
    invitation, _ = invitation_create(
        tenant=tenant, email="race@example.com", role="viewer", invited_by=None, by_role="owner"
    )
    users = [make_user(), make_user()]
    errors = _race(
        *(
            lambda user=user: invitation_accept(
                invitation=Invitation.objects.get(pk=invitation.pk), user=user
            )
            for user in users
        )
    )
    assert len(errors) == 1 and isinstance(errors[0], InvalidInput), errors
    assert Membership.objects.filter(tenant=tenant, role="viewer").count() == 1


class RefusingMailBackend(BaseEmailBackend):
    """A mail server that is down."""

    def send_messages(self, email_messages: Sequence[EmailMessage]) -> int:
        raise smtplib.SMTPServerDisconnected("connection closed")


def test_an_invitation_whose_mail_cannot_be_sent_is_not_kept(tenant, settings):
    settings.EMAIL_BACKEND = "tests.portal.test_members.RefusingMailBackend"
    client, _ = _member(tenant, "owner")
    response = client.post(reverse("portal:invitations"), {"email": "x@example.com", "role": "viewer"})
    assert response.status_code == 400
    assert b'data-field="email"' in response.content and b"could not be sent" in response.content
    assert not Invitation.objects.exists()
    assert _actions(tenant) == []
