"""One cap for all of a tenant's calls (DESIGN.md §5 rule 1): the campaign dispatcher counts the live
inbound calls and on-call page calls of the flows, and a page call waits for a line at the cap."""

from __future__ import annotations

import pytest
from django.utils import timezone

from campaigns.models import Pbx
from campaigns.services.dispatch import dispatch_tenant
from flows.models import InboundCall, Incident, OnCallPerson, Page
from flows.services import pages
from tests.campaigns.test_dispatch import NOW, due_leads, live_count, running_campaign, tenant_with_pbx
from tests.health import pbxs_and_media_up

pytestmark = pytest.mark.django_db


def _incident(tenant) -> Incident:
    return Incident.objects.create(tenant=tenant, short_code="11111", caller_number="+12125550100")


def test_the_dispatcher_counts_live_inbound_calls_and_page_calls_against_the_cap() -> None:
    tenant = tenant_with_pbx(cap=5)
    campaign = running_campaign(tenant)
    due_leads(campaign, 6)
    InboundCall.objects.create(
        channel_id="in-1", tenant=tenant, handling=InboundCall.Handling.AGENT, started_at=timezone.now()
    )
    InboundCall.objects.create(  # refused: it held no line
        channel_id="in-2",
        tenant=tenant,
        handling=InboundCall.Handling.REFUSED_OVER_CAP,
        started_at=timezone.now(),
    )
    person = OnCallPerson.objects.create(tenant=tenant, name="Bo", phone="+15550000001")
    incident = _incident(tenant)
    Page.objects.create(  # placed: holds a line
        incident=incident, person=person, channel="call", to_number=person.phone, status="sent",
        sent_at=timezone.now(), call_id="00000000-0000-8000-8000-000000000001",
    )  # fmt: skip
    Page.objects.create(  # waiting for a line: holds none
        incident=incident, person=person, channel="call", to_number=person.phone, step=1,
        call_id="00000000-0000-8000-8000-000000000002",
    )  # fmt: skip
    with pbxs_and_media_up(Pbx.objects.filter(placements__tenant=tenant).values_list("pk", flat=True)):
        ids = dispatch_tenant(tenant_id=tenant.pk, now=NOW)
    assert len(ids) == 3
    assert live_count(tenant=tenant) == 3


def test_a_page_call_waits_for_a_line_at_the_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_ARI_PASSWORD", "secret")  # the test PBX's password variable
    tenant = tenant_with_pbx(cap=1)
    InboundCall.objects.create(
        channel_id="in-1", tenant=tenant, handling=InboundCall.Handling.AGENT, started_at=timezone.now()
    )
    person = OnCallPerson.objects.create(tenant=tenant, name="Bo", phone="+15550000001")
    page = Page.objects.create(
        incident=_incident(tenant), person=person, channel="call", to_number=person.phone,
        call_id="00000000-0000-8000-8000-000000000003",
    )  # fmt: skip
    with pytest.raises(pages.PageRetry, match="cap"):
        pages.page_send(page_id=page.pk)
    page.refresh_from_db()
    assert page.status == "to_send" and page.sent_at is None  # not claimed: it will be tried again
