"""Serializers of the messaging API: output (read-only, never a secret) and input (types only; the services
check the rest and name the field)."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from messaging.lifecycle import MessageStatus
from messaging.models import Message, OptOut, Provider, SmsAccount
from messaging.services.accounts import sms_account_has_secret, webhook_urls
from orchestrator.api import OutputModelSerializer


class MessageSerializer(OutputModelSerializer[Message]):
    class Meta:
        model = Message
        fields = [
            "id", "direction", "to_number", "from_number", "body", "provider", "provider_message_id",
            "status", "error_code", "error_message", "segments", "price", "price_unit", "purpose", "ref",
            "tries", "created_at", "sent_at", "delivered_at", "updated_at",
        ]  # fmt: skip
        read_only_fields = fields


class MessageFilterSerializer(serializers.Serializer[Any]):
    direction = serializers.ChoiceField(choices=Message.Direction.values, required=False)
    status = serializers.ChoiceField(choices=[status.value for status in MessageStatus], required=False)
    to = serializers.CharField(max_length=32, required=False)
    purpose = serializers.CharField(max_length=32, required=False)
    ref = serializers.CharField(max_length=200, required=False)
    since = serializers.DateTimeField(required=False)


# "from" is a Python keyword: the ?from= filter is declared after the class.
MessageFilterSerializer._declared_fields["from"] = serializers.CharField(max_length=32, required=False)


class OptOutSerializer(OutputModelSerializer[OptOut]):
    class Meta:
        model = OptOut
        fields = ["id", "phone_number", "source", "keyword", "created_at"]
        read_only_fields = fields


class OptOutInputSerializer(serializers.Serializer[Any]):
    phone_number = serializers.CharField(max_length=32)


class SmsAccountSerializer(OutputModelSerializer[SmsAccount]):
    has_secret = serializers.SerializerMethodField()
    webhook_urls = serializers.SerializerMethodField()

    class Meta:
        model = SmsAccount
        fields = [
            "id", "kind", "username", "has_secret", "public_key", "messaging_profile_id", "api_base",
            "from_numbers", "enabled", "webhook_urls", "created_at", "updated_at",
        ]  # fmt: skip
        read_only_fields = fields

    def get_has_secret(self, obj: SmsAccount) -> bool:
        return sms_account_has_secret(obj)

    def get_webhook_urls(self, obj: SmsAccount) -> dict[str, str]:
        return webhook_urls(obj)


class SmsAccountInputSerializer(serializers.Serializer[Any]):
    kind = serializers.ChoiceField(choices=Provider.values)
    username = serializers.CharField(max_length=100, required=False, allow_blank=True)
    secret = serializers.CharField(max_length=500, required=False, write_only=True)
    # Operator-only (the admin): accepted here only to be refused with a clear message.
    secret_env = serializers.CharField(max_length=100, required=False, write_only=True)
    public_key = serializers.CharField(max_length=200, required=False, allow_blank=True)
    messaging_profile_id = serializers.CharField(max_length=100, required=False, allow_blank=True)
    api_base = serializers.CharField(max_length=200, required=False, allow_blank=True)
    from_numbers = serializers.ListField(
        child=serializers.CharField(max_length=32), required=False, max_length=20
    )
    enabled = serializers.BooleanField(required=False)
