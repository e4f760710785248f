"""The opt-out keywords the product answers itself (CTIA's list): an inbound message whose whole text is one
of these words (any case, surrounding spaces and punctuation ignored) is a keyword, not a reply."""

from __future__ import annotations

from enum import StrEnum


class Keyword(StrEnum):
    STOP = "stop"
    START = "start"
    HELP = "help"


_WORDS: dict[str, Keyword] = {
    **dict.fromkeys(
        ("STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "OPTOUT", "REVOKE"), Keyword.STOP
    ),
    **dict.fromkeys(("START", "YES", "UNSTOP", "OPTIN"), Keyword.START),
    **dict.fromkeys(("HELP", "INFO"), Keyword.HELP),
}


def keyword_of(text: str) -> tuple[Keyword, str] | None:
    """The keyword ``text`` is (and the word as normalised), or None for an ordinary message."""
    word = text.strip().strip(".!?,;:'\"").strip().upper().replace(" ", "")
    found = _WORDS.get(word)
    return (found, word) if found is not None else None
