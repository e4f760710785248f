"""The media side of call recording: the brief's ``recording`` key and the agent's ``record_consent`` tool.

The orchestrator writes ``"recording": {"mode": "never"|"always"|"after_consent"}`` in the call brief
(``campaigns.services.briefs``). With ``after_consent`` the agent has the ``record_consent`` tool and is
told to ask first; ``record_consent(granted=true)`` asks the Stasis app that owns the call to record it
(command ``{"action": "record", "call_id"}``), ``granted=false`` records nothing. Either answer goes to the
orchestrator (``wire.tasks.RECORDING_CONSENT``) as the evidence of what the callee said. ``always`` needs
nothing from here: the orchestrator starts those recordings when the call is bridged.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final, Literal

from wire import tasks as media_tasks
from wire.brief import Brief

logger = logging.getLogger(__name__)

RecordingMode = Literal["never", "always", "after_consent"]
MODES: Final[tuple[RecordingMode, ...]] = ("never", "always", "after_consent")
TOOL: Final = "record_consent"
SCHEMA: Final[dict[str, Any]] = {
    "description": "Record the callee's answer to whether this call may be recorded. Ask them first; "
    "granted=true only if they clearly agreed, granted=false otherwise. Recording starts only on true.",
    "parameters": {
        "type": "object",
        "properties": {
            "granted": {"type": "boolean", "description": "True if the callee agreed to be recorded."}
        },
        "required": ["granted"],
    },
}


def recording_mode(brief: Brief) -> RecordingMode:
    """The brief's recording mode; ``never`` when absent or malformed (never record by mistake)."""
    raw = brief.extra.get("recording") if isinstance(brief.extra, dict) else None
    mode = raw.get("mode") if isinstance(raw, dict) else None
    for known in MODES:
        if mode == known:
            return known
    if raw is not None:
        logger.warning("call %s: unusable recording key %.100r; not recording", brief.call_id, raw)
    return "never"


Command = Callable[[str, dict[str, Any]], Awaitable[None]]
SendTask = Callable[[str, dict[str, Any]], Awaitable[None]]


async def record_consent(
    args: dict[str, Any], *, brief: Brief, command: Command, send_task: SendTask
) -> dict[str, Any]:
    """Run the tool; its output for the model."""
    if recording_mode(brief) != "after_consent":
        return {"ok": False, "error": "this call is not recorded on consent; do not ask about recording"}
    granted = args.get("granted")
    if not isinstance(granted, bool):
        return {"ok": False, "error": "granted must be true or false"}
    await send_task(
        media_tasks.RECORDING_CONSENT,
        {"call_id": brief.call_id, "tenant_id": brief.tenant_id, "granted": granted, "at": time.time()},
    )
    if not granted:
        return {"ok": True, "recording": False, "tell_the_callee": "The call is not recorded."}
    if not brief.command_key:
        return {"ok": False, "error": "this call cannot be recorded"}
    await command(brief.command_key, {"action": "record", "call_id": brief.call_id})
    return {"ok": True, "recording": True}
