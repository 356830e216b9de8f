"""Contacts to and from CSV files, as spreadsheets (Excel, Google Sheets, Numbers) write and read them.

The import validates the whole file before saving anything, so every problem is reported at once with
the line a person can find in the file; the export writes the same columns, so an export edited in a
spreadsheet can be imported again.
"""

import codecs
import csv
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from typing import IO, Literal

import phonenumbers
from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.db import IntegrityError, transaction
from django.db.models import QuerySet
from django.utils import timezone
from django.utils.text import slugify

from messaging.models import Contact, iana_timezones
from messaging.phone import phone_normalize
from messaging.services import contact_create, contact_update

MAX_FILE_BYTES = 10 * 1024 * 1024
MAX_ROWS = 100_000

EXPORT_COLUMNS = (
    "phone_number",
    "profile_name",
    "wa_id",
    "user_id",
    "username",
    "locale",
    "timezone",
    "tags",
    "created_at",
)
#: Contact fields an import may set besides phone_number and tags.
IMPORT_FIELDS = ("profile_name", "wa_id", "user_id", "username", "locale", "timezone")
IMPORT_COLUMNS = ("phone_number", *IMPORT_FIELDS, "tags")
COLUMN_ALIASES = {"phone": "phone_number", "name": "profile_name"}
# Columns our own export writes that an import reads past without calling them unknown.
EXPORT_ONLY_COLUMNS = frozenset({"created_at"})

TAG_SEPARATORS = re.compile(r"[;|,]")
# Spreadsheet programs evaluate cells starting with these characters as formulas (OWASP "CSV injection").
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
E164 = re.compile(r"\+[1-9]\d{6,14}")
# What Excel makes of a long number in a General-formatted cell: 1.5550123456E+10.
SCIENTIFIC_NOTATION = re.compile(r"\d+(\.\d+)?e\+?\d+", re.IGNORECASE)
# Rows are looked up and saved in batches: one query finds the existing contacts of a whole batch.
WRITE_BATCH_SIZE = 500
EXPORT_CHUNK_SIZE = 2000


@dataclass(frozen=True)
class RowError:
    """One problem with one row. `line` counts physical lines from 1 (the header); `column` is the
    canonical column name, or "" when the problem concerns the whole row."""

    line: int
    column: str
    message: str


@dataclass
class ImportReport:
    dry_run: bool = False
    created: int = 0
    updated: int = 0
    #: Rows for existing contacts whose values already matched the file.
    unchanged: int = 0
    #: Rows for existing contacts left alone because update_existing was off.
    skipped: int = 0
    #: Rows with at least one error (each error is in `errors`).
    failed: int = 0
    errors: list[RowError] = field(default_factory=list)
    #: Set when the file as a whole could not be imported; nothing was saved then.
    file_error: str = ""
    #: Header names that are not contact columns; their values were not imported.
    ignored_columns: list[str] = field(default_factory=list)

    @property
    def total_rows(self) -> int:
        return self.created + self.updated + self.unchanged + self.skipped + self.failed

    @property
    def succeeded(self) -> bool:
        return not self.file_error and not self.failed


class CsvFileRejected(Exception):
    """The whole file cannot be read (too large, not CSV, not UTF-8, empty); the message says how to fix it."""


@dataclass
class _Row:
    line: int
    phone_number: str
    fields: dict[str, str]
    tags: list[str] | None


# --- Import ---------------------------------------------------------------------------------------


def contact_csv_import(
    *,
    file: IO[bytes] | IO[str],
    default_region: str | None = None,
    update_existing: bool = True,
    dry_run: bool = False,
) -> ImportReport:
    """Create or update contacts from a CSV file and report what happened, row by row.

    Columns are found by header name (case-insensitive, any order): phone_number (or phone, required),
    profile_name (or name), wa_id, user_id, username, locale, timezone and tags (several per cell,
    separated by ";", "|" or ","). Numbers without a country code are read in `default_region`
    (default: settings.PHONE_DEFAULT_REGION). The file may be UTF-8 with or without a byte-order mark
    (or Excel's UTF-16 "Unicode text"), comma-, semicolon- or tab-separated, with any line endings.

    Contacts are matched by their E.164 phone number. With `update_existing`, a matched contact gets the
    file's non-empty values: an empty cell never erases what is stored, and a non-empty tags cell
    replaces the contact's tags. Without it, matched rows are counted as skipped.

    Every row is checked before anything is saved; then each valid row is saved in its own savepoint,
    so a row that still fails (say, a contact created concurrently) costs only that row. Rows are
    committed in batches of WRITE_BATCH_SIZE. A file-level problem (no phone_number column, not a CSV
    file, too large) saves nothing. With `dry_run` every batch runs in a transaction that is rolled
    back: the report is exact and nothing is written.

    An import never records consent to be messaged: having someone's number in a spreadsheet is not
    their opt-in. Consent is recorded only by the consent ledger.
    """
    report = ImportReport(dry_run=dry_run)
    try:
        region = _region_or_default(default_region)
        text = csv_file_text(file)
        rows = _parse_rows(text, region, report)
    except CsvFileRejected as exc:
        # Rows checked before the file was rejected were not imported either: report none of them.
        return ImportReport(dry_run=dry_run, file_error=str(exc))

    _save_rows(rows, update_existing=update_existing, dry_run=dry_run, report=report)
    report.errors.sort(key=lambda error: error.line)
    return report


def _region_or_default(region: str | None) -> str | None:
    if not region:
        return None
    region = region.strip().upper()
    if region not in phonenumbers.SUPPORTED_REGIONS:
        raise CsvFileRejected(f"“{region}” is not a known country code for phone numbers (e.g. US, GB, IN).")
    return region


def csv_file_text(file: IO[bytes] | IO[str]) -> str:
    """The file's text as a spreadsheet saved it (UTF-8 with or without BOM, UTF-16), or CsvFileRejected."""
    data = file.read(MAX_FILE_BYTES + 1)
    too_large = f"The file is larger than {MAX_FILE_BYTES // (1024 * 1024)} MB; split it into smaller files."
    if len(data) > MAX_FILE_BYTES:
        raise CsvFileRejected(too_large)
    not_csv = (
        "This is not a CSV file (it looks like a binary file, such as an Excel workbook). "
        "In your spreadsheet choose “Save as” and “CSV UTF-8 (Comma delimited)” and upload that file."
    )
    if isinstance(data, bytes):
        if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            try:
                text = data.decode("utf-16")
            except UnicodeDecodeError as exc:
                raise CsvFileRejected(not_csv) from exc
        else:
            if b"\x00" in data:
                raise CsvFileRejected(not_csv)
            try:
                text = data.decode("utf-8-sig")
            except UnicodeDecodeError as exc:
                line = data.count(b"\n", 0, exc.start) + 1
                raise CsvFileRejected(
                    f"The file is not UTF-8 text (the first unreadable character is on line {line}). "
                    "In Excel choose “CSV UTF-8 (Comma delimited)” when saving; in other programs pick "
                    "the UTF-8 encoding."
                ) from exc
    else:
        text = data
    text = text.removeprefix("\ufeff")
    if "\x00" in text:
        raise CsvFileRejected(not_csv)
    if not text.strip():
        raise CsvFileRejected("The file is empty.")
    return text


def _parse_rows(text: str, region: str | None, report: ImportReport) -> list[_Row]:
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=_sniff_delimiter(text), strict=True)
    header: list[str] | None = None
    header_line = 0
    columns: dict[str, int] = {}
    rows: list[_Row] = []
    first_line_of_phone: dict[str, int] = {}
    data_rows = 0
    previous_end = 0
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            raise CsvFileRejected(
                f"Line {previous_end + 1} is not valid CSV ({exc}). A value containing quotes, the "
                "separator or a line break must be enclosed in double quotes, with inner quotes doubled."
            ) from exc
        line = previous_end + 1  # a quoted value may span lines: errors point at the row's first line
        previous_end = reader.line_num
        if not any(cell.strip() for cell in cells):
            continue  # blank lines, and the ",,,," rows spreadsheets leave behind deleted rows
        if header is None:
            header, header_line = cells, line
            columns = _map_header(header, report)
            continue
        data_rows += 1
        if data_rows > MAX_ROWS:
            raise CsvFileRejected(
                f"The file has more than {MAX_ROWS:,} contacts; split it into smaller files."
            )
        row, errors = _validate_row(line, cells, len(header), columns, region, first_line_of_phone)
        if errors:
            report.failed += 1
            report.errors.extend(errors)
        elif row is not None:
            rows.append(row)
    if header is None:
        raise CsvFileRejected("The file is empty.")
    if not data_rows:
        raise CsvFileRejected(f"The file has a header on line {header_line} but no contacts below it.")
    return rows


def _sniff_delimiter(text: str) -> str:
    # Excel in many European locales saves "CSV" with semicolons, and "Unicode text" with tabs; the
    # header line tells them apart without guessing from the data.
    first_line = re.split(r"\r\n|\r|\n", text.lstrip("\r\n"), maxsplit=1)[0]
    best, best_score = ",", 0
    for delimiter in (",", ";", "\t"):
        names = [_canonical_column(cell) for cell in next(csv.reader([first_line], delimiter=delimiter))]
        score = sum(name in IMPORT_COLUMNS for name in names)
        if score > best_score:
            best, best_score = delimiter, score
    return best


def _canonical_column(name: str) -> str:
    name = re.sub(r"[\s\-]+", "_", name.strip().lower())
    return COLUMN_ALIASES.get(name, name)


def _map_header(header: list[str], report: ImportReport) -> dict[str, int]:
    columns: dict[str, int] = {}
    for index, raw in enumerate(header):
        name = _canonical_column(raw)
        if not name:
            continue
        if name in IMPORT_COLUMNS:
            if name in columns:
                raise CsvFileRejected(
                    f"The header names the {name} column twice (columns {columns[name] + 1} and "
                    f"{index + 1}); keep one of them."
                )
            columns[name] = index
        elif name not in EXPORT_ONLY_COLUMNS:
            report.ignored_columns.append(raw.strip())
    if "phone_number" not in columns:
        found = ", ".join(cell.strip() for cell in header[:10] if cell.strip())
        raise CsvFileRejected(
            "The file has no phone_number column, so nothing was imported. The first line must name "
            f"the columns, e.g. “phone_number,profile_name,tags” (found: {found or 'nothing'})."
        )
    return columns


def _validate_row(
    line: int,
    cells: list[str],
    header_width: int,
    columns: dict[str, int],
    region: str | None,
    first_line_of_phone: dict[str, int],
) -> tuple[_Row | None, list[RowError]]:
    if any(cell.strip() for cell in cells[header_width:]):
        # The values no longer line up with the header, so any per-column message would mislead.
        return None, [
            RowError(
                line,
                "",
                f"This row has {len(cells)} values but the header names {header_width} columns. "
                "A value containing the separator must be enclosed in double quotes.",
            )
        ]

    def cell(name: str) -> str:
        index = columns.get(name)
        if index is None or index >= len(cells):
            return ""
        return csv_unneutralize(cells[index].strip())

    errors: list[RowError] = []
    phone_number = _validate_phone(line, cell("phone_number"), region, first_line_of_phone, errors)

    fields: dict[str, str] = {}
    for name in IMPORT_FIELDS:
        value = cell(name)
        if not value:
            continue
        if name == "timezone":
            canonical = _timezones_by_lowercase_name().get(value.lower())
            if canonical is None:
                errors.append(
                    RowError(line, name, f"“{value}” is not an IANA time zone name (e.g. America/New_York).")
                )
                continue
            value = canonical
        else:
            try:
                Contact._meta.get_field(name).clean(value, None)
            except ValidationError as exc:
                errors.append(RowError(line, name, " ".join(exc.messages)))
                continue
        fields[name] = value

    tags = _split_tags(cell("tags"))
    for tag in tags or ():
        slug = slugify(tag, allow_unicode=True)
        if not slug:
            errors.append(RowError(line, "tags", f"“{tag}” cannot be a tag: it has no letters or digits."))
        elif len(slug) > 64:
            errors.append(RowError(line, "tags", f"The tag “{tag[:20]}…” is longer than 64 characters."))

    if errors or phone_number is None:
        return None, errors
    return _Row(line=line, phone_number=phone_number, fields=fields, tags=tags), []


def _validate_phone(
    line: int, raw: str, region: str | None, first_line_of_phone: dict[str, int], errors: list[RowError]
) -> str | None:
    if not raw:
        errors.append(RowError(line, "phone_number", "The phone number is missing."))
        return None
    try:
        e164 = phone_normalize(raw, region=region)
    except ValidationError as exc:
        message = " ".join(exc.messages)
        if SCIENTIFIC_NOTATION.fullmatch(raw):
            message = (
                f"“{raw}” is a phone number a spreadsheet turned into scientific notation, and its "
                "digits are lost. Format the column as Text, re-enter the numbers and export again."
            )
        errors.append(RowError(line, "phone_number", message))
        return None
    first_line = first_line_of_phone.setdefault(e164, line)
    if first_line != line:
        errors.append(
            RowError(
                line,
                "phone_number",
                f"Duplicate phone number: {e164} is already on line {first_line} of this file.",
            )
        )
        return None
    return e164


def _split_tags(cell: str) -> list[str] | None:
    if not cell:
        return None
    return [name.strip() for name in TAG_SEPARATORS.split(cell) if name.strip()] or None


@cache
def _timezones_by_lowercase_name() -> dict[str, str]:
    return {name.lower(): name for name in iana_timezones()}


def csv_unneutralize(value: str) -> str:
    # Undo the apostrophe our export puts before formula-like values, so an export imports unchanged.
    if value.startswith("'") and value[1:2] and value[1] in "".join(FORMULA_TRIGGERS):
        return value[1:]
    return value


def _save_rows(rows: list[_Row], *, update_existing: bool, dry_run: bool, report: ImportReport) -> None:
    for start in range(0, len(rows), WRITE_BATCH_SIZE):
        batch = rows[start : start + WRITE_BATCH_SIZE]
        # One transaction per batch, not per file: SQLite has a single writer, and webhook intake must
        # not wait minutes for a large import. Re-running an interrupted import is safe, since rows are
        # matched by phone number.
        with transaction.atomic():
            existing = {
                contact.phone_number: contact
                for contact in Contact.objects.filter(
                    phone_number__in=[row.phone_number for row in batch]
                ).prefetch_related("tags")
            }
            for row in batch:
                _save_row_reporting(row, existing.get(row.phone_number), update_existing, report)
            if dry_run:
                transaction.set_rollback(True)


def _save_row_reporting(
    row: _Row, contact: Contact | None, update_existing: bool, report: ImportReport
) -> None:
    try:
        with transaction.atomic():
            outcome = _save_row(row, contact, update_existing=update_existing)
    except ValidationError as exc:
        report.failed += 1
        report.errors.extend(_row_errors(row.line, exc))
    except IntegrityError:
        report.failed += 1
        report.errors.append(
            RowError(
                row.line,
                "phone_number",
                "This contact was changed by someone else while the file was imported; import the file again.",
            )
        )
    else:
        setattr(report, outcome, getattr(report, outcome) + 1)


def _save_row(
    row: _Row, contact: Contact | None, *, update_existing: bool
) -> Literal["created", "updated", "unchanged", "skipped"]:
    if contact is None:
        contact_create(phone_number=row.phone_number, tags=row.tags or (), **row.fields)
        return "created"
    if not update_existing:
        return "skipped"
    changes = {name: value for name, value in row.fields.items() if getattr(contact, name) != value}
    tags = row.tags
    if tags is not None:
        current = {tag.name for tag in contact.tags.all()}
        if {slugify(name, allow_unicode=True) for name in tags} == current:
            tags = None
    if not changes and tags is None:
        return "unchanged"
    contact_update(contact=contact, tags=tags, **changes)
    return "updated"


def _row_errors(line: int, exc: ValidationError) -> list[RowError]:
    if not hasattr(exc, "error_dict"):
        return [RowError(line, "", " ".join(exc.messages))]
    return [
        RowError(line, "" if name == NON_FIELD_ERRORS else name, " ".join(messages))
        for name, messages in exc.message_dict.items()
    ]


# --- Export ---------------------------------------------------------------------------------------


def contact_csv_export(*, contacts: QuerySet[Contact], stream: IO[str]) -> int:
    """Write `contacts` as CSV (the EXPORT_COLUMNS) to a text stream; return how many were written."""
    writer = csv.writer(stream)
    writer.writerow(EXPORT_COLUMNS)
    count = 0
    for contact in _iterate(contacts):
        writer.writerow(_export_row(contact))
        count += 1
    return count


def contact_csv_export_lines(*, contacts: QuerySet[Contact], lines_per_chunk: int = 500) -> Iterator[str]:
    """The same CSV as contact_csv_export, as text chunks of whole lines (header first), for a
    StreamingHttpResponse. Contacts are read in chunks, so memory stays flat however many there are.

    Cells that a spreadsheet would run as a formula (starting with =, +, -, @, tab or carriage return)
    get a leading apostrophe; the import removes it again. Phone numbers in E.164 start with "+" but
    are left alone: they are validated digits, and a spreadsheet reads them as text anyway.
    """
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(EXPORT_COLUMNS)
    for count, contact in enumerate(_iterate(contacts), start=1):
        writer.writerow(_export_row(contact))
        if count % lines_per_chunk == 0:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


def _iterate(contacts: QuerySet[Contact]) -> Iterator[Contact]:
    return contacts.prefetch_related("tags").iterator(chunk_size=EXPORT_CHUNK_SIZE)


def _export_row(contact: Contact) -> list[str]:
    phone = contact.phone_number
    return [
        phone if E164.fullmatch(phone) else _neutralize(phone),
        *(_neutralize(getattr(contact, name)) for name in IMPORT_FIELDS),
        _neutralize(";".join(tag.name for tag in contact.tags.all())),
        timezone.localtime(contact.created_at).isoformat(timespec="seconds"),
    ]


def _neutralize(value: str) -> str:
    return "'" + value if value.startswith(FORMULA_TRIGGERS) else value
