"""Portal pages: transfer targets (a number, a queue, or a round-robin group of sales reps with their caps).

The list (each rep with their live transfers now), the create form (validated by the REST API's
``TransferTargetInputSerializer``; a group's reps one a line as ``name, number, cap``), the target's page
(its settings, validated by ``TransferTargetUpdateSerializer``, and its reps: add, change the cap, enable or
disable, remove), and delete. Writes go through ``campaigns.services.transfers`` as the API's do. A
campaign picks its targets on the campaign form (the partial ``transfers/_campaign_targets.html``).
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import path

from campaigns.api.transfers import (
    TransferMemberInputSerializer,
    TransferTargetInputSerializer,
    TransferTargetUpdateSerializer,
)
from campaigns.models_transfers import TransferKind, TransferMode, TransferTarget
from campaigns.services.transfers import (
    transfer_member_add,
    transfer_member_remove,
    transfer_member_update,
    transfer_target_create,
    transfer_target_delete,
    transfer_target_update,
)
from campaigns.transfer_selectors import transfer_target_list
from orchestrator.errors import InvalidInput
from portal.access import PortalRequest, portal_audit, portal_view
from portal.forms import Bound, bind, initial
from portal.pagination import paginate


def _req(request: HttpRequest) -> PortalRequest:
    return request  # type: ignore[return-value]


def _target(request: HttpRequest, pk: int) -> TransferTarget:
    return get_object_or_404(transfer_target_list(tenant=_req(request).portal.tenant), pk=pk)


def _label(target: TransferTarget) -> str:
    return f"transfer target {target.pk} ({target.name})"


def parse_reps(text: str) -> list[dict[str, Any]]:
    """``name, number[, cap]`` one a line as the API's ``members``; a line it cannot split is passed on as
    it is (its number then fails validation, naming the line)."""
    reps: list[dict[str, Any]] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        parts = [part.strip() for part in line.split(",")]
        rep: dict[str, Any] = {"name": parts[0], "number": parts[1] if len(parts) > 1 else ""}
        if len(parts) > 2 and parts[2]:
            rep["max_concurrent"] = int(parts[2]) if parts[2].isdigit() else parts[2]
        reps.append(rep)
    return reps


@portal_view()
def index(request: HttpRequest) -> HttpResponse:
    page = paginate(request, transfer_target_list(tenant=_req(request).portal.tenant))
    return render(request, "portal/transfers/list.html", {"page": page})


def _render_new(request: HttpRequest, form: Bound, status: int = 200) -> HttpResponse:
    context = {"form": form, "kinds": TransferKind.choices, "modes": TransferMode.choices}
    return render(request, "portal/transfers/form.html", context, status=status)


@portal_view()
def new(request: HttpRequest) -> HttpResponse:
    if request.method != "POST":
        return _render_new(request, initial({"kind": "number", "mode": "warm", "reps": ""}))
    tenant = _req(request).portal.tenant
    extra = (
        {"members": parse_reps(request.POST.get("reps", ""))} if request.POST.get("kind") == "group" else {}
    )
    bound = bind(TransferTargetInputSerializer, request.POST, context={"tenant": tenant}, extra=extra)
    created = None
    if bound.ok:
        try:
            created = transfer_target_create(tenant=tenant, **bound.data)
        except InvalidInput as exc:
            bound.add_invalid(exc)
    if created is None:
        if any(name.startswith("members") for name in bound.errors):  # shown beside the reps' box
            bound.errors.setdefault("reps", []).extend(
                f"{name}: {message}" for name, msgs in bound.errors.items() if name.startswith("members")
                for message in msgs
            )  # fmt: skip
        return _render_new(request, bound, status=400)
    portal_audit(request, "transfer_target.create", _label(created))
    messages.success(request, "Transfer target created.")
    return redirect("portal:transfer-target", pk=created.pk)


def _render_detail(
    request: HttpRequest,
    target: TransferTarget,
    form: Bound | None = None,
    rep: Bound | None = None,
    status: int = 200,
) -> HttpResponse:
    form = form or initial(
        {"name": target.name, "number": target.number, "endpoint": target.endpoint, "mode": target.mode}
    )
    context = {
        "target": target,
        "form": form,
        "rep": rep or initial({"max_concurrent": 1}),
        "modes": TransferMode.choices,
        "members": list(target.members.all()),
    }
    return render(request, "portal/transfers/detail.html", context, status=status)


@portal_view()
def detail(request: HttpRequest, pk: int) -> HttpResponse:
    """The target's page; a POST saves its settings."""
    target = _target(request, pk)
    if request.method != "POST":
        return _render_detail(request, target)
    bound = bind(TransferTargetUpdateSerializer, request.POST, partial=True)
    saved = None
    if bound.ok:
        try:
            saved = transfer_target_update(target=target, **bound.data)
        except InvalidInput as exc:
            bound.add_invalid(exc)
    if saved is None:
        return _render_detail(request, _target(request, pk), form=bound, status=400)
    portal_audit(request, "transfer_target.update", _label(saved), fields=sorted(bound.data))
    messages.success(request, "Transfer target saved.")
    return redirect("portal:transfer-target", pk=pk)


@portal_view()
def member_add(request: HttpRequest, pk: int) -> HttpResponse:
    target = _target(request, pk)
    if request.method != "POST":
        return redirect("portal:transfer-target", pk=pk)
    bound = bind(TransferMemberInputSerializer, request.POST)
    if bound.ok:
        try:
            transfer_member_add(target=target, data=dict(bound.data))
        except InvalidInput as exc:
            bound.add_invalid(exc)
    if not bound.ok:
        for name in list(bound.errors):  # the service names them member.<field>
            if name.startswith("member."):
                bound.errors.setdefault(name.removeprefix("member."), []).extend(bound.errors.pop(name))
        return _render_detail(request, target, rep=bound, status=400)
    portal_audit(request, "transfer_target.member_add", _label(target))
    messages.success(request, "Rep added.")
    return redirect("portal:transfer-target", pk=pk)


@portal_view()
def member_change(request: HttpRequest, pk: int, member_id: int) -> HttpResponse:
    """Remove a rep, or change their cap / switch them on or off (one POST per button)."""
    target = _target(request, pk)
    member = get_object_or_404(target.members.all(), pk=member_id)
    if request.method == "POST":
        action = request.POST.get("action")
        try:
            if action == "remove":
                transfer_member_remove(member=member)
            elif action == "toggle":
                transfer_member_update(member=member, data={"enabled": not member.enabled})
            elif action == "cap":
                cap = request.POST.get("max_concurrent", "")
                transfer_member_update(
                    member=member, data={"max_concurrent": int(cap) if cap.isdigit() else cap}
                )
        except InvalidInput as exc:
            messages.error(request, str(exc))
        else:
            portal_audit(request, f"transfer_target.member_{action}", _label(target), member=member.pk)
    return redirect("portal:transfer-target", pk=pk)


@portal_view()
def delete(request: HttpRequest, pk: int) -> HttpResponse:
    target = _target(request, pk)
    if request.method == "POST":
        transfer_target_delete(target=target)
        portal_audit(request, "transfer_target.delete", _label(target))
        messages.success(request, "Transfer target deleted.")
        return redirect("portal:transfer-targets")
    return redirect("portal:transfer-target", pk=pk)


urlpatterns = [
    path("", index, name="transfer-targets"),
    path("new", new, name="transfer-target-new"),
    path("<int:pk>/", detail, name="transfer-target"),
    path("<int:pk>/delete", delete, name="transfer-target-delete"),
    path("<int:pk>/members", member_add, name="transfer-target-member-add"),
    path("<int:pk>/members/<int:member_id>", member_change, name="transfer-target-member"),
]
