"""Celery tasks of the dialer: thin wrappers that load ids, call one service and map its result to Celery
(DESIGN.md §4). Other processes send these tasks by name: keep every ``name=`` and signature.

* :func:`dispatch_sweep` (beat, every second) requests a pass (:func:`dispatch_tenant_task`) for every active
  tenant that has something to dial: a dialing campaign with due leads and room under its cap, and room
  under the tenant's cap (``campaigns.selectors.tenant_ids_to_dispatch``, read from durable state on every
  sweep). It is the guarantee that no lead is lost (DESIGN.md §5 rule 3); every other trigger (a call
  ended: :func:`trigger_dispatch`) is only an optimisation. A tenant at its cap is skipped: the end of one
  of its calls triggers a pass, and if that trigger is lost the next sweep sees the free slot. Requests are
  coalesced per tenant (``campaigns.services.passes``).
* :func:`dispatch_tenant_task` runs one dispatch pass (``campaigns.services.dispatch``) and, after its
  commit, originates the attempts it claimed itself (:func:`originate_claimed`), one after the other: no
  message and no reads per call. What needs more than the plain case is handed to
  :func:`originate_attempt` with nothing sent (:func:`_hand_off`).
* :func:`originate_attempt` (hand-offs, retries, resumed attempts) runs
  ``campaigns.services.originate.attempt_originate`` and turns a "try again in N s" into a Celery retry.
* :func:`resume_stalled_attempts` (beat, every 10 s) gives a new originate task to a queued attempt whose
  task was lost; :func:`end_overdue_attempts` (beat) ends placed attempts whose end never came.
* ``media.*``: what the AI agent did during a call, sent by the media worker.
* :func:`run_contact_import`: a CSV import too large to run in the request (``campaigns.services.imports``).

Every task is safe to run twice (``acks_late`` redelivery, a duplicate enqueue, the stalled-attempt sweep):
a dispatch pass counts durable state under the tenant lock and originates only what that pass claims; an
originate re-checks the attempt and claims the send with a conditional UPDATE (see
``campaigns.services.originate``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Any
from uuid import UUID

from celery import Task, shared_task
from django.utils import timezone

from campaigns import metrics
from campaigns.models import CallAttempt
from campaigns.selectors import contact_imports_stalled, tenant_ids_to_dispatch
from campaigns.services import agent_actions, results, transfers, voicemail
from campaigns.services.call_events import attempts_end_overdue
from campaigns.services.dispatch import dispatch_tenant
from campaigns.services.imports import contact_import_run
from campaigns.services.originate import (
    ALREADY,
    FAILED,
    HANDED_OFF,
    ORIGINATED,
    RETRY,
    OriginateResult,
    attempt_originate,
    attempt_originate_claimed,
    attempts_resume_stalled,
    originate_expect,
)
from campaigns.services.passes import (
    DISPATCH_MESSAGE_EXPIRES_S,
    TRIGGER_GROUP,
    dispatch_pass_started,
    dispatch_passes_request,
)
from orchestrator.errors import InvalidInput
from wire import logctx
from wire import tasks as media_tasks

logger = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------------- dispatch


def _send_passes(tenant_ids: list[int]) -> None:
    """One pass message: for one tenant, or for a few (:func:`dispatch_tenants_task`)."""
    if len(tenant_ids) == 1:
        dispatch_tenant_task.apply_async((tenant_ids[0],), expires=DISPATCH_MESSAGE_EXPIRES_S)
    else:
        dispatch_tenants_task.apply_async((tenant_ids,), expires=DISPATCH_MESSAGE_EXPIRES_S)


def trigger_dispatch(tenant_id: int) -> None:
    """Ask for a dispatch pass for the tenant now (e.g. a call ended and freed a slot).

    Pass it as ``attempt_apply(..., on_ended=trigger_dispatch)``: it then runs after the commit. Nothing is
    enqueued when a pass of the tenant is already pending (``campaigns.services.passes``): it starts after
    this commit, so it sees the freed slot.
    """
    dispatch_passes_request(tenant_ids=[tenant_id], send=_send_passes)


def trigger_dispatch_many(tenant_ids: list[int]) -> None:
    """:func:`trigger_dispatch` for the tenants of several calls that ended in one commit (the Stasis sink
    applies waiting events together): one Redis round trip, and up to
    ``campaigns.services.passes.TRIGGER_GROUP`` passes per message."""
    dispatch_passes_request(tenant_ids=tenant_ids, send=_send_passes, group=TRIGGER_GROUP)


def _hand_off(attempt_id: UUID, *, countdown: float = 0.0, ari_failures: int = 0) -> None:
    """Give a claimed attempt that the dispatch task did not originate itself to :func:`originate_attempt`
    (``countdown`` s from now), recording that its task is expected."""
    originate_expect(attempt_ids=[attempt_id], within_s=countdown)
    options: dict[str, Any] = {"countdown": countdown} if countdown > 0 else {}
    originate_attempt.apply_async(
        (str(attempt_id),), {"ari_failures": ari_failures} if ari_failures else None, **options
    )


@shared_task(name="campaigns.tasks.end_overdue_attempts", ignore_result=True)
def end_overdue_attempts() -> int:
    """End placed attempts whose call never reported an end within its hard maximum; returns how many."""
    return len(attempts_end_overdue(on_ended=trigger_dispatch))


@shared_task(name="campaigns.tasks.resume_stalled_attempts")
def resume_stalled_attempts() -> int:
    """Give a new originate task to every queued attempt whose task was lost; returns how many."""
    return len(attempts_resume_stalled(resume=lambda attempt_id: originate_attempt.delay(attempt_id)))


# Results are not read by anyone (the return values are for logs and tests): not storing them saves a
# Redis write per task on the hot path.
@shared_task(name="campaigns.tasks.dispatch_tenant_task", ignore_result=True)
def dispatch_tenant_task(tenant_id: int) -> int:
    """One dispatch pass for the tenant, then the originates of what it claimed; returns how many attempts
    it claimed."""
    dispatch_pass_started(tenant_id=tenant_id)
    claimed = len(dispatch_tenant(tenant_id=tenant_id, on_commit_attempts=originate_claimed))
    metrics.record_dispatch_pass(claimed=claimed)
    return claimed


@shared_task(name="campaigns.tasks.dispatch_tenants_task", ignore_result=True)
def dispatch_tenants_task(tenant_ids: list[int]) -> int:
    """:func:`dispatch_tenant_task` for several tenants, one after another; returns how many attempts the
    passes claimed. A pass that fails is logged and the others still run (the sweep retries it)."""
    claimed = 0
    for tenant_id in tenant_ids:
        try:
            claimed += dispatch_tenant_task.run(tenant_id)
        except Exception:  # one tenant's failure must not starve the others; the sweep covers it
            logger.exception("dispatch pass of tenant %s failed", tenant_id)
    return claimed


@shared_task(name="campaigns.tasks.dispatch_sweep", ignore_result=True)
def dispatch_sweep() -> int:
    """Enqueue a dispatch pass for every active tenant with something to dial now and no pass pending;
    returns how many were enqueued.

    Always enqueued, never run inline: the passes of different tenants then run in parallel on all
    workers, and one slow tenant cannot delay the others or make the sweep overrun its 1 s period.
    """
    return dispatch_passes_request(tenant_ids=tenant_ids_to_dispatch(now=timezone.now()), send=_send_passes)


# ------------------------------------------------------------------------------------------ originate


# max_retries=None: Celery's own counter would count CPS waits too (and its default of 3 would end the task
# with MaxRetriesExceededError, leaving the attempt queued); the ARI budget is ``ari_failures`` instead.
@shared_task(bind=True, name="campaigns.tasks.originate_attempt", max_retries=None, ignore_result=True)
def originate_attempt(self: Task[Any, Any], attempt_id: str, ari_failures: int = 0) -> str:
    """Place the call of a queued attempt; returns what happened (for logs and tests).

    ``ari_failures`` counts retryable ARI failures so far (carried across retries; waiting for a CPS slot
    does not count).
    """
    result = attempt_originate(
        attempt_id=UUID(attempt_id), ari_failures=ari_failures, on_ended=trigger_dispatch
    )
    _count(result)
    if result.status != RETRY:
        return result.status
    originate_expect(attempt_ids=[attempt_id], within_s=result.retry_in)
    if result.ari_failures is None:
        raise self.retry(countdown=result.retry_in)
    # An ARI failure: one more counted. (The exception is not passed: called directly, as in tests, retry()
    # would then raise it instead of Retry; the service logged it.)
    raise self.retry(
        countdown=result.retry_in, args=(attempt_id,), kwargs={"ari_failures": result.ari_failures}
    )


def originate_claimed(attempts: list[CallAttempt]) -> None:
    """Originate the attempts a dispatch pass has just claimed and committed, in the dispatch task itself
    (one after the other: a pass claims a few), saving a message and the reads of a task per call.

    If this process dies half-way, the attempts not yet handled are queued with no task expected and
    :func:`resume_stalled_attempts` gives them one; one whose send was already claimed is then settled by
    asking the PBX, never sent again.
    """
    for attempt in attempts:
        try:
            _originate_inline(attempt)
        except Exception:
            # Whatever went wrong (a database or broker error), the other attempts of the pass still go out;
            # this one goes to the originate task, which re-checks and settles it.
            logger.exception("attempt %s: originate in the dispatch task failed; handing it over", attempt.pk)
            try:
                _hand_off(attempt.pk)
            except Exception:
                logger.exception("attempt %s: hand-over failed; the stalled sweep resumes it", attempt.pk)


def _originate_inline(attempt: CallAttempt) -> str:
    """Originate one freshly claimed attempt (``attempt_originate_claimed``), handing it to
    :func:`originate_attempt` when it needs more; returns what happened (for logs and tests)."""
    with logctx.call_context(call_id=attempt.pk, tenant_id=attempt.tenant_id):
        result = attempt_originate_claimed(attempt=attempt, on_ended=trigger_dispatch)
    _count(result)
    if result.status == HANDED_OFF:
        _hand_off(attempt.pk, countdown=result.retry_in, ari_failures=result.ari_failures or 0)
    return result.status


_METRIC_RESULTS = {
    ORIGINATED: "sent",
    ALREADY: "sent",
    FAILED: "failed",
    RETRY: "retry",
    HANDED_OFF: "handed_off",
}


def _count(result: OriginateResult) -> None:
    """The originate's result in the worker's metrics (anything else is a re-check that said no)."""
    metrics.record_originate(_METRIC_RESULTS.get(result.status, "refused"))


# ----------------------------------------------------------------------------------- the media worker's
#
# What the AI agent did during a call, sent by the media worker by name (it never imports Django):
# ``send_task("media.…", kwargs={...})`` (the media worker's task contract: the names in ``wire.tasks``
# and the keyword arguments below are what it sends; keep them). Each task checks that the call id is an
# attempt of the tenant it names (otherwise the message is logged and dropped), calls one service of
# campaigns.services.agent_actions, and is safe to run twice. Bad arguments are logged and dropped: a
# retry would not fix them. Extra keyword arguments (a newer media worker) are ignored.

SUMMARIZE_ATTEMPT = "campaigns.tasks.summarize_attempt"
MEDIA_DONE = "done"
MEDIA_UNCHANGED = "unchanged"
MEDIA_DROPPED = "dropped"
MEDIA_INVALID = "invalid"


def _media_action(task: str, call_id: object, tenant_id: object, action: Callable[[UUID, int], bool]) -> str:
    """Run ``action(attempt_id, tenant_id)`` for a media task; what happened (for logs and tests)."""
    try:
        attempt_id = UUID(str(call_id))
        tenant = int(str(tenant_id))
    except ValueError:
        logger.warning("%s: call %r of tenant %r is not an attempt; dropped", task, call_id, tenant_id)
        return MEDIA_DROPPED
    try:
        changed = action(attempt_id, tenant)
    except CallAttempt.DoesNotExist:
        logger.warning("%s: no attempt %s of tenant %s; dropped", task, attempt_id, tenant)
        return MEDIA_DROPPED
    except InvalidInput as exc:
        logger.warning("%s: attempt %s: %s; dropped", task, attempt_id, exc)
        return MEDIA_INVALID
    return MEDIA_DONE if changed else MEDIA_UNCHANGED


@shared_task(name=media_tasks.CALL_REPORT, ignore_result=True)
def media_call_report(
    call_id: str,
    tenant_id: int,
    transcript: list[Any],
    metrics: dict[str, Any],
    end_reason: str = "",
    errors: list[str] | None = None,
    **_extra: Any,
) -> str:
    """The call's transcript and media metrics (and the media worker's errors), saved on the attempt; then
    the summary pass (a task of its own: it may wait on a model)."""
    done = _media_action(
        media_tasks.CALL_REPORT,
        call_id,
        tenant_id,
        lambda pk, tenant: agent_actions.attempt_record_report(
            attempt_id=pk,
            tenant_id=tenant,
            transcript=transcript,
            metrics=metrics,
            end_reason=end_reason,
            errors=errors,
        ),
    )
    if done == MEDIA_DONE:
        summarize_attempt.delay(str(call_id))
    return done


@shared_task(name=SUMMARIZE_ATTEMPT, ignore_result=True)
def summarize_attempt(attempt_id: str) -> bool:
    """The summary pass of a call (campaigns/services/results.py); safe to run twice."""
    try:
        return results.attempt_summarize(attempt_id=UUID(str(attempt_id)))
    except CallAttempt.DoesNotExist:
        logger.warning("summary: no attempt %s; dropped", attempt_id)
        return False


@shared_task(name=media_tasks.SAVE_RESULTS, ignore_result=True)
def media_save_results(call_id: str, tenant_id: int, fields: dict[str, Any], **_extra: Any) -> str:
    """The values the agent's save_results tool saved so far on this call, checked by type and merged."""
    return _media_action(
        media_tasks.SAVE_RESULTS,
        call_id,
        tenant_id,
        lambda pk, tenant: results.attempt_save_results(attempt_id=pk, tenant_id=tenant, fields=fields),
    )


@shared_task(name=media_tasks.SCHEDULE_CALLBACK, ignore_result=True)
def media_schedule_callback(call_id: str, tenant_id: int, at: str, note: str = "", **_extra: Any) -> str:
    """The callee asked to be called back at ``at``: the lead is due then once the call ended."""
    return _media_action(
        media_tasks.SCHEDULE_CALLBACK,
        call_id,
        tenant_id,
        lambda pk, tenant: agent_actions.attempt_schedule_callback(
            attempt_id=pk, tenant_id=tenant, at=at, note=note
        ),
    )


@shared_task(name=media_tasks.TRANSFER_REQUEST, ignore_result=True)
def media_transfer_request(
    call_id: str,
    tenant_id: int,
    target_id: int | None = None,
    mode: str | None = None,
    reason: str = "",
    **_extra: Any,
) -> str:
    """The agent asks for a human: pick one among the campaign's targets and send the Stasis app the
    transfer command (campaigns.services.transfers.transfer_request). Not retried: a second run would dial
    a second human; the agent is told when nothing happens."""
    target = target_id if isinstance(target_id, int) and not isinstance(target_id, bool) else None
    return _media_action(
        media_tasks.TRANSFER_REQUEST,
        call_id,
        tenant_id,
        lambda pk, tenant: (
            transfers.transfer_request(
                attempt_id=pk, tenant_id=tenant, target_id=target, mode=mode, reason=str(reason or "")[:1000]
            )
            is not None
        ),
    )


@shared_task(name=media_tasks.SET_DISPOSITION, ignore_result=True)
def media_set_disposition(
    call_id: str, tenant_id: int, disposition: str, note: str = "", **_extra: Any
) -> str:
    """The agent's conclusion about the call (``do_not_call`` also puts the number on the DNC list)."""
    return _media_action(
        media_tasks.SET_DISPOSITION,
        call_id,
        tenant_id,
        lambda pk, tenant: agent_actions.attempt_set_disposition(
            attempt_id=pk, tenant_id=tenant, disposition=disposition, note=note
        ),
    )


@shared_task(name=media_tasks.ADD_TO_DNC, ignore_result=True)
def media_add_to_dnc(call_id: str, tenant_id: int, note: str = "", **_extra: Any) -> str:
    """ "Stop calling me": the number goes on the tenant's DNC list and the lead is done, at once."""
    return _media_action(
        media_tasks.ADD_TO_DNC,
        call_id,
        tenant_id,
        lambda pk, tenant: agent_actions.attempt_add_to_dnc(attempt_id=pk, tenant_id=tenant, note=note),
    )


@shared_task(name=media_tasks.SEND_SMS, ignore_result=True)
def media_send_sms(call_id: str, tenant_id: int, to: str, text: str, **_extra: Any) -> str:
    """An SMS the agent sends during the call: queued through messaging (its worker task sends it, with
    retries) and recorded on the attempt."""
    return _media_action(
        media_tasks.SEND_SMS,
        call_id,
        tenant_id,
        lambda pk, tenant: agent_actions.attempt_send_sms(attempt_id=pk, tenant_id=tenant, to=to, text=text),
    )


@shared_task(name="campaigns.tasks.run_contact_import", ignore_result=True)
def run_contact_import(import_id: int) -> None:
    """Run a queued CSV import, or resume one whose worker died; an ended one is left as it is."""
    contact_import_run(import_id=import_id)


#: An import still queued this long after its upload, or running this long after it started, has lost its
#: task (10,000 rows take seconds): the sweep runs it again (a second run of a live import is harmless).
IMPORT_QUEUED_STALL_S = 120.0
IMPORT_RUNNING_STALL_S = 600.0


@shared_task(name="campaigns.tasks.resume_stalled_imports", ignore_result=True)
def resume_stalled_imports() -> int:
    """Give a new task to every import whose task was lost; returns how many."""
    now = timezone.now()
    import_ids = contact_imports_stalled(
        queued_before=now - timedelta(seconds=IMPORT_QUEUED_STALL_S),
        started_before=now - timedelta(seconds=IMPORT_RUNNING_STALL_S),
    )
    for import_id in import_ids:
        run_contact_import.delay(import_id)
    if import_ids:
        logger.warning("contact imports %s had lost their task; running them again", import_ids)
    return len(import_ids)


@shared_task(name=media_tasks.ANSWERED_BY, ignore_result=True)
def media_answered_by(
    call_id: str, tenant_id: int, answered_by: str, source: str, at: float | None = None, **_extra: Any
) -> str:
    """Who answered the call (a person or a machine), as soon as the media worker decided."""
    return _media_action(
        media_tasks.ANSWERED_BY,
        call_id,
        tenant_id,
        lambda pk, tenant: voicemail.attempt_answered_by(
            attempt_id=pk, tenant_id=tenant, answered_by=answered_by, source=source, at=at
        ),
    )


@shared_task(name=media_tasks.VOICEMAIL_LEFT, ignore_result=True)
def media_voicemail_left(
    call_id: str, tenant_id: int, started_at: float, ended_at: float, **_extra: Any
) -> str:
    """The campaign's voicemail message was played to the end."""
    return _media_action(
        media_tasks.VOICEMAIL_LEFT,
        call_id,
        tenant_id,
        lambda pk, tenant: voicemail.attempt_voicemail_left(
            attempt_id=pk, tenant_id=tenant, started_at=started_at, ended_at=ended_at
        ),
    )
