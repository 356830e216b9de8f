"""Legal clocks for CCPA/CPRA privacy requests: pure date arithmetic, no models, no database.

The rule (California Code of Regulations, title 11):

- §7021(a): confirm receipt of a request to know, delete or correct within 10 business days.
- §7021(b): respond within 45 calendar days of receipt; the business may extend once, by up to
  45 more calendar days, if it notifies the consumer with the reason within the first 45 days.
- §7026(f): comply with a request to opt out of sale/sharing within 15 business days of receipt.
- §7027: comply with a request to limit the use of sensitive personal information within 15
  business days of receipt.

Opt-out and limit requests need no identity verification (§§7026, 7027) and no confirmation:
they are simply done within the 15 business days.

Business days are Monday to Friday except observed US federal holidays (5 U.S.C. 6103); a holiday on
a Saturday is observed the Friday before, one on a Sunday the Monday after. The business's own
closures can be passed as `extra_holidays`.

Every request stores the `rule_version` its due dates were computed under, so a later change of rule
never silently moves a clock that was already promised; old versions stay in `RULES` for that reason.
"""

from __future__ import annotations

import calendar
import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from enum import StrEnum
from types import MappingProxyType
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


@dataclass(frozen=True)
class DeadlineRule:
    version: str
    acknowledge_business_days: int = 10  # §7021(a): confirm receipt (know/delete/correct)
    respond_calendar_days: int = 45  # §7021(b): respond, counted from receipt
    extension_max_calendar_days: int = 45  # §7021(b): one extension, with notice and reason
    opt_out_business_days: int = 15  # §7026(f), §7027: opt-out of sale/sharing, limit use
    due_soon_days: int = 7  # our own warning window for the staff queue, not a legal figure


RULE_VERSION = "ccpa-2026.1"
RULES: dict[str, DeadlineRule] = {RULE_VERSION: DeadlineRule(version=RULE_VERSION)}


def rule_for(version: str | None = None) -> DeadlineRule:
    """The rule a request was (or is now) computed under; None means the current one."""
    version = RULE_VERSION if version is None else version
    try:
        return RULES[version]
    except KeyError:
        raise ValueError(f"Unknown deadline rule version {version!r}; known: {sorted(RULES)}") from None


# --- US federal holidays -------------------------------------------------------------------------

_MONDAY, _THURSDAY = 0, 3
# Juneteenth became a federal holiday on 17 June 2021 (Pub. L. 117-17); earlier years had no closure.
_JUNETEENTH_FIRST_YEAR = 2021


def _nth_weekday(year: int, month: int, weekday: int, n: int) -> date:
    first = date(year, month, 1)
    return first + timedelta(days=(weekday - first.weekday()) % 7 + 7 * (n - 1))


def _last_weekday(year: int, month: int, weekday: int) -> date:
    last = date(year, month, calendar.monthrange(year, month)[1])
    return last - timedelta(days=(last.weekday() - weekday) % 7)


def _observed(day: date) -> date:
    if day.weekday() == 5:
        return day - timedelta(days=1)
    if day.weekday() == 6:
        return day + timedelta(days=1)
    return day


def _statutory_holidays(year: int) -> list[tuple[date, str]]:
    holidays = [
        (date(year, 1, 1), "New Year's Day"),
        (_nth_weekday(year, 1, _MONDAY, 3), "Birthday of Martin Luther King, Jr."),
        (_nth_weekday(year, 2, _MONDAY, 3), "Washington's Birthday"),
        (_last_weekday(year, 5, _MONDAY), "Memorial Day"),
        (date(year, 7, 4), "Independence Day"),
        (_nth_weekday(year, 9, _MONDAY, 1), "Labor Day"),
        (_nth_weekday(year, 10, _MONDAY, 2), "Columbus Day"),
        (date(year, 11, 11), "Veterans Day"),
        (_nth_weekday(year, 11, _THURSDAY, 4), "Thanksgiving Day"),
        (date(year, 12, 25), "Christmas Day"),
    ]
    if year >= _JUNETEENTH_FIRST_YEAR:
        holidays.append((date(year, 6, 19), "Juneteenth National Independence Day"))
    return holidays


@functools.cache
def _observed_holidays(year: int) -> Mapping[date, str]:
    # Next year's New Year's Day is included because, when it falls on a Saturday, it is observed on
    # 31 December of this year; this year's may likewise be observed in the previous year, and drops out.
    candidates = [*_statutory_holidays(year), (date(year + 1, 1, 1), "New Year's Day")]
    observed = {_observed(day): name for day, name in candidates}
    return MappingProxyType({day: name for day, name in sorted(observed.items()) if day.year == year})


def us_federal_holidays(year: int) -> dict[date, str]:
    """Observed US federal holidays that fall within `year` (date -> name)."""
    return dict(_observed_holidays(year))  # a copy: callers must not be able to edit the cache


def _is_business_day(day: date, closed: frozenset[date]) -> bool:
    return day.weekday() < 5 and day not in _observed_holidays(day.year) and day not in closed


def is_business_day(day: date, *, extra_holidays: Iterable[date] = ()) -> bool:
    return _is_business_day(day, frozenset(extra_holidays))


def add_business_days(start: date, days: int, *, extra_holidays: Iterable[date] = ()) -> date:
    """The date `days` business days after `start`; `start` itself never counts (receipt day is day 0)."""
    if days < 0:
        raise ValueError(f"days must be >= 0, got {days}")
    closed = frozenset(extra_holidays)
    day = start
    while days:
        day += timedelta(days=1)
        if _is_business_day(day, closed):
            days -= 1
    return day


def business_days_between(start: date, end: date, *, extra_holidays: Iterable[date] = ()) -> int:
    """Business days in (start, end]: how many of a business-day allowance have elapsed by `end`."""
    closed = frozenset(extra_holidays)
    return sum(
        _is_business_day(start + timedelta(days=offset), closed)
        for offset in range(1, (end - start).days + 1)
    )


# --- Request deadlines ---------------------------------------------------------------------------

NEEDS_NO_VERIFICATION_KINDS = frozenset({"opt_out_sale", "limit_sensitive"})
EXTENDABLE_KINDS = frozenset({"know_categories", "know_specific", "delete", "correct"})
REQUEST_KINDS = NEEDS_NO_VERIFICATION_KINDS | EXTENDABLE_KINDS


@dataclass(frozen=True)
class Deadlines:
    rule_version: str
    received_on: date
    acknowledge_due: date | None
    respond_due: date


def deadlines_compute(
    *,
    kind: str,
    received_at: datetime,
    tz: str = "America/Los_Angeles",
    rule_version: str | None = None,
    extra_holidays: Iterable[date] = (),
) -> Deadlines:
    """The acknowledge and respond due dates for a request received at `received_at`.

    The receipt date is taken in the business's time zone: a request sent at 21:00 in California is
    received that California day, even though it is already tomorrow in UTC.
    """
    if kind not in REQUEST_KINDS:
        raise ValueError(f"Unknown privacy request kind {kind!r}; known: {sorted(REQUEST_KINDS)}")
    if received_at.tzinfo is None or received_at.utcoffset() is None:
        raise ValueError("received_at must be timezone-aware")
    try:
        zone = ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"Unknown time zone {tz!r}") from None
    rule = rule_for(rule_version)
    received_on = received_at.astimezone(zone).date()
    closed = frozenset(extra_holidays)

    if kind in NEEDS_NO_VERIFICATION_KINDS:
        return Deadlines(
            rule_version=rule.version,
            received_on=received_on,
            acknowledge_due=None,
            respond_due=add_business_days(received_on, rule.opt_out_business_days, extra_holidays=closed),
        )
    return Deadlines(
        rule_version=rule.version,
        received_on=received_on,
        acknowledge_due=add_business_days(received_on, rule.acknowledge_business_days, extra_holidays=closed),
        # Calendar days, and the regulation does not roll a weekend deadline forward: a due date on a
        # Saturday means the answer must go out by that Saturday (in practice, the Friday).
        respond_due=received_on + timedelta(days=rule.respond_calendar_days),
    )


class ExtensionRefused(ValueError):
    """An extension the regulation does not allow; `code` is machine-readable for the API/admin."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def extension_check(
    *,
    kind: str,
    respond_due: date,
    already_extended: bool,
    reason: str,
    extra_days: int,
    today: date,
    rule_version: str | None = None,
) -> date:
    """The new respond-by date if this extension is allowed; raises ExtensionRefused otherwise."""
    rule = rule_for(rule_version)
    if kind not in EXTENDABLE_KINDS:
        raise ExtensionRefused(
            "not_extendable",
            f"A {kind!r} request cannot be extended; opt-out and limit requests are due in "
            f"{rule.opt_out_business_days} business days.",
        )
    if already_extended:
        raise ExtensionRefused("already_extended", "This request has already been extended once.")
    if today > respond_due:
        # §7021(b): the consumer must be told of the extension within the first 45 days.
        raise ExtensionRefused(
            "too_late", f"The response was due on {respond_due.isoformat()}; it can no longer be extended."
        )
    if not reason.strip():
        raise ExtensionRefused("reason_required", "The consumer must be told why the request is extended.")
    if extra_days < 1:
        raise ExtensionRefused("not_positive", "An extension must add at least one day.")
    if extra_days > rule.extension_max_calendar_days:
        raise ExtensionRefused(
            "too_long", f"An extension may add at most {rule.extension_max_calendar_days} calendar days."
        )
    return respond_due + timedelta(days=extra_days)


class Urgency(StrEnum):
    OK = "ok"
    DUE_SOON = "due_soon"
    OVERDUE = "overdue"
    DONE = "done"


def urgency(*, due: date, today: date, done: bool, rule_version: str | None = None) -> Urgency:
    if done:
        return Urgency.DONE
    if today > due:
        return Urgency.OVERDUE
    if (due - today).days <= rule_for(rule_version).due_soon_days:
        return Urgency.DUE_SOON
    return Urgency.OK
