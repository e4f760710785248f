"""Portal pages: contact imports (a CSV of contacts into a campaign).

Three steps: the upload (a campaign and a file; ``?campaign=`` preselects one), the mapping of the file's
columns to what each is (phone number, name, time zone, a template variable, or nothing), then the import's
page. Between the first two steps the upload is kept in the cache (on Redis) under an unguessable token of
the tenant and user, for an hour. The mapping rewrites the file (``import_file_remap``) and submits it through
``leads_import_submit``, as ``POST /api/v1/campaigns/{id}/import`` does, but always queued, so the import's
page shows a progress bar that follows the worker's batches (the service publishes ``import-<id>`` on the
live stream after each one; the page also polls every second while it runs), then the row-level report,
which downloads as CSV.
"""

from __future__ import annotations

import secrets
from typing import Any

from django.contrib import messages
from django.core.cache import cache
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import path

from campaigns.models import Campaign, ContactImport
from campaigns.selectors import campaign_list, contact_import_log
from campaigns.services.imports import (
    MAP_CHOICES,
    MAX_IMPORT_BYTES,
    import_file_preview,
    import_file_remap,
    import_mapping_check,
    leads_import_submit,
)
from campaigns.tasks import run_contact_import
from orchestrator.errors import InvalidInput
from orchestrator.exports import csv_lines
from portal.access import PortalRequest, portal_audit, portal_view
from portal.forms import Bound
from portal.pagination import paginate

UPLOAD_TTL_S = 3600
MAP_LABELS = {
    "phone_number": "Phone number",
    "name": "Name",
    "timezone": "Time zone",
    "variable": "Variable",
    "ignore": "Ignore",
}
_ENDED = (ContactImport.Status.DONE, ContactImport.Status.FAILED)
REPORT_PAGE_SIZE = 100


def _portal(request: HttpRequest) -> PortalRequest:
    return request  # type: ignore[return-value]


def _open_campaigns(request: PortalRequest) -> list[Campaign]:
    closed = (Campaign.Status.ARCHIVED, Campaign.Status.COMPLETED)
    return [c for c in campaign_list(tenant=request.portal.tenant) if c.status not in closed]


def _upload_key(request: PortalRequest, token: str) -> str:
    return f"portal:import-upload:{request.portal.tenant.pk}:{request.portal.user.pk}:{token}"


def _percent(done: int, total: int) -> int:
    return min(100, round(100 * done / total)) if total else 0


# ----------------------------------------------------------------------------------------------- list


@portal_view()
def index(request: HttpRequest) -> HttpResponse:
    req = _portal(request)
    campaign = request.GET.get("campaign", "")
    campaign_id = int(campaign) if campaign.isdigit() and len(campaign) < 10 else None
    page = paginate(request, contact_import_log(tenant=req.portal.tenant, campaign_id=campaign_id))
    rows = [(imp, _percent(imp.rows_done, imp.rows_total)) for imp in page.object_list]
    running = any(imp.status not in _ENDED for imp, _ in rows)
    context = {"page": page, "rows": rows, "running": running}
    if request.headers.get("HX-Request"):
        return render(request, "portal/imports/_list.html", context)
    return render(request, "portal/imports/index.html", context)


# --------------------------------------------------------------------------------------------- upload


@portal_view()
def new(request: HttpRequest) -> HttpResponse:
    req = _portal(request)
    campaigns = _open_campaigns(req)
    form = Bound(values={"campaign": request.GET.get("campaign", "")})
    if request.method == "POST":
        form = Bound(values={"campaign": request.POST.get("campaign", "")}, submitted=True)
        by_id = {str(c.pk): c for c in campaigns}
        campaign = by_id.get(request.POST.get("campaign", ""))
        if campaign is None:
            form.add_error("campaign", "Choose the campaign to import the contacts into.")
        upload = request.FILES.get("file")
        data = b""
        if upload is None:
            form.add_error("file", "Choose a CSV file.")
        elif upload.size is not None and upload.size > MAX_IMPORT_BYTES:
            form.add_error("file", f"larger than {MAX_IMPORT_BYTES // (1024 * 1024)} MiB")
        else:
            data = upload.read()
            try:
                preview = import_file_preview(data=data)
                if preview.rows == 0:
                    form.add_error("file", "has a header but no rows to import")
            except InvalidInput as exc:
                form.add_invalid(exc)
        if campaign is not None and not form.errors:
            token = secrets.token_urlsafe(18)
            cache.set(
                _upload_key(req, token),
                {"data": data, "name": (upload and upload.name or "")[:200], "campaign": campaign.pk},
                UPLOAD_TTL_S,
            )
            return redirect("portal:import-map", token=token)
        status = 400
    else:
        status = 200
    return render(
        request,
        "portal/imports/new.html",
        {
            "form": form,
            "campaign_choices": [(c.pk, c.name) for c in campaigns],
            "has_campaigns": bool(campaigns),
        },
        status=status,
    )


# -------------------------------------------------------------------------------------------- mapping


@portal_view()
def map_columns(request: HttpRequest, token: str) -> HttpResponse:
    req = _portal(request)
    pending = cache.get(_upload_key(req, token))
    if pending is None:
        messages.error(request, "That upload has expired or was already imported: upload the file again.")
        return redirect("portal:import-new")
    campaign = get_object_or_404(campaign_list(tenant=req.portal.tenant), pk=pending["campaign"])
    preview = import_file_preview(data=pending["data"])
    mapping = list(zip(preview.guesses, preview.variable_names, strict=True))
    column_errors: dict[int, str] = {}
    form_error = ""
    status = 200
    if request.method == "POST":
        mapping = [
            (request.POST.get(f"col-{i}", ""), request.POST.get(f"var-{i}", "").strip())
            for i in range(len(preview.header))
        ]
        column_errors = import_mapping_check(mapping=mapping)
        form_error = column_errors.get(-1, "")
        if not column_errors:
            try:
                submitted = leads_import_submit(
                    campaign=campaign,
                    data=import_file_remap(data=pending["data"], mapping=mapping),
                    created_by=req.portal.user.get_username(),
                    enqueue=run_contact_import.delay,
                    inline_max_rows=0,  # always queued: the import's page shows its progress
                )
            except InvalidInput as exc:
                form_error = exc.message if exc.field == "file" else f"{exc.field}: {exc.message}"
            else:
                cache.delete(_upload_key(req, token))
                queued = submitted.queued
                if queued is None:  # nothing to queue (no row): nothing was written either
                    messages.info(request, "The file has no rows to import.")
                    return redirect("portal:imports")
                portal_audit(
                    request,
                    "import.create",
                    f"import {queued.pk} into campaign {campaign.pk} ({campaign.name})",
                    file=pending["name"],
                    rows=queued.rows_total,
                )
                messages.success(request, f"Import of {queued.rows_total} rows started.")
                return redirect("portal:import", pk=queued.pk)
        status = 400
    columns = []
    for i, column in enumerate(preview.header):
        choice, variable = mapping[i]
        columns.append(
            {
                "index": i,
                "header": column,
                "choice": choice,
                "variable": variable,
                "samples": [row[i] if i < len(row) else "" for row in preview.sample],
                "error": column_errors.get(i, ""),
            }
        )
    return render(
        request,
        "portal/imports/map.html",
        {
            "campaign": campaign,
            "file_name": pending["name"],
            "rows": preview.rows,
            "columns": columns,
            "choices": [(c, MAP_LABELS[c]) for c in MAP_CHOICES],
            "form_error": form_error,
            "token": token,
        },
        status=status,
    )


# --------------------------------------------------------------------------------------------- detail


def _import_context(request: PortalRequest, imp: ContactImport) -> dict[str, Any]:
    report: dict[str, Any] = imp.report or {}
    errors = report.get("errors") or []
    page = Paginator(errors, REPORT_PAGE_SIZE).get_page(request.GET.get("page"))
    return {
        "imp": imp,
        "ended": imp.status in _ENDED,
        "pct": 100 if imp.status == ContactImport.Status.DONE else _percent(imp.rows_done, imp.rows_total),
        "report": report,
        "errors_page": page,
        "error_count": len(errors) + int(report.get("errors_not_shown") or 0),
        "warnings": report.get("warnings") or [],
    }


def _get_import(request: PortalRequest, pk: int) -> ContactImport:
    return get_object_or_404(contact_import_log(tenant=request.portal.tenant), pk=pk)


@portal_view()
def detail(request: HttpRequest, pk: int) -> HttpResponse:
    req = _portal(request)
    return render(request, "portal/imports/detail.html", _import_context(req, _get_import(req, pk)))


@portal_view()
def progress(request: HttpRequest, pk: int) -> HttpResponse:
    req = _portal(request)
    return render(request, "portal/imports/_progress.html", _import_context(req, _get_import(req, pk)))


@portal_view()
def report_csv(request: HttpRequest, pk: int) -> StreamingHttpResponse:
    req = _portal(request)
    imp = _get_import(req, pk)
    if imp.report is None:
        raise Http404("The import has no report yet.")
    report = imp.report
    rows: list[list[Any]] = [
        ["error", e.get("row"), e.get("field"), e.get("message")] for e in report.get("errors") or []
    ]
    if report.get("errors_not_shown"):
        rows.append(["error", "", "", f"{report['errors_not_shown']} more rows refused, not listed"])
    rows += [["warning", "", w.get("column"), w.get("message")] for w in report.get("warnings") or []]
    response = StreamingHttpResponse(
        csv_lines(["kind", "row", "field", "message"], rows), content_type="text/csv; charset=utf-8"
    )
    response["Content-Disposition"] = f'attachment; filename="import-{imp.pk}-report.csv"'
    return response


urlpatterns = [
    path("", index, name="imports"),
    path("new", new, name="import-new"),
    path("new/<str:token>/map", map_columns, name="import-map"),
    path("<int:pk>/", detail, name="import"),
    path("<int:pk>/progress", progress, name="import-progress"),
    path("<int:pk>/report.csv", report_csv, name="import-report-csv"),
]
