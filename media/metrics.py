"""The media worker's Prometheus metrics and their HTTP endpoint (no Django: this process has none).

Figures of live calls are read from the calls themselves when Prometheus scrapes, not counted on the audio
path: a frame costs nothing more than it did, and a scrape sums a few integers per live call. When a call
ends its figures move into the totals of ended calls, in the same loop iteration in which it leaves the
worker's live calls, so every counter only ever grows. The endpoint is served by the worker's own asyncio
loop (aiohttp), so a scrape never reads a call from another thread while the loop changes it.

| metric | type | what |
|---|---|---|
| ``media_calls_live`` | gauge | calls this worker is handling |
| ``media_calls_total{end_reason}`` | counter | calls ended, by why |
| ``media_connections_total{result}`` | counter | AudioSocket connections: accepted, refused, unknown_uuid |
| ``media_frames_in_total``, ``media_frames_out_total`` | counter | audio frames from / to the caller |
| ``media_audio_underruns_total`` | counter | agent audio that ran dry mid-response (the caller heard a gap) |
| ``media_realtime_errors_total`` | counter | ``error`` events from the Realtime session |
| ``media_realtime_connection_failures_total`` | counter | Realtime connections that failed or dropped |
| ``media_realtime_reconnects_total`` | counter | Realtime sessions re-seeded after a drop |
| ``media_reply_latency_seconds`` | histogram | end of the caller's speech → the agent's reply is heard |
| ``media_first_audio_seconds`` | histogram | call connected → the agent's first audio frame |
| ``media_machine_detections_total{source}`` | counter | answering machines found, by amd, beep or greeting |
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Protocol

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from aiohttp import web

    from media.session import Metrics

logger = logging.getLogger(__name__)

REPLY_LATENCY_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)
FIRST_AUDIO_BUCKETS = (0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 20.0)
# Per-call counters of the session's Metrics that become process-wide counters: (metric, attribute, help).
_SESSION_COUNTERS = (
    ("media_frames_in", "frames_in", "Audio frames received from callers."),
    ("media_frames_out", "frames_out", "Audio frames sent to callers."),
    ("media_audio_underruns", "underruns", "Agent audio that ran dry in the middle of a response."),
    ("media_realtime_errors", "realtime_errors", "Error events from the Realtime sessions."),
    ("media_realtime_reconnects", "realtime_reconnects", "Realtime sessions re-seeded after a drop."),
)


class MeteredCall(Protocol):
    """What the metrics read from a live call (media.call.Call)."""

    realtime_connection_failures: int

    @property
    def session_metrics(self) -> Metrics | None: ...


class MeteredWorker(Protocol):
    accepted: int
    refused: int
    refused_uuids: int


class _CallState:
    """How much of one call's latencies the histograms already have."""

    __slots__ = ("first_audio_seen", "replies_seen")

    def __init__(self) -> None:
        self.replies_seen = 0
        self.first_audio_seen = False


class MediaMetrics(Collector):
    """The metrics of one media worker, in a registry of their own (tests run several workers in one
    process); the endpoint serves it together with the default registry (process CPU, memory, fds)."""

    def __init__(self, worker: MeteredWorker, live_calls: Callable[[], Iterable[MeteredCall]]) -> None:
        self.worker = worker
        self.live_calls = live_calls
        self.registry = CollectorRegistry(auto_describe=True)
        self.ended_totals = {attribute: 0 for _, attribute, _ in _SESSION_COUNTERS}
        self.ended_connection_failures = 0
        self._states: dict[int, _CallState] = {}
        self.calls = Counter("media_calls", "Calls ended, by reason.", ["end_reason"], registry=self.registry)
        self.reply_latency = Histogram(
            "media_reply_latency_seconds",
            "End of the caller's speech to the agent's first audio frame of its reply.",
            buckets=REPLY_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.first_audio = Histogram(
            "media_first_audio_seconds",
            "Call connected to the agent's first audio frame.",
            buckets=FIRST_AUDIO_BUCKETS,
            registry=self.registry,
        )
        self.machine_detections = Counter(
            "media_machine_detections",
            "Calls found to be answering machines, by what found it (amd, beep, greeting).",
            ["source"],
            registry=self.registry,
        )
        self.registry.register(self)

    # ------------------------------------------------------------------------------ call lifecycle
    def call_ended(self, call: MeteredCall, end_reason: str) -> None:
        """The call left the worker's live calls: its figures join the totals (same loop iteration)."""
        self._sync(call)
        self._states.pop(id(call), None)
        metrics = call.session_metrics
        if metrics is not None:
            for _, attribute, _ in _SESSION_COUNTERS:
                self.ended_totals[attribute] += getattr(metrics, attribute)
        self.ended_connection_failures += call.realtime_connection_failures
        self.calls.labels(end_reason=end_reason or "unknown").inc()

    def _sync(self, call: MeteredCall) -> None:
        """Observe the call's latencies the histograms do not have yet."""
        metrics = call.session_metrics
        if metrics is None:
            return
        state = self._states.get(id(call))
        if state is None:
            state = self._states[id(call)] = _CallState()
        latencies = metrics.reply_latencies_ms
        for ms in latencies[state.replies_seen :]:
            self.reply_latency.observe(ms / 1000)
        state.replies_seen = len(latencies)
        if not state.first_audio_seen and metrics.first_audio_at is not None:
            state.first_audio_seen = True
            self.first_audio.observe(max(0.0, metrics.first_audio_at - metrics.started_at))

    # ----------------------------------------------------------------------------------- scraping
    def collect(self) -> Iterator[Metric]:
        calls = list(self.live_calls())
        for call in calls:
            self._sync(call)
        yield GaugeMetricFamily("media_calls_live", "Calls this media worker is handling.", value=len(calls))
        connections = CounterMetricFamily(
            "media_connections", "AudioSocket connections, by result.", labels=["result"]
        )
        connections.add_metric(["accepted"], self.worker.accepted)
        connections.add_metric(["refused"], self.worker.refused)
        connections.add_metric(["unknown_uuid"], self.worker.refused_uuids)
        yield connections
        live_metrics = [m for m in (call.session_metrics for call in calls) if m is not None]
        for name, attribute, documentation in _SESSION_COUNTERS:
            value = self.ended_totals[attribute] + sum(getattr(m, attribute) for m in live_metrics)
            yield CounterMetricFamily(name, documentation, value=value)
        failures = self.ended_connection_failures + sum(c.realtime_connection_failures for c in calls)
        documentation = "Realtime connections that failed or dropped."
        yield CounterMetricFamily("media_realtime_connection_failures", documentation, value=failures)

    def describe(self) -> Iterator[Metric]:
        # Names only (no scrape at registration time): lets the registry refuse a duplicate name.
        yield GaugeMetricFamily("media_calls_live", "")
        yield CounterMetricFamily("media_connections", "")
        for name, _, _ in _SESSION_COUNTERS:
            yield CounterMetricFamily(name, "")
        yield CounterMetricFamily("media_realtime_connection_failures", "")

    def exposition(self) -> bytes:
        """The text exposition of the process's default registry and of this worker."""
        return generate_latest(REGISTRY) + generate_latest(self.registry)


class MetricsServer:
    """``GET /metrics`` on the worker's loop (aiohttp). A port that cannot be bound is logged, not fatal:
    calls matter more than their figures."""

    def __init__(self, metrics: MediaMetrics, host: str, port: int) -> None:
        self.metrics = metrics
        self.host = host
        self.port = port
        self._runner: web.AppRunner | None = None

    async def start(self) -> bool:
        from aiohttp import web

        async def serve(request: web.Request) -> web.Response:
            body = self.metrics.exposition()
            return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

        app = web.Application()
        app.router.add_get("/metrics", serve)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port, reuse_address=True)
        try:
            await site.start()
        except OSError as exc:
            logger.error("media worker: metrics endpoint %s:%d not started: %s", self.host, self.port, exc)
            await runner.cleanup()
            return False
        self._runner = runner
        server = getattr(site, "_server", None)
        sockets = getattr(server, "sockets", None) or []
        if sockets:
            self.port = sockets[0].getsockname()[1]
        logger.info("media worker: metrics on http://%s:%d/metrics", self.host, self.port)
        return True

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
