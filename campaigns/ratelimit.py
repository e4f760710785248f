"""Calls-per-second limits shared by every worker: a sliding-window log in Redis, checked atomically in Lua.

Why a sliding-window log (and not a token bucket)
-------------------------------------------------
The promise is "never more than ``rate`` originates in ANY 1 s window" (a carrier's CPS limit is counted
that way). A token bucket refilled continuously at ``rate``/s with capacity ``burst = rate`` does not keep
it exactly: a full bucket allows ``rate`` acquisitions at t=0 and the refill allows up to ``rate - 1`` more
before t=1 s, so a 1 s window can see almost ``2 × rate``. The log keeps it exactly: each key is a sorted
set of the acquisition times of the last second; an acquisition is granted only while fewer than ``limit``
entries lie in ``(now - 1000 ms, now]``, and the answer otherwise is the time until the oldest entry leaves
the window. Memory is ``limit`` entries per key, which is tiny for CPS values.

``burst`` may lower the limit of a window below ``rate`` (smoother sending) but never raise it: a larger
burst would break the guarantee, so it is refused.

Clock: the time is Redis's own (``TIME`` inside the script) unless a test passes ``now_ms``, so workers on
different hosts with skewed clocks still share one timeline.

Several keys at once (:func:`acquire_all`): an originate must fit both the tenant's and the PBX's CPS. The
script checks every key first and records the acquisition in all of them only if all have room, so a
refusal by one key never burns a slot of another. (With Redis Cluster the keys would need a common hash
tag; this product uses a single Redis.)
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from redis.commands.core import Script

from orchestrator.redis_client import get_redis

__all__ = ["KEY_PREFIX", "WINDOW_MS", "acquire", "acquire_all", "pbx_key", "tenant_key"]

WINDOW_MS = 1000

# KEYS: the limited keys. ARGV[1]: now in ms ("" = use Redis TIME), ARGV[2]: window ms, ARGV[3]: a unique
# member for this acquisition, ARGV[4..]: the limit of each key, in KEYS order.
# Returns 0 when granted (recorded in every key), else the milliseconds until every key has room.
_LUA = """
local now
if ARGV[1] == '' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
else
  now = tonumber(ARGV[1])
end
local window = tonumber(ARGV[2])
local wait = 0
for i, key in ipairs(KEYS) do
  local limit = tonumber(ARGV[3 + i])
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
  local count = redis.call('ZCARD', key)
  if count >= limit then
    -- The (count - limit + 1)-th oldest entry must leave the window before one more fits.
    local entry = redis.call('ZRANGE', key, count - limit, count - limit, 'WITHSCORES')
    local key_wait = tonumber(entry[2]) + window - now
    if key_wait < 1 then key_wait = 1 end
    if key_wait > wait then wait = key_wait end
  end
end
if wait > 0 then
  return wait
end
for i, key in ipairs(KEYS) do
  redis.call('ZADD', key, now, ARGV[3] .. ':' .. now)
  redis.call('PEXPIRE', key, window * 2)
end
return 0
"""

_script: Script | None = None


#: Prefix of every limiter key (tests point it at keys of their own).
KEY_PREFIX = "ratelimit:cps"


def tenant_key(tenant_id: int) -> str:
    return f"{KEY_PREFIX}:tenant:{tenant_id}"


def pbx_key(pbx_id: int) -> str:
    return f"{KEY_PREFIX}:pbx:{pbx_id}"


def _limit(rate_per_s: int, burst: int | None) -> int:
    if rate_per_s < 1:
        raise ValueError(f"rate_per_s must be at least 1, not {rate_per_s}")
    if burst is None:
        return rate_per_s
    if not 1 <= burst <= rate_per_s:
        # A burst above the rate would allow more than rate_per_s in some 1 s window.
        raise ValueError(f"burst must be between 1 and rate_per_s ({rate_per_s}), not {burst}")
    return burst


def acquire_all(limits: Sequence[tuple[str, int]], *, now_ms: int | None = None) -> float:
    """Take one slot in every ``(key, rate_per_s)`` of ``limits`` atomically, or none.

    Returns 0.0 when granted, else the seconds to wait before asking again (> 0). See the module docstring.
    """
    global _script
    if not limits:
        return 0.0
    for _, rate in limits:
        _limit(rate, None)
    if _script is None:
        _script = get_redis().register_script(_LUA)
    keys = [key for key, _ in limits]
    args: list[str | int] = ["" if now_ms is None else now_ms, WINDOW_MS, uuid.uuid4().hex]
    args += [rate for _, rate in limits]
    wait_ms = int(_script(keys=keys, args=args))
    return wait_ms / 1000.0


def acquire(*, key: str, rate_per_s: int, burst: int | None = None, now_ms: int | None = None) -> float:
    """Take one slot of ``key`` (at most ``burst`` (default ``rate_per_s``) per sliding 1 s window).

    Returns 0.0 when the slot was taken, else the seconds until one frees up; nothing is recorded then.
    """
    return acquire_all([(key, _limit(rate_per_s, burst))], now_ms=now_ms)
