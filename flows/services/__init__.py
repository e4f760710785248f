"""Writes of the inbound flows domain (DESIGN.md §4: keyword-only ``<entity>_<action>`` functions):

* :mod:`flows.services.inbound`: recording and routing inbound calls, the intake, the inbound brief.
* :mod:`flows.services.incidents`: opening, acknowledging, choosing (connect / later), resolving.
* :mod:`flows.services.escalation`: the steps, rounds and fallback, fired by durable timers.
* :mod:`flows.services.pages`: the notification legs (calls and SMS), their events, SMS replies, links.
"""

from flows.services.inbound import inbound_call_ended, inbound_call_started

__all__ = ["inbound_call_ended", "inbound_call_started"]
