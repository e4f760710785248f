"""The call-event router (orchestrator/sink.py) sends each call's events to its domain by the call id alone:
version-4 UUIDs to the campaigns, everything else (flow legs: version 8; inbound calls: Asterisk ids) to the
flows; and asks the flows where an inbound call goes."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from orchestrator.sink import CallEventRouter
from telephony.events import CallDtmf, CallEvent, CallInbound, InboundRoute
from wire.callids import new_flow_call_id

NOW = datetime(2026, 1, 5, 22, 0, tzinfo=UTC)


class Recorder:
    def __init__(self, live: set[str]) -> None:
        self.events: list[CallEvent] = []
        self.live = live

    async def handle(self, event: CallEvent) -> None:
        self.events.append(event)

    async def handle_many(self, events: Sequence[CallEvent]) -> list[BaseException | None]:
        self.events.extend(events)
        return [None] * len(events)

    async def live_call_ids(self) -> set[str]:
        return self.live

    def close(self) -> None:
        pass


class Routing(Recorder):
    async def route_inbound(self, event: CallInbound) -> InboundRoute:
        return InboundRoute(action="agent")


def router_with(flows: Any) -> tuple[CallEventRouter, Recorder]:
    router = CallEventRouter.__new__(CallEventRouter)
    attempts = Recorder({"a"})
    router.attempts = attempts  # type: ignore[assignment]
    router.inbound = flows
    return router, attempts


async def test_events_go_to_the_domain_of_their_call_id() -> None:
    flows = Recorder({"f"})
    router, attempts = router_with(flows)
    attempt, leg, inbound = str(uuid.uuid4()), new_flow_call_id(), "1767650400.17"
    for call_id in (attempt, leg, inbound):
        await router.handle(CallDtmf(call_id, "1", NOW))
    await router.handle_many([CallDtmf(leg, "2", NOW), CallDtmf(leg, "1", NOW)])
    await router.handle_many([CallDtmf(attempt, "3", NOW)])
    assert [e.call_id for e in attempts.events] == [attempt, attempt]
    assert [e.call_id for e in flows.events] == [leg, inbound, leg, leg]
    assert await router.live_call_ids() == {"a", "f"}


async def test_inbound_routing_is_the_flows() -> None:
    event = CallInbound("1767650400.17", "15551230000", "+19175551212", "", NOW)
    router, _ = router_with(Routing(set()))
    assert await router.route_inbound(event) == InboundRoute(action="agent")
