"""Reads for the admin dashboard: the delivery funnel per day, failures by Meta's error code and billable
messages by pricing category, over a period of whole days.

Every live selector filters outbound messages on a `created_at` range first (the column's own index)
and answers with ONE GROUP BY query, so the number of queries is the same for 7 days as for 90 and no
query counts the whole table. Still, each scans every message of its period: a campaign of 100,000
sent today is 100,000 rows on every view. So the admin index reads `DashboardDay` rows instead (one
per day: dashboard_snapshot), computed by the same queries per day and computed again while the
day's messages may still move: every minute for today and yesterday, every hour for older days
(`refresh_dashboard`, a periodic task), or by the page itself when that task has not run."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, tzinfo
from decimal import Decimal, InvalidOperation

from django.conf import settings
from django.db.models import Count, Max, Q
from django.db.models.functions import TruncDate
from django.utils import timezone

from messaging.models import DashboardDay, Message, MessageStatus

PERIOD_CHOICES = (7, 30, 90)
DEFAULT_PERIOD_DAYS = 30
FAILURE_CODES_SHOWN = 10

# Drafts, messages waiting for approval and rejected ones never entered the send queue: they are not
# part of a delivery funnel.
NEVER_QUEUED = (MessageStatus.DRAFT, MessageStatus.PENDING_APPROVAL, MessageStatus.REJECTED)

# Meta's statuses arrive late and out of order (a "read" can come without its "delivered"), so each
# stage counts every message that got at least that far: the funnel never narrows the wrong way.
READ_Q = Q(read_at__isnull=False) | Q(played_at__isnull=False)
DELIVERED_Q = Q(delivered_at__isnull=False) | READ_Q
SENT_Q = Q(sent_at__isnull=False) | DELIVERED_Q
FAILED_Q = Q(status=MessageStatus.FAILED)


def dashboard_time_zone() -> tzinfo:
    """The calendar the dashboard's days are counted in: the site's TIME_ZONE (messaging has no business
    time zone of its own)."""
    return timezone.get_default_timezone()


def dashboard_period_days(raw: object) -> int:
    """The period asked for in `?period=`, or the default for anything else (missing, garbage, 12)."""
    try:
        days = int(str(raw).strip())
    except (TypeError, ValueError):
        return DEFAULT_PERIOD_DAYS
    return days if days in PERIOD_CHOICES else DEFAULT_PERIOD_DAYS


@dataclass(frozen=True)
class Period:
    """`days` whole calendar days in `tz`, ending today: [start, end) as aware datetimes."""

    days: int
    tz: tzinfo
    first_day: date
    last_day: date

    @property
    def start(self) -> datetime:
        return datetime.combine(self.first_day, time.min, tzinfo=self.tz)

    @property
    def end(self) -> datetime:
        return datetime.combine(self.last_day + timedelta(days=1), time.min, tzinfo=self.tz)

    @property
    def dates(self) -> list[date]:
        return [self.first_day + timedelta(days=offset) for offset in range(self.days)]

    @property
    def time_zone_name(self) -> str:
        return str(self.tz)


def dashboard_period(*, days: int, tz: tzinfo | None = None, now: datetime | None = None) -> Period:
    tz = tz or dashboard_time_zone()
    today = (now or timezone.now()).astimezone(tz).date()
    return Period(days=days, tz=tz, first_day=today - timedelta(days=days - 1), last_day=today)


def _outbound_in(period: Period):
    return Message.objects.filter(
        created_at__gte=period.start, created_at__lt=period.end, direction=Message.Direction.OUTBOUND
    )


def _days(first_day: date, last_day: date, tz: tzinfo) -> Period:
    """Any run of whole days as a Period (the stored days to compute again, not only the last N)."""
    return Period(days=(last_day - first_day).days + 1, tz=tz, first_day=first_day, last_day=last_day)


# --- The delivery funnel ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class FunnelDay:
    day: date
    queued: int = 0
    sent: int = 0
    delivered: int = 0
    read: int = 0
    failed: int = 0


FUNNEL_STAGES = ("queued", "sent", "delivered", "read", "failed")


@dataclass(frozen=True)
class Funnel:
    days: list[FunnelDay]
    totals: FunnelDay = field(repr=False)

    def rate(self, stage: str) -> float | None:
        """The share of queued messages that reached `stage`, in percent (None when nothing was queued)."""
        return 100 * getattr(self.totals, stage) / self.totals.queued if self.totals.queued else None


def delivery_funnel(*, period: Period) -> Funnel:
    """Outbound messages queued on each day of the period, and how far they got (counted on the day they
    were created, so a day's bars describe one cohort). One GROUP BY query."""
    return _funnel(period, _funnel_per_day(period))


def _funnel_per_day(period: Period) -> dict[date, FunnelDay]:
    rows = (
        _outbound_in(period)
        .exclude(status__in=NEVER_QUEUED)
        .annotate(day=TruncDate("created_at", tzinfo=period.tz))
        .values("day")
        .annotate(
            queued=Count("pk"),
            sent=Count("pk", filter=SENT_Q),
            delivered=Count("pk", filter=DELIVERED_Q),
            read=Count("pk", filter=READ_Q),
            failed=Count("pk", filter=FAILED_Q),
        )
        .order_by("day")
    )
    return {row["day"]: FunnelDay(**row) for row in rows}


def _funnel(period: Period, by_day: dict[date, FunnelDay]) -> Funnel:
    days = [by_day.get(day, FunnelDay(day=day)) for day in period.dates]
    totals = FunnelDay(
        day=period.last_day, **{stage: sum(getattr(d, stage) for d in days) for stage in FUNNEL_STAGES}
    )
    return Funnel(days=days, totals=totals)


# --- Failures by error code -------------------------------------------------------------------------------


@dataclass(frozen=True)
class FailureCode:
    code: str  # "" when Meta gave none
    title: str
    count: int


@dataclass(frozen=True)
class Failures:
    codes: list[FailureCode]  # the most frequent first
    other_codes: int  # how many more codes were seen
    other_count: int  # and how many failures they account for

    @property
    def total(self) -> int:
        return sum(c.count for c in self.codes) + self.other_count


def failures_by_code(*, period: Period, shown: int = FAILURE_CODES_SHOWN) -> Failures:
    """Failed outbound messages of the period by Meta's error code, the `shown` most frequent and the rest
    as "other". One GROUP BY query; its rows are bounded by Meta's error vocabulary, not by traffic."""
    rows = (
        _outbound_in(period)
        .filter(FAILED_Q)
        .values("error_code")
        .annotate(count=Count("pk"), title=Max("error_title"))
    )
    return _failures([(r["error_code"], r["title"] or "", r["count"]) for r in rows], shown=shown)


def _failures_per_day(period: Period) -> dict[date, list[list]]:
    rows = (
        _outbound_in(period)
        .filter(FAILED_Q)
        .annotate(day=TruncDate("created_at", tzinfo=period.tz))
        .values("day", "error_code")
        .annotate(count=Count("pk"), title=Max("error_title"))
        .order_by()
    )
    by_day: dict[date, list[list]] = {}
    for row in rows:
        by_day.setdefault(row["day"], []).append([row["error_code"], row["title"] or "", row["count"]])
    return by_day


def failure_codes(counts: Iterable[tuple[str, str, int] | list]) -> list[FailureCode]:
    """(code, title, count) entries, a code possibly more than once (several days, or both failed and
    blocked), summed by code, its title the greatest as MAX() would pick; the most frequent first."""
    merged: dict[str, list] = {}
    for code, title, count in counts:
        entry = merged.setdefault(code, [title, 0])
        entry[0] = max(entry[0], title)
        entry[1] += count
    return sorted(
        (FailureCode(code=code, title=title, count=count) for code, (title, count) in merged.items()),
        key=lambda c: (-c.count, c.code),
    )


def _failures(
    counts: list[tuple[str, str, int]] | list[list], *, shown: int = FAILURE_CODES_SHOWN
) -> Failures:
    """Counts of (code, title, count), a code possibly more than once (several days): summed by code,
    the `shown` most frequent listed."""
    codes = failure_codes(counts)
    rest = codes[shown:]
    return Failures(codes=codes[:shown], other_codes=len(rest), other_count=sum(c.count for c in rest))


# --- Cost by pricing category -----------------------------------------------------------------------------


@dataclass(frozen=True)
class CategoryCost:
    category: str  # "" when Meta did not say
    count: int
    unit_price: Decimal | None  # None: no (valid) price configured for it
    estimate: Decimal | None  # exact; rounded only for display


@dataclass(frozen=True)
class Cost:
    categories: list[CategoryCost]
    prices_configured: bool
    unpriced_categories: list[str]  # billable categories with no (valid) price in the map

    @property
    def count(self) -> int:
        return sum(c.count for c in self.categories)

    @property
    def estimate(self) -> Decimal | None:
        if not self.prices_configured:
            return None
        return sum((c.estimate for c in self.categories if c.estimate is not None), Decimal("0"))


def price_map() -> dict[str, Decimal]:
    """WHATSAPP_PRICE_PER_MESSAGE (pricing category → USD per message), keeping only valid prices."""
    prices: dict[str, Decimal] = {}
    for category, raw in (getattr(settings, "WHATSAPP_PRICE_PER_MESSAGE", None) or {}).items():
        try:
            price = Decimal(str(raw))
        except InvalidOperation:
            continue
        if price.is_finite() and price >= 0:
            prices[str(category).lower()] = price
    return prices


def cost_by_category(*, period: Period) -> Cost:
    """Billable outbound messages of the period by Meta's pricing category, with an estimate where a price
    is configured. One GROUP BY query."""
    rows = (
        _outbound_in(period)
        .filter(billable=True)
        .values("pricing_category")
        .annotate(count=Count("pk"))
        .order_by()
    )
    return cost_from_counts({row["pricing_category"]: row["count"] for row in rows})


def _billable_per_day(period: Period) -> dict[date, dict[str, int]]:
    rows = (
        _outbound_in(period)
        .filter(billable=True)
        .annotate(day=TruncDate("created_at", tzinfo=period.tz))
        .values("day", "pricing_category")
        .annotate(count=Count("pk"))
        .order_by()
    )
    by_day: dict[date, dict[str, int]] = {}
    for row in rows:
        by_day.setdefault(row["day"], {})[row["pricing_category"]] = row["count"]
    return by_day


def cost_from_counts(counts: dict[str, int]) -> Cost:
    """Billable message counts by pricing category, priced with today's price map."""
    prices = price_map()
    categories = []
    for category, count in sorted(counts.items(), key=lambda item: (-item[1], item[0])):
        if not count:
            continue
        unit = prices.get(category.lower())
        categories.append(
            CategoryCost(
                category=category,
                count=count,
                unit_price=unit,
                estimate=None if unit is None else unit * count,
            )
        )
    unpriced = [c.category or "unknown" for c in categories if c.unit_price is None] if prices else []
    return Cost(categories=categories, prices_configured=bool(prices), unpriced_categories=unpriced)


# --- Stored days: what the admin index reads -------------------------------------------------------------

#: Today and yesterday: statuses of their messages arrive by the second.
RECENT_DAYS = 2
RECENT_REFRESH_EVERY = timedelta(minutes=1)
#: Older days still move a little (a late "read", Meta retrying a status webhook for days).
OLDER_REFRESH_EVERY = timedelta(hours=1)
#: The page computes a day itself only when it is this many refresh intervals old: the periodic task
#: (`refresh_dashboard`, every minute) keeps days fresh, so that only happens when it is not running.
PAGE_GRACE = 3
#: The longest period the dashboard shows: the periodic task keeps that many days.
KEPT_DAYS = max(PERIOD_CHOICES)


@dataclass(frozen=True)
class Snapshot:
    """The dashboard's messaging figures for a period, read from stored days."""

    funnel: Funnel
    failures: Failures
    cost: Cost
    recent_as_of: datetime  # when today's and yesterday's figures were computed (the oldest of them)
    older_as_of: datetime | None  # the same for the period's earlier days (None: the period has none)


def _refresh_every(day: date, today: date) -> timedelta:
    return RECENT_REFRESH_EVERY if (today - day).days < RECENT_DAYS else OLDER_REFRESH_EVERY


def dashboard_days_refresh(
    *, first_day: date, last_day: date, tz: tzinfo, now: datetime | None = None
) -> int:
    """Compute the stored figures of every day from `first_day` to `last_day` again (three GROUP BY
    queries over those days' messages) and save them, days without messages included. Returns the
    number of days saved. Safe to run twice at once: the later write wins, both are right."""
    now = now or timezone.now()  # before the queries: a status arriving during them is not counted
    days = _days(first_day, last_day, tz)
    funnel, failures, billable = _funnel_per_day(days), _failures_per_day(days), _billable_per_day(days)
    rows = []
    for day in days.dates:
        stages = funnel.get(day, FunnelDay(day=day))
        rows.append(
            DashboardDay(
                day=day,
                time_zone=days.time_zone_name,
                **{stage: getattr(stages, stage) for stage in FUNNEL_STAGES},
                failures=failures.get(day, []),
                billable=billable.get(day, {}),
                computed_at=now,
            )
        )
    DashboardDay.objects.bulk_create(
        rows,
        update_conflicts=True,
        unique_fields=["time_zone", "day"],
        update_fields=[*FUNNEL_STAGES, "failures", "billable", "computed_at"],
    )
    return len(rows)


def _stale_days(period: Period, stored: dict[date, DashboardDay], now: datetime, *, grace: int) -> list[date]:
    return [
        day
        for day in period.dates
        if day not in stored or now - stored[day].computed_at >= grace * _refresh_every(day, period.last_day)
    ]


def dashboard_refresh_due(*, now: datetime | None = None, tz: tzinfo | None = None) -> int:
    """The periodic refresh: of the last KEPT_DAYS days, those due (today and yesterday every minute,
    the others every hour, missing ones at once), computed in one run over the oldest to the newest
    of them. Returns the number of days saved."""
    now = now or timezone.now()
    period = dashboard_period(days=KEPT_DAYS, tz=tz, now=now)
    stored = _stored(period)
    stale = _stale_days(period, stored, now, grace=1)
    if not stale:
        return 0
    return dashboard_days_refresh(first_day=min(stale), last_day=max(stale), tz=period.tz, now=now)


def _stored(period: Period) -> dict[date, DashboardDay]:
    rows = DashboardDay.objects.filter(
        time_zone=period.time_zone_name, day__gte=period.first_day, day__lte=period.last_day
    )
    return {row.day: row for row in rows}


def dashboard_snapshot(*, period: Period, now: datetime | None = None, refresh: bool = False) -> Snapshot:
    """The period's funnel, failures and cost from the stored days: one query when they are fresh.
    Days never computed, or not for PAGE_GRACE of their refresh intervals (the periodic task is not
    running), are computed here first; `refresh=True` computes the whole period again (staff asked)."""
    now = now or timezone.now()
    stored = {} if refresh else _stored(period)
    stale = list(period.dates) if refresh else _stale_days(period, stored, now, grace=PAGE_GRACE)
    if stale:
        dashboard_days_refresh(first_day=min(stale), last_day=max(stale), tz=period.tz, now=now)
        stored = _stored(period)
    days = [stored[day] for day in period.dates]
    funnel = _funnel(
        period,
        {d.day: FunnelDay(day=d.day, **{stage: getattr(d, stage) for stage in FUNNEL_STAGES}) for d in days},
    )
    billable: dict[str, int] = {}
    for d in days:
        for category, count in d.billable.items():
            billable[category] = billable.get(category, 0) + count
    recent = [d.computed_at for d in days if (period.last_day - d.day).days < RECENT_DAYS]
    older = [d.computed_at for d in days if (period.last_day - d.day).days >= RECENT_DAYS]
    return Snapshot(
        funnel=funnel,
        failures=_failures([entry for d in days for entry in d.failures]),
        cost=cost_from_counts(billable),
        recent_as_of=min(recent),
        older_as_of=min(older, default=None),
    )
