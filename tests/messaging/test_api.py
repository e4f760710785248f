"""The messaging REST API: tenant-scoped lists with filters, another tenant's id is a 404, validation errors
name the field, an SMS account's secret is stored encrypted and never returned."""

from __future__ import annotations

import pytest

from messaging.models import Message, OptOut, SmsAccount
from messaging.services import message_send
from orchestrator import crypto
from tests.campaigns.factories import make_tenant
from tests.campaigns.test_api import API, api_client

pytestmark = pytest.mark.django_db


def test_messages_are_listed_with_filters_and_another_tenants_message_is_404(tenant):
    page = message_send(
        tenant_id=tenant.pk, to="+15550001001", text="page", purpose="page", ref="flows.page:1"
    )
    other = message_send(tenant_id=tenant.pk, to="+15550001002", text="help", purpose="help")
    Message.objects.filter(pk=other.pk).update(status="delivered")
    foreign = message_send(tenant_id=make_tenant().pk, to="+15550001001", text="x")
    client = api_client(tenant)

    body = client.get(f"{API}/messages").json()
    assert [m["id"] for m in body["results"]] == [other.pk, page.pk]
    assert "secret" not in str(body)
    assert [m["id"] for m in client.get(f"{API}/messages?status=delivered").json()["results"]] == [other.pk]
    assert [m["id"] for m in client.get(f"{API}/messages?purpose=page").json()["results"]] == [page.pk]
    assert [m["id"] for m in client.get(f"{API}/messages", {"to": "+15550001001"}).json()["results"]] == [
        page.pk
    ]
    assert client.get(f"{API}/messages", {"from": "+19999999999"}).json()["results"] == []
    assert len(client.get(f"{API}/messages", {"since": "2000-01-01T00:00:00Z"}).json()["results"]) == 2
    assert client.get(f"{API}/messages?direction=in").json()["results"] == []
    assert client.get(f"{API}/messages/{page.pk}").json()["ref"] == "flows.page:1"
    assert client.get(f"{API}/messages/{foreign.pk}").status_code == 404

    bad = client.get(f"{API}/messages?status=lost&since=yesterday")
    assert bad.status_code == 400 and set(bad.json()) == {"status", "since"}


def test_opt_outs_create_list_delete_and_field_named_errors(tenant):
    client = api_client(tenant)
    created = client.post(f"{API}/sms-opt-outs", {"phone_number": "+15550001003"}, format="json")
    assert created.status_code == 201 and created.json()["source"] == "api"
    assert message_send(tenant_id=tenant.pk, to="+15550001003", text="x").status == "blocked"
    assert [e["phone_number"] for e in client.get(f"{API}/sms-opt-outs").json()["results"]] == [
        "+15550001003"
    ]

    bad = client.post(f"{API}/sms-opt-outs", {"phone_number": "0800 CALL ME"}, format="json")
    assert bad.status_code == 400 and list(bad.json()) == ["phone_number"]
    assert client.post(f"{API}/sms-opt-outs", {"phone_number": 5}, format="json").json() == {
        "phone_number": ["must be text, not a number"]
    }
    foreign = OptOut.objects.create(tenant=make_tenant(), phone_number="+15550001004", source="api")
    assert client.delete(f"{API}/sms-opt-outs/{foreign.pk}").status_code == 404
    entry_id = created.json()["id"]
    assert client.delete(f"{API}/sms-opt-outs/{entry_id}").status_code == 204
    assert not OptOut.objects.filter(tenant=tenant).exists()


def test_a_tenant_stores_its_own_twilio_credentials_encrypted_and_never_sees_them(tenant, settings):
    settings.PUBLIC_BASE_URL = "https://voice.example.com"
    client = api_client(tenant)
    data = {
        "kind": "twilio",
        "username": "AC" + "a" * 32,
        "secret": "tok-123",
        "from_numbers": ["+15550001005"],
    }
    created = client.post(f"{API}/sms-accounts", data, format="json")
    assert created.status_code == 201, created.json()
    body = created.json()
    assert "tok-123" not in str(body) and body["has_secret"] is True and "secret" not in body
    account = SmsAccount.objects.get(tenant=tenant)
    assert account.secret_encrypted != "tok-123" and crypto.decrypt(account.secret_encrypted) == "tok-123"
    assert body["webhook_urls"] == {
        "inbound": f"https://voice.example.com/webhooks/sms/twilio/{account.webhook_id}/inbound",
        "status": f"https://voice.example.com/webhooks/sms/twilio/{account.webhook_id}/status",
    }
    assert message_send(tenant_id=tenant.pk, to="+15550001006", text="x").from_number == "+15550001005"

    changed = client.patch(
        f"{API}/sms-accounts/{account.pk}", {"from_numbers": ["+15550001007"]}, format="json"
    )
    assert changed.status_code == 200 and changed.json()["from_numbers"] == ["+15550001007"]
    account.refresh_from_db()
    assert crypto.decrypt(account.secret_encrypted) == "tok-123"  # kept

    second = client.post(f"{API}/sms-accounts", data, format="json")
    assert second.status_code == 400 and list(second.json()) == ["tenant"]
    assert client.get(f"{API}/sms-accounts/{account.pk}", HTTP_X_TENANT="x").status_code == 200
    other_client = api_client(make_tenant())
    assert other_client.get(f"{API}/sms-accounts/{account.pk}").status_code == 404
    assert client.delete(f"{API}/sms-accounts/{account.pk}").status_code == 204


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"kind": "carrier-pigeon"}, "kind"),
        ({"kind": "twilio", "username": "nope", "secret": "x"}, "username"),
        ({"kind": "twilio", "username": "AC" + "a" * 32}, "secret"),
        (
            {"kind": "twilio", "username": "AC" + "a" * 32, "secret": "x", "secret_env": "PLATFORM_TOKEN"},
            "secret",
        ),
        (
            {"kind": "twilio", "username": "AC" + "a" * 32, "secret": "x", "api_base": "http://10.0.0.5/"},
            "api_base",
        ),
        (
            {"kind": "twilio", "username": "AC" + "a" * 32, "secret": "x", "from_numbers": ["555"]},
            "from_numbers",
        ),
        ({"kind": "telnyx", "secret": "x", "public_key": "short"}, "public_key"),
        ({"kind": "twilio", "username": "AC" + "a" * 32, "secret_env": "PLATFORM_TOKEN"}, "secret_env"),
    ],
)
def test_bad_account_settings_are_400_naming_the_field(tenant, data, field):
    response = api_client(tenant).post(f"{API}/sms-accounts", data, format="json")
    assert response.status_code == 400 and field in response.json(), response.json()
    assert not SmsAccount.objects.exists()
