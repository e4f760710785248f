"""``/api/v1/`` routes of messaging (no trailing slashes, like campaigns/api)."""

from __future__ import annotations

from rest_framework.routers import DefaultRouter

from messaging.api import views

router = DefaultRouter(trailing_slash=False)
router.register("messages", views.MessageViewSet, basename="message")
router.register("sms-opt-outs", views.OptOutViewSet, basename="sms-opt-out")
router.register("sms-accounts", views.SmsAccountViewSet, basename="sms-account")

urlpatterns = router.urls
