"""Side effects of the flows domain, enqueued after the commit (DESIGN.md §4: ``on_commit`` enqueue).

Every SMS send, ARI originate or hang-up and Stasis command is a Celery task sent by name from here, only
once the transaction that decided it committed: a rolled-back step sends nothing. A send lost between the
commit and the broker (a worker killed at that instant) is found again by the page sweep
(``flows.services.pages.pages_resend_stalled``): a page row in ``to_send`` is the durable record.

Tests replace :func:`send` (e.g. to record, or to run the task's service inline).
"""

from __future__ import annotations

import logging
from typing import Any

from celery import current_app
from django.db import transaction

logger = logging.getLogger(__name__)

PAGE_SEND = "flows.page_send"
PAGE_HANGUP = "flows.page_hangup"


def send(name: str, args: tuple[Any, ...], countdown: float = 0.0) -> None:
    options: dict[str, Any] = {"countdown": countdown} if countdown > 0 else {}
    current_app.send_task(name, args=args, **options)


def enqueue(name: str, *args: Any, countdown: float = 0.0) -> None:
    """Send the task ``name`` after the current transaction commits (at once outside one)."""

    def go() -> None:
        try:
            send(name, args, countdown)
        except Exception as exc:  # noqa: BLE001 - the broker down: the sweeps pick the durable rows up
            logger.warning("%s%r not sent (%s); the sweep will retry", name, args, exc)

    transaction.on_commit(go)
