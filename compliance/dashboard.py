"""Compliance's reads for the admin dashboard: consent changes per day and the privacy requests that are
coming due. Each is a fixed number of aggregate queries on indexed columns (`occurred_at`;
`status, respond_due`), whatever the size of the ledger or the length of the period.

Called by messaging's dashboard tag; nothing here knows about messaging (dependencies point one way)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta, tzinfo

from django.db.models import Count, Q
from django.db.models.functions import TruncDate

from compliance import deadlines
from compliance.models import ConsentAction, ConsentEvent, PrivacyRequest, PrivacyRequestStatus
from compliance.privacy import privacy_today, privacy_urgency

# A double opt-in's first step (`awaiting_confirmation`) is not consent yet: it counts on the day the
# person confirms, so a request and its confirmation are one opt-in, not two.
OPT_IN_Q = Q(action=ConsentAction.OPT_IN, awaiting_confirmation=False) | Q(action=ConsentAction.CONFIRM)
OPT_OUT_Q = Q(action=ConsentAction.OPT_OUT)
NEXT_DUE_SHOWN = 5


@dataclass(frozen=True)
class ConsentDay:
    day: date
    opt_ins: int
    opt_outs: int


def consent_changes_per_day(*, since: datetime, until: datetime, tz: tzinfo) -> list[ConsentDay]:
    """People who opted in and people who opted out, per calendar day in `tz`, for every day of
    [since, until) (days without changes are zeros). One GROUP BY query.

    People, not ledger events: STOP writes one opt-out per purpose, and counting those would show one
    person leaving as three."""
    rows = (
        ConsentEvent.objects.filter(occurred_at__gte=since, occurred_at__lt=until)
        .annotate(day=TruncDate("occurred_at", tzinfo=tz))
        .values("day")
        .annotate(
            opt_ins=Count("subject", filter=OPT_IN_Q, distinct=True),
            opt_outs=Count("subject", filter=OPT_OUT_Q, distinct=True),
        )
        .order_by("day")
    )
    by_day = {row["day"]: row for row in rows}
    first, last = since.astimezone(tz).date(), (until - timedelta(microseconds=1)).astimezone(tz).date()
    days = [first + timedelta(days=offset) for offset in range((last - first).days + 1)]
    return [
        ConsentDay(
            day=day,
            opt_ins=by_day.get(day, {}).get("opt_ins", 0),
            opt_outs=by_day.get(day, {}).get("opt_outs", 0),
        )
        for day in days
    ]


@dataclass(frozen=True)
class DueRequest:
    request: PrivacyRequest
    urgency: deadlines.Urgency


@dataclass(frozen=True)
class PrivacyDue:
    today: date
    overdue: int
    due_soon: int
    later: int
    next_due: list[DueRequest]

    @property
    def open(self) -> int:
        return self.overdue + self.due_soon + self.later


def privacy_requests_due(*, today: date | None = None, shown: int = NEXT_DUE_SHOWN) -> PrivacyDue:
    """Open requests counted by urgency (overdue, due soon, later), and the `shown` next due. Two
    queries on the (status, respond_due) index.

    "Due soon" uses the current rule's warning window, as the admin queue's urgency filter does."""
    today = today or privacy_today()
    soon = today + timedelta(days=deadlines.rule_for().due_soon_days)
    still_open = PrivacyRequest.objects.exclude(status=PrivacyRequestStatus.CLOSED)
    counts = still_open.aggregate(
        overdue=Count("pk", filter=Q(respond_due__lt=today)),
        due_soon=Count("pk", filter=Q(respond_due__gte=today, respond_due__lte=soon)),
        later=Count("pk", filter=Q(respond_due__gt=soon)),
    )
    next_due = [
        DueRequest(request=request, urgency=privacy_urgency(request, today=today))
        for request in still_open.order_by("respond_due", "received_at")[:shown]
    ]
    return PrivacyDue(today=today, next_due=next_due, **counts)
