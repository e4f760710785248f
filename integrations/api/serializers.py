"""Serializers of the webhooks API: output (the secret only right after it was made) and input (types
only; the services check the URL policy and the event types and name the field)."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from integrations.models import URL_MAX_LENGTH, WebhookDelivery, WebhookEndpoint
from orchestrator.api import OutputModelSerializer


class WebhookEndpointSerializer(OutputModelSerializer[WebhookEndpoint]):
    class Meta:
        model = WebhookEndpoint
        fields = ["id", "url", "description", "event_types", "enabled", "created_at", "updated_at"]
        read_only_fields = fields


class WebhookEndpointWithSecretSerializer(WebhookEndpointSerializer):
    """The endpoint and its signing secret: answered once, when created or rotated; never again."""

    secret = serializers.SerializerMethodField()

    class Meta(WebhookEndpointSerializer.Meta):
        fields = [*WebhookEndpointSerializer.Meta.fields, "secret"]
        read_only_fields = fields

    def get_secret(self, obj: WebhookEndpoint) -> str:
        return str(self.context.get("secret", ""))


class WebhookEndpointInputSerializer(serializers.Serializer[Any]):
    url = serializers.CharField(max_length=URL_MAX_LENGTH)
    description = serializers.CharField(max_length=200, required=False, allow_blank=True)
    event_types = serializers.ListField(
        child=serializers.CharField(max_length=64), required=False, max_length=20
    )
    enabled = serializers.BooleanField(required=False)


class WebhookDeliverySerializer(OutputModelSerializer[WebhookDelivery]):
    class Meta:
        model = WebhookDelivery
        fields = [
            "id", "endpoint", "event_type", "event_id", "status", "attempts", "last_status_code",
            "last_error", "response_excerpt", "last_attempt_at", "next_attempt_at", "delivered_at",
            "created_at",
        ]  # fmt: skip
        read_only_fields = fields


class WebhookDeliveryDetailSerializer(WebhookDeliverySerializer):
    class Meta(WebhookDeliverySerializer.Meta):
        fields = [*WebhookDeliverySerializer.Meta.fields, "payload"]
        read_only_fields = fields


class WebhookDeliveryFilterSerializer(serializers.Serializer[Any]):
    endpoint = serializers.IntegerField(required=False, min_value=1)
    status = serializers.ChoiceField(choices=WebhookDelivery.Status.values, required=False)
