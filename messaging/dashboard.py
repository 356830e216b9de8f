"""Reads for the admin dashboard: the delivery funnel per day, failures by Meta's error code and billable
messages by pricing category, over a period of whole days.

Every selector filters outbound messages on a `created_at` range first (the column's own index) and
answers with ONE GROUP BY query, so the number of queries is the same for 7 days as for 90 and no query
counts the whole table."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, tzinfo
from decimal import Decimal, InvalidOperation

from django.conf import settings
from django.db.models import Count, Max, Q, QuerySet
from django.db.models.functions import TruncDate
from django.utils import timezone

from messaging.models import Message, MessageStatus

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
    by_day = {row["day"]: FunnelDay(**row) for row in rows}
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
    rows = list(
        _outbound_in(period)
        .filter(FAILED_Q)
        .values("error_code")
        .annotate(count=Count("pk"), title=Max("error_title"))
        .order_by("-count", "error_code")
    )
    codes = [FailureCode(code=r["error_code"], title=r["title"] or "", count=r["count"]) for r in rows]
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
    return cost_of(_outbound_in(period))


def cost_of(messages: QuerySet[Message]) -> Cost:
    """The billable ones among `messages` by Meta's pricing category, with an estimate where a price is
    configured (the dashboard's period, a campaign). One GROUP BY query."""
    prices = price_map()
    rows = (
        messages.filter(billable=True)
        .values("pricing_category")
        .annotate(count=Count("pk"))
        .order_by("-count", "pricing_category")
    )
    categories = []
    for row in rows:
        unit = prices.get(row["pricing_category"].lower())
        categories.append(
            CategoryCost(
                category=row["pricing_category"],
                count=row["count"],
                unit_price=unit,
                estimate=None if unit is None else unit * row["count"],
            )
        )
    unpriced = [c.category or "unknown" for c in categories if c.unit_price is None] if prices else []
    return Cost(categories=categories, prices_configured=bool(prices), unpriced_categories=unpriced)
