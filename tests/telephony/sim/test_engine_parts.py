"""`engine.Pbx` is assembled from a core and one part per resource: every operation the core declares for
the parts to define must be defined by one of them, or the simulator would fail only when it is reached."""

from __future__ import annotations

import inspect

from telephony.sim.core import PbxCore
from telephony.sim.engine import Pbx


def test_every_operation_the_core_declares_is_defined_by_a_part() -> None:
    declared = [
        name
        for name, member in vars(PbxCore).items()
        if inspect.isfunction(member) and "raise NotImplementedError" in inspect.getsource(member)
    ]
    assert declared, "the core declares the operations one resource asks of another"
    undefined = [name for name in declared if getattr(Pbx, name) is vars(PbxCore)[name]]
    assert undefined == []
