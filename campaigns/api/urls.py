"""``/api/v1/`` routes (no trailing slashes: ``/api/v1/campaigns/7/import``)."""

from __future__ import annotations

from rest_framework.routers import DefaultRouter

from campaigns.api import transfers, views

router = DefaultRouter(trailing_slash=False)
router.register("agent-profiles", views.AgentProfileViewSet, basename="agent-profile")
router.register("campaigns", views.CampaignViewSet, basename="campaign")
router.register("contacts", views.ContactViewSet, basename="contact")
router.register("leads", views.LeadViewSet, basename="lead")
router.register("attempts", views.AttemptViewSet, basename="attempt")
router.register("dnc", views.DncViewSet, basename="dnc")
router.register("pbxs", views.PbxViewSet, basename="pbx")
router.register("imports", views.ContactImportViewSet, basename="contact-import")
router.register("dashboard", views.DashboardViewSet, basename="dashboard")
router.register("transfer-targets", transfers.TransferTargetViewSet, basename="transfer-target")
router.register("call-transfers", transfers.CallTransferViewSet, basename="call-transfer")

urlpatterns = router.urls
