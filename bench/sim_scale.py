"""Load benchmark for the PBX simulator (``telephony.sim``): many concurrent calls, some on AudioSocket.

Target: one simulator process holds at least 2,000 concurrent calls, half of them bridged to
AudioSocket at 50 frames/s each way. Run::

    python bench/sim_scale.py --calls 2000 --bridged-fraction 0.5 --hold 30

Three processes take part, so that the simulator's CPU is measured alone:

* this one (the *driver*): writes a plan, starts the simulator (``python -m telephony.sim``), starts the
  generator, waits for both, prints a summary and ONE JSON object on the last line of stdout;
* the simulator, in its own process, on 127.0.0.1;
* the *generator* (this file again with ``--role generator``): the ARI client and the AudioSocket server.
  It originates the calls, bridges the first ``--bridged-fraction`` of them to externalMedia (AudioSocket,
  TCP), sends one audio frame every 20 ms to every connection from a single shared ticker, counts what it
  receives, and samples the simulator's CPU and memory from /proc during the hold window.

Everything binds to 127.0.0.1, every loop is bounded by a count or a deadline, and the whole run stops by
itself (``--budget``, by default ramp + hold + 120 s). See bench/README.md for what each figure means.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import json
import math
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as `python bench/<name>.py`: the root, for `bench.common`
    sys.path.insert(0, str(REPO))

from bench.common import (  # noqa: E402 - after the path set-up
    free_port,
    log,
    machine_cpu,
    percentile,
    proc_cpu_seconds,
    proc_status_kib,
    raise_nofile_limit,
    rounded,
    stop,
)

HOST = "127.0.0.1"
USER = "bench"
PASSWORD = "bench"  # noqa: S105 - throwaway credential of a benchmark simulator on 127.0.0.1
APP = "bench"
FRAME_S = 0.02
FRAMES_PER_S = 50
MAX_CATCH_UP = 5  # frames the ticker sends at once per connection after a stall (as the simulator does)
MAX_WRITE_BUFFER = 1 << 20  # a connection whose peer stops reading gets frames dropped, not unbounded memory
JITTER_BUCKET_MS = 0.1  # resolution of the jitter histogram
JITTER_BUCKETS = 20_001  # 0 .. 2000 ms; worse lands in the last bucket (the exact max is kept apart)
NUMBER_PREFIX = "+1555"
SIM_WITHOUT_UVLOOP = (
    "import sys; sys.modules['uvloop'] = None; from telephony.sim.__main__ import main; sys.exit(main())"
)
SAY_TEXT = "Hello, this is the load test speaking, and it will keep on talking until the call ends."


# ------------------------------------------------------------------------------------------------ /proc


# ------------------------------------------------------------------------------------------- statistics


def hist_percentile(hist: list[int], q: float) -> float | None:
    total = sum(hist)
    if not total:
        return None
    rank = max(1, math.ceil(q / 100.0 * total))
    seen = 0
    for bucket, count in enumerate(hist):
        seen += count
        if seen >= rank:
            return bucket * JITTER_BUCKET_MS
    return (len(hist) - 1) * JITTER_BUCKET_MS


# ============================================================================================ generator


class MediaConn(asyncio.Protocol):
    """One AudioSocket connection from the simulator (we play the external media server)."""

    __slots__ = ("buf", "gen", "idx", "irregular", "last_rx", "lost", "rx", "transport")

    def __init__(self, gen: Generator) -> None:
        self.gen = gen
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.idx = -1  # call index, once the UUID frame arrived
        self.rx = 0  # audio frames received
        self.irregular = 0  # arrivals in the hold window more than 5 ms off the 20 ms beat
        self.last_rx = 0.0
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TCPTransport is not a subclass of asyncio.Transport, so no isinstance check here
        self.transport = cast(asyncio.Transport, transport)
        sock = self.transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.gen.conn_opened(self)

    def data_received(self, data: bytes) -> None:
        now = time.monotonic()
        buf = self.buf
        if buf:
            buf += data
            src: bytes | bytearray = buf
        else:
            src = data
        end = len(src)
        off = 0
        audio = 0
        while end - off >= 3:
            kind = src[off]
            stop = off + 3 + ((src[off + 1] << 8) | src[off + 2])
            if stop > end:
                break
            if 0x10 <= kind <= 0x18:
                audio += 1
            elif kind == 0x01 and stop - off == 19 and self.idx < 0:
                self.gen.conn_identified(self, bytes(src[off + 3 : stop]))
            elif kind != 0x03:  # DTMF is fine; anything else is not what Asterisk sends
                self.gen.protocol_errors += 1
            off = stop
        if src is buf:
            if off:
                del buf[:off]
        elif off < end:
            buf += data[off:]
        if audio:
            self.rx += audio
            gen = self.gen
            if gen.measuring:
                last = self.last_rx
                if last:
                    dev = abs(now - last - FRAME_S) * 1000.0
                    hist = gen.jitter_hist
                    b = int(dev / JITTER_BUCKET_MS)
                    hist[b if b < JITTER_BUCKETS else JITTER_BUCKETS - 1] += 1
                    if dev > gen.jitter_max_ms:
                        gen.jitter_max_ms = dev
                    if dev > 5.0:
                        self.irregular += 1
                    if audio > 1:  # frames that came together: each arrived 0 ms after the previous one
                        hist[int(FRAME_S * 1000.0 / JITTER_BUCKET_MS)] += audio - 1
                        self.irregular += audio - 1
            self.last_rx = now

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.gen.conn_closed(self)


@dataclass
class Phase:
    started: float = 0.0
    ended: float = 0.0

    @property
    def seconds(self) -> float:
        return max(self.ended - self.started, 0.0)


@dataclass
class Snapshot:
    t: float
    sim_cpu: float
    gen_cpu: float
    machine_busy: float
    machine_total: float
    rx: int
    tx: int
    sim_stats: dict[str, Any]
    per_conn_rx: dict[int, int] = field(default_factory=dict)


class Generator:
    def __init__(self, args: argparse.Namespace) -> None:
        from telephony.sim import audio
        from wire import audiosocket

        self.args = args
        self.t_start = time.monotonic()
        self.base = args.sim_url.rstrip("/")
        self.sim_pid: int = args.sim_pid
        self.calls: int = args.calls
        self.n_bridged = min(self.calls, round(self.calls * args.bridged_fraction))
        fmt = audio.FORMATS[args.format]
        pcm = audio.tone(500.0, 20, fmt.rate, amplitude=6000)  # 500 Hz: whole cycles in 20 ms
        self.frame = audiosocket.encode_audio(fmt.kind, audio.encode_for(fmt, pcm)[: fmt.frame_bytes])
        self.frames_k = [b"", *(self.frame * k for k in range(1, MAX_CATCH_UP + 1))]
        # connections and media
        self.conns: set[MediaConn] = set()
        self._conn_tuple: tuple[MediaConn, ...] = ()
        self._conns_dirty = False
        self.conn_by_idx: dict[int, MediaConn] = {}
        self.uuid_to_idx: dict[bytes, int] = {}
        self.accepted = 0
        self.conns_lost_early = 0
        self.protocol_errors = 0
        self.tx_total = 0
        self.tx_dropped = 0
        self.tick_late = 0
        self.tick_skipped = 0
        self.measuring = False
        self.jitter_hist = [0] * JITTER_BUCKETS
        self.jitter_max_ms = 0.0
        # calls
        self.up: dict[int, float] = {}  # call index -> StasisStart time
        self.ended_early: dict[int, str] = {}
        self.bridged_ok = 0
        self.media_started: dict[str, asyncio.Future[None]] = {}
        self.media_identified: dict[int, asyncio.Future[None]] = {}
        self.hanging_up = False
        self.events = 0
        self.event_types: dict[str, int] = {}
        self.latencies: dict[str, list[float]] = {}
        self.errors: dict[str, int] = {}
        self.error_samples: list[str] = []
        self.originate_started = 0.0
        self.originated = 0
        self.concurrent_peak = 0
        self.all_up = asyncio.Event()
        self.tasks: set[asyncio.Task[None]] = set()

    # -------------------------------------------------------------------------------- helpers
    def log(self, message: str) -> None:
        log("gen", self.t_start, message)

    def error(self, key: str, detail: str = "") -> None:
        self.errors[key] = self.errors.get(key, 0) + 1
        if detail and len(self.error_samples) < 20:
            self.error_samples.append(f"{key}: {detail}"[:300])

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    @staticmethod
    def call_id(i: int) -> str:
        return f"bench-c-{i:05d}"

    @staticmethod
    def media_id(i: int) -> str:
        return f"bench-m-{i:05d}"

    @staticmethod
    def bridge_id(i: int) -> str:
        return f"bench-b-{i:05d}"

    def live_calls(self) -> int:
        return len(self.up) - len(self.ended_early)

    def check_all_up(self) -> None:
        if (
            len(self.up) >= self.calls
            and self.bridged_ok >= self.n_bridged
            and len(self.conn_by_idx) >= self.n_bridged
        ):
            self.all_up.set()

    # ------------------------------------------------------------------------------ AudioSocket
    def conn_opened(self, conn: MediaConn) -> None:
        self.accepted += 1
        self.conns.add(conn)
        self._conns_dirty = True

    def conn_identified(self, conn: MediaConn, raw_uuid: bytes) -> None:
        idx = self.uuid_to_idx.get(raw_uuid)
        if idx is None:
            self.protocol_errors += 1
            return
        conn.idx = idx
        self.conn_by_idx[idx] = conn
        fut = self.media_identified.get(idx)
        if fut is not None and not fut.done():
            fut.set_result(None)
        self.check_all_up()

    def conn_closed(self, conn: MediaConn) -> None:
        self.conns.discard(conn)
        self._conns_dirty = True
        if not self.hanging_up:
            self.conns_lost_early += 1

    def start_ticker(self) -> None:
        loop = asyncio.get_running_loop()
        self._tick_origin = loop.time()
        self._ticks_done = 0
        self._tick_handle = loop.call_at(self._tick_origin + FRAME_S, self._tick)

    def stop_ticker(self) -> None:
        self._tick_handle.cancel()

    def _tick(self) -> None:
        """The one shared 20 ms clock: one frame to every connection (a few more after a stall)."""
        loop = asyncio.get_running_loop()
        due = int((loop.time() - self._tick_origin) / FRAME_S)
        k = due - self._ticks_done
        if k > 1:
            self.tick_late += 1
        if k > MAX_CATCH_UP:
            self.tick_skipped += k - MAX_CATCH_UP
            k = MAX_CATCH_UP
        if k > 0:
            if self._conns_dirty:
                self._conn_tuple = tuple(self.conns)
                self._conns_dirty = False
            payload = self.frames_k[k]
            sent = 0
            for conn in self._conn_tuple:
                t = conn.transport
                if t is None or conn.lost:
                    continue
                if t.get_write_buffer_size() > MAX_WRITE_BUFFER:
                    self.tx_dropped += k
                    continue
                t.write(payload)
                sent += k
            self.tx_total += sent
        self._ticks_done = max(due, self._ticks_done)
        self._tick_handle = loop.call_at(self._tick_origin + (self._ticks_done + 1) * FRAME_S, self._tick)

    # ----------------------------------------------------------------------------------- HTTP
    async def request(
        self,
        kind: str,
        method: str,
        path: str,
        params: dict[str, str] | None = None,
        ok: tuple[int, ...] = (200, 204),
    ) -> tuple[int, Any]:
        import aiohttp

        t0 = time.perf_counter()
        try:
            async with self.session.request(method, self.base + path, params=params) as resp:
                body = await resp.read()
                status = resp.status
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            self.error(f"{kind}_exception", repr(exc))
            return 0, None
        self.latencies.setdefault(kind, []).append((time.perf_counter() - t0) * 1000.0)
        if status not in ok:
            self.error(f"{kind}_http_{status}", body.decode(errors="replace"))
        return status, body

    async def get_json(self, path: str) -> Any:
        kind = "sim_" + path.split("?")[0].rsplit("/", 1)[-1]  # sim_stats, sim_calls
        status, body = await self.request(kind, "GET", path, ok=(200,))
        return json.loads(body) if status == 200 and body else None

    # --------------------------------------------------------------------------------- events
    async def read_events(self, ws: Any) -> None:
        import aiohttp

        async for msg in ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                break
            text: str = msg.data
            self.events += 1
            if text.startswith('{"type": "'):
                etype = text[10 : text.index('"', 10)]
            else:
                etype = json.loads(text).get("type", "?")
            self.event_types[etype] = self.event_types.get(etype, 0) + 1
            if etype not in ("StasisStart", "StasisEnd", "ChannelDestroyed"):
                continue
            event = json.loads(text)
            cid: str = (event.get("channel") or {}).get("id", "")
            if cid.startswith("bench-m-"):
                if etype == "StasisStart":
                    fut = self.media_started.get(cid)
                    if fut is not None and not fut.done():
                        fut.set_result(None)
                continue
            if not cid.startswith("bench-c-") or ";" in cid:
                continue
            idx = int(cid[8:])
            if etype == "StasisStart":
                if idx not in self.up:
                    self.up[idx] = time.monotonic()
                    self.concurrent_peak = max(self.concurrent_peak, self.live_calls())
                    if idx < self.n_bridged:
                        self.spawn(self.bridge_call(idx))
                    self.check_all_up()
            elif not self.hanging_up and idx not in self.ended_early:
                cause = event.get("cause_txt") or event.get("cause") or ""
                self.ended_early[idx] = f"{etype} {cause}".strip()

    # ---------------------------------------------------------------------------------- calls
    async def originate(self, i: int) -> None:
        params = {
            "endpoint": f"{self.args.tech}/{NUMBER_PREFIX}{i:07d}@sim",
            "app": APP,
            "appArgs": f"bench,{i}",
            "channelId": self.call_id(i),
            "timeout": "30",
            "callerId": '"Bench" <+15550000000>',
        }
        await self.request("originate", "POST", "/ari/channels", params, ok=(200,))

    async def bridge_call(self, i: int) -> None:
        cid, mid, bid = self.call_id(i), self.media_id(i), self.bridge_id(i)
        media_uuid = uuid.uuid4()
        self.uuid_to_idx[media_uuid.bytes] = i
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        self.media_started[mid] = fut
        identified: asyncio.Future[None] = loop.create_future()
        self.media_identified[i] = identified
        async with self.bridge_slots:
            status, _ = await self.request(
                "bridge", "POST", "/ari/bridges", {"type": "mixing", "bridgeId": bid}, ok=(200,)
            )
            if status != 200:
                return
            status, _ = await self.request(
                "external_media",
                "POST",
                "/ari/channels/externalMedia",
                {
                    "app": APP,
                    "external_host": self.media_address,
                    "encapsulation": "audiosocket",
                    "transport": "tcp",
                    "format": self.args.format,
                    "data": str(media_uuid),
                    "channelId": mid,
                },
                ok=(200,),
            )
            if status != 200:
                return
            try:
                await asyncio.wait_for(fut, 15.0)
            except TimeoutError:
                self.error("media_stasis_start_timeout", mid)
                return
            status, _ = await self.request(
                "add_channel",
                "POST",
                f"/ari/bridges/{bid}/addChannel",
                {"channel": f"{cid},{mid}"},
                ok=(204,),
            )
            if status == 204:
                self.bridged_ok += 1
                self.check_all_up()
        try:  # the simulator connected during externalMedia; its UUID frame must have come by now
            await asyncio.wait_for(identified, 5.0)
        except TimeoutError:
            self.error("audiosocket_uuid_timeout", f"no AudioSocket connection sent the UUID of {mid}")

    async def ramp(self) -> None:
        """Originate call i at start + i / cps (fewer when --max-inflight requests are outstanding)."""
        cps: float = self.args.ramp_cps
        inflight = asyncio.Semaphore(self.args.max_inflight)
        loop = asyncio.get_running_loop()
        start = loop.time()
        self.originate_started = time.monotonic()

        async def one(i: int) -> None:
            try:
                await self.originate(i)
            finally:
                inflight.release()

        for i in range(self.calls):
            delay = start + i / cps - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            await inflight.acquire()
            self.originated += 1
            self.spawn(one(i))

    async def hangup_all(self) -> float:
        """DELETE every call channel (and the media channel and bridge of the bridged ones), bounded."""
        self.hanging_up = True
        t0 = time.monotonic()
        queue: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
        for i in range(self.calls):
            queue.put_nowait(("hangup", f"/ari/channels/{self.call_id(i)}"))
        for i in range(self.n_bridged):
            queue.put_nowait(("hangup_media", f"/ari/channels/{self.media_id(i)}"))
            queue.put_nowait(("hangup_bridge", f"/ari/bridges/{self.bridge_id(i)}"))

        async def worker() -> None:
            while not queue.empty():
                kind, path = queue.get_nowait()
                await self.request(kind, "DELETE", path, ok=(204,))

        await asyncio.gather(*(worker() for _ in range(self.args.hangup_concurrency)))
        return time.monotonic() - t0

    # -------------------------------------------------------------------------------- measure
    async def snapshot(self, with_conns: bool) -> Snapshot:
        stats = await self.get_json("/sim/stats") or {}
        busy, total = machine_cpu()
        snap = Snapshot(
            t=time.monotonic(),
            sim_cpu=proc_cpu_seconds(self.sim_pid),
            gen_cpu=time.process_time(),
            machine_busy=busy,
            machine_total=total,
            rx=sum(c.rx for c in self.conns),
            tx=self.tx_total,
            sim_stats=stats,
        )
        if with_conns:
            snap.per_conn_rx = {c.idx: c.rx for c in self.conns if c.idx >= 0}
        return snap

    async def sim_heard_frames(self) -> tuple[float, int | None]:
        """Audio frames the simulated callees have heard so far (what the simulator received), and when."""
        t0 = time.monotonic()
        doc = await self.get_json("/sim/calls?state=live")
        t1 = time.monotonic()
        if not isinstance(doc, dict):
            return (t0 + t1) / 2, None
        calls = doc.get("calls") or []
        return (t0 + t1) / 2, sum(int((c.get("heard") or {}).get("frames", 0)) for c in calls)

    # ------------------------------------------------------------------------------------ run
    async def run(self) -> dict[str, Any]:
        import aiohttp

        loop = asyncio.get_running_loop()
        self.bridge_slots = asyncio.Semaphore(self.args.max_inflight)
        server = await loop.create_server(lambda: MediaConn(self), HOST, 0, backlog=4096)
        port = server.sockets[0].getsockname()[1]
        self.media_address = f"{HOST}:{port}"
        connector = aiohttp.TCPConnector(limit=self.args.http_connections, force_close=False)
        timeout = aiohttp.ClientTimeout(total=30)
        auth = {"Authorization": aiohttp.encode_basic_auth(USER, PASSWORD)}
        self.session = aiohttp.ClientSession(connector=connector, timeout=timeout, headers=auth)
        result: dict[str, Any] = {}
        ws: Any = None
        try:
            ws = await self.session.ws_connect(
                f"{self.base}/ari/events", params={"app": APP}, heartbeat=None, max_msg_size=0, autoping=True
            )
            reader = loop.create_task(self.read_events(ws))
            self.start_ticker()
            result = await self.measure(reader)
        finally:
            with contextlib.suppress(Exception):
                self.stop_ticker()
            if ws is not None:
                await ws.close()
            for task in list(self.tasks):
                task.cancel()
            await asyncio.gather(*self.tasks, return_exceptions=True)
            await self.session.close()
            for conn in list(self.conns):
                if conn.transport is not None:
                    conn.transport.abort()
            server.close()
        return result

    async def measure(self, reader: asyncio.Task[None]) -> dict[str, Any]:
        args = self.args
        events_before = (await self.get_json("/sim/stats") or {}).get("events_sent", 0)
        sim_cpu_0 = proc_cpu_seconds(self.sim_pid)
        setup = Phase(started=time.monotonic())
        ramp_s = self.calls / args.ramp_cps
        self.log(
            f"ramp: {self.calls} calls at {args.ramp_cps:g}/s, {self.n_bridged} bridged to AudioSocket "
            f"({args.format}) at {self.media_address}"
        )
        ramp_task = asyncio.get_running_loop().create_task(self.ramp())
        setup_deadline = time.monotonic() + ramp_s + args.setup_grace
        progress: tuple[int, int, int] = (-1, -1, -1)
        stalled_since = time.monotonic()
        while not self.all_up.is_set() and time.monotonic() < setup_deadline and not reader.done():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.all_up.wait(), 2.0)
            now_progress = (len(self.up), self.bridged_ok, len(self.conn_by_idx))
            if now_progress != progress or not ramp_task.done() or self.tasks:
                progress, stalled_since = now_progress, time.monotonic()
            elif time.monotonic() - stalled_since > 5.0:
                self.log("setup: no progress for 5 s and nothing outstanding; giving up waiting")
                break
            self.log(
                f"setup: originated {self.originated}/{self.calls}, up {len(self.up)}, "
                f"bridged {self.bridged_ok}/{self.n_bridged}, audiosocket {len(self.conn_by_idx)}, "
                f"ended early {len(self.ended_early)}, errors {sum(self.errors.values())}"
            )
        if not ramp_task.done():
            ramp_task.cancel()
        await asyncio.gather(ramp_task, return_exceptions=True)
        setup.ended = time.monotonic()
        events_setup = self.events
        all_up = self.all_up.is_set()
        sim_cpu_setup = proc_cpu_seconds(self.sim_pid) - sim_cpu_0
        self.log(
            ("all calls up" if all_up else "setup over, NOT all calls up")
            + f" after {setup.seconds:.1f}s; settling {args.settle:g}s"
        )

        heard_t0, heard_0 = await self.sim_heard_frames()
        await asyncio.sleep(args.settle)
        ended_before_hold = len(self.ended_early) + self.conns_lost_early
        for conn in self.conns:
            conn.last_rx = 0.0
        self.measuring = True
        s0 = await self.snapshot(with_conns=True)
        rss_samples: list[int] = []
        hold = Phase(started=s0.t)
        self.log(
            f"hold: {args.hold:g}s with {self.live_calls()} calls up, "
            f"{len(self.conns)} AudioSocket connections"
        )
        end_at = s0.t + args.hold
        while True:
            remaining = end_at - time.monotonic()
            if remaining <= 0:
                break
            await asyncio.sleep(min(1.0, remaining))
            with contextlib.suppress(OSError):
                rss_samples.append(proc_status_kib(self.sim_pid, "VmRSS"))
        s1 = await self.snapshot(with_conns=True)
        self.measuring = False
        hold.ended = s1.t
        heard_t1, heard_1 = await self.sim_heard_frames()
        ended_in_hold = len(self.ended_early) + self.conns_lost_early - ended_before_hold
        sim_hwm_kib = proc_status_kib(self.sim_pid, "VmHWM")
        self.log(f"hold done; hanging up ({args.hangup_concurrency} requests at a time)")

        hangup_s = await self.hangup_all()
        if self.tasks:
            await asyncio.wait(list(self.tasks), timeout=10.0)
        await asyncio.sleep(0.5)  # let the last ChannelDestroyed events arrive
        run_end = time.monotonic()
        final_stats = await self.get_json("/sim/stats") or {}
        events_after = final_stats.get("events_sent", 0)
        self.log(f"hung up in {hangup_s:.1f}s")

        # ------------------------------------------------------------------------- figures
        wall = hold.seconds or 1e-9
        st0, st1 = s0.sim_stats.get("media", {}), s1.sim_stats.get("media", {})
        rx_rate = (s1.rx - s0.rx) / wall
        tx_rate = (s1.tx - s0.tx) / wall
        sim_rx_rate = None
        if heard_0 is not None and heard_1 is not None and heard_t1 > heard_t0:
            sim_rx_rate = (heard_1 - heard_0) / (heard_t1 - heard_t0)
        per_conn = sorted(s1.per_conn_rx.get(i, 0) - s0.per_conn_rx.get(i, 0) for i in range(self.n_bridged))
        expected = self.n_bridged * FRAMES_PER_S
        irregular = sum(c.irregular for c in self.conn_by_idx.values())
        orig = sorted(self.latencies.get("originate", []))
        n_errors = (
            sum(self.errors.values()) + self.protocol_errors + len(self.ended_early) + self.conns_lost_early
        )
        calls_not_up = self.calls - len(self.up)
        from_media = sim_rx_rate if sim_rx_rate is not None else 0.0
        held = (
            all_up
            and calls_not_up == 0
            and ended_in_hold == 0
            and not self.ended_early
            and rx_rate >= 0.95 * expected
            and from_media >= 0.95 * expected
        )
        run_s = run_end - self.originate_started
        other_latency: dict[str, float | None] = {}
        for kind, values in sorted(self.latencies.items()):
            if kind != "originate":
                values.sort()
                other_latency[f"{kind}_ms_p50"] = rounded(percentile(values, 50))
                other_latency[f"{kind}_ms_p99"] = rounded(percentile(values, 99))
        return {
            "benchmark": "sim_scale",
            "calls": self.calls,
            "bridged": self.n_bridged,
            "concurrent_peak": self.concurrent_peak,
            "hold_s": round(wall, 2),
            "sim_cpu_cores": round((s1.sim_cpu - s0.sim_cpu) / wall, 3),
            "sim_rss_mib": round((rss_samples[-1] if rss_samples else 0) / 1024, 1),
            "sim_rss_peak_mib": round(sim_hwm_kib / 1024, 1),
            "frames_per_s_to_media": round(rx_rate, 1),
            "frames_per_s_from_media": rounded(sim_rx_rate, 1),
            "expected_frames_per_s_each_way": expected,
            "frames_per_s_sent_by_generator": round(tx_rate, 1),
            "frames_per_s_sent_by_sim": round(
                (st1.get("frames_sent", 0) - st0.get("frames_sent", 0)) / wall, 1
            ),
            "rx_frames_per_conn_min": per_conn[0] if per_conn else None,
            "rx_frames_per_conn_p50": percentile(per_conn, 50),
            "rx_jitter_ms_p50": rounded(hist_percentile(self.jitter_hist, 50)),
            "rx_jitter_ms_p99": rounded(hist_percentile(self.jitter_hist, 99)),
            "rx_jitter_ms_max": round(self.jitter_max_ms, 2),
            "rx_irregular_arrivals_pct": round(100.0 * irregular / max(s1.rx - s0.rx, 1), 3),
            "rx_irregular_conns": sum(1 for c in self.conn_by_idx.values() if c.irregular),
            "sim_media_ticks_per_s": round((st1.get("ticks", 0) - st0.get("ticks", 0)) / wall, 1),
            "sim_media_late_ticks_in_hold": st1.get("late_ticks", 0) - st0.get("late_ticks", 0),
            "sim_media_late_ticks_total": st1.get("late_ticks", 0),
            "sim_media_max_lag_ms": st1.get("max_lag_ms"),
            "originate_ms_p50": rounded(percentile(orig, 50)),
            "originate_ms_p99": rounded(percentile(orig, 99)),
            **other_latency,
            "events_per_s": round(self.events / run_s, 1) if run_s > 0 else None,
            "events_received": self.events,
            "events_per_s_setup": round(events_setup / setup.seconds, 1) if setup.seconds > 0 else None,
            "events_sent_by_sim": events_after - events_before,
            "setup_s": round(setup.seconds, 2),
            "sim_cpu_cores_setup": round(sim_cpu_setup / (setup.seconds or 1e-9), 3),
            "hangup_s": round(hangup_s, 2),
            "sim_after_hangup": {
                k: final_stats.get(k) for k in ("live_calls", "channels", "bridges", "audiosocket_legs")
            },
            "gen_cpu_cores": round((s1.gen_cpu - s0.gen_cpu) / wall, 3),
            "machine_cpu_busy_cores": round((s1.machine_busy - s0.machine_busy) / wall, 3),
            "machine_cores": os.cpu_count(),
            "gen_tick_late": self.tick_late,
            "gen_frames_dropped": self.tx_dropped,
            "errors": n_errors,
            "error_detail": {
                **self.errors,
                "calls_not_up": calls_not_up,
                "calls_ended_early": len(self.ended_early),
                "calls_ended_in_hold": ended_in_hold,
                "audiosocket_lost_early": self.conns_lost_early,
                "audiosocket_protocol_errors": self.protocol_errors,
                "sim_ended_calls_at_hold_end": s1.sim_stats.get("ended_calls"),
            },
            "error_samples": self.error_samples[:5],
            "ended_early_samples": sorted(set(self.ended_early.values()))[:5],
            "ramp_cps": self.args.ramp_cps,
            "format": self.args.format,
            "tech": self.args.tech,
            "sim_loop": self.args.sim_loop,
            "held": held,
        }


def run_generator(args: argparse.Namespace) -> int:
    sys.path.insert(0, str(REPO))
    raise_nofile_limit()

    async def main() -> dict[str, Any]:
        gen = Generator(args)
        try:
            async with asyncio.timeout(args.budget):
                return await gen.run()
        except TimeoutError:
            return {
                "benchmark": "sim_scale",
                "error": f"generator budget of {args.budget:g}s exceeded",
                "held": False,
                "errors": sum(gen.errors.values()) + 1,
            }

    runner: Callable[[Coroutine[Any, Any, dict[str, Any]]], dict[str, Any]]
    try:
        import uvloop
    except ImportError:
        runner = asyncio.run
    else:
        runner = uvloop.run
    result = runner(main())
    print(json.dumps(result), flush=True)
    return 0


# =============================================================================================== driver


def write_plan(path: Path, answer_after: float) -> None:
    behaviour = {
        "behaviour": "answer",
        "after": answer_after,
        "say": [{"at": 0.2, "text": SAY_TEXT, "repeat": True}],
    }
    path.write_text(json.dumps({"default": behaviour, "prefixes": {NUMBER_PREFIX: behaviour}}, indent=2))


def wait_ready(port: int, proc: subprocess.Popen[bytes], timeout: float) -> None:
    import base64

    auth = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the simulator exited with {proc.returncode} before answering")
        conn = http.client.HTTPConnection(HOST, port, timeout=1.0)
        try:
            conn.request("GET", "/ari/asterisk/info", headers={"Authorization": auth})
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        finally:
            conn.close()
        time.sleep(0.1)
    raise RuntimeError(f"the simulator did not answer /ari/asterisk/info within {timeout:g}s")


def summary(r: dict[str, Any]) -> str:
    def g(key: str) -> Any:
        return r.get(key, "n/a")

    lines = [
        "",
        "=== sim_scale: PBX simulator under load ===",
        f"calls {g('calls')} ({g('bridged')} bridged to AudioSocket, {g('format')}, {g('tech')}, "
        f"simulator on {g('sim_loop')}); "
        f"peak concurrent {g('concurrent_peak')}; set up in {g('setup_s')} s at {g('ramp_cps')}/s",
        f"hold {g('hold_s')} s: simulator CPU {g('sim_cpu_cores')} cores, RSS {g('sim_rss_mib')} MiB "
        f"(peak {g('sim_rss_peak_mib')}); generator CPU {g('gen_cpu_cores')} cores; "
        f"machine busy {g('machine_cpu_busy_cores')}/{g('machine_cores')} cores",
        f"frames/s sim -> media {g('frames_per_s_to_media')} "
        f"(sim says it sent {g('frames_per_s_sent_by_sim')}), "
        f"media -> sim {g('frames_per_s_from_media')} "
        f"(generator sent {g('frames_per_s_sent_by_generator')}); "
        f"expected {g('expected_frames_per_s_each_way')} each way",
        f"per connection in the hold: min {g('rx_frames_per_conn_min')} frames, median "
        f"{g('rx_frames_per_conn_p50')} (expected {round(FRAMES_PER_S * float(r.get('hold_s') or 0))})",
        f"rx jitter |gap - 20 ms|: p50 {g('rx_jitter_ms_p50')} ms, p99 {g('rx_jitter_ms_p99')} ms, "
        f"max {g('rx_jitter_ms_max')} ms; {g('rx_irregular_arrivals_pct')}% of frames >5 ms off the beat, "
        f"on {g('rx_irregular_conns')} connections",
        f"sim media clock: {g('sim_media_ticks_per_s')} ticks/s, "
        f"{g('sim_media_late_ticks_in_hold')} late ticks in the hold "
        f"({g('sim_media_late_ticks_total')} in all), max lag {g('sim_media_max_lag_ms')} ms",
        f"originate latency p50 {g('originate_ms_p50')} ms, p99 {g('originate_ms_p99')} ms; "
        f"externalMedia p50 {g('external_media_ms_p50')} ms, p99 {g('external_media_ms_p99')} ms",
        f"ARI events {g('events_received')} ({g('events_per_s')}/s over the run, "
        f"{g('events_per_s_setup')}/s while setting up); "
        f"hang-up took {g('hangup_s')} s, then the simulator had {json.dumps(r.get('sim_after_hangup'))}",
        f"errors {g('errors')}: {json.dumps(r.get('error_detail', {}))}",
    ]
    for key in ("error_samples", "ended_early_samples"):
        if r.get(key):
            lines.append(f"{key}: {json.dumps(r[key])}")
    if r.get("error"):
        lines.append(f"ERROR: {r['error']}")
    lines.append(f"held: {g('held')}")
    return "\n".join(lines)


def run_driver(args: argparse.Namespace) -> int:
    t_start = time.monotonic()
    raise_nofile_limit()
    ramp_s = args.calls / args.ramp_cps
    budget = args.budget or ramp_s + args.settle + args.hold + 120.0
    port = args.port or free_port()
    result: dict[str, Any] = {"benchmark": "sim_scale", "calls": args.calls, "held": False}
    with tempfile.TemporaryDirectory(prefix="sim_scale-") as tmp:
        plan = Path(tmp) / "plan.json"
        write_plan(plan, args.answer_after)
        sim_log_path = Path(tmp) / "sim.log"
        sim_args = [
            "--host",
            HOST,
            "--port",
            str(port),
            "--ari-user",
            USER,
            "--ari-password",
            PASSWORD,
            "--plan",
            str(plan),
            "--ws-write-timeout",
            "0",
            "--log-level",
            "WARNING",
        ]
        if args.sim_loop == "uvloop":  # exactly how the simulator is run for real: it picks uvloop itself
            sim_cmd = [sys.executable, "-m", "telephony.sim", *sim_args]
        else:  # the same entry point with uvloop hidden, so it falls back to asyncio's own loop
            sim_cmd = [sys.executable, "-c", SIM_WITHOUT_UVLOOP, *sim_args]
        log("driver", t_start, "simulator: " + " ".join(sim_cmd))
        with sim_log_path.open("wb") as sim_log:
            # the simulator inherits the raised open-files limit from this process
            sim = subprocess.Popen(sim_cmd, cwd=REPO, stdout=sim_log, stderr=subprocess.STDOUT)
            gen: subprocess.Popen[bytes] | None = None
            try:
                wait_ready(port, sim, 20.0)
                log(
                    "driver", t_start, f"simulator pid {sim.pid} ready on {HOST}:{port}; budget {budget:.0f}s"
                )
                gen_cmd = [
                    sys.executable,
                    str(Path(__file__).resolve()),
                    "--role",
                    "generator",
                    "--sim-url",
                    f"http://{HOST}:{port}",
                    "--sim-pid",
                    str(sim.pid),
                    "--calls",
                    str(args.calls),
                    "--bridged-fraction",
                    str(args.bridged_fraction),
                    "--hold",
                    str(args.hold),
                    "--ramp-cps",
                    str(args.ramp_cps),
                    "--format",
                    args.format,
                    "--tech",
                    args.tech,
                    "--sim-loop",
                    args.sim_loop,
                    "--settle",
                    str(args.settle),
                    "--setup-grace",
                    str(args.setup_grace),
                    "--max-inflight",
                    str(args.max_inflight),
                    "--http-connections",
                    str(args.http_connections),
                    "--hangup-concurrency",
                    str(args.hangup_concurrency),
                    "--budget",
                    str(budget),
                ]
                gen = subprocess.Popen(gen_cmd, cwd=REPO, stdout=subprocess.PIPE)
                try:
                    out, _ = gen.communicate(timeout=budget + 15)
                except subprocess.TimeoutExpired:
                    gen.kill()
                    out, _ = gen.communicate(timeout=10)
                    result["error"] = "generator killed at the global deadline"
                lines = out.decode(errors="replace").strip().splitlines()
                if lines:
                    try:
                        result = json.loads(lines[-1])
                    except ValueError:
                        result["error"] = "generator printed no JSON: " + lines[-1][:200]
                elif "error" not in result:
                    result["error"] = f"generator exited with {gen.returncode} and no output"
            except RuntimeError as exc:
                result["error"] = str(exc)
            finally:
                if gen is not None and gen.poll() is None:
                    gen.kill()
                    gen.wait(5)
                code = stop(sim, 15.0)
                log("driver", t_start, f"simulator stopped (exit code {code})")
        sim_output = sim_log_path.read_text(errors="replace").strip().splitlines()
    if sim_output:
        print(f"simulator log ({len(sim_output)} lines), last ones:", file=sys.stderr)
        for line in sim_output[-10:]:
            print("  " + line[:300], file=sys.stderr)
        result["sim_log_lines"] = len(sim_output)
    print(summary(result))
    print(json.dumps(result), flush=True)
    return 0 if result.get("held") else 1


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python bench/sim_scale.py",
        description="Load benchmark for the PBX simulator: N concurrent calls, a fraction of them bridged to "
        "AudioSocket at 50 frames/s each way. Prints a summary and, on the last line, one JSON "
        "object with the figures (see bench/README.md). Exit code 0 when the load was held.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--calls", type=int, default=2000, help="concurrent calls to set up and hold")
    p.add_argument(
        "--bridged-fraction",
        type=float,
        default=0.5,
        help="fraction of the calls (the first ones) bridged to an AudioSocket externalMedia leg",
    )
    p.add_argument("--hold", type=float, default=30.0, help="seconds to hold all calls up while measuring")
    p.add_argument("--ramp-cps", type=float, default=200.0, help="originate rate, calls per second")
    p.add_argument(
        "--port", type=int, default=0, help="simulator HTTP port on 127.0.0.1 (0: pick a free one)"
    )
    p.add_argument(
        "--format",
        default="slin24",
        choices=["slin", "slin12", "slin16", "slin24", "slin32", "slin48", "ulaw", "alaw"],
        help="externalMedia format (frame size follows: slin24 is 960 bytes per 20 ms)",
    )
    p.add_argument(
        "--tech",
        default="Local",
        choices=["Local", "PJSIP"],
        help="endpoint technology of the originate: Local/<n>@sim (two channels) or PJSIP/<n>@sim",
    )
    p.add_argument(
        "--sim-loop",
        default="uvloop",
        choices=["uvloop", "asyncio"],
        help="event loop of the simulator: uvloop is what `python -m telephony.sim` picks when "
        "installed; asyncio hides uvloop from it (the loop the simulator's tests run on)",
    )
    p.add_argument(
        "--answer-after", type=float, default=0.5, help="seconds the callees ring before answering"
    )
    p.add_argument(
        "--settle",
        type=float,
        default=2.0,
        help="seconds to wait after the last call is up before the hold window starts",
    )
    p.add_argument(
        "--setup-grace",
        type=float,
        default=60.0,
        help="seconds beyond the ramp time allowed for every call to be up",
    )
    p.add_argument(
        "--max-inflight", type=int, default=256, help="outstanding originates (and bridge set-ups)"
    )
    p.add_argument("--http-connections", type=int, default=64, help="HTTP keep-alive connections to ARI")
    p.add_argument("--hangup-concurrency", type=int, default=32, help="concurrent DELETEs when hanging up")
    p.add_argument(
        "--budget", type=float, default=0.0, help="global deadline in seconds (0: ramp + settle + hold + 120)"
    )
    p.add_argument("--role", default="driver", choices=["driver", "generator"], help=argparse.SUPPRESS)
    p.add_argument("--sim-url", default="", help=argparse.SUPPRESS)
    p.add_argument("--sim-pid", type=int, default=0, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.calls < 1 or not 0.0 <= args.bridged_fraction <= 1.0 or args.ramp_cps <= 0 or args.hold <= 0:
        p.error("need --calls >= 1, 0 <= --bridged-fraction <= 1, --ramp-cps > 0 and --hold > 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.role == "generator":
        return run_generator(args)
    return run_driver(args)


if __name__ == "__main__":
    sys.exit(main())
