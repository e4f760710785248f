"""Writes for agent profiles."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.db.models import ProtectedError

from campaigns.models import AGENT_TOOLS, AgentProfile, default_tools
from campaigns.phone import normalize_phone_number
from orchestrator.errors import InvalidInput, full_clean_or_raise
from tenants.models import Tenant


def validate_tools(tools: object) -> list[str]:
    """The tool names, checked against the fixed set the media worker implements; duplicates dropped."""
    if not isinstance(tools, list) or not all(isinstance(tool, str) for tool in tools):
        raise InvalidInput("tools", "must be a list of tool names")
    unknown = sorted(set(tools) - set(AGENT_TOOLS))
    if unknown:
        raise InvalidInput("tools", f"unknown tool(s) {', '.join(unknown)}; known: {', '.join(AGENT_TOOLS)}")
    return list(dict.fromkeys(tools))


def validate_transfer_numbers(numbers: object) -> list[str]:
    """The numbers as E.164; InvalidInput naming ``transfer_numbers`` and the position of a bad one."""
    if not isinstance(numbers, list) or not all(isinstance(number, str) for number in numbers):
        raise InvalidInput("transfer_numbers", "must be a list of phone numbers")
    normalized = []
    for index, number in enumerate(numbers):
        try:
            normalized.append(normalize_phone_number(number, field=f"transfer_numbers[{index}]"))
        except InvalidInput as exc:
            raise InvalidInput("transfer_numbers", str(exc)) from exc
    return list(dict.fromkeys(normalized))


def validate_turn_detection(value: object) -> str:
    """``server_vad`` or ``semantic_vad`` (how the Realtime session detects the end of the caller's turn)."""
    if value not in AgentProfile.TurnDetection.values:
        raise InvalidInput(
            "turn_detection", f"must be one of {', '.join(AgentProfile.TurnDetection.values)}, not {value!r}"
        )
    return str(value)


_UPDATABLE = (
    "name",
    "instructions",
    "greeting",
    "voice",
    "model",
    "language",
    "tools",
    "transfer_numbers",
    "turn_detection",
)


def agent_profile_create(
    *,
    tenant: Tenant,
    name: str,
    instructions: str,
    greeting: str = "",
    voice: str = "alloy",
    model: str = "gpt-realtime",
    language: str = "en",
    tools: list[str] | None = None,
    transfer_numbers: list[str] | None = None,
    turn_detection: str = AgentProfile.TurnDetection.SERVER_VAD,
) -> AgentProfile:
    if not instructions.strip():
        raise InvalidInput("instructions", "must not be empty")
    agent = AgentProfile(
        tenant=tenant,
        name=name,
        instructions=instructions,
        greeting=greeting,
        voice=voice,
        model=model,
        language=language,
        tools=validate_tools(default_tools() if tools is None else tools),
        transfer_numbers=validate_transfer_numbers([] if transfer_numbers is None else transfer_numbers),
        turn_detection=validate_turn_detection(turn_detection),
    )
    full_clean_or_raise(agent)
    agent.save()
    return agent


def agent_profile_update(*, agent: AgentProfile, **changes: Any) -> AgentProfile:
    """Change some of: name, instructions, greeting, voice, model, language, tools, transfer_numbers,
    turn_detection."""
    unknown = sorted(set(changes) - set(_UPDATABLE))
    if unknown:
        raise InvalidInput(unknown[0], "cannot be changed")
    if "tools" in changes:
        changes["tools"] = validate_tools(changes["tools"])
    if "transfer_numbers" in changes:
        changes["transfer_numbers"] = validate_transfer_numbers(changes["transfer_numbers"])
    if "turn_detection" in changes:
        changes["turn_detection"] = validate_turn_detection(changes["turn_detection"])
    if "instructions" in changes and not str(changes["instructions"]).strip():
        raise InvalidInput("instructions", "must not be empty")
    for field, value in changes.items():
        setattr(agent, field, value)
    full_clean_or_raise(agent)
    agent.save(update_fields=list(changes))
    return agent


def agent_profile_delete(*, agent: AgentProfile) -> None:
    """Delete a profile no campaign uses (campaigns keep theirs: change their agent first)."""
    in_use = list(agent.campaigns.values_list("name", flat=True)[:3])
    if in_use:
        raise InvalidInput("agent", f"used by campaign(s) {', '.join(in_use)}; give them another agent first")
    try:
        with transaction.atomic():
            agent.delete()
    except ProtectedError as exc:  # another app's rows use it too (e.g. an inbound flow)
        users = sorted({str(obj) for obj in exc.protected_objects})[:3]
        raise InvalidInput("agent", f"used by {', '.join(users)}; give them another agent first") from exc
