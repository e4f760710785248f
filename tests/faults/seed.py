"""``python -m tests.faults.seed SPEC_JSON``: the fault scenario's rows, made through the product's services.

Run as a process of its own against the fault suite's database (``DATABASE_URL``): the test process's
Django is bound to the session's test database, not to the server the suite restarts. Prints one JSON line:
``{"tenants": [{"id", "pbx_id", "campaign_id", "cap", "leads"}], "hard_max_s": ...}``.

The spec (see :mod:`tests.faults.scenario`) gives per tenant its cap and its numbers, and the campaign's
ring timeout, attempt budget and retry delays; every number's contact gets the time zone where it is about
14:00, so the calling window is open whatever the real clock says.
"""

from __future__ import annotations

import json
import sys
from typing import Any


def seed(spec: dict[str, Any]) -> dict[str, Any]:
    import django

    django.setup()
    from django.conf import settings
    from django.contrib.auth.models import User

    from campaigns.lifecycle import AttemptOutcome
    from campaigns.services.agents import agent_profile_create
    from campaigns.services.campaigns import campaign_create, campaign_start
    from campaigns.services.contacts import contact_upsert, lead_add
    from campaigns.services.pbx import pbx_create
    from campaigns.windows import WEEKDAYS
    from tenants.services import tenant_create

    outcomes = {outcome.value for outcome in AttemptOutcome}
    # Retry delays for the outcomes this version of the product has (a fault may produce e.g. "failed";
    # outcomes added later, such as "unknown", get the short delay too once they exist).
    retry_delays = {name: delay for name, delay in spec["retry_delays"].items() if name in outcomes}
    made = []
    for index, tenant_spec in enumerate(spec["tenants"]):
        owner = User.objects.create_user(
            username=f"owner{index}@faults.test", email=f"owner{index}@faults.test"
        )
        tenant = tenant_create(
            name=f"Fault tenant {index}",
            slug=f"fault-tenant-{index}",
            owner=owner,
            max_concurrent_calls=tenant_spec["cap"],
            calls_per_second=50,
        )
        pbx = pbx_create(
            tenant=tenant,
            name=f"sim-{index}",
            ari_url=spec["ari_url"],
            ari_user=spec["ari_user"],
            password_env=spec["password_env"],
            app_name=spec["app"],
            endpoint_template="PJSIP/{number}@trunk",
            max_channels=100,
            calls_per_second=100,
        )
        agent = agent_profile_create(
            tenant=tenant,
            name="Fault agent",
            instructions="You are the test agent calling {{name}}.",
            greeting="Hello {{name}}, this is the test agent.",
            tools=["end_call", "schedule_callback", "set_disposition"],
        )
        campaign = campaign_create(
            tenant=tenant,
            agent=agent,
            name="Fault campaign",
            caller_id="+14155550100",
            calling_windows={day: [["00:00", "24:00"]] for day in WEEKDAYS},
            ring_timeout=spec["ring_timeout"],
            max_attempts=spec["max_attempts"],
            retry_delays=retry_delays,
        )
        for number in tenant_spec["numbers"]:
            contact = contact_upsert(
                tenant=tenant, phone_number=number, name="Dana", timezone=spec["timezone"]
            )
            lead_add(campaign=campaign, contact=contact)
        campaign_start(campaign=campaign)
        made.append(
            {
                "id": tenant.pk,
                "pbx_id": pbx.pk,
                "campaign_id": campaign.pk,
                "cap": tenant_spec["cap"],
                "leads": len(tenant_spec["numbers"]),
            }
        )
    return {"tenants": made, "hard_max_s": spec["ring_timeout"] + settings.MAX_CALL_DURATION_S}


if __name__ == "__main__":
    print(json.dumps(seed(json.loads(sys.argv[1]))))
