"""Writes of messaging (keyword-only ``<entity>_<action>``). Other apps use :func:`message_send`."""

from messaging.services.messages import MAX_SMS_LENGTH, message_send

__all__ = ["MAX_SMS_LENGTH", "message_send"]
