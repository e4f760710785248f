"""The console provider (the default for a tenant without an SMS account): logs the message, sends nothing.

The message counts as sent at once; no status callback follows."""

from __future__ import annotations

import logging
import uuid

from messaging.lifecycle import MessageInput
from messaging.providers import OutboundSms, ProviderConfig, SendResult

logger = logging.getLogger(__name__)


class ConsoleProvider:
    def __init__(self, config: ProviderConfig) -> None:
        self.config = config

    def send(self, sms: OutboundSms) -> SendResult:
        provider_id = f"console-{uuid.uuid4().hex}"
        logger.info(
            "SMS (console provider, not sent) %s to %s from %s (tenant %s, message %s): %s",
            provider_id,
            sms.to,
            sms.from_number or "-",
            sms.tenant_id,
            sms.message_id,
            sms.body,
        )
        return SendResult(
            provider_message_id=provider_id, event=MessageInput.SENT, from_number=sms.from_number
        )
