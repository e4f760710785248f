"""``/api/v1/recordings`` and the portal's recording files: a tenant sees and downloads its own recordings
only (another tenant's id is 404), the file is streamed; the campaign API's recording fields."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.core.files.base import ContentFile
from django.test import Client
from django.utils import timezone

from campaigns.models import CallAttempt
from recordings.models import Recording
from recordings.storage import recordings_storage
from tenants.models import Membership, Tenant
from tests.campaigns.factories import make_lead, make_tenant, make_user
from tests.campaigns.test_api import API, api_client, make_attempt
from tests.recordings.test_recordings import storage_dir, wav_bytes  # noqa: F401 (a fixture)

pytestmark = pytest.mark.django_db


def stored_recording(attempt: CallAttempt, data: bytes, *, state: str = "stored") -> Recording:
    key = recordings_storage().save(f"{attempt.tenant_id}/rec-{attempt.pk}.wav", ContentFile(data))
    return Recording.objects.create(
        tenant_id=attempt.tenant_id,
        attempt=attempt,
        name=f"rec-{attempt.pk}",
        state=state,
        storage_key=key,
        size=len(data),
        duration=1.0,
        delete_after=timezone.now() + timedelta(days=90),
    )


def streamed(response: Any) -> bytes:
    return b"".join(response.streaming_content)


@pytest.fixture
def two_tenants(storage_dir: Path) -> tuple[Tenant, Recording, Tenant, Recording]:  # noqa: F811
    mine, theirs = make_tenant(), make_tenant()
    data = wav_bytes(1)
    mine_rec = stored_recording(make_attempt(make_lead(mine), state="ended", outcome="answered"), data)
    theirs_rec = stored_recording(make_attempt(make_lead(theirs), state="ended", outcome="answered"), data)
    return mine, mine_rec, theirs, theirs_rec


def test_list_filter_detail_and_download_are_the_tenants_own(two_tenants: Any) -> None:
    mine, mine_rec, _theirs, theirs_rec = two_tenants
    api = api_client(mine)
    body = api.get(f"{API}/recordings").json()
    assert [r["id"] for r in body["results"]] == [mine_rec.pk]
    assert body["results"][0]["download_url"] == f"/api/v1/recordings/{mine_rec.pk}/download"
    campaign_id = mine_rec.attempt.campaign_id
    assert api.get(f"{API}/recordings", {"campaign": campaign_id}).json()["count"] == 1
    assert api.get(f"{API}/recordings", {"campaign": campaign_id + 1000}).json()["count"] == 0
    assert api.get(f"{API}/recordings", {"attempt": str(mine_rec.attempt_id)}).json()["count"] == 1
    bad = api.get(f"{API}/recordings", {"attempt": "not-a-uuid"})
    assert bad.status_code == 400 and "attempt" in bad.json()
    response = api.get(f"{API}/recordings/{mine_rec.pk}/download")
    assert response.status_code == 200 and response["Content-Type"] == "audio/wav"
    assert response.streaming and streamed(response) == wav_bytes(1)
    assert "attachment" in response["Content-Disposition"]
    # Another tenant's recording: 404 for the row and the file, as if it did not exist.
    assert api.get(f"{API}/recordings/{theirs_rec.pk}").status_code == 404
    assert api.get(f"{API}/recordings/{theirs_rec.pk}/download").status_code == 404
    assert api.get(f"{API}/recordings/999999/download").status_code == 404


def test_a_deleted_recording_is_listed_but_not_downloadable(two_tenants: Any) -> None:
    mine, mine_rec, _theirs, _theirs_rec = two_tenants
    Recording.objects.filter(pk=mine_rec.pk).update(
        state="deleted", storage_key="", deleted_at=timezone.now()
    )
    api = api_client(mine)
    assert api.get(f"{API}/recordings/{mine_rec.pk}").json()["download_url"] is None
    assert api.get(f"{API}/recordings/{mine_rec.pk}/download").status_code == 404


def test_the_portal_plays_and_downloads_the_tenants_own_recordings(two_tenants: Any) -> None:
    mine, mine_rec, _theirs, theirs_rec = two_tenants
    user = make_user()
    Membership.objects.create(user=user, tenant=mine, role=Membership.Role.VIEWER)
    client = Client()
    client.force_login(user)
    page = client.get(f"/calls/{mine_rec.attempt_id}/")
    assert page.status_code == 200
    html = page.content.decode()
    assert f"/recordings/{mine_rec.pk}/play" in html and f"/recordings/{mine_rec.pk}/download" in html
    played = client.get(f"/recordings/{mine_rec.pk}/play")
    assert played.status_code == 200 and played["Content-Disposition"].startswith("inline")
    assert streamed(played) == wav_bytes(1)
    assert client.get(f"/recordings/{mine_rec.pk}/download")["Content-Disposition"].startswith("attachment")
    assert client.get(f"/recordings/{theirs_rec.pk}/download").status_code == 404
    assert client.get(f"/recordings/{theirs_rec.pk}/play").status_code == 404


def test_the_campaign_api_takes_and_checks_the_recording_fields() -> None:
    tenant = make_tenant()
    api = api_client(tenant)
    lead = make_lead(tenant)
    campaign = lead.campaign
    url = f"{API}/campaigns/{campaign.pk}"
    assert api.get(url).json()["recording_mode"] == "never"
    for field, value in (("recording_mode", "sometimes"), ("recording_retention_days", 0)):
        response = api.patch(url, {field: value}, format="json")
        assert response.status_code == 400 and field in response.json(), response.json()
    response = api.patch(
        url, {"recording_mode": "after_consent", "recording_retention_days": 14}, format="json"
    )
    assert response.status_code == 200
    assert (response.json()["recording_mode"], response.json()["recording_retention_days"]) == (
        "after_consent",
        14,
    )
