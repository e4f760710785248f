"""Prometheus metrics of the Stasis app (``manage.py run_stasis``), served by its metrics endpoint.

| metric | type | source |
|---|---|---|
| ``stasis_app_connected{pbx, app}`` | gauge | ``StasisApp.connected`` when scraped (:func:`register_app`) |
| ``stasis_call_events_backlog{app}`` | gauge | read from ``StasisApp.backlog`` at scrape time |
| ``stasis_ari_event_lag_seconds{app}`` | histogram | :func:`observe_event`: now − the event's ``timestamp`` |
| ``stasis_calls_live{app}`` | gauge | the calls the app's controller tracks, counted at scrape time |
| ``stasis_call_outcomes_total{app, outcome}`` | counter | :func:`call_ended` |

Telephony knows no campaigns or flows: labels are the ARI app name and the PBX ids the process serves.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any, Protocol

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

EVENT_LAG = Histogram(
    "stasis_ari_event_lag_seconds",
    "Time from an ARI event's timestamp (set by Asterisk) to its handling by the Stasis app.",
    ["app"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
CALL_OUTCOMES = Counter("stasis_call_outcomes", "Calls ended, by outcome.", ["app", "outcome"])


class MeteredApp(Protocol):
    """What the collector reads from a StasisApp."""

    @property
    def config(self) -> Any: ...  # .app: the ARI application name

    @property
    def connected(self) -> Any: ...  # an asyncio.Event: set while connected and reconciled

    @property
    def backlog(self) -> int: ...

    @property
    def calls_live(self) -> int: ...


def observe_event(app: str, event: Mapping[str, Any], *, now: float | None = None) -> None:
    """Record how late ``event`` is handled (ARI ``timestamp``, e.g. ``2026-01-01T12:00:00.123+0000``).
    Events without a readable timestamp are not counted."""
    stamp = event.get("timestamp")
    if not isinstance(stamp, str):
        return
    try:
        at = datetime.fromisoformat(stamp).timestamp()
    except ValueError:
        return
    EVENT_LAG.labels(app=app).observe(max(0.0, (time.time() if now is None else now) - at))


def call_ended(app: str, outcome: str) -> None:
    """The Stasis app reported a call's end (once per call) with its outcome."""
    CALL_OUTCOMES.labels(app=app, outcome=outcome).inc()


class StasisAppCollector(Collector):
    """``stasis_app_connected``, ``stasis_call_events_backlog``, ``stasis_calls_live`` of one app, read when
    scraped."""

    def __init__(self, app: MeteredApp, *, pbx: str) -> None:
        self.app = app
        self.pbx = pbx

    def collect(self) -> Iterator[Metric]:
        name = str(self.app.config.app)
        connected = GaugeMetricFamily(
            "stasis_app_connected",
            "1 while the Stasis app's events websocket is connected and reconciled.",
            labels=["pbx", "app"],
        )
        connected.add_metric([self.pbx, name], 1.0 if self.app.connected.is_set() else 0.0)
        yield connected
        backlog = GaugeMetricFamily(
            "stasis_call_events_backlog", "Call events not yet handed to the sink.", labels=["app"]
        )
        backlog.add_metric([name], float(self.app.backlog))
        yield backlog
        live = GaugeMetricFamily("stasis_calls_live", "Calls the Stasis app is tracking.", labels=["app"])
        live.add_metric([name], float(self.app.calls_live))
        yield live


def register_app(
    app: MeteredApp, *, pbx: str, registry: CollectorRegistry = REGISTRY
) -> StasisAppCollector:
    collector = StasisAppCollector(app, pbx=pbx)
    registry.register(collector)
    return collector


def unregister_app(collector: StasisAppCollector, *, registry: CollectorRegistry = REGISTRY) -> None:
    """The app stopped (a process may run another one later, e.g. tests)."""
    registry.unregister(collector)
