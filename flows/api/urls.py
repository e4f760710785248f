"""``/api/v1/`` routes of inbound flows and on-call (no trailing slashes, like campaigns' routes)."""

from __future__ import annotations

from rest_framework.routers import DefaultRouter

from flows.api import views

router = DefaultRouter(trailing_slash=False)
router.register("phone-numbers", views.PhoneNumberViewSet, basename="phone-number")
router.register("inbound-flows", views.InboundFlowViewSet, basename="inbound-flow")
router.register("oncall-people", views.OnCallPersonViewSet, basename="oncall-person")
router.register("oncall-groups", views.OnCallGroupViewSet, basename="oncall-group")
router.register("rotations", views.RotationViewSet, basename="rotation")
router.register("rotation-overrides", views.RotationOverrideViewSet, basename="rotation-override")
router.register("oncall", views.OnCallViewSet, basename="oncall")
router.register("escalation-policies", views.EscalationPolicyViewSet, basename="escalation-policy")
router.register("incidents", views.IncidentViewSet, basename="incident")
router.register("inbound-calls", views.InboundCallViewSet, basename="inbound-call")

urlpatterns = router.urls
