"""SMS: providers (console, Twilio, Telnyx), messages, opt-outs, signed inbound and status webhooks.

Other apps send with :func:`messaging.services.message_send` and hear back through the handlers named in
``settings.MESSAGING_STATUS_HANDLERS`` / ``MESSAGING_REPLY_HANDLERS`` (messaging imports no domain app)."""
