"""The privacy request API: a business files the requests people make in its own app, and follows them."""

import uuid
from datetime import date

import pytest
from django.contrib.auth.models import Permission
from django.core.cache import cache
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from compliance.models import ConsentStatus, PrivacyRequest
from compliance.privacy import privacy_request_file
from compliance.services import consent_status
from config.idempotency import cache_key
from messaging.models import Contact
from tests.conftest import cache_clear_own
from tests.factories import ContactFactory

pytestmark = pytest.mark.django_db

URL = "/api/v1/privacy-requests/"
PDF = b"%PDF-1.7\n1 0 obj <<>> endobj\n%%EOF\n"
#: What the answer to filing holds: the acknowledgement and the person's page, nothing about the person.
FILED_FIELDS = {
    "reference",
    "kind",
    "channel",
    "status",
    "received_at",
    "acknowledge_due",
    "acknowledged_at",
    "respond_due",
    "original_respond_due",
    "extended",
    "verification_method",
    "verified_at",
    "responded_at",
    "outcome",
    "status_url",
}
AVA_DETAILS = {
    "kind": "correct",
    "phone_number": "(555) 012-3456",
    "requester_name": "Ava Jones",
    "requester_email": "ava@example.com",
    "details": "My name is spelled wrong.",
    "corrections": {"name": "Ava J. Jones"},
    "agent_name": "Lee Advocate",
    "agent_proof_note": "Signed permission, sent by post.",
}
#: Every piece of AVA_DETAILS that identifies someone, as it could appear in a response.
AVA_PIECES = (
    "+15550123456",
    "5550123456",
    "Ava",
    "ava@example.com",
    "spelled wrong",
    "Lee Advocate",
    "Signed permission",
)


@pytest.fixture(autouse=True)
def _isolated(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    cache_clear_own()
    yield
    cache_clear_own()


def grant(user, *codenames: str) -> None:
    user.user_permissions.add(
        *Permission.objects.filter(content_type__app_label="compliance", codename__in=codenames)
    )


@pytest.fixture
def filer(authed_client, api_user):
    grant(api_user, "add_privacyrequest")
    return authed_client


@pytest.fixture
def reader(authed_client, api_user):
    grant(api_user, "view_privacyrequest")
    return authed_client


def detail_url(reference: str) -> str:
    return f"{URL}{reference}/"


# --- Authentication and permissions ---------------------------------------------------------------


def test_without_a_token_every_endpoint_answers_401(api_client):
    for response in (
        api_client.get(URL),
        api_client.post(URL, {"kind": "delete", "phone_number": "+15550123456"}, format="json"),
        api_client.get(detail_url("PR-ANYTHING")),
    ):
        assert response.status_code == 401
        assert response.json()["code"] == "not_authenticated"
    assert not PrivacyRequest.objects.exists()


def test_each_endpoint_needs_its_permission(authed_client, api_user):
    filing = authed_client.post(URL, {"kind": "delete", "phone_number": "+15550123456"}, format="json")
    listing = authed_client.get(URL)

    assert (filing.status_code, filing.json()["code"]) == (403, "permission_denied")
    assert "compliance.add_privacyrequest" in filing.json()["detail"]
    assert (listing.status_code, listing.json()["code"]) == (403, "permission_denied")
    assert not PrivacyRequest.objects.exists()

    grant(api_user, "add_privacyrequest")  # filing does not let you read other requests
    assert authed_client.post(URL, {"kind": "delete", "phone_number": "+15550123456"}).status_code == 201
    reference = PrivacyRequest.objects.get().reference
    assert authed_client.get(detail_url(reference)).status_code == 403


# --- Filing ---------------------------------------------------------------------------------------


def test_filing_a_request_starts_its_clocks_and_returns_the_persons_status_page(filer, api_user):
    grant(api_user, "view_privacyrequest")
    response = filer.post(
        URL,
        {
            "kind": "know_specific",
            "phone_number": "(555) 012-3456",
            "requester_name": "Ava Jones",
            "requester_email": "ava@example.com",
            "details": "Everything you hold, please.",
        },
        format="json",
    )

    assert response.status_code == 201, response.json()
    body = response.json()
    request = PrivacyRequest.objects.get()
    assert response["Location"] == detail_url(request.reference)
    assert body["reference"] == request.reference
    assert (body["kind"], body["channel"], body["status"]) == (
        "know_specific",
        "api",
        "awaiting_verification",
    )
    assert body["respond_due"] == request.respond_due.isoformat()
    assert body["acknowledge_due"] == request.acknowledge_due.isoformat()
    assert body["received_at"] and body["acknowledged_at"]  # answered on filing: that is the receipt
    assert body["outcome"] is None
    assert request.filed_by == api_user and request.channel == "api"
    assert (request.phone_number, request.requester_name) == ("+15550123456", "Ava Jones")
    # The person's details are read from the detail, which has the history too.
    detail = filer.get(response["Location"]).json()
    assert (detail["phone_number"], detail["requester_email"]) == ("+15550123456", "ava@example.com")
    assert [e["action"] for e in detail["events"]] == ["filed", "acknowledged", "notice_sent"]
    # The status page works for the person, and is not the bare reference.
    assert body["status_url"].startswith("http://testserver/privacy/request/")
    assert request.reference not in body["status_url"]
    page = Client().get(body["status_url"])
    assert page.status_code == 200 and request.reference in page.content.decode()


def test_an_opt_out_through_the_api_is_done_at_once(filer):
    known = ContactFactory(phone_number="+15550123456")

    response = filer.post(URL, {"kind": "opt_out_sale", "phone_number": "+1 555 012 3456"}, format="json")

    body = response.json()
    assert response.status_code == 201
    assert (body["status"], body["outcome"], body["verification_method"]) == (
        "closed",
        "complied",
        "not_required",
    )
    assert consent_status(contact_id=known.id, purpose="marketing") == ConsentStatus.REVOKED


def test_a_correction_with_its_values(filer):
    response = filer.post(
        URL,
        {"kind": "correct", "phone_number": "+15550123456", "corrections": {"name": "Ava J. Jones"}},
        format="json",
    )

    assert response.status_code == 201
    assert PrivacyRequest.objects.get().corrections == {"name": "Ava J. Jones"}


def test_an_agent_uploads_proof_as_multipart(filer):
    response = filer.post(
        URL,
        {
            "kind": "delete",
            "phone_number": "+15550123456",
            "agent_name": "Lee Advocate",
            "agent_email": "lee@agents.example",
            "agent_proof": SimpleUploadedFile("permission.pdf", PDF, content_type="application/pdf"),
        },
        format="multipart",
    )

    assert response.status_code == 201, response.json()
    request = PrivacyRequest.objects.get()
    assert request.agent_name == "Lee Advocate"
    assert request.agent_proof.read() == PDF and request.agent_proof_sha256


@pytest.mark.parametrize(
    "body, code, field",
    [
        ({"kind": "delete", "phone_number": "12"}, "invalid_phone_number", "phone_number"),
        ({"kind": "forget_me", "phone_number": "+15550123456"}, "invalid_kind", "kind"),
        ({"phone_number": "+15550123456"}, "validation_error", "kind"),
        ({"kind": "delete"}, "validation_error", "phone_number"),
        ({"kind": "correct", "phone_number": "+15550123456"}, "corrections_required", "corrections"),
        (
            {"kind": "correct", "phone_number": "+15550123456", "corrections": {"shoe_size": "44"}},
            "unknown_correction_field",
            "corrections",
        ),
        (
            {"kind": "delete", "phone_number": "+15550123456", "agent_name": "Lee Advocate"},
            "agent_proof_required",
            "agent_proof",
        ),
        (
            {"kind": "delete", "phone_number": "+15550123456", "requester_email": "nope"},
            "validation_error",
            "requester_email",
        ),
        (
            {"kind": "delete", "phone_number": "+15550123456", "corrections": "name=Ava"},
            "validation_error",
            "corrections",
        ),
    ],
)
def test_every_refusal_says_why_with_a_code(filer, body, code, field):
    response = filer.post(URL, body, format="json")

    assert response.status_code == 400
    data = response.json()
    assert data["code"] == code
    assert field in data["errors"] and data["detail"]
    assert not PrivacyRequest.objects.exists()


def test_a_proof_that_is_not_a_pdf_or_image_is_refused(filer):
    response = filer.post(
        URL,
        {
            "kind": "delete",
            "phone_number": "+15550123456",
            "agent_name": "Lee Advocate",
            "agent_proof": SimpleUploadedFile(
                "proof.exe", b"MZ\x90\x00", content_type="application/x-msdownload"
            ),
        },
        format="multipart",
    )

    assert response.status_code == 400
    assert response.json()["code"] == "agent_proof_type"
    assert not PrivacyRequest.objects.exists()


def test_a_retried_post_with_the_same_idempotency_key_files_once(filer):
    key = str(uuid.uuid4())
    body = {"kind": "delete", "phone_number": "+15550123456"}

    first = filer.post(URL, body, format="json", HTTP_IDEMPOTENCY_KEY=key)
    again = filer.post(URL, body, format="json", HTTP_IDEMPOTENCY_KEY=key)

    assert first.status_code == again.status_code == 201
    assert again["Idempotent-Replayed"] == "true"
    assert again.json()["reference"] == first.json()["reference"]
    assert PrivacyRequest.objects.count() == 1


def test_the_answer_to_filing_names_nobody_so_the_stored_replay_holds_no_personal_data(filer, api_user):
    """The 201 answer is kept 24 hours for replays: it must not become a copy of the person's details."""
    key = str(uuid.uuid4())

    first = filer.post(URL, AVA_DETAILS, format="json", HTTP_IDEMPOTENCY_KEY=key)
    again = filer.post(URL, AVA_DETAILS, format="json", HTTP_IDEMPOTENCY_KEY=key)

    assert first.status_code == again.status_code == 201, first.json()
    assert set(first.json()) == FILED_FIELDS
    assert again.json() == first.json()  # the replay hands back the status page too
    stored = cache.get(cache_key("compliance:privacy-requests", api_user.pk, key))
    assert stored["body"] == first.json()
    for answer in (first.content.decode(), again.content.decode(), repr(stored)):
        for piece in AVA_PIECES:
            assert piece not in answer
    assert PrivacyRequest.objects.get().corrections == {"name": "Ava J. Jones"}


# --- Reading --------------------------------------------------------------------------------------


@pytest.fixture
def on_file():
    """Three requests: an open deletion, an open right-to-know, and a closed opt-out."""
    Contact.objects.create(phone_number="+15550100300")
    filed = [
        privacy_request_file(kind=kind, channel="email", phone_number=phone)
        for kind, phone in (
            ("delete", "+15550100100"),
            ("know_categories", "+15550100200"),
            ("opt_out_sale", "+15550100300"),
        )
    ]
    return {request.kind: request for request in filed}


def test_the_list_filters_by_status_kind_and_due_date(reader, on_file):
    everything = reader.get(URL).json()
    open_ones = reader.get(URL, {"status": "awaiting_verification"}).json()
    deletions = reader.get(URL, {"kind": "delete"}).json()
    due_soon = reader.get(URL, {"due_before": on_file["opt_out_sale"].respond_due.isoformat()}).json()
    due_later = reader.get(URL, {"due_before": date(2999, 1, 1).isoformat()}).json()

    assert everything["count"] == 3
    # The most urgent first: an opt-out is due in 15 business days, the others in 45 days.
    assert everything["results"][0]["reference"] == on_file["opt_out_sale"].reference
    assert {r["reference"] for r in open_ones["results"]} == {
        on_file["delete"].reference,
        on_file["know_categories"].reference,
    }
    assert [r["kind"] for r in deletions["results"]] == ["delete"]
    assert due_soon["count"] == 0  # strictly before its due date
    assert due_later["count"] == 3
    assert "events" not in everything["results"][0]


def test_the_persons_status_page_is_never_listed_or_shown_to_readers(reader, api_user, on_file):
    """Whoever holds a status link can verify the request and download the person's data: readers of
    the API (view permission) never get one, only the caller filing the request, once."""
    grant(api_user, "add_privacyrequest")
    filed = reader.post(URL, {"kind": "know_specific", "phone_number": "+15550100400"}, format="json").json()
    token = filed["status_url"].rstrip("/").rsplit("/", 1)[1]

    listing = reader.get(URL)
    details = [reader.get(detail_url(r["reference"])) for r in listing.json()["results"]]

    assert listing.json()["count"] == 4
    for response in (listing, *details):
        assert response.status_code == 200
        assert "status_url" not in response.content.decode()
        assert token not in response.content.decode()
        assert "/privacy/request/" not in response.content.decode()


@pytest.mark.parametrize(
    "params, code",
    [
        ({"status": "open"}, "invalid_status"),
        ({"kind": "nope"}, "invalid_kind"),
        ({"due_before": "soon"}, "invalid_date"),
    ],
)
def test_bad_filters_are_refused_with_a_code(reader, params, code):
    response = reader.get(URL, params)

    assert response.status_code == 400
    assert response.json()["code"] == code


def test_one_request_with_its_history(reader, on_file):
    request = on_file["opt_out_sale"]

    response = reader.get(detail_url(request.reference.lower()))

    assert response.status_code == 200
    body = response.json()
    assert (body["reference"], body["status"], body["outcome"]) == (request.reference, "closed", "complied")
    assert body["acknowledge_due"] is None  # opt-outs have no acknowledgement clock
    assert [e["action"] for e in body["events"]] == ["filed", "opted_out", "closed"]
    assert all(e["at"] and "username" in e for e in body["events"])


def test_an_unknown_reference_is_404_with_a_code(reader):
    response = reader.get(detail_url("PR-NOTHERE"))

    assert response.status_code == 404
    assert response.json()["code"] == "not_found"
