"""Load benchmark for the media worker (``python -m media``): N concurrent synthetic calls on one core.

Targets: media-worker CPU ≤ 4 ms per call-second (≥ 250 calls per core) with p99 added latency
≤ 5 ms each way and pacing jitter p99 ≤ 2 ms, RSS ≤ 1 MiB per call, barge-in flush ≤ 20 ms. Run::

    python bench/media.py                          # steps of 50, 100, 200, 300 calls (a few minutes)
    python bench/media.py --calls 20 --hold 10     # a quick look (under a minute)

Three processes per step, started fresh for every step of ``--calls``:

* the Realtime stand-in (``python -m media.localai --mode test``): tone replies of ``--reply-ms``, energy VAD;
* the media worker (``python -m media``) on its own CPU (``sched_setaffinity``), with ``MEDIA_STATS_FILE`` so
  it writes its latency histograms (media/probe.py) when it stops;
* the load generator (this file with ``--role generator``, uvloop, an ``asyncio.Protocol``): writes one call
  brief per call to Redis, opens the AudioSocket connections, sends the UUID and then one slin24 frame per
  call every 20 ms from one shared ticker, the calls spread over 10 phases (low-level noise with a loud
  600 ms "speech burst" every ``--burst-every`` seconds per call, staggered), reads every frame the worker
  sends and measures pacing jitter, frame rates, barge-ins and the worker's CPU and memory from /proc during
  the hold window.

The stand-in and the generator share the other CPU(s). This process (the *driver*) starts them, stops them on
every exit path, reads the worker's stats file and its call reports (Celery messages left in the bench's
Redis db) and prints a summary and ONE JSON object on the last line of stdout. Exit code 0 when every target
is met. See bench/README.md for every figure.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import math
import os
import random
import socket
import struct
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as `python bench/<name>.py`: the root, for `bench.common`
    sys.path.insert(0, str(REPO))

from bench.common import (  # noqa: E402 - after the path set-up
    cpu_times,
    free_port,
    log,
    percentile,
    proc_cpu_seconds,
    proc_status_kib,
    raise_nofile_limit,
    rounded,
    stop,
)

BENCH_DIR = Path(__file__).resolve().parent
# This file is called media.py: keep its own folder off the import path so that `media` is the worker package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != BENCH_DIR]
sys.path.insert(0, str(REPO))

HOST = "127.0.0.1"
FRAME_S = 0.02
FRAMES_PER_S = 50
SLIN24_KIND = 0x13
FRAME_BYTES = 960  # 20 ms of 24 kHz 16-bit mono
FRAME_MS = FRAME_S * 1000.0
HANGUP = b"\x00\x00\x00"
SO_TIMESTAMPNS: int = getattr(socket, "SO_TIMESTAMPNS", 35)  # Linux; the cmsg type is the same number
TIMESPEC = struct.Struct("@qq")  # struct timespec on 64-bit Linux
CMSG_SPACE = socket.CMSG_SPACE(TIMESPEC.size)
MAX_CATCH_UP = 5  # frames the ticker sends at once per connection after a stall
PHASES = 10  # the calls' 20 ms beats are spread over this many phases
SUB_S = 0.020 / PHASES
MAX_WRITE_BUFFER = 1 << 20  # a connection whose peer stops reading gets frames dropped, not unbounded memory
BUCKET_MS = 0.1  # resolution of the generator's histograms
BUCKETS = 20_001  # 0 .. 2000 ms; worse lands in the last bucket (the exact max is kept apart)
NOISE_AMPLITUDE = 150  # uniform noise: RMS ≈ 87, far below the stand-in's VAD threshold (RMS 500)
BURST_AMPLITUDE = 6000  # 300 Hz tone: RMS ≈ 4,243, far above it
BURST_HZ = 300.0  # whole cycles in 20 ms
TENANT_ID = 990_000_004  # an id no real tenant has: transcripts go to pub/sub channel transcripts:<id>
COMMAND_KEY = "stasis:commands:bench-media"
TARGET_CPU_MS = 4.0
TARGET_RSS_MIB = 1.0
TARGET_FLUSH_MS = 20.0
TARGET_IN_MS = 5.0
TARGET_OUT_MS = 5.0
TARGET_JITTER_MS = 2.0
MIN_RX_RATIO = 0.99  # a step is only healthy when ≥ 99 % of the expected frames arrived


# ------------------------------------------------------------------------------------------------ /proc


# ------------------------------------------------------------------------------------------- statistics


class Hist:
    """Fixed 0.1 ms buckets with the exact maximum kept apart."""

    __slots__ = ("buckets", "count", "max_ms")

    def __init__(self) -> None:
        self.buckets = [0] * BUCKETS
        self.count = 0
        self.max_ms = 0.0

    def add(self, ms: float, n: int = 1) -> None:
        b = int(ms / BUCKET_MS)
        self.buckets[b if 0 <= b < BUCKETS else (0 if b < 0 else BUCKETS - 1)] += n
        self.count += n
        if ms > self.max_ms:
            self.max_ms = ms

    def pct(self, q: float) -> float | None:
        if not self.count:
            return None
        rank = max(1, math.ceil(q / 100.0 * self.count))
        seen = 0
        for bucket, n in enumerate(self.buckets):
            seen += n
            if seen >= rank:
                return round(min((bucket + 1) * BUCKET_MS, self.max_ms), 2)
        return round(self.max_ms, 2)

    def summary(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "p50": self.pct(50),
            "p99": self.pct(99),
            "max": round(self.max_ms, 2) if self.count else None,
        }


# ============================================================================================ generator


def build_frames() -> tuple[list[bytes], bytes]:
    """Noise frames (a few variants) and the loud burst frame, each a whole AudioSocket message."""
    from array import array

    from wire.audiosocket import encode_audio

    rng = random.Random(4)  # noqa: S311 - test noise, not cryptography
    samples = FRAME_BYTES // 2
    noise = []
    for _ in range(4):
        pcm = array("h", (rng.randint(-NOISE_AMPLITUDE, NOISE_AMPLITUDE) for _ in range(samples)))
        noise.append(encode_audio(SLIN24_KIND, pcm.tobytes()))
    tone = array(
        "h", (int(BURST_AMPLITUDE * math.sin(2 * math.pi * BURST_HZ * i / 24000)) for i in range(samples))
    )
    if sys.byteorder != "little":
        noise = [n[:3] + _swapped(n[3:]) for n in noise]
        tone.byteswap()
    return noise, encode_audio(SLIN24_KIND, tone.tobytes())


def _swapped(pcm: bytes) -> bytes:
    from array import array

    a = array("h", pcm)
    a.byteswap()
    return a.tobytes()


def make_brief(call_id: str, i: int) -> str:
    """A call brief as the orchestrator writes it (contract §2), with silence timers that never fire."""
    return json.dumps(
        {
            "v": 1,
            "call_id": call_id,
            "attempt_id": call_id,
            "tenant_id": TENANT_ID,
            "campaign_id": 1,
            "lead_id": i + 1,
            "pbx_id": 1,
            "command_key": COMMAND_KEY,
            "number": f"+1555{i:07d}",
            "caller_id": "+15550000000",
            "timezone": "UTC",
            "instructions": "You are the media benchmark's agent. Keep talking until interrupted.",
            "greeting": "Hello, this is the media benchmark calling.",
            "voice": "marin",
            "model": "gpt-realtime",
            "language": "en",
            "turn_detection": "server_vad",
            "tools": ["end_call"],
            "transfer_targets": [],
            "limits": {
                "max_call_s": 7200,
                "silence_prompt_s": 3600,
                "silence_end_s": 7200,
                "transfer_timeout_s": 30,
            },
            "contact": {"name": "Bench", "variables": {"first_name": "Bench"}},
        },
        separators=(",", ":"),
    )


class Conn:
    """One AudioSocket connection to the media worker (we play Asterisk).

    A non-blocking socket served by ``loop.add_reader`` rather than a transport: each read is a ``recvmsg``
    of at most one frame with ``SO_TIMESTAMPNS``, so every frame carries the kernel's receive time (when the
    worker's write reached this socket) and the jitter does not include this process's own scheduling delay
    on the CPU it shares with the stand-in. The arrival time seen by this process is measured too.
    """

    __slots__ = (
        "armed_at",
        "buf",
        "first_frame_at",
        "first_voiced_at",
        "gen",
        "idx",
        "last_app",
        "last_kernel",
        "lost",
        "opened_at",
        "pending",
        "phase",
        "reply_from",
        "rx",
        "sock",
        "uuid_bytes",
        "voiced",
    )

    def __init__(self, gen: Generator, idx: int, uuid_bytes: bytes, phase: int, sock: socket.socket) -> None:
        self.gen = gen
        self.idx = idx
        self.uuid_bytes = uuid_bytes
        self.phase = phase  # the ticker tick (mod the burst period) at which this call's bursts start
        self.sock = sock
        self.buf = bytearray()
        self.pending = bytearray()  # bytes the socket did not take yet (the worker is not reading)
        self.rx = 0  # audio frames received
        self.last_kernel = 0  # kernel receive time of the last frame (ns, CLOCK_REALTIME)
        self.last_app = 0.0  # when this process read the last frame (monotonic s)
        self.lost = False
        self.opened_at = time.monotonic()
        self.first_frame_at = 0.0
        self.first_voiced_at = 0.0
        self.voiced = False  # the last frame received carried agent audio (not all zeros)
        self.armed_at = 0.0  # a burst started while the agent was talking: when (0: none pending)
        self.reply_from = 0.0  # a burst ended with the agent silent: when (0: not waiting for a reply)

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        loop.add_reader(self.sock.fileno(), self.readable)
        self.write(b"\x01\x00\x10" + self.uuid_bytes)  # wire.audiosocket.encode_uuid

    # ---------------------------------------------------------------------------------------- out
    def write(self, data: bytes) -> bool:
        if self.lost:
            return False
        if self.pending:
            if len(self.pending) > MAX_WRITE_BUFFER:
                return False
            self.pending += data
            return True
        try:
            sent = self.sock.send(data)
        except BlockingIOError:
            sent = 0
        except OSError:
            self.close()
            return False
        if sent < len(data):
            self.pending += data[sent:]
            asyncio.get_running_loop().add_writer(self.sock.fileno(), self.writable)
        return True

    def writable(self) -> None:
        try:
            sent = self.sock.send(self.pending)
        except BlockingIOError:
            return
        except OSError:
            self.close()
            return
        del self.pending[:sent]
        if not self.pending:
            asyncio.get_running_loop().remove_writer(self.sock.fileno())

    def close(self) -> None:
        if self.lost:
            return
        self.lost = True
        loop = asyncio.get_running_loop()
        loop.remove_reader(self.sock.fileno())
        loop.remove_writer(self.sock.fileno())
        self.sock.close()
        self.gen.conn_closed(self)

    # ----------------------------------------------------------------------------------------- in
    def readable(self) -> None:
        sock = self.sock
        for _ in range(64):  # bounded: the other connections get their turn
            try:
                data, ancdata, _flags, _addr = sock.recvmsg(FRAME_BYTES + 3, CMSG_SPACE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                self.close()
                return
            if not data:
                self.close()
                return
            kernel_ns = 0
            for level, kind, cdata in ancdata:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(cdata) >= 16:
                    sec, nsec = TIMESPEC.unpack_from(cdata)
                    kernel_ns = sec * 1_000_000_000 + nsec
            self.received(data, kernel_ns)

    def received(self, data: bytes, kernel_ns: int) -> None:  # noqa: C901 - the hot path, kept in one piece
        now = time.monotonic()
        buf = self.buf
        if buf:
            buf += data
            src: bytes | bytearray = buf
        else:
            src = data
        end = len(src)
        off = 0
        gen = self.gen
        measuring = gen.measuring
        while end - off >= 3:
            kind = src[off]
            if kind == 0x00:  # hangup from the worker
                gen.worker_hangups += 1
                off = end
                break
            length = (src[off + 1] << 8) | src[off + 2]
            stop = off + 3 + length
            if stop > end:
                break
            off_payload, off = off + 3, stop
            if not 0x10 <= kind <= 0x18:
                gen.protocol_errors += 1
                continue
            if kind != SLIN24_KIND or length != FRAME_BYTES:
                gen.odd_frames += 1
            voiced = src.count(0, off_payload, stop) != length
            if voiced != self.voiced:
                self.voiced = voiced
                if voiced:
                    if not self.first_voiced_at:
                        self.first_voiced_at = now
                    if self.reply_from:
                        if measuring:
                            gen.reply_hist.add((now - self.reply_from) * 1000.0)
                        self.reply_from = 0.0
                elif self.armed_at:
                    if measuring:
                        gen.barge_in_hist.add((now - self.armed_at) * 1000.0)
                        gen.barge_ins_seen += 1
                    self.armed_at = 0.0
            if not self.rx:
                self.first_frame_at = now
                gen.first_frame(self)
            self.rx += 1
            if measuring:
                if self.last_kernel and kernel_ns:
                    dev = abs((kernel_ns - self.last_kernel) / 1e6 - FRAME_MS)
                    gen.jitter_hist.add(dev)
                    if dev > 5.0:
                        gen.irregular += 1
                if self.last_app:
                    gen.app_jitter_hist.add(abs((now - self.last_app) * 1000.0 - FRAME_MS))
            self.last_kernel = kernel_ns
            self.last_app = now
        if src is buf:
            if off:
                del buf[:off]
        elif off < end:
            buf += data[off:]


@dataclass
class Snapshot:
    t: float
    worker_cpu: float
    standin_cpu: float
    gen_cpu: float
    cpus: dict[str, tuple[float, float]]
    rx: int
    tx: int
    per_conn_rx: list[int] = field(default_factory=list)


class Generator:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.t_start = time.monotonic()
        self.calls: int = args.calls
        self.worker_pid: int = args.worker_pid
        self.standin_pid: int = args.standin_pid
        self.noise, self.loud = build_frames()
        self.period = max(1, round(args.burst_every / FRAME_S))
        self.burst = min(self.period - 1, max(1, round(args.burst_ms / 1000 / FRAME_S)))
        self.conns: list[Conn] = []
        self.groups: list[list[Conn]] = [[] for _ in range(PHASES)]  # the ticker's phase groups
        self.lost_early = 0
        self.connect_errors: dict[str, int] = {}
        self.protocol_errors = 0
        self.odd_frames = 0
        self.worker_hangups = 0
        self.tx_total = 0
        self.tx_dropped = 0
        self.closing = False
        self.measuring = False
        self.jitter_hist = Hist()
        self.app_jitter_hist = Hist()
        self.irregular = 0
        self.barge_in_hist = Hist()
        self.reply_hist = Hist()
        self.tick_late_hist = Hist()
        self.barge_ins_seen = 0
        self.bursts = 0
        self.bursts_while_talking = 0
        self.barge_ins_missed = 0
        self.ticks_late = 0
        self.ticks_skipped = 0
        self.with_frames = 0

    def log(self, message: str) -> None:
        log("gen", self.t_start, message)

    # ------------------------------------------------------------------------------ connections
    def conn_opened(self, conn: Conn) -> None:
        self.conns.append(conn)
        self.groups[conn.idx % PHASES].append(conn)

    def first_frame(self, conn: Conn) -> None:
        self.with_frames += 1

    def conn_closed(self, conn: Conn) -> None:
        if not self.closing:
            self.lost_early += 1

    # ----------------------------------------------------------------------------------- ticker
    def start_ticker(self) -> None:
        loop = asyncio.get_running_loop()
        self._origin = loop.time()
        self._done = 0
        # Calls start at random moments on a real PBX, so their 20 ms beats are spread over the period;
        # the ticker gives each call one of PHASES phases (FRAME_S / PHASES apart) instead of sending every
        # call's frame in one burst.
        self._handle = loop.call_at(self._origin + SUB_S, self._tick)

    def stop_ticker(self) -> None:
        self._handle.cancel()

    def _tick(self) -> None:
        """The shared clock: every SUB_S one phase group gets its frame (a few more after a stall)."""
        loop = asyncio.get_running_loop()
        lt = loop.time()
        due = int((lt - self._origin) / SUB_S + 0.05)
        if self.measuring:
            self.tick_late_hist.add((lt - (self._origin + (self._done + 1) * SUB_S)) * 1000.0)
        k = due - self._done
        if k > PHASES:
            self.ticks_late += 1
        if k > MAX_CATCH_UP * PHASES:
            self.ticks_skipped += (k - MAX_CATCH_UP * PHASES) // PHASES
            self._done = due - MAX_CATCH_UP * PHASES
        now = time.monotonic()
        measuring = self.measuring
        period, burst, loud, noise = self.period, self.burst, self.loud, self.noise
        for sub in range(self._done + 1, due + 1):
            t = sub // PHASES
            sent = 0
            for conn in self.groups[sub % PHASES]:
                if conn.lost:
                    continue
                ph = (t - conn.phase) % period
                if ph < burst:
                    payload = loud
                    if ph == 0:
                        if conn.armed_at and measuring:
                            self.barge_ins_missed += 1  # the last burst met agent audio that never stopped
                        conn.reply_from = 0.0
                        if measuring:
                            self.bursts += 1
                        if conn.voiced:
                            conn.armed_at = now
                            if measuring:
                                self.bursts_while_talking += 1
                        else:
                            conn.armed_at = 0.0
                else:
                    payload = noise[(t + conn.idx) & 3]
                    if ph == burst and not conn.voiced:
                        conn.reply_from = now
                if conn.write(payload):
                    sent += 1
                else:
                    self.tx_dropped += 1
            self.tx_total += sent
        self._done = max(due, self._done)
        self._handle = loop.call_at(self._origin + (self._done + 1) * SUB_S, self._tick)

    # -------------------------------------------------------------------------------------- run
    def write_briefs(self) -> list[bytes]:
        import redis

        ids = [uuid.uuid4() for _ in range(self.calls)]
        client = redis.Redis.from_url(self.args.redis_url)
        try:
            pipe = client.pipeline(transaction=False)
            for i, u in enumerate(ids):
                pipe.set(f"media:brief:{u}", make_brief(str(u), i), ex=3600)
                # As the Stasis app does right before externalMedia: the worker takes the UUID once.
                pipe.set(f"media:expect:{u}", str(u), ex=3600)
            pipe.execute()
        finally:
            client.close()
        return [u.bytes for u in ids]

    async def ramp(self, uuids: list[bytes]) -> None:
        loop = asyncio.get_running_loop()
        sem = asyncio.Semaphore(self.args.max_inflight)
        port = self.args.worker_port

        async def one(i: int) -> None:
            phase = (i * self.period) // self.calls + round(self.args.first_burst_s / FRAME_S)
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                sock.setblocking(False)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
                await loop.sock_connect(sock, (HOST, port))
                conn = Conn(self, i, uuids[i], phase, sock)
                self.conn_opened(conn)
                conn.start(loop)
            except OSError as exc:
                sock.close()
                key = type(exc).__name__
                self.connect_errors[key] = self.connect_errors.get(key, 0) + 1
            finally:
                sem.release()

        tasks = []
        t0 = loop.time()
        for i in range(self.calls):
            await sem.acquire()
            delay = t0 + i / self.args.ramp_cps - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.ensure_future(one(i)))
        await asyncio.gather(*tasks)

    def snapshot(self, per_conn: bool) -> Snapshot:
        return Snapshot(
            t=time.monotonic(),
            worker_cpu=proc_cpu_seconds(self.worker_pid),
            standin_cpu=proc_cpu_seconds(self.standin_pid),
            gen_cpu=proc_cpu_seconds(os.getpid()),
            cpus=cpu_times(),
            rx=sum(c.rx for c in self.conns),
            tx=self.tx_total,
            per_conn_rx=[c.rx for c in self.conns] if per_conn else [],
        )

    async def run(self) -> dict[str, Any]:
        args = self.args
        uuids = self.write_briefs()
        self.log(f"{self.calls} briefs written; connecting at {args.ramp_cps:g}/s")
        self.start_ticker()
        t_ramp = time.monotonic()
        await self.ramp(uuids)
        connected = len(self.conns)
        self.log(f"{connected} connected in {time.monotonic() - t_ramp:.2f}s; waiting for first frames")
        # every call greeted (agent audio heard) = its Realtime session is up; a lost call is not waited for
        deadline = time.monotonic() + args.setup_grace
        while time.monotonic() < deadline and any(not c.first_voiced_at and not c.lost for c in self.conns):  # noqa: ASYNC110 - a bounded poll
            await asyncio.sleep(0.05)
        setup_s = time.monotonic() - t_ramp
        greeted = sum(1 for c in self.conns if c.first_voiced_at)
        self.log(
            f"{self.with_frames} with frames, {greeted} greeted after {setup_s:.2f}s; settle {args.settle:g}s"
        )
        live = sum(1 for c in self.conns if not c.lost)
        hold = args.hold if live else 0.5  # nothing to measure: do not wait for nothing
        if live:
            await asyncio.sleep(args.settle)
        else:
            self.log("no connection is left: skipping the measurement")
        rss_before_window = proc_status_kib(self.worker_pid, "VmRSS")
        s0 = self.snapshot(True)
        self.measuring = True
        self.log(f"measuring for {hold:g}s")
        await asyncio.sleep(hold)
        self.measuring = False
        s1 = self.snapshot(True)
        rss_kib = proc_status_kib(self.worker_pid, "VmRSS")
        hwm_kib = proc_status_kib(self.worker_pid, "VmHWM")
        live_at_end = sum(1 for c in self.conns if not c.lost)
        self.log("window over; hanging up")
        self.closing = True
        self.stop_ticker()
        for conn in self.conns:
            if not conn.lost:
                conn.write(HANGUP)
                conn.close()
        deadline = time.monotonic() + 10.0
        while time.monotonic() < deadline and any(not c.lost for c in self.conns):  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        return self.result(
            s0, s1, setup_s, connected, greeted, live_at_end, rss_before_window, rss_kib, hwm_kib
        )

    def result(
        self,
        s0: Snapshot,
        s1: Snapshot,
        setup_s: float,
        connected: int,
        greeted: int,
        live_at_end: int,
        rss_before_window: int,
        rss_kib: int,
        hwm_kib: int,
    ) -> dict[str, Any]:
        window = max(s1.t - s0.t, 1e-9)
        per_conn = sorted(b - a for a, b in zip(s0.per_conn_rx, s1.per_conn_rx, strict=False))
        up_ms = sorted((c.first_frame_at - c.opened_at) * 1000 for c in self.conns if c.first_frame_at)
        greet_ms = sorted((c.first_voiced_at - c.opened_at) * 1000 for c in self.conns if c.first_voiced_at)

        def busy(name: str) -> float | None:
            if name not in s0.cpus or name not in s1.cpus:
                return None
            return round((s1.cpus[name][0] - s0.cpus[name][0]) / window, 3)

        return {
            "calls": self.calls,
            "connected": connected,
            "with_frames": self.with_frames,
            "greeted": greeted,
            "live_at_window_end": live_at_end,
            "lost_early": self.lost_early,
            "connect_errors": self.connect_errors,
            "protocol_errors": self.protocol_errors,
            "odd_frames": self.odd_frames,
            "worker_hangups": self.worker_hangups,
            "setup_s": round(setup_s, 2),
            "uuid_to_first_frame_ms_p50": rounded(percentile(up_ms, 50)),
            "uuid_to_first_frame_ms_max": rounded(up_ms[-1] if up_ms else None),
            "uuid_to_greeting_ms_p50": rounded(percentile(greet_ms, 50)),
            "uuid_to_greeting_ms_max": rounded(greet_ms[-1] if greet_ms else None),
            "window_s": round(window, 3),
            "worker_cpu_s": round(s1.worker_cpu - s0.worker_cpu, 3),
            "standin_cpu_s": round(s1.standin_cpu - s0.standin_cpu, 3),
            "gen_cpu_s": round(s1.gen_cpu - s0.gen_cpu, 3),
            "cpu_busy_cores": {name: busy(name) for name in sorted(s1.cpus)},
            "worker_rss_kib_window_start": rss_before_window,
            "worker_rss_kib": rss_kib,
            "worker_rss_peak_kib": hwm_kib,
            "rx_frames": s1.rx - s0.rx,
            "tx_frames": s1.tx - s0.tx,
            "tx_dropped": self.tx_dropped,
            "rx_frames_per_conn_min": per_conn[0] if per_conn else None,
            "rx_frames_per_conn_p50": percentile(per_conn, 50),
            "jitter": self.jitter_hist.summary(),
            "app_jitter": self.app_jitter_hist.summary(),
            "irregular": self.irregular,
            "barge_in": self.barge_in_hist.summary(),
            "reply": self.reply_hist.summary(),
            "bursts": self.bursts,
            "bursts_while_talking": self.bursts_while_talking,
            "barge_ins_seen": self.barge_ins_seen,
            "barge_ins_missed": self.barge_ins_missed,
            "gen_tick_late": self.tick_late_hist.summary(),
            "gen_ticks_late": self.ticks_late,
            "gen_ticks_skipped": self.ticks_skipped,
        }


def run_generator(args: argparse.Namespace) -> int:
    raise_nofile_limit()

    async def main() -> dict[str, Any]:
        gen = Generator(args)
        try:
            async with asyncio.timeout(args.budget):
                return await gen.run()
        except TimeoutError:
            return {"error": f"generator budget of {args.budget:g}s exceeded"}

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


def pin(pid: int, cpus: set[int] | None) -> None:
    if cpus:
        with contextlib.suppress(OSError):
            os.sched_setaffinity(pid, cpus)


def wait_for(check: Callable[[], bool], proc: subprocess.Popen[bytes], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode} before it was ready")
        if check():
            return
        time.sleep(0.05)
    raise RuntimeError(f"{what} was not ready within {timeout:g}s")


def port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        try:
            s.connect((HOST, port))
        except OSError:
            return False
        return True


def tail(path: Path, n: int = 10) -> list[str]:
    try:
        lines = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return []
    return [line[:300] for line in lines[-n:]]


def redis_client(url: str) -> Any:
    import redis

    return redis.Redis.from_url(url, socket_timeout=10)


def read_reports(url: str, queue: str) -> list[dict[str, Any]]:
    """The ``media.call_report`` tasks the worker queued (kombu's Redis transport: a list named after the
    queue; each message's body is base64 JSON ``[args, kwargs, embed]``)."""
    client = redis_client(url)
    reports = []
    try:
        for raw in client.lrange(queue, 0, -1):
            try:
                message = json.loads(raw)
                body = message.get("body", "")
                if (message.get("properties") or {}).get("body_encoding") == "base64":
                    body = base64.b64decode(body)
                _args, kwargs, _embed = json.loads(body)
                if message.get("headers", {}).get("task") == "media.call_report":
                    reports.append(kwargs)
            except (ValueError, TypeError, KeyError):
                continue
    finally:
        client.close()
    return reports


def cpu_sets(args: argparse.Namespace) -> tuple[set[int] | None, set[int] | None]:
    """(the worker's CPU, the harness's CPUs), or (None, None) when there is nothing to split."""
    if args.no_pin:
        return None, None
    allowed = sorted(os.sched_getaffinity(0))
    if len(allowed) < 2:
        return None, None
    worker_cpu = args.worker_cpu if args.worker_cpu in allowed else allowed[-1]
    return {worker_cpu}, set(allowed) - {worker_cpu}


def run_step(args: argparse.Namespace, n: int, tmp: Path, t_start: float) -> dict[str, Any]:  # noqa: C901
    ramp_s = n / args.ramp_cps
    gen_budget = ramp_s + 2 * args.setup_grace + args.settle + args.hold + 30.0
    worker_cpus, harness_cpus = cpu_sets(args)
    step: dict[str, Any] = {"calls": n}
    client = redis_client(args.redis_url)
    try:
        client.flushdb()  # the bench's own database (--redis-url)
    finally:
        client.close()
    standin_port, worker_port = free_port(), free_port()
    stats_file = tmp / f"stats-{n}.json"
    standin_log, worker_log = tmp / f"standin-{n}.log", tmp / f"worker-{n}.log"
    with contextlib.suppress(FileNotFoundError):
        stats_file.unlink()
    standin_cmd = [
        sys.executable,
        "-m",
        "media.localai",
        "--mode",
        "test",
        "--host",
        HOST,
        "--port",
        str(standin_port),
        "--reply-ms",
        str(args.reply_ms),
        "--delta-ms",
        str(args.delta_ms),
        "--speed",
        str(args.speed),
        "--log-level",
        "WARNING",
    ]
    env = {
        **os.environ,
        "MEDIA_LISTEN": f"{HOST}:{worker_port}",
        "REDIS_URL": args.redis_url,
        "CELERY_BROKER_URL": args.redis_url,
        "CELERY_QUEUE": args.celery_queue,
        "REALTIME_URL": f"ws://{HOST}:{standin_port}/v1/realtime",
        "REALTIME_TRANSCRIBE_MODEL": "",
        "MEDIA_MAX_CALLS": str(max(2 * n, 1000)),
        "MEDIA_STATS_FILE": str(stats_file),
        "MEDIA_DRAIN_S": "0",
        "LOG_LEVEL": "WARNING",
    }
    env.pop("OPENAI_API_KEY", None)
    worker_cmd = [
        sys.executable,
        *(["-O"] if args.worker_O else []),
        *(["-m", "cProfile", "-o", args.profile] if args.profile else []),
        "-m",
        "media",
    ]
    standin = worker = gen = None
    gen_out = b""
    try:
        with standin_log.open("wb") as slog, worker_log.open("wb") as wlog:
            standin = subprocess.Popen(standin_cmd, cwd=REPO, stdout=slog, stderr=subprocess.STDOUT)
            pin(standin.pid, harness_cpus)
            wait_for(
                lambda: "READY ws://" in standin_log.read_text(errors="replace"), standin, 20, "stand-in"
            )
            worker = subprocess.Popen(worker_cmd, cwd=REPO, env=env, stdout=wlog, stderr=subprocess.STDOUT)
            pin(worker.pid, worker_cpus)
            wait_for(lambda: port_open(worker_port), worker, 20, "media worker")
            time.sleep(0.5)
            rss_before = proc_status_kib(worker.pid, "VmRSS")
            log(
                "driver",
                t_start,
                f"step {n}: stand-in pid {standin.pid}, worker pid {worker.pid} (CPU {worker_cpus or 'any'}, "
                f"RSS {rss_before / 1024:.1f} MiB); generator on CPU {harness_cpus or 'any'}",
            )
            gen_cmd = [
                sys.executable,
                str(Path(__file__).resolve()),
                "--role",
                "generator",
                "--calls",
                str(n),
                "--worker-port",
                str(worker_port),
                "--worker-pid",
                str(worker.pid),
                "--standin-pid",
                str(standin.pid),
                "--redis-url",
                args.redis_url,
                "--hold",
                str(args.hold),
                "--settle",
                str(args.settle),
                "--setup-grace",
                str(args.setup_grace),
                "--ramp-cps",
                str(args.ramp_cps),
                "--max-inflight",
                str(args.max_inflight),
                "--burst-every",
                str(args.burst_every),
                "--burst-ms",
                str(args.burst_ms),
                "--first-burst-s",
                str(args.first_burst_s),
                "--budget",
                str(gen_budget),
            ]
            gen = subprocess.Popen(gen_cmd, cwd=REPO, stdout=subprocess.PIPE)
            pin(gen.pid, harness_cpus)
            try:
                gen_out, _ = gen.communicate(timeout=gen_budget + 15)
            except subprocess.TimeoutExpired:
                gen.kill()
                gen_out, _ = gen.communicate(timeout=10)
                step["error"] = "generator killed at its deadline"
            worker_code = stop(worker, 30.0)
            standin_code = stop(standin, 10.0)
    except RuntimeError as exc:
        step["error"] = str(exc)
        worker_code = standin_code = None
    finally:
        if gen is not None and gen.poll() is None:
            gen.kill()
            gen.wait(5)
        stop(worker, 10.0)
        stop(standin, 10.0)
    lines = gen_out.decode(errors="replace").strip().splitlines()
    g: dict[str, Any] = {}
    if lines:
        try:
            g = json.loads(lines[-1])
        except ValueError:
            step.setdefault("error", "generator printed no JSON: " + lines[-1][:200])
    elif "error" not in step:
        step["error"] = f"generator exited with {gen.returncode if gen else None} and no output"
    if g.get("error"):
        step.setdefault("error", g["error"])
    stats: dict[str, Any] = {}
    with contextlib.suppress(OSError, ValueError):
        stats = json.loads(stats_file.read_text())
    reports = read_reports(args.redis_url, args.celery_queue) if g else []
    step["worker_exit_code"] = worker_code
    step["standin_exit_code"] = standin_code
    for name, path in (("worker", worker_log), ("standin", standin_log)):
        lines_ = [line for line in tail(path, 1_000_000) if "READY ws://" not in line]
        if lines_:
            step[f"{name}_log_lines"] = len(lines_)
            step[f"{name}_log_tail"] = lines_[-5:]
            if name == "worker" and any("isinstance(transport, asyncio.Transport)" in x for x in lines_):
                step["hint"] = (
                    "the worker's connection_made asserts isinstance(transport, asyncio.Transport), which "
                    "uvloop's TCPTransport is not: every connection fails (media/call.py); --worker-O "
                    "strips the assert"
                )
    if not g or "window_s" not in g:
        step["passed"] = False
        return step
    return figures(step, g, stats, reports, rss_before, worker_cpus, harness_cpus)


def figures(
    step: dict[str, Any],
    g: dict[str, Any],
    stats: dict[str, Any],
    reports: list[dict[str, Any]],
    rss_before: int,
    worker_cpus: set[int] | None,
    harness_cpus: set[int] | None,
) -> dict[str, Any]:
    n = step["calls"]
    window = g["window_s"]
    hist = stats.get("histograms", {})

    def h(name: str, key: str) -> float | None:
        value = (hist.get(name) or {}).get(key)
        return None if value is None else float(value)

    in_p99 = h("in_to_out_ms", "p99")
    dq_p99, late_p99 = h("delta_to_queue_ms", "p99"), h("tick_late_ms", "p99")
    out_p99 = None if dq_p99 is None or late_p99 is None else round(dq_p99 + late_p99, 3)
    jitter = g["jitter"]
    busy = g["cpu_busy_cores"]
    worker_core = f"cpu{min(worker_cpus)}" if worker_cpus else None
    harness_cores = [f"cpu{c}" for c in sorted(harness_cpus or ())]
    rss_kib = g["worker_rss_kib"]
    expected = n * FRAMES_PER_S
    rx_per_s = g["rx_frames"] / window
    metrics = [r.get("metrics") or {} for r in reports]

    def total(key: str) -> int:
        return sum(int(m.get(key) or 0) for m in metrics)

    end_reasons: dict[str, int] = {}
    for r in reports:
        reason = str(r.get("end_reason"))
        end_reasons[reason] = end_reasons.get(reason, 0) + 1
    cpu_ms = g["worker_cpu_s"] * 1000 / (n * window)
    step.update(
        {
            "window_s": window,
            "worker_cpu_cores": round(g["worker_cpu_s"] / window, 3),
            "cpu_ms_per_call_s": round(cpu_ms, 3),
            "calls_per_core_at_this_cpu": round(1000 / cpu_ms) if cpu_ms > 0 else None,
            "worker_rss_before_mib": round(rss_before / 1024, 1),
            "worker_rss_mib": round(rss_kib / 1024, 1),
            "worker_rss_peak_mib": round(g["worker_rss_peak_kib"] / 1024, 1),
            "rss_per_call_kib": round((rss_kib - rss_before) / n, 1),
            "rss_per_call_mib": round((rss_kib - rss_before) / n / 1024, 3),
            "in_p99_ms": in_p99,
            "out_p99_ms_upper": out_p99,
            "in_to_out_ms": hist.get("in_to_out_ms"),
            "delta_to_queue_ms": hist.get("delta_to_queue_ms"),
            "tick_late_ms": hist.get("tick_late_ms"),
            "flush_ms_p50": h("flush_ms", "p50"),
            "flush_ms_p99": h("flush_ms", "p99"),
            "flush_ms_max": h("flush_ms", "max"),
            "flush_count": (hist.get("flush_ms") or {}).get("count", 0),
            "rx_jitter_ms_p50": jitter["p50"],
            "rx_jitter_ms_p99": jitter["p99"],
            "rx_jitter_ms_max": jitter["max"],
            "rx_irregular_pct": round(100 * g["irregular"] / max(jitter["count"], 1), 3),
            "rx_app_jitter_ms_p50": g["app_jitter"]["p50"],
            "rx_app_jitter_ms_p99": g["app_jitter"]["p99"],
            "rx_app_jitter_ms_max": g["app_jitter"]["max"],
            "worker_jitter_ms_p99": late_p99,
            "frames_per_s_received": round(rx_per_s, 1),
            "frames_per_s_sent": round(g["tx_frames"] / window, 1),
            "frames_per_s_expected": expected,
            "rx_frames_per_conn_min": g["rx_frames_per_conn_min"],
            "rx_frames_per_conn_p50": g["rx_frames_per_conn_p50"],
            "bursts": g["bursts"],
            "bursts_while_agent_talking": g["bursts_while_talking"],
            "barge_ins_seen": g["barge_ins_seen"],
            "barge_ins_missed": g["barge_ins_missed"],
            "barge_in_ms_p50": g["barge_in"]["p50"],
            "barge_in_ms_p99": g["barge_in"]["p99"],
            "barge_in_ms_max": g["barge_in"]["max"],
            "reply_ms_p50": g["reply"]["p50"],
            "reply_ms_p99": g["reply"]["p99"],
            "worker_reports": len(reports),
            "worker_barge_ins": total("barge_ins"),
            "worker_frames_in": total("frames_in"),
            "worker_frames_out": total("frames_out"),
            "worker_underruns": total("underruns"),
            "worker_late_ticks": total("late_ticks"),
            "worker_realtime_errors": total("realtime_errors"),
            "worker_end_reasons": end_reasons,
            "worker_accepted": stats.get("accepted"),
            "worker_peak_calls": stats.get("peak_calls"),
            "gen_cpu_cores": round(g["gen_cpu_s"] / window, 3),
            "standin_cpu_cores": round(g["standin_cpu_s"] / window, 3),
            "worker_core_busy": busy.get(worker_core) if worker_core else None,
            "harness_cores_busy": round(sum(busy.get(c) or 0 for c in harness_cores), 3)
            if harness_cores
            else None,
            "machine_busy_cores": busy.get("cpu"),
            "gen_tick_late_ms_p99": g["gen_tick_late"]["p99"],
            "gen_tick_late_ms_max": g["gen_tick_late"]["max"],
            "gen_ticks_late": g["gen_ticks_late"],
            "setup_s": g["setup_s"],
            "uuid_to_first_frame_ms_p50": g["uuid_to_first_frame_ms_p50"],
            "uuid_to_first_frame_ms_max": g["uuid_to_first_frame_ms_max"],
            "uuid_to_greeting_ms_p50": g["uuid_to_greeting_ms_p50"],
            "uuid_to_greeting_ms_max": g["uuid_to_greeting_ms_max"],
            "errors": {
                key: value
                for key, value in {
                    "not_connected": n - g["connected"],
                    "no_frames": n - g["with_frames"],
                    "not_greeted": n - g["greeted"],
                    "lost_early": g["lost_early"],
                    "connect_errors": sum(g["connect_errors"].values()),
                    "protocol_errors": g["protocol_errors"],
                    "odd_frames": g["odd_frames"],
                    "worker_hangups": g["worker_hangups"],
                    "tx_dropped": g["tx_dropped"],
                }.items()
                if value
            },
        }
    )
    harness_busy = step["harness_cores_busy"]
    step["harness_saturated"] = bool(
        harness_busy is not None and harness_cpus and harness_busy >= 0.9 * len(harness_cpus)
    )
    healthy = not step["errors"] and rx_per_s >= MIN_RX_RATIO * expected and "error" not in step
    checks = {
        "healthy": healthy,
        "in_p99": in_p99 is not None and in_p99 <= TARGET_IN_MS,
        "out_p99": out_p99 is not None and out_p99 <= TARGET_OUT_MS,
        "jitter_p99": jitter["p99"] is not None and jitter["p99"] <= TARGET_JITTER_MS,
    }
    step["checks"] = checks
    step["passed"] = all(checks.values())
    return step


def step_line(s: dict[str, Any]) -> str:
    def g(key: str) -> Any:
        return s.get(key, "n/a")

    if "cpu_ms_per_call_s" not in s:
        return f"  {s['calls']:>5} calls: FAILED TO RUN: {s.get('error', '?')}"
    return (
        f"  {s['calls']:>5} calls: worker {g('worker_cpu_cores')} cores = {g('cpu_ms_per_call_s')} ms/call-s"
        f" (→ {g('calls_per_core_at_this_cpu')}/core), RSS {g('worker_rss_before_mib')}→{g('worker_rss_mib')}"
        f" MiB = {g('rss_per_call_kib')} KiB/call\n"
        f"         added latency p99: in {g('in_p99_ms')} ms, out ≤ {g('out_p99_ms_upper')} ms"
        f" (delta→queue {(s.get('delta_to_queue_ms') or {}).get('p99')} + tick late"
        f" {(s.get('tick_late_ms') or {}).get('p99')}, max {(s.get('tick_late_ms') or {}).get('max')});"
        f" flush p50/p99/max {g('flush_ms_p50')}/"
        f"{g('flush_ms_p99')}/{g('flush_ms_max')} ms ({g('flush_count')})\n"
        f"         jitter (kernel rx time) p50/p99/max {g('rx_jitter_ms_p50')}/{g('rx_jitter_ms_p99')}/"
        f"{g('rx_jitter_ms_max')} ms ({g('rx_irregular_pct')}% > 5 ms; as read by the generator p99 "
        f"{g('rx_app_jitter_ms_p99')}); frames/s rx "
        f"{g('frames_per_s_received')} of {g('frames_per_s_expected')}, tx {g('frames_per_s_sent')}\n"
        f"         bursts {g('bursts')} ({g('bursts_while_agent_talking')} while the agent talked): "
        f"{g('barge_ins_seen')} barge-ins seen, {g('barge_ins_missed')} missed, burst→silence p50/p99 "
        f"{g('barge_in_ms_p50')}/{g('barge_in_ms_p99')} ms, reply after burst p50 {g('reply_ms_p50')} ms; "
        f"worker counted {g('worker_barge_ins')} barge-ins, {g('worker_underruns')} underruns in "
        f"{g('worker_reports')} reports\n"
        f"         CPU: stand-in {g('standin_cpu_cores')}, generator {g('gen_cpu_cores')} (harness cores "
        f"busy {g('harness_cores_busy')}{', SATURATED' if s.get('harness_saturated') else ''}), worker "
        f"core busy {g('worker_core_busy')}, machine {g('machine_busy_cores')}; generator tick late p99 "
        f"{g('gen_tick_late_ms_p99')} ms\n"
        f"         errors {json.dumps(g('errors'))}; checks {json.dumps(g('checks'))} → "
        f"{'PASS' if s.get('passed') else 'FAIL'}"
        + (f"\n         ERROR: {s['error']}" if s.get("error") else "")
        + (f"\n         HINT: {s['hint']}" if s.get("hint") else "")
    )


def run_driver(args: argparse.Namespace) -> int:  # noqa: C901
    t_start = time.monotonic()
    raise_nofile_limit()
    steps: list[dict[str, Any]] = []
    interrupted = False
    worker_cpus, harness_cpus = cpu_sets(args)
    with tempfile.TemporaryDirectory(prefix="bench-media-") as tmp:
        for n in args.calls:
            log("driver", t_start, f"step: {n} calls")
            try:
                step = run_step(args, n, Path(tmp), t_start)
            except KeyboardInterrupt:
                interrupted = True
                steps.append({"calls": n, "error": "interrupted", "passed": False})
                break
            except Exception as exc:  # noqa: BLE001 - report the step as failed, go on with the next
                step = {"calls": n, "error": f"{type(exc).__name__}: {exc}", "passed": False}
            steps.append(step)
            log("driver", t_start, "step done:\n" + step_line(step))
    ran = [s for s in steps if "cpu_ms_per_call_s" in s]
    passing = [s["calls"] for s in steps if s.get("passed")]
    largest = max(ran, key=lambda s: s["calls"]) if ran else {}
    flush_p99s = [s["flush_ms_p99"] for s in ran if s.get("flush_ms_p99") is not None]
    result: dict[str, Any] = {
        "benchmark": "media",
        "calls": args.calls,
        "hold_s": args.hold,
        "worker_cpu": sorted(worker_cpus) if worker_cpus else None,
        "harness_cpus": sorted(harness_cpus) if harness_cpus else None,
        "max_calls_per_core_passing": max(passing) if passing else 0,
        "cpu_ms_per_call_s": largest.get("cpu_ms_per_call_s"),
        "calls_per_core_at_this_cpu": largest.get("calls_per_core_at_this_cpu"),
        "rss_per_call_kib": largest.get("rss_per_call_kib"),
        "rss_per_call_mib": largest.get("rss_per_call_mib"),
        "flush_ms_p99": max(flush_p99s) if flush_p99s else None,
        "flush_ms_max": max((s["flush_ms_max"] or 0.0) for s in ran) if ran else None,
        "in_p99_ms": largest.get("in_p99_ms"),
        "out_p99_ms_upper": largest.get("out_p99_ms_upper"),
        "rx_jitter_ms_p99": largest.get("rx_jitter_ms_p99"),
        "worker_jitter_ms_p99": largest.get("worker_jitter_ms_p99"),
        "harness_saturated_at": [s["calls"] for s in ran if s.get("harness_saturated")],
    }
    targets = {
        "cpu_ms_per_call_s<=4": result["cpu_ms_per_call_s"] is not None
        and result["cpu_ms_per_call_s"] <= TARGET_CPU_MS,
        "rss_per_call_mib<=1": result["rss_per_call_mib"] is not None
        and result["rss_per_call_mib"] <= TARGET_RSS_MIB,
        "flush_ms_p99<=20": result["flush_ms_p99"] is not None and result["flush_ms_p99"] <= TARGET_FLUSH_MS,
        f"max_calls_per_core_passing>={args.target_calls}": result["max_calls_per_core_passing"]
        >= args.target_calls,
    }
    result["targets"] = targets
    result["targets_met"] = all(targets.values()) and not interrupted
    result["steps"] = steps
    if interrupted:
        result["error"] = "interrupted"
    print("")
    print("=== media: the media worker under N concurrent calls (worker on one core) ===")
    print(
        f"worker on CPU {result['worker_cpu']}, stand-in + generator on {result['harness_cpus']}; "
        f"hold {args.hold:g} s per step; reply {args.reply_ms} ms, burst {args.burst_ms} ms every "
        f"{args.burst_every:g} s per call"
    )
    for s in steps:
        print(step_line(s))
    print(
        f"largest N passing (in/out p99 ≤ 5 ms, jitter p99 ≤ 2 ms): {result['max_calls_per_core_passing']}; "
        f"at {largest.get('calls')} calls: {result['cpu_ms_per_call_s']} ms CPU per call-second, "
        f"{result['rss_per_call_kib']} KiB per call; flush p99 (worst step) {result['flush_ms_p99']} ms"
    )
    if result["harness_saturated_at"]:
        print(f"NOTE: the stand-in + generator core was saturated at N = {result['harness_saturated_at']}")
    print("targets: " + ", ".join(f"{k} {'met' if v else 'NOT met'}" for k, v in targets.items()))
    print(json.dumps(result), flush=True)
    return 0 if result["targets_met"] else 1


def parse_calls(value: str) -> list[int]:
    try:
        calls = [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of integers: {value!r}") from None
    if not calls or min(calls) < 1:
        raise argparse.ArgumentTypeError("need at least one call count, each ≥ 1")
    return calls


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python bench/media.py",
        description="Load benchmark for the media worker: N concurrent synthetic AudioSocket calls against "
        "the Realtime stand-in, the worker pinned to one CPU. Prints a summary and, on the last line, one "
        "JSON object (see bench/README.md). Exit code 0 when every target is met.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--role", default="driver", choices=["driver", "generator"], help=argparse.SUPPRESS)
    p.add_argument("--calls", default="50,100,200,300", help="concurrent calls per step, comma-separated")
    p.add_argument("--hold", type=float, default=20.0, help="seconds of measurement per step")
    p.add_argument(
        "--settle", type=float, default=3.0, help="seconds between all calls greeted and the window"
    )
    p.add_argument("--ramp-cps", type=float, default=100.0, help="new connections per second")
    p.add_argument("--max-inflight", type=int, default=64, help="connects outstanding at once")
    p.add_argument("--setup-grace", type=float, default=30.0, help="seconds allowed for every call to be up")
    p.add_argument("--reply-ms", type=int, default=5000, help="stand-in: audio per reply (ms)")
    p.add_argument("--delta-ms", type=int, default=100, help="stand-in: audio per output_audio.delta (ms)")
    p.add_argument("--speed", type=float, default=10.0, help="stand-in: real-time factor of audio delivery")
    p.add_argument("--burst-every", type=float, default=5.0, help="seconds between speech bursts of a call")
    p.add_argument("--burst-ms", type=int, default=600, help="length of a speech burst (ms)")
    p.add_argument(
        "--first-burst-s", type=float, default=2.0, help="offset of the burst schedule (calls are staggered)"
    )
    p.add_argument(
        "--redis-url",
        default="redis://127.0.0.1:6379/10",
        help="the bench's own Redis database: FLUSHED at the start of every step",
    )
    p.add_argument("--celery-queue", default="bench-media", help="CELERY_QUEUE of the worker")
    p.add_argument("--worker-cpu", type=int, default=-1, help="CPU of the worker (default: the last one)")
    p.add_argument("--no-pin", action="store_true", help="do not pin the processes to CPUs")
    p.add_argument(
        "--worker-O",
        dest="worker_O",
        action="store_true",
        help="run the worker as `python -O -m media` (assert statements stripped)",
    )
    p.add_argument(
        "--target-calls", type=int, default=250, help="calls per core that must pass for the exit code 0"
    )
    p.add_argument(
        "--profile", default="", help="run the worker under cProfile and write the stats here (one step only)"
    )
    # generator role
    p.add_argument("--worker-port", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--worker-pid", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--standin-pid", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--budget", type=float, default=600.0, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    try:
        calls = parse_calls(args.calls)
    except argparse.ArgumentTypeError as exc:
        p.error(str(exc))
    if args.role == "generator":
        args.calls = calls[0]
    else:
        args.calls = calls
    if args.hold <= 0 or args.ramp_cps <= 0 or args.burst_every <= 0.04 or args.burst_ms <= 0:
        p.error("need --hold > 0, --ramp-cps > 0, --burst-every > 0.04 and --burst-ms > 0")
    if args.profile and len(calls) != 1:
        p.error("--profile needs a single --calls value")
    if args.profile:
        args.profile = str(Path(args.profile).resolve())
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.role == "generator":
        return run_generator(args)
    return run_driver(args)


if __name__ == "__main__":
    sys.exit(main())
