"""The record of privacy requests and the yearly metrics the CCPA regulations ask for (selectors, and the
check a range typed by a person must pass).

- 11 CCR §7101(a): keep, for at least 24 months, a record of every request: the date of the request,
  its nature, the manner in which it was made, the date and nature of the response, and the basis for
  any denial. `privacy_records` is that record, one row per request received in a date range, with a
  few facts auditors ask next (verified? extended? late?). It never names the person: the record must
  not become another copy of their personal information (§7101(e)), and it outlives an erasure.
- §7102: metrics per calendar year and kind of request: how many were received, complied with in
  whole or in part, and denied, and the median and mean number of days to respond.

Dates are counted in settings.PRIVACY_TIME_ZONE, the calendar the legal clocks run on: a request sent at
21:00 in California on 31 December belongs to that year. Days to respond are calendar days from the
received date to the response date (same day = 0); only answered (closed) requests have them.
"""

import csv
import io
import statistics
from collections.abc import Iterable
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from django.conf import settings
from django.core.exceptions import ValidationError
from django.utils.text import capfirst

from compliance.audit import scrub_phone_numbers
from compliance.models import (
    DenialBasis,
    PrivacyOutcome,
    PrivacyRequest,
    PrivacyRequestChannel,
    PrivacyRequestKind,
    PrivacyRequestStatus,
    VerificationMethod,
)
from compliance.privacy import privacy_today

#: CSV column → header, in file order.
RECORD_COLUMNS = {
    "reference": "Reference",
    "received": "Date of request",
    "nature": "Nature of request",
    "manner": "Manner of request",
    "agent": "Through an authorized agent",
    "verified": "Identity verified",
    "acknowledged": "Receipt acknowledged",
    "respond_by": "Respond by",
    "extended": "Extended",
    "responded": "Date of response",
    "days_to_respond": "Days to respond",
    "response": "Nature of response",
    "response_detail": "Response detail",
    "denial_basis": "Basis for denial",
    "denial_explanation": "Denial explained to the consumer",
    "late": "Late",
}
METRIC_COLUMNS = {
    "year": "Year",
    "nature": "Nature of request",
    "received": "Received",
    "complied": "Complied with in whole",
    "complied_in_part": "Complied with in part",
    "denied": "Denied",
    "open": "Still open",
    "median_days": "Median days to respond",
    "mean_days": "Mean days to respond",
}
ALL_KINDS = "all"
#: The records a range may ask for: none were received before 1970, and ten years is more than any audit
#: asks (the regulations want 24 months) while keeping one export's work bounded.
RECORDS_EARLIEST = date(1970, 1, 1)
RECORDS_MAX_YEARS = 10
#: Cells a spreadsheet would run as a formula (CSV injection): such text gets a leading apostrophe.
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def _zone() -> ZoneInfo:
    return ZoneInfo(settings.PRIVACY_TIME_ZONE)


def _local_date(moment: datetime | None) -> date | None:
    return moment.astimezone(_zone()).date() if moment else None


def _day_bounds(start: date, end: date) -> tuple[datetime, datetime]:
    """[start 00:00, the day after end 00:00) in the privacy time zone, as aware datetimes."""
    zone = _zone()
    return (
        datetime.combine(start, time.min, tzinfo=zone),
        datetime.combine(end + timedelta(days=1), time.min, tzinfo=zone),
    )


def privacy_records_range_check(*, start: date, end: date) -> None:
    """What a range typed by a person must be before `privacy_records` runs on it (forms call this):
    a ValidationError whose code says why not: `date_out_of_range` (before 1970 or after this year,
    where no request can be yet; 9999-12-31 would not even have a day after it to count up to),
    `invalid_range` (it ends before it starts) or `range_too_long` (over ten years)."""
    latest = date(privacy_today().year, 12, 31)
    if not (RECORDS_EARLIEST <= start <= latest and RECORDS_EARLIEST <= end <= latest):
        raise ValidationError(
            "Choose dates from %(earliest)s to %(latest)s.",
            code="date_out_of_range",
            params={"earliest": RECORDS_EARLIEST.isoformat(), "latest": latest.isoformat()},
        )
    if end < start:
        raise ValidationError("The range ends before it starts.", code="invalid_range")
    if end >= _years_after(start, RECORDS_MAX_YEARS):
        raise ValidationError(
            "Choose a range of at most %(years)s years.",
            code="range_too_long",
            params={"years": RECORDS_MAX_YEARS},
        )


def _years_after(day: date, years: int) -> date:
    try:
        return day.replace(year=day.year + years)
    except ValueError:  # 29 February, in a year without one
        return day.replace(year=day.year + years, day=28) + timedelta(days=1)


def _received_between(start: date, end: date):
    if end < start:
        raise ValueError(f"The range ends ({end}) before it starts ({start}).")
    since, until = _day_bounds(start, end)
    return PrivacyRequest.objects.filter(received_at__gte=since, received_at__lt=until)


def days_to_respond(request: PrivacyRequest) -> int | None:
    """Calendar days from the day the request was received to the day it was answered; None if open."""
    if request.status != PrivacyRequestStatus.CLOSED or request.responded_at is None:
        return None
    return (_local_date(request.responded_at) - _local_date(request.received_at)).days


def _verified(request: PrivacyRequest) -> str:
    if request.verification_method == VerificationMethod.NOT_REQUIRED:
        return "not required"
    return "yes" if request.verified_at else "no"


def _late(request: PrivacyRequest, today: date) -> str:
    answered = _local_date(request.responded_at) if request.is_closed else None
    if answered is not None:
        return "yes" if answered > request.respond_due else "no"
    return "yes (still open)" if today > request.respond_due else "no"


def _label(choices, value: str) -> str:
    return capfirst(str(choices(value).label)) if value in choices.values else value


def privacy_records(*, start: date, end: date) -> list[dict]:
    """One row per request received from `start` to `end` (inclusive, privacy time zone), oldest first."""
    today = privacy_today()
    rows = []
    for request in _received_between(start, end).order_by("received_at", "id"):
        responded = _local_date(request.responded_at) if request.is_closed else None
        rows.append(
            {
                "reference": request.reference,
                "received": _local_date(request.received_at),
                "nature": _label(PrivacyRequestKind, request.kind),
                "manner": _label(PrivacyRequestChannel, request.channel),
                "agent": "yes" if request.agent_name or request.agent_proof_sha256 else "no",
                "verified": _verified(request),
                "acknowledged": _local_date(request.acknowledged_at),
                "respond_by": request.respond_due,
                "extended": "yes" if request.is_extended else "no",
                "responded": responded,
                "days_to_respond": days_to_respond(request),
                "response": _label(PrivacyOutcome, request.outcome) if request.outcome else "Open",
                "response_detail": scrub_phone_numbers(request.response_summary),
                "denial_basis": _label(DenialBasis, request.denial_basis) if request.denial_basis else "",
                "denial_explanation": scrub_phone_numbers(request.denial_explanation),
                "late": _late(request, today),
            }
        )
    return rows


def _cell(value) -> str:
    if value is None:
        return ""
    text = value.isoformat() if isinstance(value, date) else str(value)
    return "'" + text if text.startswith(FORMULA_PREFIXES) else text


def _csv(rows: Iterable[dict], columns: dict[str, str]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")  # RFC 4180, what spreadsheets expect
    writer.writerow(columns.values())
    for row in rows:
        writer.writerow(_cell(row.get(key)) for key in columns)
    return out.getvalue()


def privacy_records_csv(rows: Iterable[dict]) -> str:
    return _csv(rows, RECORD_COLUMNS)


def _average(values: list[int], how) -> float | None:
    return round(float(how(values)), 1) if values else None


def _metrics_row(year: int, kind: str, label: str, requests: list[PrivacyRequest]) -> dict:
    outcomes = [request.outcome for request in requests if request.is_closed]
    days = [d for d in (days_to_respond(request) for request in requests) if d is not None]
    return {
        "year": year,
        "kind": kind,
        "nature": label,
        "received": len(requests),
        "complied": outcomes.count(PrivacyOutcome.COMPLIED),
        "complied_in_part": outcomes.count(PrivacyOutcome.COMPLIED_IN_PART),
        "denied": outcomes.count(PrivacyOutcome.DENIED),
        "open": len(requests) - len(outcomes),
        "median_days": _average(days, statistics.median),
        "mean_days": _average(days, statistics.mean),
    }


def privacy_metrics(*, year: int) -> list[dict]:
    """One row per kind of request received in `year` (every kind, zeros included, so a year without
    deletion requests says so), then a row for all kinds together (`kind` == "all")."""
    received = list(_received_between(date(year, 1, 1), date(year, 12, 31)))
    rows = [
        _metrics_row(year, kind, str(label), [r for r in received if r.kind == kind])
        for kind, label in PrivacyRequestKind.choices
    ]
    rows.append(_metrics_row(year, ALL_KINDS, "All requests", received))
    return rows


def privacy_metrics_csv(rows: Iterable[dict]) -> str:
    return _csv(rows, METRIC_COLUMNS)


def privacy_record_years() -> list[int]:
    """Years with at least one request (privacy time zone), newest first, always including this one."""
    first = PrivacyRequest.objects.order_by("received_at").values_list("received_at", flat=True).first()
    this_year = privacy_today().year
    start = _local_date(first).year if first else this_year
    return list(range(this_year, min(start, this_year) - 1, -1))
