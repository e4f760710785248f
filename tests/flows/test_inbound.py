"""Inbound calls are recorded (DESIGN.md §5 rule 5): until inbound flows route them, a call that reaches
the Stasis app from the dialplan is recorded, told a clear message and hung up; nothing is silently lost."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import aiohttp
import pytest

from flows.models import InboundCall
from orchestrator.sink import CallEventRouter
from telephony.events import CallEnded, CallInbound
from telephony.outcomes import CallOutcome
from telephony.sim.plan import parse_plan
from telephony.stasis import StasisApp, StasisConfig
from tests.orm import in_thread
from tests.telephony.sim.conftest import APP, PASSWORD, USER, start_sim, wait_until

pytestmark = pytest.mark.django_db(transaction=True)

NOW = datetime(2026, 1, 5, 22, 0, tzinfo=UTC)
T = TypeVar("T")


async def test_the_router_records_an_inbound_call_and_closes_it_once() -> None:
    router = CallEventRouter(pbx_ids=[7])
    try:
        call_id = "1767650400.17"  # Asterisk's own id: an inbound call's is never a UUID
        inbound = CallInbound(call_id, "15551230000", "+19175551212", "Pat", NOW, "sound:ss-noservice")
        await router.handle(inbound)
        await router.handle(inbound)  # a replay changes nothing
        assert await router.live_call_ids() == {call_id}
        end = CallEnded(call_id, NOW + timedelta(seconds=4), CallOutcome.ANSWERED, reason="stasis_end")
        await router.handle_many([end, end])

        call = await in_thread(InboundCall.objects.get)
        assert (call.did, call.caller_number, call.caller_name, call.pbx_id) == (
            "15551230000",
            "+19175551212",
            "Pat",
            7,
        )
        assert call.status == InboundCall.Status.ENDED and call.ended_at == NOW + timedelta(seconds=4)
        assert call.message == "sound:ss-noservice" and call.end_reason == "stasis_end"
        assert await router.live_call_ids() == set()
    finally:
        router.close()


async def test_an_inbound_call_through_the_stasis_app_is_recorded_told_and_ended() -> None:
    runner, pbx, port = await start_sim(parse_plan({}))
    router = CallEventRouter(pbx_ids=[3])
    app = StasisApp(
        StasisConfig(
            base_url=f"http://127.0.0.1:{port}",
            user=USER,
            password=PASSWORD,
            app=APP,
            inbound_message="sound:ss-noservice",
        ),
        router,
    )
    task = asyncio.get_running_loop().create_task(app.run())
    try:
        await asyncio.wait_for(app.connected.wait(), 5)
        async with aiohttp.ClientSession(
            headers={"Authorization": aiohttp.encode_basic_auth(USER, PASSWORD)}
        ) as session:
            spec = {"did": "15551230000", "caller_number": "+19175551212", "caller_name": "Pat", "app": APP}
            async with session.post(f"http://127.0.0.1:{port}/sim/inbound", json=spec) as resp:
                assert resp.status == 200
                call_id = (await resp.json())["call"]

            async def ended() -> bool:
                return await in_thread(
                    InboundCall.objects.filter(channel_id=call_id, status=InboundCall.Status.ENDED).exists
                )

            deadline = asyncio.get_running_loop().time() + 10
            while not await ended():
                assert asyncio.get_running_loop().time() < deadline, "the inbound call was not recorded ended"
                await asyncio.sleep(0.05)
            async with session.get(f"http://127.0.0.1:{port}/sim/calls/{call_id}") as resp:
                record = await resp.json()
        assert record["playbacks"] == ["sound:ss-noservice"] and record["ended_by"] == "app"
        await wait_until(lambda: not pbx.calls, timeout=5)
    finally:
        app.stop()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 10)
        router.close()
        await runner.cleanup()
