"""Celery tasks of messaging: thin, idempotent (DESIGN.md §4).

* ``messaging.send_message(message_id)``: one send try; a retryable failure schedules the next try with
  backoff (bounded by ``SMS_SEND_MAX_TRIES``).
* ``messaging.process_receipt(receipt_id)``: act on a stored provider webhook, once.
* ``messaging.sweep`` (beat): the guarantee behind both: queued messages and unprocessed receipts whose
  task was lost (a worker killed, a web process gone before enqueueing) are enqueued again.
"""

from __future__ import annotations

import logging

from celery import shared_task
from django.conf import settings

from messaging import selectors
from messaging.services.messages import message_deliver
from messaging.services.webhooks import receipt_process

logger = logging.getLogger(__name__)

SEND_MESSAGE = "messaging.send_message"
PROCESS_RECEIPT = "messaging.process_receipt"
SWEEP = "messaging.sweep"
#: A queued message or an unprocessed receipt this long overdue counts as lost by the sweep.
SWEEP_GRACE_S = 20.0
RECEIPT_MAX_TRIES = 5


@shared_task(name=SEND_MESSAGE, ignore_result=True)
def send_message(message_id: int) -> str:
    delivery = message_deliver(message_id=int(message_id))
    if delivery.outcome == "retry":
        send_message.apply_async((message_id,), countdown=delivery.retry_in_s)
    return delivery.outcome


@shared_task(name=PROCESS_RECEIPT, ignore_result=True)
def process_receipt(receipt_id: int) -> str:
    return receipt_process(receipt_id=int(receipt_id))


@shared_task(name=SWEEP, ignore_result=True)
def sweep() -> dict[str, int]:
    grace = float(getattr(settings, "MESSAGING_SWEEP_GRACE_S", SWEEP_GRACE_S))
    messages = selectors.messages_due(older_than_s=grace)
    for message_id in messages:
        send_message.delay(message_id)
    receipts = selectors.receipts_due(older_than_s=grace, max_tries=RECEIPT_MAX_TRIES)
    for receipt_id in receipts:
        process_receipt.delay(receipt_id)
    if messages or receipts:
        logger.info(
            "messaging sweep: %s messages and %s webhooks enqueued again", len(messages), len(receipts)
        )
    return {"messages": len(messages), "receipts": len(receipts)}
