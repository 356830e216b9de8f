"""`{% admin_dashboard %}`: the charts on the admin index, over the period asked for in `?period=`.

The admin's index view is Django's own; this tag reads the request in the template's context, runs the
selectors (messaging.dashboard, compliance.dashboard) for the sections the user may see, and lays out the
bars of server-rendered SVG charts (no JavaScript, nothing fetched from elsewhere)."""

from __future__ import annotations

import math
from collections.abc import Sequence

from django import template

from compliance.dashboard import consent_changes_per_day, privacy_requests_due
from compliance.deadlines import Urgency
from messaging.dashboard import (
    FUNNEL_STAGES,
    PERIOD_CHOICES,
    Cost,
    Failures,
    Funnel,
    Period,
    dashboard_period,
    dashboard_period_days,
    dashboard_snapshot,
)

register = template.Library()

VIEW_MESSAGE = "messaging.view_message"
VIEW_CONSENT = "compliance.view_consentevent"
VIEW_PRIVACY = "compliance.view_privacyrequest"

# The day charts' drawing area, in SVG user units (the SVG scales to the column's width).
CHART_WIDTH, CHART_HEIGHT, SHORT_CHART_HEIGHT = 720, 200, 110
PLOT_LEFT, PLOT_RIGHT, PLOT_TOP = 44, 712, 12
DATE_LABEL_SPACE = 28  # under the x axis
DATE_LABELS = 7
URGENCY_LABELS = {
    Urgency.OVERDUE: "Overdue",
    Urgency.DUE_SOON: "Due soon",
    Urgency.OK: "OK",
    Urgency.DONE: "Done",
}  # at most this many dates under the x axis


def _nice_ceiling(value: int) -> int:
    """The axis top: 1, 2 or 5 times a power of ten, at least `value` (and at least 1)."""
    if value <= 1:
        return 1
    power = 10 ** math.floor(math.log10(value))
    return next(step * power for step in (1, 2, 5, 10) if step * power >= value)


def _day_chart(
    days: Sequence, series: Sequence[tuple[str, str, str]], *, overlay: bool, chart_height: int = CHART_HEIGHT
) -> dict:
    """Bars per day for `series` (attribute, label, css modifier), on one scale.

    overlay=True draws the series on top of each other, widest first: for nested counts (the funnel's
    queued ⊇ sent ⊇ delivered ⊇ read). Otherwise they stand side by side."""
    top = _nice_ceiling(max((getattr(d, attr) for d in days for attr, _, _ in series), default=0))
    plot_bottom = chart_height - DATE_LABEL_SPACE
    slot = (PLOT_RIGHT - PLOT_LEFT) / len(days)
    height = plot_bottom - PLOT_TOP
    label_every = math.ceil(len(days) / DATE_LABELS)
    columns = []
    for index, day in enumerate(days):
        x0 = PLOT_LEFT + index * slot
        bars = []
        for position, (attr, label, modifier) in enumerate(series):
            value = getattr(day, attr)
            if overlay:
                width = slot * 0.8
                x = x0 + slot * 0.1
            else:
                width = slot * 0.8 / len(series)
                x = x0 + slot * 0.1 + position * width
            bar_height = height * value / top
            bars.append(
                {
                    "x": round(x, 2),
                    "y": round(plot_bottom - bar_height, 2),
                    "width": round(max(width, 0.5), 2),
                    "height": round(bar_height, 2),
                    "value": value,
                    "label": label,
                    "modifier": modifier,
                }
            )
        columns.append(
            {
                "day": day.day,
                "bars": bars,
                "label_x": round(x0 + slot / 2, 2),
                "show_label": index % label_every == 0,
            }
        )
    return {
        "columns": columns,
        "series": [{"label": label, "modifier": modifier} for _, label, modifier in series],
        "top": top,
        "width": CHART_WIDTH,
        "height": chart_height,
        "plot_left": PLOT_LEFT,
        "plot_right": PLOT_RIGHT,
        "plot_top": PLOT_TOP,
        "plot_bottom": plot_bottom,
        "axis_label_x": PLOT_LEFT - 6,
        "date_label_y": plot_bottom + 16,
        "has_data": any(getattr(d, attr) for d in days for attr, _, _ in series),
    }


def _share(value: int, of: int) -> float:
    """`value` as a percentage of `of`, for horizontal bar widths."""
    return round(100 * value / of, 1) if of else 0.0


def _funnel_section(funnel: Funnel) -> dict:
    series = [
        ("queued", "Queued", "queued"),
        ("sent", "Sent", "sent"),
        ("delivered", "Delivered", "delivered"),
        ("read", "Read", "read"),
    ]
    chart = _day_chart(funnel.days, series, overlay=True)
    failed_chart = _day_chart(
        funnel.days, [("failed", "Failed", "failed")], overlay=True, chart_height=SHORT_CHART_HEIGHT
    )
    stages = [
        {
            "stage": stage,
            "label": stage.capitalize(),
            "count": getattr(funnel.totals, stage),
            "rate": funnel.rate(stage),
            "share": _share(getattr(funnel.totals, stage), funnel.totals.queued),
        }
        for stage in FUNNEL_STAGES
    ]
    return {"funnel": funnel, "chart": chart, "failed_chart": failed_chart, "stages": stages}


def _failures_section(failures: Failures) -> dict:
    largest = max([c.count for c in failures.codes] + [failures.other_count], default=0)
    rows = [
        {"code": c.code, "title": c.title, "count": c.count, "share": _share(c.count, largest)}
        for c in failures.codes
    ]
    return {
        "failures": failures,
        "rows": rows,
        "other_share": _share(failures.other_count, largest),
    }


def _cost_section(cost: Cost) -> dict:
    largest = max((c.count for c in cost.categories), default=0)
    rows = [{"cost": c, "share": _share(c.count, largest)} for c in cost.categories]
    return {"cost": cost, "rows": rows}


def _consent_section(period: Period) -> dict:
    days = consent_changes_per_day(since=period.start, until=period.end, tz=period.tz)
    series = [("opt_ins", "Opted in", "opt-in"), ("opt_outs", "Opted out", "opt-out")]
    return {
        "days": days,
        "chart": _day_chart(days, series, overlay=False),
        "opt_ins": sum(d.opt_ins for d in days),
        "opt_outs": sum(d.opt_outs for d in days),
    }


def _privacy_section() -> dict:
    due = privacy_requests_due()
    return {
        "today": due.today,
        "overdue": due.overdue,
        "due_soon": due.due_soon,
        "later": due.later,
        "next_due": [
            {"request": d.request, "urgency": d.urgency, "label": URGENCY_LABELS[d.urgency]}
            for d in due.next_due
        ],
    }


@register.inclusion_tag("admin/messaging/dashboard.html", takes_context=True)
def admin_dashboard(context) -> dict:
    request = context.get("request")
    user = getattr(request, "user", None)
    if user is None or not user.is_active or not user.is_staff:
        return {"show": False}
    can_messages, can_consent, can_privacy = (
        user.has_perm(VIEW_MESSAGE),
        user.has_perm(VIEW_CONSENT),
        user.has_perm(VIEW_PRIVACY),
    )
    if not (can_messages or can_consent or can_privacy):
        return {"show": False}
    period = dashboard_period(days=dashboard_period_days(request.GET.get("period")))
    snapshot = dashboard_snapshot(period=period) if can_messages else None
    return {
        "show": True,
        "period": period,
        "period_choices": PERIOD_CHOICES,
        "snapshot": snapshot,
        "csrf_token": context.get("csrf_token"),
        "delivery": _funnel_section(snapshot.funnel) if snapshot else None,
        "failures": _failures_section(snapshot.failures) if snapshot else None,
        "cost": _cost_section(snapshot.cost) if snapshot else None,
        "consent": _consent_section(period) if can_consent else None,
        "privacy": _privacy_section() if can_privacy else None,
    }
