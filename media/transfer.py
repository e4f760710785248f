"""The media side of transfers to humans: the brief's ``transfer`` key, the words of a warm transfer.

The orchestrator's brief lists the campaign's transfer targets (``extra["transfer"]["targets"]``: id, name,
kind, mode); the agent's ``transfer_to_human`` may name one (by name) and a mode. The pick of the human and
the call's legs are the orchestrator's and the Stasis app's (``media.transfer_request``, then the app's
``{"type": "transfer", "state": ...}`` replies, handled by :class:`media.call.Call`).

A warm transfer, seen from here: the callee is on hold (music); ``human_joined`` → the agent briefs the
human on the call so far (:func:`human_brief`: an extractive summary the local agent speaks as written and a
real model uses as an example) and asks them to accept (DTMF 1, or "yes": ``transfer_decision``);
``connected`` → our leg goes; ``declined`` / ``no_answer`` / ``failed`` → the callee is back and the agent
tells them (:func:`back_with_caller`). The human's keys are the Stasis app's to read: the media side
ignores keys during the briefing (they would reach the model as the callee's).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger(__name__)

MODES = ("warm", "cold")
MAX_TARGETS = 20
NAME_MAX = 120
SUMMARY_LINES = 3
LINE_MAX_CHARS = 200


@dataclass(frozen=True)
class Target:
    id: int
    name: str
    kind: str
    mode: str


def transfer_targets(extra: Mapping[str, Any]) -> tuple[Target, ...]:
    """The brief's ``transfer.targets``; malformed entries are skipped (and logged), like parse_brief does
    for its own keys."""
    section = extra.get("transfer") if isinstance(extra, Mapping) else None
    raw = section.get("targets") if isinstance(section, Mapping) else None
    if not isinstance(raw, list):
        return ()
    targets: list[Target] = []
    for entry in raw[:MAX_TARGETS]:
        if not isinstance(entry, Mapping):
            continue
        pk, name, kind, mode = entry.get("id"), entry.get("name"), entry.get("kind"), entry.get("mode")
        if (
            isinstance(pk, bool)
            or not isinstance(pk, int)
            or not isinstance(name, str)
            or not name
            or mode not in MODES
        ):
            logger.warning("skipping transfer target %.200r of the brief", entry)
            continue
        targets.append(Target(pk, name[:NAME_MAX], str(kind or ""), str(mode)))
    return tuple(targets)


def choose_target(targets: tuple[Target, ...], wanted: object) -> Target | None:
    """The target named ``wanted`` (case-insensitive), else the first; None when there is none."""
    if isinstance(wanted, str) and wanted.strip():
        folded = wanted.strip().casefold()
        for target in targets:
            if target.name.casefold() == folded:
                return target
    return targets[0] if targets else None


def _caller_lines(transcript: Iterable[Mapping[str, Any]]) -> list[str]:
    lines = []
    for line in transcript:
        text = str(line.get("text") or "").strip()
        if line.get("role") == "caller" and text and not text.startswith("[pressed"):
            lines.append(" ".join(text.split())[:LINE_MAX_CHARS].replace('"', "'"))
    return lines[-SUMMARY_LINES:]


def human_brief(
    transcript: Iterable[Mapping[str, Any]], *, contact_name: str, reason: str
) -> tuple[str, str]:
    """``(context, instructions)`` for the agent when the human joined: the situation as a system item, and
    the brief to speak (a quoted example built from the transcript: the caller's last words, the reason the
    agent gave for the transfer)."""
    who = " ".join(contact_name.split())[:80].replace('"', "'") or "the caller"
    said = _caller_lines(transcript)
    parts = [f"Hello, this is the AI assistant. I have {who} on hold."]
    if reason:
        parts.append(
            f"They need a person: {' '.join(reason.split())[:LINE_MAX_CHARS].replace(chr(34), chr(39))}."
        )
    if said:
        parts.append("They said: " + " ... ".join(said) + ".")
    parts.append("Press 1 or say yes to take the call, or press 2 or say no.")
    example = " ".join(parts)
    context = (
        "A human colleague has joined the line for a warm transfer; the caller is on hold and cannot hear "
        "you. You are now speaking with the colleague, not the caller. If the colleague accepts the call, "
        "call transfer_decision with accept true; if they decline, with accept false."
    )
    instructions = (
        "Brief the colleague on the call so far in at most three short sentences (who is calling, what they "
        "want, anything promised), then ask them to press 1 or say yes to take the call, or press 2 or say "
        f'no. For example: "{example}"'
    )
    return context, instructions


#: What the agent tells the callee when the human did not take the call, per reported state.
BACK_SENTENCES: Mapping[str, str] = {
    "declined": "I'm sorry, my colleague can't take your call right now. I'm still here to help you.",
    "no_answer": "I'm sorry, nobody could answer right now. I'm still here to help you.",
    "failed": "I'm sorry, I could not reach a colleague right now. I'm still here to help you.",
}


def back_with_caller(state: str) -> tuple[str, str]:
    """``(context, instructions)`` for the agent when the callee is back after a transfer that failed."""
    sentence = BACK_SENTENCES.get(state, BACK_SENTENCES["failed"])
    context = (
        f"The transfer to a human did not happen ({state}). The caller is back on the line with you and "
        "has been on hold; the colleague is gone."
    )
    instructions = (
        f'Tell the caller, in one or two short sentences, and offer to go on. For example: "{sentence}"'
    )
    return context, instructions
