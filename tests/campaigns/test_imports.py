"""The CSV import's bulk writes (queries per batch, not per row) and its queued path: a file of more rows
than IMPORT_INLINE_MAX_ROWS answers 202 with an import to poll, run by contact_import_run (the worker's
task), which commits batch by batch, resumes after a crash with the same report and never runs twice.
A real worker runs one in tests/e2e/test_imports.py."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from campaigns.models import Campaign, Contact, ContactImport, Lead
from campaigns.services import imports
from campaigns.services.imports import contact_import_run, leads_import_csv, leads_import_submit
from tests.campaigns.factories import make_agent, make_campaign, make_contact, make_tenant
from tests.campaigns.test_api import API, api_client

pytestmark = pytest.mark.django_db


def numbers_csv(count: int, *, first: int = 0, plan: str = "gold", bad_every: int = 0) -> str:
    """``count`` rows of distinct valid numbers (every ``bad_every``-th one made invalid)."""
    lines = ["phone_number,name,first_name,plan"]
    for i in range(first, first + count):
        phone = "12345" if bad_every and i % bad_every == bad_every - 1 else f"+1212{5550000 + i:07d}"
        lines.append(f"{phone},Name {i},N{i},{plan}")
    return "\n".join(lines) + "\n"


def queries_of(campaign: Campaign, text: str) -> tuple[int, dict[str, Any]]:
    with CaptureQueriesContext(connection) as queries:
        report = leads_import_csv(campaign=campaign, data=text)
    return len(queries), report


# --------------------------------------------------------------------------------------- bulk writes


# PostgreSQL: SQLite caps the variables of one statement, so Django itself splits a bulk write of 1,000 rows
# into several INSERTs there (still a handful per batch, not ~7 per row).
@pytest.mark.postgres
def test_an_import_uses_the_same_queries_for_10_rows_as_for_1000():
    tenant = make_tenant()
    small, large = make_campaign(tenant), make_campaign(tenant)
    small_new, report = queries_of(small, numbers_csv(10))
    assert report["created"] == 10
    large_new, report = queries_of(large, numbers_csv(1_000, first=100))
    assert report["created"] == 1_000
    assert large_new == small_new
    # Again, with every contact changed (updated) and then as it is (unchanged): no more than new ones.
    small_again, report = queries_of(small, numbers_csv(10, plan="silver"))
    assert report["updated"] == 10
    large_again, report = queries_of(large, numbers_csv(1_000, first=100, plan="silver"))
    assert report["updated"] == 1_000
    assert large_again == small_again <= small_new
    assert queries_of(large, numbers_csv(1_000, first=100, plan="silver"))[1]["unchanged"] == 1_000


def test_queries_grow_by_a_constant_per_batch(settings):
    settings.IMPORT_BATCH_ROWS = 100
    tenant = make_tenant()
    one_batch, _ = queries_of(make_campaign(tenant), numbers_csv(100))
    ten_batches, report = queries_of(make_campaign(tenant), numbers_csv(1_000, first=2_000))
    assert report["created"] == 1_000
    per_batch = 6  # contacts read, inserted, read back; leads read, inserted; (contacts updated)
    assert ten_batches <= one_batch + 9 * per_batch


def test_batches_give_the_report_of_a_single_batch(settings):
    tenant = make_tenant()
    text = numbers_csv(25, bad_every=7)
    make_contact(tenant, "+12125550003", name="Old")
    reports = []
    for batch_rows in (1_000, 4):
        settings.IMPORT_BATCH_ROWS = batch_rows
        campaign = make_campaign(tenant)
        reports.append(leads_import_csv(campaign=campaign, data=text))
        reports.append(leads_import_csv(campaign=campaign, data=text.replace("gold", "silver")))
    assert reports[0] == reports[2] and reports[1] == reports[3]
    assert [error["row"] for error in reports[0]["errors"]] == [8, 15, 22]
    assert (reports[0]["created"], reports[1]["updated"]) == (22, 22)


def test_a_new_contact_gets_the_time_zone_of_its_number_and_an_existing_one_keeps_what_the_row_leaves_blank():
    tenant = make_tenant()
    make_contact(tenant, "+12125550101", name="Kept", timezone="America/Chicago", variables={"plan": "x"})
    campaign = make_campaign(tenant)
    report = leads_import_csv(campaign=campaign, data="phone_number,name\n+12125550101,\n+12125550102,New\n")
    assert (report["created"], report["updated"], report["unchanged"]) == (2, 0, 0)
    kept = Contact.objects.get(tenant=tenant, phone_number="+12125550101")
    assert (kept.name, kept.timezone, kept.variables) == ("Kept", "America/Chicago", {"plan": "x"})
    new = Contact.objects.get(tenant=tenant, phone_number="+12125550102")
    assert (new.name, new.timezone, new.variables) == ("New", "America/New_York", {})
    lead = Lead.objects.get(campaign=campaign, contact=new)
    assert lead.status == Lead.Status.WAITING and lead.next_due_at is not None


# -------------------------------------------------------------------------------------- queued path


@pytest.fixture
def small_inline(settings):
    settings.IMPORT_INLINE_MAX_ROWS = 5
    settings.IMPORT_BATCH_ROWS = 3


def _post(client: APIClient, campaign: Campaign, text: str) -> Any:
    upload = SimpleUploadedFile("leads.csv", text.encode(), content_type="text/csv")
    return client.post(f"{API}/campaigns/{campaign.pk}/import", {"file": upload}, format="multipart")


def test_a_file_over_the_inline_limit_is_queued_and_reports_like_an_inline_import(
    small_inline, django_capture_on_commit_callbacks
):
    tenant = make_tenant()
    client = api_client(tenant)
    text = numbers_csv(12, bad_every=5)
    with django_capture_on_commit_callbacks() as callbacks:
        response = _post(client, (campaign := make_campaign(tenant)), text)
    assert response.status_code == 202, response.content
    body = response.json()
    assert body["url"] == f"{API}/imports/{body['id']}" == response["Location"]
    assert (body["status"], body["rows_total"], body["rows_done"], body["report"]) == ("queued", 12, 0, None)
    assert body["created_by"].startswith("api-key:")
    assert "data" not in body
    assert len(callbacks) == 1  # the worker's task, sent once the import is stored
    assert not Lead.objects.filter(campaign=campaign).exists()

    contact_import_run(import_id=body["id"])
    done = client.get(body["url"]).json()
    assert (done["status"], done["rows_done"], done["rows_total"], done["error"]) == ("done", 12, 12, "")
    assert done["report"] == leads_import_csv(campaign=make_campaign(make_tenant()), data=text)
    assert (done["report"]["created"], len(done["report"]["errors"])) == (10, 2)
    assert Lead.objects.filter(campaign=campaign).count() == 10
    assert bytes(ContactImport.objects.get(pk=body["id"]).data) == b""  # the upload is not kept


def test_a_file_up_to_the_limit_is_still_answered_inline(small_inline):
    tenant = make_tenant()
    response = _post(api_client(tenant), make_campaign(tenant), numbers_csv(5))
    assert response.status_code == 200
    assert response.json()["created"] == 5
    assert not ContactImport.objects.exists()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name\n" + "Ann\n" * 10, "phone_number"),
        ("phone_number\n" + "+12125550101\n" * 10, "more than 8 rows"),
    ],
)
def test_a_large_file_that_cannot_be_imported_is_a_400_at_once(small_inline, monkeypatch, text, message):
    monkeypatch.setattr(imports, "MAX_IMPORT_ROWS", 8)
    tenant = make_tenant()
    response = _post(api_client(tenant), make_campaign(tenant), text)
    assert response.status_code == 400
    assert message in response.json()["file"][0]
    assert not ContactImport.objects.exists()


def test_imports_are_tenant_scoped(small_inline):
    mine, foreign = make_tenant(), make_tenant()
    ours = _post(api_client(mine), make_campaign(mine), numbers_csv(6)).json()
    theirs = _post(api_client(foreign), make_campaign(foreign), numbers_csv(6)).json()
    client = api_client(mine)
    assert client.get(f"{API}/imports/{theirs['id']}").status_code == 404
    assert client.get(f"{API}/imports/{ours['id']}").status_code == 200
    listed = client.get(f"{API}/imports").json()
    assert [row["id"] for row in listed["results"]] == [ours["id"]]


def _queue(campaign: Campaign, text: str) -> int:
    submitted = leads_import_submit(campaign=campaign, data=text, enqueue=lambda import_id: None)
    assert submitted.queued is not None
    return submitted.queued.pk


class WorkerKilled(BaseException):
    """Stands for SIGKILL: not an Exception, so nothing records it; the open transaction is lost."""


def test_a_run_that_crashed_resumes_after_its_last_committed_batch_with_the_same_report(
    small_inline, monkeypatch
):
    tenant = make_tenant()
    text = numbers_csv(11, bad_every=4)  # rows 5 and 9 refused; 9 to write in batches of 3
    import_id = _queue(make_campaign(tenant), text)
    write_batch = imports._write_batch
    calls = 0

    def dies_in_the_second_batch(**kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise WorkerKilled
        return write_batch(**kwargs)

    monkeypatch.setattr(imports, "_write_batch", dies_in_the_second_batch)
    with pytest.raises(WorkerKilled):
        contact_import_run(import_id=import_id)
    crashed = ContactImport.objects.get(pk=import_id)
    assert (crashed.status, crashed.rows_done, crashed.leads_created) == ("running", 2 + 3, 3)
    assert crashed.report is None

    resumed = contact_import_run(import_id=import_id)
    assert resumed is not None
    assert (resumed.status, resumed.rows_done, resumed.rows_total) == ("done", 11, 11)
    assert resumed.report == leads_import_csv(campaign=make_campaign(make_tenant()), data=text)
    assert resumed.report["created"] == 9
    assert Lead.objects.filter(campaign=crashed.campaign).count() == 9


def test_a_done_import_is_not_run_again(small_inline):
    tenant = make_tenant()
    campaign = make_campaign(tenant)
    import_id = _queue(campaign, numbers_csv(6))
    first = contact_import_run(import_id=import_id)
    assert first is not None and first.status == "done"
    Lead.objects.filter(campaign=campaign).delete()
    with CaptureQueriesContext(connection) as queries:
        again = contact_import_run(import_id=import_id)
    assert len(queries) == 1  # read, found done, left alone
    assert again is not None and again.report == first.report
    assert not Lead.objects.filter(campaign=campaign).exists()


def test_the_sweep_runs_again_the_imports_that_lost_their_task_and_only_those(small_inline, monkeypatch):
    from campaigns import tasks  # noqa: PLC0415 - the sweep is a task

    tenant = make_tenant()
    campaign = make_campaign(tenant)
    text = numbers_csv(6)
    lost_queued, fresh_queued, lost_running, live_running = (_queue(campaign, text) for _ in range(4))
    long_ago = timezone.now() - timedelta(hours=1)
    ContactImport.objects.filter(pk=lost_queued).update(created_at=long_ago)
    ContactImport.objects.filter(pk=lost_running).update(status="running", started_at=long_ago)
    ContactImport.objects.filter(pk=live_running).update(status="running", started_at=timezone.now())
    sent: list[int] = []

    def run_now(import_id: int) -> None:  # the worker, here and now
        sent.append(import_id)
        tasks.run_contact_import(import_id)

    monkeypatch.setattr(tasks.run_contact_import, "delay", run_now)
    assert tasks.resume_stalled_imports() == 2
    assert sorted(sent) == sorted([lost_queued, lost_running])
    states = dict(ContactImport.objects.values_list("pk", "status"))
    assert states == {
        lost_queued: "done",
        lost_running: "done",
        fresh_queued: "queued",
        live_running: "running",
    }
    assert tasks.resume_stalled_imports() == 0  # done ones are not swept again


def test_an_import_into_a_campaign_archived_meanwhile_fails_with_the_reason(small_inline):
    tenant = make_tenant()
    campaign = make_campaign(tenant, agent=make_agent(tenant))
    import_id = _queue(campaign, numbers_csv(6))
    Campaign.objects.filter(pk=campaign.pk).update(status=Campaign.Status.ARCHIVED)
    failed = contact_import_run(import_id=import_id)
    assert failed is not None
    assert (failed.status, failed.report) == ("failed", None)
    assert "archived" in failed.error
    assert failed.finished_at is not None
    assert not Lead.objects.filter(campaign=campaign).exists()


def test_the_schema_documents_the_imports_routes():
    response = APIClient().get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    paths = response.json()["paths"]
    assert "/api/v1/imports/{id}" in paths and "/api/v1/imports" in paths
    responses = paths["/api/v1/campaigns/{id}/import"]["post"]["responses"]
    assert {"200", "202"} <= set(responses)
