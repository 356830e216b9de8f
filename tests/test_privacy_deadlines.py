"""CCPA/CPRA legal clocks (compliance/deadlines.py): observed federal holidays, business-day arithmetic,
due dates per request kind, the one allowed extension, and the staff queue's urgency flag.

Every expected date here was counted by hand on a printed calendar, never produced by the code under
test. No database."""

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from compliance.deadlines import (
    RULE_VERSION,
    Deadlines,
    ExtensionRefused,
    Urgency,
    add_business_days,
    business_days_between,
    deadlines_compute,
    extension_check,
    is_business_day,
    rule_for,
    urgency,
    us_federal_holidays,
)

LOS_ANGELES = ZoneInfo("America/Los_Angeles")
KNOW_DELETE_CORRECT = ["know_categories", "know_specific", "delete", "correct"]
OPT_OUT_KINDS = ["opt_out_sale", "limit_sensitive"]


def pacific_noon(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, 12, 0, tzinfo=LOS_ANGELES)


# --- Holidays -------------------------------------------------------------------------------------


def test_federal_holidays_2026_observed_dates():
    assert sorted(us_federal_holidays(2026)) == [
        date(2026, 1, 1),
        date(2026, 1, 19),  # MLK: 3rd Monday
        date(2026, 2, 16),  # Washington's Birthday: 3rd Monday
        date(2026, 5, 25),  # Memorial Day: last Monday
        date(2026, 6, 19),  # Juneteenth, a Friday
        date(2026, 7, 3),  # Independence Day falls on Saturday -> observed Friday
        date(2026, 9, 7),  # Labor Day
        date(2026, 10, 12),  # Columbus Day
        date(2026, 11, 11),
        date(2026, 11, 26),  # Thanksgiving: 4th Thursday
        date(2026, 12, 25),
    ]
    assert us_federal_holidays(2026)[date(2026, 7, 3)] == "Independence Day"


def test_federal_holidays_2027_observed_dates_including_next_new_year_on_dec_31():
    assert sorted(us_federal_holidays(2027)) == [
        date(2027, 1, 1),
        date(2027, 1, 18),
        date(2027, 2, 15),
        date(2027, 5, 31),
        date(2027, 6, 18),  # Juneteenth falls on Saturday -> Friday
        date(2027, 7, 5),  # Independence Day falls on Sunday -> Monday
        date(2027, 9, 6),
        date(2027, 10, 11),
        date(2027, 11, 11),
        date(2027, 11, 25),
        date(2027, 12, 24),  # Christmas falls on Saturday -> Friday
        date(2027, 12, 31),  # New Year's Day 2028 falls on Saturday -> observed in 2027
    ]
    assert us_federal_holidays(2027)[date(2027, 12, 31)] == "New Year's Day"
    # ...and 2028 does not claim it (nor the Saturday itself).
    assert date(2027, 12, 31) not in us_federal_holidays(2028)
    assert date(2028, 1, 1) not in us_federal_holidays(2028)


def test_new_year_on_saturday_closes_the_previous_december_31():
    assert date(2021, 12, 31) in us_federal_holidays(2021)
    assert not is_business_day(date(2021, 12, 31))
    assert not is_business_day(date(2022, 1, 1))  # the Saturday itself: a weekend anyway
    assert is_business_day(date(2022, 1, 3))  # no extra Monday off


def test_editing_the_returned_holidays_does_not_change_business_days():
    us_federal_holidays(2026).clear()
    assert not is_business_day(date(2026, 11, 26))


# --- Business days --------------------------------------------------------------------------------


def test_weekends_and_holidays_are_not_business_days():
    assert is_business_day(date(2026, 3, 6))  # Friday
    assert not is_business_day(date(2026, 3, 7))  # Saturday
    assert not is_business_day(date(2026, 3, 8))  # Sunday
    assert not is_business_day(date(2026, 7, 3))  # observed Independence Day


def test_add_business_days_skips_the_weekend():
    friday = date(2026, 3, 6)
    assert add_business_days(friday, 0) == friday
    assert add_business_days(friday, 1) == date(2026, 3, 9)  # Monday
    assert add_business_days(friday, 5) == date(2026, 3, 13)  # next Friday


def test_add_business_days_across_thanksgiving():
    # Wed 25 Nov: Thu 26 is Thanksgiving. Fri 27 (1), Mon 30 (2), Tue 1 (3), Wed 2 (4), Thu 3 (5),
    # Fri 4 (6), Mon 7 (7), Tue 8 (8), Wed 9 (9), Thu 10 (10).
    assert add_business_days(date(2026, 11, 25), 10) == date(2026, 12, 10)


def test_extra_holidays_are_honoured():
    company_day_off = date(2026, 11, 27)  # the day after Thanksgiving
    assert not is_business_day(company_day_off, extra_holidays=[company_day_off])
    assert add_business_days(date(2026, 11, 25), 10, extra_holidays=[company_day_off]) == date(2026, 12, 11)
    assert (
        business_days_between(date(2026, 11, 25), date(2026, 11, 30), extra_holidays=[company_day_off]) == 1
    )


def test_extra_holidays_may_be_a_one_shot_generator():
    days_off = (date(2026, 3, 9) + timedelta(days=n) for n in range(2))  # Mon 9 and Tue 10
    assert add_business_days(date(2026, 3, 6), 2, extra_holidays=days_off) == date(2026, 3, 12)


def test_business_days_between_counts_the_half_open_interval():
    assert business_days_between(date(2026, 3, 6), date(2026, 3, 9)) == 1  # Fri -> Mon
    assert business_days_between(date(2026, 3, 6), date(2026, 3, 8)) == 0  # Fri -> Sun
    assert business_days_between(date(2026, 11, 25), date(2026, 11, 27)) == 1  # Thanksgiving skipped
    assert business_days_between(date(2026, 3, 9), date(2026, 3, 9)) == 0
    assert business_days_between(date(2026, 3, 9), date(2026, 3, 2)) == 0


def test_negative_business_days_are_refused():
    with pytest.raises(ValueError, match="days"):
        add_business_days(date(2026, 3, 6), -1)


@given(
    start=st.dates(min_value=date(2019, 1, 1), max_value=date(2040, 12, 31)),
    days=st.integers(min_value=0, max_value=30),
)
def test_add_business_days_lands_on_a_business_day_and_round_trips(start, days):
    result = add_business_days(start, days)
    if days == 0:
        assert result == start
    else:
        assert is_business_day(result)
        assert result > start
    assert business_days_between(start, result) == days


# --- Deadlines per kind ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KNOW_DELETE_CORRECT)
def test_know_delete_correct_deadlines(kind):
    deadlines = deadlines_compute(kind=kind, received_at=pacific_noon(date(2026, 11, 25)))
    assert deadlines == Deadlines(
        rule_version=RULE_VERSION,
        received_on=date(2026, 11, 25),
        acknowledge_due=date(2026, 12, 10),
        respond_due=date(2027, 1, 9),  # 5 days left in Nov + 31 in Dec + 9 in Jan = 45
    )


def test_receipt_on_a_saturday_counts_from_the_saturday():
    deadlines = deadlines_compute(kind="delete", received_at=pacific_noon(date(2026, 3, 7)))
    assert deadlines.received_on == date(2026, 3, 7)
    # Mon 9 (1) .. Fri 13 (5), Mon 16 (6) .. Fri 20 (10).
    assert deadlines.acknowledge_due == date(2026, 3, 20)
    assert deadlines.respond_due == date(2026, 4, 21)  # 24 days left in March + 21 in April


def test_late_evening_in_california_is_received_that_california_day():
    # Tue 10 Mar 2026, 21:30 PDT (clocks sprang forward on Sun 8 Mar) is already Wed 11 in UTC.
    received_at = datetime(2026, 3, 11, 4, 30, tzinfo=UTC)
    deadlines = deadlines_compute(kind="know_specific", received_at=received_at)
    assert deadlines.received_on == date(2026, 3, 10)
    # Wed 11 (1), Thu 12 (2), Fri 13 (3), Mon 16 (4) .. Fri 20 (8), Mon 23 (9), Tue 24 (10).
    assert deadlines.acknowledge_due == date(2026, 3, 24)
    assert deadlines.respond_due == date(2026, 4, 24)  # 21 days left in March + 24 in April

    in_new_york = deadlines_compute(kind="know_specific", received_at=received_at, tz="America/New_York")
    assert in_new_york.received_on == date(2026, 3, 11)


def test_respond_due_is_not_rolled_forward_off_a_weekend():
    deadlines = deadlines_compute(kind="correct", received_at=pacific_noon(date(2026, 3, 4)))
    assert deadlines.respond_due == date(2026, 4, 18)  # 27 days left in March + 18 in April
    assert deadlines.respond_due.weekday() == 5  # a Saturday, and it stays one


@pytest.mark.parametrize("kind", OPT_OUT_KINDS)
def test_opt_out_and_limit_are_done_within_15_business_days_without_acknowledgement(kind):
    deadlines = deadlines_compute(kind=kind, received_at=pacific_noon(date(2026, 11, 18)))
    assert deadlines.acknowledge_due is None
    # Thu 19 (1), Fri 20 (2), Mon 23 (3), Tue 24 (4), Wed 25 (5), Thanksgiving skipped, Fri 27 (6),
    # Mon 30 (7), Tue 1 (8), Wed 2 (9), Thu 3 (10), Fri 4 (11), Mon 7 (12), Tue 8 (13), Wed 9 (14), Thu 10 (15).
    assert deadlines.respond_due == date(2026, 12, 10)


def test_deadlines_honour_extra_holidays():
    deadlines = deadlines_compute(
        kind="delete", received_at=pacific_noon(date(2026, 11, 25)), extra_holidays=[date(2026, 11, 27)]
    )
    assert deadlines.acknowledge_due == date(2026, 12, 11)
    assert deadlines.respond_due == date(2027, 1, 9)  # calendar days: company closures do not matter


def test_unknown_kind_is_refused():
    with pytest.raises(ValueError, match="kind"):
        deadlines_compute(kind="portability", received_at=pacific_noon(date(2026, 3, 4)))


def test_naive_received_at_is_refused():
    with pytest.raises(ValueError, match="timezone-aware"):
        deadlines_compute(kind="delete", received_at=datetime(2026, 3, 4, 12, 0))  # noqa: DTZ001


def test_unknown_time_zone_is_refused():
    with pytest.raises(ValueError, match="time zone"):
        deadlines_compute(kind="delete", received_at=pacific_noon(date(2026, 3, 4)), tz="Mars/Olympus")


def test_rule_versions():
    assert rule_for().version == RULE_VERSION
    assert rule_for(RULE_VERSION) is rule_for()
    with pytest.raises(ValueError, match="ccpa-1999"):
        rule_for("ccpa-1999")
    with pytest.raises(ValueError, match="ccpa-1999"):
        deadlines_compute(kind="delete", received_at=pacific_noon(date(2026, 3, 4)), rule_version="ccpa-1999")


# --- Extension ------------------------------------------------------------------------------------

DUE = date(2026, 4, 24)


def extend(**overrides):
    arguments = {
        "kind": "delete",
        "respond_due": DUE,
        "already_extended": False,
        "reason": "Records are spread over three archived systems.",
        "extra_days": 45,
        "today": date(2026, 4, 1),
    }
    return extension_check(**(arguments | overrides))


def test_extension_up_to_45_days_is_allowed():
    assert extend() == date(2026, 6, 8)  # 6 days left in April + 31 in May + 8 in June
    assert extend(extra_days=1) == date(2026, 4, 25)


def test_extension_on_the_due_date_itself_is_allowed_the_day_after_is_not():
    assert extend(today=DUE) == date(2026, 6, 8)
    with pytest.raises(ExtensionRefused) as refused:
        extend(today=DUE + timedelta(days=1))
    assert refused.value.code == "too_late"


@pytest.mark.parametrize(
    ("overrides", "code"),
    [
        ({"kind": "opt_out_sale"}, "not_extendable"),
        ({"kind": "limit_sensitive"}, "not_extendable"),
        ({"already_extended": True}, "already_extended"),
        ({"today": date(2026, 4, 25)}, "too_late"),
        ({"reason": "   "}, "reason_required"),
        ({"extra_days": 0}, "not_positive"),
        ({"extra_days": -3}, "not_positive"),
        ({"extra_days": 46}, "too_long"),
        # Several problems at once: the first in the documented order wins.
        ({"kind": "opt_out_sale", "already_extended": True}, "not_extendable"),
        ({"already_extended": True, "today": date(2026, 5, 1)}, "already_extended"),
        ({"today": date(2026, 5, 1), "reason": ""}, "too_late"),
        ({"reason": "", "extra_days": 0}, "reason_required"),
        ({"extra_days": 0, "kind": "correct", "reason": "Waiting on a vendor export."}, "not_positive"),
    ],
)
def test_extension_refusals_carry_a_machine_readable_code(overrides, code):
    with pytest.raises(ExtensionRefused) as refused:
        extend(**overrides)
    assert refused.value.code == code
    assert str(refused.value)  # a sentence for the staff member, not just the code
    assert isinstance(refused.value, ValueError)


# --- Urgency --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("today", "expected"),
    [
        (date(2026, 4, 16), Urgency.OK),  # 8 days left
        (date(2026, 4, 17), Urgency.DUE_SOON),  # 7 days left
        (DUE, Urgency.DUE_SOON),  # due today is not yet late
        (date(2026, 4, 25), Urgency.OVERDUE),
    ],
)
def test_urgency_boundaries(today, expected):
    assert urgency(due=DUE, today=today, done=False) == expected


def test_done_requests_are_never_flagged():
    assert urgency(due=DUE, today=date(2026, 5, 30), done=True) == Urgency.DONE
    assert Urgency.DONE == "done"  # stored and sent to the API as plain strings
