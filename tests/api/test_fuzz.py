"""Property-based fuzzing of the whole REST API with schemathesis: every operation of the live OpenAPI
document (``/api/schema/``), called through the real Django WSGI application, with every check schemathesis
has (no 5xx; status codes, content types, headers and bodies as documented; schema-invalid input refused;
no answer without credentials; 405 with ``Allow`` for a method a route lacks; ...), once with each of two
tenants' API keys.

Both tenants have data of their own (with hostile spreadsheet cells and unicode names), and path ids are
drawn from both tenants' rows as well as at random, so every detail route is tried with the other tenant's
ids: those must be 404 (DESIGN.md §5 rule 7, :func:`foreign_ids_are_not_found`).

Bounded: :data:`EXAMPLES` generated cases per operation and mode, derandomized so `make test` is
reproducible (set ``FUZZ_EXAMPLES`` and ``FUZZ_SEED`` for a longer or different run). Runs on PostgreSQL
and SQLite alike: the requests run in the test's own thread and transaction (like Django's test client,
which is why ``close_old_connections`` is disconnected around them).

One deliberate setting: ``positive_data_acceptance`` also accepts a 400 for input the schema allows. The
schema says what is well formed (types, lengths, ranges, choices); the services hold the rules JSON Schema
cannot say (a number valid for its country, calling windows, a tenant's caps, a unique name, a campaign's
state), and a 400 naming the field is their documented answer.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from django.core import signals
from django.core.handlers.wsgi import WSGIHandler
from django.db import close_old_connections
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.renderers import OpenApiJsonRenderer
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis import Case
from schemathesis.checks import CheckContext

from campaigns.models import CallAttempt, Lead
from campaigns.services.dnc import dnc_add
from campaigns.services.imports import leads_import_csv
from tenants.models import Tenant
from tenants.services import api_key_create
from tests.campaigns.factories import make_agent, make_campaign, make_pbx, make_tenant

pytestmark = [pytest.mark.django_db, pytest.mark.slow, pytest.mark.timeout(300)]

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "25"))
SEED = int(os.environ.get("FUZZ_SEED", "20251203"))

# A spreadsheet formula, a DDE payload and friends, as contact names and variables: the export must
# neutralise them, and nothing may choke on them.
HOSTILE_CSV = (
    "phone_number,name,first_name,note\n"
    '+12125550101,"=HYPERLINK(""https://evil.example"",""x"")",Ann,@SUM(1+1)\n'
    "+12125550102,+cmd|' /C calc'!A0,Bob,-2+3\n"
    "+12125550103,Zoë Ünicode 名前,Zoë,\t=1+1\n"
)

#: Object ids per resource (the path segment after /api/v1/) and tenant slug, filled in by the fixture.
KNOWN_IDS: dict[str, dict[str, list[Any]]] = {}
ME: dict[str, str] = {}


def _tenant_data(tenant: Tenant) -> dict[str, list[Any]]:
    agent = make_agent(tenant, instructions="Call {{first_name}} about {{note}}.", greeting="Hi {{name}}")
    campaign = make_campaign(tenant, agent=agent)
    make_campaign(tenant)  # a second one, with no leads
    leads_import_csv(campaign=campaign, data=HOSTILE_CSV)
    leads = list(Lead.objects.filter(campaign=campaign).select_related("contact"))
    attempt = CallAttempt.objects.create(
        tenant=tenant,
        campaign=campaign,
        lead=leads[0],
        number=leads[0].contact.phone_number,
        state="ended",
        outcome="answered",
        disposition="interested",
    )
    dnc = dnc_add(tenant=tenant, phone_number="+12125550199", source="api")
    pbx = make_pbx(tenant)
    key, _ = api_key_create(tenant=tenant, name="listed")
    return {
        "agent-profiles": [agent.pk],
        "campaigns": [campaign.pk],
        "contacts": [lead.contact.pk for lead in leads],
        "leads": [lead.pk for lead in leads],
        "attempts": [str(attempt.pk)],
        "dnc": [dnc.pk],
        "pbxs": [pbx.pk],
        "api-keys": [key.pk],
    }


def _well_formed(identifier: Any) -> bool:
    if isinstance(identifier, int) and not isinstance(identifier, bool):
        return True
    try:
        uuid.UUID(str(identifier))
    except ValueError:
        return False
    return isinstance(identifier, str)


def _resource(path: str) -> str:
    return path.removeprefix("/api/v1/").split("/")[0]


@pytest.fixture
def in_process_wsgi(settings: Any) -> Iterator[None]:
    """Requests run in the test's thread and transaction: keep Django from closing its connection at
    each request's start and end (as django.test.Client does). The WSGI client calls itself localhost."""
    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "localhost"]
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    try:
        yield
    finally:
        signals.request_started.connect(close_old_connections)
        signals.request_finished.connect(close_old_connections)


def _openapi_document() -> dict[str, Any]:
    """The document /api/schema/ serves (the same generator and settings; made at collection time, when
    no request can be served yet: test_the_fuzzed_document_is_the_served_one checks they agree)."""
    document = SchemaGenerator().get_schema(request=None, public=True)
    return dict(json.loads(OpenApiJsonRenderer().render(document)))


def _load_schema() -> Any:
    """The API's OpenAPI document, driving the real WSGI application."""
    config = schemathesis.Config.from_dict(
        {
            "seed": SEED,
            # The key is the test's own (an Authorization the fuzzer made up would be replaced by it).
            "generation": {
                "max-examples": EXAMPLES,
                "deterministic": True,
                "database": "none",
                "with-security-parameters": False,
            },
            "checks": {
                "positive_data_acceptance": {"expected-statuses": ["2xx", "400", "401", "403", "404"]}
            },
        }
    )
    loaded = schemathesis.openapi.from_dict(_openapi_document(), config=config)
    loaded.app = WSGIHandler()
    loaded.location = "/api/schema/"
    return loaded


schema = _load_schema()


@schema.hook
def flatmap_path_parameters(context: Any, path_parameters: dict[str, Any]) -> Any:
    """Besides the drawn id, try each tenant's own ids of this resource (only in place of a well-formed id:
    an id made malformed on purpose stays so)."""
    ids = KNOWN_IDS.get(_resource(context.operation.path), {})
    choices = [value for values in ids.values() for value in values]
    if not path_parameters or not choices or not _well_formed(path_parameters.get("id")):
        return st.just(path_parameters)
    return st.one_of(
        st.just(path_parameters), st.sampled_from(choices).map(lambda id_: {**path_parameters, "id": id_})
    )


def foreign_ids_are_not_found(ctx: CheckContext, response: Any, case: Case) -> bool | None:
    """An id of the other tenant is a 404 on every route (unless the request never got that far: no or a
    bad key, a method the route lacks)."""
    identifier = (case.path_parameters or {}).get("id")
    ids = KNOWN_IDS.get(_resource(case.operation.path), {})
    foreign = [value for slug, values in ids.items() if slug != ME["slug"] for value in values]
    if identifier in foreign and response.status_code not in (401, 403, 405):
        assert response.status_code == 404, (
            f"{case.method} {case.formatted_path}: another tenant's id answered {response.status_code}"
        )
    return None


@pytest.fixture(params=["alpha", "beta"])
def tenants(request: pytest.FixtureRequest, in_process_wsgi: None) -> str:
    """Two tenants with data of their own; the test calls the API with the key of the one named by the
    parameter."""
    KNOWN_IDS.clear()
    keys = {}
    for slug in ("alpha", "beta"):
        tenant = make_tenant(slug=slug, name=slug.title())
        for resource, ids in _tenant_data(tenant).items():
            KNOWN_IDS.setdefault(resource, {})[slug] = ids
        keys[slug] = api_key_create(tenant=tenant, name="fuzz")[1]
    ME.update(slug=request.param, key=keys[request.param])
    return str(request.param)


@schema.parametrize()
# The data is made once per operation and tenant, not per example: the examples share (and change) it.
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
def test_the_api(case: Case, tenants: str) -> None:
    case.call_and_validate(
        headers={"Authorization": f"Bearer {ME['key']}"}, additional_checks=[foreign_ids_are_not_found]
    )


def test_the_fuzzed_document_is_the_served_one(client: Any) -> None:
    response = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    assert response.json() == _openapi_document()
