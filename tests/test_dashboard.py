"""The dashboard on the admin index: the delivery funnel per day, failures by Meta's error code, billable
messages by pricing category (with an estimate when prices are configured), opt-ins and opt-outs per
day and the privacy requests coming due, over a chosen period, each shown only to the roles that may
read it, in a fixed number of queries however long the period."""

import re
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
import time_machine
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from compliance.dashboard import consent_changes_per_day, privacy_requests_due
from compliance.models import PrivacyRequestChannel, PrivacyRequestKind
from compliance.privacy import privacy_request_file
from compliance.services import (
    Evidence,
    consent_confirm_pending,
    consent_opt_out_everywhere,
    consent_record,
    consent_text_create,
)
from messaging import roles
from messaging.dashboard import (
    KEPT_DAYS,
    OLDER_REFRESH_EVERY,
    PAGE_GRACE,
    RECENT_DAYS,
    RECENT_REFRESH_EVERY,
    cost_by_category,
    dashboard_period,
    dashboard_snapshot,
    delivery_funnel,
    failures_by_code,
)
from messaging.models import DashboardDay, Message, MessageStatus
from messaging.services import sender_get_default
from messaging.tasks import refresh_dashboard
from tests.factories import ContactFactory, StaffUserFactory, UserFactory
from tests.staff import logged_in, user_in

pytestmark = pytest.mark.django_db

INDEX_URL = reverse("admin:index")
NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)  # Tuesday; the 7-day period is 4 to 10 March
YESTERDAY = datetime(2026, 3, 9, 9, 0, tzinfo=UTC)
TODAY = datetime(2026, 3, 10, 8, 0, tzinfo=UTC)
BEFORE_7_DAYS = datetime(2026, 3, 3, 23, 0, tzinfo=UTC)
WEB = Evidence(ip_address="203.0.113.7", user_agent="Mozilla/5.0", page_url="https://shop.example/opt-in/")

OUT, IN = Message.Direction.OUTBOUND, Message.Direction.INBOUND


@pytest.fixture(autouse=True)
def _roles():
    roles.roles_apply_permissions()


@pytest.fixture(autouse=True)
def _now():
    with time_machine.travel(NOW, tick=False):
        yield


@pytest.fixture
def contact():
    sender_get_default()
    return ContactFactory()


def messages(contact, at: datetime, count: int = 1, *, direction=OUT, **fields) -> list[Message]:
    """`count` messages as the pipeline would have left them, created at `at` (created_at is auto_now_add)."""
    rows = Message.objects.bulk_create(
        Message(
            contact=contact,
            sender=sender_get_default(),
            direction=direction,
            kind=Message.Kind.TEXT,
            preview="hi",
            status=fields.get("status", MessageStatus.SENT),
            **{k: v for k, v in fields.items() if k != "status"},
        )
        for _ in range(count)
    )
    Message.objects.filter(pk__in=[r.pk for r in rows]).update(created_at=at)
    return rows


def yesterdays_traffic(contact):
    """One outbound message in each state yesterday, and what must not count."""
    at = YESTERDAY
    later = at + timedelta(minutes=5)
    messages(contact, at, status=MessageStatus.SENT, sent_at=at)
    messages(contact, at, status=MessageStatus.DELIVERED, sent_at=at, delivered_at=later)
    # Meta's "read" arrived and its "delivered" never did: read implies delivered.
    messages(contact, at, status=MessageStatus.READ, sent_at=at, read_at=later)
    messages(contact, at, status=MessageStatus.PLAYED, sent_at=at, delivered_at=later, played_at=later)
    messages(
        contact,
        at,
        status=MessageStatus.FAILED,
        failed_at=later,
        error_code="131026",
        error_title="Undeliverable",
    )
    messages(contact, at, status=MessageStatus.QUEUED)
    # Never queued, or not ours: no part of the funnel.
    messages(contact, at, status=MessageStatus.DRAFT)
    messages(contact, at, status=MessageStatus.PENDING_APPROVAL)
    messages(contact, at, direction=IN, status=MessageStatus.RECEIVED)


def table_row(html: str, section: str, key: str) -> list[str]:
    """The cells of the row marked `key` (data-day, data-code…) in the dashboard section `section`."""
    part = html.split(f'id="{section}"', 1)[1].split("</article>", 1)[0]
    match = re.search(rf'<tr data-[a-z]+="{re.escape(key)}">(.*?)</tr>', part, re.S)
    assert match, f"no row {key} in {section}"
    return [
        re.sub(r"<[^>]+>", "", cell).strip()
        for cell in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", match[1], re.S)
    ]


def index(user, **params):
    response = logged_in(user).get(INDEX_URL, params)
    assert response.status_code == 200
    return response.content.decode()


# --- The funnel --------------------------------------------------------------------------------------------


def test_the_funnel_counts_each_day_how_far_its_outbound_messages_got(contact):
    yesterdays_traffic(contact)
    messages(contact, TODAY, status=MessageStatus.DELIVERED, sent_at=TODAY, delivered_at=TODAY)
    messages(contact, TODAY, status=MessageStatus.FAILED, error_code="131049")
    messages(
        contact, BEFORE_7_DAYS, 4, status=MessageStatus.READ, sent_at=BEFORE_7_DAYS, read_at=BEFORE_7_DAYS
    )

    funnel = delivery_funnel(period=dashboard_period(days=7))

    assert [d.day for d in funnel.days] == [date(2026, 3, day) for day in range(4, 11)]
    by_day = {d.day: (d.queued, d.sent, d.delivered, d.read, d.failed) for d in funnel.days}
    assert by_day[date(2026, 3, 9)] == (6, 4, 3, 2, 1)
    assert by_day[date(2026, 3, 10)] == (2, 1, 1, 0, 1)
    assert by_day[date(2026, 3, 4)] == (0, 0, 0, 0, 0)  # days without messages are zeros, not gaps
    assert (funnel.totals.queued, funnel.totals.read, funnel.totals.failed) == (8, 2, 2)
    assert funnel.rate("delivered") == 50.0

    # A longer period reaches the messages from before the 7 days.
    month = delivery_funnel(period=dashboard_period(days=30))
    assert {d.day: d.read for d in month.days}[date(2026, 3, 3)] == 4


def test_the_index_shows_the_funnel_numbers_per_day_and_in_total(contact):
    yesterdays_traffic(contact)
    superuser = UserFactory(username="root", is_staff=True, is_superuser=True)

    html = index(superuser, period="7")

    assert table_row(html, "dash-funnel", "2026-03-09") == ["Mon 9 Mar", "6", "4", "3", "2", "1"]
    assert table_row(html, "dash-funnel", "2026-03-08") == ["Sun 8 Mar", "0", "0", "0", "0", "0"]
    assert "<svg" in html.split('id="dash-funnel"')[1] and "6 queued</title>" in html
    assert 'data-stage="delivered"' in html and "(50.0%)" in html  # 3 of 6 queued


@pytest.mark.parametrize(
    ("zone", "day"), [("UTC", date(2026, 3, 10)), ("America/New_York", date(2026, 3, 9))]
)
def test_days_are_counted_in_the_sites_time_zone_and_the_page_says_which(contact, settings, zone, day):
    settings.TIME_ZONE = zone
    late_evening_in_new_york = datetime(2026, 3, 10, 3, 30, tzinfo=UTC)
    messages(contact, late_evening_in_new_york, status=MessageStatus.SENT, sent_at=late_evening_in_new_york)

    funnel = delivery_funnel(period=dashboard_period(days=7))

    assert [d.day for d in funnel.days if d.queued] == [day]
    superuser = UserFactory(username="root", is_staff=True, is_superuser=True)
    assert f"days counted in <strong data-time-zone>{zone}</strong>" in index(superuser)


# --- Failures ----------------------------------------------------------------------------------------------


def test_failures_are_grouped_by_meta_error_code_most_frequent_first_with_the_rest_as_other(contact):
    failed = {"status": MessageStatus.FAILED}
    messages(contact, YESTERDAY, 5, error_code="131026", error_title="Message undeliverable", **failed)
    messages(contact, TODAY, 4, error_code="131049", error_title="Healthy ecosystem engagement", **failed)
    messages(contact, TODAY, 1, error_code="", **failed)
    for code in range(130000, 130010):
        messages(contact, TODAY, 1, error_code=str(code), error_title=f"error {code}", **failed)
    messages(contact, TODAY, 3, error_code="131026", status=MessageStatus.SENT)  # not failed
    messages(contact, BEFORE_7_DAYS, 9, error_code="131000", **failed)  # before the period
    messages(contact, TODAY, 2, direction=IN, error_code="131051", **failed)  # not ours

    failures = failures_by_code(period=dashboard_period(days=7))

    assert [(c.code, c.title, c.count) for c in failures.codes[:3]] == [
        ("131026", "Message undeliverable", 5),
        ("131049", "Healthy ecosystem engagement", 4),
        ("", "", 1),
    ]
    assert len(failures.codes) == 10
    assert (failures.other_codes, failures.other_count, failures.total) == (3, 3, 20)

    html = index(UserFactory(username="root", is_staff=True, is_superuser=True), period="7")
    assert table_row(html, "dash-failures", "131026") == ["131026", "Message undeliverable", "5"]
    assert table_row(html, "dash-failures", "other") == ["Other", "3 more codes", "3"]


# --- Cost --------------------------------------------------------------------------------------------------


def billable_traffic(contact):
    messages(contact, YESTERDAY, 3, billable=True, pricing_category="marketing")
    messages(contact, TODAY, 2, billable=True, pricing_category="utility")
    messages(contact, TODAY, 1, billable=True, pricing_category="authentication")
    messages(contact, TODAY, 4, billable=False, pricing_category="service")  # free
    messages(contact, TODAY, 1, billable=None)  # no pricing reported yet
    messages(contact, BEFORE_7_DAYS, 7, billable=True, pricing_category="marketing")


def test_billable_messages_are_counted_by_category_and_prices_are_said_to_be_missing(contact):
    billable_traffic(contact)

    cost = cost_by_category(period=dashboard_period(days=7))

    assert [(c.category, c.count) for c in cost.categories] == [
        ("marketing", 3),
        ("utility", 2),
        ("authentication", 1),
    ]
    assert not cost.prices_configured and cost.estimate is None
    html = index(UserFactory(username="root", is_staff=True, is_superuser=True), period="7")
    assert 'data-prices="not-configured"' in html
    assert table_row(html, "dash-cost", "marketing") == ["marketing", "3"]


def test_with_a_price_map_the_cost_is_estimated_and_unpriced_categories_are_named(contact, settings):
    settings.WHATSAPP_PRICE_PER_MESSAGE = {"marketing": "0.03", "utility": Decimal("0.004"), "bogus": "n/a"}
    billable_traffic(contact)

    cost = cost_by_category(period=dashboard_period(days=7))

    assert {c.category: c.estimate for c in cost.categories} == {
        "marketing": Decimal("0.09"),
        "utility": Decimal("0.008"),
        "authentication": None,
    }
    assert cost.estimate == Decimal("0.098") and cost.unpriced_categories == ["authentication"]
    html = index(UserFactory(username="root", is_staff=True, is_superuser=True), period="7")
    assert table_row(html, "dash-cost", "marketing") == ["marketing", "3", "$0.03", "$0.09"]
    assert "<td data-estimate-total>$0.10</td>" in html
    assert "No price for: authentication." in html and 'data-prices="not-configured"' not in html


# --- Consent -----------------------------------------------------------------------------------------------


def test_opt_ins_and_opt_outs_are_counted_per_day_in_people(contact):
    consent_text_create(
        version="v1", business_name="Acme", body="Acme may send you offers. Reply STOP to stop."
    )
    ava, ben, cy = ContactFactory(), ContactFactory(), ContactFactory()

    def opt_in(person, at, **kwargs):
        consent_record(
            contact_id=person.id,
            phone_number=person.phone_number,
            purpose="marketing",
            action="opt_in",
            source="web_form",
            evidence=WEB,
            text_version="v1",
            occurred_at=at,
            **kwargs,
        )

    opt_in(ava, datetime(2026, 3, 8, 10, 0, tzinfo=UTC))
    # A double opt-in counts on the day the person confirms, once.
    opt_in(ben, datetime(2026, 3, 8, 11, 0, tzinfo=UTC), awaiting_confirmation=True)
    consent_confirm_pending(
        contact_id=ben.id, phone_number=ben.phone_number, message_id="wamid.YES", occurred_at=YESTERDAY
    )
    # STOP writes an opt-out per purpose: still one person.
    consent_opt_out_everywhere(
        contact_id=cy.id,
        phone_number=cy.phone_number,
        source="whatsapp_keyword",
        evidence=Evidence(message_id="wamid.STOP"),
        occurred_at=YESTERDAY,
    )
    opt_in(cy, BEFORE_7_DAYS)  # before the period

    period = dashboard_period(days=7)
    days = consent_changes_per_day(since=period.start, until=period.end, tz=period.tz)

    assert [d.day for d in days] == period.dates
    assert {d.day: (d.opt_ins, d.opt_outs) for d in days if d.opt_ins or d.opt_outs} == {
        date(2026, 3, 8): (1, 0),
        date(2026, 3, 9): (1, 1),
    }
    html = index(user_in(roles.AUDITOR, username="auditor"), period="7")
    assert table_row(html, "dash-consent", "2026-03-09") == ["Mon 9 Mar", "1", "1"]


# --- Privacy requests --------------------------------------------------------------------------------------


def file(received_at, kind=PrivacyRequestKind.DELETE):
    return privacy_request_file(
        kind=kind, channel=PrivacyRequestChannel.EMAIL, phone_number="+15550123456", received_at=received_at
    )


def test_open_privacy_requests_are_counted_by_urgency_and_the_next_due_are_linked():
    overdue = file(NOW - timedelta(days=50))
    due_soon = file(NOW - timedelta(days=40))
    later = [file(NOW - timedelta(days=d)) for d in (0, 1, 2, 3, 4)]
    file(NOW, kind=PrivacyRequestKind.OPT_OUT_SALE)  # done at once: closed, not counted

    due = privacy_requests_due()

    assert (due.overdue, due.due_soon, due.later, due.open) == (1, 1, 5, 7)
    assert [d.request for d in due.next_due] == [overdue, due_soon, later[4], later[3], later[2]]

    html = index(user_in(roles.COMPLIANCE_OFFICER, username="officer"))
    assert '<li data-bucket="overdue">' in html
    row = table_row(html, "dash-privacy", overdue.reference)
    assert row[0] == overdue.reference and row[1] == "Delete" and row[3] == "Overdue"
    assert table_row(html, "dash-privacy", due_soon.reference)[3] == "Due soon"
    change_url = reverse("admin:compliance_privacyrequest_change", args=[overdue.pk])
    assert f'href="{change_url}"' in html
    assert later[0].reference not in html  # only the next five


# --- Who sees what -----------------------------------------------------------------------------------------

SECTIONS = ("dash-funnel", "dash-failures", "dash-cost", "dash-consent", "dash-privacy")


@pytest.mark.parametrize(
    ("role", "visible"),
    [
        (roles.COMPOSER, {"dash-funnel", "dash-failures", "dash-cost"}),
        (roles.OPERATOR, {"dash-funnel", "dash-failures", "dash-cost"}),
        (roles.AUDITOR, set(SECTIONS)),
        (roles.COMPLIANCE_OFFICER, {"dash-consent", "dash-privacy"}),
    ],
)
def test_each_role_sees_only_the_sections_it_may_read(role, visible):
    html = index(user_in(role, username="staff"))
    assert {s for s in SECTIONS if f'id="{s}"' in html} == visible


def test_a_superuser_sees_every_section_and_staff_without_permissions_see_no_dashboard():
    assert all(
        f'id="{s}"' in index(UserFactory(username="root", is_staff=True, is_superuser=True)) for s in SECTIONS
    )
    html = index(StaffUserFactory(username="nobody"))
    assert 'id="dashboard"' not in html


# --- The period --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("asked", "days"),
    [
        ("7", 7),
        ("90", 90),
        (" 30", 30),
        (None, 30),
        ("12", 30),
        ("-7", 30),
        ("abc", 30),
        ("7.5", 30),
        ("\x00", 30),
    ],
)
def test_the_period_is_one_of_the_choices_and_anything_else_falls_back_to_30_days(contact, asked, days):
    superuser = UserFactory(username="root", is_staff=True, is_superuser=True)
    html = index(superuser, **({} if asked is None else {"period": asked}))
    assert f"Dashboard: last {days} days" in html
    assert f'<option value="{days}" selected>' in html
    funnel_part = html.split('id="dash-funnel"')[1].split("</article>")[0]
    assert funnel_part.count("<tr data-day=") == days
    first = NOW.date() - timedelta(days=days - 1)
    assert f'data-day="{first:%Y-%m-%d}"' in funnel_part


def test_with_no_data_every_section_says_so():
    html = index(UserFactory(username="root", is_staff=True, is_superuser=True))
    assert "No outbound messages were queued in this period." in html
    assert "No failed messages in this period." in html
    assert "No billable messages in this period." in html
    assert "No consent changes in this period." in html
    assert "No open privacy requests." in html


# --- Speed -------------------------------------------------------------------------------------------------


def test_the_index_runs_the_same_small_number_of_queries_for_7_and_90_days(contact):
    """The first view computes the period's days (three GROUP BY queries over that range of messages);
    every view after it reads one stored row per day and never touches the messages."""
    yesterdays_traffic(contact)
    messages(contact, BEFORE_7_DAYS, 3, status=MessageStatus.FAILED, error_code="131000", billable=True)
    file(NOW - timedelta(days=50))
    client = logged_in(UserFactory(username="root", is_staff=True, is_superuser=True))
    counts = {}
    for days in (7, 90):
        with CaptureQueriesContext(connection) as queries:
            assert client.get(INDEX_URL, {"period": days}).status_code == 200
        message_queries = [q["sql"] for q in queries.captured_queries if "messaging_message" in q["sql"]]
        # Funnel, failures and cost: each one query, each bounded to the days' created_at range.
        assert len(message_queries) == 3
        assert all("created_at" in sql for sql in message_queries)
        with CaptureQueriesContext(connection) as queries:
            assert client.get(INDEX_URL, {"period": days}).status_code == 200
        counts[days] = len(queries)
        assert not [q for q in queries.captured_queries if "messaging_message" in q["sql"]]
        assert len([q for q in queries.captured_queries if "messaging_dashboardday" in q["sql"]]) == 1
    assert counts[7] == counts[90] <= 10


# --- Stored days -------------------------------------------------------------------------------------------


def funnel_cells(html: str, day) -> list[str]:
    return table_row(html, "dash-funnel", f"{day:%Y-%m-%d}")


def test_stored_days_give_the_same_figures_as_the_live_queries(contact, settings):
    settings.WHATSAPP_PRICE_PER_MESSAGE = {"marketing": "0.025"}
    yesterdays_traffic(contact)
    messages(contact, TODAY, 2, status=MessageStatus.FAILED, error_code="131049", error_title="Held back")
    messages(contact, BEFORE_7_DAYS + timedelta(hours=2), 4, billable=True, pricing_category="marketing")
    messages(contact, TODAY, 1, billable=True, pricing_category="utility")
    period = dashboard_period(days=30)

    snapshot = dashboard_snapshot(period=period)

    assert snapshot.funnel == delivery_funnel(period=period)
    assert snapshot.failures == failures_by_code(period=period)
    assert snapshot.cost == cost_by_category(period=period)
    assert snapshot.cost.estimate == Decimal("0.100")
    assert DashboardDay.objects.filter(time_zone=period.time_zone_name).count() == 30


def test_the_index_shows_stored_figures_says_as_of_when_and_computes_today_again_once_stale(contact):
    """Figures are as of the last computation, which the page says; once today's are older than the
    periodic refresh would leave them (it is not running), the page computes them itself."""
    root = UserFactory(username="root", is_staff=True, is_superuser=True)
    yesterdays_traffic(contact)
    html = index(root, period=7)
    assert funnel_cells(html, TODAY.date())[1] == "0"
    assert "Message figures as of <time" in html and "12:00:00" in html

    later = NOW + timedelta(seconds=30)
    with time_machine.travel(later, tick=False):
        messages(contact, later, 2, status=MessageStatus.SENT, sent_at=later)
        assert funnel_cells(index(root, period=7), TODAY.date())[1] == "0"  # the stored figures
    with time_machine.travel(NOW + PAGE_GRACE * RECENT_REFRESH_EVERY, tick=False):
        html = index(root, period=7)
    assert funnel_cells(html, TODAY.date())[1:3] == ["2", "2"]
    assert "12:03:00" in html


def test_refresh_now_computes_the_period_again_for_those_who_may_see_messages(contact):
    root = UserFactory(username="root", is_staff=True, is_superuser=True)
    index(root, period=7)
    messages(contact, YESTERDAY, 3, status=MessageStatus.QUEUED)
    assert funnel_cells(index(root, period=7), YESTERDAY.date())[1] == "0"

    url = reverse("admin:messaging_message_dashboard_refresh")
    officer = user_in(roles.COMPLIANCE_OFFICER, username="officer")  # sees consent, not messages
    assert logged_in(officer).post(url, {"period": "7"}).status_code == 403
    assert logged_in(root).get(url).status_code == 405
    forged = Client(enforce_csrf_checks=True)
    forged.force_login(root)
    assert forged.post(url, {"period": "7"}).status_code == 403  # the admin's CSRF check holds
    response = logged_in(root).post(url, {"period": "7"})
    assert response.status_code == 302 and response["Location"] == f"{INDEX_URL}?period=7"
    assert funnel_cells(index(root, period=7), YESTERDAY.date())[1] == "3"


def test_the_periodic_refresh_computes_today_and_yesterday_every_minute_and_older_days_hourly(contact):
    assert refresh_dashboard() == KEPT_DAYS  # nothing stored yet: every day the dashboard can show
    assert refresh_dashboard() == 0  # all fresh
    five_days_ago = NOW - timedelta(days=5)
    messages(contact, five_days_ago, 2, status=MessageStatus.SENT, sent_at=five_days_ago)
    messages(contact, TODAY, 1, status=MessageStatus.SENT, sent_at=TODAY)

    def queued(day) -> int:
        return DashboardDay.objects.get(day=day, time_zone="UTC").queued

    with time_machine.travel(NOW + RECENT_REFRESH_EVERY, tick=False):
        assert refresh_dashboard() == RECENT_DAYS
    assert (queued(TODAY.date()), queued(five_days_ago.date())) == (1, 0)
    with time_machine.travel(NOW + OLDER_REFRESH_EVERY, tick=False):
        assert refresh_dashboard() == KEPT_DAYS
    assert queued(five_days_ago.date()) == 2


@pytest.mark.parametrize("zone", ["America/Los_Angeles"])
def test_days_stored_for_another_time_zone_are_not_used(contact, settings, zone):
    """Days are calendar days of the site's time zone: after TIME_ZONE changes, the same message may
    belong to another day, so the days are computed for the new zone."""
    messages(contact, datetime(2026, 3, 10, 3, 0, tzinfo=UTC), status=MessageStatus.SENT)  # 9 March in LA
    root = UserFactory(username="root", is_staff=True, is_superuser=True)
    assert funnel_cells(index(root, period=7), date(2026, 3, 10))[1] == "1"
    settings.TIME_ZONE = zone
    html = index(root, period=7)
    assert funnel_cells(html, date(2026, 3, 9))[1] == "1"
    assert funnel_cells(html, date(2026, 3, 10))[1] == "0"
    assert DashboardDay.objects.filter(time_zone=zone).exists()
