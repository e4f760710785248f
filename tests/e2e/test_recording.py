"""A recording exists only with consent and is deleted after retention, end to end on real processes: the
PBX simulator, the Stasis app, Celery, the media worker and the Realtime stand-in (and a campaign that
records every call, whose call is recorded without a question).

The campaign records after consent. One callee presses 4 (the stand-in's rule: ``record_consent`` granted),
then speaks; the other presses 6 (refused). Judged against the simulator's own record: the consenting call
had a bridge recording started, and its stored WAV (fetched by the worker into the recordings directory, then
deleted on the PBX) holds the callee's voice where only the callee spoke and the agent's where only the
agent spoke, at the times the simulator says; the refusing call never had a recording started and has no
row. Then the retention sweep, with the clock past ``delete_after``, deletes the file and marks the row.
"""

from __future__ import annotations

import io
import json
import math
import wave
from array import array
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from campaigns.models import AttemptEvent, CallAttempt, Pbx
from campaigns.services.campaigns import campaign_start
from campaigns.services.contacts import lead_add
from campaigns.windows import WEEKDAYS
from recordings.models import Recording
from recordings.services.recordings import recordings_sweep
from recordings.storage import storage_settings
from tests.campaigns.factories import make_agent, make_campaign, make_contact, make_pbx, make_tenant
from tests.e2e.stack import PASSWORD_ENV, SIM_APP, SIM_USER, Stack, wait_for, zone_where_it_is

pytestmark = [
    pytest.mark.slow,
    pytest.mark.postgres,
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(300),
]

CONSENTS = "+12125559101"
REFUSES = "+12125559102"
ALWAYS = "+12125559103"  # a campaign that records every call: no question asked
CALLEE_WORDS = "Yes, that is fine with me, go ahead please."
PLAN = {
    "default": {"behaviour": "busy", "after": 0.1},
    "numbers": {
        CONSENTS: {
            "behaviour": "answer",
            "after": 0.5,
            "say": [{"at": 7, "text": CALLEE_WORDS}],
            "dtmf": [{"at": 3, "digits": "4"}, {"at": 14, "digits": "#"}],
            "hangup_after": 40,
        },
        REFUSES: {
            "behaviour": "answer",
            "after": 0.5,
            "dtmf": [{"at": 3, "digits": "6"}, {"at": 8, "digits": "#"}],
            "hangup_after": 40,
        },
        ALWAYS: {
            "behaviour": "answer",
            "after": 0.5,
            "say": [{"at": 2, "text": "Hello?"}],
            "dtmf": [{"at": 6, "digits": "#"}],
            "hangup_after": 40,
        },
    },
}
RULES = [
    {"match": "pressed 4", "tool": "record_consent", "arguments": {"granted": True}},
    {"match": "pressed 6", "tool": "record_consent", "arguments": {"granted": False}},
    {"match": "pressed #", "tool": "end_call", "arguments": {"reason": "caller finished"}},
]
RATE = 8000


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


def _rms(samples: array[int], start_s: float, end_s: float) -> float:
    window = samples[max(int(start_s * RATE), 0) : max(int(end_s * RATE), 0)]
    return math.sqrt(sum(x * x for x in window) / len(window)) if window else 0.0


def _minus(
    span: tuple[float, float], others: list[tuple[float, float]], margin: float = 0.15
) -> list[tuple[float, float]]:
    """The parts of ``span`` that no span of ``others`` (widened by ``margin``) covers."""
    parts = [span]
    for o_start, o_end in others:
        o_start, o_end = o_start - margin, o_end + margin
        parts = [
            piece
            for start, end in parts
            for piece in ((start, min(end, o_start)), (max(start, o_end), end))
            if piece[1] - piece[0] > 0
        ]
    return parts


def test_a_recording_exists_only_with_consent_and_is_deleted_after_retention(
    stack: Stack, settings: Any
) -> None:
    recordings_dir = stack.directory / "recordings"
    settings.STORAGES = {
        **settings.STORAGES,
        "recordings": storage_settings({"RECORDINGS_DIR": str(recordings_dir)}, default_dir="unused"),
    }
    stack.start_sim(PLAN)
    tenant = make_tenant(max_concurrent_calls=5, calls_per_second=10)
    make_pbx(
        tenant, ari_url=stack.ari_url, ari_user=SIM_USER, password_env=PASSWORD_ENV, app_name=SIM_APP,
        endpoint_template="PJSIP/{number}@trunk", max_channels=20, calls_per_second=20,
    )  # fmt: skip
    agent = make_agent(
        tenant,
        instructions="You are the test agent calling {{name}}.",
        greeting="Hello {{name}}, this is the test agent.",
        tools=["end_call"],  # record_consent comes with the campaign's recording mode
    )
    campaign = make_campaign(
        tenant, agent=agent, ring_timeout=10, max_attempts=1, recording_mode="after_consent",
        recording_retention_days=1, calling_windows={day: [["00:00", "24:00"]] for day in WEEKDAYS},
    )  # fmt: skip
    zone = zone_where_it_is(14)
    for number in (CONSENTS, REFUSES):
        lead_add(campaign=campaign, contact=make_contact(tenant, number, name="Dana", timezone=zone))
    campaign_start(campaign=campaign)
    every_call = make_campaign(
        tenant, agent=agent, ring_timeout=10, max_attempts=1, recording_mode="always",
        calling_windows={day: [["00:00", "24:00"]] for day in WEEKDAYS},
    )  # fmt: skip
    lead_add(campaign=every_call, contact=make_contact(tenant, ALWAYS, name="Kim", timezone=zone))
    campaign_start(campaign=every_call)

    rules = stack.directory / "rules.json"
    rules.write_text(json.dumps(RULES))
    stack.start_realtime(extra=["--reply-ms", "1500", "--speed", "5", "--rules", str(rules)])
    stack.start_media_worker()
    stack.start_stasis(Pbx.objects.get(placements__tenant=tenant).pk)
    stack.wait_stasis_connected()
    stack.start_worker(concurrency=4, env={"RECORDINGS_DIR": str(recordings_dir)})
    stack.start_beat()

    def done() -> bool:
        attempts = CallAttempt.objects.filter(campaign__in=[campaign, every_call])
        ended = attempts.count() == 3 and all(a.ended_at for a in attempts)
        return ended and Recording.objects.filter(state__in=["stored", "failed"]).count() == 2

    wait_for(done, timeout=120, what="both calls to end and the recording to be fetched")
    attempts = {a.number: a for a in CallAttempt.objects.filter(campaign=campaign)}
    always = CallAttempt.objects.get(campaign=every_call)
    with stack.sim() as sim:
        calls = {c["number"]: c for c in sim.get("/sim/calls", params={"state": "all"}).json()["calls"]}
        left_on_pbx = sim.get("/ari/recordings/stored").json()

    consented, refused = attempts[CONSENTS], attempts[REFUSES]
    consent_call, refuse_call = calls[CONSENTS], calls[REFUSES]
    # What the simulator saw: a bridge recording of the consenting call only; nothing left on the PBX.
    assert consent_call["recordings"] == [f"rec-{consented.pk}"], consent_call
    assert refuse_call["recordings"] == [], refuse_call
    assert calls[ALWAYS]["recordings"] == [f"rec-{always.pk}"], calls[ALWAYS]
    assert left_on_pbx == []
    # The campaign recording every call asked nobody and stored its call too.
    assert not AttemptEvent.objects.filter(attempt=always, type="recording_consent").exists()
    assert Recording.objects.get(attempt=always).state == "stored"
    # What the product kept: the callee's answers, and one stored recording, of the consenting call.
    answers = {
        number: [e.data["granted"] for e in AttemptEvent.objects.filter(attempt=a, type="recording_consent")]
        for number, a in attempts.items()
    }
    assert answers == {CONSENTS: [True], REFUSES: [False]}
    assert not Recording.objects.filter(attempt=refused).exists()
    recording = Recording.objects.get(attempt=consented)
    assert recording.state == "stored", recording.error
    path = recordings_dir / recording.storage_key
    data = path.read_bytes()
    assert len(data) == recording.size
    with wave.open(io.BytesIO(data)) as wav:
        assert (wav.getnchannels(), wav.getframerate()) == (1, RATE)
        samples = array("h", wav.readframes(wav.getnframes()))
    seconds = len(samples) / RATE
    assert seconds > 5 and abs(seconds - (recording.duration or 0)) < 0.01

    # Both sides are in it, where the simulator says each one spoke.
    started = AttemptEvent.objects.get(
        attempt=consented, type="recording", data__state="started"
    ).at.timestamp()
    answered = _epoch(consent_call["answered_at"])
    callee = [
        (answered + s["at"] - started, answered + s["at"] + s["ms"] / 1000 - started)
        for s in consent_call["said"]
        if s.get("text") == CALLEE_WORDS
    ]
    spoke = [(start - started, end - started) for start, end in consent_call["heard"]["spurts"]]
    assert callee and spoke
    callee_only = [p for span in callee for p in _minus(span, spoke) if p[1] - p[0] >= 0.3]
    agent_only = [p for span in spoke for p in _minus(span, callee) if p[1] - p[0] >= 0.3 and p[0] > 0]
    assert callee_only, (callee, spoke)
    assert agent_only, (callee, spoke)
    assert all(_rms(samples, *p) > 300 for p in callee_only), [_rms(samples, *p) for p in callee_only]
    assert all(_rms(samples, *p) > 300 for p in agent_only), [_rms(samples, *p) for p in agent_only]
    quiet = [p for p in _minus((0.2, seconds - 0.2), callee + spoke, margin=0.3) if p[1] - p[0] >= 0.3]
    assert all(_rms(samples, *p) < 100 for p in quiet), [(p, _rms(samples, *p)) for p in quiet]

    # Retention: one day. Not before; with the clock past delete_after the file goes and the row says so.
    assert recording.delete_after - recording.created_at < timedelta(days=1, minutes=1)
    assert recordings_sweep(now=recording.delete_after - timedelta(seconds=1)) == 0
    assert path.exists()
    assert recordings_sweep(now=recording.delete_after + timedelta(seconds=1)) == 1
    recording.refresh_from_db()
    assert recording.state == "deleted" and recording.deleted_at is not None and not recording.storage_key
    assert not path.exists()
    kept = Recording.objects.get(attempt=always)  # its campaign keeps recordings 90 days
    assert [p.name for p in Path(recordings_dir).rglob("*.wav")] == [Path(kept.storage_key).name]
