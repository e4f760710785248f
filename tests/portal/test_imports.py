"""Portal: contact imports: upload, column mapping, the queued import's progress and its row-level report."""

from __future__ import annotations

import csv
import io
import re
from unittest import mock

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from campaigns.models import Contact, ContactImport, Lead
from campaigns.services.imports import (
    contact_import_run,
    import_file_preview,
    import_file_remap,
    import_mapping_check,
    leads_import_submit,
)
from tenants.models import AuditEntry
from tests.campaigns.factories import make_campaign

pytestmark = pytest.mark.django_db

MESSY = (
    "Mobile,Full Name,Shoe size,tz,Notes\n"
    "+12125550101,Ann,38,America/New_York,a\n"
    "not a number,Bob,40,,b\n"
    "+12125550103,Cy,41,Mars/Olympus,c\n"
    "\n"
    "+12125550104,Di,42,,d\n"
    "+12125550101,Ann again,38,,e\n"
)


def _upload(client, campaign, text: str = MESSY, name: str = "leads.csv"):
    upload = SimpleUploadedFile(name, text.encode(), content_type="text/csv")
    return client.post(reverse("portal:import-new"), {"campaign": str(campaign.pk), "file": upload})


def _mapping_post(response) -> dict[str, str]:
    """The mapping form's fields as the page proposes them."""
    html = response.content.decode()
    data = {}
    for i, selected in re.findall(r'name="col-(\d+)".*?<option value="(\w+)" selected', html, re.S):
        data[f"col-{i}"] = selected
    for i, value in re.findall(r'name="var-(\d+)" value="([^"]*)"', html):
        data[f"var-{i}"] = value
    return data


def _start(client, campaign, text: str = MESSY, django_capture_on_commit_callbacks=None):
    response = _upload(client, campaign, text)
    assert response.status_code == 302, response.content
    map_url = response["Location"]
    page = client.get(map_url)
    assert page.status_code == 200
    assert b'id="map-form"' in page.content
    return map_url, _mapping_post(page)


def test_the_mapping_guesses_columns_and_the_import_reports_bad_rows(
    tenant, manager, django_capture_on_commit_callbacks
):
    campaign = make_campaign(tenant, name="Spring promo")
    map_url, data = _start(manager, campaign)
    assert data["col-0"] == "phone_number" and data["col-1"] == "name" and data["col-3"] == "timezone"
    assert data["col-2"] == "variable" and data["var-2"] == "shoe_size"
    data["col-4"] = "ignore"
    with mock.patch("portal.views.imports.run_contact_import") as task:
        with django_capture_on_commit_callbacks(execute=True):
            response = manager.post(map_url, data)
    assert response.status_code == 302, response.content
    imp = ContactImport.objects.get(tenant=tenant)
    assert response["Location"] == reverse("portal:import", kwargs={"pk": imp.pk})
    task.delay.assert_called_once_with(imp.pk)  # always queued, even a small file
    assert (imp.status, imp.rows_total, imp.rows_done) == ("queued", 5, 0)

    page = manager.get(response["Location"])
    assert page.status_code == 200
    html = page.content.decode()
    assert 'id="import-progress"' in html and 'data-percent="0"' in html
    assert f'hx-trigger="sse:import-{imp.pk}, every 1s"' in html  # live while it runs
    assert 'id="import-report"' not in html

    contact_import_run(import_id=imp.pk)
    page = manager.get(reverse("portal:import", kwargs={"pk": imp.pk}))
    html = page.content.decode()
    assert 'data-status="done"' in html and 'data-percent="100"' in html
    assert "hx-trigger" not in html.split('id="import-live"')[1].split(">")[0]  # no more polling
    report = html.split('id="import-report"')[1]
    assert 'data-row="3"' in report and 'data-row="4"' in report and 'data-row="7"' in report
    assert "Mars/Olympus" in report and "repeats row 2" in report
    assert Lead.objects.filter(campaign=campaign).count() == 2
    ann = Contact.objects.get(tenant=tenant, phone_number="+12125550101")
    assert (ann.name, ann.timezone, ann.variables) == ("Ann", "America/New_York", {"shoe_size": "38"})

    download = manager.get(reverse("portal:import-report-csv", kwargs={"pk": imp.pk}))
    assert download.status_code == 200 and download["Content-Type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(b"".join(download.streaming_content).decode("utf-8-sig"))))
    assert rows[0] == ["kind", "row", "field", "message"]
    assert [(r[1], r[2]) for r in rows[1:]] == [
        ("3", "phone_number"),
        ("4", "timezone"),
        ("7", "phone_number"),
    ]

    entry = AuditEntry.objects.get(tenant=tenant, action="import.create")
    assert entry.via == "portal" and "Spring promo" in entry.target


def test_the_progress_partial_follows_the_batches(
    tenant, manager, settings, django_capture_on_commit_callbacks
):
    settings.IMPORT_BATCH_ROWS = 2
    campaign = make_campaign(tenant)
    text = "phone_number\n" + "".join(f"+1212555{n:04d}\n" for n in range(6))
    with django_capture_on_commit_callbacks():
        submitted = leads_import_submit(
            campaign=campaign, data=text, enqueue=lambda _: None, inline_max_rows=0
        )
    imp = submitted.queued
    assert imp is not None
    url = reverse("portal:import-progress", kwargs={"pk": imp.pk})
    assert 'data-status="queued"' in manager.get(url).content.decode()
    with mock.patch("campaigns.services.imports.live_notify") as notify:
        contact_import_run(import_id=imp.pk)
    # running, then one hint per committed batch (3), then done
    assert [c.kwargs for c in notify.call_args_list].count(
        {"tenant_id": tenant.pk, "kind": "import", "import_id": imp.pk}
    ) == 5
    html = manager.get(url).content.decode()
    assert 'data-status="done"' in html and "Every row was imported" in html


def test_upload_errors_show_beside_the_field_and_nothing_is_stored(tenant, other_tenant, manager):
    campaign = make_campaign(tenant)
    # a file that is not UTF-8
    bad = SimpleUploadedFile("x.csv", b"\xff\xfephone\n", content_type="text/csv")
    response = manager.post(reverse("portal:import-new"), {"campaign": str(campaign.pk), "file": bad})
    assert response.status_code == 400
    assert b'data-field="file"' in response.content and b"UTF-8" in response.content
    # no campaign chosen
    response = manager.post(
        reverse("portal:import-new"), {"file": SimpleUploadedFile("a.csv", b"phone\n+12125550101\n")}
    )
    assert response.status_code == 400 and b'data-field="campaign"' in response.content
    # another tenant's campaign is not a choice
    response = manager.post(
        reverse("portal:import-new"),
        {"campaign": str(make_campaign(other_tenant).pk), "file": SimpleUploadedFile("a.csv", b"x\n1\n")},
    )
    assert response.status_code == 400 and b'data-field="campaign"' in response.content
    assert not ContactImport.objects.exists()


def test_a_mapping_without_a_phone_column_is_refused_beside_it(tenant, manager):
    campaign = make_campaign(tenant)
    map_url, data = _start(manager, campaign)
    data["col-0"] = "ignore"
    response = manager.post(map_url, data)
    assert response.status_code == 400
    assert b"one column must be the phone number" in response.content
    data["col-0"], data["col-1"] = "phone_number", "phone_number"
    response = manager.post(map_url, data)
    assert response.status_code == 400 and b'data-field="col-1"' in response.content
    assert not ContactImport.objects.exists()


def test_an_expired_upload_sends_back_to_the_upload(manager, tenant):
    response = manager.get(reverse("portal:import-map", kwargs={"token": "nope"}))
    assert response.status_code == 302 and response["Location"] == reverse("portal:import-new")


def test_a_viewer_sees_no_upload_and_a_forged_one_is_refused(tenant, viewer):
    campaign = make_campaign(tenant)
    page = viewer.get(reverse("portal:import-new"))
    assert page.status_code == 200 and b'id="import-form"' not in page.content
    assert b'id="import-new"' not in viewer.get(reverse("portal:imports")).content
    response = _upload(viewer, campaign)
    assert response.status_code == 403
    assert not ContactImport.objects.exists() and not AuditEntry.objects.filter(tenant=tenant).exists()


def test_another_tenants_import_is_not_found(
    tenant, other_tenant, manager, django_capture_on_commit_callbacks
):
    theirs = make_campaign(other_tenant)
    with django_capture_on_commit_callbacks():
        submitted = leads_import_submit(
            campaign=theirs, data="phone_number\n+12125550101\n", enqueue=lambda _: None, inline_max_rows=0
        )
    assert submitted.queued is not None
    pk = submitted.queued.pk
    for name in ("portal:import", "portal:import-progress", "portal:import-report-csv"):
        assert manager.get(reverse(name, kwargs={"pk": pk})).status_code == 404
    assert b"No contacts imported yet" in manager.get(reverse("portal:imports")).content


def test_empty_states(tenant, manager):
    assert b"No contacts imported yet" in manager.get(reverse("portal:imports")).content
    page = manager.get(reverse("portal:import-new"))
    assert b"No campaign to import into" in page.content


def test_the_list_reads_in_a_handful_of_queries(tenant, manager, django_assert_max_num_queries):
    campaign = make_campaign(tenant)

    def add(n: int) -> None:
        for i in range(n):
            leads_import_submit(
                campaign=campaign,
                data=f"phone_number\n+1212555{i:04d}\n",
                enqueue=lambda _: None,
                inline_max_rows=0,
            )

    add(3)
    with django_assert_max_num_queries(10):
        assert manager.get(reverse("portal:imports")).status_code == 200
    add(40)
    with django_assert_max_num_queries(10):
        page = manager.get(reverse("portal:imports"))
    assert page.content.count(b"data-import=") == 43


def test_the_mapping_rewrites_the_file_keeping_row_numbers():
    text = "a,Tel,b\n1,+12125550101,x\n\n2,+12125550102\n"
    preview = import_file_preview(data=text)
    assert preview.header == ["a", "Tel", "b"] and preview.guesses == ["variable", "phone_number", "variable"]
    assert preview.rows == 2
    mapping = [("ignore", ""), ("phone_number", ""), ("variable", "b")]
    assert import_mapping_check(mapping=mapping) == {}
    rows = list(csv.reader(io.StringIO(import_file_remap(data=text, mapping=mapping).decode())))
    assert rows == [["phone_number", "b"], ["+12125550101", "x"], [], ["2", "+12125550102", ""]]
    assert import_mapping_check(mapping=[("variable", "name"), ("phone_number", ""), ("variable", "2x")]) == {
        0: "name is a contact field: choose it in the list instead of variable",
        2: "letters, digits and _ only, not starting with a digit (e.g. first_name)",
    }
    assert import_file_preview(data="Full Name,2nd,phone\n").variable_names == ["full_name", "_2nd", "phone"]


def test_the_list_filters_by_campaign_and_polls_while_an_import_runs(tenant, manager):
    spring, autumn = make_campaign(tenant), make_campaign(tenant)
    for campaign in (spring, autumn):
        leads_import_submit(
            campaign=campaign, data="phone_number\n+12125550101\n", enqueue=lambda _: None, inline_max_rows=0
        )
    page = manager.get(reverse("portal:imports"), {"campaign": str(spring.pk)}).content.decode()
    assert page.count("data-import=") == 1
    assert 'hx-trigger="sse:imports, every 2s"' in page
    partial = manager.get(reverse("portal:imports"), HTTP_HX_REQUEST="true").content.decode()
    assert partial.lstrip().startswith('<div id="imports-list"')
    assert "<html" not in partial and partial.count("data-import=") == 2
