"""The Celery tasks the media worker sends by name (``send_task``), and the orchestrator defines.

The media worker has no Django and does not import the orchestrator's task modules, so the two sides agree on
these names here. Each task's keyword arguments are described where it is defined (``campaigns/tasks.py``).
"""

from __future__ import annotations

from typing import Final

CALL_REPORT: Final = (
    "media.call_report"  # the end-of-call report: metrics, transcript, whether the agent spoke
)
SCHEDULE_CALLBACK: Final = "media.schedule_callback"  # the agent's schedule_callback tool
SET_DISPOSITION: Final = "media.set_disposition"  # the agent's set_disposition tool
ADD_TO_DNC: Final = "media.add_to_dnc"  # the agent's add_to_dnc tool
SEND_SMS: Final = "media.send_sms"  # the agent's send_sms tool
# Inbound flows (defined in flows/tasks.py): the agent's record_intake tool, kwargs {call_id, tenant_id,
# fields: {name: value}}; and its report_urgent tool, kwargs {call_id, tenant_id, summary, fields}.
FLOW_INTAKE: Final = "media.flow_intake"
FLOW_URGENT: Final = "media.flow_urgent"

# The end-of-call report of a call that is not a campaign attempt (an inbound call, an on-call page): the
# same keyword arguments as CALL_REPORT; the media worker picks it by the call id (wire.callids).
FLOW_CALL_REPORT: Final = "media.flow_call_report"

# The agent's record_consent tool: kwargs {call_id, tenant_id, granted: bool, at: epoch s} (recordings app).
RECORDING_CONSENT: Final = "media.recording_consent"
# The agent's transfer_to_human on a campaign with transfer targets (campaigns/tasks.py): kwargs {call_id,
# tenant_id, target_id: int | None (None: the campaign's first), mode: "warm"|"cold"|None (None: the
# target's), reason}. The orchestrator picks the human and sends the Stasis app the transfer command.
TRANSFER_REQUEST: Final = "media.transfer_request"
# Who answered an outbound call, as soon as the media worker decides: kwargs {call_id, tenant_id,
# answered_by: "human"|"machine", source: "amd"|"beep"|"greeting", at: epoch s}.
ANSWERED_BY: Final = "media.answered_by"
# The campaign's voicemail message was played to the end (sent before the hang-up): kwargs {call_id,
# tenant_id, started_at, ended_at} (epoch s).
VOICEMAIL_LEFT: Final = "media.voicemail_left"
# Campaign calls: the agent's save_results tool, kwargs {call_id, tenant_id, fields: {name: value}} (the
# values recorded so far on this call; defined in campaigns/tasks.py, checked by type there).
SAVE_RESULTS: Final = "media.save_results"

ALL: Final = (
    CALL_REPORT,
    SCHEDULE_CALLBACK,
    SET_DISPOSITION,
    ADD_TO_DNC,
    SEND_SMS,
    FLOW_INTAKE,
    FLOW_URGENT,
    FLOW_CALL_REPORT,
    RECORDING_CONSENT,
    TRANSFER_REQUEST,
    ANSWERED_BY,
    VOICEMAIL_LEFT,
    SAVE_RESULTS,
)
