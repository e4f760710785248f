"""A CSV import too large to run inline, end to end: the API answers 202, a real Celery worker (its own
process, on this test's database and Redis) runs the import batch by batch, and polling the import shows
its progress and then the report an inline import of the same file gives."""

from __future__ import annotations

import time
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from campaigns.models import ContactImport, Lead
from campaigns.services.imports import leads_import_csv
from orchestrator.celery import app
from tests.campaigns.factories import make_campaign, make_tenant
from tests.campaigns.test_api import API, api_client
from tests.campaigns.test_imports import numbers_csv
from tests.e2e.stack import Stack

pytestmark = [
    pytest.mark.slow,
    pytest.mark.postgres,
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(180),
]

ROWS = 2_000
BATCH_ROWS = 50  # the worker's batches: 40 commits, each one visible progress


def test_a_large_import_runs_on_a_worker_and_shows_its_progress(stack: Stack, settings, monkeypatch) -> None:
    settings.IMPORT_INLINE_MAX_ROWS = 100
    # What this process enqueues goes to the stack's queue, which its worker consumes.
    monkeypatch.setitem(app.conf, "task_default_queue", stack.queue)
    stack.start_worker("worker", concurrency=1, env={"IMPORT_BATCH_ROWS": str(BATCH_ROWS)})
    tenant = make_tenant()
    campaign = make_campaign(tenant)
    client = api_client(tenant)
    text = numbers_csv(ROWS, bad_every=100)

    upload = SimpleUploadedFile("leads.csv", text.encode(), content_type="text/csv")
    response = client.post(f"{API}/campaigns/{campaign.pk}/import", {"file": upload}, format="multipart")
    assert response.status_code == 202, response.content
    url = response.json()["url"]

    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        body = client.get(url).json()
        seen.append(body)
        if body["status"] in ("done", "failed"):
            break
        time.sleep(0.02)
    final = seen[-1]
    assert final["status"] == "done", (final, stack.logs())
    assert (final["rows_done"], final["rows_total"], final["error"]) == (ROWS, ROWS, "")
    progress = [body["rows_done"] for body in seen]
    assert progress == sorted(progress)
    assert any(body["status"] == "running" and 0 < body["rows_done"] < ROWS for body in seen), progress
    assert Lead.objects.filter(campaign=campaign).count() == ROWS - ROWS // 100
    assert final["report"] == leads_import_csv(campaign=make_campaign(make_tenant()), data=text)
    assert final["report"]["created"] == ROWS - ROWS // 100
    assert bytes(ContactImport.objects.get(pk=final["id"]).data) == b""
    # The raw file is in no log: a number of it appears nowhere in the worker's output.
    assert "+12125550007" not in stack.logs(lines=10_000)
