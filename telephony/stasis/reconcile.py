"""Reconciliation on every (re)connect, before the new connection's events are handled.

It reads the live set (``sink.live_call_ids()``) **before** ``GET /channels`` for "ended during the gap" (a
call the orchestrator believes placed had its channel created before that read, so a missing channel means
it ended), and **again after** it for "orphans to hang up" (a channel created just before the GET belongs
to an attempt committed before it). Calls still ``queued`` are not in the live set by contract (see
:class:`~telephony.events.CallEventSink`). The decisions are the call controller's
(:meth:`~telephony.stasis.controller.CallController.reconcile_gone`, ``reconcile_live``); this module does
the reads.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import aiohttp

from telephony.events import CallEventSink
from telephony.stasis.controller import CallController
from telephony.stasis.intents import Effect
from telephony.stasis.rest import AriRest


async def reconcile(
    rest: AriRest,
    sink: CallEventSink,
    controller: CallController,
    apply: Callable[[Sequence[Effect]], Awaitable[None]],
) -> None:
    """Close what ended while we were not listening; hang up what nobody waits for; resume what was left
    half done. ``apply`` executes the controller's effects and waits for the intents it gave."""
    live_before = await sink.live_call_ids()
    status, channels = await rest.request("GET", "/channels", body=True)
    if status != 200 or not isinstance(channels, list):
        raise aiohttp.ClientError(f"GET /ari/channels answered {status}")
    by_id: dict[str, dict[str, Any]] = {
        c["id"]: c for c in channels if isinstance(c, dict) and isinstance(c.get("id"), str)
    }
    status, bridges = await rest.request("GET", "/bridges", body=True)
    if status != 200 or not isinstance(bridges, list):
        raise aiohttp.ClientError(f"GET /ari/bridges answered {status}")
    bridge_members: dict[str, set[str]] = {
        b["id"]: {c for c in b.get("channels") or () if isinstance(c, str)}
        for b in bridges
        if isinstance(b, dict) and isinstance(b.get("id"), str)
    }
    await apply(controller.reconcile_gone(set(by_id), live_before, time.time()))
    live = live_before | await sink.live_call_ids()
    await apply(controller.reconcile_live(by_id, bridge_members, live, time.time()))
