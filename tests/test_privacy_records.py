"""The record of privacy requests (11 CCR §7101) and the yearly metrics (§7102): what each row says, the
numbers per kind for a year built by hand, the CSV files auditors get (escaped, no formulas, no names),
the audit trail of every export, and that the records outlive 24 months' worth of attempts to drop them.

Every request below is filed and answered through the services, with the clock moved to the day each
step happened. Days are counted in California."""

import csv
import io
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.urls import reverse

from compliance.models import (
    AuditAction,
    DenialBasis,
    LedgerImmutableError,
    PrivacyOutcome,
    PrivacyRequest,
    PrivacyRequestChannel,
    PrivacyRequestKind,
    StaffAuditEntry,
)
from compliance.privacy import (
    privacy_request_deny,
    privacy_request_extend,
    privacy_request_file,
    privacy_request_fulfil,
    privacy_verify_manually,
)
from compliance.privacy_records import (
    METRIC_COLUMNS,
    RECORD_COLUMNS,
    privacy_metrics,
    privacy_metrics_csv,
    privacy_records,
    privacy_records_csv,
)
from messaging import roles
from tests.staff import logged_in, messages_of, user_in

pytestmark = pytest.mark.django_db

RECORDS_URL = reverse("admin:compliance_privacyrequest_records")
RECORDS_CSV_URL = reverse("admin:compliance_privacyrequest_records_csv")
METRICS_CSV_URL = reverse("admin:compliance_privacyrequest_metrics_csv")
CALIFORNIA = ZoneInfo("America/Los_Angeles")


def at(day: date, hour: int = 10) -> datetime:
    """`hour` o'clock in California on `day`."""
    return datetime.combine(day, time(hour), tzinfo=CALIFORNIA)


@pytest.fixture(autouse=True)
def _roles():
    roles.roles_apply_permissions()


@pytest.fixture
def officer():
    return user_in(roles.COMPLIANCE_OFFICER, username="officer")


def filed_on(
    day: date, kind=PrivacyRequestKind.KNOW_CATEGORIES, *, hour: int = 10, **extra
) -> PrivacyRequest:
    with time_machine.travel(at(day, hour), tick=False):
        filed = privacy_request_file(
            kind=kind,
            channel=extra.pop("channel", PrivacyRequestChannel.EMAIL),
            phone_number=extra.pop("phone_number", "+15550123456"),
            **extra,
        )
    filed.refresh_from_db()
    return filed


def answered(privacy_request: PrivacyRequest, on: date, officer, **fulfil) -> PrivacyRequest:
    with time_machine.travel(at(on), tick=False):
        verified = privacy_verify_manually(request=privacy_request, user=officer, note="Called back.")
        return privacy_request_fulfil(request=verified, user=officer, **fulfil)


def denied(
    privacy_request: PrivacyRequest, on: date, officer, explanation="We could not verify you."
) -> None:
    with time_machine.travel(at(on), tick=False):
        privacy_request_deny(
            request=privacy_request, user=officer, basis=DenialBasis.UNVERIFIABLE, explanation=explanation
        )


@pytest.fixture
def year_2025(officer):
    """Requests of 2025 with known answers (days to respond in brackets):
    know (categories): complied [2], [4], [30]; know (specific): complied in part [45];
    delete: denied [10], one still open; opt-out: done at once, twice [0], [0]; correct: none.
    Around them, one request of 2024 (filed at 21:00 on 31 December in California, already 2025 in
    UTC) and one of 2026, which the 2025 numbers must leave out."""
    jan = date(2025, 1, 6)
    for days in (2, 4, 30):
        answered(filed_on(jan), jan + timedelta(days=days), officer)
    answered(
        filed_on(jan, PrivacyRequestKind.KNOW_SPECIFIC),
        jan + timedelta(days=45),
        officer,
        outcome=PrivacyOutcome.COMPLIED_IN_PART,
        summary="Messages older than 12 months were deleted under our retention policy.",
    )
    denied(filed_on(date(2025, 3, 3), PrivacyRequestKind.DELETE), date(2025, 3, 13), officer)
    filed_on(date(2025, 11, 20), PrivacyRequestKind.DELETE, phone_number="+15550987654")
    filed_on(date(2025, 5, 5), PrivacyRequestKind.OPT_OUT_SALE)
    filed_on(date(2025, 5, 6), PrivacyRequestKind.OPT_OUT_SALE)
    filed_on(date(2024, 12, 31), PrivacyRequestKind.DELETE, hour=21)
    filed_on(date(2026, 1, 2), PrivacyRequestKind.CORRECT, corrections={"name": "Ava J."})


def by_kind(rows: list[dict]) -> dict[str, dict]:
    return {row["kind"]: row for row in rows}


# --- Metrics --------------------------------------------------------------------------------------------


def test_the_metrics_of_a_year_per_kind(year_2025):
    with time_machine.travel(at(date(2026, 2, 2)), tick=False):
        metrics = by_kind(privacy_metrics(year=2025))

    know = metrics["know_categories"]
    assert (know["received"], know["complied"], know["complied_in_part"], know["denied"], know["open"]) == (
        3, 3, 0, 0, 0,
    )  # fmt: skip
    # 2, 4 and 30 days: the median and the mean tell different stories.
    assert (know["median_days"], know["mean_days"]) == (4, 12.0)
    specific = metrics["know_specific"]
    assert (specific["received"], specific["complied_in_part"], specific["median_days"]) == (1, 1, 45)
    delete = metrics["delete"]
    assert (delete["received"], delete["denied"], delete["open"]) == (2, 1, 1)
    assert (delete["median_days"], delete["mean_days"]) == (10, 10.0)  # the open one has no days yet
    opt_out = metrics["opt_out_sale"]
    assert (opt_out["received"], opt_out["complied"], opt_out["median_days"], opt_out["mean_days"]) == (
        2,
        2,
        0,
        0,
    )
    correct = metrics["correct"]
    assert (correct["received"], correct["median_days"], correct["mean_days"]) == (0, None, None)
    everything = metrics["all"]
    # [0, 0, 2, 4, 10, 30, 45]: median 4, mean 91 / 7 = 13.
    assert (everything["received"], everything["complied"], everything["complied_in_part"]) == (8, 5, 1)
    assert (everything["denied"], everything["open"]) == (1, 1)
    assert (everything["median_days"], everything["mean_days"]) == (4, 13.0)


def test_a_request_counts_in_the_year_of_its_california_day(year_2025):
    assert by_kind(privacy_metrics(year=2024))["delete"]["received"] == 1
    assert by_kind(privacy_metrics(year=2026))["correct"]["received"] == 1
    assert by_kind(privacy_metrics(year=2023))["all"]["received"] == 0


def test_the_metrics_csv_has_a_row_per_kind_and_the_totals(year_2025):
    parsed = list(csv.reader(io.StringIO(privacy_metrics_csv(privacy_metrics(year=2025)))))

    assert parsed[0] == list(METRIC_COLUMNS.values())
    assert parsed[1] == ["2025", "Right to know: categories", "3", "3", "0", "0", "0", "4.0", "12.0"]
    assert parsed[-1] == ["2025", "All requests", "8", "5", "1", "1", "1", "4.0", "13.0"]
    correct = next(row for row in parsed if row[1] == "Correct")
    assert correct[-2:] == ["", ""]  # no answered request: no days, not zero days
    assert len(parsed) == 1 + len(PrivacyRequestKind.values) + 1


# --- Records --------------------------------------------------------------------------------------------


def test_each_record_says_what_the_regulations_ask(officer):
    late = filed_on(date(2025, 1, 6), PrivacyRequestKind.DELETE, requester_email="ava@example.com")
    with time_machine.travel(at(date(2025, 2, 1)), tick=False):
        privacy_request_extend(request=late, user=officer, reason="Archived messages.", extra_days=10)
    denied(late, date(2025, 3, 1), officer)  # due 2 March after the extension: in time
    overdue = filed_on(date(2025, 1, 7), phone_number="+15550987654")
    web = filed_on(date(2025, 1, 8), PrivacyRequestKind.OPT_OUT_SALE, channel=PrivacyRequestChannel.WEB_FORM)

    with time_machine.travel(at(date(2025, 3, 10)), tick=False):
        rows = {
            row["reference"]: row for row in privacy_records(start=date(2025, 1, 1), end=date(2025, 1, 31))
        }

    assert set(rows) == {late.reference, overdue.reference, web.reference}
    assert rows[late.reference] == {
        "reference": late.reference,
        "received": date(2025, 1, 6),
        "nature": "Delete",
        "manner": "Email",
        "agent": "no",
        "verified": "no",
        "acknowledged": None,
        "respond_by": date(2025, 3, 2),
        "extended": "yes",
        "responded": date(2025, 3, 1),
        "days_to_respond": 54,
        "response": "Denied",
        "response_detail": "",
        "denial_basis": "Identity could not be verified",
        "denial_explanation": "We could not verify you.",
        "late": "no",
    }
    assert (rows[overdue.reference]["response"], rows[overdue.reference]["late"]) == (
        "Open",
        "yes (still open)",
    )
    assert rows[overdue.reference]["days_to_respond"] is None
    assert rows[web.reference]["verified"] == "not required"
    assert rows[web.reference]["acknowledged"] == date(2025, 1, 8)
    assert (rows[web.reference]["response"], rows[web.reference]["days_to_respond"]) == (
        "Complied with in whole",
        0,
    )


def test_a_range_is_inclusive_and_refuses_to_run_backwards():
    first = filed_on(date(2025, 1, 1), hour=0)
    last = filed_on(date(2025, 1, 31), hour=23)
    filed_on(date(2025, 2, 1), hour=0)
    rows = privacy_records(start=date(2025, 1, 1), end=date(2025, 1, 31))
    assert [row["reference"] for row in rows] == [first.reference, last.reference]
    with pytest.raises(ValueError, match="ends"):
        privacy_records(start=date(2025, 2, 1), end=date(2025, 1, 1))


def test_the_records_csv_escapes_text_defuses_formulas_and_names_nobody(officer):
    quoted = filed_on(
        date(2025, 4, 1), requester_name='Ava "AJ" Jones, Jr.', requester_email="ava@example.com"
    )
    denied(
        quoted, date(2025, 4, 2), officer, explanation='You are not a "consumer", see our letter of 1 April.'
    )
    formula = filed_on(date(2025, 4, 3), phone_number="+15550987654")
    denied(formula, date(2025, 4, 4), officer, explanation='=HYPERLINK("http://evil.example","click")')

    text = privacy_records_csv(privacy_records(start=date(2025, 4, 1), end=date(2025, 4, 30)))

    assert '"You are not a ""consumer"", see our letter of 1 April."' in text
    parsed = list(csv.DictReader(io.StringIO(text)))
    assert list(parsed[0]) == list(RECORD_COLUMNS.values())
    assert (
        parsed[0]["Denial explained to the consumer"]
        == 'You are not a "consumer", see our letter of 1 April.'
    )
    assert parsed[0]["Date of request"] == "2025-04-01" and parsed[0]["Days to respond"] == "1"
    assert parsed[1]["Denial explained to the consumer"].startswith("'=HYPERLINK(")
    # The record of requests is not another copy of the people's details.
    for needle in ("Ava", "ava@example.com", "+1555", "5550123456"):
        assert needle not in text


# --- The admin page and its downloads -------------------------------------------------------------------


def test_the_records_page_shows_a_years_metrics(year_2025, officer):
    with time_machine.travel(at(date(2026, 2, 2)), tick=False):
        response = logged_in(officer).get(RECORDS_URL, {"year": "2025"})

    assert response.status_code == 200
    html = response.content.decode()
    assert "Privacy request records and metrics, 2025" in html
    know_row = html[html.index('data-kind="know_categories"') :].split("</tr>")[0]
    assert [cell.split(">")[-1] for cell in know_row.split("</td>")[:-1]] == [
        "3",
        "3",
        "0",
        "0",
        "0",
        "4.0",
        "12.0",
    ]
    assert '<option value="2024"' in html and '<option value="2026" selected' not in html


def test_downloading_the_records_and_metrics_is_recorded_in_the_audit_trail(year_2025, officer):
    client = logged_in(officer)

    records = client.get(RECORDS_CSV_URL, {"start": "2025-01-01", "end": "2025-12-31"})
    metrics = client.get(METRICS_CSV_URL, {"year": "2025"})

    assert records["Content-Type"] == "text/csv; charset=utf-8"
    assert (
        records["Content-Disposition"]
        == 'attachment; filename="privacy-requests-2025-01-01-to-2025-12-31.csv"'
    )
    rows = list(csv.DictReader(io.StringIO(records.content.decode("utf-8-sig"))))
    assert len(rows) == 8
    assert metrics["Content-Disposition"] == 'attachment; filename="privacy-request-metrics-2025.csv"'
    exports = list(StaffAuditEntry.objects.filter(action=AuditAction.EXPORT).order_by("at", "id"))
    assert [(e.username, e.object_type, e.summary) for e in exports] == [
        (
            "officer",
            "compliance.privacyrequest",
            "privacy request records 2025-01-01 to 2025-12-31: 8 rows (CSV)",
        ),
        ("officer", "compliance.privacyrequest", "privacy request metrics 2025 (CSV)"),
    ]


def test_a_backwards_or_missing_range_is_explained_not_exported(officer):
    client = logged_in(officer)
    backwards = client.get(RECORDS_CSV_URL, {"start": "2025-12-31", "end": "2025-01-01"})
    missing = client.get(RECORDS_CSV_URL)
    assert backwards.status_code == 302 and backwards.url == RECORDS_URL
    assert "Choose a date range: The range ends before it starts." in messages_of(backwards)
    assert any(m.startswith("Choose a date range: This field is required.") for m in messages_of(missing))
    assert not StaffAuditEntry.objects.filter(action=AuditAction.EXPORT).exists()


@pytest.mark.parametrize(
    "start, end, problem",
    [
        ("2025-01-01", "9999-12-31", "Choose dates from 1970-01-01 to 2026-12-31."),
        ("9999-12-31", "9999-12-31", "Choose dates from 1970-01-01 to 2026-12-31."),
        ("0001-01-01", "2025-01-01", "Choose dates from 1970-01-01 to 2026-12-31."),
        ("2015-01-01", "2025-01-01", "Choose a range of at most 10 years."),
        ("2025-12-31", "2025-01-01", "The range ends before it starts."),
    ],
)
def test_a_range_out_of_bounds_or_too_long_is_a_form_error_not_an_export(officer, start, end, problem):
    with time_machine.travel(at(date(2026, 2, 2)), tick=False):
        response = logged_in(officer).get(RECORDS_CSV_URL, {"start": start, "end": end})

    assert response.status_code == 302 and response.url == RECORDS_URL
    assert messages_of(response) == [f"Choose a date range: {problem}"]
    assert not StaffAuditEntry.objects.filter(action=AuditAction.EXPORT).exists()


def test_ten_years_of_records_is_the_longest_range(officer):
    oldest = filed_on(date(2016, 1, 1), hour=0)
    newest = filed_on(date(2025, 12, 31), hour=23)

    with time_machine.travel(at(date(2026, 2, 2)), tick=False):
        response = logged_in(officer).get(RECORDS_CSV_URL, {"start": "2016-01-01", "end": "2025-12-31"})

    assert response.status_code == 200
    rows = list(csv.DictReader(io.StringIO(response.content.decode("utf-8-sig"))))
    assert [row["Reference"] for row in rows] == [oldest.reference, newest.reference]


def test_auditors_read_and_export_the_records_other_roles_do_not():
    auditor = user_in(roles.AUDITOR, username="auditor")
    approver = user_in(roles.APPROVER, username="approver")
    assert logged_in(auditor).get(RECORDS_URL).status_code == 200
    assert logged_in(auditor).get(METRICS_CSV_URL).status_code == 200
    assert logged_in(approver).get(RECORDS_URL).status_code == 403
    assert (
        logged_in(approver).get(RECORDS_CSV_URL, {"start": "2025-01-01", "end": "2025-01-31"}).status_code
        == 403
    )


# --- Records are kept -----------------------------------------------------------------------------------


def test_records_are_kept_at_least_24_months(settings):
    assert settings.PRIVACY_RECORD_RETENTION_DAYS >= 730
    kept = filed_on(date(2025, 1, 6))
    with time_machine.travel(at(date(2026, 12, 31)), tick=False):  # 23 months on
        with pytest.raises(LedgerImmutableError, match="24 months"):
            kept.delete()
        with pytest.raises(LedgerImmutableError, match="24 months"):
            PrivacyRequest.objects.all().delete()
    assert PrivacyRequest.objects.filter(pk=kept.pk).exists()
