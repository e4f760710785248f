"""Portal pages: the do-not-call list, with the tenant's SMS opt-outs beside it.

Search (digits anywhere in the number), add (validated by the API's ``DncInputSerializer``, written by
``dnc_add``), remove (``dnc_remove``), and import a CSV of numbers (``dnc_import_csv``). The SMS opt-outs
come from messaging's selectors: a number that opted out of texts is not on the call list by itself, so each
opt-out not on it has a button that puts it there.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import path

from campaigns.api.serializers import DncInputSerializer
from campaigns.models import DncEntry
from campaigns.selectors import dnc_list, dnc_numbers_among, dnc_search
from campaigns.services.dnc import dnc_add, dnc_remove
from campaigns.services.imports import MAX_IMPORT_BYTES, dnc_import_csv
from messaging.selectors import opt_out_list, opt_out_search, opted_out_numbers
from orchestrator.errors import InvalidInput
from portal.access import PortalRequest, portal_audit, portal_view
from portal.forms import Bound, bind
from portal.pagination import paginate

OPT_OUT_PAGE_SIZE = 25
_REPORT_KEY = "portal_dnc_import_report"


def _page_context(
    request: HttpRequest, *, form: Bound | None = None, import_form: Bound | None = None
) -> dict[str, Any]:
    req: PortalRequest = request  # type: ignore[assignment]
    tenant = req.portal.tenant
    q = request.GET.get("q", "").strip()
    page = paginate(request, dnc_search(tenant=tenant, number=q))
    entries = list(page.object_list)
    opted = opted_out_numbers(tenant=tenant, phone_numbers=[e.phone_number for e in entries])
    opt_page = Paginator(opt_out_search(tenant=tenant, number=q), OPT_OUT_PAGE_SIZE).get_page(
        request.GET.get("opt_page")
    )
    opt_outs = list(opt_page.object_list)
    listed = dnc_numbers_among(tenant=tenant, phone_numbers=[o.phone_number for o in opt_outs])
    query = request.GET.copy()
    opt_links = {}
    for name, number in (
        ("prev", opt_page.previous_page_number() if opt_page.has_previous() else None),
        ("next", opt_page.next_page_number() if opt_page.has_next() else None),
    ):
        if number is not None:
            query["opt_page"] = str(number)
            opt_links[name] = query.urlencode()
    return {
        "q": q,
        "page": page,
        "rows": [(e, e.phone_number in opted) for e in entries],
        "opt_page": opt_page,
        "opt_rows": [(o, o.phone_number in listed) for o in opt_outs],
        "opt_links": opt_links,
        "form": form or Bound(),
        "import_form": import_form or Bound(),
        "import_report": request.session.pop(_REPORT_KEY, None),
    }


@portal_view()
def index(request: HttpRequest) -> HttpResponse:
    return render(request, "portal/dnc/index.html", _page_context(request))


@portal_view()
def add(request: HttpRequest) -> HttpResponse:
    req: PortalRequest = request  # type: ignore[assignment]
    form = bind(DncInputSerializer, request.POST, context={"tenant": req.portal.tenant})
    if form.ok:
        try:
            entry = dnc_add(tenant=req.portal.tenant, source=DncEntry.Source.ADMIN, **form.data)
        except InvalidInput as exc:
            form.add_invalid(exc)
        else:
            portal_audit(request, "dnc.add", f"DNC {entry.phone_number}", note=entry.note)
            messages.success(request, f"{entry.phone_number} is on the do-not-call list.")
            return redirect("portal:dnc")
    return render(request, "portal/dnc/index.html", _page_context(request, form=form), status=400)


@portal_view()
def remove(request: HttpRequest, pk: int) -> HttpResponse:
    req: PortalRequest = request  # type: ignore[assignment]
    entry = get_object_or_404(dnc_list(tenant=req.portal.tenant), pk=pk)
    dnc_remove(tenant=req.portal.tenant, phone_number=entry.phone_number)
    portal_audit(request, "dnc.remove", f"DNC {entry.phone_number}")
    messages.success(request, f"{entry.phone_number} is no longer on the do-not-call list.")
    return redirect("portal:dnc")


@portal_view()
def from_opt_out(request: HttpRequest, pk: int) -> HttpResponse:
    """Put a number that opted out of texts on the do-not-call list too."""
    req: PortalRequest = request  # type: ignore[assignment]
    opt_out = get_object_or_404(opt_out_list(tenant=req.portal.tenant), pk=pk)
    try:
        entry = dnc_add(
            tenant=req.portal.tenant,
            phone_number=opt_out.phone_number,
            source=DncEntry.Source.OPT_OUT,
            note="opted out of text messages",
        )
    except InvalidInput as exc:
        messages.error(request, f"{opt_out.phone_number}: {exc.message}")
        return redirect("portal:dnc")
    portal_audit(request, "dnc.add", f"DNC {entry.phone_number}", from_sms_opt_out=True)
    messages.success(request, f"{entry.phone_number} is on the do-not-call list.")
    return redirect("portal:dnc")


@portal_view()
def import_numbers(request: HttpRequest) -> HttpResponse:
    req: PortalRequest = request  # type: ignore[assignment]
    form = Bound(values={"note": request.POST.get("note", "")}, submitted=True)
    upload = request.FILES.get("file")
    if upload is None:
        form.add_error("file", "Choose a CSV file of phone numbers.")
    elif upload.size is not None and upload.size > MAX_IMPORT_BYTES:
        form.add_error("file", f"larger than {MAX_IMPORT_BYTES // (1024 * 1024)} MiB")
    else:
        try:
            report = dnc_import_csv(
                tenant_id=req.portal.tenant.pk, data=upload.read(), note=request.POST.get("note", "")[:2000]
            )
        except InvalidInput as exc:
            form.add_invalid(exc)
        else:
            portal_audit(
                request,
                "dnc.import",
                f"DNC import of {(upload.name or 'a file')[:200]}",
                added=report["added"],
                already=report["already"],
                refused=len(report["errors"]) + report["errors_not_shown"],
            )
            request.session[_REPORT_KEY] = report
            messages.success(
                request,
                f"{report['added']} number(s) added, {report['already']} already on the list"
                + (
                    f", {len(report['errors']) + report['errors_not_shown']} row(s) refused."
                    if report["errors"]
                    else "."
                ),
            )
            return redirect("portal:dnc")
    return render(request, "portal/dnc/index.html", _page_context(request, import_form=form), status=400)


urlpatterns = [
    path("", index, name="dnc"),
    path("add", add, name="dnc-add"),
    path("import", import_numbers, name="dnc-import"),
    path("<int:pk>/remove", remove, name="dnc-remove"),
    path("opt-outs/<int:pk>/add", from_opt_out, name="dnc-from-opt-out"),
]
