"""The media side of transfers: the brief's targets, transfer_to_human asking the orchestrator (warm returns
at once, cold waits for the outcome), transfer_decision, and the words of a warm transfer."""

from __future__ import annotations

from typing import Any

from media.session import ToolCall
from media.tools import CallState, run_tool, tool_definitions
from media.transfer import back_with_caller, choose_target, human_brief, transfer_targets
from wire import tasks
from wire.brief import Brief

TARGETS = [
    {"id": 7, "name": "Sales team", "kind": "group", "mode": "warm"},
    {"id": 8, "name": "Desk", "kind": "number", "mode": "cold"},
    {"id": "9", "name": "bad id", "kind": "number", "mode": "warm"},
    {"id": 10, "name": "bad mode", "kind": "number", "mode": "lukewarm"},
    "junk",
]


def brief(**extra: Any) -> Brief:
    return Brief(
        call_id="c0ffee",
        tenant_id=3,
        command_key="stasis:commands:1",
        tools=("transfer_to_human", "transfer_decision"),
        extra={"transfer": {"targets": TARGETS}, "contact": {"name": "Dana"}, **extra},
    )


class Recorder:
    def __init__(self, reply: dict[str, Any] | None = None) -> None:
        self.tasks: list[tuple[str, dict[str, Any]]] = []
        self.commands: list[tuple[str, dict[str, Any]]] = []
        self.reply = reply

    async def __call__(self, name: str, kwargs: dict[str, Any]) -> None:
        self.tasks.append((name, kwargs))

    async def command(self, key: str, command: dict[str, Any]) -> None:
        self.commands.append((key, command))

    async def await_transfer(self, call_id: str, timeout_s: float) -> dict[str, Any] | None:
        return self.reply


async def run(
    name: str, args: dict[str, Any], rec: Recorder, state: CallState, b: Brief | None = None
) -> Any:
    return await run_tool(
        ToolCall("t1", name, args), brief=b or brief(), send_task=rec, control=rec, state=state
    )


def test_the_briefs_targets_skip_malformed_entries_and_are_chosen_by_name() -> None:
    targets = transfer_targets(brief().extra)
    assert [(t.id, t.mode) for t in targets] == [(7, "warm"), (8, "cold")]
    assert choose_target(targets, "desk").id == 8  # type: ignore[union-attr]
    assert choose_target(targets, "nobody").id == 7  # type: ignore[union-attr]
    assert choose_target((), None) is None
    assert transfer_targets({"transfer": "nope"}) == ()
    names = [t["name"] for t in tool_definitions(brief().tools, brief())]
    assert names == ["transfer_to_human", "transfer_decision"]


async def test_a_warm_transfer_asks_the_orchestrator_and_returns_at_once() -> None:
    rec, state = Recorder(), CallState()
    outcome = await run("transfer_to_human", {"reason": "wants a quote"}, rec, state)
    assert outcome.output["ok"] and outcome.output["status"] == "calling" and not outcome.respond
    assert rec.tasks == [
        (
            tasks.TRANSFER_REQUEST,
            {"call_id": "c0ffee", "tenant_id": 3, "target_id": 7, "mode": "warm", "reason": "wants a quote"},
        )
    ]
    assert state.warm_transfer and state.transfer_reason == "wants a quote"
    again = await run("transfer_to_human", {}, rec, state)
    assert not again.output["ok"] and len(rec.tasks) == 1  # one transfer at a time
    decided = await run("transfer_decision", {"accept": True}, rec, state)
    assert decided.output == {"ok": True, "accepted": True}
    assert rec.commands == [
        ("stasis:commands:1", {"action": "transfer_decision", "call_id": "c0ffee", "accept": True})
    ]
    bad = await run("transfer_decision", {"accept": "yes"}, rec, state)
    assert not bad.output["ok"] and len(rec.commands) == 1


async def test_transfer_decision_without_a_warm_transfer_does_nothing() -> None:
    rec = Recorder()
    outcome = await run("transfer_decision", {"accept": False}, rec, CallState())
    assert not outcome.output["ok"] and rec.commands == []


async def test_a_cold_transfer_to_a_named_target_waits_for_its_outcome() -> None:
    rec = Recorder(reply={"event": "transfer", "status": "answered", "number": "+12125550190"})
    outcome = await run("transfer_to_human", {"target": "Desk"}, rec, CallState())
    assert rec.tasks[0][1]["target_id"] == 8 and rec.tasks[0][1]["mode"] == "cold"
    assert outcome.transferred == "+12125550190"
    rec = Recorder(reply={"status": "failed", "reason": "all_busy"})
    outcome = await run("transfer_to_human", {"target": "Sales team", "mode": "cold"}, rec, CallState())
    assert outcome.output == {"ok": False, "status": "not_connected", "reason": "all_busy"}


def test_the_human_is_briefed_from_the_call_so_far() -> None:
    transcript = [
        {"role": "agent", "text": "Hello Dana."},
        {"role": "caller", "text": 'I want "solar" panels'},
        {"role": "caller", "text": "[pressed 1]"},
    ]
    context, instructions = human_brief(transcript, contact_name="Dana", reason="wants a quote")
    assert "colleague" in context and "transfer_decision" in context
    assert "I have Dana on hold" in instructions and "wants a quote" in instructions
    assert "I want 'solar' panels" in instructions and "pressed" not in instructions
    assert "Press 1 or say yes" in instructions
    _, back = back_with_caller("declined")
    assert "can't take your call" in back


def test_a_callee_on_hold_is_not_prompted_or_hung_up_for_silence() -> None:
    from tests.media.test_session import make_session, sent, started

    session = make_session(silence_prompt_s=5.0, silence_end_s=12.0)
    started(session)
    session.on_server_event({"type": "response.done", "response": {"id": "r1", "status": "completed"}}, 1.0)
    session.take()
    session.on_hold = True
    session.tick(40.0)
    assert sent(session) == [] and session.take()[1] == []
    # The transfer settled (the callee is back): the silence is counted from now.
    session.on_hold = False
    session.tick(44.0)
    assert sent(session) == []
    session.tick(46.1)
    assert "still there" in sent(session)[0]["response"]["instructions"]


def test_instruct_tells_the_model_the_situation_and_asks_for_speech() -> None:
    from tests.media.test_session import make_session, sent, started

    session = make_session()
    started(session)
    session.on_server_event({"type": "response.done", "response": {"id": "r1", "status": "completed"}}, 1.0)
    session.take()
    session.instruct("A colleague joined.", 'Brief them. For example: "Hello."', 2.0)
    out = sent(session)
    assert out[0]["type"] == "conversation.item.create" and out[0]["item"]["role"] == "system"
    assert out[-1]["type"] == "response.create" and "Brief them" in out[-1]["response"]["instructions"]
    assert session.transcript[-1] == {"role": "system", "text": "A colleague joined.", "t_ms": 2000}
