"""The consent ledger: evidence required, append-only, hash-chained, encrypted per person."""

import importlib
from types import SimpleNamespace

import pytest
from django.apps import apps
from django.core.exceptions import ValidationError
from django.db import DatabaseError, connection, transaction

from compliance import crypto
from compliance.ledger import (
    GENESIS_HASH,
    content_export_line,
    event_content,
    event_export_line,
    ledger_verify,
)
from compliance.models import ConsentEvent, ConsentState, ConsentStatus, ConsentSubject, LedgerImmutableError
from compliance.services import (
    Evidence,
    consent_confirm_pending,
    consent_evidence,
    consent_opt_out_everywhere,
    consent_projection_rebuild,
    consent_record,
    consent_status,
    consent_text_create,
)
from tests.factories import ContactFactory

pytestmark = pytest.mark.django_db

WEB = Evidence(ip_address="203.0.113.7", user_agent="Mozilla/5.0", page_url="https://shop.example/opt-in/")


@pytest.fixture
def text():
    return consent_text_create(
        version="v1",
        business_name="Acme",
        body="Acme may send you offers on WhatsApp. Not a condition of purchase. Reply STOP to stop.",
    )


@pytest.fixture
def contact():
    return ContactFactory(phone_number="+15550123456", profile_name="Ava")


def opt_in(contact, purpose="marketing", **kwargs):
    return consent_record(
        contact_id=contact.id,
        phone_number=contact.phone_number,
        name="Ava",
        purpose=purpose,
        action="opt_in",
        source=kwargs.pop("source", "web_form"),
        evidence=kwargs.pop("evidence", WEB),
        text_version=kwargs.pop("text_version", "v1"),
        **kwargs,
    )


def test_an_opt_in_is_recorded_with_its_text_and_encrypted_evidence(text, contact):
    event = opt_in(contact)
    assert (event.sequence, event.prev_hash) == (1, GENESIS_HASH)
    assert event.text_version == "v1" and event.text_sha256 == text.sha256
    assert "203.0.113.7" not in event.evidence_ciphertext and "+1555" not in event.evidence_ciphertext
    evidence = consent_evidence(event)
    assert evidence["phone_number"] == "+15550123456"
    assert evidence["ip_address"] == "203.0.113.7"
    assert evidence["page_url"] == "https://shop.example/opt-in/"
    assert consent_status(contact_id=contact.id, purpose="marketing") == ConsentStatus.GRANTED
    assert consent_status(contact_id=contact.id, purpose="utility") is None


@pytest.mark.parametrize(
    ("kwargs", "field", "code"),
    [
        ({"text_version": ""}, "text_version", "consent_text_required"),
        ({"text_version": "v9"}, "text_version", "unknown_consent_text"),
        ({"evidence": Evidence(ip_address="203.0.113.7")}, "evidence", "evidence_required"),
        ({"source": "staff", "evidence": Evidence(staff_user_id=1)}, "evidence", "evidence_required"),
        ({"source": "carrier_pigeon"}, "source", "invalid_source"),
        ({"purpose": "lottery"}, "purpose", "invalid_purpose"),
    ],
)
def test_a_consent_without_text_source_or_evidence_is_refused(text, contact, kwargs, field, code):
    purpose = kwargs.pop("purpose", "marketing")
    with pytest.raises(ValidationError) as excinfo:
        opt_in(contact, purpose=purpose, **kwargs)
    assert excinfo.value.error_dict[field][0].code == code
    assert not ConsentEvent.objects.exists()


def test_events_form_a_hash_chain_that_verifies(text, contact):
    first = opt_in(contact)
    second = opt_in(contact, purpose="utility")
    consent_opt_out_everywhere(
        contact_id=contact.id,
        phone_number=contact.phone_number,
        source="whatsapp_keyword",
        evidence=Evidence(message_id="wamid.STOP"),
    )
    assert second.prev_hash == first.hash
    result = ledger_verify()
    assert result.ok and result.count == 5
    assert result.head_hash == ConsentEvent.objects.order_by("-sequence").first().hash


def test_opting_out_everywhere_revokes_every_purpose_immediately(text, contact):
    opt_in(contact)
    consent_opt_out_everywhere(
        contact_id=contact.id,
        phone_number=contact.phone_number,
        source="whatsapp_keyword",
        evidence=Evidence(message_id="wamid.STOP"),
    )
    for purpose in ("marketing", "utility", "authentication"):
        assert consent_status(contact_id=contact.id, purpose=purpose) == ConsentStatus.REVOKED


def test_double_opt_in_is_pending_until_confirmed(text, contact):
    opt_in(contact, awaiting_confirmation=True)
    assert consent_status(contact_id=contact.id, purpose="marketing") == ConsentStatus.PENDING
    confirmed = consent_confirm_pending(
        contact_id=contact.id, phone_number=contact.phone_number, message_id="wamid.YES"
    )
    assert [e.action for e in confirmed] == ["confirm"]
    assert consent_status(contact_id=contact.id, purpose="marketing") == ConsentStatus.GRANTED


def test_a_confirmation_with_nothing_pending_is_refused(text, contact):
    with pytest.raises(ValidationError) as excinfo:
        consent_record(
            contact_id=contact.id,
            phone_number=contact.phone_number,
            purpose="marketing",
            action="confirm",
            source="whatsapp_keyword",
            evidence=Evidence(message_id="wamid.X"),
        )
    assert excinfo.value.error_dict["action"][0].code == "nothing_to_confirm"


def test_the_model_layer_refuses_to_change_or_delete_events(text, contact):
    event = opt_in(contact)
    event.purpose = "utility"
    with pytest.raises(LedgerImmutableError):
        event.save()
    with pytest.raises(LedgerImmutableError):
        event.delete()
    with pytest.raises(LedgerImmutableError):
        ConsentEvent.objects.filter(pk=event.pk).update(action="opt_out")
    with pytest.raises(LedgerImmutableError):
        ConsentEvent.objects.all().delete()


@pytest.mark.postgres
def test_postgresql_itself_refuses_update_and_delete(text, contact):
    event = opt_in(contact)
    for sql in (
        "UPDATE compliance_consentevent SET action = 'opt_out' WHERE id = %s",
        "DELETE FROM compliance_consentevent WHERE id = %s",
    ):
        with (
            pytest.raises(DatabaseError, match="append-only"),
            transaction.atomic(),
            connection.cursor() as cursor,
        ):
            cursor.execute(sql, [event.pk])
    assert ConsentEvent.objects.get(pk=event.pk).action == "opt_in"


def behind_the_ledgers_back(sql: str, params: list) -> None:
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":  # a superuser can switch triggers off for the session
            cursor.execute("SET session_replication_role = replica")
        cursor.execute(sql, params)
        if connection.vendor == "postgresql":
            cursor.execute("SET session_replication_role = origin")


def test_tampering_behind_the_models_back_is_detected(text, contact):
    opt_in(contact)
    target = opt_in(contact, purpose="utility")
    opt_in(contact, purpose="authentication")
    behind_the_ledgers_back("UPDATE compliance_consentevent SET source = 'staff' WHERE id = %s", [target.pk])
    result = ledger_verify()
    assert not result.ok
    assert result.bad_sequence == target.sequence
    assert "does not match its hash" in result.problem


def test_a_stored_export_line_cannot_cover_for_changed_columns(text, contact):
    """Changing a column and writing the matching export line still breaks the event's hash."""
    opt_in(contact)
    target = opt_in(contact, purpose="utility")
    forged = content_export_line({**event_content(target), "source": "staff", "hash": target.hash})
    behind_the_ledgers_back(
        "UPDATE compliance_consentevent SET source = 'staff', export_line = %s WHERE id = %s",
        [forged, target.pk],
    )
    result = ledger_verify()
    assert (result.ok, result.bad_sequence) == (False, target.sequence)
    assert "does not match its hash" in result.problem


def test_a_changed_export_line_alone_is_detected(text, contact):
    opt_in(contact)
    target = opt_in(contact, purpose="utility")
    opt_in(contact, purpose="authentication")
    line = target.export_line.replace('"web_form"', '"staff"')
    behind_the_ledgers_back(
        "UPDATE compliance_consentevent SET export_line = %s WHERE id = %s", [line, target.pk]
    )
    result = ledger_verify()
    assert (result.ok, result.bad_sequence) == (False, target.sequence)
    assert "stored export line is not the line its columns give" in result.problem


def test_the_migration_backfills_every_missing_export_line(text, contact, monkeypatch):
    """Events recorded before `export_line` existed get the line ledger_append would have stored, in
    batches; on PostgreSQL the append-only trigger is back on afterwards."""
    migration = importlib.import_module("compliance.migrations.0005_consent_event_export_line")
    monkeypatch.setattr(migration, "BATCH_ROWS", 2)
    opt_in(contact)
    opt_in(contact, purpose="utility", awaiting_confirmation=True)
    consent_opt_out_everywhere(
        contact_id=contact.id, phone_number=contact.phone_number, source="api", evidence=WEB
    )
    kept = ConsentEvent.objects.get(sequence=2).export_line
    behind_the_ledgers_back("UPDATE compliance_consentevent SET export_line = '' WHERE sequence <> %s", [2])
    assert not ledger_verify().ok
    if connection.vendor == "postgresql":
        # The events were inserted in this test's transaction, so their deferred foreign-key checks are
        # pending, and PostgreSQL refuses ALTER TABLE until they have run (a real migration inserts none).
        with connection.cursor() as cursor:
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")

    migration.backfill_export_lines(apps, SimpleNamespace(connection=connection))

    events = list(ConsentEvent.objects.order_by("sequence"))
    assert len(events) == 5 and all(event.export_line for event in events)
    assert [event.export_line for event in events] == [event_export_line(event) for event in events]
    assert events[1].export_line == kept
    assert ledger_verify().ok
    if connection.vendor == "postgresql":
        with (
            pytest.raises(DatabaseError, match="append-only"),
            transaction.atomic(),
            connection.cursor() as cursor,
        ):
            cursor.execute("UPDATE compliance_consentevent SET export_line = '' WHERE sequence = 1")


def test_erasing_the_key_leaves_a_verifiable_chain_with_unreadable_evidence(text, contact):
    event = opt_in(contact)
    ConsentSubject.objects.filter(contact_id=contact.id).update(wrapped_key=None, contact_id=None)
    assert ledger_verify().ok
    with pytest.raises(crypto.EvidenceUnavailable):
        consent_evidence(ConsentEvent.objects.select_related("subject").get(pk=event.pk))


def test_the_projection_rebuilds_from_the_ledger(text, contact):
    other = ContactFactory()
    opt_in(contact)
    opt_in(other, purpose="utility", awaiting_confirmation=True)
    consent_opt_out_everywhere(
        contact_id=contact.id,
        phone_number=contact.phone_number,
        source="api",
        evidence=Evidence(ip_address="198.51.100.1"),
    )
    before = sorted(ConsentState.objects.values_list("contact_id", "purpose", "status"))
    ConsentState.objects.all().delete()
    consent_projection_rebuild()
    assert sorted(ConsentState.objects.values_list("contact_id", "purpose", "status")) == before
    assert (other.id, "utility", "pending") in before


def test_people_have_separate_keys(text, contact):
    other = ContactFactory()
    opt_in(contact)
    event = opt_in(other)
    stranger_key = ConsentSubject.objects.get(contact_id=contact.id).wrapped_key
    with pytest.raises(crypto.EvidenceUnavailable):
        crypto.evidence_decrypt(stranger_key, event.evidence_ciphertext)


def test_events_recorded_with_a_local_time_offset_still_verify(text, contact):
    from datetime import datetime
    from zoneinfo import ZoneInfo

    opt_in(contact, occurred_at=datetime(2026, 3, 8, 1, 59, tzinfo=ZoneInfo("America/Chicago")))
    assert ledger_verify().ok


def test_rebuild_command_restores_a_lost_projection(text, contact):
    from io import StringIO

    from django.core.management import call_command

    opt_in(contact)
    ConsentState.objects.all().delete()
    out = StringIO()
    call_command("rebuild_consent_state", stdout=out)
    assert "Rebuilt 1" in out.getvalue()
    assert consent_status(contact_id=contact.id, purpose="marketing") == ConsentStatus.GRANTED
