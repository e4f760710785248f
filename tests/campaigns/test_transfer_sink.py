"""The Stasis app's transfer reports through the attempts' sink: the CallTransfer row follows them, the
attempt's log notes them, and a repeated or late one changes nothing."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from django.db import transaction

from campaigns.models import CallAttempt, CallTransfer
from campaigns.services.transfers import transfer_pick, transfer_target_create
from campaigns.sink import AttemptEventSink
from telephony.events import CallAnswered, CallBridged, CallTransferred, TransferUpdated
from tests.campaigns.test_dispatch import NOW
from tests.campaigns.test_sink import claimed_attempt
from tests.orm import in_thread

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def sink() -> Iterator[AttemptEventSink]:
    s = AttemptEventSink(on_ended=lambda tenant_id: None)
    yield s
    s.close()


def attempt_with_transfer() -> tuple[CallAttempt, CallTransfer]:
    attempt = claimed_attempt()
    target = transfer_target_create(tenant=attempt.tenant, name="Desk", number="+12125550190")
    with transaction.atomic():
        transfer = transfer_pick(
            attempt=CallAttempt.objects.select_related("pbx").get(pk=attempt.pk), target=target
        )
    return attempt, transfer


async def test_transfer_reports_update_the_row_and_the_log(sink: AttemptEventSink) -> None:
    attempt, transfer = await in_thread(attempt_with_transfer)
    call_id, tid = str(attempt.pk), str(transfer.pk)
    await sink.handle(CallAnswered(call_id, call_id, NOW))
    await sink.handle(CallBridged(call_id, call_id, NOW + timedelta(seconds=1)))
    errors = await sink.handle_many(
        [
            TransferUpdated(call_id, tid, "dialing", NOW + timedelta(seconds=5)),
            TransferUpdated(call_id, tid, "briefing", NOW + timedelta(seconds=8)),
        ]
    )
    assert errors == [None, None]
    await sink.handle(TransferUpdated(call_id, tid, "connected", NOW + timedelta(seconds=20)))
    await sink.handle(CallTransferred(call_id, "+12125550190", NOW + timedelta(seconds=20)))
    await sink.handle(
        TransferUpdated(call_id, tid, "declined", NOW + timedelta(seconds=21), "declined")
    )  # late
    row = await in_thread(lambda: CallTransfer.objects.get(pk=transfer.pk))
    assert (row.state, row.answered_at, row.connected_at) == (
        "connected",
        NOW + timedelta(seconds=8),
        NOW + timedelta(seconds=20),
    )
    notes = await in_thread(lambda: list(attempt.events.filter(kind="note").values_list("type", flat=True)))
    assert [n for n in notes if n.startswith("transfer")] == [
        "transfer_dialing",
        "transfer_briefing",
        "transfer_connected",
        "transferred",
        "transfer_declined",
    ]
    fresh = await in_thread(lambda: CallAttempt.objects.get(pk=attempt.pk))
    assert fresh.transferred_to == "+12125550190"
