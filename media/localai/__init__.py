"""A stand-in for the OpenAI Realtime API (GA interface), for tests, the media benchmark and offline runs.

One websockets server (``python -m media.localai``) with two brains: ``test`` (fixed tone replies, keyword
rules for tool calls, hooks for tests) and ``agent`` (the local demo agent used by ``make run`` without an
OpenAI key: it says what it is asked to say, answers with a menu, and drives the tools from DTMF).
Imports nothing from the rest of the project but wire/ (the captions of simulated callers, wire/caption.py).
"""

from .policy import DEFAULT_RULES, AgentPolicy, Policy, Rule, load_rules, rules_from_doc
from .server import ConnectionRecord, RealtimeStandIn
from .session import Session, SessionSettings

__all__ = [
    "DEFAULT_RULES",
    "AgentPolicy",
    "ConnectionRecord",
    "Policy",
    "RealtimeStandIn",
    "Rule",
    "Session",
    "SessionSettings",
    "load_rules",
    "rules_from_doc",
]
