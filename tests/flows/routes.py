"""The inbound flows' API routes that take an object id, with their methods: every one is proven
tenant-scoped (tests/flows/test_api.py), and the campaigns' route inventory counts them as covered."""

from __future__ import annotations

DETAIL_ROUTES: list[tuple[str, tuple[str, ...]]] = [
    ("phone-numbers/{number}", ("get", "put", "patch", "delete")),
    ("inbound-flows/{flow}", ("get", "put", "patch", "delete")),
    ("inbound-flows/{flow}/hours", ("get",)),
    ("oncall-people/{person}", ("get", "put", "patch", "delete")),
    ("oncall-groups/{group}", ("get", "put", "patch", "delete")),
    ("rotations/{rotation}", ("get", "put", "patch", "delete")),
    ("rotation-overrides/{override}", ("get", "put", "patch", "delete")),
    ("escalation-policies/{policy}", ("get", "put", "patch", "delete")),
    ("incidents/{incident}", ("get",)),
    ("incidents/{incident}/timeline", ("get",)),
    ("incidents/{incident}/acknowledge", ("post",)),
    ("incidents/{incident}/resolve", ("post",)),
    ("incidents/{incident}/escalate", ("post",)),
    ("inbound-calls/{call}", ("get",)),
]
