"""The live dashboard: calls in progress against the caps, today's figures, the last hour as a chart.

The figures come from ``campaigns.selectors.tenant_call_figures`` (as ``GET /api/v1/dashboard`` does). The
page holds an SSE stream (portal/live.py) and re-reads its figures partial on each ``calls`` event (and every
10 s in any case), so it follows the calls without a reload.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone

from campaigns.selectors import tenant_call_figures
from portal.access import PortalRequest, portal_view


def _context(request: PortalRequest) -> dict[str, object]:
    figures = tenant_call_figures(tenant=request.portal.tenant, now=timezone.now())
    live = figures["live"]
    hour = figures["last_hour"]
    chart = {
        "x": hour["minutes"],
        "series": [
            {"label": "placed", "values": hour["placed"]},
            {"label": "answered", "values": hour["answered"]},
            {"label": "ended", "values": hour["ended"]},
        ],
        "height": 220,
    }
    return {
        "figures": figures,
        "live_pct": min(100, round(100 * live["total"] / live["cap"])) if live["cap"] else 0,
        "chart": chart,
    }


@portal_view()
def dashboard(request: HttpRequest) -> HttpResponse:
    return render(request, "portal/dashboard/index.html", _context(request))  # type: ignore[arg-type]


@portal_view()
def figures(request: HttpRequest) -> HttpResponse:
    return render(request, "portal/dashboard/_figures.html", _context(request))  # type: ignore[arg-type]
