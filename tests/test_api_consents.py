"""The consent API: external sites record opt-ins and opt-outs with evidence; auditors read histories."""

from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.core.cache import cache
from django.utils import timezone
from rest_framework.pagination import PageNumberPagination

from compliance.api.views import _fingerprint, idempotency_cache_key
from compliance.gate import MessageFacts, gate_check
from compliance.ledger import GENESIS_HASH, ledger_verify
from compliance.models import ConsentEvent, ConsentSubject, ConsentText, StaffAuditEntry
from compliance.services import (
    Evidence,
    consent_evidence,
    consent_opt_out_everywhere,
    consent_status,
    consent_text_create,
)
from compliance.signals import double_opt_in_requested
from messaging.models import Contact
from messaging.services import api_token_create
from tests.conftest import cache_clear_own
from tests.factories import ContactFactory, UserFactory

pytestmark = pytest.mark.django_db

URL = "/api/v1/consents/"
WORDING = "Acme may send you offers on WhatsApp. Not a condition of purchase. Reply STOP to stop."
OPT_IN = {
    "phone_number": "(555) 012-3456",
    "purpose": "marketing",
    "action": "opt_in",
    "consent_text_version": "v1",
    "ip_address": "203.0.113.7",
    "user_agent": "Mozilla/5.0",
    "page_url": "https://shop.example/checkout/",
    "name": "Ava",
}


def history_url(contact_id: int) -> str:
    return f"/api/v1/contacts/{contact_id}/consents/"


@pytest.fixture(autouse=True)
def _empty_cache():
    cache_clear_own()
    yield
    cache_clear_own()


@pytest.fixture
def text():
    return consent_text_create(version="v1", business_name="Acme", body=WORDING)


def grant(user, *codenames: str) -> None:
    user.user_permissions.add(
        *Permission.objects.filter(content_type__app_label="compliance", codename__in=codenames)
    )


@pytest.fixture
def writer(authed_client, api_user, text):
    grant(api_user, "add_consentevent")
    return authed_client


@pytest.fixture
def auditor(authed_client, api_user, text):
    grant(api_user, "add_consentevent", "view_consentevent")
    return authed_client


def drop(*fields: str) -> dict:
    return {k: v for k, v in OPT_IN.items() if k not in fields}


def post(client, changes=None, *, without=(), **headers):
    """POST OPT_IN with `changes` applied and the `without` fields left out."""
    return client.post(URL, {**drop(*without), **(changes or {})}, format="json", headers=headers)


# --- Recording ------------------------------------------------------------------------------------


def test_an_opt_in_creates_the_contact_and_a_ledger_event_with_evidence(writer, text):
    response = post(writer)

    assert response.status_code == 201, response.json()
    body = response.json()
    contact = Contact.objects.get()
    assert (contact.phone_number, contact.profile_name) == ("+15550123456", "Ava")
    event = ConsentEvent.objects.select_related("subject").get()
    assert body == {
        "id": event.id,
        "sequence": 1,
        "contact_id": contact.id,
        "purpose": "marketing",
        "action": "opt_in",
        "source": "api",
        "awaiting_confirmation": False,
        "text_version": "v1",
        "text_sha256": text.sha256,
        "occurred_at": body["occurred_at"],
        "recorded_at": body["recorded_at"],
        "hash": event.hash,
        "prev_hash": GENESIS_HASH,
        "status": "granted",
    }
    assert "evidence" not in body  # recording does not need to read evidence back
    assert consent_evidence(event) == {
        "phone_number": "+15550123456",
        "name": "Ava",
        "ip_address": "203.0.113.7",
        "user_agent": "Mozilla/5.0",
        "page_url": "https://shop.example/checkout/",
        "message_id": "",
        "reason": "",
    }
    assert consent_status(contact_id=contact.id, purpose="marketing") == "granted"
    assert ledger_verify().ok


def test_an_existing_contact_is_reused_whatever_the_number_format(writer):
    contact = ContactFactory(phone_number="+15550123456", profile_name="Original")
    response = post(writer, {"phone_number": "+1-555-012-3456", "name": "Someone else"})
    assert response.json()["contact_id"] == contact.id
    assert Contact.objects.get().profile_name == "Original"


def test_the_exact_wording_can_be_sent_instead_of_a_version(writer, text):
    known = post(writer, {"consent_text": WORDING}, without=("consent_text_version",))
    assert known.json()["text_version"] == "v1"

    wording = "Get deals from Shop on WhatsApp. Msg & data rates may apply. Reply STOP to opt out."
    first = post(writer, {"purpose": "utility", "consent_text": wording}, without=("consent_text_version",))
    assert first.status_code == 201, first.json()
    stored = ConsentText.objects.get(version=first.json()["text_version"])
    assert stored.body == wording and not stored.is_current
    assert stored.business_name == "shop.example"
    assert first.json()["text_sha256"] == stored.sha256

    again = post(
        writer, {"purpose": "authentication", "consent_text": wording}, without=("consent_text_version",)
    )
    assert again.json()["text_version"] == stored.version
    assert ConsentText.objects.count() == 2


def test_an_opt_out_needs_no_wording_and_takes_effect_at_once(writer):
    contact_id = post(writer).json()["contact_id"]
    facts = MessageFacts(
        contact_id=contact_id,
        phone_number="+15550123456",
        at=timezone.now(),
        kind="template",
        template_category="MARKETING",
        template_status="APPROVED",
        timezone="America/New_York",
    )
    assert gate_check(facts).code != "opted_out"

    response = post(writer, {"action": "opt_out"}, without=("consent_text_version",))

    assert response.status_code == 201, response.json()
    body = response.json()
    assert (body["action"], body["status"], body["text_version"]) == ("opt_out", "revoked", "")
    assert consent_status(contact_id=contact_id, purpose="marketing") == "revoked"
    decision = gate_check(facts)
    assert (decision.verdict, decision.code) == ("deny", "opted_out")


def test_occurred_at_is_kept_as_sent(writer):
    when = timezone.now().replace(microsecond=0) - timedelta(days=30)
    response = post(writer, {"occurred_at": when.isoformat()})
    event = ConsentEvent.objects.get()
    assert event.occurred_at == when
    assert event.recorded_at > when
    assert response.json()["occurred_at"].startswith(when.strftime("%Y-%m-%dT%H:%M:%S"))


def test_web_form_and_import_sources_need_their_own_evidence(writer):
    web = post(
        writer,
        {"source": "web_form"},
        without=(
            "user_agent",
            "page_url",
        ),
    )
    assert web.status_code == 400
    assert web.json()["code"] == "evidence_required"
    assert set(web.json()["errors"]) == {"user_agent", "page_url"}

    imported = post(writer, {"source": "import"})
    assert imported.json()["code"] == "evidence_required"
    assert set(imported.json()["errors"]) == {"reason"}

    ok = post(writer, {"source": "import", "reason": "Loyalty list exported 2025-05-01, paper forms"})
    assert ok.status_code == 201, ok.json()
    assert ok.json()["source"] == "import"
    assert consent_evidence(ConsentEvent.objects.get())["reason"].startswith("Loyalty list")


def test_double_opt_in_leaves_web_form_consent_pending_and_asks_for_confirmation(
    writer, settings, django_capture_on_commit_callbacks
):
    settings.CONSENT_DOUBLE_OPT_IN = True
    requested = []

    def receiver(sender, contact_id, purposes, **kwargs):
        requested.append((contact_id, purposes))

    double_opt_in_requested.connect(receiver)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            web = post(writer, {"source": "web_form"})
        with django_capture_on_commit_callbacks(execute=True):
            api = post(writer, {"purpose": "utility"})
    finally:
        double_opt_in_requested.disconnect(receiver)

    assert (web.json()["status"], web.json()["awaiting_confirmation"]) == ("pending", True)
    assert (api.json()["status"], api.json()["awaiting_confirmation"]) == ("granted", False)
    assert requested == [(web.json()["contact_id"], ["marketing"])]


# --- Refusals -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "without", "code", "fields"),
    [
        ({"phone_number": "call me maybe"}, (), "invalid_phone_number", {"phone_number"}),
        ({"phone_number": ""}, (), "validation_error", {"phone_number"}),
        ({}, ("phone_number",), "validation_error", {"phone_number"}),
        ({}, ("consent_text_version",), "consent_text_required", {"consent_text"}),
        ({"consent_text_version": "v9"}, (), "unknown_consent_text", {"consent_text_version"}),
        ({}, ("ip_address",), "evidence_required", {"ip_address"}),
        ({"ip_address": "203.0.113.999"}, (), "validation_error", {"ip_address"}),
        ({"page_url": "not a url"}, (), "validation_error", {"page_url"}),
        ({"purpose": "lottery"}, (), "validation_error", {"purpose"}),
        ({"action": "confirm"}, (), "validation_error", {"action"}),
        ({"source": "staff"}, (), "validation_error", {"source"}),
        ({"consent_text": WORDING}, (), "validation_error", {"consent_text_version"}),
        ({"consent_text": "   "}, ("consent_text_version",), "validation_error", {"consent_text"}),
        ({"occurred_at": "yesterday-ish"}, (), "validation_error", {"occurred_at"}),
        (
            {"phone_number": "nope", "purpose": "lottery"},
            (),
            "invalid_phone_number",
            {"phone_number", "purpose"},
        ),
    ],
)
def test_invalid_requests_get_a_specific_code_and_errors_per_field(writer, changes, without, code, fields):
    response = post(writer, changes, without=without)

    assert response.status_code == 400
    body = response.json()
    assert body["code"] == code
    assert set(body["errors"]) == fields
    assert body["detail"]
    assert not ConsentEvent.objects.exists()
    assert not Contact.objects.exists()  # nothing half-done: the contact is rolled back too


@pytest.mark.parametrize(
    ("delta", "fragment"), [(timedelta(hours=1), "future"), (timedelta(days=-800), "two years")]
)
def test_occurred_at_must_be_recent_and_not_in_the_future(writer, delta, fragment):
    response = post(writer, {"occurred_at": (timezone.now() + delta).isoformat()})
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_occurred_at"
    assert fragment in response.json()["errors"]["occurred_at"][0]


def test_a_back_dated_opt_in_cannot_undo_a_later_opt_out(writer):
    contact_id = post(writer).json()["contact_id"]
    consent_opt_out_everywhere(
        contact_id=contact_id,
        phone_number="+15550123456",
        source="whatsapp_keyword",
        evidence=Evidence(message_id="wamid.STOP"),
    )
    stale = post(writer, {"occurred_at": (timezone.now() - timedelta(hours=1)).isoformat()})
    assert stale.status_code == 400
    assert stale.json()["code"] == "opt_in_predates_opt_out"
    assert "occurred_at" in stale.json()["errors"]
    assert consent_status(contact_id=contact_id, purpose="marketing") == "revoked"

    fresh = post(writer)
    assert fresh.json()["status"] == "granted"


@pytest.mark.parametrize("body", [["not", "an", "object"], "just text", {}])
def test_malformed_bodies_are_a_400_never_a_500(writer, body):
    response = writer.post(URL, body, format="json")
    assert response.status_code == 400
    assert response.json()["code"] == "validation_error"


def test_malformed_json_is_a_400(writer):
    response = writer.generic("POST", URL, "{not json", content_type="application/json")
    assert response.status_code == 400
    assert response.json()["code"] == "parse_error"


# --- Idempotency ----------------------------------------------------------------------------------


def test_a_repeated_request_with_the_same_key_returns_the_original_response(writer):
    first = post(writer, **{"Idempotency-Key": "order-1001"})
    # The same body, written with its keys in another order.
    again = writer.post(
        URL, dict(reversed(OPT_IN.items())), format="json", headers={"Idempotency-Key": "order-1001"}
    )

    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first
    assert ConsentEvent.objects.count() == 1


def test_the_same_key_with_a_different_body_is_a_conflict(writer):
    post(writer, **{"Idempotency-Key": "order-1001"})
    response = post(writer, {"purpose": "utility"}, **{"Idempotency-Key": "order-1001"})
    assert response.status_code == 409
    assert response.json()["code"] == "idempotency_conflict"
    assert ConsentEvent.objects.count() == 1


def test_different_keys_record_separate_events(writer):
    post(writer, **{"Idempotency-Key": "a"})
    post(writer, **{"Idempotency-Key": "b"})
    assert ConsentEvent.objects.count() == 2


def test_a_failed_request_does_not_use_up_its_key(writer):
    refused = post(writer, without=("ip_address",), **{"Idempotency-Key": "retry-me"})
    assert refused.status_code == 400
    accepted = post(writer, **{"Idempotency-Key": "retry-me"})
    assert accepted.status_code == 201


def test_a_replay_during_processing_is_told_to_wait(writer, api_user):
    cache.add(idempotency_cache_key(api_user.pk, "busy"), {"fingerprint": _fingerprint(OPT_IN), "body": None})
    busy = post(writer, **{"Idempotency-Key": "busy"})
    assert busy.status_code == 409
    assert busy.json()["code"] == "idempotency_in_progress"


def test_keys_belong_to_one_api_user(writer, api_client, text):
    post(writer, **{"Idempotency-Key": "shared"})
    other = UserFactory(username="other-site")
    grant(other, "add_consentevent")
    _, token = api_token_create(user=other)
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    response = post(api_client, {"phone_number": "+15550123499"}, **{"Idempotency-Key": "shared"})
    assert response.status_code == 201
    assert "Idempotent-Replayed" not in response
    assert ConsentEvent.objects.count() == 2


@pytest.mark.parametrize("key", ["", "   ", "k" * 256])
def test_an_unusable_idempotency_key_is_refused(writer, key):
    response = post(writer, **{"Idempotency-Key": key})
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_idempotency_key"
    assert not ConsentEvent.objects.exists()


# --- Permissions ----------------------------------------------------------------------------------


def test_requests_without_a_token_are_refused(api_client, text):
    for response in (
        api_client.post(URL, OPT_IN, format="json"),
        api_client.get(URL),
        api_client.get(history_url(1)),
    ):
        assert response.status_code == 401
        assert response.json()["code"] == "not_authenticated"


def test_recording_needs_the_add_permission(authed_client, text):
    response = post(authed_client)
    assert response.status_code == 403
    assert response.json()["code"] == "permission_denied"
    assert "compliance.add_consentevent" in response.json()["detail"]
    assert not ConsentEvent.objects.exists() and not Contact.objects.exists()


def test_reading_needs_the_view_permission_even_for_writers(writer):
    contact_id = post(writer).json()["contact_id"]
    for response in (writer.get(history_url(contact_id)), writer.get(URL)):
        assert response.status_code == 403
        assert response.json()["code"] == "permission_denied"
        assert "+15550123456" not in response.text and "203.0.113.7" not in response.text


def test_readers_cannot_record(authed_client, api_user, text):
    grant(api_user, "view_consentevent")
    assert post(authed_client).json()["code"] == "permission_denied"


def test_a_superuser_may_do_both(api_client, text):
    _, token = api_token_create(user=UserFactory(username="root", is_superuser=True))
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    contact_id = post(api_client).json()["contact_id"]
    assert api_client.get(history_url(contact_id)).status_code == 200


# --- Reading --------------------------------------------------------------------------------------


def test_a_persons_history_is_oldest_first_with_the_status_each_event_led_to(auditor):
    contact_id = post(auditor).json()["contact_id"]
    post(auditor, {"action": "opt_out"}, without=("consent_text_version",))
    post(auditor, {"purpose": "utility", "ip_address": "2001:db8::1"})
    post(auditor, {"ip_address": "198.51.100.4"})
    ContactFactory()  # someone else's history stays out
    post(auditor, {"phone_number": "+15550999999"})

    response = auditor.get(history_url(contact_id))

    assert response.status_code == 200
    events = response.json()
    assert [(e["sequence"], e["purpose"], e["action"], e["status"]) for e in events] == [
        (1, "marketing", "opt_in", "granted"),
        (2, "marketing", "opt_out", "revoked"),
        (3, "utility", "opt_in", "granted"),
        (4, "marketing", "opt_in", "granted"),
    ]
    assert {e["contact_id"] for e in events} == {contact_id}
    assert events[0]["evidence"] == {
        "phone_number": "+15550123456",
        "name": "Ava",
        "ip_address": "203.0.113.7",
        "user_agent": "Mozilla/5.0",
        "page_url": "https://shop.example/checkout/",
        "message_id": "",
        "reason": "",
        "staff_user_id": None,
    }
    assert events[2]["evidence"]["ip_address"] == "2001:db8::1"
    assert events[1]["prev_hash"] == events[0]["hash"]


def test_reading_evidence_is_audited_without_the_phone_number(auditor, api_user):
    contact_id = post(auditor).json()["contact_id"]
    auditor.get(history_url(contact_id))
    auditor.get(URL, {"phone_number": "+15550123456"})
    entries = StaffAuditEntry.objects.order_by("id")
    assert [(e.action, e.object_id, e.user_id) for e in entries] == [
        ("view", str(contact_id), api_user.id),
        ("view", str(contact_id), api_user.id),
    ]
    assert all("555" not in e.summary for e in entries)


def test_a_contact_without_events_has_an_empty_history(auditor):
    contact = ContactFactory()
    response = auditor.get(history_url(contact.id))
    assert (response.status_code, response.json()) == (200, [])


def test_an_unknown_contact_is_a_404(auditor):
    response = auditor.get(history_url(999_999))
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"


def test_erased_evidence_reads_as_null(auditor):
    contact_id = post(auditor).json()["contact_id"]
    ConsentSubject.objects.filter(contact_id=contact_id).update(wrapped_key=None)
    events = auditor.get(history_url(contact_id)).json()
    assert events[0]["evidence"] is None
    assert events[0]["hash"]


def test_staff_evidence_shows_the_staff_user(auditor):
    contact = ContactFactory()
    consent_opt_out_everywhere(
        contact_id=contact.id,
        phone_number=contact.phone_number,
        source="staff",
        evidence=Evidence(staff_user_id=42, reason="Asked by phone"),
    )
    events = auditor.get(history_url(contact.id)).json()
    assert [e["evidence"]["staff_user_id"] for e in events] == [42, 42, 42]
    assert events[0]["evidence"]["reason"] == "Asked by phone"
    assert events[0]["source"] == "staff"


def test_the_list_filters_by_phone_number_in_any_format_and_purpose(auditor):
    post(auditor)
    post(auditor, {"purpose": "utility"})
    post(auditor, {"phone_number": "+15550999999"})

    by_phone = auditor.get(URL, {"phone_number": "555.012.3456"}).json()
    assert by_phone["count"] == 2
    assert {e["evidence"]["phone_number"] for e in by_phone["results"]} == {"+15550123456"}

    both = auditor.get(URL, {"phone_number": "+1 555 012 3456", "purpose": "utility"}).json()
    assert [e["purpose"] for e in both["results"]] == ["utility"]

    everyone = auditor.get(URL).json()
    assert [e["sequence"] for e in everyone["results"]] == [1, 2, 3]

    unknown = auditor.get(URL, {"phone_number": "+15550000001"}).json()
    assert unknown["count"] == 0


def test_the_list_refuses_bad_filters(auditor):
    bad_phone = auditor.get(URL, {"phone_number": "nope"})
    assert (bad_phone.status_code, bad_phone.json()["code"]) == (400, "invalid_phone_number")
    bad_purpose = auditor.get(URL, {"purpose": "lottery"})
    assert (bad_purpose.status_code, bad_purpose.json()["code"]) == (400, "invalid_purpose")


def test_the_list_is_paginated_and_statuses_account_for_earlier_pages(auditor, monkeypatch):
    monkeypatch.setattr(PageNumberPagination, "page_size", 2)
    post(auditor)
    post(auditor, {"action": "opt_out"}, without=("consent_text_version",))
    post(auditor, {"purpose": "utility"})

    first = auditor.get(URL).json()
    assert first["count"] == 3 and len(first["results"]) == 2 and first["next"]
    second = auditor.get(first["next"]).json()
    assert [(e["sequence"], e["status"]) for e in second["results"]] == [(3, "granted")]
    assert second["previous"]


def test_a_page_is_read_with_a_bounded_number_of_queries(auditor, django_assert_max_num_queries):
    for n in range(10):
        post(auditor, {"phone_number": f"+1555077{n:04d}"})
        post(auditor, {"phone_number": f"+1555077{n:04d}", "purpose": "utility"})
    # token, permissions (2), count, page, status replay, audit entry: none per event.
    with django_assert_max_num_queries(8):
        response = auditor.get(URL)
    assert len(response.json()["results"]) == 20


# --- Schema ---------------------------------------------------------------------------------------


def test_the_openapi_schema_documents_the_consent_api(client):
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    paths = schema["paths"]
    assert {"get", "post"} <= set(paths["/api/v1/consents/"])
    assert "get" in paths["/api/v1/contacts/{contact_id}/consents/"]

    create = paths["/api/v1/consents/"]["post"]
    assert {"201", "400", "401", "403", "409"} <= set(create["responses"])
    assert any(p["name"] == "Idempotency-Key" and p["in"] == "header" for p in create["parameters"])
    assert create["responses"]["400"]["content"]["application/json"]["schema"]["$ref"].endswith("/ApiError")
    for code in (
        "invalid_phone_number",
        "consent_text_required",
        "evidence_required",
        "unknown_consent_text",
    ):
        assert code in create["description"]

    components = schema["components"]["schemas"]
    assert {"code", "detail", "errors"} <= set(components["ApiError"]["properties"])
    assert {"phone_number", "purpose", "action", "consent_text", "consent_text_version"} <= set(
        components["ConsentCreate"]["properties"]
    )
    assert {"hash", "prev_hash", "status", "evidence"} <= set(components["ConsentEvent"]["properties"])
    history = paths["/api/v1/contacts/{contact_id}/consents/"]["get"]["responses"]
    assert {"200", "403", "404"} <= set(history)
