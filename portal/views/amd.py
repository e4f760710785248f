"""The campaign form's answering-machine detection and voicemail fields (a partial of the campaign form,
validated by the API's serializer like the rest of it: campaigns/amd.py has the rules)."""

from __future__ import annotations

import json
from typing import Any

from campaigns.models import Campaign

#: Choices the partial's selects show.
FORM_CHOICES: dict[str, Any] = {
    "amd_yes_no": [("false", "No"), ("true", "Yes")],
    "amd_notsure_choices": [("human", "Treat as a person"), ("machine", "Treat as a machine")],
    "amd_voicemail_choices": [("hang_up", "Hang up"), ("leave_message", "Leave the message")],
}


def amd_form_values(campaign: Campaign | None) -> dict[str, Any]:
    """The fields' current values (a new campaign: the defaults)."""
    if campaign is None:
        return {
            "amd_enabled": "false",
            "amd_notsure_action": "human",
            "voicemail_action": "hang_up",
            "voicemail_message_text": "",
            "amd_settings": "{}",
        }
    return {
        "amd_enabled": "true" if campaign.amd_enabled else "false",
        "amd_notsure_action": campaign.amd_notsure_action,
        "voicemail_action": campaign.voicemail_action,
        "voicemail_message_text": campaign.voicemail_message_text,
        "amd_settings": json.dumps(campaign.amd_settings or {}, indent=1),
    }
