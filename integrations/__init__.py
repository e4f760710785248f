"""Outgoing webhooks to tenants' systems (a CRM): endpoints, the delivery outbox, signing and delivery.

A domain app (campaigns, flows) records an event with :func:`integrations.services.webhook_event_record`
in the transaction that makes the event true; the outbox rows commit or roll back with it. This app imports
only ``tenants`` and ``orchestrator``: payloads are built by the app the event belongs to.
"""
