"""Importing contacts from CSV files and exporting them again (messaging.contact_csv)."""

import codecs
import csv
import io

import pytest

from messaging import contact_csv
from messaging.contact_csv import (
    EXPORT_COLUMNS,
    RowError,
    contact_csv_export,
    contact_csv_export_lines,
    contact_csv_import,
)
from messaging.models import Contact, Tag
from tests.factories import ContactFactory

pytestmark = pytest.mark.django_db


def run_import(text: str, **options) -> contact_csv.ImportReport:
    return contact_csv_import(file=io.BytesIO(text.encode()), **options)


def tag_names(contact: Contact) -> list[str]:
    return sorted(tag.name for tag in contact.tags.all())


def export_text(contacts=None) -> str:
    stream = io.StringIO()
    contact_csv_export(contacts=contacts if contacts is not None else Contact.objects.all(), stream=stream)
    return stream.getvalue()


# --- Import: the happy path -------------------------------------------------------------------------


def test_import_creates_contacts_with_numbers_as_people_type_them():
    report = run_import(
        "phone_number,profile_name,wa_id,user_id,username,locale,timezone,tags\n"
        "+1-555-0123456,Ann Lee,15550123456,US.1234,annlee,en_US,America/Chicago,VIP customers;promo\n"
        "(555) 012-3457,Bob Ray,,,,,,\n"
    )

    assert report.succeeded
    assert (report.created, report.updated, report.failed) == (2, 0, 0)
    ann = Contact.objects.get(phone_number="+15550123456")
    assert (ann.profile_name, ann.wa_id, ann.user_id, ann.username, ann.locale, ann.timezone) == (
        "Ann Lee",
        "15550123456",
        "US.1234",
        "annlee",
        "en_US",
        "America/Chicago",
    )
    assert tag_names(ann) == ["promo", "vip-customers"]
    assert Contact.objects.get(phone_number="+15550123457").profile_name == "Bob Ray"


def test_columns_are_found_by_name_in_any_order_case_and_alias():
    report = run_import("Tags, NAME ,Phone\nnew|returning,Ann,+1 555 012 3456\n")

    assert report.created == 1
    contact = Contact.objects.get(phone_number="+15550123456")
    assert contact.profile_name == "Ann"
    assert tag_names(contact) == ["new", "returning"]


def test_tags_cell_accepts_semicolons_pipes_and_commas():
    run_import('phone_number,tags\n+15550123456,"a, b;c|d"\n')

    assert tag_names(Contact.objects.get()) == ["a", "b", "c", "d"]


def test_unknown_columns_are_reported_and_not_imported():
    report = run_import("phone_number,email,created_at\n+15550123456,ann@example.com,2024-01-01\n")

    assert report.created == 1
    # created_at is our own export's column: re-importing an export must not complain about it.
    assert report.ignored_columns == ["email"]


def test_timezone_in_any_letter_case_is_stored_canonically():
    run_import("phone_number,timezone\n+15550123456,america/new_york\n")

    assert Contact.objects.get().timezone == "America/New_York"


def test_default_region_reads_national_numbers():
    report = run_import("phone_number\n020 7946 0018\n", default_region="GB")

    assert report.created == 1
    assert Contact.objects.get().phone_number == "+442079460018"


def test_unknown_default_region_is_a_file_error():
    report = run_import("phone_number\n+15550123456\n", default_region="ZZ")

    assert "ZZ" in report.file_error
    assert not Contact.objects.exists()


# --- Import: existing contacts ----------------------------------------------------------------------


def test_existing_contacts_are_updated_without_erasing_blank_cells():
    contact = ContactFactory(
        phone_number="+15550123456", profile_name="Old name", username="keepme", tags=["old"]
    )

    report = run_import("phone,name,username,tags\n(555) 012-3456,New name,,fresh;vip\n")

    assert (report.created, report.updated) == (0, 1)
    contact.refresh_from_db()
    assert contact.profile_name == "New name"
    assert contact.username == "keepme"
    assert tag_names(contact) == ["fresh", "vip"]


def test_blank_tags_cell_keeps_existing_tags():
    contact = ContactFactory(phone_number="+15550123456", tags=["vip"])

    run_import("phone_number,profile_name,tags\n+15550123456,Renamed,\n")

    assert tag_names(contact) == ["vip"]


def test_rows_matching_what_is_stored_are_counted_unchanged():
    contact = ContactFactory(phone_number="+15550123456", profile_name="Ann", tags=["vip"])
    updated_at = contact.updated_at

    report = run_import("phone_number,profile_name,tags\n+15550123456,Ann,VIP\n")

    assert (report.updated, report.unchanged) == (0, 1)
    contact.refresh_from_db()
    assert contact.updated_at == updated_at


def test_without_update_existing_known_numbers_are_skipped_untouched():
    contact = ContactFactory(phone_number="+15550123456", profile_name="Ann")

    report = run_import(
        "phone_number,profile_name\n+15550123456,Changed\n+15550123457,New\n", update_existing=False
    )

    assert (report.created, report.updated, report.skipped) == (1, 0, 1)
    contact.refresh_from_db()
    assert contact.profile_name == "Ann"


# --- Import: per-row errors ---------------------------------------------------------------------------


def test_bad_rows_are_reported_by_file_line_and_column_and_good_rows_still_imported():
    text = (
        "phone_number,profile_name,timezone,tags\n"  # line 1
        "+1-555-0123456,Ann,America/Chicago,VIP\n"  # 2
        "not-a-number,Bob,,\n"  # 3
        "\n"  # 4: blank lines are skipped but still counted
        '(555) 012-3457,"Carol\n'  # 5: a quoted name spanning two lines
        'Jones",Mars/Olympus_Mons,\n'  # 6
        "+15550123458,Dan,,!!!\n"  # 7
        ",Eve,,\n"  # 8
        "+15550123459,Frank,Europe/Paris,a|b\n"  # 9
    )

    report = run_import(text)

    assert (report.created, report.failed) == (2, 4)
    assert not report.succeeded
    assert [(error.line, error.column) for error in report.errors] == [
        (3, "phone_number"),
        (5, "timezone"),
        (7, "tags"),
        (8, "phone_number"),
    ]
    messages = [error.message for error in report.errors]
    assert "“not-a-number” is not a valid phone number" in messages[0]
    assert "“Mars/Olympus_Mons” is not an IANA time zone" in messages[1]
    assert "“!!!” cannot be a tag" in messages[2]
    assert messages[3] == "The phone number is missing."
    assert set(Contact.objects.values_list("phone_number", flat=True)) == {"+15550123456", "+15550123459"}


def test_every_problem_of_a_row_is_reported_at_once():
    report = run_import(f"phone_number,profile_name,timezone\nnope,{'x' * 300},Nowhere/City\n")

    assert {error.column for error in report.errors} == {"phone_number", "profile_name", "timezone"}
    assert report.failed == 1
    assert any("at most 256 characters" in error.message for error in report.errors)


def test_duplicate_number_in_the_same_file_fails_the_later_line():
    report = run_import("phone_number,profile_name\n+15550123456,First\n\n(555) 012-3456,Second\n")

    assert report.created == 1
    assert report.errors == [
        RowError(4, "phone_number", "Duplicate phone number: +15550123456 is already on line 2 of this file.")
    ]
    assert Contact.objects.get().profile_name == "First"


def test_row_with_more_values_than_columns_is_rejected_as_a_whole():
    report = run_import("phone_number,profile_name\n+15550123456,Lee, Ann\n")

    assert report.created == 0
    assert report.errors[0].line == 2
    assert report.errors[0].column == ""
    assert "3 values but the header names 2 columns" in report.errors[0].message


def test_excel_scientific_notation_gets_an_explanation():
    report = run_import("phone_number\n1.55501E+10\n")

    assert "scientific notation" in report.errors[0].message


def test_a_row_failing_at_save_time_costs_only_that_row():
    # Stored data that predates validation makes the model refuse the save (full_clean in the service).
    broken = ContactFactory(phone_number="+15550123456")
    Contact.objects.filter(pk=broken.pk).update(timezone="Not/AZone")

    report = run_import(
        "phone_number,profile_name\n+15550123457,Before\n+15550123456,Bad\n+15550123458,After\n"
    )

    assert (report.created, report.failed) == (2, 1)
    assert report.errors[0].line == 3
    assert report.errors[0].column == "timezone"
    assert Contact.objects.filter(profile_name__in=["Before", "After"]).count() == 2
    broken.refresh_from_db()
    assert broken.profile_name != "Bad"


# --- Import: encodings and shapes of file -----------------------------------------------------------


def test_excel_utf8_with_bom_and_crlf():
    data = codecs.BOM_UTF8 + "phone_number,profile_name\r\n+15550123456,José Müller\r\n".encode()

    report = contact_csv_import(file=io.BytesIO(data))

    assert report.created == 1
    assert Contact.objects.get().profile_name == "José Müller"


def test_semicolon_separated_file_from_european_excel():
    report = run_import("phone_number;profile_name;tags\r\n+15550123456;Ann;vip,promo\r\n")

    assert report.created == 1
    assert tag_names(Contact.objects.get()) == ["promo", "vip"]


def test_excel_unicode_text_utf16_tab_separated():
    data = "phone_number\tprofile_name\r\n+15550123456\tZoë\r\n".encode("utf-16")

    report = contact_csv_import(file=io.BytesIO(data))

    assert report.created == 1
    assert Contact.objects.get().profile_name == "Zoë"


def test_text_streams_are_accepted_too():
    report = contact_csv_import(file=io.StringIO("phone_number\n+15550123456\n"))

    assert report.created == 1


# --- Import: files rejected as a whole --------------------------------------------------------------


def test_missing_phone_number_column_imports_nothing():
    report = run_import("name,tags\nAnn,vip\n")

    assert "no phone_number column" in report.file_error
    assert "found: name, tags" in report.file_error
    assert report.total_rows == 0
    assert not Contact.objects.exists()
    assert not Tag.objects.exists()


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"", "The file is empty."),
        (b"\r\n\r\n  \n", "The file is empty."),
        (b"phone_number,profile_name\r\n", "no contacts below it"),
        (b"PK\x03\x04\x14\x00\x06\x00" + bytes(200), "not a CSV file"),
        ("phone_number,profile_name\n+15550123456,Jos\xe9\n".encode("latin-1"), "not UTF-8 text"),
        (b'phone_number,profile_name\n+15550123456,"Ann\n', "Line 2 is not valid CSV"),
        (b"phone_number,phone\n+15550123456,+15550123457\n", "names the phone_number column twice"),
    ],
    ids=["empty", "blank-lines", "header-only", "xlsx", "latin-1", "unclosed-quote", "duplicate-column"],
)
def test_unreadable_files_get_one_clear_error_and_import_nothing(content, expected):
    report = contact_csv_import(file=io.BytesIO(content))

    assert expected in report.file_error
    assert not Contact.objects.exists()


def test_latin1_error_points_at_the_line():
    report = contact_csv_import(file=io.BytesIO(b"phone_number,profile_name\n+1555,a\n+1555,Jos\xe9\n"))

    assert "line 3" in report.file_error


def test_too_large_file_is_rejected(monkeypatch):
    monkeypatch.setattr(contact_csv, "MAX_FILE_BYTES", 100)

    report = run_import("phone_number\n" + "+15550123456\n" * 20)

    assert "larger than" in report.file_error
    assert not Contact.objects.exists()


def test_too_many_rows_is_rejected_before_anything_is_saved(monkeypatch):
    monkeypatch.setattr(contact_csv, "MAX_ROWS", 3)

    report = run_import("phone_number\nbad\n" + "".join(f"+1555012345{n}\n" for n in range(3)))

    assert "more than 3 contacts" in report.file_error
    assert (report.total_rows, report.errors) == (0, [])
    assert not Contact.objects.exists()


# --- Import: dry run --------------------------------------------------------------------------------


def test_dry_run_reports_exactly_and_writes_nothing():
    existing = ContactFactory(phone_number="+15550123456", profile_name="Ann", tags=["old"])
    tags_before = set(Tag.objects.values_list("name", flat=True))

    report = run_import(
        "phone_number,profile_name,tags\n"
        "+15550123456,Ann Renamed,brand-new\n"
        "+15550123457,Bob,another-new\n"
        "garbage,Carl,\n",
        dry_run=True,
    )

    assert report.dry_run
    assert (report.created, report.updated, report.failed) == (1, 1, 1)
    assert report.errors[0].line == 4
    assert Contact.objects.count() == 1
    existing.refresh_from_db()
    assert existing.profile_name == "Ann"
    assert tag_names(existing) == ["old"]
    assert set(Tag.objects.values_list("name", flat=True)) == tags_before


@pytest.mark.parametrize("dry_run", [True, False])
def test_files_larger_than_one_write_batch(monkeypatch, dry_run):
    monkeypatch.setattr(contact_csv, "WRITE_BATCH_SIZE", 2)

    report = run_import(
        "phone_number,tags\n" + "".join(f"+1555012345{n},vip\n" for n in range(5)), dry_run=dry_run
    )

    assert report.created == 5
    assert Contact.objects.count() == (0 if dry_run else 5)
    assert Tag.objects.filter(name="vip").exists() is not dry_run


# --- Export -----------------------------------------------------------------------------------------


def test_export_writes_the_documented_columns():
    contact = ContactFactory(
        phone_number="+15550123456",
        wa_id="15550123456",
        user_id="US.99",
        username="ann",
        profile_name="Ann Lee",
        locale="en_US",
        timezone="America/Chicago",
        tags=["vip", "promo"],
    )

    text = export_text()
    rows = list(csv.reader(io.StringIO(text)))

    assert text.startswith(
        "phone_number,profile_name,wa_id,user_id,username,locale,timezone,tags,created_at\r\n"
    )
    assert rows[0] == list(EXPORT_COLUMNS)
    assert rows[1] == [
        "+15550123456",
        "Ann Lee",
        "15550123456",
        "US.99",
        "ann",
        "en_US",
        "America/Chicago",
        "promo;vip",
        contact.created_at.isoformat(timespec="seconds"),
    ]
    assert len(rows) == 2


def test_export_neutralizes_spreadsheet_formulas_but_keeps_e164_numbers():
    ContactFactory(
        phone_number="+15550123456",
        profile_name='=HYPERLINK("http://evil.example","click")',
        username="@admin",
        user_id="-1+2",
        locale="+en",
    )

    row = list(csv.reader(io.StringIO(export_text())))[1]

    assert row[0] == "+15550123456"
    assert row[1] == '\'=HYPERLINK("http://evil.example","click")'
    assert row[4] == "'@admin"
    assert row[3] == "'-1+2"
    assert row[5] == "'+en"


def test_export_imports_back_to_the_same_contacts():
    ContactFactory(phone_number="+15550123456", profile_name="=1+1", username="-dash", tags=["vip", "b2b"])
    ContactFactory(
        phone_number="+442079460018", profile_name='Quote "Q" Comma, Person', timezone="Europe/London"
    )
    ContactFactory(phone_number="+15550123457", profile_name="Zoë\nSecond line", locale="", timezone="")
    fields = ["phone_number", "profile_name", "wa_id", "user_id", "username", "locale", "timezone"]
    before = {c.phone_number: ([getattr(c, f) for f in fields], tag_names(c)) for c in Contact.objects.all()}
    text = export_text()

    assert run_import(text).unchanged == 3  # importing an unedited export changes nothing

    Contact.objects.all().delete()
    report = run_import(text)

    assert (report.created, report.failed) == (3, 0)
    after = {c.phone_number: ([getattr(c, f) for f in fields], tag_names(c)) for c in Contact.objects.all()}
    assert after == before


def test_export_lines_stream_in_chunks_with_bounded_queries(django_assert_max_num_queries):
    ContactFactory.create_batch(7, tags=["vip"])

    with django_assert_max_num_queries(3):  # contacts, then their tags: not one query per contact
        chunks = list(contact_csv_export_lines(contacts=Contact.objects.all(), lines_per_chunk=3))

    assert len(chunks) == 3
    assert all(chunk.endswith("\r\n") for chunk in chunks)
    assert "".join(chunks) == export_text()


def test_export_respects_the_queryset_it_is_given():
    ContactFactory(phone_number="+15550123456", tags=["vip"])
    ContactFactory(phone_number="+15550123457")

    rows = list(csv.reader(io.StringIO(export_text(Contact.objects.filter(tags__name="vip")))))

    assert [row[0] for row in rows[1:]] == ["+15550123456"]
