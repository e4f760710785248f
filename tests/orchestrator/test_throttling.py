"""Per-tenant API rate limits (orchestrator/throttling.py): counted per tenant whatever the key, tighter on
the CSV import, answered 429 in the API's JSON error shape with Retry-After, open when Redis is gone."""

from __future__ import annotations

import uuid

import pytest
from rest_framework.test import APIClient

from tenants.models import Tenant
from tenants.services import api_key_create
from tests.campaigns.factories import make_campaign, make_tenant

pytestmark = pytest.mark.django_db

API = "/api/v1"


def api_client(tenant: Tenant) -> APIClient:
    _, raw_key = api_key_create(tenant=tenant, name=f"key-{uuid.uuid4().hex[:6]}")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw_key}")
    return client


@pytest.fixture
def rates(settings):
    """Set the throttle rates, on a cache prefix of this test's own (counts start at zero)."""
    settings.CACHES = {
        "default": {**settings.CACHES["default"], "KEY_PREFIX": f"test:throttle:{uuid.uuid4().hex}"}
    }

    def set_rates(*, tenant: str, import_: str = "1000/min") -> None:
        settings.REST_FRAMEWORK = {
            **settings.REST_FRAMEWORK,
            "DEFAULT_THROTTLE_RATES": {"tenant": tenant, "import": import_},
        }

    return set_rates


def test_a_tenant_over_its_rate_gets_a_json_429_with_retry_after(rates):
    rates(tenant="3/min")
    client = api_client(make_tenant())
    for _ in range(3):
        assert client.get(f"{API}/campaigns").status_code == 200
    response = client.get(f"{API}/campaigns")
    assert response.status_code == 429
    assert response["Content-Type"].startswith("application/json")
    assert set(response.json()) == {"detail"}
    assert "throttled" in response.json()["detail"].lower()
    assert 1 <= int(response["Retry-After"]) <= 60


def test_the_rate_is_per_tenant_not_per_key(rates):
    rates(tenant="2/min")
    tenant, other = make_tenant(), make_tenant()
    first_key, second_key = api_client(tenant), api_client(tenant)
    assert first_key.get(f"{API}/campaigns").status_code == 200
    assert second_key.get(f"{API}/campaigns").status_code == 200
    # The tenant's second key counts against the same rate ...
    assert first_key.get(f"{API}/campaigns").status_code == 429
    assert second_key.get(f"{API}/agent-profiles").status_code == 429
    # ... and another tenant is not held back by it.
    assert api_client(other).get(f"{API}/campaigns").status_code == 200


def test_the_csv_import_has_a_tighter_rate_of_its_own(rates):
    rates(tenant="100/min", import_="2/min")
    tenant = make_tenant()
    campaign = make_campaign(tenant)
    client = api_client(tenant)
    url = f"{API}/campaigns/{campaign.pk}/import"
    csv = "phone_number,name\n+12125550123,Ann\n"
    for _ in range(2):
        assert client.generic("POST", url, csv, content_type="text/csv").status_code == 200
    refused = client.generic("POST", url, csv, content_type="text/csv")
    assert refused.status_code == 429
    assert set(refused.json()) == {"detail"} and int(refused["Retry-After"]) >= 1
    # Only the import is held back: the tenant's other requests go on.
    assert client.get(f"{API}/campaigns/{campaign.pk}").status_code == 200


def test_requests_go_through_when_the_cache_is_unreachable(rates, settings, tmp_path):
    rates(tenant="1/min")
    settings.CACHES = {
        "default": {**settings.CACHES["default"], "LOCATION": f"unix://{tmp_path}/nobody-listens.sock?db=0"}
    }
    client = api_client(make_tenant())
    for _ in range(3):
        assert client.get(f"{API}/campaigns").status_code == 200


def test_public_routes_without_a_tenant_are_not_counted(rates, client):
    rates(tenant="1/min")
    for _ in range(3):
        assert client.get("/api/schema/").status_code == 200


def test_the_schema_documents_429_with_retry_after_on_authenticated_routes(client):
    document = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    operations = [
        (path, method, operation)
        for path, methods in document["paths"].items()
        for method, operation in methods.items()
    ]
    assert operations
    for path, method, operation in operations:
        throttled = operation["responses"]["429"]
        assert throttled["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}
        assert throttled["headers"]["Retry-After"]["schema"] == {"type": "integer"}, (method, path)
