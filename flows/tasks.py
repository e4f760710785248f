"""Celery tasks of the inbound flows: thin wrappers (DESIGN.md §4), each safe to run twice.

* ``media.flow_intake`` / ``media.flow_urgent`` (contract 4): the agent's ``record_intake`` and
  ``report_urgent`` tools, sent by the media worker by name (``wire.tasks``); ``media.flow_call_report``:
  the end-of-call report (transcript, metrics) of an inbound call or a page call.
* ``flows.page_send`` / ``flows.page_hangup``: a leg's send and its stop (flows/services/pages.py).
* ``flows.resend_stalled_pages`` (beat): pages whose send was lost are sent again.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Task, shared_task

from flows.models import InboundCall
from flows.services import pages
from flows.services.inbound import flow_call_report_record, inbound_intake_record, inbound_report_urgent
from wire.tasks import FLOW_CALL_REPORT, FLOW_INTAKE, FLOW_URGENT

logger = logging.getLogger(__name__)

PAGE_MAX_RETRIES = 8


@shared_task(name=FLOW_INTAKE, ignore_result=True)
def media_flow_intake(
    call_id: str, tenant_id: int, fields: dict[str, Any] | None = None, **_extra: Any
) -> str:
    try:
        changed = inbound_intake_record(call_id=call_id, tenant_id=tenant_id, fields=fields or {})
    except InboundCall.DoesNotExist:
        logger.warning("%s: no inbound call %s of tenant %s; dropped", FLOW_INTAKE, call_id, tenant_id)
        return "dropped"
    return "done" if changed else "unchanged"


@shared_task(name=FLOW_URGENT, ignore_result=True)
def media_flow_urgent(
    call_id: str, tenant_id: int, summary: str = "", fields: dict[str, Any] | None = None, **_extra: Any
) -> str:
    try:
        incident = inbound_report_urgent(call_id=call_id, tenant_id=tenant_id, summary=summary, fields=fields)
    except InboundCall.DoesNotExist:
        logger.warning("%s: no inbound call %s of tenant %s; dropped", FLOW_URGENT, call_id, tenant_id)
        return "dropped"
    return f"incident:{incident.pk}" if incident is not None else "not_paging"


@shared_task(name=FLOW_CALL_REPORT, ignore_result=True)
def media_flow_call_report(
    call_id: str, tenant_id: int, transcript: Any = None, metrics: Any = None, **_extra: Any
) -> str:
    try:
        changed = flow_call_report_record(
            call_id=call_id, tenant_id=tenant_id, transcript=transcript or [], metrics=metrics or {}
        )
    except InboundCall.DoesNotExist:
        logger.warning("%s: no call %s of tenant %s; dropped", FLOW_CALL_REPORT, call_id, tenant_id)
        return "dropped"
    except ValueError as exc:
        logger.warning("%s: call %s: %s; dropped", FLOW_CALL_REPORT, call_id, exc)
        return "invalid"
    return "done" if changed else "unchanged"


@shared_task(bind=True, name="flows.page_send", ignore_result=True, max_retries=PAGE_MAX_RETRIES)
def page_send(self: Task[Any, Any], page_id: int) -> str:
    try:
        return pages.page_send(page_id=page_id)
    except pages.PageRetry as exc:
        logger.warning("page %s: %s; retry in %.1f s", page_id, exc, exc.countdown)
        raise self.retry(countdown=exc.countdown) from exc


@shared_task(name="flows.page_hangup", ignore_result=True)
def page_hangup(page_id: int) -> bool:
    return pages.page_hangup(page_id=page_id)


@shared_task(name="flows.tasks.resend_stalled_pages", ignore_result=True)
def resend_stalled_pages() -> int:
    return len(pages.pages_resend_stalled())
