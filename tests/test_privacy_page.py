"""The public privacy request page, as a consumer (and an agent, a stranger and a bot) meets it: filing
each kind of request, proving the number is theirs with a WhatsApp code, following the request and
downloading the answer."""

import hashlib
import json
import re
import uuid
from datetime import timedelta
from html import unescape
from io import StringIO

import pytest
import time_machine
from django.core import signing
from django.core.management import call_command
from django.test import Client, override_settings
from django.utils import timezone

from compliance.models import (
    ConsentStatus,
    PrivacyRequest,
    PrivacyRequestEvent,
    PrivacyRequestKind,
    PrivacyRequestStatus,
    VerificationMethod,
)
from compliance.privacy import (
    privacy_request_deny,
    privacy_request_file,
    privacy_request_fulfil,
    privacy_verify_manually,
)
from compliance.privacy_views import privacy_status_path
from compliance.services import consent_status
from messaging.models import Contact, Message
from templates_app.models import MessageTemplate, TemplateStatus
from tests.conftest import cache_clear_own
from tests.factories import ContactFactory, SenderFactory, UserFactory

pytestmark = pytest.mark.django_db

URL = "/privacy/request/"
AVA = "+15550123456"
STRANGER = "+15550987654"
PDF = b"%PDF-1.7\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n"


def unique_ip() -> str:
    # Every test posts from its own address: rate-limit counters (in a shared Redis, too) never collide.
    a, b, c = uuid.uuid4().bytes[:3]
    return f"10.{a}.{b}.{c}"


@pytest.fixture(autouse=True)
def _isolated(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path  # agent proofs land here, not in the project's media/
    cache_clear_own()  # the cover for codes that were never sent lives in the cache
    yield
    cache_clear_own()


@pytest.fixture
def client():
    return Client(REMOTE_ADDR=unique_ip(), HTTP_USER_AGENT="Mozilla/5.0 (tests)")


@pytest.fixture
def sender():
    return SenderFactory(is_default=True)


@pytest.fixture
def code_template(sender, settings):
    return MessageTemplate.objects.create(
        waba_id=sender.waba_id,
        name=settings.PRIVACY_VERIFICATION_TEMPLATE,
        language="en_US",
        category="AUTHENTICATION",
        status=TemplateStatus.APPROVED,
        components=[
            {
                "type": "BODY",
                "text": "*{{1}}* is your verification code. For your security, do not share this code.",
                "example": {"body_text": [["123456"]]},
            }
        ],
    )


@pytest.fixture
def ava(code_template):
    """Someone we know, whom the verification template can reach."""
    return ContactFactory(phone_number=AVA, profile_name="Ava Jones")


def form_data(**overrides) -> dict:
    return {
        "kind": "know_specific",
        "phone_number": "(555) 012-3456",
        "name": "Ava Jones",
        "email": "",
        "details": "",
        "homepage": "",
        **overrides,
    }


def file_request(client, **overrides) -> tuple[PrivacyRequest, str]:
    """File on the page; return the request and its status page's address."""
    response = client.post(URL, form_data(**overrides))
    assert response.status_code == 302, response.content.decode()[:2000]
    location = response["Location"]
    assert location.endswith("?filed=1")
    return PrivacyRequest.objects.latest("id"), location.split("?")[0]


def codes_sent_to(contact) -> list[str]:
    """The verification codes queued to `contact` on WhatsApp, oldest first."""
    codes = []
    for message in Message.objects.filter(contact=contact, direction="outbound").order_by("id"):
        for component in message.content.get("components", []):
            if component["type"] == "body":
                codes.append(component["parameters"][0]["text"])
    return codes


def text_of(response) -> str:
    return re.sub(r"\s+", " ", unescape(response.content.decode()))


# --- The form -------------------------------------------------------------------------------------


def test_the_form_explains_each_kind_and_asks_for_what_each_needs(client):
    response = client.get(URL)

    html = response.content.decode()
    assert response.status_code == 200
    assert response["Cache-Control"].startswith("max-age=0")
    radios = re.findall(r'<input type="radio" name="kind" value="([a-z_]+)"', html)
    assert radios == [
        "know_categories",
        "know_specific",
        "delete",
        "correct",
        "opt_out_sale",
        "limit_sensitive",
    ]
    assert "Give me a copy of my information" in html and "Do not sell or share my information" in html
    # One optional input per detail a correction may change (messaging owns these three).
    for name in ("name", "locale", "timezone"):
        assert f'name="correct_{name}"' in html
    assert 'enctype="multipart/form-data"' in html and 'name="agent_proof"' in html
    assert "I am an authorized agent acting for this person" in html
    assert 'name="csrfmiddlewaretoken"' in html and 'name="homepage"' in html


@pytest.mark.parametrize("kind", [k.value for k in PrivacyRequestKind])
def test_each_kind_can_be_filed_and_followed_on_its_status_page(client, kind):
    extra = {"correct_name": "Ava J. Jones"} if kind == "correct" else {}

    request, status_url = file_request(client, kind=kind, phone_number="+1 555 098 7654", **extra)

    assert (request.kind, request.channel, request.phone_number) == (kind, "web_form", STRANGER)
    assert request.acknowledged_at is not None  # the status page is the receipt
    if kind == "correct":
        assert request.corrections == {"name": "Ava J. Jones"}
    # The address names the request only in signed form: references cannot be guessed into pages.
    assert request.reference not in status_url
    page = client.get(status_url + "?filed=1")
    text = text_of(page)
    assert page.status_code == 200
    assert "We received your request" in text
    assert request.reference in text
    assert (
        f'We will respond by</dt><dd id="respond-by">{request.respond_due:%B} {request.respond_due.day},'
        in text
    )
    if kind in ("opt_out_sale", "limit_sensitive"):
        assert request.status == PrivacyRequestStatus.CLOSED  # no verification, done at once
        assert "Done" in text and "Confirm it's you" not in text
    else:
        assert request.status == PrivacyRequestStatus.AWAITING_VERIFICATION
        assert "Waiting for you to confirm it's you" in text and 'name="code"' in text


def test_an_opt_out_filed_on_the_page_is_in_the_consent_ledger_at_once(client):
    known = ContactFactory(phone_number=AVA)

    request, _ = file_request(client, kind="opt_out_sale")

    assert request.outcome == "complied" and request.is_closed
    assert consent_status(contact_id=known.id, purpose="marketing") == ConsentStatus.REVOKED


def test_an_opt_out_for_a_number_we_never_had_stands_against_a_later_import(client):
    file_request(client, kind="opt_out_sale", phone_number="+1 555 098 7654")

    contact = Contact.objects.get(phone_number=STRANGER)
    assert consent_status(contact_id=contact.id, purpose="marketing") == ConsentStatus.REVOKED


def test_an_invalid_phone_number_is_a_form_error_and_nothing_is_filed(client):
    response = client.post(URL, form_data(phone_number="12"))

    html = response.content.decode()
    assert response.status_code == 400
    assert re.search(r'id="id_phone_number_error">.*is not a valid phone number', html)
    assert 'href="#id_phone_number"' in html  # the error summary links to the field
    assert re.search(r'value="know_specific" id="id_kind_know_specific"[^>]*checked', html)  # choice kept
    assert not PrivacyRequest.objects.exists()


def test_without_a_kind_the_form_asks_for_one(client):
    response = client.post(URL, form_data(kind=""))

    assert response.status_code == 400
    assert "Choose what you are asking for." in response.content.decode()
    assert not PrivacyRequest.objects.exists()


def test_a_correction_needs_the_corrected_value(client):
    response = client.post(URL, form_data(kind="correct"))

    html = response.content.decode()
    assert response.status_code == 400
    assert re.search(r'id="id_correct_name_error">.*Say which detail is wrong', html)
    assert not PrivacyRequest.objects.exists()


def test_an_agent_must_show_proof_of_authority(client):
    response = client.post(URL, form_data(is_agent="on", agent_name="Lee Advocate"))

    html = response.content.decode()
    assert response.status_code == 400
    assert re.search(r'id="id_agent_proof_error">.*signed permission or a power of attorney', html)
    assert not PrivacyRequest.objects.exists()


def test_an_agent_ticking_the_box_must_give_their_name_and_every_mistake_is_listed(client):
    response = client.post(
        URL, form_data(phone_number="12", is_agent="on", agent_proof_note="Letter follows by mail.")
    )

    assert response.status_code == 400
    text = text_of(response)
    assert 'href="#id_agent_name">Enter your name as the person\'s authorized agent.' in text
    assert 'href="#id_phone_number">“12” is not a valid phone number' in text


def test_an_agent_uploads_a_pdf_and_we_keep_it_with_its_fingerprint(client, tmp_path):
    proof = _upload("permission.pdf", PDF, "application/pdf")

    request, _ = file_request(
        client, is_agent="on", agent_name="Lee Advocate", agent_email="lee@agents.example", agent_proof=proof
    )

    assert (request.agent_name, request.agent_email) == ("Lee Advocate", "lee@agents.example")
    assert request.agent_proof.name.endswith("permission.pdf")
    assert request.agent_proof.read() == PDF
    assert request.agent_proof_sha256 == hashlib.sha256(PDF).hexdigest()


@pytest.mark.parametrize(
    "name, content, declared",
    [
        ("proof.pdf", b"#!/bin/sh\necho not a pdf\n", "application/pdf"),  # claims PDF, is not
        ("proof.txt", b"just text", "text/plain"),
    ],
)
def test_a_proof_that_is_not_a_pdf_or_image_is_refused(client, name, content, declared):
    response = client.post(
        URL, form_data(is_agent="on", agent_name="Lee Advocate", agent_proof=_upload(name, content, declared))
    )

    html = response.content.decode()
    assert response.status_code == 400
    assert re.search(r'id="id_agent_proof_error">.*Upload the proof as a PDF, PNG or JPEG file', html)
    assert not PrivacyRequest.objects.exists()


def _upload(name: str, content: bytes, content_type: str):
    from django.core.files.uploadedfile import SimpleUploadedFile

    return SimpleUploadedFile(name, content, content_type=content_type)


def test_agent_details_are_ignored_unless_the_agent_box_is_ticked(client):
    request, _ = file_request(client, agent_name="Changed my mind", agent_email="x@example.com")

    assert (request.agent_name, request.agent_email) == ("", "")


def test_a_post_without_the_csrf_token_is_refused():
    strict = Client(enforce_csrf_checks=True, REMOTE_ADDR=unique_ip())

    refused = strict.post(URL, form_data())

    assert refused.status_code == 403
    assert not PrivacyRequest.objects.exists()
    strict.get(URL)
    accepted = strict.post(URL, form_data(csrfmiddlewaretoken=strict.cookies["csrftoken"].value))
    assert accepted.status_code == 302
    assert PrivacyRequest.objects.count() == 1


@override_settings(PRIVACY_FORM_RATE_LIMIT="2/10m")
def test_too_many_requests_from_one_address_are_refused_for_a_while(client):
    first = client.post(URL, form_data())
    second = client.post(URL, form_data(phone_number="12"))
    third = client.post(URL, form_data(kind="delete"))

    assert (first.status_code, second.status_code, third.status_code) == (302, 400, 429)
    assert 0 < int(third["Retry-After"]) <= 600
    assert "Too many attempts" in third.content.decode()
    assert PrivacyRequest.objects.count() == 1
    assert client.get(URL).status_code == 200  # reading the page is never limited
    other = Client(REMOTE_ADDR=unique_ip())
    assert other.post(URL, form_data(kind="delete")).status_code == 302


def test_a_bot_filling_the_hidden_field_files_nothing(client):
    response = client.post(URL, form_data(homepage="https://spam.example"))

    assert response.status_code == 302 and response["Location"] == URL
    assert not PrivacyRequest.objects.exists()


# --- Verification ---------------------------------------------------------------------------------


def test_a_known_person_gets_a_code_on_whatsapp_and_entering_it_verifies(client, ava):
    request, status_url = file_request(client, kind="delete")

    [code] = codes_sent_to(ava)
    message = Message.objects.get(contact=ava)
    assert (message.template.name, message.purpose) == ("privacy_verification_code", "privacy_request")
    assert re.fullmatch(r"\d{6}", code)

    response = client.post(status_url + "verify/", {"code": code})

    assert response.status_code == 302 and response["Location"] == status_url + "?verified=1"
    request.refresh_from_db()
    assert request.status == PrivacyRequestStatus.VERIFIED
    assert request.verification_method == VerificationMethod.WHATSAPP_CODE
    page = text_of(client.get(response["Location"]))
    assert "you confirmed it's you" in page and 'name="code"' not in page
    # Sending the form again (a double click) just leads back to the page.
    again = client.post(status_url + "verify/", {"code": code})
    assert again.status_code == 302 and again["Location"] == status_url


def test_a_wrong_code_is_refused_and_five_wrong_codes_need_a_new_one(client, ava):
    request, status_url = file_request(client)
    [code] = codes_sent_to(ava)
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"

    first = client.post(status_url + "verify/", {"code": wrong})

    assert first.status_code == 400
    assert "That code is not right." in first.content.decode()
    assert 'aria-invalid="true"' in first.content.decode()
    for _ in range(4):
        client.post(status_url + "verify/", {"code": wrong})
    sixth = client.post(status_url + "verify/", {"code": code})  # even the right one, now
    assert sixth.status_code == 400
    assert "Too many wrong codes. Ask for a new one." in sixth.content.decode()
    request.refresh_from_db()
    assert request.status == PrivacyRequestStatus.AWAITING_VERIFICATION


def test_something_that_is_not_six_digits_is_a_form_error(client, ava):
    _, status_url = file_request(client)

    response = client.post(status_url + "verify/", {"code": "12ab"})

    assert response.status_code == 400
    assert "Enter the 6-digit code from the WhatsApp message." in response.content.decode()


def test_an_expired_code_is_refused_and_a_new_one_works(client, ava, settings):
    request, status_url = file_request(client)
    [old] = codes_sent_to(ava)

    later = timezone.now() + timedelta(minutes=settings.PRIVACY_CODE_TTL_MINUTES + 1)
    with time_machine.travel(later, tick=False):
        expired = client.post(status_url + "verify/", {"code": old})
        resent = client.post(status_url + "new-code/")
        [_, new] = codes_sent_to(ava)
        verified = client.post(status_url + "verify/", {"code": new})

    assert expired.status_code == 400 and "This code has expired." in expired.content.decode()
    assert resent.status_code == 302 and resent["Location"] == status_url + "?code=sent"
    assert verified.status_code == 302
    request.refresh_from_db()
    assert request.status == PrivacyRequestStatus.VERIFIED


def test_a_new_code_must_wait_a_minute(client, ava):
    _, status_url = file_request(client)

    response = client.post(status_url + "new-code/")

    assert response.status_code == 400
    assert "A code was sent less than a minute ago." in response.content.decode()
    assert len(codes_sent_to(ava)) == 1


def test_the_pages_never_tell_whether_we_know_the_number(client, ava):
    """A stranger filing for someone's number must not learn whether that person is our customer:
    whether a code went out or not, the pages say the same and refuse codes the same way."""
    known_request, known_url = file_request(client, phone_number=AVA)
    unknown_request, unknown_url = file_request(client, phone_number=STRANGER)
    assert codes_sent_to(ava) and not Message.objects.exclude(contact=ava).exists()

    def answers(status_url, reference):
        page = text_of(client.get(status_url)).replace(reference, "REF").replace(status_url, "URL")
        page = re.sub(r'name="csrfmiddlewaretoken" value="[^"]+"', "", page)  # masked anew per page
        wrong = [text_of(client.post(status_url + "verify/", {"code": "000000"})) for _ in range(6)]
        resend = client.post(status_url + "new-code/")
        return page, [_error_of(w) for w in wrong], resend.status_code, _error_of(text_of(resend))

    known, unknown = (
        answers(known_url, known_request.reference),
        answers(unknown_url, unknown_request.reference),
    )

    assert known == unknown
    assert known[1] == ["That code is not right."] * 5 + ["Too many wrong codes."]
    assert known[2:] == (400, "A code was sent less than a minute ago.")


def _error_of(text: str) -> str:
    found = re.search(r"There is a problem</h2> <ul> (?:<li[^>]*>)(?:<a [^>]*>)?([^.<]*\.)", text)
    return found.group(1) if found else ""


def test_staff_can_still_verify_someone_no_code_could_reach(client):
    staff = UserFactory(username="privacy-officer")
    request, status_url = file_request(client, phone_number=STRANGER)
    text = text_of(client.get(status_url))
    assert "Our staff will verify your identity another way" in text

    privacy_verify_manually(request=request, user=staff, note="Called back on the number; matched orders.")

    assert "we have confirmed it's you" in text_of(client.get(status_url))


# --- Links ----------------------------------------------------------------------------------------


def test_a_tampered_or_made_up_link_is_a_friendly_404(client):
    request, status_url = file_request(client)
    token = status_url.rstrip("/").rsplit("/", 1)[1]

    tampered = client.get(f"{URL}{token[:-2]}xx/")
    bare = client.get(f"{URL}{request.reference}/")
    other_salt = client.get(f"{URL}{signing.dumps(request.reference)}/")
    verify = client.post(f"{URL}{token[:-2]}xx/verify/", {"code": "123456"})

    for response in (tampered, bare, other_salt, verify):
        assert response.status_code == 404
        assert "This link does not work" in response.content.decode()
    assert request.reference not in tampered.content.decode()


def test_an_old_link_has_expired(client):
    _, status_url = file_request(client)

    with time_machine.travel(timezone.now() + timedelta(days=121)):
        response = client.get(status_url)

    assert response.status_code == 410
    assert "This link has expired" in response.content.decode()


def test_a_link_for_a_request_that_is_gone_is_a_404(client):
    response = client.get(privacy_status_path("PR-NOTHERE"))
    assert response.status_code == 404


# --- The answer -----------------------------------------------------------------------------------


@pytest.fixture
def fulfilled(client, ava):
    """Ava's verified right-to-know request (a copy of the pieces), fulfilled by staff."""
    request, status_url = file_request(client, kind="know_specific")
    client.post(status_url + "verify/", {"code": codes_sent_to(ava)[0]})
    staff = UserFactory(username="privacy-officer")
    privacy_request_fulfil(request=request, user=staff)
    request.refresh_from_db()
    return request, status_url


def test_the_package_cannot_be_downloaded_before_the_request_is_fulfilled(client, ava):
    request, status_url = file_request(client, kind="know_specific")

    for path in ("package.json", "summary.txt"):
        response = client.get(status_url + path)
        assert response.status_code == 404
        assert "Nothing to download" in response.content.decode()
    assert "package.json" not in client.get(status_url).content.decode()
    assert not request.events.filter(action=PrivacyRequestEvent.Action.PACKAGE_DELIVERED).exists()


def test_after_fulfilment_the_person_downloads_their_data_and_each_download_is_recorded(client, fulfilled):
    request, status_url = fulfilled
    prepared = request.events.filter(action=PrivacyRequestEvent.Action.PACKAGE_DELIVERED).count()

    page = text_of(client.get(status_url))
    package = client.get(status_url + "package.json")
    summary = client.get(status_url + "summary.txt")

    assert "Done" in page and 'href="' + status_url + 'package.json"' in page
    assert package.status_code == 200
    assert package["Content-Type"].startswith("application/json")
    assert package["Content-Disposition"] == f'attachment; filename="{request.reference}-data.json"'
    data = json.loads(package.content)
    assert (data["request"], data["phone_number"], data["kind"]) == (request.reference, AVA, "know_specific")
    assert "pieces" in data and data["categories"]
    assert summary.status_code == 200 and summary["Content-Type"].startswith("text/plain")
    assert f"privacy request {request.reference}" in summary.content.decode()
    downloads = request.events.filter(action=PrivacyRequestEvent.Action.PACKAGE_DELIVERED).order_by("id")
    assert downloads.count() == prepared + 2
    for event in downloads[prepared:]:
        assert event.username == "requester"
        assert event.detail.startswith("downloaded by the requester; sha256 ")


def test_the_package_is_available_for_thirty_days(client, fulfilled):
    request, status_url = fulfilled

    with time_machine.travel(request.responded_at + timedelta(days=31)):
        page = text_of(client.get(status_url))
        response = client.get(status_url + "package.json")

    assert response.status_code == 410
    assert "The download period for your information ended" in page


def test_a_denied_request_shows_why_and_offers_no_download(client, ava):
    request, status_url = file_request(client, kind="know_categories")
    privacy_request_deny(
        request=request,
        user=UserFactory(username="privacy-officer"),
        basis="unverifiable",
        explanation="We could not confirm that the number is yours.",
    )

    text = text_of(client.get(status_url))

    assert "Closed: we could not do what you asked" in text
    assert "We could not confirm that the number is yours." in text
    assert client.get(status_url + "package.json").status_code == 404


def ava_erased() -> PrivacyRequest:
    """Ava asks staff by email to delete her information, and they do: every request about her number
    keeps only its record."""
    staff = UserFactory(username="privacy-eraser")
    deletion = privacy_request_file(kind="delete", channel="email", phone_number=AVA)
    privacy_verify_manually(request=deletion, user=staff, note="Called back on the number.")
    return privacy_request_fulfil(request=deletion, user=staff)


def test_after_the_person_is_erased_the_package_is_gone_and_the_page_says_why(client, fulfilled):
    request, status_url = fulfilled
    downloads_before = request.events.filter(action=PrivacyRequestEvent.Action.PACKAGE_DELIVERED).count()

    ava_erased()
    request.refresh_from_db()
    assert request.identity_erased_at is not None and request.phone_number == ""
    page = text_of(client.get(status_url))
    package = client.get(status_url + "package.json")
    summary = client.get(status_url + "summary.txt")

    for response in (package, summary):
        assert response.status_code == 410
        assert response["Content-Type"].startswith("text/html")
        assert "This information has been erased: we no longer hold it." in response.content.decode()
    assert "has been erased" in page and "Done" in page
    assert "package.json" not in page and "summary.txt" not in page
    assert (
        request.events.filter(action=PrivacyRequestEvent.Action.PACKAGE_DELIVERED).count() == downloads_before
    )


def test_a_request_still_waiting_for_its_code_when_the_person_is_erased_offers_nothing_more(client, ava):
    request, status_url = file_request(client, kind="know_categories")
    [code] = codes_sent_to(ava)

    ava_erased()
    history = request.events.count()
    page = text_of(client.get(status_url))
    verify = client.post(status_url + "verify/", {"code": code})
    new_code = client.post(status_url + "new-code/")

    assert "has been erased" in page and "Waiting for you to confirm" not in page
    assert 'name="code"' not in page and "Send me a new code" not in page
    for response in (verify, new_code):
        assert response.status_code == 302 and response["Location"] == status_url
    request.refresh_from_db()
    assert request.status != PrivacyRequestStatus.VERIFIED and request.verified_at is None
    assert request.events.count() == history  # no code sent, none tried
    assert not Message.objects.exists()  # Ava's messages went with her; no new code went out


def test_the_demo_data_lets_the_page_send_codes(client):
    call_command("setup_demo", stdout=StringIO())
    demo_contact = Contact.objects.get(phone_number="+15550102001")

    file_request(client, kind="know_categories", phone_number="+1 555 010 2001")

    [code] = codes_sent_to(demo_contact)
    message = Message.objects.get(contact=demo_contact)
    assert message.template.category == "AUTHENTICATION" and code in message.preview
