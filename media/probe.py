"""Latency histograms of the media worker's hot paths, for the media benchmark (``MEDIA_STATS_FILE``).

Off unless a stats file is configured: then the worker records, in 0.05 ms buckets,

* ``in_to_out_ms``: caller frame read from the AudioSocket → its ``input_audio_buffer.append`` written to the
  Realtime socket;
* ``delta_to_queue_ms``: a ``response.output_audio.delta`` read → its audio queued for the call's clock;
* ``tick_late_ms``: how late the call clock's tick ran against its scheduled time (what that adds to
  "delta in → frame out" on top of the intended 20 ms pacing, and the sender side of pacing jitter);
* ``flush_ms``: barge-in (``speech_started`` handled) → the first frame of silence written instead of
  agent audio,

and writes them (count, p50, p99, max) as JSON to the file when the worker stops.
"""

from __future__ import annotations

import json
from array import array
from pathlib import Path
from typing import Any

BUCKET_MS = 0.05
BUCKETS = 4000  # up to 200 ms; beyond goes to the last bucket (max is kept exactly)


class Histogram:
    __slots__ = ("buckets", "count", "max_ms", "total_ms")

    def __init__(self) -> None:
        self.buckets = array("q", bytes(8 * BUCKETS))
        self.count = 0
        self.max_ms = 0.0
        self.total_ms = 0.0

    def add(self, ms: float) -> None:
        index = int(ms / BUCKET_MS)
        self.buckets[index if 0 <= index < BUCKETS else (0 if index < 0 else BUCKETS - 1)] += 1
        self.count += 1
        self.total_ms += ms
        if ms > self.max_ms:
            self.max_ms = ms

    def percentile(self, q: float) -> float | None:
        if not self.count:
            return None
        rank = q * (self.count - 1)
        seen = 0
        for index, n in enumerate(self.buckets):
            seen += n
            if seen > rank:
                return round((index + 1) * BUCKET_MS, 3)
        return round(self.max_ms, 3)

    def summary(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "mean": round(self.total_ms / self.count, 3) if self.count else None,
            "p50": self.percentile(0.50),
            "p99": self.percentile(0.99),
            "max": round(self.max_ms, 3),
        }


class Probe:
    """Named histograms; ``enabled`` is False when no stats file is configured (then nothing is measured)."""

    def __init__(self, stats_file: str = "") -> None:
        self.stats_file = stats_file
        self.enabled = bool(stats_file)
        self.histograms: dict[str, Histogram] = {}

    def add(self, name: str, ms: float) -> None:
        histogram = self.histograms.get(name)
        if histogram is None:
            histogram = self.histograms[name] = Histogram()
        histogram.add(ms)

    def summary(self) -> dict[str, Any]:
        return {name: h.summary() for name, h in sorted(self.histograms.items())}

    def dump(self, extra: dict[str, Any] | None = None) -> None:
        if not self.enabled:
            return
        Path(self.stats_file).write_text(
            json.dumps({**(extra or {}), "histograms": self.summary()}, indent=1)
        )
