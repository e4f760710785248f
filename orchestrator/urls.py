from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from flows.views import ack_link
from orchestrator.metrics import metrics
from orchestrator.views import healthz

# Django's error pages, in JSON under /api/ (HTML elsewhere): orchestrator/http_errors.py.
handler400 = "orchestrator.http_errors.bad_request"
handler403 = "orchestrator.http_errors.permission_denied"
handler404 = "orchestrator.http_errors.page_not_found"
handler500 = "orchestrator.http_errors.server_error"

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("metrics", metrics, name="metrics"),
    path("admin/", admin.site.urls),
    path("api/v1/", include("campaigns.api.urls")),
    path("api/v1/", include("tenants.api.urls")),
    path("api/v1/", include("messaging.api.urls")),
    path("webhooks/sms/", include("messaging.urls")),
    path("api/v1/", include("flows.api.urls")),
    path("api/v1/", include("recordings.api.urls")),
    path("api/v1/", include("integrations.api.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    # Signed acknowledgement links sent in page SMS (flows/views.py).
    path("ack/<str:token>", ack_link, name="flows-ack"),
    # The tenant portal (portal/urls.py): the dashboard at /, sign-in, and a page per domain.
    path("", include("portal.urls")),
]
