"""Portal: the do-not-call list (search, add, remove, CSV import) with the SMS opt-outs beside it."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from campaigns.models import DncEntry
from campaigns.services.dnc import dnc_add
from messaging.models import OptOut
from tenants.models import AuditEntry

pytestmark = pytest.mark.django_db


def _numbers(tenant) -> set[str]:
    return set(DncEntry.objects.filter(tenant=tenant).values_list("phone_number", flat=True))


def test_add_search_and_remove(tenant, manager):
    response = manager.post(
        reverse("portal:dnc-add"), {"phone_number": "+1 (212) 555-0199", "note": "asked twice"}
    )
    assert response.status_code == 302
    assert _numbers(tenant) == {"+12125550199"}
    page = manager.get(response["Location"])
    assert b"+12125550199 is on the do-not-call list." in page.content
    assert b'data-dnc="+12125550199"' in page.content
    dnc_add(tenant=tenant, phone_number="+13105550100", source="api")
    found = manager.get(reverse("portal:dnc"), {"q": "310"})
    assert b'data-dnc="+13105550100"' in found.content and b'data-dnc="+12125550199"' not in found.content
    entry = DncEntry.objects.get(tenant=tenant, phone_number="+12125550199")
    assert manager.post(reverse("portal:dnc-remove", kwargs={"pk": entry.pk})).status_code == 302
    assert _numbers(tenant) == {"+13105550100"}
    actions = list(AuditEntry.objects.filter(tenant=tenant).values_list("action", "target"))
    assert ("dnc.add", "DNC +12125550199") in actions and ("dnc.remove", "DNC +12125550199") in actions


def test_a_bad_number_shows_the_apis_message_beside_the_field(tenant, manager):
    response = manager.post(reverse("portal:dnc-add"), {"phone_number": "not a number"})
    assert response.status_code == 400
    html = response.content.decode()
    assert 'data-field="phone_number"' in html
    assert 'value="not a number"' in html
    assert not DncEntry.objects.exists()
    blank = manager.post(reverse("portal:dnc-add"), {"phone_number": ""})
    assert blank.status_code == 400 and 'data-field="phone_number"' in blank.content.decode()
    assert not AuditEntry.objects.filter(tenant=tenant).exists()


def test_import_a_csv_of_numbers_with_a_report(tenant, manager):
    dnc_add(tenant=tenant, phone_number="+12125550101", source="api")
    text = "name,phone_number\nA,+12125550101\nB,garbage\nC,+12125550102\n,\nD,+12125550102\n"
    upload = SimpleUploadedFile("dnc.csv", text.encode(), content_type="text/csv")
    response = manager.post(reverse("portal:dnc-import"), {"file": upload})
    assert response.status_code == 302
    assert _numbers(tenant) == {"+12125550101", "+12125550102"}
    assert DncEntry.objects.get(phone_number="+12125550102").source == "csv"
    assert DncEntry.objects.get(phone_number="+12125550101").source == "api"  # kept as it was
    page = manager.get(response["Location"]).content.decode()
    assert "1 number(s) added, 1 already on the list, 1 row(s) refused." in page
    report = page.split('id="dnc-import-report"')[1]
    assert "<td>3</td>" in report
    assert AuditEntry.objects.get(tenant=tenant, action="dnc.import").detail["added"] == 1
    # a bare list of numbers, no header
    upload = SimpleUploadedFile("plain.csv", b"+12125550103\n+12125550104\n")
    assert manager.post(reverse("portal:dnc-import"), {"file": upload}).status_code == 302
    assert {"+12125550103", "+12125550104"} <= _numbers(tenant)


def test_an_unreadable_import_is_refused_beside_the_field(tenant, manager):
    upload = SimpleUploadedFile("x.csv", b"\xff\xfe\x00", content_type="text/csv")
    response = manager.post(reverse("portal:dnc-import"), {"file": upload})
    assert response.status_code == 400 and b'data-field="file"' in response.content
    assert manager.post(reverse("portal:dnc-import"), {}).status_code == 400
    assert not DncEntry.objects.exists()


def test_sms_opt_outs_show_beside_and_can_be_added(tenant, manager):
    opt = OptOut.objects.create(tenant=tenant, phone_number="+12125550150", source="keyword", keyword="STOP")
    OptOut.objects.create(tenant=tenant, phone_number="+12125550151", source="provider")
    dnc_add(tenant=tenant, phone_number="+12125550151", source="api")
    page = manager.get(reverse("portal:dnc")).content.decode()
    opt_outs = page.split('id="opt-out-table"')[1]
    assert 'data-opt-out="+12125550150"' in opt_outs and "STOP" in opt_outs
    assert "on do-not-call" in opt_outs
    assert "opted out" in page.split('id="dnc-table"')[1]  # the listed number is flagged as opted out too
    response = manager.post(reverse("portal:dnc-from-opt-out", kwargs={"pk": opt.pk}))
    assert response.status_code == 302
    assert DncEntry.objects.get(tenant=tenant, phone_number="+12125550150").source == "opt_out"


def test_empty_states(tenant, manager):
    page = manager.get(reverse("portal:dnc")).content.decode()
    assert "The do-not-call list is empty." in page
    assert "Nobody has opted out of your text messages." in page
    assert "No listed number matches." in manager.get(reverse("portal:dnc"), {"q": "999"}).content.decode()


def test_a_viewer_sees_no_write_controls_and_a_forged_post_changes_nothing(tenant, viewer):
    entry = dnc_add(tenant=tenant, phone_number="+12125550160", source="api")
    opt = OptOut.objects.create(tenant=tenant, phone_number="+12125550161", source="keyword")
    page = viewer.get(reverse("portal:dnc")).content.decode()
    assert page.count("<form") == page.count('method="get"') + page.count('action="/signout"')
    assert "dnc-add-form" not in page and "data-remove" not in page and "Add to do-not-call" not in page
    upload = SimpleUploadedFile("dnc.csv", b"+12125550162\n")
    assert viewer.post(reverse("portal:dnc-add"), {"phone_number": "+12125550163"}).status_code == 403
    assert viewer.post(reverse("portal:dnc-import"), {"file": upload}).status_code == 403
    assert viewer.post(reverse("portal:dnc-remove", kwargs={"pk": entry.pk})).status_code == 403
    assert viewer.post(reverse("portal:dnc-from-opt-out", kwargs={"pk": opt.pk})).status_code == 403
    assert _numbers(tenant) == {"+12125550160"}
    assert not AuditEntry.objects.filter(tenant=tenant, via="portal").exists()


def test_another_tenants_entries_are_not_found(tenant, other_tenant, manager):
    theirs = dnc_add(tenant=other_tenant, phone_number="+12125550170", source="api")
    their_opt = OptOut.objects.create(tenant=other_tenant, phone_number="+12125550171", source="keyword")
    assert manager.post(reverse("portal:dnc-remove", kwargs={"pk": theirs.pk})).status_code == 404
    assert manager.post(reverse("portal:dnc-from-opt-out", kwargs={"pk": their_opt.pk})).status_code == 404
    assert DncEntry.objects.filter(tenant=other_tenant).count() == 1
    assert not DncEntry.objects.filter(tenant=tenant).exists()
    page = manager.get(reverse("portal:dnc")).content.decode()
    assert "+12125550170" not in page and "+12125550171" not in page


def test_the_page_reads_in_a_handful_of_queries(tenant, manager, django_assert_max_num_queries):
    def add(start: int, n: int) -> None:
        for i in range(start, start + n):
            dnc_add(tenant=tenant, phone_number=f"+1212555{i:04d}", source="api")
            OptOut.objects.create(tenant=tenant, phone_number=f"+1212555{i:04d}", source="keyword")

    add(0, 3)
    with django_assert_max_num_queries(12):
        assert manager.get(reverse("portal:dnc")).status_code == 200
    add(100, 60)
    with django_assert_max_num_queries(12):
        page = manager.get(reverse("portal:dnc"))
    assert page.content.count(b"data-dnc=") == 50 and page.content.count(b"data-opt-out=") == 25
