"""Portal: a call recording's file, played on the call page or downloaded (the viewer's tenant's only)."""

from __future__ import annotations

from django.http import FileResponse, Http404, HttpRequest
from django.urls import path

from portal.access import PortalRequest, portal_view
from recordings.api.views import recording_download_response
from recordings.selectors import recording_for_download


def _file(request: HttpRequest, pk: int, *, attachment: bool) -> FileResponse:
    req: PortalRequest = request  # type: ignore[assignment]
    recording = recording_for_download(tenant=req.portal.tenant, recording_id=pk)
    if recording is None:
        raise Http404("No such recording.")
    response = recording_download_response(recording)
    if not attachment:  # the page's player: shown inline
        response["Content-Disposition"] = response["Content-Disposition"].replace("attachment", "inline", 1)
    return response


@portal_view()
def download(request: HttpRequest, pk: int) -> FileResponse:
    return _file(request, pk, attachment=True)


@portal_view()
def play(request: HttpRequest, pk: int) -> FileResponse:
    return _file(request, pk, attachment=False)


urlpatterns = [
    path("<int:pk>/download", download, name="recording-download"),
    path("<int:pk>/play", play, name="recording-play"),
]
