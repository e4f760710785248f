"""The Stasis app's metrics: event lag from ARI timestamps, outcomes, and the connected, backlog and
live-calls gauges read from the app when scraped."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from prometheus_client import CollectorRegistry, generate_latest

from telephony import metrics


def _sample(registry: CollectorRegistry, line_start: str) -> float:
    for line in generate_latest(registry).decode().splitlines():
        if line.startswith(line_start + " "):
            return float(line.split()[-1])
    raise AssertionError(f"{line_start} not exposed")


def test_event_lag_is_now_minus_the_ari_timestamp():
    histogram = metrics.EVENT_LAG.labels(app="lag-test")
    before = histogram._sum.get()
    # 2026-01-01T12:00:00.250+0000 is 1767268800.25
    metrics.observe_event("lag-test", {"timestamp": "2026-01-01T12:00:00.250+0000"}, now=1767268800.75)
    metrics.observe_event("lag-test", {"timestamp": "not a time"}, now=1767268800.75)
    metrics.observe_event("lag-test", {}, now=1767268800.75)
    assert histogram._sum.get() - before == 0.5


def test_outcomes_are_counted_per_outcome():
    metrics.call_ended("calls-test", "answered")
    metrics.call_ended("calls-test", "busy")
    metrics.call_ended("calls-test", "answered")
    assert metrics.CALL_OUTCOMES.labels(app="calls-test", outcome="answered")._value.get() == 2
    assert metrics.CALL_OUTCOMES.labels(app="calls-test", outcome="busy")._value.get() == 1


def test_connected_backlog_and_live_calls_are_read_from_the_app_when_scraped():
    registry = CollectorRegistry()
    app = SimpleNamespace(
        config=SimpleNamespace(app="orchestrator"), connected=asyncio.Event(), backlog=3, calls_live=2
    )
    metrics.register_app(app, pbx="1,2", registry=registry)
    assert _sample(registry, 'stasis_app_connected{app="orchestrator",pbx="1,2"}') == 0
    app.connected.set()
    assert _sample(registry, 'stasis_app_connected{app="orchestrator",pbx="1,2"}') == 1
    assert _sample(registry, 'stasis_call_events_backlog{app="orchestrator"}') == 3
    assert _sample(registry, 'stasis_calls_live{app="orchestrator"}') == 2
    app.calls_live = 0
    assert _sample(registry, 'stasis_calls_live{app="orchestrator"}') == 0
