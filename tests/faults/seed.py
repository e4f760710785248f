"""``python -m tests.faults.seed SPEC_JSON``: the fault scenario's rows, made through the product's services
(by the test factories, as the end-to-end tests make theirs).

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
    # The test factories: the product's services, kept in step with them by every test that uses them.
    from django.conf import settings

    from campaigns.lifecycle import AttemptOutcome
    from campaigns.services.campaigns import campaign_start
    from campaigns.services.contacts import lead_add
    from campaigns.windows import WEEKDAYS
    from tests.campaigns.factories import make_agent, make_campaign, make_contact, make_pbx, make_tenant

    # Every outcome the scenario retries must be one the product has: a renamed one would otherwise get
    # the campaign's default delay and the scenario would judge its calls on the wrong timeline.
    retry_delays = dict(spec["retry_delays"])
    unknown = set(retry_delays) - {outcome.value for outcome in AttemptOutcome}
    if unknown:
        raise ValueError(f"the scenario retries outcomes the product does not have: {sorted(unknown)}")
    made = []
    for tenant_spec in spec["tenants"]:
        tenant = make_tenant(max_concurrent_calls=tenant_spec["cap"], calls_per_second=50)
        pbx = make_pbx(
            tenant,
            ari_url=spec["ari_url"],
            ari_user=spec["ari_user"],
            password_env=spec["password_env"],
            app_name=spec["app"],
            endpoint_template="PJSIP/{number}@trunk",
            max_channels=100,
            calls_per_second=100,
        )
        agent = make_agent(
            tenant,
            instructions="You are the test agent calling {{name}}.",
            greeting="Hello {{name}}, this is the test agent.",
            tools=["end_call", "schedule_callback", "set_disposition"],
        )
        campaign = make_campaign(
            tenant,
            agent=agent,
            calling_windows={day: [["00:00", "24:00"]] for day in WEEKDAYS},
            ring_timeout=spec["ring_timeout"],
            max_attempts=spec["max_attempts"],
            retry_delays=retry_delays,
        )
        for number in tenant_spec["numbers"]:
            lead_add(
                campaign=campaign,
                contact=make_contact(tenant, number, name="Dana", timezone=spec["timezone"]),
            )
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
