"""What the person is told when they file, and requests about numbers already on the suppression list."""

import pytest
from django.core import mail

from compliance.models import PrivacyOutcome, PrivacyRequestChannel, PrivacyRequestKind, PrivacyRequestStatus
from compliance.privacy import OPT_OUT_SUMMARY, privacy_request_file
from compliance.suppression import suppression_add

pytestmark = pytest.mark.django_db


def test_the_receipt_email_carries_the_reference_due_date_and_status_link():
    request = privacy_request_file(
        kind=PrivacyRequestKind.KNOW_SPECIFIC,
        channel=PrivacyRequestChannel.WEB_FORM,
        phone_number="+1 555 010 0300",
        requester_email="ava@example.com",
        status_link=lambda reference: f"https://example.com/privacy/request/{reference}-token/",
    )
    (email,) = mail.outbox
    assert email.to == ["ava@example.com"]
    assert email.subject == f"We received your privacy request {request.reference}"
    assert f"We will respond by {request.respond_due:%B %d, %Y}" in email.body
    assert f"https://example.com/privacy/request/{request.reference}-token/" in email.body
    assert "one-time code" in email.body  # a know request waits for verification


def test_an_opt_out_for_a_suppressed_number_is_closed_without_bringing_the_number_back():
    suppression_add(e164="+15550100301", reason="legal hold")
    request = privacy_request_file(
        kind=PrivacyRequestKind.OPT_OUT_SALE,
        channel=PrivacyRequestChannel.WEB_FORM,
        phone_number="+15550100301",
    )
    request.refresh_from_db()
    assert request.status == PrivacyRequestStatus.CLOSED
    assert request.outcome == PrivacyOutcome.COMPLIED
    assert request.response_summary == OPT_OUT_SUMMARY  # nothing tells a stranger the number was erased
    assert request.events.filter(detail="already on the suppression list").exists()
    assert request.contact_id is None  # no contact was created for the suppressed number


def test_a_correction_the_records_could_not_hold_is_refused_when_filed_not_45_days_later():
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError) as excinfo:
        privacy_request_file(
            kind=PrivacyRequestKind.CORRECT,
            channel=PrivacyRequestChannel.WEB_FORM,
            phone_number="+15550100302",
            corrections={"timezone": "Pacific time", "locale": "es-mx"},
        )
    (error,) = excinfo.value.error_dict["corrections"]
    assert error.code == "invalid_timezone"
    assert "time zone" in error.message

    request = privacy_request_file(
        kind=PrivacyRequestKind.CORRECT,
        channel=PrivacyRequestChannel.WEB_FORM,
        phone_number="+15550100302",
        corrections={"timezone": "america/los_angeles", "locale": "es-mx"},
    )
    assert request.corrections == {"timezone": "America/Los_Angeles", "locale": "es_MX"}  # normalized
