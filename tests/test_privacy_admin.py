"""Privacy requests in the admin: the queue (open first, by due date, urgency flags, search by a number
even once it is erased), staff filing with an agent's proof, each action on the case page with the
services' reasons shown as messages (never a 500), and who may see and do what."""

import hashlib
import re
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from compliance.erasure import certificate_digest
from compliance.models import (
    AuditAction,
    DeletionCertificate,
    DenialBasis,
    PrivacyOutcome,
    PrivacyRequest,
    PrivacyRequestChannel,
    PrivacyRequestEvent,
    PrivacyRequestKind,
    PrivacyRequestStatus,
    StaffAuditEntry,
    VerificationMethod,
)
from compliance.privacy import privacy_request_file, privacy_verify_manually
from messaging import roles
from messaging.models import Contact, Message
from messaging.services import sender_get_default
from tests.factories import ContactFactory, StaffUserFactory
from tests.staff import logged_in, messages_of, user_in

pytestmark = pytest.mark.django_db

Action = PrivacyRequestEvent.Action
CHANGELIST_URL = reverse("admin:compliance_privacyrequest_changelist")
ADD_URL = reverse("admin:compliance_privacyrequest_add")
AVA = "+15550123456"
# Monday 2 March 2026, 10:00 in California: respond by 16 April, acknowledge by 16 March.
MONDAY_MORNING = datetime(2026, 3, 2, 18, 0, tzinfo=UTC)


def url(name: str, privacy_request: PrivacyRequest) -> str:
    return reverse(f"admin:compliance_privacyrequest_{name}", args=[privacy_request.pk])


@pytest.fixture(autouse=True)
def _roles():
    roles.roles_apply_permissions()


@pytest.fixture
def officer():
    return user_in(roles.COMPLIANCE_OFFICER, username="officer")


@pytest.fixture
def auditor():
    return user_in(roles.AUDITOR, username="auditor")


@pytest.fixture
def ava():
    sender_get_default()
    return ContactFactory(
        phone_number=AVA, profile_name="Ava Jones", last_inbound_at=datetime.now(UTC) - timedelta(minutes=5)
    )


def file(kind=PrivacyRequestKind.DELETE, phone_number=AVA, **overrides) -> PrivacyRequest:
    arguments = {"kind": kind, "channel": PrivacyRequestChannel.EMAIL, "phone_number": phone_number}
    return privacy_request_file(**{**arguments, **overrides})


def row_of(html: str, reference: str) -> str:
    """The changelist row that shows `reference`."""
    rows = [row for row in html.split("<tr") if reference in row]
    assert len(rows) == 1, f"{reference} in {len(rows)} rows"
    return rows[0]


def listed(response) -> list[str]:
    return [r.reference for r in response.context["cl"].result_list]


# --- The queue --------------------------------------------------------------------------------------------


def test_the_queue_lists_open_requests_by_due_date_then_closed_ones(officer):
    late = file(received_at=MONDAY_MORNING - timedelta(days=20))
    fresh = file(received_at=MONDAY_MORNING)
    closed = file(kind=PrivacyRequestKind.OPT_OUT_SALE, received_at=MONDAY_MORNING - timedelta(days=60))
    middle = file(received_at=MONDAY_MORNING - timedelta(days=10))

    response = logged_in(officer).get(CHANGELIST_URL)

    assert response.status_code == 200
    assert listed(response) == [late.reference, middle.reference, fresh.reference, closed.reference]
    # A click on the column sorts by the due date alone, latest first.
    by_due = logged_in(officer).get(CHANGELIST_URL, {"o": "-5"})  # "respond by", descending
    assert by_due.context["cl"].list_display[5] == "respond_by"
    assert listed(by_due) == [fresh.reference, middle.reference, late.reference, closed.reference]


def test_overdue_and_due_soon_requests_and_late_acknowledgements_are_flagged(officer):
    with time_machine.travel(MONDAY_MORNING, tick=False):
        overdue = file(received_at=MONDAY_MORNING - timedelta(days=50))
        due_soon = file(received_at=MONDAY_MORNING - timedelta(days=40))
        fine = file(received_at=MONDAY_MORNING)
        done = file(kind=PrivacyRequestKind.LIMIT_SENSITIVE)
        client = logged_in(officer)
        html = client.get(CHANGELIST_URL).content.decode()

        assert 'data-urgency="overdue">Overdue<' in row_of(html, overdue.reference)
        assert "5 days overdue" in row_of(html, overdue.reference)
        assert 'data-urgency="due_soon">Due soon<' in row_of(html, due_soon.reference)
        assert "5 days left" in row_of(html, due_soon.reference)
        assert 'data-urgency="ok">OK<' in row_of(html, fine.reference)
        assert 'data-urgency="done">Done<' in row_of(html, done.reference)
        # Receipt was due 10 business days after filing: overdue for the old ones, owed for today's.
        assert 'data-ack="overdue"' in row_of(html, overdue.reference)
        assert 'data-ack="owed"' in row_of(html, fine.reference)
        assert 'data-ack="not_required"' in row_of(html, done.reference)

        assert listed(client.get(CHANGELIST_URL, {"urgency": "overdue"})) == [overdue.reference]
        assert listed(client.get(CHANGELIST_URL, {"urgency": "due_soon"})) == [due_soon.reference]
        assert listed(client.get(CHANGELIST_URL, {"urgency": "closed"})) == [done.reference]
        assert set(listed(client.get(CHANGELIST_URL, {"urgency": "ack_overdue"}))) == {
            overdue.reference,
            due_soon.reference,
        }

    # Six weeks later the request filed "today" is overdue too, without anyone touching it.
    with time_machine.travel(MONDAY_MORNING + timedelta(days=46), tick=False):
        html = logged_in(officer).get(CHANGELIST_URL).content.decode()
    assert 'data-urgency="overdue"' in row_of(html, fine.reference)


def test_search_finds_a_request_by_reference_or_by_the_number_as_typed(officer):
    ava_request = file()
    other = file(phone_number="+15550987654")
    client = logged_in(officer)

    assert listed(client.get(CHANGELIST_URL, {"q": ava_request.reference})) == [ava_request.reference]
    assert listed(client.get(CHANGELIST_URL, {"q": "(555) 012-3456"})) == [ava_request.reference]
    assert listed(client.get(CHANGELIST_URL, {"q": "555.098.7654"})) == [other.reference]


def test_search_by_number_still_finds_a_request_whose_number_was_erased(officer, ava):
    erased = privacy_verify_manually(request=file(), user=officer, note="Called back.")
    client = logged_in(officer)
    client.post(url("fulfil", erased), {"fulfil-outcome": PrivacyOutcome.COMPLIED})
    erased.refresh_from_db()
    assert erased.is_closed and erased.phone_number == ""

    assert listed(client.get(CHANGELIST_URL, {"q": "+1 555 012 3456"})) == [erased.reference]


# --- Filing -----------------------------------------------------------------------------------------------


def test_staff_file_a_request_from_an_authorized_agent_with_the_proof(officer, auditor, settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    proof = SimpleUploadedFile(
        "permission.pdf", b"%PDF-1.4 Ava authorizes Privacy Helpers", "application/pdf"
    )

    response = logged_in(officer).post(
        ADD_URL,
        {
            "kind": PrivacyRequestKind.KNOW_SPECIFIC,
            "channel": PrivacyRequestChannel.MAIL,
            "received_at": "2026-03-02T10:00",
            "phone_number": "(555) 012-3456",
            "requester_name": "Ava Jones",
            "agent_name": "Privacy Helpers LLC",
            "agent_email": "agent@example.com",
            "agent_proof": proof,
            "agent_proof_note": "Signed permission, signature matches the ID copy.",
        },
    )

    filed = PrivacyRequest.objects.get()
    assert response.status_code == 302 and response.url == url("change", filed)
    assert f"Filed {filed.reference}; respond by 2026-04-16." in messages_of(response)
    assert (filed.kind, filed.channel, filed.phone_number) == ("know_specific", "mail", AVA)
    assert filed.filed_by == officer and filed.agent_name == "Privacy Helpers LLC"
    # Typed in California time, the calendar the deadlines count in (and the case page shows).
    assert filed.received_at == datetime(2026, 3, 2, 18, 0, tzinfo=UTC)
    assert filed.status == PrivacyRequestStatus.AWAITING_VERIFICATION

    # The proof is read through the admin by anyone who may read the request, never from MEDIA_URL.
    page = logged_in(auditor).get(url("change", filed)).content.decode()
    assert url("agent_proof", filed) in page
    assert settings.MEDIA_URL + filed.agent_proof.name not in page
    download = logged_in(auditor).get(url("agent_proof", filed))
    assert download.status_code == 200
    assert b"".join(download.streaming_content) == b"%PDF-1.4 Ava authorizes Privacy Helpers"
    assert StaffAuditEntry.objects.filter(username="auditor", action=AuditAction.EXPORT).exists()
    assert logged_in(auditor).get(f"/{settings.MEDIA_URL}{filed.agent_proof.name}").status_code == 404


def test_filing_shows_the_services_reasons_on_the_fields_and_stores_nothing(officer):
    client = logged_in(officer)

    bad_number = client.post(
        ADD_URL,
        {"kind": "delete", "channel": "phone", "phone_number": "12", "requester_email": "a@example.com"},
    )
    no_proof = client.post(
        ADD_URL, {"kind": "delete", "channel": "phone", "phone_number": AVA, "agent_name": "Privacy Helpers"}
    )
    web_form = client.post(ADD_URL, {"kind": "delete", "channel": "web_form", "phone_number": AVA})
    disguised = SimpleUploadedFile("permission.pdf", b"<html><script>", content_type="application/pdf")
    not_a_pdf = client.post(
        ADD_URL,
        {
            "kind": "delete",
            "channel": "mail",
            "phone_number": AVA,
            "agent_name": "Helpers",
            "agent_proof": disguised,
        },
    )

    assert bad_number.status_code == 200
    assert bad_number.context["form"].errors["phone_number"]
    assert "signed permission" in str(no_proof.context["form"].errors["agent_proof"])
    assert "channel" in web_form.context["form"].errors  # the public page files those itself
    assert not_a_pdf.context["form"].errors["agent_proof"] == ["Upload the proof as a PDF, PNG or JPEG file."]
    assert not PrivacyRequest.objects.exists()


def test_an_opt_out_filed_by_staff_is_done_at_once(officer, ava):
    response = logged_in(officer).post(
        ADD_URL, {"kind": "opt_out_sale", "channel": "phone", "phone_number": AVA}
    )

    filed = PrivacyRequest.objects.get()
    assert filed.is_closed and filed.outcome == PrivacyOutcome.COMPLIED
    assert any(m.startswith(f"Filed {filed.reference}; done at once") for m in messages_of(response))


# --- The case page and its actions ----------------------------------------------------------------------


def test_the_case_page_shows_the_clocks_and_the_timeline_and_is_audited(officer):
    with time_machine.travel(MONDAY_MORNING, tick=False):
        filed = file(requester_email="ava@example.com")
        page = logged_in(officer).get(url("change", filed))

    html = page.content.decode()
    assert page.status_code == 200
    assert "ccpa-2026.1" in html and "2026-04-16" in html and "2026-03-16" in html
    assert "45 days left" in html
    assert (
        'id="pr-timeline"' in html and 'data-action="filed"' in html and 'data-action="notice_sent"' in html
    )
    for form in ("pr-acknowledge", "pr-send-code", "pr-verify", "pr-extend", "pr-fulfil", "pr-deny"):
        assert f'id="{form}"' in html
    assert StaffAuditEntry.objects.filter(
        username="officer", action=AuditAction.VIEW, object_id=str(filed.pk)
    ).exists()


def test_acknowledging_without_a_channel_asks_for_a_note_then_records_it(officer):
    filed = file(phone_number="+15550108888")
    client = logged_in(officer)

    refused = client.post(url("acknowledge", filed), {"ack-note": ""})
    assert refused.status_code == 302
    assert any("Could not acknowledge: We have no email or WhatsApp" in m for m in messages_of(refused))

    done = client.post(url("acknowledge", filed), {"ack-note": "Phoned her on 3 March."})
    assert "Receipt acknowledged." in messages_of(done)
    filed.refresh_from_db()
    assert filed.acknowledged_at is not None
    assert filed.events.get(action=Action.ACKNOWLEDGED).username == "officer"


def test_sending_a_code_from_the_admin_and_verifying_manually(officer, ava):
    filed = file()
    client = logged_in(officer)

    sent = client.post(url("send_code", filed))
    assert "A one-time code was sent to the person's WhatsApp number." in messages_of(sent)
    assert Message.objects.filter(contact=ava, preview__contains=filed.reference).exists()
    too_soon = client.post(url("send_code", filed))
    assert any("less than a minute ago" in m for m in messages_of(too_soon))

    no_note = client.post(url("verify", filed), {"verify-note": " "})
    assert any("Describe how you verified" in m for m in messages_of(no_note))
    client.post(url("verify", filed), {"verify-note": "Matched order #1042 and the billing address."})
    filed.refresh_from_db()
    assert (filed.status, filed.verification_method) == (
        PrivacyRequestStatus.VERIFIED,
        VerificationMethod.MANUAL,
    )


def code_sent_to(contact, reference: str) -> str:
    """The last verification code queued to `contact` for the request `reference`."""
    message = Message.objects.filter(contact=contact, preview__contains=reference).latest("id")
    return re.search(r"\b(\d{6})\b", message.preview).group(1)


def test_staff_check_the_code_a_person_reads_out_to_them(officer, ava):
    """A request staff filed has no status page: the person reads the WhatsApp code out to staff."""
    filed = file(received_at=datetime.now(UTC))
    client = logged_in(officer)
    assert 'id="pr-check-code"' in client.get(url("change", filed)).content.decode()
    client.post(url("send_code", filed))
    code = code_sent_to(ava, filed.reference)
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"

    not_a_code = client.post(url("check_code", filed), {"code-code": "12ab"})
    mistaken = client.post(url("check_code", filed), {"code-code": wrong})
    right = client.post(url("check_code", filed), {"code-code": code[:3] + " " + code[3:]})

    assert not_a_code.status_code == mistaken.status_code == right.status_code == 302
    assert right.url == url("change", filed)
    assert messages_of(not_a_code)[-1] == (
        "Could not check the code: Code the person read out: Enter the 6-digit code from the WhatsApp message."
    )
    assert messages_of(mistaken)[-1] == (
        "Could not check the code: That code is not right. Check the WhatsApp message and try again."
    )
    assert messages_of(right)[-1] == "The code is right: identity verified."
    filed.refresh_from_db()
    assert (filed.status, filed.verification_method) == (
        PrivacyRequestStatus.VERIFIED,
        VerificationMethod.WHATSAPP_CODE,
    )
    again = client.post(url("check_code", filed), {"code-code": code})
    assert messages_of(again)[-1].startswith("Could not check the code: This request is not waiting")


def test_checking_a_code_keeps_the_limits_of_the_status_page(officer, ava, settings):
    filed = file(received_at=datetime.now(UTC))
    client = logged_in(officer)
    never_sent = client.post(url("check_code", filed), {"code-code": "123456"})
    client.post(url("send_code", filed))
    code = code_sent_to(ava, filed.reference)
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"

    for _ in range(5):
        client.post(url("check_code", filed), {"code-code": wrong})
    too_many = client.post(url("check_code", filed), {"code-code": code})
    with time_machine.travel(datetime.now(UTC) + timedelta(minutes=settings.PRIVACY_CODE_TTL_MINUTES + 2)):
        expired = client.post(url("check_code", filed), {"code-code": code})

    assert (
        messages_of(never_sent)[-1] == "Could not check the code: This code has expired. Ask for a new one."
    )
    assert messages_of(too_many)[-1] == "Could not check the code: Too many wrong codes. Ask for a new one."
    assert messages_of(expired)[-1] == "Could not check the code: This code has expired. Ask for a new one."
    filed.refresh_from_db()
    assert filed.status == PrivacyRequestStatus.AWAITING_VERIFICATION


def test_a_code_for_a_number_we_do_not_know_asks_for_a_manual_check(officer):
    filed = file(phone_number="+15550109999")
    response = logged_in(officer).post(url("send_code", filed))
    assert any(m.startswith("No code could be sent") for m in messages_of(response))


def test_extending_from_the_admin_once_with_its_reasons(officer):
    with time_machine.travel(MONDAY_MORNING, tick=False):
        filed = file(requester_email="ava@example.com")
        client = logged_in(officer)
        no_reason = client.post(url("extend", filed), {"extend-reason": "", "extend-extra_days": "30"})
        not_a_number = client.post(
            url("extend", filed), {"extend-reason": "Archive", "extend-extra_days": "many"}
        )
        too_long = client.post(url("extend", filed), {"extend-reason": "Archive", "extend-extra_days": "60"})
        done = client.post(
            url("extend", filed), {"extend-reason": "Archived messages.", "extend-extra_days": "30"}
        )
        twice = client.post(
            url("extend", filed), {"extend-reason": "Still archived.", "extend-extra_days": "5"}
        )

    assert any("must be told why" in m for m in messages_of(no_reason))
    assert any(
        m.startswith("Could not extend: Extra days: Enter a whole number") for m in messages_of(not_a_number)
    )
    assert any("at most 45 calendar days" in m for m in messages_of(too_long))
    assert "Extended: respond by 2026-05-16." in messages_of(done)
    assert any("already been extended once" in m for m in messages_of(twice))
    filed.refresh_from_db()
    assert filed.respond_due.isoformat() == "2026-05-16"


def test_fulfilling_before_verification_is_refused_with_the_reason(officer, ava):
    filed = file()
    response = logged_in(officer).post(url("fulfil", filed), {"fulfil-outcome": PrivacyOutcome.COMPLIED})
    assert response.status_code == 302
    assert "Could not fulfil: Verify the person's identity before fulfilling this request." in messages_of(
        response
    )
    assert Contact.objects.filter(pk=ava.pk).exists()


def test_fulfilling_a_deletion_shows_the_closed_case_and_a_certificate_that_verifies(officer, auditor, ava):
    filed = privacy_verify_manually(request=file(), user=officer, note="Called back.")
    client = logged_in(officer)

    response = client.post(url("fulfil", filed), {"fulfil-outcome": PrivacyOutcome.COMPLIED})

    assert any(
        m.startswith("Fulfilled and closed: Personal information erased") for m in messages_of(response)
    )
    certificate = DeletionCertificate.objects.get(request=filed)
    page = logged_in(auditor).get(url("change", filed)).content.decode()
    assert certificate.digest in page
    assert re.search(r'id="pr-certificate-verifies"[^>]*>yes<', page)
    assert "Complied with in whole" in page
    download = logged_in(auditor).get(url("certificate_json", filed))
    assert (
        hashlib.sha256(download.content).hexdigest()
        == certificate.digest
        == certificate_digest(certificate.body)
    )
    assert download["X-Certificate-SHA256"] == certificate.digest
    assert 'id="pr-fulfil"' not in client.get(url("change", filed)).content.decode()  # nothing left to do


def test_with_a_broker_the_admin_starts_the_erasure_in_the_background(officer, ava, settings, monkeypatch):
    from compliance import tasks

    settings.CELERY_TASK_ALWAYS_EAGER = False
    monkeypatch.setattr(tasks.erase_privacy_request, "delay", lambda *args: None)
    filed = privacy_verify_manually(request=file(), user=officer, note="Called back.")
    client = logged_in(officer)

    response = client.post(url("fulfil", filed), {"fulfil-outcome": PrivacyOutcome.COMPLIED})

    assert any(m.startswith("Erasure started in the background") for m in messages_of(response))
    assert "Erasure running in the background since" in client.get(url("change", filed)).content.decode()


def test_complying_in_part_needs_a_summary_in_the_admin_too(officer):
    filed = privacy_verify_manually(
        request=file(kind=PrivacyRequestKind.KNOW_CATEGORIES), user=officer, note="Called back."
    )
    response = logged_in(officer).post(
        url("fulfil", filed), {"fulfil-outcome": PrivacyOutcome.COMPLIED_IN_PART}
    )
    assert "Could not fulfil: Say what was not done and why." in messages_of(response)


def test_denying_needs_a_basis_and_an_explanation(officer):
    filed = file()
    client = logged_in(officer)

    refused = client.post(url("deny", filed), {"deny-basis": "", "deny-explanation": "No."})
    assert "Could not deny: Choose the basis for the denial." in messages_of(refused)
    unknown = client.post(url("deny", filed), {"deny-basis": "because", "deny-explanation": "No."})
    assert any(
        m.startswith("Could not deny: Basis for the denial: Select a valid choice")
        for m in messages_of(unknown)
    )

    client.post(
        url("deny", filed),
        {"deny-basis": DenialBasis.UNVERIFIABLE, "deny-explanation": "The code never came back."},
    )
    filed.refresh_from_db()
    assert (filed.outcome, filed.denial_basis) == (PrivacyOutcome.DENIED, DenialBasis.UNVERIFIABLE)
    again = client.post(url("deny", filed), {"deny-basis": DenialBasis.OTHER, "deny-explanation": "again"})
    assert "Could not deny: This request is already closed." in messages_of(again)


def test_a_know_package_downloads_only_after_verification_and_each_download_is_recorded(officer, ava):
    filed = file(kind=PrivacyRequestKind.KNOW_SPECIFIC)
    client = logged_in(officer)

    early = client.get(url("package_json", filed))
    assert early.status_code == 302
    assert "No data package: Verify the person's identity before preparing their data." in messages_of(early)

    privacy_verify_manually(request=filed, user=officer, note="Called back.")
    as_json = client.get(url("package_json", filed))
    summary = client.get(url("package_txt", filed))

    assert as_json["Content-Disposition"] == f'attachment; filename="{filed.reference}-data.json"'
    package = as_json.json()
    assert package["pieces"]["messaging"]["contacts"][0]["phone_number"] == AVA
    assert summary.content.decode().startswith(
        f"Your personal information — privacy request {filed.reference}"
    )
    downloads = filed.events.filter(action=Action.PACKAGE_DELIVERED).values_list("detail", flat=True)
    assert [d.split(";")[0] for d in downloads] == [
        "downloaded by officer (JSON)",
        "downloaded by officer (readable summary)",
    ]


def test_a_request_from_a_deletion_has_no_package_buttons(officer):
    filed = file()
    html = logged_in(officer).get(url("change", filed)).content.decode()
    assert 'id="pr-packages"' not in html
    response = logged_in(officer).get(url("package_json", filed))
    assert "No data package: Only right-to-know requests have a data package." in messages_of(response)


# --- Who may see and do what ----------------------------------------------------------------------------


def test_an_auditor_reads_the_case_but_cannot_act_or_file(auditor):
    filed = file(kind=PrivacyRequestKind.KNOW_CATEGORIES)
    history = filed.events.count()
    client = logged_in(auditor)

    assert client.get(CHANGELIST_URL).status_code == 200
    page = client.get(url("change", filed)).content.decode()
    assert "acting on it needs the Compliance officer role" in page
    assert 'id="pr-fulfil"' not in page and 'id="pr-packages"' not in page
    for action, data in [
        ("acknowledge", {"ack-note": "x"}),
        ("send_code", {}),
        ("check_code", {"code-code": "123456"}),
        ("verify", {"verify-note": "x"}),
        ("extend", {"extend-reason": "x", "extend-extra_days": "5"}),
        ("fulfil", {"fulfil-outcome": "complied"}),
        ("deny", {"deny-basis": "other", "deny-explanation": "x"}),
    ]:
        assert client.post(url(action, filed), data).status_code == 403, action
    assert client.get(url("package_json", filed)).status_code == 403
    assert client.get(ADD_URL).status_code == 403
    assert client.post(url("change", filed), {}).status_code == 403
    filed.refresh_from_db()
    assert filed.status == PrivacyRequestStatus.AWAITING_VERIFICATION
    assert filed.events.count() == history


def test_a_composer_sees_no_privacy_requests():
    composer = user_in(roles.COMPOSER, username="composer")
    filed = file()
    client = logged_in(composer)
    assert client.get(CHANGELIST_URL).status_code == 403
    assert client.get(url("change", filed)).status_code == 403
    assert client.get(reverse("admin:compliance_privacyrequest_records")).status_code == 403
    assert client.post(url("fulfil", filed), {"fulfil-outcome": "complied"}).status_code == 403


def test_nobody_deletes_a_request_not_even_a_superuser():
    admin = StaffUserFactory(username="root", is_superuser=True)
    filed = file()
    client = logged_in(admin)
    assert client.get(url("delete", filed)).status_code == 403
    assert client.post(url("delete", filed), {"post": "yes"}).status_code == 403
    assert "delete_selected" not in client.get(CHANGELIST_URL).content.decode()
    assert PrivacyRequest.objects.filter(pk=filed.pk).exists()


def test_actions_are_posts_only(officer):
    filed = file()
    assert logged_in(officer).get(url("fulfil", filed)).status_code == 405
    assert logged_in(officer).get(url("check_code", filed)).status_code == 405


@pytest.mark.parametrize(
    "method, suffix",
    [
        ("post", "fulfil"),
        ("post", "check-code"),
        ("get", "package.json"),
        ("get", "package.txt"),
        ("get", "certificate.json"),
        ("get", "agent-proof"),
    ],
)
@pytest.mark.parametrize("object_id", ["abc", "1.5", "99999999"])
def test_a_case_address_with_an_id_that_is_not_a_request_is_a_404(officer, method, suffix, object_id):
    response = getattr(logged_in(officer), method)(f"{CHANGELIST_URL}{object_id}/{suffix}/")
    assert response.status_code == 404


# --- Time zones -----------------------------------------------------------------------------------------

# 03:00 UTC on 3 March 2026 is still 2 March, 19:00, in California: the day the deadlines count from.
EVENING_IN_CALIFORNIA = datetime(2026, 3, 3, 3, 0, tzinfo=UTC)


def test_the_received_day_and_time_are_shown_in_the_calendar_the_deadlines_count_in(officer, settings):
    assert settings.PRIVACY_TIME_ZONE == "America/Los_Angeles"
    with time_machine.travel(EVENING_IN_CALIFORNIA + timedelta(hours=1), tick=False):
        filed = file(received_at=EVENING_IN_CALIFORNIA)
        client = logged_in(officer)
        queue = client.get(CHANGELIST_URL).content.decode()
        case = client.get(url("change", filed)).content.decode()

    assert ">Received (America/Los_Angeles)</a>" in queue
    row = row_of(queue, filed.reference)
    assert ">2026-03-02</time>" in row and 'title="2026-03-02 19:00 PST"' in row
    assert "Received at (America/Los_Angeles time)" in case
    assert "2026-03-02 19:00 PST" in case
    assert "2026-03-03" not in case.split('id="pr-timeline"')[0]
