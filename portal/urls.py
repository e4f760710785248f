"""The portal's routes (namespace ``portal``), mounted at the site's root. Each views module of a domain
(``portal/views/<domain>.py``) lists its own ``urlpatterns``."""

from django.urls import include, path

from portal import live
from portal.views import (
    after_hours,
    agents,
    auth,
    calls,
    campaigns,
    compliance,
    dashboard,
    dnc,
    imports,
    transfers,
)
from portal.views import integrations as portal_integrations
from portal.views import recordings as recording_views
from portal.views import results as portal_results
from portal.views import settings as tenant_settings

app_name = "portal"

urlpatterns = [
    *auth.urlpatterns,
    path("", dashboard.dashboard, name="dashboard"),
    path("dashboard/figures", dashboard.figures, name="dashboard-figures"),
    path("live", live.events, name="live"),
    path("campaigns/", include(campaigns.urlpatterns)),
    path("campaigns/", include(portal_results.urlpatterns)),
    path("agents/", include(agents.urlpatterns)),
    path("calls/", include(calls.urlpatterns)),
    path("imports/", include(imports.urlpatterns)),
    path("dnc/", include(dnc.urlpatterns)),
    path("after-hours/", include(after_hours.urlpatterns)),
    path("settings/", include(tenant_settings.urlpatterns)),
    path("compliance/", include(compliance.urlpatterns)),
    path("recordings/", include(recording_views.urlpatterns)),
    path("transfer-targets/", include(transfers.urlpatterns)),
    path("settings/outgoing-webhooks/", include(portal_integrations.urlpatterns)),
]
