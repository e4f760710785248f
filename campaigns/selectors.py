"""Reads: query functions named ``<entity>_<query>`` (e.g. ``lead_list_due``), always scoped by tenant.
Views, the API and tasks read through these rather than building querysets themselves.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db.models import (
    Avg,
    Count,
    Exists,
    F,
    FloatField,
    OuterRef,
    Prefetch,
    Q,
    QuerySet,
    Subquery,
    Sum,
    TextField,
    Value,
)
from django.db.models.fields.json import KT
from django.db.models.functions import Cast, Coalesce, TruncDay, TruncHour, TruncMinute
from django.utils import timezone
from django.utils.module_loading import import_string
from redis.exceptions import RedisError

from campaigns.lifecycle import LIVE_STATES, RETRY_CALLBACK, AttemptOutcome, AttemptState
from campaigns.models import (
    AGENT_TOOLS,
    AgentProfile,
    AttemptEvent,
    CallAttempt,
    Campaign,
    ConsentKind,
    Contact,
    ContactConsent,
    ContactImport,
    DncEntry,
    Lead,
    Pbx,
)
from campaigns.phone import normalize_phone_number
from campaigns.state_hours import STATE_HOURS, restrict_to_state, state_for_number
from campaigns.transfer_selectors import campaign_transfer_links_prefetch
from campaigns.windows import CallingWindows, is_open, next_opening, parse_windows, zones_for_contact
from orchestrator.errors import InvalidInput
from orchestrator.redis_client import get_redis
from telephony.health import Health, read_health
from tenants.models import Tenant
from wire.brief import media_seen_key

logger = logging.getLogger(__name__)

LIVE_STATE_VALUES: tuple[str, ...] = tuple(sorted(state.value for state in LIVE_STATES))


def dnc_contains(*, tenant: Tenant, phone_number: str) -> bool:
    """Whether the number is on the tenant's DNC list. An unparseable number raises InvalidInput rather
    than answering False: "not on the list" must never be the answer for a number we cannot read."""
    e164 = normalize_phone_number(phone_number, field="phone_number")
    return DncEntry.objects.filter(tenant=tenant, phone_number=e164).exists()


# ------------------------------------------------------------------------------------- calling windows


@dataclass(frozen=True)
class CalleeWindow:
    """A campaign's calling windows as seen from one callee: the parsed windows and the callee's zones
    (DESIGN.md §5 rule 4, most restrictive across the number's zones; see campaigns/windows.py)."""

    windows: CallingWindows
    zones: tuple[str, ...]
    #: The callee's US state when its calling hours are stricter than 08:00–21:00 (already applied to
    #: ``windows``: campaigns/state_hours.py), else None.
    state: str | None = None

    def is_open(self, at: datetime) -> bool:
        return is_open(self.windows, self.zones, at)

    def next_opening(self, after: datetime) -> datetime | None:
        """The earliest instant ``>= after`` inside the window (``after`` itself when open); None if there
        is none within the search horizon (two weeks)."""
        return next_opening(self.windows, self.zones, after)

    def dialable_from(self, after: datetime) -> datetime:
        """When to look at the lead again: the next opening, or a day later when there is none in sight."""
        return self.next_opening(after) or after + NO_OPENING_RETRY


# When no opening is found within the horizon (e.g. a number whose zones never overlap), look again later.
NO_OPENING_RETRY = timedelta(days=1)


def callee_window(*, campaign: Campaign, contact: Contact, tenant: Tenant) -> CalleeWindow | None:
    """The campaign's windows for ``contact``; None when they cannot be evaluated (stored windows that no
    longer parse, a tenant zone that is not known): such a lead is never open, so it is never dialed."""
    try:
        windows = parse_windows(campaign.calling_windows)
        zones = zones_for_contact(contact.phone_number, contact.timezone, tenant.default_timezone)
    except ValueError:
        logger.exception("calling window of campaign %s for contact %s unusable", campaign.pk, contact.pk)
        return None
    state = state_for_number(contact.phone_number)
    restricted = restrict_to_state(windows, state)
    return CalleeWindow(windows=restricted, zones=zones, state=state if state in STATE_HOURS else None)


# ------------------------------------------------------------------------------------- prior consent


def consent_kinds_satisfying(kind: str) -> list[str]:
    """The consent kinds that satisfy a campaign asking for ``kind``: written consent satisfies both."""
    if kind == ConsentKind.PRIOR_EXPRESS_WRITTEN:
        return [ConsentKind.PRIOR_EXPRESS_WRITTEN.value]
    return [ConsentKind.PRIOR_EXPRESS.value, ConsentKind.PRIOR_EXPRESS_WRITTEN.value]


def consent_valid(*, now: datetime) -> QuerySet[ContactConsent]:
    """Consents valid at ``now``: not revoked, captured no later than now (filter by contact and kind)."""
    return ContactConsent.objects.filter(revoked_at__isnull=True, captured_at__lte=now)


def consent_exists_for_campaign(
    *, campaign: Campaign, now: datetime, contact_ref: str = "contact_id"
) -> Exists:
    """``Exists`` a valid consent of the contact ``OuterRef(contact_ref)`` good enough for the campaign: the
    dispatcher's claim filter (one condition in the claim query, served by ``consent_valid_contact``)."""
    return Exists(
        consent_valid(now=now).filter(
            contact_id=OuterRef(contact_ref), kind__in=consent_kinds_satisfying(campaign.prior_consent_kind)
        )
    )


def lead_consent_filter(*, now: datetime) -> Q:
    """On a Lead queryset: the lead's campaign does not require consent, or its contact has a valid one of
    the campaign's kind (written consent, or the very kind asked for)."""
    valid = (
        consent_valid(now=now)
        .filter(contact_id=OuterRef("contact_id"))
        .filter(Q(kind=ConsentKind.PRIOR_EXPRESS_WRITTEN) | Q(kind=OuterRef("campaign__prior_consent_kind")))
    )
    return Q(campaign__requires_prior_consent=False) | Q(Exists(valid))


def contact_has_consent(*, campaign: Campaign, contact_id: int, now: datetime) -> bool:
    """Whether the campaign may dial the contact as far as consent goes (always, when it requires none)."""
    if not campaign.requires_prior_consent:
        return True
    return (
        consent_valid(now=now)
        .filter(contact_id=contact_id, kind__in=consent_kinds_satisfying(campaign.prior_consent_kind))
        .exists()
    )


def contact_consent_list(*, tenant: Tenant, contact_id: int) -> QuerySet[ContactConsent]:
    """A contact's consents, newest first (revoked ones included: the record). Another tenant's contact
    raises ``Contact.DoesNotExist`` (a 404)."""
    contact = Contact.objects.only("pk").get(pk=contact_id, tenant=tenant)
    return ContactConsent.objects.filter(tenant=tenant, contact=contact).order_by("-captured_at", "-pk")


# ------------------------------------------------------------------------------------------- campaigns


def campaign_is_dialing(*, campaign: Campaign, tenant: Tenant, now: datetime) -> bool:
    """Whether the campaign may place calls at ``now``: tenant active, campaign running, inside its
    ``starts_at``/``ends_at``. ``campaign_dialing_filter`` says the same as a queryset filter."""
    return (
        tenant.status == Tenant.Status.ACTIVE
        and campaign.status == Campaign.Status.RUNNING
        and (campaign.starts_at is None or campaign.starts_at <= now)
        and (campaign.ends_at is None or campaign.ends_at > now)
    )


def campaign_dialing_filter(*, now: datetime, prefix: str = "") -> Q:
    """``campaign_is_dialing`` as a filter on a Campaign queryset (or, with ``prefix="campaign__"``, on a
    queryset of rows that reference a campaign)."""
    return (
        Q(**{f"{prefix}tenant__status": Tenant.Status.ACTIVE, f"{prefix}status": Campaign.Status.RUNNING})
        & (Q(**{f"{prefix}starts_at__isnull": True}) | Q(**{f"{prefix}starts_at__lte": now}))
        & (Q(**{f"{prefix}ends_at__isnull": True}) | Q(**{f"{prefix}ends_at__gt": now}))
    )


# -------------------------------------------------------------------------------------------- attempts


RECHECK_CAMPAIGN_NOT_RUNNING = "campaign_not_running"
RECHECK_DNC = "dnc"
RECHECK_OUTSIDE_WINDOW = "outside_window"
RECHECK_NOT_QUEUED = "not_queued"
RECHECK_INVALID_NUMBER = "invalid_number"
RECHECK_NO_CONSENT = "no_consent"

#: The re-check refuses a window that closes this soon: the POST that follows it (after a Redis and a
#: database round trip) must still land inside the window.
WINDOW_CLOSING_MARGIN = timedelta(seconds=1)


def attempt_for_originate(*, attempt_id: UUID) -> CallAttempt | None:
    """The attempt with everything the re-check, the call brief and the originate read (tenant, campaign
    and its agent, PBX, lead and contact) in one query; None if there is no such attempt."""
    return (
        CallAttempt.objects.select_related("tenant", "campaign__agent", "pbx", "lead__contact")
        .prefetch_related(campaign_transfer_links_prefetch("campaign__"))
        .filter(pk=attempt_id)
        .first()
    )


def attempts_queued_before(*, cutoff: datetime, limit: int) -> list[str]:
    """Ids (as text) of attempts still ``queued`` that were queued at or before ``cutoff``, oldest first, at
    most ``limit``: the candidates of the stalled-attempt sweep (``campaigns.services.originate``)."""
    return [
        str(pk)
        for pk in CallAttempt.objects.filter(state=AttemptState.QUEUED, queued_at__lte=cutoff)
        .order_by("queued_at")
        .values_list("pk", flat=True)[:limit]
    ]


def contact_imports_stalled(
    *, queued_before: datetime, started_before: datetime, limit: int = 100
) -> list[int]:
    """Imports that should be running and may have lost their task: queued before ``queued_before`` (the
    message was lost), or running since before ``started_before`` (its worker died and the message went
    with it). Running one again is safe (``contact_import_run`` resumes after the last committed batch)."""
    stalled = ContactImport.objects.filter(
        Q(status=ContactImport.Status.QUEUED, created_at__lt=queued_before)
        | Q(status=ContactImport.Status.RUNNING, started_at__lt=started_before)
    )
    return list(stalled.order_by("created_at").values_list("pk", flat=True)[:limit])


def attempt_recheck(
    *, attempt_id: UUID, now: datetime | None = None, attempt: CallAttempt | None = None
) -> str | None:
    """The re-check right before ``POST /channels`` (DESIGN.md §5 rule 4: checked when claiming *and
    again* right before originating). None means "go ahead"; otherwise the reason not to dial:

    * ``"not_queued"``: the attempt does not exist or already moved on (a repeated task): do nothing.
    * ``"campaign_not_running"``: tenant suspended, campaign paused/completed, or outside starts/ends.
    * ``"dnc"``: the number is on the tenant's do-not-call list now.
    * ``"invalid_number"``: the stored number no longer parses (never answered as "not on the DNC list").
    * ``"no_consent"``: the campaign requires prior express consent and the contact has no valid one now
      (revoked since the claim).
    * ``"outside_window"``: the callee's calling window is closed now, or closes within
      :data:`WINDOW_CLOSING_MARGIN` (or cannot be evaluated).

    ``attempt``: the caller's fresh copy of it (from :func:`attempt_for_originate`), to save a query.

    Read-only: the caller ends the attempt with ``attempt_apply`` (see campaigns.services.call_events for the
    reason → event/outcome mapping). The check and the POST are not atomic — the gap is the originate
    task's own latency, bounded by its timeout; the check at claim time and this one are the two gates.
    """
    now = now or timezone.now()
    if attempt is None:
        attempt = attempt_for_originate(attempt_id=attempt_id)
    if attempt is None or attempt.state != AttemptState.QUEUED:
        return RECHECK_NOT_QUEUED
    if not campaign_is_dialing(campaign=attempt.campaign, tenant=attempt.tenant, now=now):
        return RECHECK_CAMPAIGN_NOT_RUNNING
    try:
        if dnc_contains(tenant=attempt.tenant, phone_number=attempt.number):
            return RECHECK_DNC
    except InvalidInput:
        return RECHECK_INVALID_NUMBER
    if not contact_has_consent(campaign=attempt.campaign, contact_id=attempt.lead.contact_id, now=now):
        return RECHECK_NO_CONSENT
    window = callee_window(campaign=attempt.campaign, contact=attempt.lead.contact, tenant=attempt.tenant)
    if not window_open_for_originate(window, now):
        return RECHECK_OUTSIDE_WINDOW
    return None


def window_open_for_originate(window: CalleeWindow | None, now: datetime) -> bool:
    """Whether a call may be placed now: the window is open and does not close within
    :data:`WINDOW_CLOSING_MARGIN` (None: the window cannot be evaluated, so no)."""
    return window is not None and window.is_open(now) and window.is_open(now + WINDOW_CLOSING_MARGIN)


def tenant_ids_to_dispatch(*, now: datetime) -> list[int]:
    """Active tenants worth a dispatch pass now: with a dialing campaign that has due waiting leads and
    fewer live attempts than its cap, and with fewer live attempts than the tenant's cap (minus the inbound
    reserve). Ordered by id.

    A hint for the periodic sweep, read without locks: the pass itself decides under the tenant lock. A
    tenant left out has nothing due or no room now; the next sweep asks again (DESIGN.md §5 rule 3). Due
    leads a campaign may not dial for want of consent do not count; a campaign slowed for abandonment is
    judged by its full cap here (the pass applies the halved one: at worst a pass that claims nothing).
    """
    live = CallAttempt.objects.filter(state__in=LIVE_STATE_VALUES).order_by()
    tenant_live = live.filter(tenant=OuterRef("tenant")).values("tenant").annotate(n=Count("pk")).values("n")
    campaign_live = (
        live.filter(campaign=OuterRef("pk")).values("campaign").annotate(n=Count("pk")).values("n")
    )
    due = Lead.objects.filter(
        lead_consent_filter(now=now),
        campaign=OuterRef("pk"),
        status=Lead.Status.WAITING,
        next_due_at__lte=now,
    )
    campaigns = (
        Campaign.objects.filter(campaign_dialing_filter(now=now))
        .filter(Exists(due))
        .annotate(
            campaign_live=Coalesce(Subquery(campaign_live), 0),
            tenant_live=Coalesce(Subquery(tenant_live), 0),
        )
        .filter(
            campaign_live__lt=F("max_concurrent_calls"),
            tenant_live__lt=F("tenant__max_concurrent_calls") - F("tenant__inbound_reserve"),
        )
    )
    return sorted(set(campaigns.values_list("tenant_id", flat=True)))


# ----------------------------------------------------------------------------------------------- leads


def tenant_live_calls_elsewhere(*, tenant_id: int) -> int:
    """The tenant's live calls that are not campaign attempts (inbound calls, on-call pages), counted by the
    apps that own them: ``settings.TENANT_LIVE_CALLS_ELSEWHERE`` names their counters (dotted paths called
    as ``fn(tenant_id=...)``), so this app never imports them (DESIGN.md §3)."""
    return sum(int(import_string(path)(tenant_id=tenant_id)) for path in settings.TENANT_LIVE_CALLS_ELSEWHERE)


def live_attempts(*, tenant: Tenant) -> QuerySet[CallAttempt]:
    """The tenant's attempts that hold a concurrency slot (DESIGN.md §5 rule 1: the durable truth)."""
    return CallAttempt.objects.filter(tenant=tenant, state__in=LIVE_STATE_VALUES)


def lead_why_not_dialed(*, tenant: Tenant, lead_id: int, now: datetime | None = None) -> dict[str, Any]:
    """Why a lead is not being dialed (now), and when it will be, for the API and the admin.

    Returns ``{"lead_id", "status", "dialable_now", "next_dial_at", "reasons"}``; each reason is a dict
    with a ``"code"`` and details. ``next_dial_at`` is the earliest time the lead becomes due and inside
    its window (capacity permitting), or None when it will not be dialed (done, suppressed, DNC, attempts
    spent, campaign not running, or in an attempt right now). Codes: ``done``, ``suppressed``,
    ``in_attempt``, ``dnc``, ``attempts_exhausted``, ``campaign_not_running``, ``callback`` (the callee asked
    to be called back then), ``retry_delay`` (after an outcome), ``outside_window``, ``tenant_at_cap``,
    ``campaign_at_cap``, ``no_pbx_capacity``, ``pbx_unavailable`` (no PBX of the tenant has its Stasis app
    listening) and ``no_media_worker`` (none is up): calls are placed only where they can succeed
    (DESIGN.md §5 rule 9).

    A lead rescheduled by the dispatcher keeps the reason (``Lead.wait_reason``): a lead moved to the next
    opening of its window says ``outside_window`` until then, a callback says ``callback``.

    Scoped by tenant (DESIGN.md §5 rule 7): another tenant's lead raises ``Lead.DoesNotExist`` (a 404).
    Advisory: it reads without locks, so it can be stale by the time it is shown.
    """
    now = now or timezone.now()
    lead = Lead.objects.select_related("campaign", "contact").get(pk=lead_id, campaign__tenant=tenant)
    campaign = lead.campaign
    reasons: list[dict[str, Any]] = []
    result: dict[str, Any] = {"lead_id": lead.pk, "status": lead.status, "reasons": reasons}
    blocked = False  # True when the lead will not be dialed without someone changing something

    if lead.status != Lead.Status.WAITING:
        # Not the dispatcher's to dial: finished, suppressed, or being dialed right now.
        if lead.status == Lead.Status.IN_ATTEMPT:
            live = CallAttempt.objects.filter(lead=lead, state__in=LIVE_STATE_VALUES).first()
            reasons.append(
                {
                    "code": "in_attempt",
                    "attempt_id": live.pk if live else None,
                    "state": live.state if live else None,
                }
            )
        else:
            reasons.append(
                {"code": lead.status, "done_reason": lead.done_reason, "last_outcome": lead.last_outcome}
            )
        result.update(dialable_now=False, next_dial_at=None)
        return result

    if dnc_contains(tenant=tenant, phone_number=lead.contact.phone_number):
        reasons.append({"code": "dnc"})
        blocked = True
    if lead.attempts >= campaign.max_attempts:
        reasons.append(
            {"code": "attempts_exhausted", "attempts": lead.attempts, "max": campaign.max_attempts}
        )
        blocked = True
    if not contact_has_consent(campaign=campaign, contact_id=lead.contact_id, now=now):
        # Dialed once someone records the contact's consent (API, CSV import, portal).
        reasons.append({"code": "no_consent", "required_kind": campaign.prior_consent_kind})
        blocked = True
    if not campaign_is_dialing(campaign=campaign, tenant=tenant, now=now):
        reasons.append(
            {
                "code": "campaign_not_running",
                "campaign_status": campaign.status,
                "tenant_status": tenant.status,
                "starts_at": campaign.starts_at,
                "ends_at": campaign.ends_at,
            }
        )
        # A campaign that simply has not started yet will run: the lead is due from its start.
        not_started_only = (
            tenant.status == Tenant.Status.ACTIVE
            and campaign.status == Campaign.Status.RUNNING
            and campaign.starts_at is not None
            and campaign.starts_at > now
        )
        blocked = blocked or not not_started_only

    due = max(filter(None, [now, lead.next_due_at, campaign.starts_at]))
    window = callee_window(campaign=campaign, contact=lead.contact, tenant=tenant)
    opening = window.next_opening(due) if window is not None else None
    waiting_for_window = False
    if lead.next_due_at is not None and lead.next_due_at > now:
        if lead.wait_reason == RETRY_CALLBACK:
            reasons.append({"code": "callback", "at": lead.next_due_at, "last_outcome": lead.last_outcome})
        elif lead.wait_reason == WAIT_OUTSIDE_WINDOW:
            waiting_for_window = True  # due at the opening the dispatcher found: the window is the reason
        else:
            reasons.append(
                {"code": "retry_delay", "until": lead.next_due_at, "last_outcome": lead.last_outcome}
            )
    if window is None or opening is None or opening > due or waiting_for_window:
        reasons.append(
            {
                "code": "outside_window",
                "next_opening": opening,
                "zones": window.zones if window else (),
                # The callee's state's own calling hours narrowed the window (campaigns/state_hours.py).
                "state": window.state if window else None,
            }
        )
    if opening is None:
        blocked = True

    if not blocked and opening is not None and opening <= now:
        # Due and open: only capacity can hold it back.
        tenant_attempts = live_attempts(tenant=tenant)
        tenant_live = tenant_attempts.count()
        if tenant_live >= tenant.max_concurrent_calls - tenant.inbound_reserve:
            reasons.append(
                {
                    "code": "tenant_at_cap",
                    "live": tenant_live,
                    "max_concurrent_calls": tenant.max_concurrent_calls,
                    "inbound_reserve": tenant.inbound_reserve,
                }
            )
        campaign_live = tenant_attempts.filter(campaign=campaign).count()
        abandonment = campaign_abandonment_rates(campaign_ids=[campaign.pk], now=now)[campaign.pk]
        cap = abandonment.dialing_cap(campaign.max_concurrent_calls)
        if campaign_live >= cap:
            reasons.append(
                {
                    "code": "campaign_at_cap",
                    "live": campaign_live,
                    "max_concurrent_calls": campaign.max_concurrent_calls,
                    "effective_cap": cap,
                }
            )
            if abandonment.slowed:
                # Why the cap is lower than the campaign's own: too many answered calls got no agent in time.
                reasons.append({"code": "abandonment_slowdown", **abandonment.as_dict()})
        free = pbx_free_channels(tenant=tenant)
        if free == {}:
            reasons.append({"code": "no_pbx_capacity"})
        else:
            health = pbx_health(pbx_ids=free)
            if not health.pbx_ids_up:
                reasons.append({"code": "pbx_unavailable", "pbx_ids": sorted(free)})
            if health.media_workers == 0:
                reasons.append({"code": "no_media_worker"})

    result["next_dial_at"] = None if blocked else opening
    result["dialable_now"] = not reasons
    return result


# ------------------------------------------------------------------------------------------ abandonment
# A call the callee answered (a person: not a machine) that got no agent audio within 2 s of the answer is
# abandoned (the TCPA's 2-second rule, 47 CFR 64.1200(a)(7)). Its measure is the media worker's
# ``answer_to_first_audio_ms`` in the attempt's ``media_metrics`` (from when it took the answered call's
# media leg to the agent's first audio frame; missing or null: the agent never spoke). A machine is told by
# the attempt's ``answered_by`` (when the model has it), the media worker's ``answered_by`` metric, or a
# voicemail outcome.

ABANDON_AFTER_MS = 2000
ABANDONMENT_PERIOD = timedelta(days=30)
#: Over this rate (with at least ABANDONMENT_MIN_ANSWERED answered calls in the period) a campaign's
#: concurrency cap is halved (at least 1) until it is back under.
ABANDONMENT_LIMIT = 0.03
ABANDONMENT_MIN_ANSWERED = 20
_MACHINE_OUTCOMES = ("voicemail", "voicemail_left", "machine_detected")
#: The dispatch pass reads the rates from Redis; a rate older than this is computed again.
ABANDONMENT_CACHE_S = 60
ABANDONMENT_CACHE_PREFIX = "campaigns:abandonment"


@dataclass(frozen=True)
class Abandonment:
    """A campaign's answered (human) calls and abandoned ones over :data:`ABANDONMENT_PERIOD`."""

    answered: int = 0
    abandoned: int = 0

    @property
    def rate(self) -> float | None:
        return self.abandoned / self.answered if self.answered else None

    @property
    def slowed(self) -> bool:
        return (
            self.answered >= ABANDONMENT_MIN_ANSWERED and self.abandoned > ABANDONMENT_LIMIT * self.answered
        )

    def dialing_cap(self, cap: int) -> int:
        """The campaign's concurrency cap as the dispatcher applies it: halved (at least 1) while slowed."""
        return max(1, cap // 2) if self.slowed else cap

    def as_dict(self) -> dict[str, Any]:
        return {
            "answered_30d": self.answered,
            "abandoned_30d": self.abandoned,
            "abandonment_rate_30d": round(self.rate, 4) if self.rate is not None else None,
            "slowed": self.slowed,
        }


def _human_answered(*, since: datetime) -> QuerySet[CallAttempt]:
    """Ended attempts answered since ``since`` by a person (not a machine), each with ``first_audio_ms``."""
    attempts = (
        CallAttempt.objects.filter(answered_at__gte=since, state=AttemptState.ENDED)
        .exclude(outcome__in=_MACHINE_OUTCOMES)
        .alias(
            media_answered_by=Coalesce(KT("media_metrics__answered_by"), Value(""), output_field=TextField()),
            first_audio_ms=Cast(KT("media_metrics__answer_to_first_audio_ms"), FloatField()),
        )
        .exclude(media_answered_by="machine")
    )
    return attempts.exclude(answered_by="machine")  # AMD's verdict, or the media worker's


def campaign_abandonment_rates(
    *, campaign_ids: Iterable[int], now: datetime | None = None
) -> dict[int, Abandonment]:
    """Each campaign's answered and abandoned calls over the last 30 days: one aggregate for all of them
    (served by the ``attempt_campaign_answered`` index). Every id asked for is in the answer."""
    ids = list(campaign_ids)
    if not ids:
        return {}
    now = now or timezone.now()
    rows = (
        _human_answered(since=now - ABANDONMENT_PERIOD)
        .filter(campaign_id__in=ids)
        .order_by()
        .values("campaign_id")
        .annotate(
            answered=Count("pk"),
            abandoned=Count(
                "pk",
                # a JSON null is "never" too (SQLite casts it to 0, PostgreSQL to NULL)
                filter=Q(first_audio_ms__isnull=True)
                | Q(media_metrics__answer_to_first_audio_ms=None)
                | Q(first_audio_ms__gt=ABANDON_AFTER_MS),
            ),
        )
        .values_list("campaign_id", "answered", "abandoned")
    )
    found = {pk: Abandonment(answered=answered, abandoned=abandoned) for pk, answered, abandoned in rows}
    return {pk: found.get(pk, Abandonment()) for pk in ids}


def campaign_abandonment_cached(
    *, campaign_ids: Iterable[int], now: datetime | None = None
) -> dict[int, Abandonment]:
    """:func:`campaign_abandonment_rates` through a Redis cache of :data:`ABANDONMENT_CACHE_S` seconds: the
    dispatch pass asks on every pass, which must stay cheap (one MGET; the aggregate only for the
    campaigns whose figure expired). Without Redis, the database answers."""
    ids = list(campaign_ids)
    if not ids:
        return {}
    keys = [f"{ABANDONMENT_CACHE_PREFIX}:{pk}" for pk in ids]
    try:
        redis = get_redis()
        cached = redis.mget(keys)
    except (RedisError, OSError) as exc:
        logger.warning("abandonment cache unavailable (%s): reading the database", exc)
        return campaign_abandonment_rates(campaign_ids=ids, now=now)
    result: dict[int, Abandonment] = {}
    missing: list[int] = []
    for pk, raw in zip(ids, cached, strict=True):
        text = raw.decode() if isinstance(raw, bytes) else str(raw or "")
        try:
            answered, abandoned = (int(part) for part in text.split(","))
        except ValueError:  # not cached (or not readable): computed below
            missing.append(pk)
            continue
        result[pk] = Abandonment(answered=answered, abandoned=abandoned)
    if missing:
        fresh = campaign_abandonment_rates(campaign_ids=missing, now=now)
        result.update(fresh)
        try:
            pipe = redis.pipeline(transaction=False)
            for pk, figure in fresh.items():
                pipe.set(
                    f"{ABANDONMENT_CACHE_PREFIX}:{pk}",
                    f"{figure.answered},{figure.abandoned}",
                    ex=ABANDONMENT_CACHE_S,
                )
            pipe.execute()
        except (RedisError, OSError) as exc:
            logger.warning("abandonment cache not written (%s)", exc)
    return result


def pbx_list_with_free_channels(*, tenant: Tenant) -> list[tuple[Pbx, int]]:
    """Enabled PBXs the tenant is placed on with free channels, with that number, most free first (ties:
    lowest id). Free is the PBX's ``max_channels`` minus its live attempts (of every tenant), and, when the
    tenant has a share of it (``PbxPlacement.max_channels``), no more than the share minus the tenant's own
    live attempts there. One query: the rows, their live counts and the share.

    Read without the PBX's lock: another tenant's pass may claim on a shared PBX at the same time, so the
    pass re-counts under the PBX's lock before it writes (``campaigns.services.dispatch``)."""
    live = (
        CallAttempt.objects.filter(pbx=OuterRef("pk"), state__in=LIVE_STATE_VALUES)
        .order_by()
        .values("pbx")
        .annotate(n=Count("pk"))
        .values("n")
    )
    rows = Pbx.objects.filter(placements__tenant=tenant, enabled=True).annotate(
        live=Coalesce(Subquery(live), 0),
        tenant_live=Coalesce(Subquery(live.filter(tenant=tenant)), 0),
        share=F("placements__max_channels"),
    )
    free = []
    for pbx in rows:
        n = pbx.max_channels - pbx.live
        if pbx.share is not None:
            n = min(n, pbx.share - pbx.tenant_live)
        free.append((pbx, n))
    return sorted(((pbx, n) for pbx, n in free if n > 0), key=lambda item: (-item[1], item[0].pk))


def pbx_free_channels(*, tenant: Tenant) -> dict[int, int]:
    """Enabled PBXs of the tenant with free channels → free channels (``max_channels`` − live attempts on
    it), most free first."""
    return {pbx.pk: free for pbx, free in pbx_list_with_free_channels(tenant=tenant)}


# ------------------------------------------------------------------------------------------ health

#: ``Lead.wait_reason`` of a lead due later because its callee's calling window is closed until then.
WAIT_OUTSIDE_WINDOW = "outside_window"


def pbx_health(*, pbx_ids: Iterable[int]) -> Health:
    """Which of these PBXs have their Stasis app listening, and how many media workers are up
    (:mod:`telephony.health`). When Redis cannot tell, nothing is up: no call is placed blind (logged)."""
    try:
        return read_health(get_redis(), pbx_ids)
    except (RedisError, OSError) as exc:
        logger.warning("health of PBXs %s unknown (%s): placing no calls", sorted(pbx_ids), exc)
        return Health(pbx_ids_up=frozenset(), media_workers=0)


# ------------------------------------------------------------------------------------ media evidence


@dataclass(frozen=True)
class MediaMarks:
    """What the media worker recorded of a call as it happened (``media:seen:<call id>`` in Redis):
    ``connected`` when it took the call's AudioSocket leg, ``agent_spoke`` once the agent's audio was
    played to the caller. Evidence for an end nobody saw (DESIGN.md §5 rule 5)."""

    connected: bool = False
    agent_spoke: bool = False


def attempt_media_marks(*, attempt_id: UUID | str) -> MediaMarks:
    """The media worker's marks of the attempt's call; none when Redis cannot tell (logged)."""
    try:
        raw = get_redis().hgetall(media_seen_key(str(attempt_id)))
    except (RedisError, OSError) as exc:
        logger.warning("attempt %s: media marks unavailable: %s", attempt_id, exc)
        return MediaMarks()
    fields = {key.decode() if isinstance(key, bytes) else str(key) for key in raw}
    return MediaMarks(connected="connected" in fields, agent_spoke="agent_audio" in fields)


# ---------------------------------------------------------------------------- lists for the API/portal
# Each is scoped by tenant (DESIGN.md §5 rule 7): a detail view looks its id up in these querysets, so
# another tenant's id is simply not found (404).


def agent_profile_list(*, tenant: Tenant) -> QuerySet[AgentProfile]:
    return AgentProfile.objects.filter(tenant=tenant).order_by("name", "pk")


def campaign_list(*, tenant: Tenant) -> QuerySet[Campaign]:
    return (
        Campaign.objects.filter(tenant=tenant)
        .select_related("agent")
        .prefetch_related("transfer_target_links")
        .order_by("-priority", "name", "pk")
    )


def contact_list(*, tenant: Tenant, phone_number: str | None = None) -> QuerySet[Contact]:
    contacts = Contact.objects.filter(tenant=tenant).order_by("phone_number", "pk")
    if phone_number is not None:
        contacts = contacts.filter(phone_number=normalize_phone_number(phone_number, field="phone_number"))
    return contacts


def lead_list(*, tenant: Tenant, campaign_id: int | None = None, status: str | None = None) -> QuerySet[Lead]:
    leads = Lead.objects.filter(campaign__tenant=tenant).select_related("contact").order_by("pk")
    if campaign_id is not None:
        leads = leads.filter(campaign_id=campaign_id)
    if status is not None:
        leads = leads.filter(status=status)
    return leads


def attempt_list(
    *,
    tenant: Tenant,
    campaign_id: int | None = None,
    lead_id: int | None = None,
    state: str | None = None,
    outcome: str | None = None,
) -> QuerySet[CallAttempt]:
    attempts = CallAttempt.objects.filter(tenant=tenant).order_by("-queued_at", "pk")
    if campaign_id is not None:
        attempts = attempts.filter(campaign_id=campaign_id)
    if lead_id is not None:
        attempts = attempts.filter(lead_id=lead_id)
    if state is not None:
        attempts = attempts.filter(state=state)
    if outcome is not None:
        attempts = attempts.filter(outcome=outcome)
    return attempts


def attempt_list_with_events(*, tenant: Tenant) -> QuerySet[CallAttempt]:
    """Attempts with their event logs loaded (detail views)."""
    return attempt_list(tenant=tenant).prefetch_related(
        Prefetch("events", queryset=AttemptEvent.objects.order_by("at", "pk"))
    )


def contact_import_list(*, tenant: Tenant) -> QuerySet[ContactImport]:
    """The tenant's queued CSV imports, newest first, without their uploaded files."""
    return ContactImport.objects.filter(tenant=tenant).defer("data").order_by("-created_at", "-pk")


def dnc_list(*, tenant: Tenant) -> QuerySet[DncEntry]:
    return DncEntry.objects.filter(tenant=tenant).order_by("phone_number", "pk")


def pbx_list(*, tenant: Tenant) -> QuerySet[Pbx]:
    """The PBXs the tenant may place calls on (the platform's it is placed on, and its own), each with
    ``share``: its share of the PBX's channels (None: none of its own)."""
    return (
        Pbx.objects.filter(placements__tenant=tenant)
        .annotate(share=F("placements__max_channels"))
        .order_by("name", "pk")
    )


def campaign_stats(*, campaign: Campaign) -> dict[str, Any]:
    """Leads by status, ended attempts by outcome (every status and outcome present, 0 when none), the
    number of calls live now, and attempts by state."""
    leads: dict[str, int] = dict.fromkeys(Lead.Status.values, 0)
    for status, n in (
        Lead.objects.filter(campaign=campaign).order_by().values("status").annotate(n=Count("pk"))
    ).values_list("status", "n"):
        leads[status] = n
    outcomes: dict[str, int] = {outcome.value: 0 for outcome in AttemptOutcome}
    states: dict[str, int] = {state.value: 0 for state in AttemptState}
    rows = (
        CallAttempt.objects.filter(campaign=campaign)
        .order_by()
        .values("state", "outcome")
        .annotate(n=Count("pk"))
        .values_list("state", "outcome", "n")
    )
    for state, outcome, n in rows:
        states[state] = states.get(state, 0) + n
        if state == AttemptState.ENDED and outcome:
            outcomes[outcome] = outcomes.get(outcome, 0) + n
    abandonment = campaign_abandonment_rates(campaign_ids=[campaign.pk])[campaign.pk]
    return {
        **abandonment.as_dict(),
        "campaign_id": campaign.pk,
        "status": campaign.status,
        "leads": leads,
        "leads_total": sum(leads.values()),
        "attempts_by_outcome": outcomes,
        "attempts_by_state": states,
        "attempts_total": sum(states.values()),
        "live_calls": sum(n for state, n in states.items() if state in LIVE_STATE_VALUES),
    }


#: The dashboard's chart: the last hour in one-minute buckets.
DASHBOARD_CHART_MINUTES = 60


def tenant_call_figures(*, tenant: Tenant, now: datetime | None = None) -> dict[str, Any]:
    """The live dashboard's figures (portal and ``GET /api/v1/dashboard``), in a handful of queries:

    * ``live``: calls holding a slot now (campaign attempts plus the tenant's other live calls, inbound and
      pages), against the tenant's cap, and per running or paused campaign against its own cap;
    * ``today`` (since midnight in the tenant's time zone): calls placed, answered, ended by outcome, the
      answer rate (answered of placed and ended), average talk time and minutes used (answered time);
    * ``last_hour``: per minute, calls placed, answered and ended (for the chart; minute starts as Unix
      seconds).
    """
    now = now or timezone.now()
    zone = ZoneInfo(tenant.default_timezone)
    midnight = now.astimezone(zone).replace(hour=0, minute=0, second=0, microsecond=0)
    attempts = CallAttempt.objects.filter(tenant=tenant)

    live_by_campaign: dict[int, int] = dict(
        live_attempts(tenant=tenant)
        .order_by()
        .values("campaign_id")
        .annotate(n=Count("pk"))
        .values_list("campaign_id", "n")
    )
    active = Campaign.objects.filter(tenant=tenant).filter(
        Q(status__in=[Campaign.Status.RUNNING, Campaign.Status.PAUSED]) | Q(pk__in=list(live_by_campaign))
    )
    active_rows = list(
        active.order_by("-priority", "name", "pk").only("pk", "name", "status", "max_concurrent_calls")
    )
    abandonment = campaign_abandonment_rates(campaign_ids=[c.pk for c in active_rows], now=now)
    campaigns = [
        {
            "id": c.pk,
            "name": c.name,
            "status": c.status,
            "live": live_by_campaign.get(c.pk, 0),
            "cap": c.max_concurrent_calls,
            **abandonment[c.pk].as_dict(),
        }
        for c in active_rows
    ]
    live_outbound = sum(live_by_campaign.values())
    live_elsewhere = tenant_live_calls_elsewhere(tenant_id=tenant.pk)

    today = attempts.filter(originated_at__gte=midnight).aggregate(
        placed=Count("pk"),
        answered=Count("pk", filter=Q(answered_at__isnull=False)),
        ended=Count("pk", filter=Q(state=AttemptState.ENDED)),
        ended_answered=Count("pk", filter=Q(state=AttemptState.ENDED, answered_at__isnull=False)),
        talk_s=Sum("duration_s", filter=Q(answered_at__isnull=False)),
        avg_talk_s=Avg("duration_s", filter=Q(answered_at__isnull=False, duration_s__isnull=False)),
    )
    outcomes: dict[str, int] = dict(
        attempts.filter(ended_at__gte=midnight, state=AttemptState.ENDED)
        .exclude(outcome="")
        .order_by()
        .values("outcome")
        .annotate(n=Count("pk"))
        .values_list("outcome", "n")
    )
    answer_rate = (today["ended_answered"] / today["ended"]) if today["ended"] else None

    start = (now - timedelta(minutes=DASHBOARD_CHART_MINUTES - 1)).replace(second=0, microsecond=0)
    minutes = [start + timedelta(minutes=i) for i in range(DASHBOARD_CHART_MINUTES)]
    buckets: dict[str, dict[datetime, int]] = {"placed": {}, "answered": {}, "ended": {}}
    for name, column in (("placed", "originated_at"), ("answered", "answered_at"), ("ended", "ended_at")):
        rows = (
            attempts.filter(**{f"{column}__gte": start})
            .annotate(minute=TruncMinute(column))
            .order_by()
            .values("minute")
            .annotate(n=Count("pk"))
            .values_list("minute", "n")
        )
        for minute, n in rows:
            buckets[name][minute.replace(tzinfo=UTC) if minute.tzinfo is None else minute] = n
    return {
        "at": now,
        "live": {
            "total": live_outbound + live_elsewhere,
            "outbound": live_outbound,
            "inbound_and_pages": live_elsewhere,
            "cap": tenant.max_concurrent_calls,
            "campaigns": campaigns,
        },
        "today": {
            "since": midnight,
            "placed": today["placed"],
            "answered": today["answered"],
            "by_outcome": dict(sorted(outcomes.items(), key=lambda kv: (-kv[1], kv[0]))),
            "answer_rate": answer_rate,
            "avg_talk_s": round(today["avg_talk_s"], 1) if today["avg_talk_s"] is not None else None,
            "minutes_used": round((today["talk_s"] or 0.0) / 60, 1),
        },
        "last_hour": {
            "minutes": [int(m.timestamp()) for m in minutes],
            "placed": [buckets["placed"].get(m, 0) for m in minutes],
            "answered": [buckets["answered"].get(m, 0) for m in minutes],
            "ended": [buckets["ended"].get(m, 0) for m in minutes],
        },
    }


# --- portal: campaigns and agents
# Reads of the portal's campaign and agent pages, each in a fixed number of queries however long the list.

#: The outcomes chart of a campaign: the last 48 hours by hour, or the last 30 days by day.
OUTCOME_CHART_BUCKETS: dict[str, tuple[timedelta, int]] = {
    "hour": (timedelta(hours=1), 48),
    "day": (timedelta(days=1), 30),
}
#: A lead that no longer needs dialing: finished or suppressed (the campaign's progress).
LEAD_FINISHED_STATUSES: tuple[str, ...] = (Lead.Status.DONE, Lead.Status.SUPPRESSED)


def _count_subquery(queryset: QuerySet[Any], ref: str) -> Coalesce:
    counted = (
        queryset.filter(**{ref: OuterRef("pk")}).order_by().values(ref).annotate(n=Count("pk")).values("n")
    )
    return Coalesce(Subquery(counted), 0)


def campaign_list_with_progress(*, tenant: Tenant) -> QuerySet[Campaign]:
    """:func:`campaign_list` with, per campaign, ``leads_total``, ``leads_finished`` (done or suppressed)
    and ``live_calls`` (attempts holding a slot now): one query for any number of campaigns."""
    return campaign_list(tenant=tenant).annotate(
        leads_total=_count_subquery(Lead.objects.all(), "campaign"),
        leads_finished=_count_subquery(Lead.objects.filter(status__in=LEAD_FINISHED_STATUSES), "campaign"),
        live_calls=_count_subquery(CallAttempt.objects.filter(state__in=LIVE_STATE_VALUES), "campaign"),
    )


def campaign_outcomes_over_time(
    *, campaign: Campaign, bucket: str = "hour", now: datetime | None = None
) -> dict[str, Any]:
    """Ended attempts of the campaign per hour (the last 48) or per day (the last 30), by outcome:
    ``{"bucket", "x": [bucket starts as Unix seconds], "series": {outcome: [counts]}}``; only outcomes that
    occur in the period are listed. Buckets are UTC hours or days. One query."""
    step, count = OUTCOME_CHART_BUCKETS[bucket]
    now = now or timezone.now()
    last = now.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    if bucket == "day":
        last = last.replace(hour=0)
    starts = [last - step * (count - 1 - i) for i in range(count)]
    trunc = TruncHour("ended_at", tzinfo=UTC) if bucket == "hour" else TruncDay("ended_at", tzinfo=UTC)
    rows = (
        CallAttempt.objects.filter(campaign=campaign, state=AttemptState.ENDED, ended_at__gte=starts[0])
        .exclude(outcome="")
        .annotate(at=trunc)
        .order_by()
        .values("at", "outcome")
        .annotate(n=Count("pk"))
        .values_list("at", "outcome", "n")
    )
    counts: dict[str, dict[datetime, int]] = {}
    for at, outcome, n in rows:
        at = at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
        counts.setdefault(outcome, {})[at] = counts.get(outcome, {}).get(at, 0) + n
    return {
        "bucket": bucket,
        "x": [int(start.timestamp()) for start in starts],
        "series": {
            outcome: [per.get(start, 0) for start in starts] for outcome, per in sorted(counts.items())
        },
    }


def agent_profile_list_with_usage(*, tenant: Tenant) -> QuerySet[AgentProfile]:
    """:func:`agent_profile_list` with ``campaigns_count`` (campaigns using the profile): one query."""
    return agent_profile_list(tenant=tenant).annotate(
        campaigns_count=_count_subquery(Campaign.objects.all(), "agent")
    )


#: The contact a brief preview is rendered for when none is picked.
SAMPLE_CONTACT = {"name": "Alex Example", "phone_number": "+14155550123", "variables": {}}


def agent_brief_preview(
    *, tenant: Tenant, agent: AgentProfile, contact: Contact | None = None, campaign: Campaign | None = None
) -> dict[str, Any]:
    """The call brief a call of ``agent`` to ``contact`` would carry (``campaigns.services.briefs.
    brief_build``, the code that writes the real brief, on an unsaved attempt: nothing is written), with the
    variables its texts use and those the contact lacks (``brief_texts``). ``contact``: a sample contact when
    None; ``campaign``: the campaign's caller id and ring timeout, else the defaults. Reads nothing."""
    from campaigns.services.briefs import brief_build, brief_texts  # lazy: briefs is a write-side module

    contact = contact or Contact(
        tenant=tenant,
        name=str(SAMPLE_CONTACT["name"]),
        phone_number=str(SAMPLE_CONTACT["phone_number"]),
        variables={},
    )
    # A copy: the profile previewed stands in for the campaign's own agent, and the caller's row is untouched.
    campaign = (
        copy.copy(campaign)
        if campaign is not None
        else Campaign(tenant=tenant, name="(preview)", caller_id="")
    )
    campaign.agent = agent
    lead = Lead(campaign=campaign, contact=contact)
    attempt = CallAttempt(tenant=tenant, campaign=campaign, lead=lead, number=contact.phone_number)
    brief = brief_build(attempt=attempt, endpoint_for=lambda number: "")
    texts = brief_texts(agent=agent, contact=contact)
    return {
        "brief": brief,
        "variables_used": texts.used,
        "variables_missing": texts.missing,
        "contact": contact,
    }


# --- portal: calls and imports


def attempt_log(
    *,
    tenant: Tenant,
    number: str = "",
    campaign_id: int | None = None,
    state: str | None = None,
    outcome: str | None = None,
    disposition: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> QuerySet[CallAttempt]:
    """The call log: the tenant's attempts, newest first, with their campaign and contact, without the
    transcript and media metrics. ``number`` matches the digits anywhere in the number dialed; ``since``
    and ``until`` bound the time the attempt was queued (``until`` excluded)."""
    attempts = attempt_list(tenant=tenant, campaign_id=campaign_id, state=state, outcome=outcome)
    digits = "".join(ch for ch in number if ch.isdigit())
    if digits:
        attempts = attempts.filter(number__contains=digits)
    if disposition:
        attempts = attempts.filter(disposition=disposition)
    if since is not None:
        attempts = attempts.filter(queued_at__gte=since)
    if until is not None:
        attempts = attempts.filter(queued_at__lt=until)
    return attempts.select_related("campaign", "lead__contact").defer("transcript", "media_metrics")


def attempt_page(*, tenant: Tenant) -> QuerySet[CallAttempt]:
    """Attempts with everything a call's page shows: campaign, agent, contact, PBX and the event log."""
    return attempt_list_with_events(tenant=tenant).select_related("campaign__agent", "lead__contact", "pbx")


@dataclass(frozen=True)
class TranscriptTurn:
    role: str
    text: str
    at: datetime | None
    interrupted: bool = False


def attempt_transcript(*, attempt: CallAttempt) -> list[TranscriptTurn]:
    """The stored transcript turn by turn (``at`` parsed; a turn the agent was cut off in says so)."""
    turns = []
    for line in attempt.transcript if isinstance(attempt.transcript, list) else []:
        if not isinstance(line, dict):
            continue
        at = None
        if isinstance(line.get("at"), str):
            try:
                at = datetime.fromisoformat(line["at"])
            except ValueError:
                at = None
        turns.append(
            TranscriptTurn(
                role=str(line.get("role", "")),
                text=str(line.get("text", "")),
                at=at,
                interrupted="interrupted_at_ms" in line,
            )
        )
    return turns


@dataclass(frozen=True)
class ToolCall:
    tool: str
    result: str
    at: datetime | None


def attempt_tool_calls(*, turns: Iterable[TranscriptTurn]) -> list[ToolCall]:
    """The agent's tool calls in the call, as the media worker wrote them into the transcript: a system
    line ``"<tool>: <result>"`` per call (media/call.py), e.g. ``set_disposition: {"ok":true}``."""
    known = set(AGENT_TOOLS) | {"record_intake", "report_urgent"}
    calls = []
    for turn in turns:
        if turn.role != "system":
            continue
        tool, _, result = turn.text.partition(": ")
        if tool in known:
            calls.append(ToolCall(tool=tool, result=result, at=turn.at))
    return calls


def attempt_recording_url(*, attempt: CallAttempt) -> str | None:
    """Where the call's recording can be played from; None while the product records no calls (no
    recording is stored yet, so the call page shows no player)."""
    return None


def contact_import_log(*, tenant: Tenant, campaign_id: int | None = None) -> QuerySet[ContactImport]:
    """The tenant's contact imports with their campaign, newest first, without their files."""
    imports = contact_import_list(tenant=tenant).select_related("campaign")
    if campaign_id is not None:
        imports = imports.filter(campaign_id=campaign_id)
    return imports


def dnc_search(*, tenant: Tenant, number: str = "") -> QuerySet[DncEntry]:
    """The tenant's DNC list; ``number`` matches the digits anywhere in the number."""
    digits = "".join(ch for ch in number if ch.isdigit())
    entries = dnc_list(tenant=tenant)
    return entries.filter(phone_number__contains=digits) if digits else entries


def dnc_numbers_among(*, tenant: Tenant, phone_numbers: list[str]) -> set[str]:
    """Which of ``phone_numbers`` are on the tenant's DNC list (one query)."""
    return set(
        DncEntry.objects.filter(tenant=tenant, phone_number__in=phone_numbers).values_list(
            "phone_number", flat=True
        )
    )
