"""A transfer's human leg, and the life cycle of a transfer as data.

Every state change of a :class:`Transfer` goes through :meth:`Transfer.move`; :data:`TRANSITIONS` is the only
place that says which changes are legal. An illegal one is refused (and logged), never applied: the human
leg's events, our own timer and the REST answers of the bridging race each other.

* ``dialing``: the human leg was originated and has not answered.
* ``cancelling``: we gave up on it (not answered in time, the originate got no answer, the bridging failed)
  and hang it up; its end is reported with the reason we gave up for.
* ``bridging``: it answered (its ``StasisStart``); the agent's leg is being swapped for it in the bridge.
* ``bridged``: the human is with the caller; the agent's leg is gone.
* ``briefing`` (warm only): the human is in the bridge with the agent's leg, the callee is out of it hearing
  music on hold; the human accepts (``accept``) or declines (``give_up``).
* ``connecting`` (warm only): accepted; the agent's leg is being swapped for the callee.
* ``done``: forgotten. Its later events are ignored (a later ``StasisStart`` gets it hung up).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType

from telephony.outcomes import CallEndTracker

logger = logging.getLogger(__name__)


class TransferState(StrEnum):
    DIALING = "dialing"
    CANCELLING = "cancelling"
    BRIDGING = "bridging"
    BRIDGED = "bridged"
    BRIEFING = "briefing"
    CONNECTING = "connecting"
    DONE = "done"


class TransferStep(StrEnum):
    ANSWERED = "answered"  # the human leg's StasisStart
    GIVE_UP = "give_up"  # we hang the human leg up ourselves (timeout, lost originate, failed bridging)
    JOINED = "joined"  # the human is in the bridge and the agent's leg is out
    FINISH = "finish"  # reported (failed or ended) and forgotten
    BRIEF = "brief"  # warm: the human is in the bridge with the agent
    ACCEPT = "accept"  # warm: the human accepted (DTMF 1 or the agent's transfer_decision)


TRANSITIONS: Mapping[tuple[TransferState, TransferStep], TransferState] = MappingProxyType(
    {
        (TransferState.DIALING, TransferStep.ANSWERED): TransferState.BRIDGING,
        (TransferState.DIALING, TransferStep.GIVE_UP): TransferState.CANCELLING,
        (TransferState.BRIDGING, TransferStep.GIVE_UP): TransferState.CANCELLING,
        (TransferState.BRIDGING, TransferStep.JOINED): TransferState.BRIDGED,
        (TransferState.DIALING, TransferStep.FINISH): TransferState.DONE,
        (TransferState.CANCELLING, TransferStep.FINISH): TransferState.DONE,
        (TransferState.BRIDGING, TransferStep.FINISH): TransferState.DONE,
        (TransferState.BRIDGED, TransferStep.FINISH): TransferState.DONE,
        (TransferState.BRIDGING, TransferStep.BRIEF): TransferState.BRIEFING,
        (TransferState.BRIEFING, TransferStep.ACCEPT): TransferState.CONNECTING,
        (TransferState.BRIEFING, TransferStep.GIVE_UP): TransferState.CANCELLING,
        (TransferState.CONNECTING, TransferStep.GIVE_UP): TransferState.CANCELLING,
        (TransferState.CONNECTING, TransferStep.JOINED): TransferState.BRIDGED,
        (TransferState.BRIEFING, TransferStep.FINISH): TransferState.DONE,
        (TransferState.CONNECTING, TransferStep.FINISH): TransferState.DONE,
    }
)

#: Not answered yet: when the caller goes, the transfer is reported failed (``call_ended``).
PENDING_STATES = frozenset({TransferState.DIALING, TransferState.CANCELLING})


@dataclass
class Transfer:
    """The human leg of a transfer (``xfer-<call id>``)."""

    call_id: str
    channel_id: str
    number: str
    tracker: CallEndTracker
    state: TransferState = TransferState.DIALING
    gone: bool = False  # the human leg ended while being bridged
    fail_reason: str | None = None  # why we gave up on it ourselves (reported when its end is seen)
    mode: str = "cold"  # cold: the human replaces the agent at once; warm: briefed first (module docstring)
    transfer_id: str = ""  # the domain's id of the transfer (TransferUpdated), "" when it gave none
    held: bool = False  # warm: the callee was taken out of the bridge and hears music on hold
    summary: str = ""  # warm: why the agent asked for a person (the domain's words, for the brief)

    def move(self, step: TransferStep) -> bool:
        """Apply ``step`` if :data:`TRANSITIONS` allows it from the current state; False (logged) if not."""
        new = TRANSITIONS.get((self.state, step))
        if new is None:
            logger.info("transfer %s: %s refused in state %s", self.channel_id, step, self.state)
            return False
        self.state = new
        return True

    @property
    def pending(self) -> bool:
        return self.state in PENDING_STATES

    @property
    def warm(self) -> bool:
        return self.mode == "warm"

    @property
    def done(self) -> bool:
        return self.state is TransferState.DONE
