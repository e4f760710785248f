"""The Stasis app's metrics: event lag from ARI timestamps, live calls and outcomes, the connected gauge read
from the app when scraped."""

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


def test_live_calls_and_outcomes():
    live = metrics.CALLS_LIVE.labels(app="calls-test")
    metrics.call_started("calls-test")
    metrics.call_started("calls-test")
    metrics.call_ended("calls-test", "answered")
    assert live._value.get() == 1
    assert metrics.CALL_OUTCOMES.labels(app="calls-test", outcome="answered")._value.get() == 1


def test_connected_and_backlog_are_read_from_the_app_when_scraped():
    registry = CollectorRegistry()
    app = SimpleNamespace(config=SimpleNamespace(app="orchestrator"), connected=asyncio.Event(), backlog=3)
    metrics.register_app(app, pbx="1,2", registry=registry)
    assert _sample(registry, 'stasis_app_connected{app="orchestrator",pbx="1,2"}') == 0
    app.connected.set()
    assert _sample(registry, 'stasis_app_connected{app="orchestrator",pbx="1,2"}') == 1
    assert _sample(registry, 'stasis_call_events_backlog{app="orchestrator"}') == 3
