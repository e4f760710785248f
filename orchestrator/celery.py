"""The Celery application: reliable-by-default configuration, the beat schedule, one beat only.

Broker and result backend locations come from Django settings (``CELERY_*``, derived from REDIS_URL).
The delivery semantics below are fixed here on purpose, because the correctness rules in DESIGN.md §5
depend on them; change them here, with a reason, not per deployment.
"""

from __future__ import annotations

import atexit
import inspect
import logging
import logging.config
import os
from contextvars import Token
from datetime import timedelta
from typing import Any

from celery import Celery
from celery.signals import beat_init, setup_logging, task_postrun, task_prerun, worker_init
from kombu import Queue

from orchestrator import broker
from orchestrator.tasks import HEARTBEAT_EVERY_S
from wire import logctx

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "orchestrator.settings")

logger = logging.getLogger(__name__)

TASK_SOFT_TIME_LIMIT_S = 60
TASK_TIME_LIMIT_S = 90
# With acks_late on Redis, a message that is not acked within the visibility timeout is delivered again.
# It must exceed the hard time limit and every countdown/ETA we use; longer delays belong in the database,
# picked up by the periodic sweep, not in a delayed message.
VISIBILITY_TIMEOUT_S = 3600

RELIABILITY_DEFAULTS: dict[str, Any] = {
    # JSON only: no pickle, so a message can never execute code, and every payload is inspectable.
    "task_serializer": "json",
    "result_serializer": "json",
    "accept_content": ["json"],
    "result_accept_content": ["json"],
    # Ack after the task ran, so a crash mid-task redelivers it (tasks are idempotent, DESIGN.md §5.2) ...
    "task_acks_late": True,
    # ... including when the worker process is killed (OOM, SIGKILL) rather than the task raising.
    "task_reject_on_worker_lost": True,
    # Reserve one message at a time: long tasks must not hold a backlog hostage on a busy worker.
    "worker_prefetch_multiplier": 1,
    # On broker connection loss, running late-ack tasks will be redelivered anyway; cancel them here.
    "worker_cancel_long_running_tasks_on_connection_loss": True,
    "task_soft_time_limit": TASK_SOFT_TIME_LIMIT_S,
    "task_time_limit": TASK_TIME_LIMIT_S,
    "broker_transport_options": {"visibility_timeout": VISIBILITY_TIMEOUT_S},
    "broker_connection_retry_on_startup": True,
    "result_expires": timedelta(days=1),
    "timezone": "UTC",
    "enable_utc": True,
}


def every(seconds: float, task: str, *, expires: float, **options: Any) -> dict[str, Any]:
    """A beat entry that runs ``task`` every ``seconds`` and whose message expires before the next run.

    The expiry is what keeps a stopped worker from coming back to a pile of identical periodic messages:
    at most one run per period is ever pending.
    """
    if not 0 < expires < seconds:
        raise ValueError(f"{task}: expires ({expires} s) must be positive and shorter than the period")
    return {
        "task": task,
        "schedule": timedelta(seconds=seconds),
        "options": {**options, "expires": expires},
    }


BEAT_SCHEDULE: dict[str, dict[str, Any]] = {
    # Read by /healthz (orchestrator/views.py): beat sends it, a worker runs it. Also sent when beat starts.
    "heartbeat": every(HEARTBEAT_EVERY_S, "orchestrator.tasks.heartbeat", expires=HEARTBEAT_EVERY_S - 5),
    # The guarantee that no lead is lost (DESIGN.md §5 rule 3): a dispatch pass per dialing tenant, every
    # second. A run that is not picked up within 0.9 s is dropped; the next one covers it.
    "dispatch-sweep": every(1, "campaigns.tasks.dispatch_sweep", expires=0.9),
    # Queued attempts whose originate task was lost (a worker killed after the dispatch committed) get a
    # new one; the originate task is safe to run twice.
    "resume-stalled-attempts": every(10, "campaigns.tasks.resume_stalled_attempts", expires=9),
    # Placed attempts whose end never arrived (their Stasis app down for good) end after their hard maximum.
    "end-overdue-attempts": every(60, "campaigns.tasks.end_overdue_attempts", expires=55),
    # CSV imports whose task was lost (a worker killed mid-import, a message lost) run again, resuming
    # after their last committed batch.
    "resume-stalled-imports": every(60, "campaigns.tasks.resume_stalled_imports", expires=55),
    # SMS sends and provider webhooks whose task was lost are enqueued again (messaging/tasks.py).
    "messaging-sweep": every(10, "messaging.sweep", expires=9),
    # Durable timers (escalation steps, callbacks): every overdue pending timer fires, whatever countdown
    # message was lost (timers/tasks.py). The period is settings.TIMERS_SWEEP_S (same variable, same default).
    "timers-sweep": every(
        float(os.environ.get("TIMERS_SWEEP_S", "1")),
        "timers.sweep",
        expires=float(os.environ.get("TIMERS_SWEEP_S", "1")) * 0.9,
    ),
    # Flow pages (calls, SMS) whose send task was lost are sent again (flows/services/pages.py).
    "flows-resend-stalled-pages": every(10, "flows.tasks.resend_stalled_pages", expires=9),
    # Recordings past their campaign's retention are deleted (file, and the row marked deleted).
    "recordings-sweep": every(300, "recordings.tasks.sweep", expires=290),
    # Outgoing webhooks due (a first try whose message was lost, a retry after its backoff): enqueued again
    # (integrations/tasks.py). The period is settings.WEBHOOKS_SWEEP_S (same variable, same default).
    "webhooks-sweep": every(
        float(os.environ.get("WEBHOOKS_SWEEP_S", "10")),
        "integrations.webhooks_sweep",
        expires=float(os.environ.get("WEBHOOKS_SWEEP_S", "10")) * 0.9,
    ),
}

# The Redis transport with kombu's restore-on-connection-loss crash fixed (a worker survives a broker
# restart): orchestrator/broker.py.
broker.install()

app = Celery("orchestrator")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.update(
    RELIABILITY_DEFAULTS,
    beat_schedule=BEAT_SCHEDULE,
    task_routes=(lambda name, *args, **kwargs: _timers_route(name),),
)


def timers_queue() -> str:
    """Durable timers (escalation steps, callbacks) have a queue of their own that every worker consumes
    first (the "priority" queue order: BRPOP takes from the first non-empty queue): a step is due at a given
    second and must not wait behind a backlog of SMS sends and webhook processing. Their sweep is there too,
    so it runs (and does not expire) under load."""
    return f"{app.conf.task_default_queue}.timers"


def _timers_route(name: str) -> dict[str, str] | None:
    return {"queue": timers_queue()} if name.startswith("timers.") else None


@app.on_after_configure.connect
def _consume_the_timers_queue_first(sender: Celery, **kwargs: Any) -> None:
    # Read once the settings are: a worker (started without -Q) consumes every queue of task_queues.
    sender.conf.task_queues = [Queue(timers_queue()), Queue(sender.conf.task_default_queue)]
    sender.conf.broker_transport_options = {
        **sender.conf.broker_transport_options,
        "queue_order_strategy": "priority",
    }


app.autodiscover_tasks()

# Database connections across tasks. Celery's Django fixup closes every connection before and after each task
# unless CELERY_DB_REUSE_MAX is set; a new PostgreSQL connection then costs more than a dispatch pass or an
# originate. The fixup's own counter is set out of reach, and Django's rule applies instead, as around a web
# request: at the start and end of each task, a connection that is broken or older than CONN_MAX_AGE is
# closed (and CONN_HEALTH_CHECKS tests a kept one before its first use).
app.conf["CELERY_DB_REUSE_MAX"] = 2**62


@task_prerun.connect
@task_postrun.connect
def _close_old_db_connections(sender: Any = None, **kwargs: Any) -> None:
    if getattr(getattr(sender, "request", None), "is_eager", False):
        return  # run inline by the caller (tests): its connection and transaction are the caller's
    from django.db import close_old_connections

    close_old_connections()


@app.on_after_configure.connect
def _start_embedded_redis(sender: Celery, **kwargs: Any) -> None:
    """A worker or beat started by hand without REDIS_URL starts or attaches to the embedded server."""
    from orchestrator.redis_client import ensure_embedded_redis

    ensure_embedded_redis()


@beat_init.connect
def _hold_single_beat_lock(sender: Any = None, **kwargs: Any) -> None:
    from django.conf import settings

    from orchestrator.beat_lock import SingleInstanceLock
    from orchestrator.redis_client import get_redis

    lock = SingleInstanceLock(get_redis(), settings.BEAT_LOCK_KEY)
    if not lock.acquire():
        logger.critical(
            "another celery beat is running (lock %s held by %s); exiting", lock.key, lock.holder()
        )
        # SystemExit passes through Celery's signal dispatch (which only swallows Exception).
        raise SystemExit(1)
    logger.info("holding %s as %s", lock.key, lock.token)
    atexit.register(lock.release)
    # A fresh start is healthy as soon as a worker runs this, not a whole period later (/healthz).
    heartbeat = BEAT_SCHEDULE["heartbeat"]
    app.send_task(heartbeat["task"], **heartbeat["options"])


# ------------------------------------------------------------------------------------- observability
@setup_logging.connect
def _configure_logging(loglevel: Any = None, **kwargs: Any) -> None:
    """Worker and beat log like every other process (settings.LOGGING: LOG_FORMAT, call and tenant ids),
    not in Celery's own format; ``--loglevel`` still sets the level."""
    from django.conf import settings

    logging.config.dictConfig(settings.LOGGING)
    if loglevel:
        logging.getLogger().setLevel(loglevel if isinstance(loglevel, int) else str(loglevel).upper())


@worker_init.connect
def _start_worker_metrics(sender: Any = None, **kwargs: Any) -> None:
    """The worker's Prometheus endpoint (settings.WORKER_METRICS_LISTEN; see orchestrator/metrics.py)."""
    from django.conf import settings

    from campaigns.metrics import create_worker_series
    from orchestrator.metrics import start_metrics_server

    create_worker_series()
    start_metrics_server(settings.WORKER_METRICS_LISTEN, name="WORKER_METRICS_LISTEN", what="celery worker")


# Task arguments that name the call or the tenant a task is about (an attempt's id is its call's id).
_CALL_ARGUMENTS = ("call_id", "attempt_id")
_TENANT_ARGUMENTS = ("tenant_id",)
_call_tokens: dict[str, Token[logctx.CallIds | None]] = {}


def _task_arguments(task: Any, args: Any, kwargs: Any) -> dict[str, Any]:
    arguments = dict(kwargs or {})
    if args:
        try:
            bound = inspect.signature(task.run).bind_partial(*args)
        except (TypeError, ValueError):
            return arguments
        arguments.update(bound.arguments)
    return arguments


@task_prerun.connect
def _bind_task_call(
    sender: Any = None, task_id: str | None = None, task: Any = None, args: Any = None, kwargs: Any = None,
    **extra: Any,
) -> None:  # fmt: skip
    """Log lines of a task about one call or tenant carry its ids (wire/logctx.py)."""
    arguments = _task_arguments(task, args, kwargs)
    call_id = next((arguments[name] for name in _CALL_ARGUMENTS if arguments.get(name) is not None), None)
    tenant_id = next((arguments[name] for name in _TENANT_ARGUMENTS if arguments.get(name) is not None), None)
    if call_id is None and tenant_id is None:
        return
    if task_id is not None:
        _call_tokens[task_id] = logctx.bind_call(call_id=call_id, tenant_id=tenant_id)


@task_postrun.connect
def _unbind_task_call(
    sender: Any = None, task_id: str | None = None, state: str | None = None, **extra: Any
) -> None:
    from orchestrator.metrics import TASKS

    TASKS.labels(task=str(getattr(sender, "name", "?")), state=str(state or "UNKNOWN")).inc()
    token = _call_tokens.pop(task_id, None) if task_id is not None else None
    if token is not None:
        try:
            logctx.unbind(token)
        except ValueError:  # set in another context (cannot happen with the thread pool): leave it
            pass
