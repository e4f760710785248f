"""``/api/v1/`` routes of integrations (no trailing slashes, like campaigns/api)."""

from __future__ import annotations

from rest_framework.routers import DefaultRouter

from integrations.api import views

router = DefaultRouter(trailing_slash=False)
router.register("webhook-endpoints", views.WebhookEndpointViewSet, basename="webhook-endpoint")
router.register("webhook-deliveries", views.WebhookDeliveryViewSet, basename="webhook-delivery")

urlpatterns = router.urls
