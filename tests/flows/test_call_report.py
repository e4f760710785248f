"""The media worker's end-of-call report of a call the flows own (``media.flow_call_report``): what was said
on an inbound call or an on-call page call is kept with it, for the business's records."""

from __future__ import annotations

from typing import Any

import pytest
from django.utils import timezone

from flows.models import InboundCall, Incident, OnCallPerson, Page
from flows.tasks import media_flow_call_report
from tests.campaigns.factories import make_tenant

pytestmark = pytest.mark.django_db

TURNS = [
    {"role": "agent", "text": "Acme after-hours line.", "at": "2026-12-04T22:00:01Z"},
    {"role": "caller", "text": "The furnace stopped.", "at": "2026-12-04T22:00:04Z"},
    {"role": "nobody", "text": "dropped"},
    "not a turn",
]


def test_an_inbound_calls_transcript_and_metrics_land_on_it_once() -> None:
    tenant = make_tenant()
    call = InboundCall.objects.create(channel_id="1767650400.17", tenant=tenant, started_at=timezone.now())
    kwargs: dict[str, Any] = {
        "call_id": call.channel_id,
        "tenant_id": tenant.pk,
        "transcript": TURNS,
        "metrics": {"replies": 2},
    }
    assert media_flow_call_report(**kwargs) == "done"
    call.refresh_from_db()
    assert [turn["text"] for turn in call.transcript] == ["Acme after-hours line.", "The furnace stopped."]
    assert call.media_metrics == {"replies": 2}
    assert media_flow_call_report(**kwargs) == "unchanged"
    # Another tenant's call id is dropped, and changes nothing.
    other = make_tenant()
    assert media_flow_call_report(call_id=call.channel_id, tenant_id=other.pk, transcript=[]) == "dropped"
    call.refresh_from_db()
    assert len(call.transcript) == 2


def test_a_page_calls_transcript_lands_on_the_page() -> None:
    tenant = make_tenant()
    person = OnCallPerson.objects.create(tenant=tenant, name="Jo", phone="+15550170003")
    incident = Incident.objects.create(tenant=tenant, short_code="12345", caller_number="+12125550100")
    page = Page.objects.create(
        incident=incident, person=person, channel="call", to_number=person.phone,
        call_id="00000000-0000-8000-8000-0000000000aa",
    )  # fmt: skip
    call_id = str(page.call_id)
    assert media_flow_call_report(call_id=call_id, tenant_id=tenant.pk, transcript=TURNS[:1]) == "done"
    page.refresh_from_db()
    assert page.transcript == [TURNS[0]]
    assert media_flow_call_report(call_id=call_id, tenant_id=tenant.pk, transcript="nope") == "invalid"
