"""Prometheus endpoints of the Django processes: ``GET /metrics`` on the web app, and the HTTP server a
Celery worker or the Stasis app starts (:func:`start_metrics_server`).

The web endpoint serves the process's default registry plus the database gauges of
:class:`campaigns.metrics.DomainCollector`, computed per scrape. It is not public: a request is served when
it comes from ``METRICS_ALLOWED_NETWORKS`` (default: loopback) or carries ``Authorization: Bearer
<METRICS_TOKEN>``; anything else is 403. Behind a reverse proxy every request comes from the proxy's
address, so allow only what the proxy itself would (or use the token).

Worker and Stasis endpoints listen on ``WORKER_METRICS_LISTEN`` / ``STASIS_METRICS_LISTEN`` (``host:port``,
empty or ``off`` for none). Several such processes on one host need a port each. The Celery worker runs its
tasks in threads (``--pool threads``, as ``make run`` and the deployment docs start it), so one process holds
all its counters; with a forking pool, set ``PROMETHEUS_MULTIPROC_DIR`` (an empty directory per worker,
prometheus_client's multiprocess mode) and the endpoint serves the children's figures aggregated.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import os
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client import REGISTRY, CollectorRegistry, Counter, generate_latest, start_http_server
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from campaigns.metrics import DomainCollector

logger = logging.getLogger(__name__)

# Every Celery task run, by task name and final state (SUCCESS, RETRY, FAILURE, ...): orchestrator/celery.py.
TASKS = Counter("celery_tasks", "Celery task runs, by task and final state.", ["task", "state"])

_web_registry = CollectorRegistry(auto_describe=False)
_web_registry.register(DomainCollector())


def _allowed(request: HttpRequest) -> bool:
    token: str = settings.METRICS_TOKEN
    if token:
        header = request.headers.get("Authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode()):
            return True
    try:
        address = ipaddress.ip_address(str(request.META.get("REMOTE_ADDR", "")).split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    networks: list[str] = settings.METRICS_ALLOWED_NETWORKS
    return any(address in ipaddress.ip_network(net, strict=False) for net in networks)


@never_cache
@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    """The Prometheus text exposition of this web process and of the database gauges."""
    if not _allowed(request):
        return HttpResponse("forbidden\n", status=403, content_type="text/plain")
    body = generate_latest(REGISTRY) + generate_latest(_web_registry)
    return HttpResponse(body, content_type=CONTENT_TYPE_LATEST)


def parse_listen(value: str, name: str) -> tuple[str, int] | None:
    """``host:port`` → (host, port); empty or ``off`` → None."""
    value = value.strip()
    if not value or value.lower() == "off":
        return None
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{name} must be host:port, empty or off; got {value!r}")
    return host.strip("[]"), int(port)


def start_metrics_server(listen: str, *, name: str, what: str) -> Any | None:
    """Serve the default registry (or, in multiprocess mode, the aggregate of ``PROMETHEUS_MULTIPROC_DIR``)
    on ``listen`` from a daemon thread. ``name`` is the setting's name (for errors), ``what`` the process
    (for the log line). Returns the server, or None when off or the port is taken (logged: a process must
    not die for its metrics)."""
    address = parse_listen(listen, name)
    if address is None:
        return None
    host, port = address
    registry: CollectorRegistry = REGISTRY
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    try:
        server, _thread = start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        logger.error("%s: metrics endpoint %s:%d not started: %s", what, host, port, exc)
        return None
    logger.info("%s: metrics on http://%s:%d/metrics", what, host, server.server_port)
    return server
