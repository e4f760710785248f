"""Recordings on the orchestrator side: started for campaigns that record every call, fetched from the PBX
into the configured storage (a temporary directory here), deleted after retention; the storage settings."""

from __future__ import annotations

import hashlib
import io
import json
import wave
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.core.files.storage import FileSystemStorage, StorageHandler
from django.utils import timezone

from campaigns.models import AttemptEvent, CallAttempt, Campaign
from campaigns.services.briefs import RECORD_CONSENT_INSTRUCTION, brief_build
from campaigns.services.campaigns import campaign_update
from campaigns.services.dispatch import dispatch_tenant
from orchestrator.errors import InvalidInput
from orchestrator.redis_client import get_redis
from recordings import tasks
from recordings.models import Recording
from recordings.services import recordings as service
from recordings.storage import S3_BACKEND, recordings_storage, storage_settings
from telephony.ari import AriClient, PbxConfig
from telephony.events import CallBridged, CallRecording
from telephony.stasis import command_key
from tests.campaigns.factories import make_pbx, make_tenant
from tests.campaigns.test_dispatch import NOW, due_leads, running_campaign

pytestmark = pytest.mark.django_db


def wav_bytes(seconds: float, rate: int = 8000) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(b"\x01\x00" * int(seconds * rate))
    return buf.getvalue()


@pytest.fixture
def storage_dir(settings: Any, tmp_path: Path) -> Path:
    directory = tmp_path / "recordings"
    settings.STORAGES = {
        **settings.STORAGES,
        "recordings": storage_settings({"RECORDINGS_DIR": str(directory)}, default_dir="unused"),
    }
    return directory


@pytest.fixture
def attempt() -> CallAttempt:
    tenant = make_tenant(max_concurrent_calls=5)
    make_pbx(tenant)
    campaign = running_campaign(tenant, max_attempts=3, recording_retention_days=30)
    due_leads(campaign, 1)
    (attempt_id,) = dispatch_tenant(tenant_id=tenant.pk, now=NOW)
    return CallAttempt.objects.select_related("campaign", "pbx").get(pk=attempt_id)


class FakePbx:
    """The PBX's stored recordings over ARI (an httpx transport): what was asked, what is left."""

    def __init__(self, files: dict[str, bytes], *, status: int = 200) -> None:
        self.files = dict(files)
        self.status = status
        self.requests: list[tuple[str, str]] = []

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append((request.method, request.url.path))
        name = request.url.path.removeprefix("/ari/recordings/stored/").removesuffix("/file")
        if self.status != 200:
            return httpx.Response(self.status, json={"message": "boom"})
        if name not in self.files:
            return httpx.Response(404, json={"message": "Recording not found"})
        if request.method == "DELETE":
            del self.files[name]
            return httpx.Response(204)
        return httpx.Response(200, content=self.files[name], headers={"content-type": "audio/wav"})

    def client(self) -> AriClient:
        config = PbxConfig(base_url="http://pbx:8088", user="u", password="p", app="a", endpoint_template="x")
        return AriClient(config, transport=httpx.MockTransport(self.handler))


@pytest.fixture
def pbx_files(monkeypatch: pytest.MonkeyPatch) -> Callable[..., FakePbx]:
    def make(files: dict[str, bytes], **options: Any) -> FakePbx:
        fake = FakePbx(files, **options)
        monkeypatch.setattr(service, "pbx_ari_client", lambda *, pbx: fake.client())
        return fake

    return make


# ----------------------------------------------------------------------------------------- storage settings
def test_local_directory_by_default_and_s3_when_a_bucket_is_set() -> None:
    local = storage_settings({}, default_dir="/srv/rec")
    assert local["BACKEND"] == "django.core.files.storage.FileSystemStorage"
    assert local["OPTIONS"]["location"] == "/srv/rec"
    config = storage_settings(
        {
            "RECORDINGS_S3_BUCKET": "calls",
            "RECORDINGS_S3_ENDPOINT_URL": "https://minio.internal:9000",
            "RECORDINGS_S3_REGION": "eu-west-1",
            "RECORDINGS_S3_ACCESS_KEY_ID": "AKIATEST",
            "RECORDINGS_S3_SECRET_ACCESS_KEY": "secret",
            "RECORDINGS_S3_PREFIX": "/tenant-calls/",
        },
        default_dir="/srv/rec",
    )
    assert config["BACKEND"] == S3_BACKEND
    # The backend is built from these settings without touching the network (boto3 connects lazily).
    handler = StorageHandler({"recordings": config})  # type: ignore[dict-item]
    storage: Any = handler["recordings"]
    assert type(storage).__name__ == "S3Storage"
    assert storage.bucket_name == "calls" and storage.endpoint_url == "https://minio.internal:9000"
    assert storage.region_name == "eu-west-1" and storage.access_key == "AKIATEST"
    assert storage.location == "tenant-calls" and storage.default_acl is None and not storage.file_overwrite
    # No keys given: boto3's own credential chain (instance role, AWS_* variables).
    anonymous = storage_settings({"RECORDINGS_S3_BUCKET": "calls"}, default_dir="x")["OPTIONS"]
    assert "access_key" not in anonymous and "endpoint_url" not in anonymous


def test_the_configured_directory_is_the_recordings_storage(storage_dir: Path) -> None:
    storage = recordings_storage()
    assert isinstance(storage, FileSystemStorage) and Path(storage.location) == storage_dir


# ----------------------------------------------------------------------------------------- campaign fields
def test_recording_fields_are_validated_by_name(attempt: CallAttempt) -> None:
    campaign = attempt.campaign
    assert campaign.recording_mode == "never" and campaign.recording_retention_days == 30
    with pytest.raises(InvalidInput) as exc:
        campaign_update(campaign=campaign, recording_mode="sometimes")
    assert exc.value.field == "recording_mode"
    for days in (0, True, 4000):
        with pytest.raises(InvalidInput) as exc:
            campaign_update(campaign=campaign, recording_retention_days=days)
        assert exc.value.field == "recording_retention_days"
    campaign_update(campaign=campaign, recording_mode="after_consent", recording_retention_days=7)
    campaign.refresh_from_db()
    assert (campaign.recording_mode, campaign.recording_retention_days) == ("after_consent", 7)


def test_the_brief_says_the_mode_and_gives_the_consent_tool_only_after_consent(attempt: CallAttempt) -> None:
    brief = brief_build(attempt=attempt)
    assert brief["recording"] == {"mode": "never"} and "record_consent" not in brief["tools"]
    assert RECORD_CONSENT_INSTRUCTION not in brief["instructions"]
    attempt.campaign.recording_mode = Campaign.RecordingMode.AFTER_CONSENT
    brief = brief_build(attempt=attempt)
    assert brief["recording"] == {"mode": "after_consent"} and brief["tools"][-1] == "record_consent"
    assert RECORD_CONSENT_INSTRUCTION in brief["instructions"]
    attempt.campaign.recording_mode = Campaign.RecordingMode.ALWAYS
    assert "record_consent" not in brief_build(attempt=attempt)["tools"]


# ----------------------------------------------------------------------------------------- starting
def test_a_campaign_recording_every_call_asks_the_stasis_app_once_bridged(
    attempt: CallAttempt, django_capture_on_commit_callbacks: Any
) -> None:
    key = command_key(attempt.pbx_id or 0)
    get_redis().delete(key)
    bridged = CallBridged(str(attempt.pk), "uuid", NOW)
    with django_capture_on_commit_callbacks(execute=True):
        service.recording_on_call_event(attempt_id=attempt.pk, event=bridged)
    assert get_redis().lrange(key, 0, -1) == []  # never: nothing asked
    Campaign.objects.filter(pk=attempt.campaign_id).update(recording_mode="always")
    with django_capture_on_commit_callbacks(execute=True):
        service.recording_on_call_event(attempt_id=attempt.pk, event=bridged)
    assert [json.loads(c) for c in get_redis().lrange(key, 0, -1)] == [
        {"action": "record", "call_id": str(attempt.pk)}
    ]
    get_redis().delete(key)


# ----------------------------------------------------------------------------------------- fetching
def test_a_finished_recording_is_fetched_stored_and_deleted_on_the_pbx(
    attempt: CallAttempt,
    storage_dir: Path,
    pbx_files: Callable[..., FakePbx],
    django_capture_on_commit_callbacks: Any,
) -> None:
    name = f"rec-{attempt.pk}"
    data = wav_bytes(2.5)
    fake = pbx_files({name: data})
    finished = CallRecording(str(attempt.pk), name, "finished", NOW, duration=2)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        service.recording_on_call_event(attempt_id=attempt.pk, event=finished)
        service.recording_on_call_event(attempt_id=attempt.pk, event=finished)  # a replay: one row, one fetch
    assert len(callbacks) == 1
    recording = Recording.objects.get(name=name)
    assert recording.state == "pending" and recording.tenant_id == attempt.tenant_id
    assert recording.delete_after == NOW + timedelta(days=30)
    assert tasks.fetch_recording.apply(args=(recording.pk,)).get() == "stored"
    recording.refresh_from_db()
    assert recording.size == len(data) and recording.sha256 == hashlib.sha256(data).hexdigest()
    assert recording.duration == 2.5 and recording.stored_at is not None
    stored = storage_dir / recording.storage_key
    assert stored.read_bytes() == data
    assert recording.storage_key == f"{attempt.tenant_id}/{attempt.campaign_id}/{name}.wav"
    assert fake.files == {} and ("DELETE", f"/ari/recordings/stored/{name}") in fake.requests
    # Run again (a redelivered task): nothing fetched twice.
    asked = len(fake.requests)
    assert tasks.fetch_recording.apply(args=(recording.pk,)).get() == "stored"
    assert len(fake.requests) == asked


def test_a_recording_the_pbx_does_not_have_or_too_large_is_failed(
    attempt: CallAttempt, storage_dir: Path, pbx_files: Callable[..., FakePbx], settings: Any
) -> None:
    pbx_files({})
    recording = service.recording_finished(attempt_id=attempt.pk, name="rec-gone", duration=3, at=NOW)
    assert recording is not None
    assert tasks.fetch_recording.apply(args=(recording.pk,)).get() == "failed"
    recording.refresh_from_db()
    assert recording.error == "the PBX has no such recording" and not recording.storage_key
    settings.RECORDINGS_MAX_BYTES = 1000
    pbx_files({"rec-big": wav_bytes(1)})
    big = service.recording_finished(attempt_id=attempt.pk, name="rec-big", duration=1, at=NOW)
    assert big is not None and tasks.fetch_recording.apply(args=(big.pk,)).get() == "failed"
    big.refresh_from_db()
    assert "more than 1000 bytes" in big.error
    assert not storage_dir.exists() or not any(storage_dir.rglob("*.wav"))


def test_an_unreachable_pbx_is_retried_then_given_up(
    attempt: CallAttempt, storage_dir: Path, pbx_files: Callable[..., FakePbx]
) -> None:
    pbx_files({"rec-x": b"x"}, status=503)
    recording = service.recording_finished(attempt_id=attempt.pk, name="rec-x", duration=1, at=NOW)
    assert recording is not None
    with pytest.raises(Exception, match="503"):
        service.recording_fetch(recording_id=recording.pk)
    recording.refresh_from_db()
    assert recording.state == "pending" and recording.fetch_tries == 1
    # the task's retries (eager apply: the retry is raised; after the last delay it gives up)
    result = tasks.fetch_recording.apply(args=(recording.pk,), retries=len(tasks.FETCH_RETRY_DELAYS_S))
    assert result.get() == "failed"
    recording.refresh_from_db()
    assert recording.state == "failed" and "could not fetch" in recording.error


# ----------------------------------------------------------------------------------------- retention
def test_the_sweep_deletes_files_and_marks_rows_past_retention(
    attempt: CallAttempt, storage_dir: Path, pbx_files: Callable[..., FakePbx]
) -> None:
    pbx_files({"rec-old": wav_bytes(1), "rec-new": wav_bytes(1)})
    old = service.recording_finished(attempt_id=attempt.pk, name="rec-old", duration=1, at=NOW)
    new = service.recording_finished(
        attempt_id=attempt.pk, name="rec-new", duration=1, at=NOW + timedelta(days=5)
    )
    assert old is not None and new is not None
    for recording in (old, new):
        service.recording_fetch(recording_id=recording.pk)
        recording.refresh_from_db()
    old_file = storage_dir / old.storage_key
    assert old_file.exists()
    assert service.recordings_sweep(now=NOW + timedelta(days=29)) == 0  # not due yet
    assert service.recordings_sweep(now=NOW + timedelta(days=31)) == 1
    old.refresh_from_db()
    new.refresh_from_db()
    assert old.state == "deleted" and old.deleted_at == NOW + timedelta(days=31) and not old.storage_key
    assert not old_file.exists() and (storage_dir / new.storage_key).exists()
    assert service.recordings_sweep(now=NOW + timedelta(days=31)) == 0  # done once
    assert service.recordings_sweep(now=NOW + timedelta(days=36)) == 1


# ----------------------------------------------------------------------------------------- consent
def test_the_callees_answer_is_kept_in_the_attempts_log(attempt: CallAttempt) -> None:
    at = NOW.timestamp()
    assert (
        tasks.media_recording_consent(
            call_id=str(attempt.pk), tenant_id=attempt.tenant_id, granted=False, at=at
        )
        == "done"
    )
    note = AttemptEvent.objects.get(attempt=attempt, type="recording_consent")
    assert note.data == {"granted": False} and note.at == NOW
    other = make_tenant()
    assert tasks.media_recording_consent(
        call_id=str(attempt.pk), tenant_id=other.pk, granted=True, at=at
    ) == ("dropped")
    assert tasks.media_recording_consent(call_id="nope", tenant_id=1, granted=True, at=at) == "dropped"


@pytest.fixture(autouse=True)
def _now_is_now() -> Iterator[None]:
    # The fixtures' times are fixed (NOW); the services' own default "now" is never relied on here.
    assert timezone.now() > NOW
    yield
