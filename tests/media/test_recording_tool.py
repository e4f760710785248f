"""The agent's record_consent tool: only on calls recorded after consent, a yes asks the Stasis app to
record, either answer is reported to the orchestrator."""

from __future__ import annotations

from typing import Any

from media.recording import recording_mode
from media.session import ToolCall
from media.tools import run_tool, tool_definitions
from wire import tasks
from wire.brief import Brief

from .test_flow_tools import Tasks


class Control:
    def __init__(self) -> None:
        self.commands: list[tuple[str, dict[str, Any]]] = []

    async def command(self, key: str, command: dict[str, Any]) -> None:
        self.commands.append((key, command))

    async def await_transfer(self, call_id: str, timeout_s: float) -> dict[str, Any] | None:
        raise AssertionError("no transfer expected")


def brief(mode: Any = "after_consent") -> Brief:
    return Brief(
        call_id="c0ffee00-0000-4000-8000-000000000001",
        tenant_id=3,
        command_key="stasis:commands:7",
        tools=("record_consent", "end_call"),
        extra={"recording": {"mode": mode}},
    )


async def consent(b: Brief, arguments: dict[str, Any]) -> tuple[dict[str, Any], Control, Tasks]:
    control, sent = Control(), Tasks()
    outcome = await run_tool(
        ToolCall(call_id="t1", name="record_consent", arguments=arguments),
        brief=b,
        send_task=sent,
        control=control,
    )
    return outcome.output, control, sent


def test_the_mode_is_read_from_the_brief_and_never_guessed() -> None:
    assert recording_mode(brief()) == "after_consent"
    assert recording_mode(brief("always")) == "always"
    assert recording_mode(brief("loud")) == "never"
    assert recording_mode(Brief(call_id="x", tenant_id=1)) == "never"
    [tool] = tool_definitions(("record_consent",), brief())
    assert tool["parameters"]["required"] == ["granted"]


async def test_yes_records_through_the_stasis_app_and_is_reported() -> None:
    output, control, sent = await consent(brief(), {"granted": True})
    assert output == {"ok": True, "recording": True}
    assert control.commands == [
        ("stasis:commands:7", {"action": "record", "call_id": "c0ffee00-0000-4000-8000-000000000001"})
    ]
    [(name, kwargs)] = sent.sent
    assert name == tasks.RECORDING_CONSENT and kwargs["granted"] is True and kwargs["tenant_id"] == 3


async def test_no_records_nothing_and_bad_calls_are_refused() -> None:
    output, control, sent = await consent(brief(), {"granted": False})
    assert output["recording"] is False and control.commands == []
    assert sent.sent[0][1]["granted"] is False
    for b, arguments in ((brief(), {"granted": "yes"}), (brief("never"), {"granted": True})):
        output, control, sent = await consent(b, arguments)
        assert output["ok"] is False and control.commands == [] and sent.sent == []
