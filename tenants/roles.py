"""What each member role may do, in one place: the REST API's permission classes and the portal both ask here.

* ``viewer``: reads everything a member may read, changes nothing.
* ``manager``: runs the tenant's work: campaigns, agents, contacts and imports, do-not-call, calls, inbound
  flows, on-call people and incidents. Not the tenant's settings.
* ``admin``: a manager who also manages the tenant's settings: API keys, members and invitations, SMS
  provider credentials, PBXs.
* ``owner``: an admin who may also make or unmake owners and admins.
"""

from __future__ import annotations

from enum import StrEnum


class Capability(StrEnum):
    READ = "read"
    WRITE = "write"  # the tenant's work (campaigns, contacts, calls, flows, ...)
    SETTINGS = "settings"  # API keys, members, SMS credentials, PBXs, the audit log
    OWN = "own"  # grant or take away owner and admin


ROLE_CAPABILITIES: dict[str, frozenset[Capability]] = {
    "viewer": frozenset({Capability.READ}),
    "manager": frozenset({Capability.READ, Capability.WRITE}),
    "admin": frozenset({Capability.READ, Capability.WRITE, Capability.SETTINGS}),
    "owner": frozenset({Capability.READ, Capability.WRITE, Capability.SETTINGS, Capability.OWN}),
}


def role_can(role: str | None, capability: Capability) -> bool:
    """Whether a member with ``role`` (None: not a member) has ``capability``."""
    return role is not None and capability in ROLE_CAPABILITIES.get(role, frozenset())


def roles_grantable_by(role: str | None) -> list[str]:
    """The roles a member with ``role`` may give to others (or take away): owners any, admins up to
    manager, everyone else none."""
    if role_can(role, Capability.OWN):
        return ["owner", "admin", "manager", "viewer"]
    if role_can(role, Capability.SETTINGS):
        return ["manager", "viewer"]
    return []
