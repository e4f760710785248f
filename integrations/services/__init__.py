"""Writes of integrations (see the modules)."""

from integrations.services.deliveries import webhook_event_record

__all__ = ["webhook_event_record"]
