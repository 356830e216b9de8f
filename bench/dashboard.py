"""Admin dashboard at scale (issue #8: "stays fast with a million messages"): the messaging queries
`{% admin_dashboard %}` runs (messaging.dashboard: the delivery funnel, failures by error code, cost by
pricing category) over a 30-day and a 90-day period, beside the least PostgreSQL must do to touch the
30 days' rows in the same run: a bare `SELECT count(*)` on the `created_at` range. PostgreSQL only.

The messages live in a throwaway database created beside the configured one and dropped afterwards.
They are seeded server-side with one `INSERT ... SELECT generate_series(...)`: BENCH_DASHBOARD_MESSAGES
(1,000,000) spread evenly over the last 365 days, ~70 % outbound with a plausible status mix (drafts,
approvals, the queue, ~5 % failed with Meta's error codes skewed to the common few, sent / delivered /
read with their timestamps, a few reads whose "delivered" never came) and pricing categories with
`billable`, ~30 % inbound; a few thousand contacts and one business number. Then ANALYZE. Consent is
not seeded (its ledger has rules of its own): only the messaging selectors are measured.

Each figure is the median of ROUNDS runs after one warm-up, so both sides read from a warm cache.

    BENCH_DASHBOARD_MESSAGES=200000 DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres \
        python -m bench.dashboard
"""

import contextlib
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

from bench.common import DatabaseUnavailable, skipped_result, throwaway_postgres_database

NAME = "dashboard"
UNIT = "ms"
TARGET_MS_30_DAYS = 300  # the p95 issue #8 sets for admin pages
ROUNDS = 5
CONTACTS = 5_000
SEED_RANDOM = 0.42  # setseed(): the same mix on every run

SEED_SENDER = """
INSERT INTO messaging_sender (
    phone_number_id, display_phone_number, waba_id, label, messages_per_second, is_default, is_active,
    created_at, pause_reason
)
VALUES ('100000000000001', '+15550000001', '200000000000001', 'Bench', 80, true, true, now(), '')
RETURNING id
"""
SEED_CONTACTS = """
INSERT INTO messaging_contact (
    phone_number, wa_id, user_id, username, profile_name, locale, timezone, created_at, updated_at
)
SELECT '+1555' || lpad(s::text, 7, '0'), '1555' || lpad(s::text, 7, '0'), '', '', 'Contact ' || s,
       'en_US', '', now(), now()
FROM generate_series(1, %(contacts)s) AS s
"""
# r decides direction and status, p the pricing category, e the error code (squared: a few codes
# account for most failures, as with Meta's). Timestamps follow created_at by seconds to hours.
SEED_MESSAGES = """
INSERT INTO messaging_message (
    direction, contact_id, sender_id, kind, content, preview, template_category, purpose, reply_to,
    status, provider_message_id, error_code, error_title, error_details, attempts, pricing_category,
    pricing_type, pricing_model, billable, conversation_id, provider_timestamp, rejection_reason,
    created_at, sent_at, delivered_at, read_at, played_at, failed_at
)
SELECT
    m.direction, m.contact_id, %(sender)s, m.kind, '{}'::jsonb, 'Bench message ' || m.g, '', '', '',
    m.status, CASE WHEN m.status NOT IN ('draft', 'pending_approval', 'rejected', 'queued', 'deferred')
        THEN 'wamid.bench.' || m.g END,
    CASE WHEN m.status = 'failed' THEN m.error_code ELSE '' END,
    CASE WHEN m.status = 'failed' THEN 'Error ' || m.error_code ELSE '' END,
    '', CASE WHEN m.direction = 'outbound' THEN 1 ELSE 0 END,
    CASE WHEN m.sent THEN m.category ELSE '' END,
    CASE WHEN m.sent THEN 'regular' ELSE '' END,
    CASE WHEN m.sent THEN 'PMP' ELSE '' END,
    CASE WHEN m.sent THEN m.category <> 'service' END,
    '', CASE WHEN m.direction = 'inbound' THEN m.created_at END, '',
    m.created_at,
    CASE WHEN m.sent THEN m.created_at + interval '2 seconds' END,
    CASE WHEN m.status IN ('delivered', 'read') AND m.r < 0.995 THEN m.created_at + interval '9 seconds' END,
    CASE WHEN m.status = 'read' THEN m.created_at + (m.r * interval '6 hours') END,
    NULL,
    CASE WHEN m.status = 'failed' THEN m.created_at + interval '3 seconds' END
FROM (
    SELECT
        s.*,
        s.status IN ('sent', 'delivered', 'read') AS sent,
        (ARRAY['marketing', 'marketing', 'marketing', 'marketing', 'utility', 'utility', 'utility',
               'authentication', 'service', 'service'])[1 + floor(s.p * 10)::int] AS category,
        (ARRAY['131026', '131047', '131049', '130472', '131000', '131048', '131051', '131053',
               '132000', '132001', '470', '131031', '131056', '133010'])[1 + floor(s.e * s.e * 14)::int]
            AS error_code
    FROM (
        SELECT
            v.*,
            CASE WHEN v.r >= 0.70 THEN 'inbound' ELSE 'outbound' END AS direction,
            CASE WHEN v.r >= 0.70 THEN 'text' ELSE 'template' END AS kind,
            CASE
                WHEN v.r >= 0.70 THEN 'received'
                WHEN v.r < 0.005 THEN 'draft'
                WHEN v.r < 0.008 THEN 'pending_approval'
                WHEN v.r < 0.010 THEN 'rejected'
                WHEN v.r < 0.013 THEN 'queued'
                WHEN v.r < 0.015 THEN 'deferred'
                WHEN v.r < 0.017 THEN 'unconfirmed'
                WHEN v.r < 0.052 THEN 'failed'
                WHEN v.r < 0.060 THEN 'blocked'
                WHEN v.r < 0.063 THEN 'cancelled'
                WHEN v.r < 0.160 THEN 'sent'
                WHEN v.r < 0.400 THEN 'delivered'
                ELSE 'read'
            END AS status
        FROM (
            SELECT
                g,
                random() AS r,
                random() AS p,
                random() AS e,
                1 + g %% %(contacts)s AS contact_id,
                now() - interval '365 days' + (g * (interval '365 days' / %(messages)s)) AS created_at
            FROM generate_series(1, %(messages)s) AS g
        ) AS v
    ) AS s
) AS m
"""
BARE_COUNT = "SELECT count(*) FROM messaging_message WHERE created_at >= %s AND created_at < %s"


def _skipped(reason: str) -> dict[str, Any]:
    return skipped_result(
        name=NAME,
        unit=UNIT,
        baseline="bare SELECT count(*) over the 30 days",
        measured="dashboard messaging queries, 30 days",
        reason=reason,
    )


def _seed(connection, messages: int) -> float:
    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute("SELECT setseed(%s)", [SEED_RANDOM])
        cursor.execute(SEED_SENDER)
        sender_id = cursor.fetchone()[0]
        cursor.execute(SEED_CONTACTS, {"contacts": CONTACTS})
        cursor.execute("SELECT min(id) FROM messaging_contact")
        if cursor.fetchone()[0] != 1:
            raise RuntimeError("seeded contacts do not start at id 1; the messages' contact_id would dangle")
        cursor.execute(SEED_MESSAGES, {"sender": sender_id, "contacts": CONTACTS, "messages": messages})
        cursor.execute("ANALYZE messaging_contact")
        cursor.execute("ANALYZE messaging_message")
    return time.perf_counter() - started


def _median_ms(work: Callable[[], object]) -> float:
    work()  # warm-up: plans cached by PostgreSQL's buffers, imports and connection done
    timings = []
    for _ in range(ROUNDS):
        started = time.perf_counter()
        work()
        timings.append((time.perf_counter() - started) * 1000)
    return statistics.median(timings)


def _dashboard_queries(days: int) -> dict[str, Callable[[], object]]:
    """The messaging selectors, called as `{% admin_dashboard %}` calls them for `?period=<days>`."""
    from messaging.dashboard import (
        cost_by_category,
        dashboard_period,
        dashboard_period_days,
        delivery_funnel,
        failures_by_code,
    )

    period = dashboard_period(days=dashboard_period_days(str(days)))
    return {
        "delivery_funnel": lambda: delivery_funnel(period=period),
        "failures_by_code": lambda: failures_by_code(period=period),
        "cost_by_category": lambda: cost_by_category(period=period),
    }


def _plans(days: int) -> dict[str, str]:
    """The plan nodes of each selector's query (EXPLAIN ANALYZE), to see which index, if any, serves it."""
    from django.db.models import Count, Max
    from django.db.models.functions import TruncDate

    from messaging.dashboard import FAILED_Q, NEVER_QUEUED, _outbound_in, dashboard_period

    period = dashboard_period(days=days)
    # The selectors' querysets, rebuilt here only to EXPLAIN them (the timings call the real functions).
    querysets = {
        "delivery_funnel": _outbound_in(period)
        .exclude(status__in=NEVER_QUEUED)
        .annotate(day=TruncDate("created_at", tzinfo=period.tz))
        .values("day")
        .annotate(queued=Count("pk"))
        .order_by("day"),
        "failures_by_code": _outbound_in(period)
        .filter(FAILED_Q)
        .values("error_code")
        .annotate(count=Count("pk"), title=Max("error_title")),
        "cost_by_category": _outbound_in(period)
        .filter(billable=True)
        .values("pricing_category")
        .annotate(count=Count("pk")),
    }
    plans = {}
    for name, queryset in querysets.items():
        lines = queryset.explain(analyze=True).splitlines()
        plans[name] = " | ".join(
            line.strip() for index, line in enumerate(lines) if index == 0 or "->" in line
        )
    return plans


def run(*, messages: int | None = None) -> dict[str, Any]:
    from django.db import connection

    messages = messages or int(os.environ.get("BENCH_DASHBOARD_MESSAGES", "1000000"))
    with contextlib.ExitStack() as stack:
        try:
            server_version = stack.enter_context(throwaway_postgres_database("bench_dashboard"))
        except DatabaseUnavailable as exc:
            return _skipped(str(exc))
        load_before = os.getloadavg()
        seed_seconds = _seed(connection, messages)

        from messaging.dashboard import dashboard_period

        period_30 = dashboard_period(days=30)

        def bare_count() -> int:
            with connection.cursor() as cursor:
                cursor.execute(BARE_COUNT, [period_30.start, period_30.end])
                return cursor.fetchone()[0]

        rows_30 = bare_count()
        baseline_ms = _median_ms(bare_count)
        periods: dict[int, dict[str, Any]] = {}
        for days in (30, 90):
            queries = _dashboard_queries(days)
            per_query = {name: round(_median_ms(query), 1) for name, query in queries.items()}
            total = _median_ms(lambda queries=queries: [query() for query in queries.values()])
            periods[days] = {"ms": round(total, 1), "per_query_ms": per_query, "plans": _plans(days)}

    load_after = os.getloadavg()
    measured_30 = periods[30]["ms"]
    return {
        "name": NAME,
        "description": (
            f"messaging dashboard queries (funnel, failures, cost) over 30 days of {messages} messages "
            f"({rows_30} in the 30 days), PostgreSQL {server_version}; 90 days: {periods[90]['ms']} ms; "
            f"seeded in {seed_seconds:.1f} s"
        ),
        "unit": UNIT,
        "baseline": {
            "label": "bare SELECT count(*) on the 30 days' created_at range",
            "value": round(baseline_ms, 1),
            "rows": rows_30,
        },
        "measured": {
            "label": "dashboard messaging queries, 30 days",
            "value": measured_30,
            "per_query_ms": periods[30]["per_query_ms"],
            "ms_90_days": periods[90]["ms"],
            "per_query_ms_90_days": periods[90]["per_query_ms"],
        },
        # Higher is better: 1.0 would be the three queries together as fast as the bare count.
        "ratio": round(baseline_ms / measured_30, 3),
        "plans": {"30_days": periods[30]["plans"], "90_days": periods[90]["plans"]},
        "messages": messages,
        "rounds": ROUNDS,
        "load_average": {
            "before": [round(value, 2) for value in load_before],
            "after": [round(value, 2) for value in load_after],
        },
        "targets": {"ms_30_days": TARGET_MS_30_DAYS, "met": measured_30 < TARGET_MS_30_DAYS},
    }


def main() -> int:
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.setdefault("DJANGO_DEBUG", "true")
    django.setup()
    print(json.dumps(run(), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
