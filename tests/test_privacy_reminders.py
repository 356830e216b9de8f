"""The daily digest of privacy deadlines, and the 24-month retention of request records."""

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.core import mail

from compliance.models import LedgerImmutableError, PrivacyRequest, PrivacyRequestChannel, PrivacyRequestKind
from compliance.privacy import privacy_request_deny, privacy_request_file
from compliance.tasks import remind_privacy_deadlines
from messaging.roles import COMPLIANCE_OFFICER
from tests.staff import user_in

pytestmark = pytest.mark.django_db

# Monday 2026-11-02, 17:00 UTC = 09:00 in California: the deadlines count from November 2.
RECEIVED = datetime(2026, 11, 2, 17, 0, tzinfo=UTC)


def _file(kind=PrivacyRequestKind.DELETE, phone="+15550100200"):
    with time_machine.travel(RECEIVED, tick=False):
        return privacy_request_file(kind=kind, channel=PrivacyRequestChannel.EMAIL, phone_number=phone)


@pytest.fixture
def officer():
    user = user_in(COMPLIANCE_OFFICER, username="officer")
    user.email = "officer@example.com"
    user.save()
    return user


def test_the_digest_lists_overdue_and_unacknowledged_requests_for_compliance_officers(officer):
    overdue = _file()
    composer = user_in("Composer", username="composer")
    composer.email = "composer@example.com"
    composer.save()
    # 45 calendar days from November 2 is December 17; on the 18th the response is overdue.
    with time_machine.travel(datetime(2026, 12, 18, 18, 0, tzinfo=UTC), tick=False):
        listed = remind_privacy_deadlines()
    assert listed == 1
    assert len(mail.outbox) == 1
    email = mail.outbox[0]
    assert email.to == ["officer@example.com"]  # not the composer: they cannot act on requests
    assert email.subject == "Privacy requests: 1 overdue, 0 due soon"
    assert f"{overdue.reference}  Delete  respond by 2026-12-17" in email.body
    assert "Receipt not yet acknowledged" in email.body  # filed by email, nobody confirmed receipt


def test_nothing_is_sent_when_nothing_needs_attention(officer):
    request = _file()
    with time_machine.travel(datetime(2026, 11, 3, 18, 0, tzinfo=UTC), tick=False):
        privacy_request_deny(
            request=request, user=officer, basis="withdrawn", explanation="Withdrawn by phone."
        )
        assert remind_privacy_deadlines() == 0
    assert mail.outbox == [] or all("Privacy requests:" not in m.subject for m in mail.outbox)


def test_due_soon_is_reported_a_week_before_the_deadline(officer):
    _file()
    with time_machine.travel(datetime(2026, 12, 10, 18, 0, tzinfo=UTC), tick=False):  # 7 days before
        remind_privacy_deadlines()
    assert mail.outbox[-1].subject == "Privacy requests: 0 overdue, 1 due soon"


def test_request_records_cannot_be_deleted_within_24_months():
    request = _file()
    with pytest.raises(LedgerImmutableError):
        request.delete()
    with pytest.raises(LedgerImmutableError):
        PrivacyRequest.objects.all().delete()
    with time_machine.travel(RECEIVED + timedelta(days=700), tick=False), pytest.raises(LedgerImmutableError):
        PrivacyRequest.objects.filter(pk=request.pk).delete()
    assert PrivacyRequest.objects.filter(pk=request.pk).exists()
