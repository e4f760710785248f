"""Which AudioSocket connections become calls, and what the worker tells Redis about itself and its calls:
the one-time media UUID (``media:expect:<uuid>``), the allowed peers, the evidence marks
(``media:seen:<call id>``) and the health heartbeat (``media:workers``). Real TCP, real Redis."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
import uuid
from typing import Any

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from media.config import ConfigError, MediaConfig, peer_allowed
from tests.media.conftest import FakeAsterisk, MakeHarness, MediaHarness, wait_for
from wire.brief import MEDIA_WORKERS_KEY, media_expect_key, media_seen_key


def _reports_for(h: MediaHarness, call_id: str) -> list[dict[str, Any]]:
    return [k for name, k in h.tasks() if name == "media.call_report" and k["call_id"] == call_id]


def _refusals(caplog: pytest.LogCaptureFixture) -> list[str]:
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    return [line for line in warnings if "refused" in line]


def _local_address(peer: FakeAsterisk) -> str:
    host, port = peer.writer.get_extra_info("sockname")[:2]
    return f"{host}:{port}"


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


async def _refused(peer: FakeAsterisk) -> None:
    await asyncio.wait_for(peer.closed.wait(), 3)
    assert peer.frames == [], "a refused connection hears nothing, not even silence"


# ------------------------------------------------------------------------------------------- media UUIDs
async def test_an_expected_uuid_is_accepted_once_and_its_call_is_marked(media: MakeHarness) -> None:
    h = await media()
    call_id = h.write_brief()
    media_uuid = h.expect(call_id)
    h.keys.append(media_seen_key(call_id))
    peer = await h.present(media_uuid)
    await wait_for(lambda: len(peer.voiced()) >= 5, 5, "the greeting")
    assert h.worker.calls[call_id].conn.peer == _local_address(peer)
    assert h.redis.exists(media_expect_key(media_uuid)) == 0, "taken: no other connection can claim it"

    await wait_for(lambda: h.redis.hexists(media_seen_key(call_id), "agent_audio"), 3, "the agent_audio mark")
    seen = {_text(k): float(v) for k, v in h.redis.hgetall(media_seen_key(call_id)).items()}
    assert time.time() - 30 < seen["connected"] <= seen["agent_audio"] <= time.time()
    assert 86000 < h.redis.ttl(media_seen_key(call_id)) <= 86400
    await peer.close()


async def test_a_second_connection_with_a_live_calls_uuid_is_refused_and_the_call_goes_on(
    media: MakeHarness, caplog: pytest.LogCaptureFixture
) -> None:
    h = await media()
    call_id = h.write_brief()
    media_uuid = h.expect(call_id)
    first = await h.present(media_uuid)
    await wait_for(lambda: len(first.voiced()) >= 5, 5, "the greeting")

    caplog.set_level(logging.WARNING, logger="media")
    intruder = await h.present(media_uuid)
    intruder.send_dtmf("9")  # "stop calling me": must never reach the real call's agent
    await _refused(intruder)
    assert _refusals(caplog) == [
        f"audiosocket {_local_address(intruder)}: refused media UUID {media_uuid}: "
        "no call expects it (unknown, expired or already taken)"
    ]

    before = len(first.audio())
    await asyncio.sleep(0.3)
    assert len(first.audio()) - before >= 12, "the real call keeps its 50 frames/s"
    assert not first.closed.is_set() and h.worker.calls[call_id].conn.peer == _local_address(first)
    assert h.standin.connection_count == 1, "no second Realtime session"
    await first.close()
    await wait_for(lambda: bool(_reports_for(h, call_id)), 5, "the call report")
    await asyncio.sleep(0.2)
    (report,) = _reports_for(h, call_id)
    assert report["metrics"]["dtmf"] == 0 and report["end_reason"] == "caller_hung_up"
    assert report["metrics"]["frames_out"] >= before
    assert [name for name, _ in h.tasks()] == ["media.call_report"]


async def test_an_unknown_uuid_is_refused_and_nothing_happens(
    media: MakeHarness, caplog: pytest.LogCaptureFixture
) -> None:
    h = await media()
    caplog.set_level(logging.WARNING, logger="media")
    media_uuid = str(uuid.uuid4())
    peer = await h.present(media_uuid)
    await _refused(peer)
    assert len(_refusals(caplog)) == 1 and media_uuid in _refusals(caplog)[0]
    assert h.worker.refused_uuids == 1 and h.worker.calls == {}
    await asyncio.sleep(0.2)
    assert h.worker.reports == [] and h.tasks() == []
    assert h.standin.connection_count == 0


async def test_the_attempt_id_presented_as_uuid_is_refused(media: MakeHarness) -> None:
    h = await media()
    attempt_id = h.write_brief()  # visible to tenant users in the API
    media_uuid = h.expect(attempt_id)  # the real leg's UUID, which only the Stasis app knows
    intruder = await h.present(attempt_id)
    await _refused(intruder)
    assert h.standin.connection_count == 0 and h.worker.calls == {}

    real = await h.present(media_uuid)  # the expected leg is not disturbed by the refusal
    await wait_for(lambda: len(real.voiced()) >= 5, 5, "the greeting on the real leg")
    await real.close()


async def test_redis_unavailable_when_the_uuid_arrives_refuses_the_connection(
    media: MakeHarness, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    h = await media()
    call_id = h.write_brief()
    media_uuid = h.expect(call_id)

    async def unavailable(name: str) -> bytes | None:
        raise RedisConnectionError("Connection refused")

    assert h.worker._redis is not None
    monkeypatch.setattr(h.worker._redis, "getdel", unavailable)
    caplog.set_level(logging.WARNING, logger="media")
    peer = await h.present(media_uuid)
    await _refused(peer)
    assert "Redis could not say" in _refusals(caplog)[0] and media_uuid in _refusals(caplog)[0]
    assert h.worker.calls == {} and h.standin.connection_count == 0


async def test_a_peer_outside_the_allowed_networks_is_closed_at_once(
    media: MakeHarness, caplog: pytest.LogCaptureFixture
) -> None:
    h = await media(allowed_peers=(ipaddress.ip_network("10.0.0.0/8"),))
    call_id = h.write_brief()
    media_uuid = h.expect(call_id)
    caplog.set_level(logging.WARNING, logger="media")
    peer = await h.present(media_uuid)
    await _refused(peer)
    assert any("MEDIA_ALLOWED_PEERS" in line for line in _refusals(caplog))
    assert h.redis.get(media_expect_key(media_uuid)) == call_id.encode(), "nothing touched"
    assert h.worker.calls == {} and h.standin.connection_count == 0

    allowed = await media(allowed_peers=(ipaddress.ip_network("127.0.0.0/8"),))
    peer = await allowed.call(allowed.write_brief())
    await wait_for(lambda: len(peer.voiced()) >= 5, 5, "the greeting from an allowed peer")
    await peer.close()


def test_allowed_peers_and_the_advertised_address_come_from_the_environment() -> None:
    base = {"REALTIME_URL": "ws://127.0.0.1:1/v1/realtime", "REDIS_URL": "redis://127.0.0.1:6379/0"}
    config = MediaConfig.from_env(base)
    assert config.allowed_peers == () and config.advertise == ""
    config = MediaConfig.from_env(
        {**base, "MEDIA_ALLOWED_PEERS": "10.1.2.3/8, 192.0.2.7", "MEDIA_ADVERTISE": "media-1.internal:9092"}
    )
    assert config.allowed_peers == (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("192.0.2.7/32"))
    assert config.advertise == "media-1.internal:9092"
    with pytest.raises(ConfigError, match="MEDIA_ALLOWED_PEERS"):
        MediaConfig.from_env({**base, "MEDIA_ALLOWED_PEERS": "10.0.0.0/33"})
    with pytest.raises(ConfigError, match="MEDIA_ADVERTISE"):
        MediaConfig.from_env({**base, "MEDIA_ADVERTISE": "no-port"})
    networks = config.allowed_peers
    assert peer_allowed("10.9.9.9", networks) and peer_allowed("::ffff:10.9.9.9", networks)
    assert not peer_allowed("127.0.0.1", networks) and not peer_allowed("", networks)
    assert peer_allowed("203.0.113.5", ())


# -------------------------------------------------------------------------------------------- heartbeat
def _score(h: MediaHarness) -> float | None:
    return h.redis.zscore(MEDIA_WORKERS_KEY, h.worker.advertise)


async def test_the_worker_heartbeats_while_accepting_and_leaves_when_it_stops(media: MakeHarness) -> None:
    h = await media()
    assert h.worker.advertise == f"127.0.0.1:{h.worker.port}"
    await wait_for(lambda: _score(h) is not None, 3, "the first heartbeat")
    first = _score(h)
    assert first is not None and time.time() < first <= time.time() + 3.0
    assert h.redis.zcount(MEDIA_WORKERS_KEY, time.time(), "+inf") >= 1
    await wait_for(lambda: (_score(h) or 0) > first, 3, "a fresh heartbeat")

    peer = await h.call(h.write_brief())
    await wait_for(lambda: len(peer.voiced()) >= 5, 5, "the greeting")
    stopping = asyncio.ensure_future(h.worker.stop(drain_s=1.0))
    await wait_for(lambda: _score(h) is None, 1, "leaving media:workers")
    assert h.worker.calls, "it left while its live call still drains: it no longer accepts calls"
    await asyncio.sleep(1.2)
    assert _score(h) is None, "no heartbeat after stopping"
    await asyncio.wait_for(stopping, 20)


async def test_heartbeat_errors_are_logged_and_retried(
    media: MakeHarness, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    h = await media()
    await wait_for(lambda: _score(h) is not None, 3, "the first heartbeat")
    assert h.worker._redis is not None
    real_zadd = h.worker._redis.zadd
    failures = 0

    async def flaky_zadd(*args: Any, **kwargs: Any) -> Any:
        nonlocal failures
        if failures < 3:
            failures += 1
            raise RedisConnectionError("Connection reset by peer")
        return await real_zadd(*args, **kwargs)

    caplog.set_level(logging.INFO, logger="media")
    monkeypatch.setattr(h.worker._redis, "zadd", flaky_zadd)
    h.redis.zrem(MEDIA_WORKERS_KEY, h.worker.advertise)

    def restored() -> bool:
        # The score is visible in Redis before the worker has the ZADD's reply and logs the recovery.
        logged = any("heartbeat restored" in r.getMessage() for r in caplog.records)
        return failures == 3 and _score(h) is not None and logged

    await wait_for(restored, 8, "the heartbeat back after errors")
    messages = [r.getMessage() for r in caplog.records]
    assert sum("heartbeat failed" in m for m in messages) == 1, "one line per outage"
    assert any("heartbeat restored" in m for m in messages)
    peer = await h.call(h.write_brief())  # the worker still serves calls
    await wait_for(lambda: len(peer.voiced()) >= 5, 5, "the greeting")
    await peer.close()
