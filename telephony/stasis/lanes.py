"""Per-call ordered event lanes: call events reach the sink in order per call, calls concurrently.

Events reach the sink through a queue, so the websocket reader never waits on the sink (the orchestrator's
sink does database work in threads) and Asterisk's 100 ms write timeout (PROTOCOLS.md §1.3) is never hit
because of us. One dispatcher drains it into **per-call lanes**: a call's events are handed to the sink in
order (the next only when ``handle`` of the previous returned), while the lanes of different calls run
concurrently, at most ``concurrency`` calls at once (a new call's lane waits for its turn, first come first
served, while its events gather in it in order). Handing events over one by one made the sink's latency
(one database transaction each) the bound on throughput. A slow or failing call holds up only its own
lane. **Coalescing:** when several events of a call are waiting in its lane (the sink is behind) and the
sink has ``handle_many`` (:class:`~telephony.events.CallEventBatchSink`), they are handed over together, so
a backlog costs the sink one transaction per call rather than one per event.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Awaitable, Callable, Sequence

from telephony.events import CallEvent, CallEventBatchSink, CallEventSink
from wire import logctx

logger = logging.getLogger("telephony.stasis")


class EventLanes:
    """Hands emitted call events to ``sink``; :meth:`deliver` runs the dispatcher until cancelled."""

    def __init__(self, sink: CallEventSink, *, concurrency: int, app: str) -> None:
        if concurrency < 1:
            raise ValueError("StasisConfig.delivery_concurrency must be at least 1")
        self.sink = sink
        self.concurrency = concurrency
        self.app = app
        self.queue: asyncio.Queue[CallEvent] = asyncio.Queue()  # emitted, not yet in a lane
        self.lanes: dict[str, collections.deque[CallEvent]] = {}  # call id -> its events not yet handed over
        self.tasks: set[asyncio.Task[None]] = set()
        self.running = 0  # lanes whose task runs: at most concurrency
        self.waiting: collections.deque[str] = collections.deque()  # call ids whose lane waits to run
        self._handle_many = sink.handle_many if isinstance(sink, CallEventBatchSink) else None
        self.undelivered = 0  # emitted and not yet handled by the sink

    def emit(self, event: CallEvent) -> None:
        """The one way a call event leaves the Stasis app (towards the sink)."""
        self.undelivered += 1
        self.queue.put_nowait(event)

    async def deliver(self) -> None:
        """Each event joins its call's lane. A new lane runs at once when fewer than ``concurrency`` do,
        else it waits its turn (first come, first served) while its call's events gather in it."""
        while True:
            event = await self.queue.get()
            lane = self.lanes.get(event.call_id)
            if lane is not None:
                lane.append(event)  # delivered by the lane's task after the events before it
                continue
            self.lanes[event.call_id] = collections.deque((event,))
            if self.running < self.concurrency:
                self.running += 1
                self._start_lane(event.call_id)
            else:
                self.waiting.append(event.call_id)

    async def stop(self, delivery: asyncio.Task[None], *, drain_s: float = 5.0) -> None:
        """Hand over what is queued (for at most ``drain_s``), then stop the dispatcher and the lanes."""
        try:
            await asyncio.wait_for(self.queue.join(), drain_s)
        except TimeoutError:
            pass
        delivery.cancel()
        for lane in list(self.tasks):
            lane.cancel()
        await asyncio.gather(delivery, *self.tasks, return_exceptions=True)

    def _start_lane(self, call_id: str) -> None:
        task = asyncio.get_running_loop().create_task(self._run_lane(call_id, self.lanes[call_id]))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _run_lane(self, call_id: str, lane: collections.deque[CallEvent]) -> None:
        """Hand one call's events to the sink in order until its lane is empty: one at a time, or, when
        several are waiting and the sink takes them (``handle_many``), all of them at once."""
        logctx.bind_call(call_id=call_id)  # the sink's log lines name the call (JSON logs)
        try:
            while lane:
                if self._handle_many is not None and len(lane) > 1:
                    events = list(lane)
                    lane.clear()
                    await self._hand_over_many(self._handle_many, events)
                    continue
                event = lane.popleft()
                try:
                    await self.sink.handle(event)
                except Exception:  # the sink's failure must not stop the app; it is logged with the event
                    logger.exception("stasis %s: sink failed on %r", self.app, event)
                finally:
                    self.undelivered -= 1
                    self.queue.task_done()
        finally:
            # No await between the last emptiness check and here: an event for this call that arrives later
            # finds no lane and starts a new one, after this one's events were all handed over.
            del self.lanes[call_id]
            if self.waiting:  # this lane's turn passes to the call that waited longest
                self._start_lane(self.waiting.popleft())
            else:
                self.running -= 1

    async def _hand_over_many(
        self,
        handle_many: Callable[[Sequence[CallEvent]], Awaitable[Sequence[BaseException | None]]],
        events: list[CallEvent],
    ) -> None:
        try:
            errors: Sequence[BaseException | None] = await handle_many(events)
        except Exception:  # the sink's failure must not stop the app; it is logged with the events
            logger.exception("stasis %s: sink failed on %r", self.app, events)
            errors = ()
        finally:
            self.undelivered -= len(events)
            for _ in events:
                self.queue.task_done()
        for event, error in zip(events, errors, strict=False):
            if error is not None:
                logger.error("stasis %s: sink failed on %r", self.app, event, exc_info=error)
