"""Consent ledger exports (jsonl / csv, filters, manifest, records) and verifying them, online and
offline."""

import codecs
import csv
import hashlib
import io
import json
import os
import subprocess
import sys
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection, transaction

from compliance.exports import (
    CSV_FIELDS,
    EXPORT_FIELDS,
    ExportFilters,
    LedgerExport,
    export_begin,
    export_rows,
    manifest_path_for,
)
from compliance.ledger import (
    GENESIS_HASH,
    content_hash,
    event_content,
    event_export_line,
    export_lines,
    ledger_append,
    ledger_verify,
)
from compliance.models import (
    ConsentEvent,
    ConsentExport,
    ConsentSubject,
    LedgerHead,
    LedgerImmutableError,
    StaffAuditEntry,
)
from compliance.services import Evidence, consent_record, consent_text_create
from tests.factories import ContactFactory

ROOT = Path(__file__).resolve().parent.parent
WEB = Evidence(ip_address="203.0.113.7", user_agent="Mozilla/5.0", page_url="https://shop.example/opt-in/")
STOP = Evidence(message_id="wamid.STOP")


def at(day: str, clock: str = "12:00:00") -> datetime:
    return datetime.fromisoformat(f"{day}T{clock}").replace(tzinfo=UTC)


@pytest.fixture
def ledger(db):
    """Six events over three days: #1 marketing 03-01, #2 utility 03-01 23:59:59.999999,
    #3 marketing 03-02 00:00, #4 utility (opt-out) 03-02, #5 marketing 03-03, #6 authentication 03-03."""
    consent_text_create(
        version="v1", business_name="Acme", body="Acme offers on WhatsApp. Reply STOP to stop."
    )
    ava, ben = ContactFactory(phone_number="+15550123456"), ContactFactory(phone_number="+15550123457")

    def record(contact, purpose, action, when, evidence=WEB, source="web_form"):
        return consent_record(
            contact_id=contact.id,
            phone_number=contact.phone_number,
            purpose=purpose,
            action=action,
            source=source,
            evidence=evidence,
            text_version="v1" if action == "opt_in" else "",
            occurred_at=when,
        )

    return [
        record(ava, "marketing", "opt_in", at("2026-03-01")),
        record(ava, "utility", "opt_in", at("2026-03-01", "23:59:59.999999")),
        record(ben, "marketing", "opt_in", at("2026-03-02", "00:00:00")),
        record(ava, "utility", "opt_out", at("2026-03-02"), STOP, "whatsapp_keyword"),
        record(ben, "marketing", "opt_in", at("2026-03-03")),
        record(ben, "authentication", "opt_in", at("2026-03-03")),
    ]


def export(tmp_path: Path, *args: str, name: str = "ledger.jsonl") -> tuple[Path, dict, str]:
    path = tmp_path / name
    out = io.StringIO()
    call_command("export_consent", "--output", str(path), *args, stdout=out)
    return path, json.loads(manifest_path_for(path).read_text()), out.getvalue()


def verify(*args: str) -> str:
    out = io.StringIO()
    call_command("verify_consent_ledger", *args, stdout=out)
    return out.getvalue()


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines(keepends=True)


# --- jsonl and offline verification ---------------------------------------------------------------


def test_a_jsonl_export_holds_exactly_the_hashed_fields_and_verifies_offline(
    ledger, tmp_path, django_db_blocker
):
    path, manifest, said = export(tmp_path, "--format", "jsonl")

    rows = [json.loads(line) for line in lines(path)]
    assert [row["sequence"] for row in rows] == [1, 2, 3, 4, 5, 6]
    assert all(tuple(row) == EXPORT_FIELDS for row in rows)
    assert rows == [{**event_content(event), "hash": event.hash} for event in ledger]
    assert "Exported 6 events" in said and str(manifest_path_for(path)) in said

    with django_db_blocker.block():  # the auditor's laptop: no database at all
        report = verify("--file", str(path), "--manifest", str(manifest_path_for(path)))
    assert "OK, 6 events (#1 to #6); every hash and link verified" in report
    assert ledger[-1].hash in report
    assert f"Manifest OK: SHA-256 {manifest['sha256']}, 6 rows" in report


def test_a_changed_line_fails_verification_naming_its_event(ledger, tmp_path):
    path, _, _ = export(tmp_path, "--format", "jsonl")
    content = lines(path)
    row = json.loads(content[2])
    row["purpose"] = "utility"
    content[2] = json.dumps(row) + "\n"
    path.write_text("".join(content))

    with pytest.raises(
        CommandError, match=r"FAILED at event #3: event #3 \(line 3\) does not match its hash"
    ):
        verify("--file", str(path))


def test_a_changed_line_with_a_recomputed_hash_breaks_the_next_link(ledger, tmp_path):
    path, _, _ = export(tmp_path, "--format", "jsonl")
    content = lines(path)
    row = json.loads(content[2])
    row["action"] = "opt_out"
    row["hash"] = content_hash(row)
    content[2] = json.dumps(row) + "\n"
    path.write_text("".join(content))

    with pytest.raises(CommandError, match=r"at event #4: link broken at event #4 .*not event #3's hash"):
        verify("--file", str(path))


def test_a_deleted_line_is_reported_as_a_broken_link(ledger, tmp_path):
    path, _, _ = export(tmp_path, "--format", "jsonl")
    content = lines(path)
    path.write_text("".join(content[:2] + content[3:]))

    with pytest.raises(
        CommandError, match=r"link broken at event #4 \(line 3\): event #3 missing"
    ) as excinfo:
        verify("--file", str(path))
    assert excinfo.value.returncode == 1


def test_a_deleted_last_line_is_caught_by_the_manifest(ledger, tmp_path):
    path, _, _ = export(tmp_path, "--format", "jsonl")
    path.write_text("".join(lines(path)[:-1]))

    # The chain alone cannot tell: what remains is a valid, shorter ledger (and the command says so).
    assert "No manifest checked" in verify("--file", str(path))
    with pytest.raises(CommandError, match="does not match its manifest") as excinfo:
        verify("--file", str(path), "--manifest", str(manifest_path_for(path)))
    message = str(excinfo.value)
    assert "SHA-256 differs" in message
    assert "the manifest says 6 rows, the file has 5" in message
    assert "not at the ledger head #6" in message


def test_a_filtered_export_verifies_each_event_and_says_which_links_were_not_checkable(ledger, tmp_path):
    path, manifest, _ = export(tmp_path, "--format", "jsonl", "--purpose", "utility")
    assert [json.loads(line)["sequence"] for line in lines(path)] == [2, 4]
    assert manifest["filters"] == {"purpose": "utility"} and manifest["whole_chain"] is False

    report = verify("--file", str(path), "--manifest", str(manifest_path_for(path)))
    assert "OK, 2 events (#2 to #4); every event matches its own hash" in report
    assert "0 links between adjacent events verified, 2 not checkable" in report
    assert "only an unfiltered export verifies the whole chain" in report

    # Without its manifest the file is held to the whole-chain standard, with a hint.
    with pytest.raises(
        CommandError,
        match=r"event #1 missing from the file \(if this is a filtered export, pass its --manifest",
    ):
        verify("--file", str(path))
    assert "2 not checkable" in verify("--file", str(path), "--filtered")


def test_a_filtered_export_still_checks_links_between_adjacent_events(ledger, tmp_path):
    path, _, _ = export(tmp_path, "--format", "jsonl", "--since", "2026-03-02")
    assert [json.loads(line)["sequence"] for line in lines(path)] == [3, 4, 5, 6]
    assert "3 links between adjacent events verified, 1 not checkable" in verify(
        "--file", str(path), "--manifest", str(manifest_path_for(path))
    )

    content = lines(path)
    row = json.loads(content[1])  # event #4: re-link it elsewhere and re-hash it
    row["prev_hash"] = GENESIS_HASH
    row["hash"] = content_hash(row)
    content[1] = json.dumps(row) + "\n"
    path.write_text("".join(content))
    with pytest.raises(CommandError, match="link broken at event #4"):
        verify("--file", str(path), "--filtered")


def test_offline_verification_needs_no_database(tmp_path):
    """No django_db mark: pytest-django refuses any query. The file is built by hand as a third party
    would, from the documented rule."""
    previous, rows = GENESIS_HASH, []
    for sequence in (1, 2):
        row = {
            "sequence": sequence,
            "subject": "7d6f1c1e-3b5e-4d0e-9d5e-8c1e2f3a4b5c",
            "purpose": "marketing",
            "action": "opt_in",
            "source": "api",
            "awaiting_confirmation": False,
            "text_version": "v1",
            "text_sha256": "a" * 64,
            "evidence_ciphertext": "gAAAAAB-opaque",
            "staff_user_id": None,
            "occurred_at": "2026-03-01T12:00:00.000000+00:00",
            "recorded_at": "2026-03-01T12:00:01.000000+00:00",
            "prev_hash": previous,
        }
        row["hash"] = previous = content_hash(row)
        rows.append(row)
    path = tmp_path / "handmade.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))

    assert "OK, 2 events (#1 to #2)" in verify("--file", str(path))


def test_the_verify_command_exits_non_zero_from_the_shell_without_a_database(ledger, tmp_path):
    path, _, _ = export(tmp_path, "--format", "jsonl")
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.test_settings",
        "DATABASE_URL": "postgres://nobody@127.0.0.1:9/unreachable",  # any query would fail
    }

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "manage.py", "verify_consent_ledger", "--file", str(path), *args],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    good = run("--manifest", str(manifest_path_for(path)))
    assert good.returncode == 0, good.stderr
    assert "Manifest OK" in good.stdout
    path.write_text(path.read_text().replace('"opt_in"', '"opt_out"', 1))
    bad = run()
    assert bad.returncode == 1
    assert "FAILED at event #1" in bad.stderr


def test_a_csv_file_is_refused_by_the_verifier(ledger, tmp_path):
    path, _, _ = export(tmp_path, "--format", "csv", name="ledger.csv")
    with pytest.raises(CommandError, match="this is a CSV export; only JSONL exports can be verified"):
        verify("--file", str(path))


# --- csv, filters, manifest -----------------------------------------------------------------------


def test_a_csv_export_has_the_ledger_columns_plus_readable_labels(ledger, tmp_path):
    path, manifest, _ = export(tmp_path, "--format", "csv", name="ledger.csv")
    data = path.read_bytes()
    assert data.startswith(codecs.BOM_UTF8)  # Excel reads it as UTF-8
    header, *rows = list(csv.reader(io.StringIO(data.decode("utf-8-sig"))))

    assert tuple(header) == CSV_FIELDS
    assert header[: len(EXPORT_FIELDS)] == list(EXPORT_FIELDS)
    assert len(rows) == 6 and manifest["rows"] == 6 and manifest["columns"] == list(CSV_FIELDS)
    first = dict(zip(header, rows[0], strict=True))
    assert first["sequence"] == "1" and first["hash"] == ledger[0].hash
    assert first["awaiting_confirmation"] == "false" and first["staff_user_id"] == ""
    assert (first["purpose_label"], first["action_label"], first["source_label"]) == (
        "Marketing",
        "opt-in",
        "web form",
    )
    assert dict(zip(header, rows[3], strict=True))["source_label"] == "WhatsApp keyword"


@pytest.mark.parametrize(
    ("args", "sequences"),
    [
        (["--since", "2026-03-02"], [3, 4, 5, 6]),
        (["--until", "2026-03-01"], [1, 2]),  # the last microsecond of the day is in
        (["--since", "2026-03-02", "--until", "2026-03-02"], [3, 4]),
        (["--purpose", "marketing"], [1, 3, 5]),
        (["--purpose", "marketing", "--since", "2026-03-03"], [5]),
        (["--since", "2026-04-01"], []),
    ],
)
def test_filters_select_days_inclusively_and_by_purpose(ledger, args, sequences):
    out, err = io.StringIO(), io.StringIO()
    call_command("export_consent", "--format", "jsonl", *args, stdout=out, stderr=err)

    assert [json.loads(line)["sequence"] for line in out.getvalue().splitlines()] == sequences
    manifest = json.loads(err.getvalue())  # without --output the manifest goes to stderr
    assert manifest["rows"] == len(sequences)
    assert manifest["sha256"] == hashlib.sha256(out.getvalue().encode()).hexdigest()


def test_impossible_options_are_refused(ledger):
    with pytest.raises(CommandError, match="since is after until"):
        call_command("export_consent", "--format", "jsonl", "--since", "2026-03-03", "--until", "2026-03-01")
    with pytest.raises(CommandError, match="not a date; use YYYY-MM-DD"):
        call_command("export_consent", "--format", "jsonl", "--since", "03/01/2026")
    with pytest.raises(CommandError, match="invalid choice"):
        call_command("export_consent", "--format", "xml")


def test_the_manifest_describes_the_file_and_the_ledger_at_export_time(ledger, tmp_path):
    path, manifest, _ = export(
        tmp_path, "--format", "jsonl", "--since", "2026-03-02", "--purpose", "marketing"
    )
    head = LedgerHead.objects.get(pk=1)

    assert manifest["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert manifest["rows"] == 2 == len(lines(path))
    assert manifest["ledger_head"] == {"sequence": 6, "hash": head.hash}
    assert manifest["filters"] == {"since": "2026-03-02", "purpose": "marketing"}
    assert manifest["format"] == "jsonl" and manifest["complete"] is True and manifest["file"] == path.name
    assert manifest["generated_by"] == {"user_id": None, "username": "cli"}
    assert datetime.fromisoformat(manifest["generated_at"]).tzinfo is not None


def test_every_export_is_recorded_and_the_record_cannot_change(ledger, tmp_path):
    path, manifest, _ = export(tmp_path, "--format", "csv", "--purpose", "marketing", name="m.csv")

    record = ConsentExport.objects.get()
    assert record.pk == manifest["export_id"]
    assert (record.username, record.user_id, record.format, record.row_count) == ("cli", None, "csv", 3)
    assert record.filters == {"purpose": "marketing"}
    assert record.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert (record.head_sequence, record.head_hash) == (6, ledger[-1].hash)
    audit = StaffAuditEntry.objects.get(action="export")
    assert audit.username == "cli" and "csv export of 3 events" in audit.summary

    record.row_count = 0
    with pytest.raises(LedgerImmutableError):
        record.save()
    with pytest.raises(LedgerImmutableError):
        record.delete()
    with pytest.raises(LedgerImmutableError):
        ConsentExport.objects.update(row_count=0)
    with pytest.raises(LedgerImmutableError):
        StaffAuditEntry.objects.all().delete()
    assert ConsentExport.objects.get().row_count == 3


def test_an_export_stops_at_the_head_it_started_from(ledger):
    running = LedgerExport(format="jsonl")
    contact = ContactFactory()
    consent_record(
        contact_id=contact.id,
        phone_number=contact.phone_number,
        purpose="utility",
        action="opt_out",
        source="api",
        evidence=Evidence(ip_address="198.51.100.1"),
    )
    body = b"".join(running.chunks())

    assert ConsentEvent.objects.count() == 7
    assert [json.loads(line)["sequence"] for line in body.splitlines()] == [1, 2, 3, 4, 5, 6]
    assert running.record.head_sequence == 6 and running.record.row_count == 6


def test_an_interrupted_download_is_recorded_as_incomplete(ledger):
    running = export_begin(format="jsonl")
    stream = running.chunks(chunk_rows=2)
    sent = next(stream)
    stream.close()  # the browser went away

    record = ConsentExport.objects.get()
    assert record.complete is False and record.row_count == 2
    assert record.sha256 == hashlib.sha256(sent).hexdigest()
    assert "jsonl export of 6 events" in StaffAuditEntry.objects.get(action="export").summary


def test_an_export_streams_from_a_chunked_cursor(ledger):
    """Memory stays flat: rows come FETCH_ROWS at a time (a named server-side cursor on PostgreSQL)."""
    body = b"".join(LedgerExport(format="jsonl", filters=ExportFilters()).chunks(fetch_rows=2, chunk_rows=2))
    assert len(body.splitlines()) == 6


# --- verifying the database ---------------------------------------------------------------------------


def test_verifying_the_ledger_prints_the_count_and_head(ledger):
    report = verify()
    assert f"Consent ledger OK: 6 events, every hash and link verified; head #6 {ledger[-1].hash}" in report


def test_verifying_a_tampered_ledger_fails_naming_the_event(ledger):
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":  # a superuser can switch the append-only trigger off
            cursor.execute("SET session_replication_role = replica")
        cursor.execute("UPDATE compliance_consentevent SET source = 'staff' WHERE sequence = 4")
        if connection.vendor == "postgresql":
            cursor.execute("SET session_replication_role = origin")

    with pytest.raises(
        CommandError, match=r"FAILED at event #4: event #4 does not match its hash"
    ) as excinfo:
        verify()
    assert excinfo.value.returncode == 1


def test_awkward_characters_survive_the_export_exactly(ledger, tmp_path):
    """A text version with a quote, backslash, tab, newline and non-ASCII: the file still parses to the
    hashed content (PostgreSQL's COPY escapes these; the export must undo it)."""
    version = 'v2 "quoted" \\ back\tslash\nnewline é'
    consent_text_create(version=version, business_name="Acme", body="Other wording. Reply STOP to stop.")
    contact = ContactFactory()
    event = consent_record(
        contact_id=contact.id,
        phone_number=contact.phone_number,
        purpose="marketing",
        action="opt_in",
        source="staff",
        evidence=Evidence(staff_user_id=42, reason="Asked at the counter"),
        text_version=version,
    )
    path, _, _ = export(tmp_path, "--format", "jsonl", "--since", "2026-03-03")

    last = json.loads(lines(path)[-1])
    assert last == {**event_content(event), "hash": event.hash}
    assert last["text_version"] == version and last["staff_user_id"] == 42
    assert "OK, 3 events" in verify("--file", str(path), "--filtered")


# --- Awkward characters in every column --------------------------------------------------------------

#: Everything COPY and JSON escape differently, or not at all: quotes, backslashes (also before "N",
#: COPY's NULL marker), the escapes both know (newline, tab, CR, backspace, form feed), vertical tab
#: (COPY writes \v, JSON \u000b), other control characters, DEL, non-ASCII, an emoji (a surrogate pair
#: in JSON), a line separator, and a line that looks like COPY's end marker.
AWKWARD = [
    'say "hi"',
    "back\\slash \\N \\.",
    "line\nbreak\ttab\rcr\bbs\fff",
    "vt\x0bbell\x07esc\x1bunit\x1fdel\x7f",
    "é ü ß 😀 \u2028 end",
    "\\.",
]


@pytest.fixture
def awkward_ledger(ledger):
    """The six ordinary events, then one event per awkward string (in every free-text column), on
    2026-03-04 and 2026-03-05."""
    subject = ConsentSubject.objects.create(contact_id=10_000)
    events = list(ledger)
    for index, text in enumerate(AWKWARD):
        with transaction.atomic():
            events.append(
                ledger_append(
                    ConsentEvent(
                        subject=subject,
                        purpose="marketing" if index % 2 else "utility",
                        action="opt_in",
                        source=text[:32],
                        awaiting_confirmation=index % 3 == 0,
                        text_version=text,
                        text_sha256=text[::-1],
                        evidence_ciphertext=f"gAAAAAB{text}{'x' * 300}{text}",
                        staff_user_id=index if index % 2 else None,
                        occurred_at=at("2026-03-04" if index < 3 else "2026-03-05", f"0{index}:00:00.000100"),
                        recorded_at=at("2026-03-05", f"1{index}:30:00"),
                    )
                )
            )
    return events


def test_awkward_characters_in_every_column_export_exactly_and_verify(awkward_ledger, tmp_path):
    path, _, _ = export(tmp_path, "--format", "jsonl")

    assert [json.loads(line) for line in lines(path)] == [
        {**event_content(event), "hash": event.hash} for event in awkward_ledger
    ]
    assert path.read_bytes().isascii()  # non-ASCII written as \u escapes, as json.dumps does
    report = verify("--file", str(path), "--manifest", str(manifest_path_for(path)))
    assert f"OK, {len(awkward_ledger)} events" in report and "Manifest OK" in report


@pytest.mark.postgres
def test_an_export_streamed_by_copy_verifies_offline_with_its_manifest(
    awkward_ledger, tmp_path, django_db_blocker
):
    whole, whole_manifest, _ = export(tmp_path, "--format", "jsonl")
    some, some_manifest, _ = export(tmp_path, "--format", "jsonl", "--since", "2026-03-04", name="some.jsonl")
    records = {record.pk: record for record in ConsentExport.objects.all()}

    with django_db_blocker.block():
        assert "every hash and link verified" in verify(
            "--file", str(whole), "--manifest", str(manifest_path_for(whole))
        )
        assert "every event matches its own hash" in verify(
            "--file", str(some), "--manifest", str(manifest_path_for(some))
        )
    assert records[whole_manifest["export_id"]].sha256 == hashlib.sha256(whole.read_bytes()).hexdigest()
    assert some_manifest["rows"] == len(AWKWARD) == len(lines(some))


# --- Stored export lines ------------------------------------------------------------------------------


def behind_the_ledgers_back(sql: str, params: list) -> None:
    """What a database superuser could do: change a ledger row with the append-only trigger off."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SET session_replication_role = replica")
        cursor.execute(sql, params)
        if connection.vendor == "postgresql":
            cursor.execute("SET session_replication_role = origin")


def test_every_appended_event_stores_the_line_its_columns_give(awkward_ledger):
    """Built from the values in memory at append time, the line must equal the one rebuilt from the
    columns as the database hands them back (timestamps, ids, awkward text)."""
    stored = list(ConsentEvent.objects.order_by("sequence"))

    assert [event.export_line for event in stored] == [event_export_line(event) for event in stored]
    assert [json.loads(event.export_line) for event in stored] == [
        {**event_content(event), "hash": event.hash} for event in awkward_ledger
    ]
    assert all(event.export_line.isascii() and "\n" not in event.export_line for event in stored)


@pytest.mark.parametrize(
    "chosen",
    [
        {},
        {"since": "2026-03-04"},
        {"until": "2026-03-04"},
        {"purpose": "utility"},
        {"since": "2026-03-02", "until": "2026-03-04", "purpose": "marketing"},
    ],
)
def test_the_stored_lines_export_byte_for_byte_what_the_encoder_writes(awkward_ledger, tmp_path, chosen):
    """On PostgreSQL the lines come through COPY (which escapes backslashes), elsewhere through a
    cursor: either way the file is exactly the encoder's lines for the selected events, whether it
    encodes model instances or the export's own column rows, and it verifies offline."""
    args = [part for name, value in chosen.items() for part in (f"--{name}", value)]
    path, manifest, _ = export(tmp_path, "--format", "jsonl", *args)

    filters = ExportFilters(
        since=date.fromisoformat(chosen["since"]) if "since" in chosen else None,
        until=date.fromisoformat(chosen["until"]) if "until" in chosen else None,
        purpose=chosen.get("purpose", ""),
    )
    selected = list(filters.apply(ConsentEvent.objects.order_by("sequence")))
    from_instances = "".join(event_export_line(event) + "\n" for event in selected)
    from_columns = "".join(
        line + "\n" for line in export_lines(export_rows(filters, head_sequence=len(awkward_ledger)))
    )
    assert selected and manifest["rows"] == len(selected)
    assert path.read_bytes() == from_instances.encode() == from_columns.encode()
    report = verify("--file", str(path), "--manifest", str(manifest_path_for(path)))
    assert f"OK, {len(selected)} events" in report and "Manifest OK" in report


def test_an_event_without_a_stored_line_stops_the_export_and_fails_verification(ledger, tmp_path):
    """Only a write behind ledger_append's back leaves a line empty: the export refuses to guess one."""
    behind_the_ledgers_back("UPDATE compliance_consentevent SET export_line = '' WHERE sequence = %s", [4])

    with pytest.raises(CommandError, match=r"Export FAILED: event #4 has no stored export line"):
        export(tmp_path, "--format", "jsonl")
    assert not list(tmp_path.iterdir())  # no half file that looks like an export
    record = ConsentExport.objects.get()
    assert record.complete is False and record.row_count < 4

    first_day, _, _ = export(tmp_path, "--format", "jsonl", "--until", "2026-03-01")  # #1, #2: unaffected
    assert len(lines(first_day)) == 2
    csv_path, _, _ = export(tmp_path, "--format", "csv", name="ledger.csv")  # csv reads the columns
    assert len(lines(csv_path)) == 7
    with pytest.raises(CommandError, match=r"FAILED at event #4: event #4 has no stored export line"):
        verify()


def test_a_stored_line_that_differs_from_its_event_fails_verification(ledger):
    """The stored line is what auditors receive: one that tells another story than the columns (here a
    web-form opt-in shown as a staff one, with a matching hash) is tampering, named by its event."""
    row = {**event_content(ledger[2]), "source": "staff"}
    forged = json.dumps({**row, "hash": content_hash(row)}, separators=(",", ":"))
    behind_the_ledgers_back(
        "UPDATE compliance_consentevent SET export_line = %s WHERE sequence = %s", [forged, 3]
    )

    result = ledger_verify()
    assert (result.ok, result.bad_sequence) == (False, 3)
    with pytest.raises(
        CommandError,
        match=r"FAILED at event #3: event #3's stored export line is not the line its columns give",
    ):
        verify()
