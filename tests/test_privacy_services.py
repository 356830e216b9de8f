"""Privacy requests end to end through the services (compliance.privacy), without HTTP: filing each kind
with its clocks, confirming receipt, verifying by WhatsApp code or by a documented check, the one
extension, fulfilling (know, delete, correct, opt-out) and denying, with the notices people get.

Expected dates were counted by hand on a calendar: March 2026 has no federal holiday, and a request
received on Monday 2 March 2026 (California) must be acknowledged by Monday 16 March (10 business days),
answered by Thursday 16 April (45 calendar days), and an opt-out done by Monday 23 March (15 business
days)."""

import re
from datetime import UTC, date, datetime

import pytest
import time_machine
from django.core import mail
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import SimpleUploadedFile

from compliance.crypto import phone_keyed_hash
from compliance.deadlines import RULE_VERSION
from compliance.erasure import certificate_digest, certificate_verify
from compliance.ledger import ledger_verify
from compliance.models import (
    ConsentAction,
    ConsentEvent,
    ConsentSource,
    ConsentStatus,
    DeletionCertificate,
    DenialBasis,
    PrivacyOutcome,
    PrivacyRequest,
    PrivacyRequestChannel,
    PrivacyRequestEvent,
    PrivacyRequestKind,
    PrivacyRequestStatus,
    Purpose,
    Suppression,
    VerificationMethod,
)
from compliance.privacy import (
    privacy_package_build,
    privacy_package_summary,
    privacy_request_acknowledge,
    privacy_request_deny,
    privacy_request_extend,
    privacy_request_file,
    privacy_request_fulfil,
    privacy_verification_confirm,
    privacy_verification_start,
    privacy_verify_manually,
)
from compliance.services import Evidence, consent_record, consent_status, consent_text_create
from messaging.models import Contact, Message
from messaging.services import sender_get_default
from messaging.whatsapp import webhook_payloads
from messaging.whatsapp.base import SenderRef
from tests.factories import StaffUserFactory
from tests.webhook_client import post_webhook

pytestmark = pytest.mark.django_db

Action = PrivacyRequestEvent.Action
SENDER = SenderRef("100200300400500", "+15550100000", "900800700600500")  # config/test_settings.py
AVA = "+15550123456"
AVA_TYPED = "(555) 012-3456"
# Monday 2 March 2026, 10:00 in California (PST, UTC-8).
MONDAY_MORNING = datetime(2026, 3, 2, 18, 0, tzinfo=UTC)


@pytest.fixture
def officer():
    return StaffUserFactory(username="officer")


@pytest.fixture
def ava(client):
    """Ava wrote to us on WhatsApp a minute ago: a contact, an inbound message, an open 24-hour window."""
    sender_get_default()
    value = webhook_payloads.inbound_text_value(
        wamid="wamid.AVA1",
        from_wa_id=AVA.lstrip("+"),
        text="Where is my order #1042?",
        profile_name="Ava Jones",
    )
    assert post_webhook(client, webhook_payloads.envelope(SENDER, value)).status_code == 200
    return Contact.objects.get(phone_number=AVA)


def file(kind=PrivacyRequestKind.DELETE, channel=PrivacyRequestChannel.EMAIL, **overrides) -> PrivacyRequest:
    arguments = {"kind": kind, "channel": channel, "phone_number": AVA_TYPED, **overrides}
    return privacy_request_file(**arguments)


def events(privacy_request: PrivacyRequest) -> list[str]:
    return list(privacy_request.events.order_by("at", "id").values_list("action", flat=True))


def error_codes(exc: pytest.ExceptionInfo[ValidationError]) -> set[str]:
    error = exc.value
    if hasattr(error, "error_dict"):
        return {e.code for errors in error.error_dict.values() for e in errors}
    return {e.code for e in error.error_list}


def code_sent_to(contact: Contact) -> str:
    """The six-digit code in the newest WhatsApp message queued for the contact."""
    message = Message.objects.filter(contact=contact, direction=Message.Direction.OUTBOUND).latest("id")
    found = re.search(r"\b(\d{6})\b", message.preview)
    assert found, f"no code in {message.preview!r}"
    return found.group(1)


def opt_in(contact: Contact, evidence: Evidence, *, source: str) -> None:
    text = consent_text_create(version="v1", business_name="Acme Bikes", body="Offers. Reply STOP to stop.")
    consent_record(
        contact_id=contact.pk,
        phone_number=contact.phone_number,
        purpose=Purpose.MARKETING,
        action=ConsentAction.OPT_IN,
        source=source,
        evidence=evidence,
        text_version=text.version,
    )


def verified(privacy_request: PrivacyRequest, officer) -> PrivacyRequest:
    return privacy_verify_manually(request=privacy_request, user=officer, note="Called the number back.")


# --- Filing and clocks ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kind",
    [
        PrivacyRequestKind.KNOW_CATEGORIES,
        PrivacyRequestKind.KNOW_SPECIFIC,
        PrivacyRequestKind.DELETE,
        PrivacyRequestKind.CORRECT,
    ],
)
@time_machine.travel(MONDAY_MORNING, tick=False)
def test_know_delete_and_correct_requests_wait_for_verification_with_their_clocks(kind):
    corrections = {"name": "Ava Jones-Smith"} if kind == PrivacyRequestKind.CORRECT else None

    filed = file(kind=kind, corrections=corrections, requester_email="ava@example.com")

    filed.refresh_from_db()
    assert filed.status == PrivacyRequestStatus.AWAITING_VERIFICATION
    assert filed.reference.startswith("PR-")
    assert filed.phone_number == AVA
    assert filed.phone_hash == phone_keyed_hash(AVA)
    assert filed.rule_version == RULE_VERSION
    assert filed.acknowledge_due == date(2026, 3, 16)
    assert filed.respond_due == filed.original_respond_due == date(2026, 4, 16)
    assert filed.acknowledged_at is None  # by email: staff confirm receipt separately
    assert events(filed) == [Action.FILED, Action.NOTICE_SENT]
    (receipt,) = mail.outbox
    assert receipt.to == ["ava@example.com"]
    assert filed.reference in receipt.subject
    assert "April 16, 2026" in receipt.body


@time_machine.travel(MONDAY_MORNING, tick=False)
def test_a_request_filed_in_the_evening_counts_from_that_california_day():
    # 23:30 in California on Monday is already Tuesday in UTC: the clocks still start on Monday.
    filed = file(received_at=datetime(2026, 3, 3, 7, 30, tzinfo=UTC))
    assert (filed.acknowledge_due, filed.respond_due) == (date(2026, 3, 16), date(2026, 4, 16))


@time_machine.travel(MONDAY_MORNING, tick=False)
def test_an_opt_out_is_done_at_once_and_stands_in_the_consent_ledger(ava):
    opt_in(ava, Evidence(reason="spring import"), source=ConsentSource.IMPORT)

    filed = file(kind=PrivacyRequestKind.OPT_OUT_SALE, channel=PrivacyRequestChannel.PHONE)

    filed.refresh_from_db()
    assert filed.status == PrivacyRequestStatus.CLOSED
    assert filed.outcome == PrivacyOutcome.COMPLIED
    assert filed.verification_method == VerificationMethod.NOT_REQUIRED
    assert filed.acknowledge_due is None
    assert filed.respond_due == date(2026, 3, 23)  # 15 business days
    assert consent_status(contact_id=ava.pk, purpose=Purpose.MARKETING) == ConsentStatus.REVOKED
    last = ConsentEvent.objects.order_by("-sequence").first()
    assert (last.action, last.source, last.purpose) == (
        ConsentAction.OPT_OUT,
        ConsentSource.PRIVACY_REQUEST,
        Purpose.MARKETING,
    )
    assert Action.OPTED_OUT in events(filed)
    assert ledger_verify().ok


def test_an_opt_out_for_a_number_we_never_had_still_stands_against_a_later_import():
    filed = file(kind=PrivacyRequestKind.OPT_OUT_SALE, phone_number="+1 555 010 7777")

    filed.refresh_from_db()
    contact = Contact.objects.get(phone_number="+15550107777")
    assert filed.contact_id == contact.pk
    assert consent_status(contact_id=contact.pk, purpose=Purpose.MARKETING) == ConsentStatus.REVOKED


def test_a_limit_request_is_recorded_and_closed_without_verification():
    filed = file(kind=PrivacyRequestKind.LIMIT_SENSITIVE)
    filed.refresh_from_db()
    assert (filed.status, filed.outcome) == (PrivacyRequestStatus.CLOSED, PrivacyOutcome.COMPLIED)
    assert "sensitive personal information" in filed.response_summary


def test_filing_refuses_a_bad_number_an_unknown_kind_and_an_agent_without_proof():
    with pytest.raises(ValidationError) as bad_number:
        file(phone_number="12")
    assert "phone_number" in bad_number.value.error_dict
    with pytest.raises(ValidationError) as bad_kind:
        file(kind="sell_my_data")
    assert error_codes(bad_kind) == {"invalid_kind"}
    with pytest.raises(ValidationError) as no_proof:
        file(agent_name="Privacy Helpers LLC")
    assert error_codes(no_proof) == {"agent_proof_required"}
    assert not PrivacyRequest.objects.exists()


def test_an_agent_files_with_a_signed_permission_whose_fingerprint_is_kept(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    proof = SimpleUploadedFile("permission.pdf", b"%PDF-1.4 signed by Ava", content_type="application/pdf")

    filed = file(agent_name="Privacy Helpers LLC", agent_email="agent@example.com", agent_proof=proof)

    assert filed.agent_proof.name.startswith("privacy/agent-proof/")
    assert len(filed.agent_proof_sha256) == 64
    assert "through authorized agent Privacy Helpers LLC" in filed.events.get(action=Action.FILED).detail
    assert mail.outbox[0].to == ["agent@example.com"]


# --- Acknowledgement ------------------------------------------------------------------------------------


def test_acknowledging_without_email_or_whatsapp_needs_a_note(officer):
    filed = file(channel=PrivacyRequestChannel.MAIL, phone_number="+1 555 010 8888")

    with pytest.raises(ValidationError) as refused:
        privacy_request_acknowledge(request=filed, user=officer)
    assert error_codes(refused) == {"acknowledgement_note_required"}
    filed.refresh_from_db()
    assert filed.acknowledged_at is None

    privacy_request_acknowledge(request=filed, user=officer, note="Letter posted on 3 March.")
    filed.refresh_from_db()
    assert filed.acknowledged_at is not None
    assert filed.events.get(action=Action.ACKNOWLEDGED).detail == "Letter posted on 3 March."
    with pytest.raises(ValidationError) as again:
        privacy_request_acknowledge(request=filed, user=officer, note="again")
    assert error_codes(again) == {"already_acknowledged"}


def test_acknowledging_emails_the_confirmation(officer):
    filed = file(requester_email="ava@example.com")
    mail.outbox.clear()

    privacy_request_acknowledge(request=filed, user=officer)

    (confirmation,) = mail.outbox
    assert confirmation.to == ["ava@example.com"]
    assert filed.reference in confirmation.subject
    assert filed.events.get(action=Action.ACKNOWLEDGED).username == "officer"


def test_a_request_filed_on_the_web_is_acknowledged_on_filing():
    filed = file(channel=PrivacyRequestChannel.WEB_FORM)
    assert filed.acknowledged_at == filed.received_at
    assert events(filed)[:2] == [Action.FILED, Action.ACKNOWLEDGED]


# --- Verification ---------------------------------------------------------------------------------------


def test_a_manual_verification_needs_a_note(officer):
    filed = file()
    with pytest.raises(ValidationError) as refused:
        privacy_verify_manually(request=filed, user=officer, note="  ")
    assert error_codes(refused) == {"verification_note_required"}

    verified(filed, officer)

    filed.refresh_from_db()
    assert filed.status == PrivacyRequestStatus.VERIFIED
    assert (filed.verification_method, filed.verified_by) == (VerificationMethod.MANUAL, officer)
    assert filed.events.get(action=Action.VERIFIED).detail.endswith("Called the number back.")


def test_a_web_request_from_a_known_number_gets_a_whatsapp_code_that_verifies_it(ava):
    filed = file(channel=PrivacyRequestChannel.WEB_FORM)

    code = code_sent_to(ava)
    assert Action.CODE_SENT in events(filed)
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    with pytest.raises(ValidationError) as refused:
        privacy_verification_confirm(request=filed, code=wrong)
    assert error_codes(refused) == {"wrong_code"}

    privacy_verification_confirm(request=filed, code=code)

    filed.refresh_from_db()
    assert filed.status == PrivacyRequestStatus.VERIFIED
    assert filed.verification_method == VerificationMethod.WHATSAPP_CODE
    assert filed.code_hash == ""  # used once
    assert events(filed)[-2:] == [Action.CODE_FAILED, Action.VERIFIED]
    # The code never lands in the request's own history.
    assert not any(code in detail for detail in filed.events.values_list("detail", flat=True))


def test_a_code_cannot_be_sent_to_a_number_we_do_not_know():
    filed = file(phone_number="+1 555 010 9999")
    assert privacy_verification_start(request=filed) is False
    assert not Message.objects.exists()


def test_a_new_code_must_wait_a_minute(ava):
    filed = file()
    with time_machine.travel(MONDAY_MORNING, tick=False):
        assert privacy_verification_start(request=filed) is True
        with pytest.raises(ValidationError) as refused:
            privacy_verification_start(request=filed)
        assert error_codes(refused) == {"code_recently_sent"}


# --- Extension ------------------------------------------------------------------------------------------


def test_an_extension_moves_the_deadline_once_and_tells_the_person(officer):
    with time_machine.travel(MONDAY_MORNING, tick=False):
        filed = file(requester_email="ava@example.com")
    mail.outbox.clear()

    with time_machine.travel(datetime(2026, 4, 10, 18, 0, tzinfo=UTC), tick=False):
        extended = privacy_request_extend(
            request=filed, user=officer, reason="Your messages are archived.", extra_days=30
        )
        with pytest.raises(ValidationError) as twice:
            privacy_request_extend(request=extended, user=officer, reason="Still archived.", extra_days=10)

    assert error_codes(twice) == {"already_extended"}
    assert (extended.original_respond_due, extended.respond_due) == (date(2026, 4, 16), date(2026, 5, 16))
    assert extended.extension_reason == "Your messages are archived."
    (notice,) = mail.outbox
    assert "needs more time" in notice.subject
    assert "May 16, 2026" in notice.body and "Your messages are archived." in notice.body
    assert events(extended)[-2:] == [Action.NOTICE_SENT, Action.EXTENDED]


def test_an_extension_after_the_first_deadline_is_refused(officer):
    with time_machine.travel(MONDAY_MORNING, tick=False):
        filed = file(requester_email="ava@example.com")
    too_late = time_machine.travel(datetime(2026, 4, 17, 18, 0, tzinfo=UTC), tick=False)
    with too_late, pytest.raises(ValidationError) as refused:
        privacy_request_extend(request=filed, user=officer, reason="Archived.", extra_days=30)
    assert error_codes(refused) == {"too_late"}
    filed.refresh_from_db()
    assert filed.respond_due == date(2026, 4, 16) and not filed.is_extended


@pytest.mark.parametrize(
    ("reason", "extra_days", "code"),
    [
        ("", 30, "reason_required"),
        ("  ", 30, "reason_required"),
        ("Archived.", 46, "too_long"),
        ("Archived.", 0, "not_positive"),
    ],
)
def test_an_extension_needs_a_reason_and_at_most_45_days(officer, reason, extra_days, code):
    filed = file(requester_email="ava@example.com")
    with pytest.raises(ValidationError) as refused:
        privacy_request_extend(request=filed, user=officer, reason=reason, extra_days=extra_days)
    assert error_codes(refused) == {code}
    filed.refresh_from_db()
    assert not filed.is_extended


def test_an_extension_nobody_can_be_told_of_needs_a_note_of_how_they_were_told(officer):
    filed = file(phone_number="+1 555 010 8888")  # no email, no WhatsApp conversation
    with pytest.raises(ValidationError) as refused:
        privacy_request_extend(request=filed, user=officer, reason="Archived.", extra_days=20)
    assert error_codes(refused) == {"notice_undeliverable"}

    privacy_request_extend(
        request=filed, user=officer, reason="Archived.", extra_days=20, notice_note="Phoned on 3 March."
    )
    notice = filed.events.filter(action=Action.NOTICE_SENT).get()
    assert notice.detail == "extension notice: Phoned on 3 March."


# --- Fulfilling and denying -----------------------------------------------------------------------------


def test_nothing_is_fulfilled_before_the_person_is_verified(officer, ava):
    filed = file()
    with pytest.raises(ValidationError) as refused:
        privacy_request_fulfil(request=filed, user=officer)
    assert error_codes(refused) == {"not_verified"}
    assert Contact.objects.filter(pk=ava.pk).exists()
    filed.refresh_from_db()
    assert filed.status == PrivacyRequestStatus.AWAITING_VERIFICATION


def test_complying_in_part_needs_a_summary(officer):
    filed = verified(file(kind=PrivacyRequestKind.KNOW_CATEGORIES), officer)
    with pytest.raises(ValidationError) as refused:
        privacy_request_fulfil(request=filed, user=officer, outcome=PrivacyOutcome.COMPLIED_IN_PART)
    assert error_codes(refused) == {"summary_required"}
    with pytest.raises(ValidationError) as denied:
        privacy_request_fulfil(request=filed, user=officer, outcome=PrivacyOutcome.DENIED)
    assert error_codes(denied) == {"invalid_outcome"}


def test_a_correction_changes_the_contact_and_the_timeline_names_the_fields(officer, ava):
    filed = verified(
        file(
            kind=PrivacyRequestKind.CORRECT,
            corrections={"name": "Ava Jones-Smith"},
            requester_email="a@example.com",
        ),
        officer,
    )
    mail.outbox.clear()

    done = privacy_request_fulfil(request=filed, user=officer)

    ava.refresh_from_db()
    assert ava.profile_name == "Ava Jones-Smith"
    assert (done.status, done.outcome) == (PrivacyRequestStatus.CLOSED, PrivacyOutcome.COMPLIED)
    assert done.events.get(action=Action.CORRECTED).detail == "corrected: name"
    assert done.response_summary == "Corrected: name."
    assert "is complete" in mail.outbox[0].subject


def test_a_correction_of_a_field_nobody_holds_is_refused_at_filing():
    with pytest.raises(ValidationError) as refused:
        file(kind=PrivacyRequestKind.CORRECT, corrections={"credit_score": "800"})
    assert error_codes(refused) == {"unknown_correction_field"}
    with pytest.raises(ValidationError) as empty:
        file(kind=PrivacyRequestKind.CORRECT, corrections={})
    assert error_codes(empty) == {"corrections_required"}


def test_a_denial_needs_its_basis_and_an_explanation_and_tells_the_person(officer):
    filed = file(requester_email="ava@example.com")
    mail.outbox.clear()
    with pytest.raises(ValidationError) as no_basis:
        privacy_request_deny(request=filed, user=officer, basis="", explanation="We could not verify you.")
    assert error_codes(no_basis) == {"denial_basis_required"}
    with pytest.raises(ValidationError) as no_explanation:
        privacy_request_deny(request=filed, user=officer, basis=DenialBasis.UNVERIFIABLE, explanation=" ")
    assert error_codes(no_explanation) == {"explanation_required"}

    denied = privacy_request_deny(
        request=filed, user=officer, basis=DenialBasis.UNVERIFIABLE, explanation="We could not verify you."
    )

    assert (denied.status, denied.outcome) == (PrivacyRequestStatus.CLOSED, PrivacyOutcome.DENIED)
    assert (denied.denial_basis, denied.handled_by) == (DenialBasis.UNVERIFIABLE, officer)
    assert denied.responded_at is not None
    (notice,) = mail.outbox
    assert "We could not verify you." in notice.body
    with pytest.raises(ValidationError) as again:
        privacy_request_deny(request=denied, user=officer, basis=DenialBasis.OTHER, explanation="again")
    assert error_codes(again) == {"already_closed"}


# --- Right to know ------------------------------------------------------------------------------------


def test_a_specific_pieces_package_holds_the_contact_consent_history_messages_and_requests(officer, ava):
    opt_in(
        ava,
        Evidence(staff_user_id=officer.pk, reason="asked at the shop counter"),
        source=ConsentSource.STAFF,
    )
    earlier = file(kind=PrivacyRequestKind.LIMIT_SENSITIVE)
    filed = verified(file(kind=PrivacyRequestKind.KNOW_SPECIFIC), officer)

    package = privacy_package_build(request=filed)

    assert package["request"] == filed.reference and package["phone_number"] == AVA
    (contact,) = package["pieces"]["messaging"]["contacts"]
    assert (contact["phone_number"], contact["profile_name"]) == (AVA, "Ava Jones")
    assert [m["text"] for m in package["pieces"]["messaging"]["messages"]] == ["Where is my order #1042?"]
    history = package["pieces"]["consent"]["consent_history"]
    assert [(e["action"], e["evidence"]["reason"]) for e in history] == [
        ("opt_in", "asked at the shop counter")
    ]
    # The person's privacy requests are personal information we hold about them too.
    requests = [
        item for section in package["pieces"].values() for item in section.get("privacy_requests", [])
    ]
    assert {item["reference"] for item in requests} >= {earlier.reference, filed.reference}

    summary = privacy_package_summary(package)
    assert summary.startswith(f"Your personal information — privacy request {filed.reference}")
    assert "Consent records (1 record)" in summary
    assert "Identifiers" in summary and "What: " in summary and "Why: " in summary
    assert "data.json" in summary
    assert "{" not in summary  # words for people, not JSON


def test_fulfilling_a_know_request_records_the_package_it_prepared(officer, ava):
    filed = verified(
        file(kind=PrivacyRequestKind.KNOW_CATEGORIES, requester_email="ava@example.com"), officer
    )

    done = privacy_request_fulfil(request=filed, user=officer)

    assert done.outcome == PrivacyOutcome.COMPLIED
    delivered = done.events.get(action=Action.PACKAGE_DELIVERED)
    assert delivered.detail.startswith("prepared at fulfilment; sha256 ")
    assert "categories of personal information" in done.response_summary


# --- Deletion -------------------------------------------------------------------------------------------


def test_a_deletion_erases_the_person_and_issues_a_certificate_that_verifies(officer, ava):
    opt_in(ava, Evidence(reason="spring import"), source=ConsentSource.IMPORT)
    filed = verified(file(requester_name="Ava Jones", requester_email="ava@example.com"), officer)
    mail.outbox.clear()

    done = privacy_request_fulfil(request=filed, user=officer)

    certificate = DeletionCertificate.objects.get(request=done)
    assert certificate_verify(certificate)
    assert certificate.digest == certificate_digest(certificate.body)
    assert certificate.body["request"] == filed.reference
    assert certificate.body["erased"]["messaging"]["contacts deleted"] == 1
    assert certificate.body["erased"]["consent"]["consent keys destroyed"] == 1
    assert ledger_verify().ok  # the events stay, their evidence unreadable
    assert not Contact.objects.filter(phone_number=AVA).exists()
    assert Suppression.objects.filter(phone_hash=phone_keyed_hash(AVA)).exists()
    done.refresh_from_db()
    # The record stays; what identified Ava on it is gone.
    assert (done.status, done.outcome) == (PrivacyRequestStatus.CLOSED, PrivacyOutcome.COMPLIED)
    assert (done.phone_number, done.requester_name, done.requester_email) == ("", "", "")
    assert done.identity_erased_at is not None and done.phone_hash == phone_keyed_hash(AVA)
    assert certificate.digest[:16] in done.response_summary
    # The completion notice still reached her, from the addresses kept for that one email.
    (notice,) = mail.outbox
    assert notice.to == ["ava@example.com"] and "is complete" in notice.subject

    # An edited certificate no longer verifies.
    certificate.body["erased"]["messaging"]["contacts deleted"] = 0
    assert not certificate_verify(certificate)


# --- Erasure and the request records themselves (review fixes) -------------------------------------


def test_erasure_scrubs_what_staff_wrote_about_the_person_on_their_requests(officer, ava):
    request = file()
    privacy_verify_manually(
        request=request, user=officer, note="Called Ava Jones back on (555) 012-3456; she confirmed."
    )
    privacy_request_fulfil(request=request, user=officer)

    request.refresh_from_db()
    assert request.verification_note == "Called [erased] back on [erased]; she confirmed."
    details = " ".join(request.events.values_list("detail", flat=True))
    assert "Ava" not in details and "012-3456" not in details
    assert "documented manual check" in details  # what happened is still on record


def test_erasure_closes_the_persons_other_open_requests_as_superseded(officer, ava):
    know = file(kind=PrivacyRequestKind.KNOW_SPECIFIC)
    delete = verified(file(), officer)
    privacy_request_fulfil(request=delete, user=officer)

    know.refresh_from_db()
    assert know.status == PrivacyRequestStatus.CLOSED
    assert know.outcome == PrivacyOutcome.COMPLIED_IN_PART
    assert know.response_summary == "No personal information is held about this number."  # no word of erasure
    assert know.events.filter(detail=f"superseded by deletion request {delete.reference}").exists()
    # A second deletion for the same person finds nothing left to do, and says so.
    again = PrivacyRequest.objects.create(
        reference="PR-AGAIN", kind=PrivacyRequestKind.DELETE, channel=PrivacyRequestChannel.EMAIL,
        phone_hash=delete.phone_hash, received_at=delete.received_at, rule_version=delete.rule_version,
        respond_due=delete.respond_due, original_respond_due=delete.respond_due, status=PrivacyRequestStatus.CLOSED,
    )  # fmt: skip
    with pytest.raises(ValidationError) as excinfo:
        privacy_request_fulfil(request=again, user=officer)
    assert error_codes(excinfo) == {"already_closed"}


def test_erasure_destroys_the_consent_keys_of_every_contact_that_was_the_person(officer, ava):
    opt_in(ava, Evidence(reason="paper form"), source=ConsentSource.IMPORT)
    # The same person under their previous number: same WhatsApp id, another contact.
    older = Contact.objects.create(phone_number="+15550199999", wa_id=AVA.lstrip("+"))
    consent_record(
        contact_id=older.pk, phone_number=older.phone_number, purpose=Purpose.UTILITY,
        action=ConsentAction.OPT_OUT, source=ConsentSource.STAFF,
        evidence=Evidence(staff_user_id=officer.pk, reason="asked by phone"),
    )  # fmt: skip
    request = verified(file(), officer)
    privacy_request_fulfil(request=request, user=officer)

    from compliance.models import ConsentSubject

    assert not ConsentSubject.objects.filter(wrapped_key__isnull=False).exists()
    assert ledger_verify().ok


def test_codes_to_one_number_are_capped_across_requests(ava):
    import time_machine as tm

    sent = 0
    for minute in range(6):
        with tm.travel(datetime(2026, 3, 2, 18, minute * 2, tzinfo=UTC), tick=False):
            request = file(kind=PrivacyRequestKind.KNOW_SPECIFIC, channel=PrivacyRequestChannel.WEB_FORM)
            sent += request.events.filter(action=Action.CODE_SENT).count()
    assert sent == 3  # then no more today, whatever the number of requests filed


def test_an_opt_out_gets_the_same_answer_whether_or_not_the_number_was_erased_before(officer, ava):
    from compliance.suppression import suppression_add

    plain = file(kind=PrivacyRequestKind.OPT_OUT_SALE, channel=PrivacyRequestChannel.WEB_FORM)
    suppression_add(e164="+15550100777", reason="erased earlier")
    erased = file(
        kind=PrivacyRequestKind.OPT_OUT_SALE,
        channel=PrivacyRequestChannel.WEB_FORM,
        phone_number="+15550100777",
    )
    assert plain.response_summary == erased.response_summary


def test_a_refused_filing_leaves_no_uploaded_proof_behind(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    proof = SimpleUploadedFile(
        "permission.pdf", b"%PDF-1.4 signed permission", content_type="application/pdf"
    )
    with pytest.raises(ValidationError):
        file(agent_name="Legal Aid", agent_proof=proof, agent_email="x" * 250 + "@example.com")
    assert not any(path.is_file() for path in tmp_path.rglob("*"))


def test_the_proof_file_is_removed_once_the_erasure_commits(settings, tmp_path, officer, ava):
    settings.MEDIA_ROOT = tmp_path
    proof = SimpleUploadedFile("permission.pdf", b"%PDF-1.4 signed by Ava", content_type="application/pdf")
    request = verified(file(agent_name="Legal Aid", agent_proof=proof), officer)
    assert any(path.is_file() for path in tmp_path.rglob("*"))
    from django.test import TestCase

    with TestCase.captureOnCommitCallbacks(execute=True):
        privacy_request_fulfil(request=request, user=officer)
    assert not any(path.is_file() for path in tmp_path.rglob("*"))
    request.refresh_from_db()
    assert request.agent_proof_sha256  # the fingerprint of what was shown stays on record


def test_the_receipt_gives_the_california_date_of_an_evening_request():
    with time_machine.travel(datetime(2026, 3, 3, 5, 30, tzinfo=UTC), tick=False):  # Mar 2, 21:30 PST
        file(channel=PrivacyRequestChannel.WEB_FORM, requester_email="ava@example.com")
    assert "on March 02, 2026" in mail.outbox[0].body


def test_with_a_broker_a_deletion_erases_in_a_background_worker(officer, ava, monkeypatch, settings):
    from django.test import TestCase

    from compliance import tasks

    settings.CELERY_TASK_ALWAYS_EAGER = False
    queued = []
    monkeypatch.setattr(tasks.erase_privacy_request, "delay", lambda *args: queued.append(args))
    request = verified(file(), officer)

    with TestCase.captureOnCommitCallbacks(execute=True):
        answered = privacy_request_fulfil(request=request, user=officer)
    assert answered.status == PrivacyRequestStatus.VERIFIED and answered.erasure_queued_at is not None
    assert Contact.objects.filter(phone_number=AVA).exists()  # nothing erased inside the web request
    assert queued == [(request.pk, officer.pk, PrivacyOutcome.COMPLIED, "")]
    with pytest.raises(ValidationError) as excinfo:  # a second click does not queue a second erasure
        privacy_request_fulfil(request=request, user=officer)
    assert error_codes(excinfo) == {"erasure_running"}

    assert tasks.erase_privacy_request.run(*queued[0]) == "erased"  # what the worker runs
    request.refresh_from_db()
    assert request.status == PrivacyRequestStatus.CLOSED
    assert DeletionCertificate.objects.filter(request=request).exists()
    assert not Contact.objects.filter(phone_number=AVA).exists()
    assert tasks.erase_privacy_request.run(*queued[0]) == "skipped"  # redelivered: nothing twice
    assert events(request).count(Action.ERASED) == 1
