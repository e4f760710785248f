"""Celery tasks of integrations: thin and safe to run twice (DESIGN.md §4).

* ``integrations.deliver_webhook(delivery_id)``: one try of a due delivery.
* ``integrations.webhooks_sweep`` (beat, every ``WEBHOOKS_SWEEP_S``): enqueues every due pending delivery,
  the guarantee behind the enqueue after commit and the countdown after a failed try; and prunes the
  delivery log (delivered and failed rows older than ``WEBHOOK_LOG_RETENTION_DAYS``), a batch a run.
"""

from __future__ import annotations

import logging
from uuid import UUID

from celery import shared_task

from integrations.services.deliveries import (
    DELIVER_TASK,
    webhook_deliver,
    webhook_deliveries_due,
    webhook_deliveries_prune,
)

logger = logging.getLogger(__name__)

SWEEP = "integrations.webhooks_sweep"


@shared_task(name=DELIVER_TASK, ignore_result=True)
def deliver_webhook(delivery_id: str) -> str:
    return webhook_deliver(delivery_id=UUID(str(delivery_id))).outcome


@shared_task(name=SWEEP, ignore_result=True)
def webhooks_sweep() -> int:
    due = webhook_deliveries_due()
    for delivery_id in due:
        deliver_webhook.delay(str(delivery_id))
    pruned = webhook_deliveries_prune()
    if due or pruned:
        logger.info("webhooks sweep: %s deliveries enqueued, %s old ones pruned", len(due), pruned)
    return len(due)
