"""The end-of-call report the media worker sends (``media.call_report`` / ``media.flow_call_report``): its
transcript's shape, and how the receiving side keeps only well-formed turns of it."""

from __future__ import annotations

from typing import Any

TRANSCRIPT_ROLES = frozenset({"agent", "caller", "system"})
MAX_TRANSCRIPT_TURNS = 5000
MAX_TURN_TEXT = 4000


def clean_transcript(transcript: Any) -> tuple[list[dict[str, str]], int]:
    """The well-formed turns (``role``, ``text``, ``at``; texts capped) and how many were dropped;
    ``ValueError`` when ``transcript`` is not a list at all."""
    if not isinstance(transcript, list):
        raise ValueError("must be a list of turns")
    kept: list[dict[str, str]] = []
    dropped = max(0, len(transcript) - MAX_TRANSCRIPT_TURNS)
    for turn in transcript[:MAX_TRANSCRIPT_TURNS]:
        if (
            isinstance(turn, dict)
            and turn.get("role") in TRANSCRIPT_ROLES
            and isinstance(turn.get("text"), str)
        ):
            at = turn.get("at")
            kept.append(
                {
                    "role": turn["role"],
                    "text": turn["text"][:MAX_TURN_TEXT],
                    "at": at if isinstance(at, str) else "",
                }
            )
        else:
            dropped += 1
    return kept, dropped
