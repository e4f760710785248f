"""Prometheus metrics of the outbound side: the Celery worker's counters and the web app's database gauges.

Worker counters (served by the worker's metrics endpoint, see orchestrator/metrics.py), with the functions
the dispatch and originate code calls to record them:

| metric | type | recorded by |
|---|---|---|
| ``campaigns_originates_total{result}`` | counter | :func:`record_originate` (sent, retry, failed, ...) |
| ``campaigns_limiter_wait_seconds`` | histogram | :func:`observe_limiter_wait` (waits for a CPS token) |
| ``campaigns_dispatch_passes_total`` | counter | :func:`record_dispatch_pass` |
| ``campaigns_dispatch_claimed_total`` | counter | :func:`record_dispatch_pass` (attempts a pass queued) |

Web gauges, computed when Prometheus scrapes ``/metrics`` by :class:`DomainCollector` (one grouped query
each, so a scrape costs two small aggregate queries however many tenants there are):

* ``campaigns_calls_live{tenant, state}``: attempts in a live state (queued … bridged), per tenant;
* ``campaigns_leads{tenant, status}``: leads by status, per tenant.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from django.db import DatabaseError
from django.db.models import Count
from prometheus_client import Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

logger = logging.getLogger(__name__)

ORIGINATE_RESULTS = ("sent", "retry", "failed", "handed_off", "refused")

ORIGINATES = Counter(
    "campaigns_originates",
    "Originate task runs, by result: sent (POST /channels accepted), retry (ARI answered retryable), "
    "failed (given up), handed_off (to another task, e.g. waiting for a CPS token), refused (the re-check "
    "right before the send said no: DNC, window closed, campaign paused...).",
    ["result"],
)
LIMITER_WAIT = Histogram(
    "campaigns_limiter_wait_seconds",
    "Seconds an originate waited for a calls-per-second token (0 when one was free).",
    buckets=(0.0, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0),
)
DISPATCH_PASSES = Counter("campaigns_dispatch_passes", "Dispatch passes run (one per tenant and pass).")
DISPATCH_CLAIMED = Counter("campaigns_dispatch_claimed", "Attempts queued by dispatch passes.")

def create_worker_series() -> None:
    """Make every originate series exist at 0 (rates need their zero). Called where the worker starts its
    endpoint, not at import: the web and Stasis processes import this module too and run no originate."""
    for result in ORIGINATE_RESULTS:
        ORIGINATES.labels(result=result)


def record_originate(result: str) -> None:
    """One originate ended with ``result``, one of :data:`ORIGINATE_RESULTS`."""
    if result not in ORIGINATE_RESULTS:
        raise ValueError(f"unknown originate result {result!r}; one of {ORIGINATE_RESULTS}")
    ORIGINATES.labels(result=result).inc()


def observe_limiter_wait(seconds: float) -> None:
    """An originate got its CPS token after waiting ``seconds``."""
    LIMITER_WAIT.observe(max(0.0, seconds))


def record_dispatch_pass(claimed: int = 0) -> None:
    """A dispatch pass ran and queued ``claimed`` attempts."""
    DISPATCH_PASSES.inc()
    if claimed:
        DISPATCH_CLAIMED.inc(claimed)


class DomainCollector(Collector):
    """Live calls and leads per tenant, read from the database at scrape time (web app only)."""

    def collect(self) -> Iterator[Metric]:
        from campaigns.lifecycle import LIVE_STATES
        from campaigns.models import CallAttempt, Lead

        calls = GaugeMetricFamily(
            "campaigns_calls_live", "Call attempts in a live state, per tenant.", labels=["tenant", "state"]
        )
        leads = GaugeMetricFamily(
            "campaigns_leads", "Leads by status, per tenant.", labels=["tenant", "status"]
        )
        try:
            live = (
                CallAttempt.objects.filter(state__in=[state.value for state in LIVE_STATES])
                .values_list("tenant_id", "state")
                .annotate(n=Count("id"))
                .order_by()
            )
            for tenant_id, state, n in live:
                calls.add_metric([str(tenant_id), str(state)], n)
            by_status = (
                Lead.objects.values_list("campaign__tenant_id", "status").annotate(n=Count("id")).order_by()
            )
            for tenant_id, status, n in by_status:
                leads.add_metric([str(tenant_id), str(status)], n)
        except DatabaseError:
            # The scrape still answers (process metrics, and the absence of these series shows the outage).
            logger.exception("metrics: database gauges unavailable")
            return
        yield calls
        yield leads

    def describe(self) -> Iterator[Metric]:
        return iter(())  # not probed at registration: no query before the first scrape
