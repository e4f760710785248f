"""The tenant-scoped REST API (``/api/v1/``). Views only translate HTTP to service and selector calls:

* every queryset comes from a selector scoped by ``request.tenant``, and detail views look ids up in it, so
  another tenant's id is a 404 (DESIGN.md §5 rule 7);
* input serializers check types; the services check the rest and raise InvalidInput, answered as
  ``400 {"<field>": ["<message>"]}`` by orchestrator/api.py (rule 6);
* members read, admins/owners (and API keys) write; PBXs are for admins/owners only
  (tenants/api/permissions.py).
"""

from __future__ import annotations

from types import ModuleType
from typing import Any, ClassVar

from django.db.models import QuerySet
from django.http import StreamingHttpResponse
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import mixins, parsers, renderers, status
from rest_framework.decorators import action
from rest_framework.exceptions import PermissionDenied
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import BaseSerializer

from campaigns import selectors
from campaigns.amd import VOICEMAIL_UPLOAD_MAX_BYTES
from campaigns.api import serializers as s
from campaigns.exports import CONTENT_TYPES, campaign_export
from campaigns.models import (
    AgentProfile,
    CallAttempt,
    Campaign,
    ConsentKind,
    Contact,
    ContactImport,
    DncEntry,
    Lead,
    Pbx,
)
from campaigns.phone import normalize_phone_number
from campaigns.services.agents import agent_profile_create, agent_profile_delete, agent_profile_update
from campaigns.services.campaigns import (
    campaign_create,
    campaign_delete,
    campaign_pause,
    campaign_resume,
    campaign_set_voicemail_audio,
    campaign_start,
    campaign_update,
)
from campaigns.services.consent import consent_create, consent_revoke
from campaigns.services.contacts import contact_create, contact_delete, contact_update, lead_add
from campaigns.services.dnc import dnc_add, dnc_remove
from campaigns.services.imports import MAX_IMPORT_BYTES, leads_import_submit
from campaigns.services.pbx import PbxNotAllowed, pbx_create, pbx_delete, pbx_update
from campaigns.services.redial import campaign_redial
from campaigns.tasks import run_contact_import
from campaigns.variables import lead_brief_preview
from orchestrator.errors import InvalidInput
from orchestrator.viewsets import TenantViewSet as BaseTenantViewSet
from tenants.api.permissions import TenantAdminPermission


class CsvParser(parsers.BaseParser):
    """A raw ``text/csv`` body, read up to the import size cap (one byte more tells it was too big)."""

    media_type = "text/csv"

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        data = stream.read(MAX_IMPORT_BYTES + 1) if stream is not None else b""
        return {"file": data}


class JsonErrorsNegotiation(BaseContentNegotiation):
    """For a route that streams its own non-JSON body (the CSV export): whatever the client accepts (e.g.
    only ``text/csv``), an error is answered in JSON, never a 406."""

    def select_parser(self, request: Request, parsers: Any) -> Any:
        return parsers[0] if parsers else None

    def select_renderer(self, request: Request, renderers: Any, format_suffix: str | None = None) -> Any:
        json_renderer = renderers[0]
        return json_renderer, json_renderer.media_type


class TenantViewSet(BaseTenantViewSet):
    """Tenant scoping and the read/write role check for the viewsets below (orchestrator/viewsets.py)."""

    selectors: ClassVar[ModuleType | None] = selectors


class _UpdateDestroy(TenantViewSet):
    """PUT/PATCH/DELETE on a detail, through ``update_object`` / ``delete_object`` (the services)."""

    input_serializer: type[BaseSerializer[Any]]

    def update_object(self, instance: Any, changes: dict[str, Any]) -> Any:
        raise NotImplementedError

    def delete_object(self, instance: Any) -> None:
        raise NotImplementedError

    def update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        instance = self.get_object()
        changes = self.validated(self.input_serializer, partial=kwargs.pop("partial", False))
        return self.output(self.update_object(instance, dict(changes)))

    def partial_update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return self.update(request, *args, partial=True, **kwargs)

    def destroy(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        self.delete_object(self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)


def _write_schema(input_serializer: type[BaseSerializer[Any]]) -> Any:
    return extend_schema_view(
        create=extend_schema(request=input_serializer),
        update=extend_schema(request=input_serializer),
        partial_update=extend_schema(request=input_serializer),
    )


# ------------------------------------------------------------------------------------------------- agents


@_write_schema(s.AgentProfileInputSerializer)
class AgentProfileViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, _UpdateDestroy):
    serializer_class = s.AgentProfileSerializer
    input_serializer = s.AgentProfileInputSerializer
    selector = "agent_profile_list"
    model = AgentProfile

    def create(self, request: Request) -> Response:
        data = self.validated(s.AgentProfileInputSerializer)
        return self.output(agent_profile_create(tenant=self.tenant, **data), code=status.HTTP_201_CREATED)

    def update_object(self, instance: AgentProfile, changes: dict[str, Any]) -> AgentProfile:
        return agent_profile_update(agent=instance, **changes)

    def delete_object(self, instance: AgentProfile) -> None:
        agent_profile_delete(agent=instance)


# ---------------------------------------------------------------------------------------------- campaigns


@_write_schema(s.CampaignInputSerializer)
class CampaignViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, _UpdateDestroy):
    serializer_class = s.CampaignSerializer
    input_serializer = s.CampaignInputSerializer
    selector = "campaign_list"
    model = Campaign

    def create(self, request: Request) -> Response:
        data = self.validated(s.CampaignInputSerializer)
        return self.output(campaign_create(tenant=self.tenant, **data), code=status.HTTP_201_CREATED)

    def update_object(self, instance: Campaign, changes: dict[str, Any]) -> Campaign:
        return campaign_update(campaign=instance, **changes)

    def delete_object(self, instance: Campaign) -> None:
        campaign_delete(campaign=instance)

    @extend_schema(request=None)
    @action(detail=True, methods=["post"])
    def start(self, request: Request, pk: str) -> Response:
        return self.output(campaign_start(campaign=self.get_object()))

    @extend_schema(request=None)
    @action(detail=True, methods=["post"])
    def pause(self, request: Request, pk: str) -> Response:
        return self.output(campaign_pause(campaign=self.get_object()))

    @extend_schema(request=None)
    @action(detail=True, methods=["post"])
    def resume(self, request: Request, pk: str) -> Response:
        return self.output(campaign_resume(campaign=self.get_object()))

    @extend_schema(
        request=s.RedialInputSerializer,
        responses={201: s.CampaignSerializer},
        description=(
            "A new draft campaign with this one's settings and the leads whose last outcome is in outcomes "
            "(default: voicemail, voicemail_left, machine_detected, no_answer, busy), numbers on the DNC "
            "list left out. The campaign must be completed, paused or archived."
        ),
    )
    @action(detail=True, methods=["post"])
    def redial(self, request: Request, pk: str) -> Response:
        campaign = self.get_object()  # another tenant's campaign is a 404 whatever the body
        data = self.validated(s.RedialInputSerializer)
        copy = campaign_redial(campaign=campaign, **data)
        return self.output(copy, code=status.HTTP_201_CREATED)

    @extend_schema(responses=s.CampaignStatsSerializer)
    @action(detail=True, methods=["get"])
    def stats(self, request: Request, pk: str) -> Response:
        return Response(selectors.campaign_stats(campaign=self.get_object()))

    @extend_schema(
        parameters=[s.ExportQuerySerializer],
        responses={
            (200, "text/csv"): OpenApiTypes.STR,
            (200, "application/x-ndjson"): OpenApiTypes.STR,
            (200, "application/json"): {"type": "array", "items": {"type": "object"}},
        },
        description=(
            "The campaign's results, streamed. of=leads (default): one row per lead: lead_id, contact_id, "
            "phone_number, name, timezone, status, attempts, last_outcome, disposition, last_call_at, "
            "callback_at, transferred_to, next_due_at, done_reason, summary. of=attempts: one row per call "
            "attempt: attempt_id, lead_id, contact_id, number, name, state, outcome, queued_at, "
            "originated_at, answered_at, ended_at, duration_s, cause, cause_txt, dialstatus, disposition, "
            "callback_at, transferred_to, summary. Then one result_<name> column per result field (CSV) or "
            "a results object (JSON). format=csv (default; cells a spreadsheet would run as a formula "
            "start with ', phone numbers are kept exact), jsonl (one JSON object a line) or json (an array)."
        ),
    )
    @action(
        detail=True,
        methods=["get"],
        renderer_classes=[renderers.JSONRenderer],
        content_negotiation_class=JsonErrorsNegotiation,
    )
    def export(self, request: Request, pk: str) -> StreamingHttpResponse:
        campaign = self.get_object()
        query = self.query(s.ExportQuerySerializer)
        of, fmt = query["of"], query["format"]
        response = StreamingHttpResponse(
            campaign_export(campaign=campaign, of=of, fmt=fmt), content_type=CONTENT_TYPES[fmt]
        )
        name = "results" if of == "leads" else "attempts"
        response["Content-Disposition"] = f'attachment; filename="campaign-{campaign.pk}-{name}.{fmt}"'
        return response

    @extend_schema(
        request={
            "multipart/form-data": {
                "type": "object",
                "properties": {"file": {"type": "string", "format": "binary"}},
                "required": ["file"],
            }
        },
        responses={200: s.CampaignSerializer},
        description=(
            "POST: the campaign's recorded voicemail message, a PCM WAV (8 kHz or more, mono or stereo, at "
            "most 60 s) as multipart field 'file'; stored converted to 16-bit mono 24 kHz. DELETE: removed."
        ),
    )
    @action(
        detail=True,
        methods=["post", "delete"],
        url_path="voicemail-audio",
        parser_classes=[parsers.MultiPartParser],
    )
    def voicemail_audio(self, request: Request, pk: str) -> Response:
        campaign = self.get_object()
        if request.method == "DELETE":
            return self.output(campaign_set_voicemail_audio(campaign=campaign, wav=None))
        upload = request.data.get("file")
        if upload is None or upload == "" or not hasattr(upload, "read"):
            raise InvalidInput("file", "send the WAV as multipart field 'file'")
        if upload.size > VOICEMAIL_UPLOAD_MAX_BYTES:
            raise InvalidInput("file", f"larger than {VOICEMAIL_UPLOAD_MAX_BYTES // (1024 * 1024)} MiB")
        return self.output(campaign_set_voicemail_audio(campaign=campaign, wav=upload.read()))

    @extend_schema(
        request={
            "multipart/form-data": {
                "type": "object",
                "properties": {"file": {"type": "string", "format": "binary"}},
                "required": ["file"],
            },
            "text/csv": OpenApiTypes.STR,
        },
        responses={200: s.ImportReportSerializer, 202: s.ContactImportSerializer},
        description=(
            "CSV with a header row: phone_number (required), name, timezone; other columns become the "
            "contact's variables. Returns a row-level report; invalid rows never become leads. A file of "
            "more rows than the server's IMPORT_INLINE_MAX_ROWS (1,000 by default) is queued instead: "
            "202 with the import (its url in Location); poll GET /api/v1/imports/{id} until its status is "
            "done (its report) or failed (its error). A file that cannot be imported at all is a 400 "
            "either way."
        ),
    )
    @action(
        detail=True,
        methods=["post"],
        url_path="import",
        parser_classes=[parsers.MultiPartParser, CsvParser],
        # Parsing and writing up to 10,000 rows: a tighter per-tenant rate (orchestrator/throttling.py).
        throttle_scope="import",
    )
    def import_csv(self, request: Request, pk: str) -> Response:
        campaign = self.get_object()
        upload = request.data.get("file")
        if upload is None or upload == "":
            raise InvalidInput("file", "send the CSV as multipart field 'file' or as a text/csv body")
        if hasattr(upload, "size"):  # a multipart upload: check its size before reading it
            if upload.size > MAX_IMPORT_BYTES:
                raise InvalidInput("file", f"larger than {MAX_IMPORT_BYTES // (1024 * 1024)} MiB")
            upload = upload.read()
        submitted = leads_import_submit(
            campaign=campaign, data=upload, created_by=str(request.user), enqueue=run_contact_import.delay
        )
        if submitted.queued is None:
            return Response(submitted.report)
        body = s.ContactImportSerializer(submitted.queued, context=self.get_serializer_context()).data
        return Response(body, status=status.HTTP_202_ACCEPTED, headers={"Location": body["url"]})


# -------------------------------------------------------------------------------------------- imports


class ContactImportViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, TenantViewSet):
    """CSV imports queued by ``POST /campaigns/{id}/import`` (larger files): status, progress, report."""

    serializer_class = s.ContactImportSerializer
    selector = "contact_import_list"
    model = ContactImport


# ----------------------------------------------------------------------------------------------- contacts


@extend_schema_view(
    create=extend_schema(request=s.ContactInputSerializer),
    update=extend_schema(request=s.ContactUpdateSerializer),
    partial_update=extend_schema(request=s.ContactUpdateSerializer),
)
class ContactViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, _UpdateDestroy):
    serializer_class = s.ContactSerializer
    input_serializer = s.ContactUpdateSerializer
    selector = "contact_list"
    model = Contact

    def create(self, request: Request) -> Response:
        data = self.validated(s.ContactInputSerializer)
        return self.output(contact_create(tenant=self.tenant, **data), code=status.HTTP_201_CREATED)

    def update_object(self, instance: Contact, changes: dict[str, Any]) -> Contact:
        return contact_update(contact=instance, **changes)

    def delete_object(self, instance: Contact) -> None:
        contact_delete(contact=instance)

    @extend_schema(
        methods=["GET"],
        responses=s.ContactConsentSerializer(many=True),
        description="The contact's consents, newest first (paginated).",
    )
    @extend_schema(
        methods=["POST"],
        request=s.ContactConsentInputSerializer,
        responses=s.ContactConsentSerializer,
        description="Record a consent: kind, source (required), captured_at (required), evidence.",
    )
    @action(detail=True, methods=["get", "post"])
    def consents(self, request: Request, pk: str) -> Response:
        contact = self.get_object()
        if request.method == "GET":
            consents = selectors.contact_consent_list(tenant=self.tenant, contact_id=contact.pk)
            page = self.paginate_queryset(
                consents
            )  # paginated like every list (never None: pagination is on)
            return self.get_paginated_response(s.ContactConsentSerializer(page, many=True).data)
        data = self.validated(s.ContactConsentInputSerializer)
        consent = consent_create(
            contact=contact,
            kind=data.get("kind", ConsentKind.PRIOR_EXPRESS),
            source=data.get("source", ""),
            captured_at=data.get("captured_at"),
            evidence=data.get("evidence", ""),
        )
        return Response(s.ContactConsentSerializer(consent).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=None, responses=s.ContactConsentSerializer)
    @action(detail=True, methods=["post"], url_path=r"consents/(?P<consent_id>\d+)/revoke")
    def revoke_consent(self, request: Request, pk: str, consent_id: str) -> Response:
        contact = self.get_object()
        consents = selectors.contact_consent_list(tenant=self.tenant, contact_id=contact.pk)
        consent = get_object_or_404(consents, pk=int(consent_id))
        return Response(s.ContactConsentSerializer(consent_revoke(consent=consent)).data)


# -------------------------------------------------------------------------------------------------- leads


@extend_schema_view(
    list=extend_schema(parameters=[s.LeadFilterSerializer]),
    create=extend_schema(request=s.LeadInputSerializer),
)
class LeadViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, TenantViewSet):
    serializer_class = s.LeadSerializer
    selector = "lead_list"
    model = Lead

    def get_queryset(self) -> QuerySet[Any]:
        if getattr(self, "swagger_fake_view", False) or self.action != "list":
            return super().get_queryset()
        filters = self.query(s.LeadFilterSerializer)
        return selectors.lead_list(
            tenant=self.tenant, campaign_id=filters.get("campaign"), status=filters.get("status")
        )

    def create(self, request: Request) -> Response:
        data = self.validated(s.LeadInputSerializer)
        lead, created = lead_add(campaign=data["campaign"], contact=data["contact"])
        return self.output(lead, code=status.HTTP_201_CREATED if created else status.HTTP_200_OK)

    @extend_schema(responses=s.LeadWhySerializer)
    @action(detail=True, methods=["get"])
    def why(self, request: Request, pk: str) -> Response:
        lead = self.get_object()
        return Response(selectors.lead_why_not_dialed(tenant=self.tenant, lead_id=lead.pk))

    @extend_schema(
        responses=s.LeadBriefSerializer,
        description=(
            "The instructions and greeting a call to this lead would give the agent now (rendered by the "
            "code that writes the real call brief), the variables they use and those the contact lacks."
        ),
    )
    @action(detail=True, methods=["get"])
    def brief(self, request: Request, pk: str) -> Response:
        lead = self.get_object()
        return Response(lead_brief_preview(tenant=self.tenant, lead_id=lead.pk))


# ----------------------------------------------------------------------------------------------- attempts


@extend_schema_view(list=extend_schema(parameters=[s.AttemptFilterSerializer]))
class AttemptViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, TenantViewSet):
    serializer_class = s.AttemptSerializer
    selector = "attempt_list"
    model = CallAttempt

    def get_serializer_class(self) -> type[BaseSerializer[Any]]:
        return s.AttemptDetailSerializer if self.action == "retrieve" else s.AttemptSerializer

    def get_queryset(self) -> QuerySet[Any]:
        if getattr(self, "swagger_fake_view", False):
            return super().get_queryset()
        if self.action == "retrieve":
            return selectors.attempt_list_with_events(tenant=self.tenant)
        filters = self.query(s.AttemptFilterSerializer)
        # The list does not show the (possibly long) transcript and metrics: not read at all.
        return selectors.attempt_list(
            tenant=self.tenant,
            campaign_id=filters.get("campaign"),
            lead_id=filters.get("lead"),
            state=filters.get("state"),
            outcome=filters.get("outcome"),
        ).defer("transcript", "media_metrics")


# ---------------------------------------------------------------------------------------------------- DNC


@extend_schema_view(create=extend_schema(request=s.DncInputSerializer))
class DncViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, TenantViewSet):
    serializer_class = s.DncEntrySerializer
    selector = "dnc_list"
    model = DncEntry

    def create(self, request: Request) -> Response:
        data = self.validated(s.DncInputSerializer)
        entry = dnc_add(tenant=self.tenant, source=DncEntry.Source.API, **data)
        return self.output(entry, code=status.HTTP_201_CREATED)

    def destroy(self, request: Request, pk: str) -> Response:
        entry = self.get_object()
        dnc_remove(tenant=self.tenant, phone_number=entry.phone_number)
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(
        parameters=[OpenApiParameter("number", str, required=True, description="E.164, e.g. +14155550123")],
        responses=s.DncCheckResultSerializer,
    )
    @action(detail=False, methods=["get"])
    def check(self, request: Request) -> Response:
        number = normalize_phone_number(self.query(s.DncCheckSerializer)["number"], field="number")
        on_dnc = selectors.dnc_contains(tenant=self.tenant, phone_number=number)
        return Response({"number": number, "on_dnc": on_dnc})


# --------------------------------------------------------------------------------------------------- PBXs


@_write_schema(s.PbxInputSerializer)
class PbxViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, _UpdateDestroy):
    """The PBXs the tenant may place calls on: the platform's it is placed on (read-only) and, when the
    operator allows it, its own (create, change, delete; DESIGN.md §5 rule 8). Admins and owners only."""

    permission_classes = [TenantAdminPermission]
    serializer_class = s.PbxSerializer
    input_serializer = s.PbxInputSerializer
    selector = "pbx_list"
    model = Pbx

    def get_serializer(self, *args: Any, **kwargs: Any) -> Any:
        serializer = super().get_serializer(*args, **kwargs)
        instances = args[0] if args else None
        if instances is not None and not isinstance(serializer, s.PbxInputSerializer):
            rows = instances if isinstance(instances, list | QuerySet) else [instances]
            serializer.context["pbx_health"] = selectors.pbx_health(pbx_ids=[pbx.pk for pbx in rows])
        return serializer

    def create(self, request: Request) -> Response:
        data = self.validated(s.PbxInputSerializer)
        if not data.get("password"):
            raise InvalidInput("password", "This field is required.")
        try:
            pbx = pbx_create(owner=self.tenant, **data)
        except PbxNotAllowed as exc:
            raise PermissionDenied(str(exc)) from exc
        return self.output(self.get_queryset().get(pk=pbx.pk), code=status.HTTP_201_CREATED)

    def update_object(self, instance: Pbx, changes: dict[str, Any]) -> Pbx:
        try:
            pbx = pbx_update(pbx=instance, by_tenant=self.tenant, **changes)
        except PbxNotAllowed as exc:
            raise PermissionDenied(str(exc)) from exc
        return self.get_queryset().get(pk=pbx.pk)

    def delete_object(self, instance: Pbx) -> None:
        try:
            pbx_delete(pbx=instance, by_tenant=self.tenant)
        except PbxNotAllowed as exc:
            raise PermissionDenied(str(exc)) from exc


# ---------------------------------------------------------------------------------------------- dashboard


class DashboardViewSet(TenantViewSet):
    """``GET /api/v1/dashboard``: the figures of the portal's live dashboard (the same selector)."""

    model = CallAttempt

    @extend_schema(
        responses=OpenApiTypes.OBJECT,
        description=(
            "Calls in progress against the tenant's cap and per campaign; today's calls placed, answered, "
            "by outcome, answer rate, average talk time and minutes used (since midnight in the tenant's "
            "time zone); the last hour per minute (placed, answered, ended)."
        ),
    )
    def list(self, request: Request) -> Response:
        return Response(selectors.tenant_call_figures(tenant=self.tenant))
