from __future__ import annotations

from typing import Any

from rest_framework import serializers

from orchestrator.api import ObjectIdField, OutputModelSerializer
from recordings.models import Recording


class RecordingSerializer(OutputModelSerializer[Recording]):
    campaign = serializers.IntegerField(source="attempt.campaign_id", read_only=True)
    download_url = serializers.SerializerMethodField()

    class Meta:
        model = Recording
        fields = [
            "id",
            "attempt",
            "campaign",
            "name",
            "state",
            "format",
            "duration",
            "size",
            "sha256",
            "error",
            "created_at",
            "stored_at",
            "delete_after",
            "deleted_at",
            "download_url",
        ]
        read_only_fields = fields

    def get_download_url(self, recording: Recording) -> str | None:
        if recording.state != Recording.State.STORED:
            return None
        return f"/api/v1/recordings/{recording.pk}/download"


class RecordingFilterSerializer(serializers.Serializer[Any]):
    campaign = ObjectIdField(required=False)
    attempt = serializers.UUIDField(required=False)
