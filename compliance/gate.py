"""The pre-send gate: may this message go to this person now?

Messaging asks twice — when a message is created and again right before it is sent, because consent
can change in between. The gate only reads compliance data; everything it needs to know about the
message and the conversation comes in `MessageFacts`, so compliance never reads messaging's tables.

Decisions, in order of precedence:
    suppressed      the number is on the suppression list                       deny
    opted_out       the person opted out of this purpose (free-form: of utility, deny
                    unless they wrote to us again after opting out)
    template_paused the template is paused or disabled by Meta                  deny
    no_consent      a template without a granted consent for its category       deny
    window_closed   free-form outside the 24 h customer-service window          deny
    frequency_cap   marketing beyond the configured cap                         deny
    quiet_hours     marketing outside recipient-local hours                     defer until they open

Three system messages carry a `purpose` that earns each one narrow exception, and nothing more:
    opt_out_confirmation   the one free-form reply confirming a WhatsApp keyword opt-out (STOP): allowed
                           only while the person is opted out by their own keyword, within 24 h of it
                           and of their last message; anything else to them stays blocked
    double_opt_in_request  the confirmation template asked for by a double opt-in form: allowed only
                           while some purpose of the person waits for that confirmation (pending)
    privacy_request        a message about the person's own privacy request (verification code,
                           acknowledgement, extension notice): answers something they asked for, so
                           consent and opt-outs do not apply; Meta's 24 h window (free-form) does
All of them still respect the suppression list and Meta's template status.
"""

import enum
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from django.conf import settings
from phonenumbers import timezone as phone_timezones

import config.lookups  # noqa: F401 - registers the any_of lookup
from compliance.crypto import phone_keyed_hash
from compliance.models import ConsentEvent, ConsentSource, ConsentState, ConsentStatus, Purpose, Suppression

CUSTOMER_SERVICE_WINDOW = timedelta(hours=24)
BLOCKED_TEMPLATE_STATUSES = frozenset({"PAUSED", "DISABLED", "REJECTED", "PENDING_DELETION", "DELETED"})


class SystemPurpose(enum.StrEnum):
    """System messages the gate treats specially (see the module docstring); "" for every other one."""

    OPT_OUT_CONFIRMATION = "opt_out_confirmation"
    DOUBLE_OPT_IN_REQUEST = "double_opt_in_request"
    PRIVACY_REQUEST = "privacy_request"


class Verdict(enum.StrEnum):
    ALLOW = "allow"
    DENY = "deny"
    DEFER = "defer"


@dataclass(frozen=True)
class MessageFacts:
    contact_id: int
    phone_number: str  # E.164
    at: datetime  # when the message would go out
    kind: str = "free_form"  # "free_form" (text, media, ...) or "template"
    template_category: str = ""  # MARKETING / UTILITY / AUTHENTICATION for templates
    template_status: str = ""  # Meta's status of the template, e.g. APPROVED, PAUSED
    timezone: str = ""  # the recipient's IANA zone, if known
    last_inbound_at: datetime | None = None  # the person's last message to us
    marketing_sent_recently: int = 0  # marketing messages sent in the cap's period
    purpose: str = ""  # a SystemPurpose for the system messages with their own rule, else ""


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    code: str = ""
    detail: str = ""
    defer_until: datetime | None = None

    @property
    def allowed(self) -> bool:
        return self.verdict is Verdict.ALLOW


ALLOW = Decision(Verdict.ALLOW)


def _deny(code: str, detail: str) -> Decision:
    return Decision(Verdict.DENY, code, detail)


def purpose_of(facts: MessageFacts) -> str:
    if facts.kind == "template":
        return facts.template_category.lower()
    return Purpose.UTILITY  # free-form replies are customer service


#: Where a +1 number nobody can place may be: its quiet hours must hold in all of them.
NANP_FALLBACK_ZONES = (
    "America/New_York", "America/Chicago", "America/Denver", "America/Los_Angeles", "America/Anchorage",
    "Pacific/Honolulu",
)  # fmt: skip
DEFAULT_ZONE = "America/New_York"


def _zones(names) -> list[ZoneInfo]:
    zones = []
    for name in names:
        try:
            zones.append(ZoneInfo(name))
        except (ZoneInfoNotFoundError, ValueError):
            continue
    return zones


def recipient_zones(facts: MessageFacts) -> list[ZoneInfo]:
    """The recipient's zone if known, else every zone their number's region spans (a US number
    without a known zone must be inside quiet hours from Hawaii to Maine)."""
    if facts.timezone and (known := _zones([facts.timezone])):
        return known
    try:
        number = phonenumbers.parse(facts.phone_number)
    except phonenumbers.NumberParseException:
        return _zones([DEFAULT_ZONE])
    names = [
        n for n in phone_timezones.time_zones_for_number(number) if n != phone_timezones.UNKNOWN_TIMEZONE
    ]
    if not names and number.country_code == 1:
        names = list(NANP_FALLBACK_ZONES)
    return _zones(names) or _zones([DEFAULT_ZONE])


def quiet_hours_reopen(facts: MessageFacts) -> datetime | None:
    """None when `facts.at` is inside allowed hours in every recipient zone, else the earliest moment
    (UTC) at which it is."""
    start, end = settings.CONSENT_QUIET_HOURS_START, settings.CONSENT_QUIET_HOURS_END
    zones = recipient_zones(facts)

    def allowed_at(moment: datetime) -> bool:
        return all(start <= moment.astimezone(zone).hour < end for zone in zones)

    if allowed_at(facts.at):
        return None
    # Try each zone's next opening (and the following day's): the earliest one allowed everywhere.
    candidates = []
    for zone in zones:
        local = facts.at.astimezone(zone)
        for days in (0, 1, 2):
            opening = datetime.combine(local.date() + timedelta(days=days), time(start), tzinfo=zone)
            if opening > facts.at:
                candidates.append(opening.astimezone(facts.at.tzinfo))
    for candidate in sorted(candidates):
        if allowed_at(candidate):
            return candidate
    return min(candidates)  # the zones never overlap: the earliest opening is the least bad


@dataclass
class _Preloaded:
    states: dict[tuple[int, str], ConsentState] = field(default_factory=dict)
    suppressed: set[str] = field(default_factory=set)


def _preload(facts_list: Sequence[MessageFacts]) -> _Preloaded:
    contact_ids = {f.contact_id for f in facts_list}
    hashes = {phone_keyed_hash(f.phone_number): f.phone_number for f in facts_list}
    loaded = _Preloaded()
    # any_of: one array parameter for a whole audience batch (config.lookups).
    for state in ConsentState.objects.filter(contact_id__any_of=contact_ids):
        loaded.states[(state.contact_id, state.purpose)] = state
    loaded.suppressed = {
        hashes[h]
        for h in Suppression.objects.filter(phone_hash__any_of=hashes).values_list("phone_hash", flat=True)
    }
    return loaded


def _opt_out_confirmation(facts: MessageFacts, loaded: _Preloaded) -> Decision:
    """The STOP confirmation: free-form, to a person opted out by their own keyword in the last 24 h."""
    if facts.kind != "free_form":
        return _deny("invalid_purpose", "An opt-out confirmation is a plain reply, not a template.")
    state = loaded.states.get((facts.contact_id, Purpose.UTILITY))
    if state is None or state.status != ConsentStatus.REVOKED:
        return _deny("not_opted_out", "The person is not opted out (any more): no opt-out to confirm.")
    # One extra query, for this rare message only (audiences never load the ledger events).
    source = ConsentEvent.objects.filter(pk=state.last_event_id).values_list("source", flat=True).first()
    if source != ConsentSource.WHATSAPP_KEYWORD:
        return _deny("opted_out", "The person was opted out by other means than their own keyword.")
    if facts.at - state.changed_at > CUSTOMER_SERVICE_WINDOW or (
        facts.last_inbound_at is None or facts.at - facts.last_inbound_at > CUSTOMER_SERVICE_WINDOW
    ):
        return _deny("window_closed", "The opt-out is more than 24 hours old: too late to confirm it.")
    return ALLOW


def _double_opt_in_request(facts: MessageFacts, loaded: _Preloaded) -> Decision:
    """The double opt-in confirmation template: only while something waits for that confirmation."""
    if facts.kind != "template":
        return _deny("invalid_purpose", "A double opt-in request is sent as an approved template.")
    if facts.template_status.upper() in BLOCKED_TEMPLATE_STATUSES:
        return _deny("template_paused", f"The template is {facts.template_status.lower()} by Meta.")
    pending = any(
        state.status == ConsentStatus.PENDING
        for (contact_id, _), state in loaded.states.items()
        if contact_id == facts.contact_id
    )
    if not pending:
        return _deny("nothing_to_confirm", "No opt-in of this person waits for confirmation.")
    return ALLOW


def _privacy_request(facts: MessageFacts, loaded: _Preloaded) -> Decision:
    """About the person's own CCPA request: no consent needed, but Meta's own rules still hold."""
    if facts.kind == "template":
        if facts.template_status.upper() in BLOCKED_TEMPLATE_STATUSES:
            return _deny("template_paused", f"The template is {facts.template_status.lower()} by Meta.")
        return ALLOW
    if facts.last_inbound_at is None or facts.at - facts.last_inbound_at > CUSTOMER_SERVICE_WINDOW:
        return _deny(
            "window_closed",
            "More than 24 hours since the person last wrote: only an approved template can reach them.",
        )
    return ALLOW


#: Purpose.values builds a new list on every access; audiences ask once per recipient.
PURPOSES = frozenset(Purpose.values)

SYSTEM_RULES = {
    SystemPurpose.OPT_OUT_CONFIRMATION: _opt_out_confirmation,
    SystemPurpose.DOUBLE_OPT_IN_REQUEST: _double_opt_in_request,
    SystemPurpose.PRIVACY_REQUEST: _privacy_request,
}


def _decide(facts: MessageFacts, loaded: _Preloaded) -> Decision:
    if facts.phone_number in loaded.suppressed:
        return _deny("suppressed", "This number is on the suppression list.")
    if facts.purpose:
        rule = SYSTEM_RULES.get(facts.purpose)
        if rule is None:
            return _deny("invalid_purpose", f"Unknown system purpose {facts.purpose!r}.")
        return rule(facts, loaded)
    purpose = purpose_of(facts)
    state = loaded.states.get((facts.contact_id, purpose))
    opted_out = state is not None and state.status == ConsentStatus.REVOKED
    if facts.kind == "template":
        if opted_out:
            return _deny("opted_out", f"The person opted out of {purpose} messages.")
        if facts.template_status.upper() in BLOCKED_TEMPLATE_STATUSES:
            return _deny("template_paused", f"The template is {facts.template_status.lower()} by Meta.")
        if purpose not in PURPOSES or state is None or state.status != ConsentStatus.GRANTED:
            pending = state is not None and state.status == ConsentStatus.PENDING
            return _deny(
                "no_consent",
                f"No {'confirmed ' if pending else ''}consent for {purpose or 'this'} messages"
                + (" (double opt-in not confirmed yet)." if pending else "."),
            )
    else:
        wrote_after_opt_out = (
            facts.last_inbound_at is not None
            and state is not None
            and facts.last_inbound_at > state.changed_at
        )
        if opted_out and not wrote_after_opt_out:
            return _deny("opted_out", "The person opted out and has not written to us since.")
        if facts.last_inbound_at is None or facts.at - facts.last_inbound_at > CUSTOMER_SERVICE_WINDOW:
            return _deny(
                "window_closed",
                "More than 24 hours since the person last wrote: only an approved template can reach them.",
            )
    if purpose == Purpose.MARKETING:
        cap = settings.CONSENT_MARKETING_FREQUENCY_CAP
        if cap and facts.marketing_sent_recently >= cap:
            return _deny(
                "frequency_cap",
                f"Already {facts.marketing_sent_recently} marketing messages in {settings.CONSENT_FREQUENCY_CAP_DAYS} days (cap {cap}).",
            )
        reopen = quiet_hours_reopen(facts)
        if reopen is not None:
            return Decision(
                Verdict.DEFER, "quiet_hours", "Outside the recipient's local sending hours.", reopen
            )
    return ALLOW


def gate_check(facts: MessageFacts) -> Decision:
    """The decision for one message."""
    return _decide(facts, _preload([facts]))


def gate_check_many(facts_list: Sequence[MessageFacts]) -> list[Decision]:
    """Decisions for a whole audience with two queries (campaign dry runs, fan-out)."""
    loaded = _preload(facts_list)
    return [_decide(facts, loaded) for facts in facts_list]


def gate_explain(facts_list: Sequence[MessageFacts]) -> Counter:
    """How many would be allowed, and how many excluded for each reason code."""
    return Counter(decision.code or "allow" for decision in gate_check_many(facts_list))
