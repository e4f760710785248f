"""Flows and timers admin: every changelist and change page renders; incidents, their timeline and pages,
inbound calls and timers are read-only; forms validate like the services (numbers, minimum wait, text,
same-tenant links)."""

from __future__ import annotations

from typing import Any

import pytest
from django.apps import apps
from django.urls import reverse

from flows.models import EscalationPolicy, OnCallPerson, PhoneNumber
from tests.campaigns.factories import make_tenant
from tests.flows.setup_factories import make_group, make_incident, make_person, make_rotation
from timers.models import Timer

pytestmark = pytest.mark.django_db

EDITABLE = ["oncallperson", "oncallgroup", "rotation", "escalationpolicy", "inboundflow", "phonenumber"]
READ_ONLY = ["incident", "inboundcall"]


@pytest.fixture
def incident() -> Any:
    tenant = make_tenant()
    person = make_person(tenant)
    make_rotation(tenant, [person])
    make_group(tenant, [person])
    return make_incident(tenant, person=person)


def _change_url(app: str, model: str, pk: int) -> str:
    return reverse(f"admin:{app}_{model}_change", args=[pk])


@pytest.mark.parametrize("model", EDITABLE + READ_ONLY)
def test_changelists_add_and_change_pages_render(admin_client, incident, model):
    assert admin_client.get(reverse(f"admin:flows_{model}_changelist")).status_code == 200
    add = admin_client.get(reverse(f"admin:flows_{model}_add")).status_code
    assert add == (403 if model in READ_ONLY else 200)
    row = apps.get_model("flows", model).objects.first()
    assert row is not None, model
    assert admin_client.get(_change_url("flows", model, row.pk)).status_code == 200


def test_the_incident_page_shows_its_timeline_and_pages_read_only(admin_client, incident):
    page = admin_client.get(_change_url("flows", "incident", incident.pk))
    html = page.content.decode()
    assert "Step fired" in html and "Opened" in html
    assert incident.short_code in html
    response = admin_client.post(_change_url("flows", "incident", incident.pk), {"status": "resolved"})
    assert response.status_code == 403
    incident.refresh_from_db()
    assert incident.status == "open"


def test_timers_are_listed_read_only(admin_client, incident):
    timer = Timer.objects.get(key=f"flows.incident:{incident.pk}")
    assert admin_client.get(reverse("admin:timers_timer_changelist")).status_code == 200
    assert admin_client.get(_change_url("timers", "timer", timer.pk)).status_code == 200
    assert admin_client.get(reverse("admin:timers_timer_add")).status_code == 403
    response = admin_client.post(_change_url("timers", "timer", timer.pk), {"state": "cancelled"})
    assert response.status_code == 403
    timer.refresh_from_db()
    assert timer.state == "pending"


def test_the_person_form_validates_like_the_service(admin_client):
    tenant = make_tenant()
    body = {
        "tenant": tenant.pk,
        "name": "Ana\x07",
        "phone": "555",
        "sms_number": "",
        "timezone": "",
        "active": "on",
    }
    response = admin_client.post(reverse("admin:flows_oncallperson_add"), body)
    assert response.status_code == 200 and "international form" in response.content.decode()
    assert not OnCallPerson.objects.exists()
    body["phone"] = "+1 646 555 0170"
    response = admin_client.post(reverse("admin:flows_oncallperson_add"), body)
    assert response.status_code == 302, response.content.decode()[:2000]
    person = OnCallPerson.objects.get()
    assert (person.name, person.phone) == ("Ana", "+16465550170")


def _policy_form(tenant_id: int, step: dict[str, Any]) -> dict[str, Any]:
    body: dict[str, Any] = {
        "tenant": tenant_id,
        "name": "Nights",
        "repeat": 0,
        "fallback_sms": "Nobody took {code}",
        "steps-TOTAL_FORMS": 1,
        "steps-INITIAL_FORMS": 0,
        "steps-MIN_NUM_FORMS": 0,
        "steps-MAX_NUM_FORMS": 1000,
    }
    body.update({f"steps-0-{key}": value for key, value in step.items()})
    return body


def test_the_policy_form_checks_the_minimum_wait_and_the_tenant(admin_client, settings):
    settings.FLOWS_MIN_STEP_WAIT_S = 30
    tenant, other = make_tenant(), make_tenant()
    mine, theirs = make_person(tenant), make_person(other)
    step = {"position": 0, "target_kind": "person", "person": mine.pk, "notify_call": "on", "wait_s": 10}
    response = admin_client.post(reverse("admin:flows_escalationpolicy_add"), _policy_form(tenant.pk, step))
    assert response.status_code == 200 and "at least 30" in response.content.decode()
    step.update(wait_s=120, person=theirs.pk)
    response = admin_client.post(reverse("admin:flows_escalationpolicy_add"), _policy_form(tenant.pk, step))
    assert response.status_code == 200 and "belongs to another tenant" in response.content.decode()
    assert not EscalationPolicy.objects.exists()
    step.update(person=mine.pk)
    response = admin_client.post(reverse("admin:flows_escalationpolicy_add"), _policy_form(tenant.pk, step))
    assert response.status_code == 302, response.content.decode()[:3000]
    assert EscalationPolicy.objects.get().steps.get().wait_s == 120


def test_the_number_form_normalises_the_number(admin_client):
    tenant = make_tenant()
    body = {"tenant": tenant.pk, "number": "+1 646 555 0180", "label": ""}
    assert admin_client.post(reverse("admin:flows_phonenumber_add"), body).status_code == 302
    assert PhoneNumber.objects.get().number == "+16465550180"
