"""``/api/v1/`` routes of tenancy (no trailing slashes, like campaigns/api/urls.py)."""

from __future__ import annotations

from rest_framework.routers import SimpleRouter

from tenants.api import views

router = SimpleRouter(trailing_slash=False)
router.register("api-keys", views.ApiKeyViewSet, basename="api-key")

urlpatterns = router.urls
