"""Provider webhook routes, under ``/webhooks/sms/`` (orchestrator/urls.py)."""

from django.urls import path

from messaging import views

urlpatterns = [
    path("twilio/<uuid:webhook_id>/inbound", views.twilio_inbound, name="sms-twilio-inbound"),
    path("twilio/<uuid:webhook_id>/status", views.twilio_status, name="sms-twilio-status"),
    path("telnyx/<uuid:webhook_id>", views.telnyx_webhook, name="sms-telnyx"),
]
