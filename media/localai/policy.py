"""What the stand-in "model" says or does for a response: the two brains (test and local agent).

The protocol session asks a policy for a :class:`Plan` each time a response starts, giving it the
conversation's last item and the response's instructions. Tool calls come from keyword rules on the
latest user *text* item (DTMF reaches the model as "The caller pressed N"), and only for tools the session
(or the response) declared, like a real model that can call only what it was given.

Inbound flows (both brains, when ``report_urgent`` / ``record_intake`` are declared): a caller text that
says "urgent" or "emergency" (or the key 7: :data:`URGENT_KEY`) first gets ``record_intake`` with what can
be taken from the caller's words (:func:`intake_from_text`: a phone number, a name after "my name is",
an address after "I live at", the problem in their own words), then ``report_urgent`` with those words as
the summary, and then the agent says the ``tell_the_caller`` of its output. Any other caller text from which
a field can be taken gets ``record_intake`` alone.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final, Literal

TEST_SENTENCE: Final = "This is the test agent speaking."
TOOL_DONE_SENTENCE: Final = "Done."
MENU_SENTENCE: Final = (
    "I am the local demo agent. Press 1 to talk to a person, 2 for a callback tomorrow, "
    "3 if you are interested, 9 to stop these calls, or pound to end the call."
)
AGENT_GREETING: Final = "Hello, this is the local demo agent. " + MENU_SENTENCE

# What the local agent says after each tool ran (the function_call_output came back).
AGENT_TOOL_REPLIES: Final[dict[str, str]] = {
    "transfer_to_human": "Please hold while I connect you to a person.",
    "schedule_callback": "Great, we will call you back tomorrow at ten in the morning.",
    "set_disposition": "Thank you for your interest, someone will be in touch.",
    "add_to_dnc": "Understood. We will not call you again. Goodbye.",
    "send_sms": "I have sent you a text message with the link.",
    "end_call": "Thank you for your time. Goodbye.",
    "record_intake": "Thank you, I have noted that.",
    "report_urgent": "The on-call technician is being contacted now.",
}

URGENT_WORDS: Final = ("urgent", "emergency")
URGENT_KEY: Final = "pressed 7"  # the offline demo's "this is urgent" key
_DTMF_LINE = re.compile(r"^the caller pressed ", re.IGNORECASE)
_PHONE = re.compile(r"(?<![\w+])(\+?\d[\d ().-]{6,18}\d)(?!\w)")
_NAME = re.compile(r"\b(?i:my name is|this is|i am|i'm)\s+([A-Z][\w'-]*(?:\s+[A-Z][\w'-]*)?)")
_ADDRESS = re.compile(
    r"\b(?:i live at|my address is|the address is|address:|at)\s+(\d+[^.,;!?]*)", re.IGNORECASE
)

# "{tomorrow}" in a rule's string arguments becomes tomorrow's local date (YYYY-MM-DD) when the rule fires.
DEFAULT_RULES_DOC: Final[list[dict[str, Any]]] = [
    {"match": "pressed 1", "tool": "transfer_to_human", "arguments": {"reason": "caller asked for a person"}},
    {
        "match": "pressed 2",
        "tool": "schedule_callback",
        "arguments": {"local_time": "{tomorrow}T10:00", "note": "caller asked"},
    },
    {"match": "pressed 3", "tool": "set_disposition", "arguments": {"disposition": "interested"}},
    {"match": "pressed 9", "tool": "add_to_dnc", "arguments": {}},
    {"match": "pressed 5", "tool": "send_sms", "arguments": {"text": "Here is the link we talked about."}},
    {"match": "pressed #", "tool": "end_call", "arguments": {"reason": "caller finished"}},
]

# A quoted sentence inside instructions: straight or curly double quotes.
_QUOTED = re.compile(r"\"([^\"]+)\"|\u201c([^\u201d]+)\u201d")


@dataclass(frozen=True, slots=True)
class Rule:
    match: str  # case-insensitive substring of the user's text
    tool: str
    arguments: dict[str, Any] = field(default_factory=dict)

    def matches(self, text: str) -> bool:
        return self.match.casefold() in text.casefold()

    def render_arguments(self, today: datetime | None = None) -> dict[str, Any]:
        now = today or datetime.now(UTC).astimezone()
        tomorrow = (now + timedelta(days=1)).strftime("%Y-%m-%d")
        return {
            k: v.replace("{tomorrow}", tomorrow) if isinstance(v, str) else v
            for k, v in self.arguments.items()
        }


class RulesError(ValueError):
    """A rules document is not a list of {"match": str, "tool": str, "arguments": {...}}."""


def rules_from_doc(doc: Any) -> tuple[Rule, ...]:
    if not isinstance(doc, list):
        raise RulesError("rules must be a JSON list")
    rules: list[Rule] = []
    for index, entry in enumerate(doc):
        if not isinstance(entry, dict):
            raise RulesError(f"rule {index}: must be an object")
        match, tool, arguments = entry.get("match"), entry.get("tool"), entry.get("arguments", {})
        if not isinstance(match, str) or not match:
            raise RulesError(f"rule {index}: 'match' must be a non-empty string")
        if not isinstance(tool, str) or not tool:
            raise RulesError(f"rule {index}: 'tool' must be a non-empty string")
        if not isinstance(arguments, dict):
            raise RulesError(f"rule {index}: 'arguments' must be an object")
        rules.append(Rule(match=match, tool=tool, arguments=arguments))
    return tuple(rules)


def load_rules(path: str | Path) -> tuple[Rule, ...]:
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise RulesError(f"cannot read rules from {path}: {exc}") from exc
    return rules_from_doc(doc)


DEFAULT_RULES: Final = rules_from_doc(DEFAULT_RULES_DOC)


def quoted_text(instructions: str | None) -> str | None:
    """The sentence to say verbatim: the first double-quoted text in the instructions, if any."""
    if not instructions:
        return None
    found = _QUOTED.search(instructions)
    if not found:
        return None
    text = (found.group(1) or found.group(2) or "").strip()
    return text or None


@dataclass(frozen=True, slots=True)
class Context:
    """What a policy may look at when a response starts."""

    last_item: Literal["none", "user_text", "user_audio", "function_call_output", "other"]
    user_text: str | None  # the text of the last item when it is a user text message
    tool_output_name: str | None  # the function whose output is the last item, if known
    instructions: str | None  # the response's own instructions (response.create), if any
    tools: frozenset[str]  # the function names declared for this response
    tool_output: str | None = None  # the output (JSON text) when the last item is a function output
    properties: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # each tool's parameter names
    # The conversation so far: ("user", text) for user texts, ("call", name) for each function called.
    history: tuple[tuple[str, str], ...] = ()


def is_urgent(text: str) -> bool:
    folded = text.casefold()
    return any(word in folded for word in URGENT_WORDS) or URGENT_KEY in folded


def caller_words(history: tuple[tuple[str, str], ...]) -> str:
    """What the caller said in words (user texts that are not key presses), in order."""
    return " ".join(text for kind, text in history if kind == "user" and not _DTMF_LINE.match(text)).strip()


def intake_from_text(fields: tuple[str, ...], text: str) -> dict[str, str]:
    """Values for the intake ``fields`` that can be read from the caller's ``text`` (a keyword stand-in for
    a model's understanding): phone-like numbers, a name, an address, the problem, the urgency."""
    values: dict[str, str] = {}
    if not text:
        return values
    phone = _PHONE.search(text)
    name = _NAME.search(text)
    address = _ADDRESS.search(text)
    for f in fields:
        key = f.casefold()
        if phone and ("phone" in key or "number" in key or "callback" in key):
            values[f] = re.sub(r"[^\d+]", "", phone.group(1))
        elif name and "name" in key:
            values[f] = name.group(1).strip()
        elif address and ("address" in key or "location" in key):
            values[f] = address.group(1).strip()
        elif key in ("problem", "issue", "description", "details", "reason", "summary", "notes"):
            values[f] = text[:500]
        elif "urgen" in key or key == "priority":
            values[f] = "urgent" if is_urgent(text) else "normal"
    return values


def _output_field(output: str | None, key: str) -> str | None:
    try:
        data = json.loads(output or "")
    except ValueError:
        return None
    value = data.get(key) if isinstance(data, dict) else None
    return value if isinstance(value, str) and value else None


@dataclass(frozen=True, slots=True)
class Speak:
    text: str


@dataclass(frozen=True, slots=True)
class CallTool:
    name: str
    arguments: dict[str, Any]


Plan = Speak | CallTool


class Policy:
    """The test brain: rules for tools, the quoted sentence if asked for one, else fixed sentences."""

    def __init__(self, rules: tuple[Rule, ...] = DEFAULT_RULES) -> None:
        self.rules = rules

    def flow_step(self, ctx: Context) -> Plan | None:
        """Intake and urgency of inbound flows (module docstring); None when they have nothing to do."""
        if ctx.last_item == "function_call_output" and ctx.tool_output_name == "report_urgent":
            tell = _output_field(ctx.tool_output, "tell_the_caller")
            return Speak(tell) if tell else None
        words = caller_words(ctx.history)
        if ctx.last_item == "user_text" and ctx.user_text is not None:
            fields = intake_from_text(ctx.properties.get("record_intake", ()), words)
            if is_urgent(ctx.user_text) and "report_urgent" in ctx.tools:
                if "record_intake" in ctx.tools and fields:
                    return CallTool("record_intake", fields)
                return CallTool("report_urgent", {"summary": self._summary(words)})
            if "record_intake" in ctx.tools and fields and not _DTMF_LINE.match(ctx.user_text):
                return CallTool("record_intake", fields)
        if ctx.last_item == "function_call_output" and ctx.tool_output_name == "record_intake":
            # Urgent, and not reported since the caller said so: report it now.
            pending = False
            for kind, text in ctx.history:
                if kind == "user" and is_urgent(text):
                    pending = True
                elif kind == "call" and text == "report_urgent":
                    pending = False
            if pending and "report_urgent" in ctx.tools:
                return CallTool("report_urgent", {"summary": self._summary(words)})
        return None

    @staticmethod
    def _summary(words: str) -> str:
        return words[:500] if words else "The caller reported an urgent problem."

    def tool_call(self, ctx: Context) -> CallTool | None:
        if ctx.last_item != "user_text" or ctx.user_text is None:
            return None
        for rule in self.rules:
            if rule.tool in ctx.tools and rule.matches(ctx.user_text):
                return CallTool(rule.tool, rule.render_arguments())
        return None

    def plan(self, ctx: Context) -> Plan:
        """A tool when a rule matches, else the quoted sentence when asked for one, else :meth:`reply`."""
        step = self.flow_step(ctx)
        if step is not None:
            return step
        call = self.tool_call(ctx)
        if call is not None:
            return call
        quoted = quoted_text(ctx.instructions)
        if quoted:
            return Speak(quoted)
        return self.reply(ctx)

    def reply(self, ctx: Context) -> Speak:
        if ctx.last_item == "function_call_output":
            return Speak(TOOL_DONE_SENTENCE)
        return Speak(TEST_SENTENCE)


class AgentPolicy(Policy):
    """The local demo agent: greets as asked, answers every caller turn with the menu, acknowledges tools."""

    def reply(self, ctx: Context) -> Speak:
        if ctx.last_item == "function_call_output":
            return Speak(AGENT_TOOL_REPLIES.get(ctx.tool_output_name or "", TOOL_DONE_SENTENCE))
        if ctx.last_item == "none":
            return Speak(AGENT_GREETING)
        return Speak(MENU_SENTENCE)
