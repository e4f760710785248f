"""The simulator's music on hold (``POST``/``DELETE /channels/{id}/moh``) and its record of who was in a
bridge with whom: what the warm-transfer tests judge the Stasis app by."""

from __future__ import annotations

from typing import Any

import pytest

from .conftest import Sim
from .test_behaviours import call_record, originate, stream  # noqa: F401 - the fixture

CALLEE = "+15550200011"
HUMAN = "+15550200012"


@pytest.fixture
def plan_doc() -> dict[str, Any]:
    silent = {"behaviour": "answer", "after": 0, "say": []}
    return {"numbers": {CALLEE: silent, HUMAN: silent}}


async def test_moh_is_recorded_and_stops_with_the_channel(sim: Sim, stream: Any) -> None:  # noqa: F811
    callee = await originate(sim, CALLEE)
    await stream.wait_type("StasisStart", callee, timeout=3)
    await sim.request("POST", f"/ari/channels/{callee}/moh", expect=204, params={"mohClass": "sales"})
    await sim.request("POST", f"/ari/channels/{callee}/moh", expect=204)  # again: still one span
    record = await call_record(sim, callee)
    assert len(record["moh"]) == 1 and record["moh"][0]["class"] == "sales"
    assert record["moh"][0]["stopped_at"] is None
    await sim.request("DELETE", f"/ari/channels/{callee}/moh", expect=204)
    assert (await call_record(sim, callee))["moh"][0]["stopped_at"] is not None
    await sim.request("POST", f"/ari/channels/{callee}/moh", expect=204)
    await sim.request("DELETE", f"/ari/channels/{callee}", expect=204)
    await stream.wait_type("ChannelDestroyed", callee, timeout=3)
    spans = (await call_record(sim, callee))["moh"]
    assert len(spans) == 2 and spans[1]["stopped_at"] is not None, "the hangup ends the music"
    assert (await sim.request("POST", "/ari/channels/nope/moh"))[0] == 404


async def test_bridge_membership_changes_are_in_each_partys_record(sim: Sim, stream: Any) -> None:  # noqa: F811
    callee, human = await originate(sim, CALLEE), await originate(sim, HUMAN)
    await stream.wait_type("StasisStart", callee, timeout=3)
    await stream.wait_type("StasisStart", human, timeout=3)
    await sim.request("POST", "/ari/bridges", expect=200, params={"type": "mixing", "bridgeId": "b1"})
    await sim.request("POST", "/ari/bridges/b1/addChannel", expect=204, params={"channel": callee})
    await sim.request("POST", "/ari/bridges/b1/addChannel", expect=204, params={"channel": human})
    await sim.request("POST", "/ari/bridges/b1/removeChannel", expect=204, params={"channel": callee})
    callee_log = (await call_record(sim, callee))["bridged"]
    human_log = (await call_record(sim, human))["bridged"]
    assert [(e["bridge"], e["members"]) for e in callee_log] == [
        ("b1", [callee]),
        ("b1", sorted([callee, human])),
        (None, []),
    ]
    assert [(e["bridge"], e["members"]) for e in human_log] == [
        ("b1", sorted([callee, human])),
        ("b1", [human]),
    ]
