"""The call clock on a virtual loop: 10 minutes of ticks, late wake-ups and stalls, and no drift."""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable
from typing import Any

from media.call import LEAD_FRAMES, Call
from media.session import FRAME_S


class Handle:
    def cancel(self) -> None:
        return None


class VirtualLoop:
    """Just what the call clock uses of an event loop, with a clock the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.scheduled: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = 0

    def time(self) -> float:
        return self.now

    def call_at(self, when: float, callback: Callable[[], None]) -> Handle:
        self._seq += 1
        heapq.heappush(self.scheduled, (when, self._seq, callback))
        return Handle()

    def call_later(self, delay: float, callback: Callable[..., Any], *args: Any) -> None:
        return None


class Wire:
    """A connection that records the times of its writes."""

    def __init__(self, loop: VirtualLoop) -> None:
        self.loop = loop
        self.writes: list[float] = []
        self.worker: Any = None

    def write(self, data: bytes) -> bool:
        assert len(data) == 963
        self.writes.append(self.loop.now)
        return True

    def write_buffer_size(self) -> int:
        return 0

    def close(self, **_: Any) -> None:
        raise AssertionError("the clock must not close the call")


def run_clock(
    minutes: float, lateness: Callable[[int], float]
) -> tuple[Call, VirtualLoop, Wire, list[float]]:
    loop = VirtualLoop()
    wire = Wire(loop)

    class Worker:
        probe = type("P", (), {"enabled": False})()

    wire.worker = Worker()
    call = Call.__new__(Call)
    Call.__init__(call, wire, "c")  # type: ignore[arg-type]
    call.loop = loop  # type: ignore[assignment]
    call._t0 = loop.now
    call._tick()
    scheduled_at: list[float] = []
    end = loop.now + minutes * 60
    tick = 0
    max_ticks = int(minutes * 60 / FRAME_S) * 3 + 100  # a spinning clock shows up as too many ticks
    while loop.scheduled and loop.now < end and tick < max_ticks:
        when, _, callback = heapq.heappop(loop.scheduled)
        scheduled_at.append(when)
        loop.now = max(loop.now, round(when + lateness(tick), 9))
        tick += 1
        callback()
    return call, loop, wire, scheduled_at


def test_ten_minutes_of_late_wakeups_do_not_drift() -> None:
    rng = random.Random(7)  # noqa: S311 - timing noise, not cryptography
    call, loop, wire, scheduled = run_clock(10, lambda _: rng.uniform(0, 0.004))
    t0 = 1000.0
    for when in scheduled:
        n = (when - t0) / FRAME_S
        assert abs(n - round(n)) < 1e-6, "every tick is scheduled on the call's own 20 ms grid"
    elapsed = loop.now - t0
    assert abs(len(wire.writes) - (elapsed / FRAME_S + 1 + LEAD_FRAMES)) <= 2
    per_tick: dict[float, int] = {}
    for at in wire.writes:
        per_tick[at] = per_tick.get(at, 0) + 1
    assert max(per_tick.values()) <= 2, "never more than two frames at once"
    assert call.late_ticks == 0


def test_a_stall_skips_the_missed_frames_instead_of_bursting_them() -> None:
    call, loop, wire, _ = run_clock(0.2, lambda tick: 0.150 if tick == 100 else 0.0)
    per_tick: dict[float, int] = {}
    for at in wire.writes:
        per_tick[at] = per_tick.get(at, 0) + 1
    assert max(per_tick.values()) <= 2
    assert call.late_ticks == 1
    # After the stall the clock is back on its grid: one frame per 20 ms, one frame ahead.
    tail = wire.writes[-50:]
    gaps = [round((b - a) * 1000, 6) for a, b in zip(tail, tail[1:], strict=False)]
    assert all(abs(g - 20.0) < 1e-6 for g in gaps)


def test_timers_that_fire_early_do_not_make_the_clock_spin() -> None:
    """uvloop's clock has 1 ms resolution and a timer may run up to that much before its time."""
    rng = random.Random(3)  # noqa: S311 - timing noise, not cryptography
    call, loop, wire, scheduled = run_clock(1, lambda _: -rng.uniform(0, 0.001))
    frames = len(wire.writes)
    assert frames >= 60 / FRAME_S
    assert len(scheduled) <= frames + 5, f"{len(scheduled)} ticks for {frames} frames: the clock spins"
