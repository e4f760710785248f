"""``/api/v1/`` routes of recordings (no trailing slashes, like campaigns/api)."""

from __future__ import annotations

from rest_framework.routers import DefaultRouter

from recordings.api import views

router = DefaultRouter(trailing_slash=False)
router.register("recordings", views.RecordingViewSet, basename="recording")

urlpatterns = router.urls
