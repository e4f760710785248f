"""The agent's audio on its way to the caller: cut into 20 ms frames, played one per tick, droppable at once.

The Realtime API sends audio faster than real time and AudioSocket has neither a jitter buffer nor a flush
(PROTOCOLS.md §4.3, §6.6), so the queue lives here and the call's clock takes one frame from it every 20 ms
(:meth:`Playout.next_frame`); whatever is still queued when the caller barges in is dropped by
:meth:`Playout.clear` and never reaches the wire. For ``conversation.item.truncate`` it counts, per
assistant item, the audio actually handed to the wire and the audio received.

Sans-I/O: no clock and no sockets here. PCM is 16-bit little-endian mono at the playout rate.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass


@dataclass
class ItemAudio:
    """What was received and what was played of one assistant item."""

    item_id: str
    response_id: str
    received_bytes: int = 0
    played_bytes: int = 0


class Playout:
    """Frames of agent audio waiting for the caller's clock."""

    __slots__ = ("_frames", "_items", "_partial", "bytes_per_ms", "frame_bytes", "last_played", "silence")

    def __init__(self, *, rate: int = 24000, frame_ms: int = 20) -> None:
        self.bytes_per_ms = rate * 2 // 1000
        self.frame_bytes = self.bytes_per_ms * frame_ms
        self.silence = bytes(self.frame_bytes)
        self._frames: deque[tuple[bytes, ItemAudio]] = deque()
        self._partial = bytearray()
        self._items: dict[str, ItemAudio] = {}
        #: the item of the last frame handed out (still the one being heard when the queue ran dry)
        self.last_played: ItemAudio | None = None

    # ----------------------------------------------------------------------------------------- in
    def add(self, *, item_id: str, response_id: str, pcm: bytes) -> None:
        """Queue agent audio of ``item_id``; whole frames become playable now, a remainder waits."""
        item = self._items.get(item_id)
        if item is None:
            self._flush_partial()
            item = self._items[item_id] = ItemAudio(item_id, response_id)
        item.received_bytes += len(pcm)
        size = self.frame_bytes
        if self._partial:
            self._partial += pcm
            data: bytes | bytearray = self._partial
        else:
            data = pcm
        end = len(data) - len(data) % size
        frames = self._frames
        for off in range(0, end, size):
            frames.append((bytes(data[off : off + size]), item))
        rest = data[end:]
        self._partial = bytearray(rest)

    def finish(self) -> None:
        """The current audio stream is complete (``response.output_audio.done``): pad the remainder."""
        self._flush_partial()

    def _flush_partial(self) -> None:
        if not self._partial or not self._items:
            self._partial.clear()
            return
        item = next(reversed(self._items.values()))
        frame = bytes(self._partial) + bytes(self.frame_bytes - len(self._partial))
        self._frames.append((frame, item))
        self._partial.clear()

    # ---------------------------------------------------------------------------------------- out
    def next_frame(self) -> tuple[bytes, ItemAudio] | None:
        """The next frame to write and its item, or None when nothing is queued (the caller hears silence)."""
        if not self._frames:
            return None
        frame, item = self._frames.popleft()
        item.played_bytes = min(item.played_bytes + len(frame), item.received_bytes)
        self.last_played = item
        return frame, item

    def clear(self) -> ItemAudio | None:
        """Drop everything queued (barge-in). Returns the item that was being played, if any."""
        playing = self._frames[0][1] if self._frames else None
        self._frames.clear()
        self._partial.clear()
        return playing

    # ------------------------------------------------------------------------------------ queries
    @property
    def queued_frames(self) -> int:
        return len(self._frames) + (1 if self._partial else 0)

    @property
    def idle(self) -> bool:
        return not self._frames and not self._partial

    def item(self, item_id: str) -> ItemAudio | None:
        return self._items.get(item_id)

    def played_ms(self, item_id: str) -> int:
        """Milliseconds of ``item_id`` handed to the wire, clamped to what was received (for truncate)."""
        item = self._items.get(item_id)
        if item is None:
            return 0
        return min(item.played_bytes, item.received_bytes) // self.bytes_per_ms

    def forget_before(self, keep: int = 8) -> None:
        """Keep the bookkeeping of the last ``keep`` items only (a long call has many)."""
        while len(self._items) > keep:
            oldest = next(iter(self._items))
            if self._frames and self._frames[0][1].item_id == oldest:
                break
            del self._items[oldest]
