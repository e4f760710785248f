"""``/api/v1/recordings``: a tenant's call recordings, and their files (access checked, streamed)."""

from __future__ import annotations

from types import ModuleType
from typing import Any, ClassVar

from django.db.models import QuerySet
from django.http import FileResponse, Http404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import mixins
from rest_framework.decorators import action
from rest_framework.request import Request

from orchestrator.viewsets import TenantViewSet
from recordings import selectors
from recordings.api import serializers as s
from recordings.models import Recording
from recordings.services.files import recording_open

CONTENT_TYPES = {"wav": "audio/wav", "wav16": "audio/wav"}


class RecordingViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, TenantViewSet):
    serializer_class = s.RecordingSerializer
    selectors: ClassVar[ModuleType | None] = selectors
    selector = "recording_list"
    model = Recording

    def get_queryset(self) -> QuerySet[Any]:
        if getattr(self, "swagger_fake_view", False) or self.action != "list":
            return super().get_queryset()
        filters = self.query(s.RecordingFilterSerializer)
        return selectors.recording_list(
            tenant=self.tenant, campaign_id=filters.get("campaign"), attempt_id=filters.get("attempt")
        )

    @extend_schema(responses={(200, "audio/wav"): OpenApiResponse(OpenApiTypes.BINARY)})
    @action(detail=True, methods=["get"])
    def download(self, request: Request, pk: str) -> FileResponse:
        """The recording's file, streamed. Another tenant's recording, or one not stored, is 404."""
        try:
            recording_id = int(pk)
        except ValueError:
            raise Http404 from None
        recording = selectors.recording_for_download(tenant=self.tenant, recording_id=recording_id)
        if recording is None:
            raise Http404
        return recording_download_response(recording)


def recording_download_response(recording: Recording) -> FileResponse:
    """A streamed response of the recording's file (the API's and the portal's download)."""
    handle = recording_open(recording=recording)
    if handle is None:
        raise Http404
    response = FileResponse(
        handle,
        as_attachment=True,
        filename=f"{recording.name}.{'wav' if recording.format.startswith('wav') else recording.format}",
        content_type=CONTENT_TYPES.get(recording.format, "application/octet-stream"),
    )
    response["Cache-Control"] = "private, no-store"
    return response
