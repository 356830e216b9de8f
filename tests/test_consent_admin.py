"""The consent ledger in the admin: read-only for everyone, the lookup and export pages, role access,
and the staff audit trail those pages leave behind."""

import hashlib
import json

import pytest
from django.contrib.auth.models import Group, Permission
from django.urls import reverse

from compliance.audit import PHONE_REMOVED, audit_record
from compliance.models import ConsentExport, ConsentSubject, StaffAuditEntry
from compliance.services import Evidence, consent_record, consent_text_create
from tests.factories import ContactFactory, StaffUserFactory, UserFactory

pytestmark = pytest.mark.django_db

PHONE = "+15550123456"
TEXT_BODY = "Acme may send you offers on WhatsApp. Not a condition of purchase. Reply STOP to stop."
WEB = Evidence(
    ip_address="203.0.113.7", user_agent="Mozilla/5.0 (Auditor test)", page_url="https://shop.example/opt-in/"
)
LEDGER_MODELS = ("consentevent", "consentstate", "consentexport", "staffauditentry")


@pytest.fixture
def events(db):
    consent_text_create(version="2026-03-v1", business_name="Acme", body=TEXT_BODY)
    contact = ContactFactory(phone_number=PHONE)
    opt_in = consent_record(
        contact_id=contact.id,
        phone_number=PHONE,
        name="Ava",
        purpose="marketing",
        action="opt_in",
        source="web_form",
        evidence=WEB,
        text_version="2026-03-v1",
    )
    opt_out = consent_record(
        contact_id=contact.id,
        phone_number=PHONE,
        purpose="marketing",
        action="opt_out",
        source="whatsapp_keyword",
        evidence=Evidence(message_id="wamid.HBgLMTU1NTAxMjM0NTYVAgASGBQzQTdF"),
    )
    return contact, opt_in, opt_out


def member_of(role: str):
    user = StaffUserFactory()
    user.groups.add(Group.objects.get(name=role))
    return user


@pytest.fixture
def auditor_client(client):
    client.force_login(member_of("Auditor"))
    return client


@pytest.fixture
def superuser_client(client):
    client.force_login(UserFactory(username="root", is_staff=True, is_superuser=True))
    return client


def url(name: str, *args) -> str:
    return reverse(f"admin:compliance_{name}", args=args)


def phone_fragments(text: str) -> list[str]:
    return [shape for shape in (PHONE, PHONE[1:], "555-0123456", "0123456", "012-3456") if shape in text]


# --- Roles ----------------------------------------------------------------------------------------


def test_an_auditor_can_open_the_ledger_lookup_and_export_pages(auditor_client, events):
    _, opt_in, _ = events
    for page in [
        url("consentevent_changelist"),
        url("consentevent_change", opt_in.pk),
        url("consentevent_lookup"),
        url("consentevent_export"),
        url("consentstate_changelist"),
        url("consentexport_changelist"),
        url("staffauditentry_changelist"),
    ]:
        assert auditor_client.get(page).status_code == 200, page

    changelist = auditor_client.get(url("consentevent_changelist")).text
    assert f'href="{url("consentevent_lookup")}"' in changelist
    assert f'href="{url("consentevent_export")}"' in changelist
    assert "Add consent event" not in changelist


@pytest.mark.parametrize("client_fixture", ["auditor_client", "superuser_client"])
def test_nobody_can_add_change_or_delete_ledger_records(request, client_fixture, events):
    client = request.getfixturevalue(client_fixture)
    _, opt_in, _ = events
    client.get(url("consentevent_changelist"))  # leaves an audit entry to try to delete
    objects = {
        "consentevent": opt_in.pk,
        "consentstate": opt_in.subject.states.get().pk,
        "staffauditentry": StaffAuditEntry.objects.first().pk,
    }
    for model, pk in objects.items():
        assert client.get(url(f"{model}_add")).status_code == 403, model
        assert client.post(url(f"{model}_change", pk), {"purpose": "utility"}).status_code == 403, model
        assert client.get(url(f"{model}_delete", pk)).status_code == 403, model
        assert client.post(url(f"{model}_delete", pk), {"post": "yes"}).status_code == 403, model
    assert client.get(url("consentexport_add")).status_code == 403
    assert opt_in.__class__.objects.get(pk=opt_in.pk).purpose == "marketing"
    assert StaffAuditEntry.objects.filter(pk=objects["staffauditentry"]).exists()


def test_a_composer_cannot_see_the_ledger(client, events):
    client.force_login(member_of("Composer"))
    for page in [
        url("consentevent_changelist"),
        url("consentevent_lookup"),
        url("consentevent_export"),
        url("consentstate_changelist"),
        url("staffauditentry_changelist"),
    ]:
        assert client.get(page).status_code == 403, page
    assert client.post(url("consentevent_export"), {"format": "jsonl"}).status_code == 403
    assert client.post(url("consentevent_lookup"), {"phone_number": PHONE}).status_code == 403
    assert "Consent events" not in client.get(reverse("admin:index")).text


def test_the_auditor_role_reads_and_exports_but_changes_nothing(db):
    auditor = set(
        Group.objects.get(name="Auditor").permissions.values_list("content_type__app_label", "codename")
    )
    assert {("compliance", "view_consentevent"), ("compliance", "export_consent")} <= auditor
    assert not [codename for _, codename in auditor if codename.startswith(("add_", "change_", "delete_"))]
    officer = set(Group.objects.get(name="Compliance officer").permissions.values_list("codename", flat=True))
    assert {"view_consentevent", "export_consent", "view_consenttext", "add_consenttext"} <= officer


def test_staff_who_may_view_but_not_export_get_no_export(client, events):
    user = StaffUserFactory()
    user.user_permissions.set(Permission.objects.filter(codename="view_consentevent"))
    client.force_login(user)

    assert client.get(url("consentevent_changelist")).status_code == 200
    assert url("consentevent_export") not in client.get(url("consentevent_changelist")).text
    assert client.get(url("consentevent_export")).status_code == 403
    assert client.post(url("consentevent_export"), {"format": "jsonl"}).status_code == 403
    assert not ConsentExport.objects.exists()


# --- The ledger pages -----------------------------------------------------------------------------


def test_an_event_page_shows_the_text_the_decrypted_evidence_and_the_chain(auditor_client, events):
    _, opt_in, _ = events
    page = auditor_client.get(url("consentevent_change", opt_in.pk)).text

    assert TEXT_BODY in page
    assert (
        "203.0.113.7" in page
        and "Mozilla/5.0 (Auditor test)" in page
        and "https://shop.example/opt-in/" in page
    )
    assert "content matches its hash; links to the genesis hash" in page


def test_an_event_of_an_erased_person_shows_erased_evidence(auditor_client, events):
    _, opt_in, _ = events
    ConsentSubject.objects.filter(pk=opt_in.subject_id).update(wrapped_key=None)
    page = auditor_client.get(url("consentevent_change", opt_in.pk)).text

    assert "erased" in page
    assert "203.0.113.7" not in page
    assert TEXT_BODY in page  # the wording is not personal data: it stays


def test_viewing_consent_data_leaves_view_entries(auditor_client, events):
    _, opt_in, _ = events
    auditor_client.get(url("consentevent_changelist"), {"purpose__exact": "marketing"})
    auditor_client.get(url("consentevent_change", opt_in.pk), REMOTE_ADDR="198.51.100.23")
    auditor_client.get(url("consentstate_changelist"), {"q": "+1 (555) 012-3456"})

    entries = list(StaffAuditEntry.objects.filter(action="view").order_by("id"))
    assert [(e.object_type, e.object_id) for e in entries] == [
        ("compliance.consentevent", ""),
        ("compliance.consentevent", str(opt_in.pk)),
        ("compliance.consentstate", ""),
    ]
    assert entries[0].summary == "list; purpose__exact=marketing"
    assert entries[2].summary == f"list; q={PHONE_REMOVED}"  # a number typed into the search box
    assert entries[1].summary == f"event #1 (marketing opt_in), subject {opt_in.subject_id}"
    assert entries[1].ip == "198.51.100.23"
    assert {e.username for e in entries} == {entries[0].username} and entries[0].user_id is not None


# --- Lookup ---------------------------------------------------------------------------------------


def test_a_lookup_shows_how_when_and_with_which_text_a_number_consented(auditor_client, events):
    contact, opt_in, opt_out = events
    response = auditor_client.post(url("consentevent_lookup"), {"phone_number": "(555) 012-3456"})

    page = response.text
    assert response.status_code == 200
    assert f"Contact {contact.id}" in page
    assert f"#{opt_in.sequence}: opt-in, Marketing, via web form" in page
    assert f"#{opt_out.sequence}: opt-out, Marketing, via WhatsApp keyword" in page
    assert TEXT_BODY in page and "2026-03-v1" in page
    for evidence in (
        "203.0.113.7",
        "Mozilla/5.0 (Auditor test)",
        "https://shop.example/opt-in/",
        "wamid.HBgL",
    ):
        assert evidence in page
    assert opt_in.occurred_at.strftime("%Y-%m-%d %H:%M:%S") in page

    entry = StaffAuditEntry.objects.get(action="lookup")
    assert entry.object_type == "compliance.consentsubject"
    assert entry.object_id == str(opt_in.subject_id)
    assert entry.summary == f"consent history of contact {contact.id}: 2 events"
    for stored in StaffAuditEntry.objects.values_list("object_id", "summary"):
        assert not phone_fragments(" ".join(stored))


def test_a_lookup_keeps_the_number_out_of_the_url(auditor_client, events):
    page = auditor_client.get(url("consentevent_lookup")).text
    assert 'method="post"' in page


def test_a_lookup_of_an_unknown_or_invalid_number(auditor_client, events):
    unknown = auditor_client.post(url("consentevent_lookup"), {"phone_number": "+1 555 999 0000"})
    assert "No contact has this number" in unknown.text
    assert StaffAuditEntry.objects.get(action="lookup").summary == "no contact has this number"

    invalid = auditor_client.post(url("consentevent_lookup"), {"phone_number": "not a number"})
    assert "is not a valid phone number" in invalid.text
    assert StaffAuditEntry.objects.filter(action="lookup").count() == 1


def test_a_lookup_after_the_key_was_destroyed_shows_erased_evidence(auditor_client, events):
    contact, _, _ = events
    ConsentSubject.objects.filter(contact_id=contact.id).update(wrapped_key=None)
    page = auditor_client.post(url("consentevent_lookup"), {"phone_number": PHONE}).text

    assert page.count("erased (this person") == 2
    assert "203.0.113.7" not in page
    assert TEXT_BODY in page


# --- Export ---------------------------------------------------------------------------------------


def test_an_admin_export_streams_the_file_and_records_it(auditor_client, events):
    _, _, opt_out = events
    response = auditor_client.post(url("consentevent_export"), {"format": "jsonl", "purpose": ""})

    assert response.status_code == 200 and response.streaming
    assert response["Content-Disposition"].startswith('attachment; filename="consent-ledger-')
    assert response["X-Consent-Export-Rows"] == "2"
    body = b"".join(response.streaming_content)
    assert [json.loads(line)["sequence"] for line in body.splitlines()] == [1, 2]

    record = ConsentExport.objects.get()
    assert record.username == StaffAuditEntry.objects.get(action="export").username != "cli"
    assert record.sha256 == hashlib.sha256(body).hexdigest() and record.row_count == 2 and record.complete
    assert record.head_hash == opt_out.hash

    manifest = auditor_client.get(url("consentexport_manifest", record.pk))
    assert json.loads(manifest.content)["sha256"] == record.sha256
    assert (
        url("consentexport_manifest", record.pk)
        in auditor_client.get(url("consentexport_change", record.pk)).text
    )


def test_an_admin_export_with_filters_and_bad_input(auditor_client, events):
    bad = auditor_client.post(
        url("consentevent_export"), {"format": "jsonl", "since": "2026-03-03", "until": "2026-03-01"}
    )
    assert bad.status_code == 200 and "since is after until" in bad.text
    assert not ConsentExport.objects.exists()

    response = auditor_client.post(url("consentevent_export"), {"format": "csv", "purpose": "utility"})
    body = b"".join(response.streaming_content).decode("utf-8-sig")
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert body.splitlines()[0].startswith("sequence,subject,purpose") and len(body.splitlines()) == 1
    assert ConsentExport.objects.get().filters == {"purpose": "utility"}


# --- The audit trail itself -------------------------------------------------------------------------


def test_the_audit_trail_never_stores_a_phone_number(db):
    entry = audit_record(
        action="view",
        object_type="compliance.consentstate",
        summary="search +1 (555) 012-3456 and 15550123456",
    )
    assert entry.summary == f"search {PHONE_REMOVED} and {PHONE_REMOVED}"
    assert entry.username == "cli"
    # Identifiers that merely contain digits are kept.
    kept = audit_record(
        action="lookup",
        object_type="x",
        summary="subject 12345678-1234-4234-8234-123456789012, event #1234567890",
    )
    assert kept.summary == "subject 12345678-1234-4234-8234-123456789012, event #1234567890"
