"""Campaign-domain services: PBX passwords, agents, campaigns, contacts, leads and the DNC list."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured

from campaigns.models import AttemptEvent, Contact, DncEntry, Lead, Pbx
from campaigns.phone import normalize_phone_number, timezone_for_number, timezones_for_number
from campaigns.prompts import render_instructions, template_variables
from campaigns.selectors import dnc_contains
from campaigns.services.agents import agent_profile_create, agent_profile_update
from campaigns.services.attempts import attempt_event_append
from campaigns.services.campaigns import campaign_create, campaign_update
from campaigns.services.contacts import contact_upsert, lead_add
from campaigns.services.dnc import dnc_add, dnc_remove
from campaigns.services.pbx import pbx_create, pbx_password, pbx_place, pbx_set_password
from orchestrator import crypto
from orchestrator.errors import InvalidInput
from tests.campaigns.factories import make_agent, make_campaign, make_contact, make_lead, make_tenant
from tests.campaigns.test_models import make_attempt

pytestmark = pytest.mark.django_db


# ------------------------------------------------------------------------------------------ PBX secrets


def make_pbx(tenant, **overrides):
    """A platform PBX with ``tenant`` placed on it."""
    fields: dict[str, Any] = {"name": "pbx-1", "ari_url": "http://127.0.0.1:8088/", "ari_user": "asterisk"}
    fields.update(overrides)
    pbx = pbx_create(**fields)
    pbx_place(pbx=pbx, tenant=tenant)
    return pbx


def test_pbx_password_from_an_environment_variable(monkeypatch):
    monkeypatch.setenv("TEST_ARI_PASSWORD", "from-the-env")
    pbx = make_pbx(make_tenant(), password_env="TEST_ARI_PASSWORD")
    assert pbx.password_encrypted == ""
    assert pbx_password(pbx=pbx) == "from-the-env"


def test_pbx_password_env_variable_missing_is_a_configuration_error(monkeypatch):
    monkeypatch.delenv("TEST_ARI_PASSWORD_UNSET", raising=False)
    pbx = make_pbx(make_tenant(), password_env="TEST_ARI_PASSWORD_UNSET")
    with pytest.raises(ImproperlyConfigured, match="TEST_ARI_PASSWORD_UNSET"):
        pbx_password(pbx=pbx)


def test_pbx_password_encrypted_round_trip_never_stores_the_plaintext():
    pbx = make_pbx(make_tenant(), password="s3cret-ari-pw")
    row = Pbx.objects.values("password_encrypted", "password_env").get(pk=pbx.pk)
    assert row["password_env"] == ""
    assert row["password_encrypted"] and "s3cret-ari-pw" not in row["password_encrypted"]
    assert pbx_password(pbx=Pbx.objects.get(pk=pbx.pk)) == "s3cret-ari-pw"


def test_pbx_password_source_can_be_switched():
    pbx = make_pbx(make_tenant(), password="first")
    pbx_set_password(pbx=pbx, password_env="OTHER_ARI_PASSWORD")
    pbx.refresh_from_db()
    assert (pbx.password_env, pbx.password_encrypted) == ("OTHER_ARI_PASSWORD", "")
    pbx_set_password(pbx=pbx, password="second")
    pbx.refresh_from_db()
    assert pbx.password_env == "" and pbx_password(pbx=pbx) == "second"


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({}, "password"),  # no source
        ({"password": "x", "password_env": "X"}, "password"),  # two sources
        ({"password": ""}, "password"),
        ({"password_env": "not a name"}, "password_env"),
        ({"password_env": "X", "endpoint_template": "PJSIP/trunk"}, "endpoint_template"),
        ({"password_env": "X", "endpoint_template": "{number}"}, "endpoint_template"),
        ({"password_env": "X", "endpoint_template": "PJSIP/{number}@{trunk}"}, "endpoint_template"),
        ({"password_env": "X", "endpoint_template": "PJSIP/{number"}, "endpoint_template"),
        ({"password_env": "X", "ari_url": "ftp://pbx/"}, "ari_url"),
        ({"password_env": "X", "ari_url": "127.0.0.1:8088"}, "ari_url"),
    ],
)
def test_pbx_create_rejects_bad_input(overrides, field):
    with pytest.raises(InvalidInput) as raised:
        make_pbx(make_tenant(), **overrides)
    assert raised.value.field == field
    assert not Pbx.objects.exists()


def test_a_token_made_with_another_key_is_a_configuration_error(settings):
    pbx = make_pbx(make_tenant(), password="pw")
    settings.FIELD_ENCRYPTION_KEY = "b3RoZXIta2V5LW90aGVyLWtleS1vdGhlci1rZXktMzI="
    with pytest.raises(ImproperlyConfigured, match="FIELD_ENCRYPTION_KEY"):
        pbx_password(pbx=pbx)


def test_key_rotation_keeps_old_tokens_readable(settings):
    old_key = settings.FIELD_ENCRYPTION_KEY
    token = crypto.encrypt("pw")
    settings.FIELD_ENCRYPTION_KEY = f"b3RoZXIta2V5LW90aGVyLWtleS1vdGhlci1rZXktMzI=,{old_key}"
    assert crypto.decrypt(token) == "pw"
    assert crypto.decrypt(crypto.encrypt("new")) == "new"


def test_missing_encryption_key_outside_debug_is_improperly_configured(settings):
    settings.FIELD_ENCRYPTION_KEY = ""
    settings.DEBUG = False
    with pytest.raises(ImproperlyConfigured, match="FIELD_ENCRYPTION_KEY is not set"):
        crypto.encrypt("pw")


def test_debug_derives_a_key_from_the_secret_key(settings):
    settings.FIELD_ENCRYPTION_KEY = ""
    settings.DEBUG = True
    token = crypto.encrypt("pw")
    assert crypto.decrypt(token) == "pw"
    settings.SECRET_KEY = "another-secret"
    with pytest.raises(crypto.InvalidToken):
        crypto.decrypt(token)


def test_a_malformed_encryption_key_is_named(settings):
    settings.FIELD_ENCRYPTION_KEY = "too-short"
    with pytest.raises(ImproperlyConfigured, match="key #1 is not a Fernet key"):
        crypto.encrypt("pw")


# ------------------------------------------------------------------------------------- agent profiles


def test_render_instructions_substitutes_known_and_blanks_unknown_variables():
    template = "Hello {{first_name}}, about {{ product }}. {{missing}}Bye {{first_name}}."
    rendered = render_instructions(template, {"first_name": "Dana", "product": "solar"})
    assert rendered == "Hello Dana, about solar. Bye Dana."
    assert template_variables(template) == {"first_name", "product", "missing"}


def test_render_instructions_runs_no_code_and_does_not_reinterpret_values():
    template = "{{ __class__ }} {{a.b}} {{x|upper}} {% if 1 %}{{ name }}"
    rendered = render_instructions(template, {"name": "{{secret}}", "secret": "leaked"})
    # Only plain {{identifier}} placeholders are replaced; values are inserted literally, not re-rendered.
    assert rendered == " {{a.b}} {{x|upper}} {% if 1 %}{{secret}}"
    assert render_instructions("no placeholders", {}) == "no placeholders"


def test_agent_profile_defaults_and_validation():
    tenant = make_tenant()
    agent = make_agent(
        tenant, transfer_numbers=["+1 (212) 555-0199"], tools=["end_call", "transfer_to_human"]
    )
    assert (agent.voice, agent.model, agent.language) == ("alloy", "gpt-realtime", "en")
    assert agent.transfer_numbers == ["+12125550199"]
    with pytest.raises(InvalidInput) as raised:
        make_agent(tenant, tools=["end_call", "rm_rf"])
    assert raised.value.field == "tools" and "rm_rf" in str(raised.value)
    with pytest.raises(InvalidInput) as raised:
        make_agent(tenant, transfer_numbers=["+12125550199", "12345"])
    assert raised.value.field == "transfer_numbers" and "[1]" in str(raised.value)
    with pytest.raises(InvalidInput, match="instructions"):
        agent_profile_create(tenant=tenant, name="empty", instructions="  ")


def test_agent_profile_update_validates_like_create():
    agent = make_agent(make_tenant())
    agent_profile_update(agent=agent, voice="verse", tools=["send_sms"])
    agent.refresh_from_db()
    assert (agent.voice, agent.tools) == ("verse", ["send_sms"])
    with pytest.raises(InvalidInput, match="tools"):
        agent_profile_update(agent=agent, tools="end_call")
    with pytest.raises(InvalidInput, match="tenant"):
        agent_profile_update(agent=agent, tenant=make_tenant())


# ------------------------------------------------------------------------------------------ campaigns


def test_campaign_cap_defaults_to_the_tenant_cap_and_may_not_exceed_it():
    tenant = make_tenant(max_concurrent_calls=4)
    assert make_campaign(tenant).max_concurrent_calls == 4
    assert make_campaign(tenant, max_concurrent_calls=2).max_concurrent_calls == 2
    with pytest.raises(InvalidInput) as raised:
        make_campaign(tenant, max_concurrent_calls=5)
    assert raised.value.field == "max_concurrent_calls" and "4" in raised.value.message


def test_campaign_update_checks_the_cap_too():
    campaign = make_campaign(make_tenant(max_concurrent_calls=3))
    with pytest.raises(InvalidInput, match="max_concurrent_calls"):
        campaign_update(campaign=campaign, max_concurrent_calls=4)
    campaign.refresh_from_db()
    assert campaign.max_concurrent_calls == 3
    campaign_update(campaign=campaign, max_concurrent_calls=1, priority=7)
    campaign.refresh_from_db()
    assert (campaign.max_concurrent_calls, campaign.priority) == (1, 7)
    with pytest.raises(InvalidInput, match="status"):
        campaign_update(campaign=campaign, status="running")


def test_campaign_agent_of_another_tenant_is_rejected():
    tenant, other = make_tenant(), make_tenant()
    foreign_agent = make_agent(other)
    with pytest.raises(InvalidInput) as raised:
        campaign_create(tenant=tenant, agent=foreign_agent, name="c", caller_id="+14155550100")
    assert raised.value.field == "agent"
    campaign = make_campaign(tenant)
    with pytest.raises(InvalidInput, match="agent"):
        campaign_update(campaign=campaign, agent=foreign_agent)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"caller_id": "555"}, "caller_id"),
        ({"name": ""}, "name"),
        ({"calling_windows": {"funday": [["09:00", "17:00"]]}}, "calling_windows"),
        ({"calling_windows": {"mon": [["17:00", "09:00"]]}}, "calling_windows"),
        ({"calling_windows": [["09:00", "17:00"]]}, "calling_windows"),
        ({"retry_delays": {"busy": -1}}, "retry_delays"),
        ({"retry_delays": {"sleepy": 60}}, "retry_delays"),
        ({"retry_delays": {"busy": "600"}}, "retry_delays"),
        ({"max_attempts": 0}, "max_attempts"),
        ({"ring_timeout": 0}, "ring_timeout"),
        ({"ring_timeout": 10_000}, "ring_timeout"),
        ({"starts_at": datetime(2030, 1, 1)}, "starts_at"),  # noqa: DTZ001 - naive on purpose
    ],
)
def test_campaign_create_rejects_bad_input(overrides, field):
    tenant = make_tenant()
    agent = make_agent(tenant)
    with pytest.raises(InvalidInput) as raised:
        make_campaign(tenant, agent=agent, **overrides)
    assert raised.value.field == field
    assert not tenant.campaigns.exists()


def test_campaign_windows_error_names_the_bad_key():
    with pytest.raises(InvalidInput, match="funday"):
        make_campaign(make_tenant(), calling_windows={"mon": [["09:00", "17:00"]], "funday": []})


def test_campaign_must_end_after_start():
    start = datetime(2030, 1, 2, tzinfo=UTC)
    with pytest.raises(InvalidInput):
        make_campaign(make_tenant(), starts_at=start, ends_at=start)


def test_campaign_caller_id_is_normalised():
    assert make_campaign(make_tenant(), caller_id="+1 415 555 0100").caller_id == "+14155550100"


# -------------------------------------------------------------------------------------------- contacts


def test_contact_upsert_normalises_the_number_and_derives_the_timezone():
    tenant = make_tenant()
    contact = contact_upsert(tenant=tenant, phone_number="+1 (212) 555-0123", name="Dana", variables={"n": 1})
    assert contact.phone_number == "+12125550123"
    assert contact.timezone == "America/New_York"
    assert contact.variables == {"n": "1"}
    assert make_contact(tenant, "+33 6 12 34 56 78").timezone == "Europe/Paris"


def test_contact_timezone_stays_blank_when_the_number_spans_zones():
    # A Russian mobile number maps to many zones: windows must then hold in all of them.
    assert len(timezones_for_number("+79161234567")) > 1
    assert timezone_for_number("+79161234567") == ""
    assert make_contact(make_tenant(), "+79161234567").timezone == ""


def test_contact_upsert_updates_the_existing_contact():
    tenant = make_tenant()
    first = contact_upsert(tenant=tenant, phone_number="+12125550123", name="Dana", variables={"a": "1"})
    again = contact_upsert(tenant=tenant, phone_number="+1 212 555 0123", timezone="America/Chicago")
    assert again.pk == first.pk
    assert (again.name, again.timezone, again.variables) == ("Dana", "America/Chicago", {"a": "1"})
    again = contact_upsert(tenant=tenant, phone_number="+12125550123", name="Dee", variables={})
    assert (again.name, again.variables) == ("Dee", {})
    assert Contact.objects.filter(tenant=tenant).count() == 1


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"phone_number": "2125550123"}, "phone_number"),  # no country code
        ({"phone_number": "+1212"}, "phone_number"),
        ({"phone_number": "+999123456789"}, "phone_number"),
        ({"phone_number": "call me"}, "phone_number"),
        ({"phone_number": ""}, "phone_number"),
        ({"phone_number": "+15550100001"}, "phone_number"),  # fictional, not a test prefix here
        ({"phone_number": "+12125550123", "timezone": "Mars/Base"}, "timezone"),
        ({"phone_number": "+12125550123", "variables": {"a": ["list"]}}, "variables"),
        ({"phone_number": "+12125550123", "variables": "a=b"}, "variables"),
        ({"phone_number": "+12125550123", "name": "x" * 201}, "name"),
    ],
)
def test_contact_upsert_rejects_bad_input_naming_the_field(kwargs, field):
    tenant = make_tenant()
    with pytest.raises(ValueError, match=field) as raised:
        contact_upsert(tenant=tenant, **kwargs)
    assert isinstance(raised.value, InvalidInput) and raised.value.field == field
    assert not Contact.objects.exists()


def test_test_prefixes_admit_fictional_numbers(settings):
    settings.PHONE_TEST_PREFIXES = ["+1555"]
    assert normalize_phone_number("+15550100001") == "+15550100001"
    assert make_contact(make_tenant(), "+15550100001").timezone == ""
    with pytest.raises(InvalidInput):
        normalize_phone_number("+1555")  # still has to be a possible number
    with pytest.raises(InvalidInput):
        normalize_phone_number("+15560100001")  # outside the prefix


def test_lead_add_is_idempotent_and_due_now():
    tenant = make_tenant()
    campaign = make_campaign(tenant)
    contact = make_contact(tenant)
    lead, created = lead_add(campaign=campaign, contact=contact)
    assert created and lead.status == Lead.Status.WAITING and lead.next_due_at is not None
    same, created_again = lead_add(campaign=campaign, contact=contact)
    assert same.pk == lead.pk and not created_again


def test_lead_add_refuses_a_contact_of_another_tenant():
    campaign = make_campaign(make_tenant())
    foreign = make_contact(make_tenant())
    with pytest.raises(InvalidInput, match="contact"):
        lead_add(campaign=campaign, contact=foreign)


# -------------------------------------------------------------------------------------------------- DNC


def test_dnc_add_contains_remove_are_scoped_by_tenant_and_normalised():
    tenant, other = make_tenant(), make_tenant()
    entry = dnc_add(tenant=tenant, phone_number="+1 212 555 0123", source="api", note="asked")
    assert entry.phone_number == "+12125550123"
    assert dnc_contains(tenant=tenant, phone_number="+12125550123")
    assert dnc_contains(tenant=tenant, phone_number="+1 (212) 555-0123")
    assert not dnc_contains(tenant=other, phone_number="+12125550123")
    # Adding again keeps the first entry.
    assert dnc_add(tenant=tenant, phone_number="+12125550123", source="agent").source == "api"
    assert DncEntry.objects.filter(tenant=tenant).count() == 1
    assert dnc_remove(tenant=tenant, phone_number="+12125550123") is True
    assert dnc_remove(tenant=tenant, phone_number="+12125550123") is False
    assert not dnc_contains(tenant=tenant, phone_number="+12125550123")


def test_dnc_rejects_bad_input():
    tenant = make_tenant()
    with pytest.raises(InvalidInput, match="source"):
        dnc_add(tenant=tenant, phone_number="+12125550123", source="gossip")
    with pytest.raises(InvalidInput, match="phone_number"):
        dnc_add(tenant=tenant, phone_number="nope", source="api")
    with pytest.raises(InvalidInput, match="phone_number"):
        dnc_contains(tenant=tenant, phone_number="nope")


# -------------------------------------------------------------------------------------- attempt events


def test_attempt_event_append():
    attempt = make_attempt(make_lead(make_tenant()))
    event = attempt_event_append(attempt=attempt, kind="ari", type="StasisStart", data={"args": ["outbound"]})
    assert list(attempt.events.all()) == [event]
    with pytest.raises(InvalidInput, match="kind"):
        attempt_event_append(attempt=attempt, kind="gossip", type="x")
    assert AttemptEvent.objects.count() == 1
