"""Answering-machine detection and voicemail on the orchestrator's side: the campaign's settings (API, with
field-named errors; the recorded message converted and stored), the originate's AMD arguments, the brief's
keys and the message in Redis, AMD's result on the attempt, the media worker's reports, the outcome at the
end of the call whichever comes first, the late re-decision and the retry rules."""

from __future__ import annotations

import io
import json
import struct
import wave
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from campaigns.amd import (
    AMD_DEFAULTS,
    amd_answered_by,
    amd_args,
    validate_amd_settings,
    voicemail_audio_from_wav,
    voicemail_audio_key,
)
from campaigns.lifecycle import AttemptInput, AttemptOutcome, retry_decision
from campaigns.models import AttemptEvent, CallAttempt, Campaign, Lead, VoicemailAudio
from campaigns.selectors import attempt_for_originate
from campaigns.services.briefs import brief_key, brief_write
from campaigns.services.call_events import attempt_apply, attempt_apply_many
from campaigns.services.campaigns import campaign_set_voicemail_audio, campaign_start, campaign_update
from campaigns.sink import _step
from campaigns.tasks import media_answered_by, media_call_report, media_voicemail_left, originate_attempt
from orchestrator.errors import InvalidInput
from orchestrator.redis_client import get_redis
from telephony.events import CallAmd
from tests.campaigns.factories import make_agent, make_campaign, make_tenant
from tests.campaigns.test_agent_actions import REPORT, answered_attempt, call, end, lead_of
from tests.campaigns.test_api import api_client
from tests.campaigns.test_dispatch import NOW, at
from tests.campaigns.test_tasks import PASSWORD_ENV, ThreadedSim, _run_sim, queued_attempt
from tests.telephony.sim.conftest import PASSWORD

pytestmark = pytest.mark.django_db


def wav_bytes(seconds: float, *, rate: int = 8000, channels: int = 1, width: int = 2) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        n = int(seconds * rate)
        if width == 2:
            frame = struct.pack("<" + "h" * channels, *([8000] * channels))
        else:
            frame = bytes([200] * channels)
        w.writeframes(frame * n)
    return buf.getvalue()


# ------------------------------------------------------------------------------------------- settings


def test_amd_settings_default_to_asterisk_and_are_range_checked() -> None:
    assert validate_amd_settings({}) == AMD_DEFAULTS
    assert amd_args({}) == "2500,1500,600,5000,100,50,2,256,5000"
    assert amd_args({"maximum_number_of_words": 3}) == "2500,1500,600,5000,100,50,3,256,5000"
    for bad in ({"greeting": "1500"}, {"greeting": 10}, {"words": 2}, [1, 2], {"greeting": True}):
        with pytest.raises(InvalidInput) as err:
            validate_amd_settings(bad)
        assert err.value.field == "amd_settings"


@pytest.mark.parametrize(
    ("status", "cause", "rule", "who"),
    [
        ("HUMAN", "HUMAN-800-800", "human", "human"),
        ("MACHINE", "MAXWORDS-2-2", "human", "machine"),
        ("MACHINE", "LONGGREETING-1500-1500", "human", "machine"),
        ("MACHINE", "INITIALSILENCE-2500-2500", "human", "human"),
        ("MACHINE", "INITIALSILENCE-2500-2500", "machine", "machine"),
        ("NOTSURE", "TOOLONG-5000", "human", "human"),
        ("NOTSURE", "TOOLONG-5000", "machine", "machine"),
        ("HANGUP", "", "machine", ""),
    ],
)
def test_who_answered_by_amd_and_the_campaign_rule(status: str, cause: str, rule: str, who: str) -> None:
    assert amd_answered_by(status, cause, rule) == who


def test_a_wav_is_converted_to_24khz_mono_16bit() -> None:
    pcm, seconds = voicemail_audio_from_wav(wav_bytes(2.0, rate=8000, channels=2))
    assert seconds == pytest.approx(2.0) and len(pcm) == 2 * 48000
    pcm8, _ = voicemail_audio_from_wav(wav_bytes(0.5, rate=44100, width=1))
    assert len(pcm8) == 2 * 12000
    for bad, why in (
        (b"RIFF....nonsense", "readable"),
        (wav_bytes(61), "longer"),
        (wav_bytes(0), "no audio"),
    ):
        with pytest.raises(InvalidInput, match=why) as err:
            voicemail_audio_from_wav(bad)
        assert err.value.field == "voicemail_audio"


def test_the_campaign_api_takes_the_settings_and_names_bad_fields() -> None:
    tenant = make_tenant()
    api = api_client(tenant)
    agent = make_agent(tenant)
    body = {
        "name": "Sales",
        "agent": agent.pk,
        "caller_id": "+12125550100",
        "amd_enabled": True,
        "amd_settings": {"total_analysis_time": 4000},
        "amd_notsure_action": "machine",
        "voicemail_action": "leave_message",
        "voicemail_message_text": "Hi, this is Acme. Please call us back.",
    }
    created = api.post("/api/v1/campaigns", body, format="json")
    assert created.status_code == 201, created.content
    data = created.json()
    assert data["amd_enabled"] is True and data["amd_settings"]["total_analysis_time"] == 4000
    assert data["amd_settings"]["greeting"] == 1500 and data["amd_notsure_action"] == "machine"
    for field, value in (
        ("amd_notsure_action", "maybe"),
        ("voicemail_action", "sing"),
        ("amd_settings", {"greeting": 1}),
    ):
        bad = api.patch(f"/api/v1/campaigns/{data['id']}", {field: value}, format="json")
        assert bad.status_code == 400 and field in bad.json(), bad.content


def test_the_recorded_message_upload_is_validated_stored_and_foreign_ids_are_404() -> None:
    tenant = make_tenant()
    api = api_client(tenant)
    campaign = make_campaign(tenant)
    foreign = make_campaign(make_tenant())
    url = f"/api/v1/campaigns/{campaign.pk}/voicemail-audio"
    upload = io.BytesIO(wav_bytes(1.5, rate=16000))
    upload.name = "message.wav"
    done = api.post(url, {"file": upload}, format="multipart")
    assert done.status_code == 200, done.content
    assert done.json()["voicemail_audio_seconds"] == pytest.approx(1.5)
    stored = VoicemailAudio.objects.get(campaign=campaign)
    assert len(bytes(stored.pcm)) == 2 * 36000
    bad = io.BytesIO(b"not a wav at all")
    bad.name = "x.wav"
    refused = api.post(url, {"file": bad}, format="multipart")
    assert refused.status_code == 400 and "voicemail_audio" in refused.json()
    other = io.BytesIO(wav_bytes(1.0))
    other.name = "m.wav"
    assert api.post(f"/api/v1/campaigns/{foreign.pk}/voicemail-audio", {"file": other}).status_code == 404
    assert api.delete(url).status_code == 200
    assert not VoicemailAudio.objects.filter(campaign=campaign).exists()


def test_leaving_a_message_needs_one_to_start() -> None:
    campaign = make_campaign(make_tenant())
    campaign_update(campaign=campaign, voicemail_action="leave_message")
    with pytest.raises(InvalidInput) as err:
        campaign_start(campaign=campaign)
    assert err.value.field == "voicemail_message_text"


# ---------------------------------------------------------------------------------- originate and brief


@pytest.fixture
def sim(monkeypatch: pytest.MonkeyPatch) -> Iterator[ThreadedSim]:
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    yield from _run_sim({"default": "no_answer"})


def test_the_originate_asks_for_amd_with_the_campaign_thresholds(sim: ThreadedSim) -> None:
    attempt = queued_attempt(base_url=sim.base)
    Campaign.objects.filter(pk=attempt.campaign_id).update(
        amd_enabled=True, amd_settings={**AMD_DEFAULTS, "greeting": 2000}
    )
    assert originate_attempt.run(str(attempt.pk)) == "originated"
    [placed] = [c for c in sim.calls() if c["id"] == str(attempt.pk)]
    assert placed["app_args"] == ["outbound", str(attempt.pk), "amd"]
    assert placed["variables"]["AI_AMD_ARGS"] == "2500,2000,600,5000,100,50,2,256,5000"
    assert placed["variables"]["AI_STASIS_APP"] == placed["app"]
    get_redis().delete(brief_key(attempt.pk))


def test_without_amd_the_originate_is_as_before(sim: ThreadedSim) -> None:
    attempt = queued_attempt(base_url=sim.base)
    assert originate_attempt.run(str(attempt.pk)) == "originated"
    [placed] = [c for c in sim.calls() if c["id"] == str(attempt.pk)]
    assert placed["app_args"] == ["outbound", str(attempt.pk)] and "AI_AMD_ARGS" not in placed["variables"]
    get_redis().delete(brief_key(attempt.pk))


def test_the_brief_names_the_recorded_message_written_to_redis_once(sim: ThreadedSim) -> None:
    attempt = queued_attempt(base_url=sim.base)
    campaign = attempt.campaign
    campaign_update(campaign=campaign, amd_enabled=True, voicemail_action="leave_message")
    campaign_set_voicemail_audio(campaign=campaign, wav=wav_bytes(1.0))
    loaded = attempt_for_originate(attempt_id=attempt.pk)
    assert loaded is not None
    key = voicemail_audio_key(campaign.voicemail_audio_sha256)
    redis = get_redis()
    redis.delete(key)
    try:
        brief_write(attempt=loaded)
        raw = redis.get(brief_key(attempt.pk))
        assert raw is not None
        brief = json.loads(raw)
        assert brief["amd"] == {"enabled": True, "notsure": "human"}
        assert brief["voicemail"]["action"] == "leave_message" and brief["voicemail"]["audio_key"] == key
        assert brief["machine_detection"] == {"media": True}
        audio = redis.get(key)
        assert audio is not None and len(audio) == 48000 and redis.ttl(key) > 600
    finally:
        redis.delete(key, brief_key(attempt.pk))


# ------------------------------------------------------------------------------- results and outcomes


def amd(attempt: CallAttempt, status: str, cause: str) -> None:
    attempt_apply_many(attempt_id=attempt.pk, steps=[_step(CallAmd(str(attempt.pk), status, cause, at(12)))])


def test_amd_result_is_recorded_on_the_attempt() -> None:
    attempt = answered_attempt()
    amd(attempt, "MACHINE", "MAXWORDS-2-2")
    attempt.refresh_from_db()
    assert (attempt.amd_status, attempt.amd_cause) == ("MACHINE", "MAXWORDS-2-2")
    assert (attempt.answered_by, attempt.machine_source) == ("machine", "amd")
    assert AttemptEvent.objects.filter(attempt=attempt, type="amd").exists()


def test_notsure_follows_the_campaign_rule() -> None:
    person = answered_attempt()
    amd(person, "NOTSURE", "TOOLONG-5000")
    machine = answered_attempt(amd_notsure_action="machine")
    amd(machine, "NOTSURE", "TOOLONG-5000")
    person.refresh_from_db()
    machine.refresh_from_db()
    assert person.answered_by == "human" and machine.answered_by == "machine"


def test_a_machine_with_no_message_ends_machine_detected_and_is_retried() -> None:
    attempt = answered_attempt()
    amd(attempt, "MACHINE", "MAXWORDS-2-2")
    end(attempt)
    attempt.refresh_from_db()
    lead = lead_of(attempt)
    assert attempt.outcome == "machine_detected"
    assert (lead.status, lead.last_outcome) == (Lead.Status.WAITING, "machine_detected")
    assert lead.next_due_at is not None and lead.next_due_at >= at(60) + timedelta(seconds=7200)


def test_a_message_left_before_the_end_ends_voicemail_left_and_finishes_the_lead() -> None:
    attempt = answered_attempt()
    assert media_answered_by.run(**call(attempt), answered_by="machine", source="beep", at=1.0e9) == "done"
    assert media_voicemail_left.run(**call(attempt), started_at=1.0e9, ended_at=1.0e9 + 8) == "done"
    assert media_voicemail_left.run(**call(attempt), started_at=1.0e9, ended_at=1.0e9 + 8) == "unchanged"
    end(attempt)
    attempt.refresh_from_db()
    lead = lead_of(attempt)
    assert attempt.outcome == "voicemail_left" and attempt.machine_source == "beep"
    assert attempt.voicemail_left_at is not None
    assert (lead.status, lead.done_reason, lead.last_outcome) == (
        Lead.Status.DONE,
        "voicemail_left",
        "voicemail_left",
    )


def test_a_late_machine_report_re_decides_a_lead_closed_as_answered() -> None:
    attempt = answered_attempt()
    end(attempt)
    assert lead_of(attempt).status == Lead.Status.DONE
    assert media_answered_by.run(**call(attempt), answered_by="machine", source="greeting") == "done"
    attempt.refresh_from_db()
    lead = lead_of(attempt)
    assert attempt.outcome == "machine_detected"
    # Waiting for its retry: the reason is the outcome, or the calling window when the retry time falls
    # outside it (which depends on the hour the test runs).
    assert (lead.status, lead.last_outcome) == (Lead.Status.WAITING, "machine_detected")
    assert lead.wait_reason in ("machine_detected", "outside_window")
    # then the message-left report: voicemail_left, and the lead done again
    assert media_voicemail_left.run(**call(attempt), started_at=1.0e9, ended_at=1.0e9 + 5) == "done"
    attempt.refresh_from_db()
    lead = lead_of(attempt)
    assert attempt.outcome == "voicemail_left" and (lead.status, lead.done_reason) == (
        Lead.Status.DONE,
        "voicemail_left",
    )
    reclassified = AttemptEvent.objects.filter(attempt=attempt, type="reclassified").count()
    assert reclassified == 2


def test_a_late_machine_report_re_decides_a_lead_whose_retry_was_moved_to_the_window() -> None:
    from datetime import UTC, datetime

    from campaigns.models import WEEKDAYS

    attempt = answered_attempt()
    end(attempt)
    # From now on the only open day is three days away: a retry waits for the window.
    day = WEEKDAYS[(datetime.now(UTC).weekday() + 3) % 7]
    Campaign.objects.filter(pk=attempt.campaign_id).update(calling_windows={day: [["09:00", "17:00"]]})
    assert media_answered_by.run(**call(attempt), answered_by="machine", source="beep") == "done"
    lead = lead_of(attempt)
    assert (lead.status, lead.wait_reason) == (Lead.Status.WAITING, "outside_window")
    assert media_voicemail_left.run(**call(attempt), started_at=1.0e9, ended_at=1.0e9 + 5) == "done"
    attempt.refresh_from_db()
    lead = lead_of(attempt)
    assert attempt.outcome == "voicemail_left"
    assert (lead.status, lead.done_reason) == (Lead.Status.DONE, "voicemail_left")


def test_a_human_is_never_turned_into_nobody_and_a_machine_never_back_into_a_human() -> None:
    attempt = answered_attempt()
    amd(attempt, "HUMAN", "HUMAN-800-800")
    assert media_answered_by.run(**call(attempt), answered_by="machine", source="beep") == "done"
    assert media_answered_by.run(**call(attempt), answered_by="human", source="amd") == "unchanged"
    attempt.refresh_from_db()
    assert (attempt.answered_by, attempt.machine_source, attempt.amd_status) == ("machine", "beep", "HUMAN")


def test_a_human_call_stays_answered() -> None:
    attempt = answered_attempt()
    amd(attempt, "HUMAN", "HUMAN-800-800")
    end(attempt)
    attempt.refresh_from_db()
    assert attempt.outcome == "answered" and attempt.answered_by == "human"


def test_the_call_report_carries_the_verdict_when_the_reports_were_lost() -> None:
    attempt = answered_attempt()
    end(attempt)
    report = {
        **REPORT,
        "metrics": {
            **REPORT["metrics"],
            "agent_spoke": True,
            "answered_by": "machine",
            "machine_source": "beep",
            "voicemail_left": True,
        },
    }
    assert media_call_report.run(**call(attempt), **report) == "done"
    attempt.refresh_from_db()
    assert attempt.outcome == "voicemail_left" and lead_of(attempt).done_reason == "voicemail_left"


def test_a_silent_agent_on_a_machine_is_machine_detected_not_media_failed() -> None:
    attempt = answered_attempt()
    amd(attempt, "MACHINE", "MAXWORDS-2-2")
    silent = {**REPORT, "transcript": [], "metrics": {**REPORT["metrics"], "agent_spoke": False}}
    assert media_call_report.run(**call(attempt), **silent) == "done"
    end(attempt)
    attempt.refresh_from_db()
    assert attempt.outcome == "machine_detected"


def test_bad_reports_are_dropped() -> None:
    attempt = answered_attempt()
    assert media_answered_by.run(**call(attempt), answered_by="robot", source="amd") == "invalid"
    assert media_answered_by.run(**call(attempt), answered_by="machine", source="psychic") == "invalid"
    assert media_voicemail_left.run(**call(attempt), started_at="x", ended_at=1.0) == "invalid"  # type: ignore[arg-type]
    assert media_voicemail_left.run(**call(attempt), started_at=10.0, ended_at=1.0) == "invalid"
    foreign = make_tenant().pk
    assert media_answered_by.run(str(attempt.pk), foreign, answered_by="machine", source="amd") == "dropped"


def test_retry_rules_tell_the_new_outcomes_apart() -> None:
    def decide(outcome: AttemptOutcome, delays: dict[str, int]) -> Any:
        return retry_decision(outcome=outcome, attempts_made=1, max_attempts=3, retry_delays=delays, now=NOW)

    assert decide(AttemptOutcome.VOICEMAIL_LEFT, {}).should_retry is False
    listed = decide(AttemptOutcome.VOICEMAIL_LEFT, {"voicemail_left": 86400})
    assert listed.should_retry and listed.at == NOW + timedelta(days=1)
    machine = decide(AttemptOutcome.MACHINE_DETECTED, {"machine_detected": 600})
    assert machine.should_retry and machine.at == NOW + timedelta(seconds=600)


def test_retry_delays_accept_the_new_outcomes() -> None:
    campaign = make_campaign(make_tenant())
    campaign_update(campaign=campaign, retry_delays={"voicemail_left": 3600, "machine_detected": 600})
    campaign.refresh_from_db()
    assert campaign.retry_delays == {"voicemail_left": 3600, "machine_detected": 600}


def test_ending_unchanged_without_amd() -> None:
    attempt = answered_attempt()
    result = attempt_apply(
        attempt_id=attempt.pk, event=AttemptInput.ENDED, at=at(60), outcome=AttemptOutcome.BUSY
    )
    assert result.applied
    assert CallAttempt.objects.get(pk=attempt.pk).outcome == "busy"
