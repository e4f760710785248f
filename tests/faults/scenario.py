"""The fault suite's callees and campaigns: two tenants (caps 5 and 2) calling a mix of people who talk, who
press keys for the agent, who are busy, who never pick up and who reject the call. Calls last 0.5–9 s, so a
campaign runs for about half a minute and every fault lands on live calls.

Numbers are ``+1212555 G T NN``: G the callee's behaviour (the simulator's plan matches the prefix), T the
tenant, NN the contact.
"""

from __future__ import annotations

from typing import Any

TALKS, ENDS_WITH_HASH, ASKS_CALLBACK, BUSY, NO_ANSWER, REJECTS = "123456"

PLAN: dict[str, Any] = {
    "default": {"behaviour": "busy", "after": 0.2},
    "prefixes": {
        # Talks to the agent and hangs up after 8 s.
        f"+1212555{TALKS}": {
            "behaviour": "answer",
            "after": 1.0,
            "say": [{"at": 1.0, "text": "Hello, who is calling please?"}],
            "hangup_after": 8,
        },
        # Presses # (the agent's end_call): the agent says goodbye and the Stasis app hangs up.
        f"+1212555{ENDS_WITH_HASH}": {
            "behaviour": "answer",
            "after": 0.5,
            "dtmf": [{"at": 3.0, "digits": "#"}],
            "hangup_after": 9,
        },
        # Presses 2 (schedule_callback, tomorrow 10:00): the lead is due again then, not now.
        f"+1212555{ASKS_CALLBACK}": {
            "behaviour": "answer",
            "after": 0.5,
            "dtmf": [{"at": 2.5, "digits": "2"}],
            "hangup_after": 6,
        },
        f"+1212555{BUSY}": {"behaviour": "busy", "after": 1.0},
        f"+1212555{NO_ANSWER}": "no_answer",  # rings until the campaign's ring timeout
        f"+1212555{REJECTS}": {"behaviour": "reject", "after": 0.5},
    },
}

# Per tenant: (cap, {behaviour group: contacts}).
TENANTS: list[tuple[int, dict[str, int]]] = [
    (5, {TALKS: 8, ENDS_WITH_HASH: 4, ASKS_CALLBACK: 2, BUSY: 4, NO_ANSWER: 4, REJECTS: 3}),
    (2, {TALKS: 3, ENDS_WITH_HASH: 1, BUSY: 2, NO_ANSWER: 1, REJECTS: 1}),
]
RING_TIMEOUT_S = 4
MAX_ATTEMPTS = 2
RETRY_DELAY_S = 2
# Outcomes retried after RETRY_DELAY_S: the callee's (busy, no answer) and the product's own failures.
RETRIED = ("busy", "no_answer", "failed", "error", "unknown", "app_unavailable", "media_failed")
# The hard maximum of a call is the ring timeout plus this (the Stasis app hangs up longer calls).
MAX_CALL_DURATION_S = 40


def number(group: str, tenant_index: int, n: int) -> str:
    return f"+1212555{group}{tenant_index}{n:02d}"


def seed_spec(
    *, ari_url: str, ari_user: str, password_env: str, app: str, timezone: str, scale: int = 1
) -> dict[str, Any]:
    """The input of :mod:`tests.faults.seed`; ``scale`` multiplies the contacts (a longer campaign)."""
    return {
        "ari_url": ari_url,
        "ari_user": ari_user,
        "password_env": password_env,
        "app": app,
        "timezone": timezone,
        "ring_timeout": RING_TIMEOUT_S,
        "max_attempts": MAX_ATTEMPTS,
        "retry_delays": dict.fromkeys(RETRIED, RETRY_DELAY_S),
        "tenants": [
            {
                "cap": cap,
                "numbers": [
                    number(group, index, n) for group, count in mix.items() for n in range(count * scale)
                ],
            }
            for index, (cap, mix) in enumerate(TENANTS)
        ],
    }
