"""Captions: the text a simulated caller says, carried inside its own audio, for the offline stand-ins.

The PBX simulator's callers "speak" a synthetic signal (telephony/sim/audio.py), and the local Realtime
stand-in (media/localai) has no speech recognition. So that a scripted caller's words can still reach the
local agent as text, the simulator can hide the text in the least significant bit of the samples of its
speech (inaudible: one step in 32768), and the stand-in reads it back from the audio the media worker
appends. AudioSocket slin audio passes through the simulator, the media worker and the Realtime client
unchanged when no resampling happens (``slin24`` end to end, DESIGN.md §6); anything that changes the
samples (G.711, resampling, mixing with other audio) just loses the caption.

Every 20 ms frame of the speech carries one packet, in the LSBs of its first samples (16-bit little-endian
PCM): ``MAGIC, index, count, length, <length bytes of UTF-8>, checksum``. The text is cut into ``count``
chunks and the frames repeat them in turn, so any ``count`` consecutive frames give the whole text,
wherever the listener starts. Standard library only.
"""

from __future__ import annotations

MAGIC = 0xC5
HEADER_BYTES = 4  # magic, index, count, length
MAX_TEXT_BYTES = 1000


def _chunk_size(frame_samples: int) -> int:
    return max(0, frame_samples // 8 - HEADER_BYTES - 1)


def _checksum(data: bytes) -> int:
    return (sum(data) * 31 + len(data)) & 0xFF


def embed(pcm: bytes, text: str, rate: int) -> bytes:
    """``pcm`` (16-bit little-endian at ``rate``) with ``text`` in the LSBs of each 20 ms frame."""
    frame_samples = rate // 50
    size = _chunk_size(frame_samples)
    data = text.encode("utf-8")[:MAX_TEXT_BYTES]
    if not data or size <= 0 or len(pcm) < frame_samples * 2:
        return pcm
    chunks = [data[i : i + size] for i in range(0, len(data), size)][:255]
    packets = []
    for index, chunk in enumerate(chunks):
        head = bytes((MAGIC, index, len(chunks), len(chunk))) + chunk
        packets.append(head + bytes((_checksum(head),)))
    out = bytearray(pcm)
    frame_bytes = frame_samples * 2
    for k in range(len(pcm) // frame_bytes):
        packet = packets[k % len(packets)]
        base = k * frame_bytes
        for byte_index, value in enumerate(packet):
            for bit in range(8):
                pos = base + (byte_index * 8 + bit) * 2  # the low byte of the sample
                out[pos] = (out[pos] & 0xFE) | ((value >> (7 - bit)) & 1)
    return bytes(out)


def read_frame(frame: bytes) -> tuple[int, int, bytes] | None:
    """``(index, count, chunk)`` of the packet in one frame of 16-bit PCM, or None (no caption)."""
    samples = len(frame) // 2
    if samples < 8 * (HEADER_BYTES + 1):
        return None

    def byte_at(i: int) -> int:
        value = 0
        for bit in range(8):
            value = (value << 1) | (frame[(i * 8 + bit) * 2] & 1)
        return value

    if byte_at(0) != MAGIC:
        return None
    index, count, length = byte_at(1), byte_at(2), byte_at(3)
    if count == 0 or index >= count or length > _chunk_size(samples):
        return None
    head = bytes((MAGIC, index, count, length, *(byte_at(HEADER_BYTES + i) for i in range(length))))
    if byte_at(HEADER_BYTES + length) != _checksum(head):
        return None
    return index, count, head[HEADER_BYTES:]


class CaptionReader:
    """Gathers the packets of the frames fed to it; :attr:`text` once every chunk was seen."""

    def __init__(self) -> None:
        self._chunks: dict[int, bytes] = {}
        self._count = 0

    def reset(self) -> None:
        self._chunks.clear()
        self._count = 0

    def feed(self, frame: bytes) -> None:
        packet = read_frame(frame)
        if packet is None:
            return
        index, count, chunk = packet
        if count != self._count:  # another caption: start over
            self._chunks.clear()
            self._count = count
        self._chunks[index] = chunk

    @property
    def text(self) -> str | None:
        if not self._count or len(self._chunks) < self._count:
            return None
        data = b"".join(self._chunks[i] for i in range(self._count))
        return data.decode("utf-8", errors="replace")
