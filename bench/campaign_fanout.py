"""Campaign fan-out (issue #8): materializing a started campaign's audience of BENCH_FANOUT_RECIPIENTS
(100,000) tagged contacts into CampaignRecipient rows with `messaging.campaign_dispatch.campaign_fan_out`
(one INSERT ... SELECT of the audience query, then COMMIT), beside a bare psycopg COPY of the same
rows (campaign id, contact id, status, blank reason and detail) from client memory into the same
table, then COMMIT, in the same run. PostgreSQL only. Target: ≤ 5 s and ≥ 50 % of the bare COPY's
rows per second.

What is not in the fan-out, by design: the consent gate. It runs per dispatch step (on each batch of
recipients, just before their messages are created) and again right before each send, so consent
withdrawn while a large campaign runs is honoured; the dry run before approval already told staff who
would be excluded and why. The seeded contacts therefore need no consent records for this figure.

The contacts live in a throwaway database created beside the configured one and dropped afterwards;
each round fans out a fresh campaign into an emptied recipients table (TRUNCATE), so every round
writes the same amount of heap and index. Each figure is the median of ROUNDS rounds after a warm-up.

    BENCH_FANOUT_RECIPIENTS=100000 DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres \
        python -m bench.campaign_fanout
"""

import contextlib
import os
import statistics
import time
from typing import Any

from bench.common import DatabaseUnavailable, skipped_result, throwaway_postgres_database

NAME = "campaign_fanout"
UNIT = "rows/s"
TARGET_SECONDS = 5.0
TARGET_RATIO = 0.5
ROUNDS = 3

SEED_CONTACTS = """
INSERT INTO messaging_contact (
    phone_number, wa_id, user_id, username, profile_name, locale, timezone, created_at, updated_at
)
SELECT '+1555' || lpad(s::text, 7, '0'), '1555' || lpad(s::text, 7, '0'), '', '', 'Contact ' || s,
       'en_US', 'America/New_York', now(), now()
FROM generate_series(1, %(contacts)s) AS s
"""
# Everyone in the audience is tagged "customers"; one in ten also "vip" (a second tag the audience
# query must not count twice), and a fifth of the table is outside the audience.
SEED_TAGS = """
INSERT INTO messaging_contact_tags (contact_id, tag_id)
SELECT c.id, %(customers)s FROM messaging_contact c WHERE c.id <= %(recipients)s
UNION ALL
SELECT c.id, %(vip)s FROM messaging_contact c WHERE c.id <= %(recipients)s AND c.id %% 10 = 0
"""


def _skipped(reason: str) -> dict[str, Any]:
    return skipped_result(
        name=NAME,
        unit=UNIT,
        baseline="bare COPY of the same recipient rows",
        measured="campaign_fan_out (INSERT ... SELECT of the audience)",
        reason=reason,
    )


def _seed(recipients: int) -> dict[str, int]:
    from django.db import connection

    from messaging.models import Campaign, Sender, Tag
    from templates_app.models import MessageTemplate, TemplateStatus

    contacts = recipients + recipients // 4
    customers, vip = Tag.objects.create(name="customers"), Tag.objects.create(name="vip")
    with connection.cursor() as cursor:
        cursor.execute(SEED_CONTACTS, {"contacts": contacts})
        cursor.execute("SELECT min(id) FROM messaging_contact")
        if cursor.fetchone()[0] != 1:
            raise RuntimeError("seeded contacts do not start at id 1")
        cursor.execute(SEED_TAGS, {"customers": customers.pk, "vip": vip.pk, "recipients": recipients})
        cursor.execute("ANALYZE messaging_contact")
        cursor.execute("ANALYZE messaging_contact_tags")
    sender = Sender.objects.create(
        phone_number_id="100000000000001",
        display_phone_number="+15550000001",
        waba_id="200000000000001",
        label="Bench",
        messages_per_second=1000,
    )
    template = MessageTemplate.objects.create(
        waba_id="200000000000001",
        name="bench_sale",
        language="en_US",
        category="MARKETING",
        status=TemplateStatus.APPROVED,
        components=[{"type": "BODY", "text": "Hi {{1}}, 20% off today."}],
    )
    campaign_ids = []
    for index in range(ROUNDS + 2):  # warm-up and rounds, fan-out and baseline each
        campaign = Campaign.objects.create(
            name=f"Bench {index}",
            sender=sender,
            template=template,
            template_parameters=[{"field": "profile_name"}],
            status=Campaign.Status.APPROVED,
        )
        campaign.audience_tags.set([customers, vip])
        campaign_ids.append(campaign.pk)
    return {"contacts": contacts, "campaign_ids": campaign_ids}


def _truncate() -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE messaging_campaignrecipient")
        cursor.execute("CHECKPOINT")


def _fan_out_seconds(campaign_id: int) -> tuple[float, int]:
    from django.db import transaction

    from messaging.campaign_dispatch import campaign_fan_out
    from messaging.models import Campaign

    campaign = Campaign.objects.select_related("template", "sender").get(pk=campaign_id)
    _truncate()
    started = time.perf_counter()
    with transaction.atomic():
        rows = campaign_fan_out(campaign)
    return time.perf_counter() - started, rows


def _bare_copy_seconds(campaign_id: int, contact_ids: list[int]) -> float:
    from django.db import connection, transaction

    _truncate()
    started = time.perf_counter()
    with (
        transaction.atomic(),
        connection.cursor() as cursor,
        cursor.copy(
            "COPY messaging_campaignrecipient (campaign_id, contact_id, status, reason, detail) FROM STDIN"
        ) as copy,
    ):
        for contact_id in contact_ids:
            copy.write_row((campaign_id, contact_id, "pending", "", ""))
    return time.perf_counter() - started


def run(*, recipients: int | None = None) -> dict[str, Any]:
    from django.db import connection

    recipients = recipients or int(os.environ.get("BENCH_FANOUT_RECIPIENTS", "100000"))
    with contextlib.ExitStack() as stack:
        try:
            server_version = stack.enter_context(throwaway_postgres_database("bench_fanout"))
        except DatabaseUnavailable as exc:
            return _skipped(str(exc))
        seeded = _seed(recipients)
        ids = iter(seeded["campaign_ids"])
        from messaging.campaigns import campaign_audience
        from messaging.models import Campaign

        audience_ids = list(
            campaign_audience(Campaign.objects.get(pk=seeded["campaign_ids"][0])).values_list("pk", flat=True)
        )
        if len(audience_ids) != recipients:
            raise RuntimeError(f"the audience has {len(audience_ids)} contacts, expected {recipients}")

        _fan_out_seconds(next(ids))  # warm-up (plans, buffers)
        _bare_copy_seconds(next(ids), audience_ids)
        fan_out, bare = [], []
        for _ in range(ROUNDS):
            campaign_id = next(ids)
            seconds, rows = _fan_out_seconds(campaign_id)
            if rows != recipients:
                raise RuntimeError(f"fan-out wrote {rows} rows, expected {recipients}")
            fan_out.append(seconds)
            bare.append(_bare_copy_seconds(campaign_id, audience_ids))
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM messaging_campaignrecipient")
            assert cursor.fetchone()[0] == recipients

        # Also the dry run a worker works out for the admin, over the same audience (its contacts have
        # no consent records: every check runs, no template is rendered).
        from messaging.campaigns import campaign_dry_run

        draft = Campaign.objects.select_related("template", "sender").get(pk=seeded["campaign_ids"][0])
        started = time.perf_counter()
        dry_run_total = campaign_dry_run(draft).total
        dry_run_s = time.perf_counter() - started

    fan_out_s, bare_s = statistics.median(fan_out), statistics.median(bare)
    measured, baseline = recipients / fan_out_s, recipients / bare_s
    ratio = measured / baseline
    return {
        "name": NAME,
        "description": (
            f"campaign fan-out of {recipients} tagged contacts (of {seeded['contacts']}) into recipients, "
            f"PostgreSQL {server_version}: {fan_out_s:.2f} s (target ≤ {TARGET_SECONDS} s), "
            f"bare COPY {bare_s:.2f} s; the dry run of the same {dry_run_total} took {dry_run_s:.1f} s"
        ),
        "unit": UNIT,
        "baseline": {
            "label": "bare COPY of the same rows + COMMIT",
            "value": round(baseline),
            "seconds": round(bare_s, 3),
        },
        "measured": {
            "label": "campaign_fan_out (INSERT ... SELECT) + COMMIT",
            "value": round(measured),
            "seconds": round(fan_out_s, 3),
            "rounds_seconds": [round(s, 3) for s in fan_out],
            "dry_run_seconds": round(dry_run_s, 2),
        },
        "ratio": round(ratio, 2),
        "targets": {
            "seconds": TARGET_SECONDS,
            "ratio": TARGET_RATIO,
            "met": fan_out_s <= TARGET_SECONDS and ratio >= TARGET_RATIO,
        },
    }


if __name__ == "__main__":
    import json

    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.setdefault("DJANGO_DEBUG", "true")
    django.setup()
    print(json.dumps(run(), indent=2))
