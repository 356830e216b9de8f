"""The pre-send gate (compliance/gate.py): every reason to refuse or defer, quiet hours across US time
zones and daylight-saving changes, and a whole audience checked with a bounded number of queries.

Every check passes an explicit `at=`; consent is recorded through the ledger's services, so the gate
reads the same projection production does."""

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.test import override_settings
from django.utils import timezone

from compliance.crypto import phone_keyed_hash
from compliance.gate import MessageFacts, Verdict, gate_check, gate_check_many, gate_explain
from compliance.models import Suppression
from compliance.services import Evidence, consent_opt_out_everywhere, consent_record, consent_text_create

pytestmark = pytest.mark.django_db

CHICAGO = ZoneInfo("America/Chicago")
LOS_ANGELES = ZoneInfo("America/Los_Angeles")
NEW_YORK = ZoneInfo("America/New_York")
WEB = Evidence(ip_address="203.0.113.7", user_agent="Mozilla/5.0", page_url="https://shop.example/opt-in/")
#: Midday in every US zone (16:00 UTC is 12:00 in New York and 09:00 in Los Angeles, June).
MIDDAY = datetime(2025, 6, 10, 16, 0, tzinfo=UTC)

_next_contact_id = iter(range(1000, 10**6))


@pytest.fixture(autouse=True)
def consent_text(db):
    return consent_text_create(version="v1", business_name="Acme", body="Acme offers. Reply STOP to stop.")


def person(phone: str = "", **consent) -> tuple[int, str]:
    """A (contact id, phone) with consent recorded per purpose: granted / pending / revoked."""
    contact_id = next(_next_contact_id)
    phone = phone or f"+1212555{contact_id % 10_000:04d}"
    for purpose, status in consent.items():
        if status == "revoked":
            consent_record(
                contact_id=contact_id,
                phone_number=phone,
                purpose=purpose,
                action="opt_out",
                source="whatsapp_keyword",
                evidence=Evidence(message_id="wamid.STOP"),
                occurred_at=MIDDAY - timedelta(days=3),
            )
        else:
            consent_record(
                contact_id=contact_id,
                phone_number=phone,
                purpose=purpose,
                action="opt_in",
                source="web_form",
                evidence=WEB,
                text_version="v1",
                awaiting_confirmation=status == "pending",
                occurred_at=MIDDAY - timedelta(days=30),
            )
    return contact_id, phone


def template(contact: tuple[int, str], at: datetime = MIDDAY, **kwargs) -> MessageFacts:
    contact_id, phone = contact
    defaults = {"template_category": "MARKETING", "template_status": "APPROVED", "timezone": ""}
    return MessageFacts(
        contact_id=contact_id, phone_number=phone, at=at, kind="template", **defaults | kwargs
    )


def free_form(contact: tuple[int, str], at: datetime = MIDDAY, **kwargs) -> MessageFacts:
    contact_id, phone = contact
    return MessageFacts(contact_id=contact_id, phone_number=phone, at=at, kind="free_form", **kwargs)


def local(zone: ZoneInfo, *args: int) -> datetime:
    return datetime(*args, tzinfo=zone)


# --- Allow / deny -----------------------------------------------------------------------------------


@pytest.mark.parametrize("category", ["MARKETING", "UTILITY", "AUTHENTICATION"])
def test_a_template_with_granted_consent_for_its_category_is_allowed(category):
    contact = person(**{category.lower(): "granted"})
    decision = gate_check(template(contact, template_category=category))
    assert decision.allowed
    assert (decision.verdict, decision.code, decision.defer_until) == (Verdict.ALLOW, "", None)


def test_consent_for_another_category_does_not_count():
    contact = person(utility="granted")
    decision = gate_check(template(contact, template_category="MARKETING"))
    assert (decision.verdict, decision.code) == (Verdict.DENY, "no_consent")


def test_a_template_without_any_consent_is_refused():
    decision = gate_check(template(person()))
    assert (decision.verdict, decision.code) == (Verdict.DENY, "no_consent")


def test_a_pending_double_opt_in_is_not_consent_yet():
    contact = person(marketing="pending")
    decision = gate_check(template(contact))
    assert (decision.verdict, decision.code) == (Verdict.DENY, "no_consent")
    assert "double opt-in not confirmed" in decision.detail


def test_a_template_without_a_known_category_is_refused():
    contact = person(marketing="granted")
    assert gate_check(template(contact, template_category="")).code == "no_consent"


def test_a_template_after_opting_out_is_refused_even_if_the_person_wrote_since():
    contact = person(marketing="granted")
    consent_opt_out_everywhere(
        contact_id=contact[0],
        phone_number=contact[1],
        source="whatsapp_keyword",
        evidence=Evidence(message_id="wamid.STOP"),
        occurred_at=MIDDAY - timedelta(hours=2),
    )
    decision = gate_check(template(contact, last_inbound_at=MIDDAY - timedelta(minutes=5)))
    assert (decision.verdict, decision.code) == (Verdict.DENY, "opted_out")


def test_opted_out_takes_precedence_over_a_paused_template():
    contact = person(marketing="revoked")
    assert gate_check(template(contact, template_status="PAUSED")).code == "opted_out"


def test_free_form_after_opting_out_is_refused_until_the_person_writes_again():
    contact = person(utility="granted")
    opted_out_at = MIDDAY - timedelta(hours=3)
    consent_opt_out_everywhere(
        contact_id=contact[0],
        phone_number=contact[1],
        source="whatsapp_keyword",
        evidence=Evidence(message_id="wamid.STOP"),
        occurred_at=opted_out_at,
    )
    # The STOP itself was their last message: inside the window, but they opted out.
    refused = gate_check(free_form(contact, last_inbound_at=opted_out_at))
    assert (refused.verdict, refused.code) == (Verdict.DENY, "opted_out")
    # They wrote to us again later: replying is customer service again.
    assert gate_check(free_form(contact, last_inbound_at=opted_out_at + timedelta(hours=1))).allowed


def test_free_form_does_not_need_consent_inside_the_customer_service_window():
    assert gate_check(free_form(person(), last_inbound_at=MIDDAY - timedelta(hours=1))).allowed


def test_a_suppressed_number_is_refused_before_anything_else():
    contact = person(marketing="granted", utility="granted")
    Suppression.objects.create(phone_hash=phone_keyed_hash(contact[1]), reason="legal hold")
    assert gate_check(template(contact)).code == "suppressed"
    assert gate_check(free_form(contact, last_inbound_at=MIDDAY - timedelta(minutes=1))).code == "suppressed"
    # Another number with the same consent is unaffected.
    assert gate_check(template(person(marketing="granted"))).allowed


@pytest.mark.parametrize(
    ("hours_since_inbound", "code"),
    [(1, ""), (23, ""), (24, ""), (24.01, "window_closed"), (25, "window_closed")],
)
def test_free_form_only_inside_the_24_hour_window(hours_since_inbound, code):
    facts = free_form(person(), last_inbound_at=MIDDAY - timedelta(hours=hours_since_inbound))
    assert gate_check(facts).code == code


def test_free_form_to_someone_who_never_wrote_is_refused():
    assert gate_check(free_form(person(utility="granted"))).code == "window_closed"


@pytest.mark.parametrize("status", ["PAUSED", "DISABLED", "paused"])
def test_a_paused_or_disabled_template_is_refused(status):
    contact = person(marketing="granted")
    decision = gate_check(template(contact, template_status=status))
    assert (decision.verdict, decision.code) == (Verdict.DENY, "template_paused")


@override_settings(CONSENT_MARKETING_FREQUENCY_CAP=3)
def test_the_marketing_frequency_cap():
    contact = person(marketing="granted", utility="granted")
    assert gate_check(template(contact, marketing_sent_recently=2)).allowed
    capped = gate_check(template(contact, marketing_sent_recently=3))
    assert (capped.verdict, capped.code) == (Verdict.DENY, "frequency_cap")
    # Utility templates are not marketing.
    assert gate_check(template(contact, template_category="UTILITY", marketing_sent_recently=9)).allowed


@override_settings(CONSENT_MARKETING_FREQUENCY_CAP=0)
def test_no_frequency_cap_when_the_setting_is_zero():
    assert gate_check(template(person(marketing="granted"), marketing_sent_recently=500)).allowed


def test_the_gate_sees_a_change_of_consent_immediately():
    contact = person(marketing="granted")
    assert gate_check(template(contact)).allowed
    consent_record(
        contact_id=contact[0],
        phone_number=contact[1],
        purpose="marketing",
        action="opt_out",
        source="api",
        evidence=Evidence(ip_address="198.51.100.1"),
    )
    assert gate_check(template(contact)).code == "opted_out"


# --- Quiet hours -------------------------------------------------------------------------------------


def test_marketing_at_0730_chicago_is_deferred_until_0800_chicago():
    contact = person(marketing="granted")
    at = local(CHICAGO, 2025, 6, 10, 7, 30)
    decision = gate_check(template(contact, at=at, timezone="America/Chicago"))
    assert (decision.verdict, decision.code) == (Verdict.DEFER, "quiet_hours")
    assert decision.defer_until == datetime(2025, 6, 10, 13, 0, tzinfo=UTC)  # 08:00 CDT
    assert decision.defer_until.astimezone(CHICAGO).hour == 8


def test_marketing_at_2130_los_angeles_is_deferred_until_0800_the_next_day():
    contact = person(marketing="granted")
    at = local(LOS_ANGELES, 2025, 6, 10, 21, 30)
    decision = gate_check(template(contact, at=at, timezone="America/Los_Angeles"))
    assert (decision.verdict, decision.code) == (Verdict.DEFER, "quiet_hours")
    assert decision.defer_until == datetime(2025, 6, 11, 15, 0, tzinfo=UTC)  # 08:00 PDT, June 11


@pytest.mark.parametrize(
    ("hour", "minute", "deferred"),
    [(7, 59, True), (8, 0, False), (20, 59, False), (21, 0, True), (0, 30, True)],
)
def test_the_quiet_hours_boundaries(hour, minute, deferred):
    contact = person(marketing="granted")
    at = local(NEW_YORK, 2025, 6, 10, hour, minute)
    decision = gate_check(template(contact, at=at, timezone="America/New_York"))
    assert (decision.verdict is Verdict.DEFER) is deferred


def test_the_recipients_zone_matters_not_the_servers():
    contact = person(marketing="granted")
    at = datetime(2025, 6, 10, 13, 30, tzinfo=UTC)  # 09:30 New York, 06:30 Los Angeles
    assert gate_check(template(contact, at=at, timezone="America/New_York")).allowed
    assert gate_check(template(contact, at=at, timezone="America/Los_Angeles")).code == "quiet_hours"


def test_a_us_number_without_a_known_zone_waits_until_0800_in_every_zone_it_maps_to():
    # An Alaska number (+1 907) spans America/Anchorage (UTC-8 in June) and America/Adak (UTC-9).
    contact = person(phone="+19075550123", marketing="granted")
    at = local(ZoneInfo("America/Anchorage"), 2025, 6, 10, 8, 30)  # 07:30 on Adak
    decision = gate_check(template(contact, at=at))
    assert decision.code == "quiet_hours"
    assert decision.defer_until == datetime(2025, 6, 10, 17, 0, tzinfo=UTC)  # 08:00 Adak, 09:00 Anchorage
    # With the person's zone known, only that zone counts.
    assert gate_check(template(contact, at=at, timezone="America/Anchorage")).allowed


def test_a_nationwide_number_waits_for_the_hours_all_its_zones_share():
    # A toll-free number maps to every +1 zone from Guam (UTC+10) to Newfoundland (UTC-2:30); in June
    # they are all inside 08:00-21:00 only from 22:00 UTC (08:00 in Guam) to 23:30 UTC (21:00 St John's).
    contact = person(phone="+18005550123", marketing="granted")
    decision = gate_check(template(contact, at=MIDDAY))
    assert decision.code == "quiet_hours"
    assert decision.defer_until == datetime(2025, 6, 10, 22, 0, tzinfo=UTC)
    assert gate_check(template(contact, at=decision.defer_until)).allowed


def test_a_known_zone_for_a_number_in_another_zone_wins():
    # A New York number for someone living in Los Angeles.
    contact = person(phone="+12125550123", marketing="granted")
    at = datetime(2025, 6, 10, 13, 0, tzinfo=UTC)  # 09:00 New York, 06:00 Los Angeles
    assert gate_check(template(contact, at=at)).allowed
    decision = gate_check(template(contact, at=at, timezone="America/Los_Angeles"))
    assert decision.defer_until == datetime(2025, 6, 10, 15, 0, tzinfo=UTC)


@pytest.mark.parametrize("category", ["UTILITY", "AUTHENTICATION"])
def test_utility_and_authentication_templates_ignore_quiet_hours(category):
    contact = person(**{category.lower(): "granted"})
    at = local(CHICAGO, 2025, 6, 10, 3, 0)
    assert gate_check(
        template(contact, at=at, template_category=category, timezone="America/Chicago")
    ).allowed


def test_free_form_replies_ignore_quiet_hours():
    at = local(CHICAGO, 2025, 6, 10, 23, 45)
    facts = free_form(person(), at=at, timezone="America/Chicago", last_inbound_at=at - timedelta(minutes=2))
    assert gate_check(facts).allowed


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        # Saturday 21:30 CST (UTC-6); clocks spring forward at 02:00 on Sunday 9 March 2025, so the
        # next 08:00 is CDT (UTC-5): 13:00 UTC, only 10.5 hours later.
        (local(CHICAGO, 2025, 3, 8, 21, 30), datetime(2025, 3, 9, 13, 0, tzinfo=UTC)),
        # Sunday 07:30, already CDT.
        (local(CHICAGO, 2025, 3, 9, 7, 30), datetime(2025, 3, 9, 13, 0, tzinfo=UTC)),
        # 01:30 CST, just before the change: still 08:00 CDT.
        (local(CHICAGO, 2025, 3, 9, 1, 30), datetime(2025, 3, 9, 13, 0, tzinfo=UTC)),
        # Fall back (2 November 2025): Saturday 21:30 CDT -> Sunday 08:00 CST = 14:00 UTC.
        (local(CHICAGO, 2025, 11, 1, 21, 30), datetime(2025, 11, 2, 14, 0, tzinfo=UTC)),
    ],
)
def test_quiet_hours_across_daylight_saving_changes(at, expected):
    contact = person(marketing="granted")
    decision = gate_check(template(contact, at=at, timezone="America/Chicago"))
    assert decision.code == "quiet_hours"
    assert decision.defer_until == expected
    assert decision.defer_until.astimezone(CHICAGO).hour == 8
    assert gate_check(template(contact, at=decision.defer_until, timezone="America/Chicago")).allowed


def test_the_first_morning_hours_after_spring_forward_are_allowed():
    contact = person(marketing="granted")
    at = datetime(2025, 3, 9, 13, 0, tzinfo=UTC)  # 08:00 CDT; it would be 07:00 in CST
    assert gate_check(template(contact, at=at, timezone="America/Chicago")).allowed
    deferred = gate_check(template(contact, at=at - timedelta(minutes=1), timezone="America/Chicago"))
    assert deferred.defer_until == at


def test_quiet_hours_with_the_clock_frozen_at_now():
    contact = person(marketing="granted")
    with time_machine.travel(local(LOS_ANGELES, 2025, 1, 15, 22, 0), tick=False):
        decision = gate_check(template(contact, at=timezone.now(), timezone="America/Los_Angeles"))
    assert decision.defer_until == datetime(2025, 1, 16, 16, 0, tzinfo=UTC)  # 08:00 PST


@override_settings(CONSENT_MARKETING_FREQUENCY_CAP=1)
def test_other_refusals_come_before_quiet_hours():
    contact = person(marketing="granted")
    night = local(CHICAGO, 2025, 6, 10, 23, 0)
    assert gate_check(template(contact, at=night, marketing_sent_recently=1)).code == "frequency_cap"
    assert gate_check(template(person(), at=night)).code == "no_consent"


# --- Audiences ---------------------------------------------------------------------------------------


def test_an_audience_of_500_is_checked_with_a_bounded_number_of_queries(django_assert_max_num_queries):
    granted = [person(marketing="granted") for _ in range(20)]
    revoked = [person(marketing="revoked") for _ in range(5)]
    pending = [person(marketing="pending") for _ in range(5)]
    suppressed = [person(marketing="granted") for _ in range(3)]
    Suppression.objects.bulk_create(
        Suppression(phone_hash=phone_keyed_hash(phone), reason="complaint") for _, phone in suppressed
    )
    never = [(next(_next_contact_id), f"+1312555{n:04d}") for n in range(467)]
    audience = [
        template(contact, timezone="America/New_York")
        for contact in [*granted, *revoked, *pending, *suppressed, *never]
    ]
    assert len(audience) == 500

    with django_assert_max_num_queries(2):
        decisions = gate_check_many(audience)
    assert len(decisions) == 500
    assert [d.allowed for d in decisions[:20]] == [True] * 20

    with django_assert_max_num_queries(2):
        counts = gate_explain(audience)
    assert counts == {"allow": 20, "opted_out": 5, "no_consent": 5 + 467, "suppressed": 3}

    night = [
        template(contact, at=local(NEW_YORK, 2025, 6, 10, 22, 0), timezone="America/New_York")
        for contact in granted
    ]
    assert gate_explain(night) == {"quiet_hours": 20}


def test_check_many_agrees_with_check_one_by_one():
    people = [person(marketing="granted"), person(marketing="revoked"), person(), person(marketing="pending")]
    audience = [template(contact) for contact in people]
    assert gate_check_many(audience) == [gate_check(facts) for facts in audience]


def test_an_unplaceable_us_number_waits_until_morning_from_hawaii_to_maine():
    from compliance.gate import quiet_hours_reopen

    # 12:30 UTC in June is 08:30 in New York but 02:30 in Honolulu: wait for 08:00 in Honolulu.
    at = datetime(2026, 6, 15, 12, 30, tzinfo=UTC)
    facts = MessageFacts(
        contact_id=1, phone_number="+15550123456", at=at, kind="template", template_category="MARKETING"
    )
    assert quiet_hours_reopen(facts) == datetime(2026, 6, 15, 18, 0, tzinfo=UTC)
    mistyped = MessageFacts(contact_id=1, phone_number="+15550123456", timezone="Mars/Olympus", at=at)
    assert quiet_hours_reopen(mistyped) == datetime(2026, 6, 15, 18, 0, tzinfo=UTC)
