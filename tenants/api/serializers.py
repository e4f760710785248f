"""REST serializers for tenancy: API keys. A key's secret is shown only in the answer that creates it."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from orchestrator.api import OutputModelSerializer
from tenants.models import ApiKey


class ApiKeySerializer(OutputModelSerializer[ApiKey]):
    """A key as listed: its name and ``vco_<prefix>…`` (enough to tell keys apart), never its secret."""

    masked_key = serializers.SerializerMethodField()

    class Meta:
        model = ApiKey
        fields = ["id", "name", "prefix", "masked_key", "created_at", "last_used_at", "revoked_at"]
        read_only_fields = fields

    def get_masked_key(self, api_key: ApiKey) -> str:
        return f"vco_{api_key.prefix}…"


class ApiKeyCreatedSerializer(ApiKeySerializer):
    """The answer to creating a key: the one time its secret ``key`` is shown."""

    key = serializers.CharField(read_only=True, help_text="The API key: shown only now, store it.")

    class Meta(ApiKeySerializer.Meta):
        fields = [*ApiKeySerializer.Meta.fields, "key"]
        read_only_fields = fields


class ApiKeyInputSerializer(serializers.Serializer[Any]):
    name = serializers.CharField(max_length=100)
