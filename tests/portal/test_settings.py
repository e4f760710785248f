"""Portal settings: the index, API keys, SMS provider credentials (write-only), webhooks, the audit log; who
may see and change them."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from messaging.models import SmsAccount
from messaging.services.accounts import sms_account_create
from tenants.models import ApiKey, AuditEntry, Tenant
from tenants.selectors import api_key_authenticate
from tenants.services import api_key_create, api_key_hash, audit_record

pytestmark = pytest.mark.django_db

TWILIO_SID = "AC" + "0123456789abcdef" * 2
SECRET = "Sup3r-s3cret-auth-token-7Q"

SETTINGS_PAGES = ["api-keys", "members", "invitations", "sms-settings", "webhooks", "audit"]


def _actions(tenant: Tenant) -> list[str]:
    return list(AuditEntry.objects.filter(tenant=tenant).order_by("pk").values_list("action", flat=True))


# ---------------------------------------------------------------------------------------------- access
@pytest.mark.parametrize("role", ["manager", "viewer"])
def test_settings_pages_refuse_managers_and_viewers(role, client_as):
    client = client_as(role)
    for name in SETTINGS_PAGES:
        response = client.get(reverse(f"portal:{name}"))
        assert response.status_code == 403, name
        assert b"settings need admin or owner" in response.content


@pytest.mark.parametrize("role", ["manager", "viewer"])
def test_the_index_shows_a_manager_their_account_and_no_settings_links(role, client_as):
    response = client_as(role).get(reverse("portal:settings"))
    assert response.status_code == 200
    html = response.content.decode()
    assert 'id="settings-not-allowed"' in html and "cannot see or change" in html
    assert 'id="my-account"' in html
    for name in SETTINGS_PAGES:
        assert reverse(f"portal:{name}") not in html, name


def test_the_index_shows_an_admin_every_section(tenant, admin):
    api_key_create(tenant=tenant, name="CRM")
    response = admin.get(reverse("portal:settings"))
    assert response.status_code == 200
    html = response.content.decode()
    assert 'id="settings-not-allowed"' not in html
    for name in SETTINGS_PAGES:
        assert reverse(f"portal:{name}") in html, name
    assert 'data-section="api-keys"' in html


@pytest.mark.parametrize("role", ["manager", "viewer"])
def test_forged_settings_posts_are_refused_and_change_nothing(role, tenant, client_as):
    key, _ = api_key_create(tenant=tenant, name="CRM")
    account = sms_account_create(tenant=tenant, kind="twilio", username=TWILIO_SID, secret=SECRET)
    client = client_as(role)
    posts: list[tuple[str, dict[str, str]]] = [
        (reverse("portal:api-keys"), {"name": "sneaky"}),
        (reverse("portal:api-key-revoke", args=[key.pk]), {}),
        (reverse("portal:sms-settings"), {"kind": "console"}),
        (reverse("portal:sms-settings-delete"), {}),
    ]
    for url, data in posts:
        response = client.post(url, data)
        assert response.status_code == 403, url
    key.refresh_from_db()
    assert key.revoked_at is None
    assert list(ApiKey.objects.filter(tenant=tenant)) == [key]
    account.refresh_from_db()
    assert account.kind == "twilio"
    assert _actions(tenant) == []


# -------------------------------------------------------------------------------------------- API keys
def test_an_api_key_is_shown_once_and_only_its_hash_is_kept(tenant, admin):
    response = admin.post(reverse("portal:api-keys"), {"name": "CRM sync"})
    assert response.status_code == 200
    assert "no-cache" in response["Cache-Control"] or "no-store" in response["Cache-Control"]
    html = response.content.decode()
    key = ApiKey.objects.get(tenant=tenant)
    start = html.index('id="new-api-key"')
    raw_key = html[html.index(">", start) + 1 : html.index("</p>", start)].strip()
    assert raw_key.startswith("vco_" + key.prefix)
    # Only the SHA-256 is stored, and the key works with the API.
    assert key.key_hash == api_key_hash(raw_key) and raw_key not in key.key_hash
    assert api_key_authenticate(raw_key=raw_key) == key
    assert Client().get("/api/v1/api-keys", HTTP_AUTHORIZATION=f"Bearer {raw_key}").status_code == 200
    assert key.name == "CRM sync" and key.created_by is not None
    # Never shown again: not on the list, not in a flash message.
    again = admin.get(reverse("portal:api-keys")).content.decode()
    assert raw_key not in again and 'id="new-api-key"' not in again
    assert f"vco_{key.prefix}…" in again
    assert _actions(tenant) == ["api_key.create"]


def test_a_nameless_key_is_refused_with_the_api_message_beside_the_field(tenant, admin):
    response = admin.post(reverse("portal:api-keys"), {"name": ""})
    assert response.status_code == 400
    assert b'ul class="errors" id="f-name-err" data-field="name"' in response.content
    assert b"may not be blank" in response.content  # DRF's message, as the API gives it
    assert not ApiKey.objects.filter(tenant=tenant).exists()
    assert _actions(tenant) == []


def test_revoking_a_key_stops_it_and_is_audited(tenant, admin):
    key, raw_key = api_key_create(tenant=tenant, name="Old")
    response = admin.post(reverse("portal:api-key-revoke", args=[key.pk]))
    assert response.status_code == 302
    key.refresh_from_db()
    assert key.revoked_at is not None
    assert api_key_authenticate(raw_key=raw_key) is None
    page = admin.get(response["Location"]).content.decode()
    assert "revoked" in page and f'data-revoke="{key.pk}"' not in page
    assert _actions(tenant) == ["api_key.revoke"]
    entry = AuditEntry.objects.get(tenant=tenant)
    assert entry.via == "portal" and "Old" in entry.target


def test_another_tenants_key_is_not_found(tenant, other_tenant, admin):
    foreign, raw_key = api_key_create(tenant=other_tenant, name="Theirs")
    assert admin.post(reverse("portal:api-key-revoke", args=[foreign.pk])).status_code == 404
    foreign.refresh_from_db()
    assert foreign.revoked_at is None
    assert b"Theirs" not in admin.get(reverse("portal:api-keys")).content


def test_no_keys_shows_what_to_do(admin):
    response = admin.get(reverse("portal:api-keys"))
    assert b'data-empty="true"' in response.content and b"No API keys yet." in response.content


@pytest.mark.parametrize("rows", [3, 40])
def test_the_key_list_reads_in_a_handful_of_queries(rows, tenant, admin, django_assert_max_num_queries):
    for n in range(rows):
        api_key_create(tenant=tenant, name=f"key {n}", created_by=None)
    with django_assert_max_num_queries(10):
        response = admin.get(reverse("portal:api-keys"))
    assert response.content.count(b"data-api-key=") == rows


# ------------------------------------------------------------------------------------------------- SMS
def _sms_post(**fields: str) -> dict[str, str]:
    data = {
        "kind": "twilio",
        "username": TWILIO_SID,
        "secret": SECRET,
        "public_key": "",
        "messaging_profile_id": "",
        "from_numbers": "+14155550100\n+14155550101",
        "api_base": "",
        "enabled": "on",
        "enabled__present": "1",
    }
    data.update(fields)
    return data


def _all_settings_html(client: Client) -> str:
    pages = [reverse("portal:settings")] + [reverse(f"portal:{name}") for name in SETTINGS_PAGES]
    return "".join(client.get(url).content.decode() for url in pages)


def test_sms_credentials_are_write_only(tenant, admin):
    response = admin.post(reverse("portal:sms-settings"), _sms_post())
    assert response.status_code == 302, response.content.decode()
    account = SmsAccount.objects.get(tenant=tenant)
    assert account.secret_encrypted and SECRET not in account.secret_encrypted
    assert account.from_numbers == ["+14155550100", "+14155550101"]
    html = _all_settings_html(admin)
    assert SECRET not in html and account.secret_encrypted not in html
    page = admin.get(reverse("portal:sms-settings")).content.decode()
    assert 'data-secret-set="true"' in page
    # The webhook URLs to paste at the provider.
    assert f"/webhooks/sms/twilio/{account.webhook_id}/inbound" in page
    assert f"/webhooks/sms/twilio/{account.webhook_id}/status" in page
    assert _actions(tenant) == ["sms_account.create"]
    detail = AuditEntry.objects.get(tenant=tenant).detail
    assert detail["secret_changed"] is True and SECRET not in str(detail)


def test_a_blank_secret_keeps_the_stored_one(tenant, admin):
    account = sms_account_create(tenant=tenant, kind="twilio", username=TWILIO_SID, secret=SECRET)
    stored = account.secret_encrypted
    response = admin.post(reverse("portal:sms-settings"), _sms_post(secret="", from_numbers="+14155550199"))
    assert response.status_code == 302
    account.refresh_from_db()
    assert account.secret_encrypted == stored and account.from_numbers == ["+14155550199"]
    assert _actions(tenant) == ["sms_account.update"]


def test_a_bad_sms_form_shows_the_error_beside_the_field_and_never_the_typed_secret(tenant, admin):
    response = admin.post(reverse("portal:sms-settings"), _sms_post(username="not-a-sid"))
    assert response.status_code == 400
    html = response.content.decode()
    assert 'data-field="username"' in html and "Account SID" in html
    assert SECRET not in html
    assert not SmsAccount.objects.filter(tenant=tenant).exists()
    # A bad number from the serializer's list is named too.
    response = admin.post(reverse("portal:sms-settings"), _sms_post(from_numbers="12345"))
    assert response.status_code == 400 and 'data-field="from_numbers"' in response.content.decode()
    assert SECRET not in response.content.decode()
    assert _actions(tenant) == []


def test_twilio_without_a_secret_is_refused(tenant, admin):
    response = admin.post(reverse("portal:sms-settings"), _sms_post(secret=""))
    assert response.status_code == 400
    assert b'data-field="secret"' in response.content
    assert not SmsAccount.objects.filter(tenant=tenant).exists()


def test_removing_the_sms_account(tenant, admin):
    sms_account_create(tenant=tenant, kind="twilio", username=TWILIO_SID, secret=SECRET)
    assert admin.post(reverse("portal:sms-settings-delete")).status_code == 302
    assert not SmsAccount.objects.filter(tenant=tenant).exists()
    assert _actions(tenant) == ["sms_account.delete"]
    assert b"No SMS provider yet." in admin.get(reverse("portal:sms-settings")).content


def test_another_tenants_sms_account_never_shows(tenant, other_tenant, admin):
    theirs = sms_account_create(tenant=other_tenant, kind="twilio", username=TWILIO_SID, secret=SECRET)
    html = _all_settings_html(admin)
    assert str(theirs.webhook_id) not in html
    assert admin.post(reverse("portal:sms-settings-delete")).status_code == 404
    assert SmsAccount.objects.filter(pk=theirs.pk).exists()


# -------------------------------------------------------------------------------------------- webhooks
def test_webhooks_page_lists_provider_urls_and_links_to_outgoing_webhooks(tenant, admin):
    empty = admin.get(reverse("portal:webhooks")).content.decode()
    assert 'id="outgoing-webhooks"' in empty and reverse("portal:webhook-endpoints") in empty
    assert "No SMS provider set up." in empty
    account = sms_account_create(tenant=tenant, kind="twilio", username=TWILIO_SID, secret=SECRET)
    page = admin.get(reverse("portal:webhooks")).content.decode()
    assert f"/webhooks/sms/twilio/{account.webhook_id}/inbound" in page
    assert "X-Twilio-Signature" in page and "badge ok" in page
    assert SECRET not in page


def test_webhooks_page_says_when_signatures_cannot_be_checked(tenant, admin):
    sms_account_create(tenant=tenant, kind="twilio", username=TWILIO_SID, secret=SECRET, enabled=False)
    page = admin.get(reverse("portal:webhooks")).content.decode()
    assert "not ready" in page and "disabled" in page


# ----------------------------------------------------------------------------------------------- audit
def _audit(tenant: Tenant, n: int, *, actor: str = "pat", action: str = "campaign.start") -> None:
    for i in range(n):
        audit_record(
            tenant=tenant, actor=None, actor_label=actor, via="portal", action=action, target=f"campaign {i}"
        )


def test_the_audit_log_filters_by_actor_and_action_prefix(tenant, other_tenant, admin):
    _audit(tenant, 2, actor="pat", action="campaign.start")
    _audit(tenant, 1, actor="sam", action="member.role")
    _audit(tenant, 1, actor="API key CRM", action="POST /api/v1/dnc")
    _audit(other_tenant, 1, actor="stranger", action="campaign.start")
    page = admin.get(reverse("portal:audit")).content.decode()
    assert page.count("data-audit=") == 4 and "stranger" not in page
    by_pat = admin.get(reverse("portal:audit"), {"actor": "pat"}).content.decode()
    assert by_pat.count("data-audit=") == 2
    members_only = admin.get(reverse("portal:audit"), {"action": "member."}).content.decode()
    assert members_only.count("data-audit=") == 1 and 'data-action="member.role"' in members_only
    api = admin.get(reverse("portal:audit"), {"action": "POST /api/"}).content.decode()
    assert api.count("data-audit=") == 1
    nothing = admin.get(reverse("portal:audit"), {"actor": "nobody"}).content.decode()
    assert "No entries match." in nothing


def test_the_audit_log_is_paginated_and_keeps_its_filter(tenant, admin):
    _audit(tenant, 60, actor="pat")
    first = admin.get(reverse("portal:audit"), {"actor": "pat"}).content.decode()
    assert first.count("data-audit=") == 50
    assert "page=2" in first and "actor=pat" in first
    second = admin.get(reverse("portal:audit"), {"actor": "pat", "page": 2}).content.decode()
    assert second.count("data-audit=") == 10


def test_an_empty_audit_log_says_what_it_will_hold(admin):
    assert b"Nothing changed yet." in admin.get(reverse("portal:audit")).content


@pytest.mark.parametrize("rows", [3, 40])
def test_the_audit_log_reads_in_a_handful_of_queries(rows, tenant, admin, django_assert_max_num_queries):
    _audit(tenant, rows)
    with django_assert_max_num_queries(10):
        response = admin.get(reverse("portal:audit"))
    assert response.content.count(b"data-audit=") == rows


def test_tenant_text_is_escaped(tenant, admin):
    api_key_create(tenant=tenant, name="<script>alert(1)</script>")
    _audit(tenant, 1, actor="<b>x</b>", action="<img src=x>")
    for name in ("api-keys", "audit"):
        html = admin.get(reverse(f"portal:{name}")).content.decode()
        assert "<script>alert(1)" not in html and "<img src=x>" not in html and "<b>x</b>" not in html
