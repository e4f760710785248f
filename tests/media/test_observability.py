"""The media worker's Sentry set-up, log format choice and metrics bookkeeping (no Django here)."""

from __future__ import annotations

from typing import Any

from prometheus_client import generate_latest

from media.__main__ import init_sentry, log_format
from media.config import MediaConfig
from media.metrics import MediaMetrics
from media.session import Metrics


def test_sentry_is_initialised_with_the_dsn_and_not_without(monkeypatch):
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr("sentry_sdk.init", lambda **kwargs: calls.append(kwargs))
    assert init_sentry({}) is False and init_sentry({"SENTRY_DSN": "  "}) is False
    assert calls == []
    assert init_sentry({"SENTRY_DSN": "https://public@sentry.example.invalid/2"}) is True
    assert calls == [
        {"dsn": "https://public@sentry.example.invalid/2", "environment": None, "send_default_pii": False}
    ]


def test_logs_are_json_unless_debug_or_log_format_says_otherwise():
    assert log_format({}) == "json"
    assert log_format({"DEBUG": "1"}) == "text"
    assert log_format({"DEBUG": "1", "LOG_FORMAT": "JSON"}) == "json"
    assert log_format({"LOG_FORMAT": "text"}) == "text"


def test_metrics_listen_defaults_to_its_own_port_and_can_be_turned_off():
    env = {"REALTIME_URL": "ws://127.0.0.1:1/v1/realtime"}
    assert MediaConfig.from_env(env).metrics_listen == ("127.0.0.1", 9103)
    assert MediaConfig.from_env({**env, "MEDIA_METRICS_LISTEN": "off"}).metrics_listen is None
    assert MediaConfig().metrics_listen is None  # a worker built in code serves nothing


class _Call:
    def __init__(self, metrics: Metrics | None) -> None:
        self.session_metrics = metrics
        self.realtime_connection_failures = 0


class _Worker:
    accepted = 2
    refused = 1
    refused_uuids = 0


def _value(metrics: MediaMetrics, line_start: str) -> float:
    for line in generate_latest(metrics.registry).decode().splitlines():
        if line.startswith(line_start + " "):
            return float(line.split()[-1])
    raise AssertionError(f"{line_start} not exposed")


def test_live_figures_join_the_totals_when_a_call_ends_and_counters_never_go_back():
    live: list[_Call] = []
    metrics = MediaMetrics(_Worker(), lambda: live)
    session = Metrics(started_at=10.0, frames_in=50, frames_out=60, underruns=1)
    call = _Call(session)
    live.append(call)
    assert _value(metrics, "media_calls_live") == 1
    assert _value(metrics, "media_frames_in_total") == 50
    session.frames_in += 25
    session.reply_latencies_ms.append(420.0)
    session.first_audio_at = 10.5
    assert _value(metrics, "media_frames_in_total") == 75
    assert _value(metrics, "media_reply_latency_seconds_count") == 1
    live.remove(call)
    call.realtime_connection_failures = 1
    metrics.call_ended(call, "caller_hung_up")
    assert _value(metrics, "media_calls_live") == 0
    assert _value(metrics, "media_frames_in_total") == 75
    assert _value(metrics, "media_audio_underruns_total") == 1
    assert _value(metrics, "media_realtime_connection_failures_total") == 1
    assert _value(metrics, "media_reply_latency_seconds_count") == 1  # not observed twice
    assert _value(metrics, "media_first_audio_seconds_sum") == 0.5
    assert _value(metrics, 'media_calls_total{end_reason="caller_hung_up"}') == 1
    assert _value(metrics, 'media_connections_total{result="accepted"}') == 2
    metrics.call_ended(_Call(None), "no_brief")  # a call without a session: counted, no figures
    assert _value(metrics, 'media_calls_total{end_reason="no_brief"}') == 1
