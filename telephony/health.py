"""Is a PBX's Stasis app listening, and is any media worker up? (DESIGN.md §5 rule 9)

Calls are placed only where they can succeed: a channel originated into an app whose events websocket is
not connected is dialed all the same (PROTOCOLS.md A11), and the callee who answers is dropped at once;
an answered call that finds no media worker hears silence. Both processes therefore announce themselves in
Redis, and the dispatcher reads that before it claims anything.

Each announcement is a member of a sorted set whose **score is its expiry** (epoch seconds): a member is
up while its score is in the future. The writer refreshes it every :data:`HEARTBEAT_S` with an expiry
:data:`HEARTBEAT_TTL_S` ahead, so a process killed with ``kill -9`` is seen as down within that time,
with no clean-up needed.

* ``stasis:apps`` (``wire.brief.STASIS_APPS_KEY``): member = a PBX row id, written by the Stasis app that
  serves it while its events websocket is connected and reconciled. When the connection goes, the app
  sets the score to *now* instead of removing the member, so the member keeps the time the app was last
  known to listen: the next reconciliation reads it (:func:`stasis_last_seen`) to tell which calls were
  placed while nobody listened.
* ``media:workers`` (``wire.brief.MEDIA_WORKERS_KEY``): member = a media worker's advertised
  ``host:port``, written by the worker while it accepts calls.

Readers are synchronous (Celery workers, the web app); writers are the Stasis app's asyncio client.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from wire.brief import MEDIA_WORKERS_KEY, STASIS_APPS_KEY

#: How often the Stasis app refreshes its heartbeat, and how far ahead each refresh reaches.
HEARTBEAT_S = 1.0
HEARTBEAT_TTL_S = 3.0


@dataclass(frozen=True)
class Health:
    """What the dispatcher needs to know: which of the PBXs asked about have their Stasis app listening,
    and how many media workers are up."""

    pbx_ids_up: frozenset[int]
    media_workers: int

    def usable(self, pbx_id: int) -> bool:
        return self.media_workers > 0 and pbx_id in self.pbx_ids_up


def read_health(client: Any, pbx_ids: Iterable[int], *, now: float | None = None) -> Health:
    """One Redis round trip: the Stasis apps up among ``pbx_ids`` and the number of media workers up.
    ``client`` is a synchronous redis-py client; Redis errors propagate (the caller decides)."""
    ids = sorted(set(pbx_ids))
    now = time.time() if now is None else now
    pipe = client.pipeline(transaction=False)
    if ids:
        pipe.zmscore(STASIS_APPS_KEY, [str(pbx_id) for pbx_id in ids])
    pipe.zcount(MEDIA_WORKERS_KEY, f"({now}", "+inf")
    replies = pipe.execute()
    scores = replies[0] if ids else []
    up = frozenset(
        pbx_id for pbx_id, score in zip(ids, scores, strict=True) if score is not None and score > now
    )
    return Health(pbx_ids_up=up, media_workers=int(replies[-1]))


#: A hash: PBX row id -> when its Stasis app was last known to listen (epoch seconds), kept after it stops.
STASIS_SEEN_KEY = "stasis:seen"


async def stasis_heartbeat(client: Any, pbx_ids: Iterable[str], *, now: float | None = None) -> None:
    """The Stasis app of these PBX rows is connected and reconciled (``client``: redis.asyncio)."""
    await _announce(client, pbx_ids, now=now, valid_for_s=HEARTBEAT_TTL_S, exact=False)


async def stasis_gone(client: Any, pbx_ids: Iterable[str], *, now: float | None = None) -> None:
    """The app stopped listening: down from now (that time stays for the next reconciliation)."""
    await _announce(client, pbx_ids, now=now, valid_for_s=0.0, exact=True)


async def _announce(
    client: Any, pbx_ids: Iterable[str], *, now: float | None, valid_for_s: float, exact: bool
) -> None:
    """Up until ``now + valid_for_s`` (0: down now), and seen ``now``, in one round trip. A heartbeat's
    "seen" is only a lower bound of when the app stopped (``exact`` False: it may have died up to a period
    later); a clean stop's is exact."""
    at = time.time() if now is None else now
    ids = [str(pbx_id) for pbx_id in pbx_ids]
    if not ids:
        return
    seen = f"{'gone' if exact else 'beat'}:{at!r}"
    pipe = client.pipeline(transaction=False)
    pipe.zadd(STASIS_APPS_KEY, {pbx_id: at + valid_for_s for pbx_id in ids})
    pipe.hset(STASIS_SEEN_KEY, mapping=dict.fromkeys(ids, seen))
    await pipe.execute()


async def media_worker_gone(client: Any, member: str) -> None:
    """A media worker found unreachable: down now (its heartbeat, if it is alive, puts it back)."""
    await client.zrem(MEDIA_WORKERS_KEY, member)


@dataclass(frozen=True)
class LastSeen:
    """When the app of some PBX rows was last known to listen (epoch seconds); ``exact`` when it said it
    stopped then, not when it merely wrote its last heartbeat then (a ``kill -9`` leaves only that: it
    died within :data:`HEARTBEAT_S` after it)."""

    at: float
    exact: bool


async def stasis_last_seen(client: Any, pbx_ids: Iterable[str]) -> LastSeen | None:
    """The latest :class:`LastSeen` of these PBX rows' app, None if never recorded."""
    ids = [str(pbx_id) for pbx_id in pbx_ids]
    if not ids:
        return None
    latest: LastSeen | None = None
    for raw in await client.hmget(STASIS_SEEN_KEY, ids):
        if raw is None:
            continue
        kind, _, value = (raw.decode() if isinstance(raw, bytes) else str(raw)).partition(":")
        try:
            seen = LastSeen(at=float(value), exact=kind == "gone")
        except ValueError:
            continue
        if latest is None or seen.at > latest.at:
            latest = seen
    return latest
