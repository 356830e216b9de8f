"""Exports of the consent ledger, and checking an exported file without the database.

Formats
    jsonl   one JSON object per line holding exactly `ledger.HASHED_FIELDS` + "hash", in sequence
            order: anyone can recompute each hash with the rule in compliance/ledger.py (no key, no
            database), and an unfiltered file links from the genesis hash to the ledger head.
    csv     the same columns plus human labels (purpose, action, source) for spreadsheets. Starts with
            a UTF-8 byte-order mark so Excel reads it as UTF-8.

Every export is bounded by the ledger head read when it starts (`sequence <= head`): the ledger is
append-only, so that set of rows, and therefore the row count, can never change afterwards, and the
manifest's head describes exactly the chain the file ends on. Rows are streamed (COPY on PostgreSQL,
a chunked cursor elsewhere), so memory stays flat whatever the ledger's size: bench/consent_export.py
measures the speed beside PostgreSQL's own COPY.

A jsonl line is not formatted at export time: each event stores its line (`ConsentEvent.export_line`,
written by ledger_append with the one encoder, `ledger.export_lines`), and the export streams those
bytes. `ledger_verify` checks every stored line against the event's columns, so a line that says
something else is reported as tampering. An event without a stored line stops the export with
ExportLineMissing (never a guessed line); after the migration that added the column none can exist.
csv rows are formatted here from the columns.

A filtered jsonl file is not a contiguous chain. Its verifier checks each event's own hash, and the
link between any two events that are adjacent in the ledger; the links across gaps are reported as not
checkable. Only an unfiltered export proves the whole chain (and, with its manifest, that no line was
added, removed or reordered).
"""

import csv
import hashlib
import io
import json
import logging
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any, BinaryIO

from django.db import connection, models, transaction
from django.db.models import Value
from django.db.models.functions import Cast, Coalesce, Concat, NullIf
from django.utils import timezone
from psycopg import sql as psycopg_sql

from compliance.audit import audit_record
from compliance.ledger import EXPORT_FIELDS, GENESIS_HASH, content_hash
from compliance.models import (
    AuditAction,
    ConsentAction,
    ConsentEvent,
    ConsentExport,
    ConsentSource,
    ExportFormat,
    LedgerHead,
    Purpose,
)

logger = logging.getLogger(__name__)

#: A jsonl line holds EXPORT_FIELDS (imported above); a csv row those plus labels.
CSV_FIELDS = (*EXPORT_FIELDS, "purpose_label", "action_label", "source_label")
#: The model's column names, in HASHED_FIELDS order ("subject" is the subject's id).
_DB_COLUMNS = tuple("subject_id" if name == "subject" else name for name in EXPORT_FIELDS)
#: Rows fetched from the database per round trip, and rows per chunk of bytes handed to the writer.
FETCH_ROWS = 5000
CHUNK_ROWS = 1000
CSV_BOM = "\ufeff"


class ExportError(ValueError):
    """An export was asked for with impossible options."""


class ExportLineMissing(RuntimeError):
    """An event has no stored export line (written behind ledger_append's back): the export stops
    rather than hand out a line nobody built from the event."""

    def __init__(self, sequence: int) -> None:
        super().__init__(
            f"event #{sequence} has no stored export line, so the jsonl export stopped there; "
            "`verify_consent_ledger` checks the whole ledger"
        )
        self.sequence = sequence


# --- What to export -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExportFilters:
    """`since` / `until` are whole days (inclusive) of `occurred_at` in settings.TIME_ZONE."""

    since: date | None = None
    until: date | None = None
    purpose: str = ""

    def __post_init__(self) -> None:
        if self.purpose and self.purpose not in Purpose.values:
            raise ExportError(f"Unknown purpose {self.purpose!r}; use one of {', '.join(Purpose.values)}.")
        if self.since and self.until and self.since > self.until:
            raise ExportError("since is after until: no event can match.")

    @property
    def filtered(self) -> bool:
        return bool(self.since or self.until or self.purpose)

    def as_dict(self) -> dict[str, str]:
        """Only the filters that are set; `{}` means the whole ledger."""
        values = {"since": self.since, "until": self.until, "purpose": self.purpose}
        return {k: v.isoformat() if isinstance(v, date) else v for k, v in values.items() if v}

    def describe(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.as_dict().items()) or "none (whole ledger)"

    def apply(self, events: models.QuerySet) -> models.QuerySet:
        zone = timezone.get_default_timezone()
        if self.since:
            events = events.filter(occurred_at__gte=datetime.combine(self.since, time.min, tzinfo=zone))
        if self.until:
            day_after = self.until + timedelta(days=1)
            events = events.filter(occurred_at__lt=datetime.combine(day_after, time.min, tzinfo=zone))
        if self.purpose:
            events = events.filter(purpose=self.purpose)
        return events


def ledger_head() -> tuple[int, str]:
    """(sequence, hash) of the chain's end; (0, GENESIS_HASH) for an empty ledger."""
    return LedgerHead.objects.filter(pk=1).values_list("sequence", "hash").first() or (0, GENESIS_HASH)


class _UtcIsoText(models.Func):
    """A timestamp as the text Python's `isoformat(timespec="microseconds")` gives for its UTC value,
    which is what ledger.event_content hashes. PostgreSQL formats it several times faster than
    psycopg parses timestamps through Django's time-zone-aware loader (pure Python) and we print them."""

    template = "to_char(%(expressions)s AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"+00:00\"')"
    output_field = models.TextField()


def export_rows(
    filters: ExportFilters, *, head_sequence: int, fetch_rows: int = FETCH_ROWS
) -> Iterator[tuple]:
    """Rows in EXPORT_FIELDS order, oldest first, as JSON-ready values: `sequence` and `staff_user_id`
    as digits (int or str) or None, `awaiting_confirmation` a bool, everything else text exactly as
    `ledger.event_content` writes it. Streamed: memory stays flat whatever the ledger's size."""
    events = filters.apply(ConsentEvent.objects.filter(sequence__lte=head_sequence)).order_by("sequence")
    if connection.vendor == "postgresql":
        as_text = {
            "subject_id": Cast("subject_id", models.TextField()),
            "staff_user_id": Coalesce(
                Cast("staff_user_id", models.TextField()), Value(""), output_field=models.TextField()
            ),
            "occurred_at": _UtcIsoText("occurred_at"),
            "recorded_at": _UtcIsoText("recorded_at"),
        }
        return _copy_rows(events.values_list(*[as_text.get(name, name) for name in _DB_COLUMNS]))
    return _rows_as_text(events.values_list(*_DB_COLUMNS).iterator(chunk_size=fetch_rows))


_COPY_ESCAPE = re.compile(r"\\(.)")
_COPY_ESCAPES = {"b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v"}


def _copy_unescape(field: str) -> str:
    """COPY's text format writes a backslash, tab, newline, ... inside a value as a backslash sequence."""
    if "\\" not in field:
        return field
    return _COPY_ESCAPE.sub(lambda match: _COPY_ESCAPES.get(match[1], match[1]), field)


def _copy_rows(rows: models.QuerySet) -> Iterator[tuple]:
    """The query's rows through `COPY (...) TO STDOUT`, split by hand.

    PostgreSQL streams while we encode, with no FETCH round trips, and memory stays flat (the socket
    applies back-pressure); one statement, so one snapshot. Every column arrives as text that is
    already what the JSON line needs, so a row is one decode and one split: several times faster
    than a server-side cursor through the ORM, whose time-zone-aware timestamp parsing is pure Python
    (bench/consent_export.py). No column can be NULL (staff_user_id comes as ""), so a backslash in a
    row always starts an escape sequence, and only such rare rows pay for unescaping.

    Closing the generator early cancels the COPY; the transaction (a savepoint when nested) then rolls
    back, so the connection is usable again for recording the interrupted export."""
    query, params = rows.query.sql_with_params()
    statement = psycopg_sql.SQL("COPY ({}) TO STDOUT").format(psycopg_sql.SQL(query))
    with transaction.atomic(), connection.cursor() as cursor, cursor.cursor.copy(statement, params) as copy:
        for data in copy:
            line = bytes(data).decode()
            fields = line[:-1].split("\t")
            if "\\" in line:
                fields = [_copy_unescape(field) for field in fields]
            (
                sequence, subject, purpose, action, source, awaiting, text_version, text_sha256,
                ciphertext, staff_user_id, occurred_at, recorded_at, prev_hash, hash_,
            ) = fields  # fmt: skip
            yield (
                sequence, subject, purpose, action, source, awaiting == "t", text_version, text_sha256,
                ciphertext, staff_user_id or None, occurred_at, recorded_at, prev_hash, hash_,
            )  # fmt: skip


def _rows_as_text(rows: Iterable[tuple]) -> Iterator[tuple]:
    """Model values (UUID, datetimes) as the text the hash covers (databases other than PostgreSQL)."""
    for (
        sequence, subject, purpose, action, source, awaiting, text_version, text_sha256, ciphertext,
        staff_user_id, occurred_at, recorded_at, prev_hash, hash_,
    ) in rows:  # fmt: skip
        yield (
            sequence, str(subject), purpose, action, source, awaiting, text_version, text_sha256, ciphertext,
            staff_user_id, occurred_at.isoformat(timespec="microseconds"),
            recorded_at.isoformat(timespec="microseconds"), prev_hash, hash_,
        )  # fmt: skip


# --- Stored jsonl lines ------------------------------------------------------------------------


def jsonl_chunks(
    filters: ExportFilters, *, head_sequence: int, fetch_rows: int = FETCH_ROWS, chunk_rows: int = CHUNK_ROWS
) -> Iterator[tuple[bytes, int]]:
    """(bytes, rows in them) pieces of a jsonl file: the events' stored lines, oldest first, each
    ended by a newline, `chunk_rows` rows a piece."""
    events = filters.apply(ConsentEvent.objects.filter(sequence__lte=head_sequence)).order_by("sequence")
    if connection.vendor == "postgresql":
        return _copy_stored_lines(events, chunk_rows=chunk_rows)
    return _fetch_stored_lines(events, fetch_rows=fetch_rows, chunk_rows=chunk_rows)


#: A row of the COPY below starting with this is "!<sequence>": that event has no stored line. A real
#: line starts with "{".
_NO_LINE = ord("!")


def _copy_stored_lines(events: models.QuerySet, *, chunk_rows: int) -> Iterator[tuple[bytes, int]]:
    """`COPY (SELECT export_line ...) TO STDOUT`, the bytes passed through almost untouched.

    A stored line is ASCII JSON: control characters, tabs and newlines inside values are json escapes,
    so the only character COPY's text format escapes in it is the backslash (written as two). Undoing
    that on a whole piece at once is exact, since a doubled backslash never spans two rows (each ends
    with a newline). One statement, so one snapshot; the socket applies back-pressure, so memory stays
    flat. Closing the generator early cancels the COPY and rolls back its (nested) transaction, so the
    connection is usable again for recording the interrupted export."""
    stored_or_marker = Coalesce(
        NullIf("export_line", Value("")),
        Concat(Value(chr(_NO_LINE)), Cast("sequence", models.TextField())),
        output_field=models.TextField(),
    )
    query, params = events.values_list(stored_or_marker).query.sql_with_params()
    statement = psycopg_sql.SQL("COPY ({}) TO STDOUT").format(psycopg_sql.SQL(query))
    with transaction.atomic(), connection.cursor() as cursor, cursor.cursor.copy(statement, params) as copy:
        rows: list = []
        for data in copy:
            if data[0] == _NO_LINE:
                raise ExportLineMissing(int(bytes(data[1:-1])))
            rows.append(data)
            if len(rows) == chunk_rows:
                yield _copy_unescape_backslashes(b"".join(rows)), chunk_rows
                rows = []
        if rows:
            yield _copy_unescape_backslashes(b"".join(rows)), len(rows)


def _copy_unescape_backslashes(data: bytes) -> bytes:
    return data.replace(b"\\\\", b"\\") if b"\\" in data else data


def _fetch_stored_lines(
    events: models.QuerySet, *, fetch_rows: int, chunk_rows: int
) -> Iterator[tuple[bytes, int]]:
    lines: list[str] = []
    for sequence, line in events.values_list("sequence", "export_line").iterator(chunk_size=fetch_rows):
        if not line:
            raise ExportLineMissing(sequence)
        lines.append(line)
        if len(lines) == chunk_rows:
            yield ("\n".join(lines) + "\n").encode(), chunk_rows
            lines = []
    if lines:
        yield ("\n".join(lines) + "\n").encode(), len(lines)


# --- csv ------------------------------------------------------------------------------------------


_LABELS = {
    "purpose": dict(Purpose.choices),
    "action": dict(ConsentAction.choices),
    "source": dict(ConsentSource.choices),
}


def csv_chunks(rows: Iterable[tuple], *, chunk_rows: int = CHUNK_ROWS) -> Iterator[tuple[bytes, int]]:
    """(bytes, rows in them) pieces of a CSV file: BOM and header first, then `chunk_rows` rows a piece."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(CSV_FIELDS)
    yield (CSV_BOM + buffer.getvalue()).encode(), 0
    purposes, actions, sources = _LABELS["purpose"], _LABELS["action"], _LABELS["source"]
    pending = 0
    buffer.seek(0)
    buffer.truncate()
    for row in rows:
        (
            sequence, subject, purpose, action, source, awaiting, text_version, text_sha256, ciphertext,
            staff_user_id, occurred_at, recorded_at, prev_hash, hash_,
        ) = row  # fmt: skip
        writer.writerow(
            (
                sequence, subject, purpose, action, source, "true" if awaiting else "false", text_version,
                text_sha256, ciphertext, "" if staff_user_id is None else staff_user_id, occurred_at,
                recorded_at, prev_hash, hash_, purposes.get(purpose, purpose), actions.get(action, action),
                sources.get(source, source),
            )
        )  # fmt: skip
        pending += 1
        if pending == chunk_rows:
            yield buffer.getvalue().encode(), pending
            buffer.seek(0)
            buffer.truncate()
            pending = 0
    if pending:
        yield buffer.getvalue().encode(), pending


# --- One export run -------------------------------------------------------------------------------


class LedgerExport:
    """One export: read the head, stream the bytes (`chunks()`, once), record it as a ConsentExport.

    The record is written when the stream ends, because only then is the SHA-256 of the bytes known;
    a stream that stops early (a download cancelled half way) is recorded too, as incomplete, with the
    count and hash of what was handed out. The "export" audit entry is written up front by
    `export_begin`, with the row count, so even an export that never finishes leaves a trace.
    """

    def __init__(self, *, format: str, filters: ExportFilters | None = None, user=None) -> None:
        if format not in ExportFormat.values:
            raise ExportError(f"Unknown format {format!r}; use one of {', '.join(ExportFormat.values)}.")
        self.format = format
        self.filters = filters or ExportFilters()
        authenticated = user is not None and getattr(user, "is_authenticated", False)
        self.user_id = user.pk if authenticated else None
        self.username = user.get_username() if authenticated else "cli"
        self.started_at = timezone.now()
        self.head_sequence, self.head_hash = ledger_head()
        self.row_count = 0
        self.record: ConsentExport | None = None
        self.expected_row_count: int | None = None
        self._digest = hashlib.sha256()
        self._consumed = False

    def expected_rows(self) -> int:
        """Exact even before streaming: the rows up to the head can never change."""
        return self.filters.apply(ConsentEvent.objects.filter(sequence__lte=self.head_sequence)).count()

    def chunks(self, *, fetch_rows: int = FETCH_ROWS, chunk_rows: int = CHUNK_ROWS) -> Iterator[bytes]:
        if self._consumed:
            raise RuntimeError("An export streams once; start another LedgerExport.")
        self._consumed = True
        rows = None
        if self.format == ExportFormat.JSONL:
            encoded = jsonl_chunks(
                self.filters, head_sequence=self.head_sequence, fetch_rows=fetch_rows, chunk_rows=chunk_rows
            )
        else:
            rows = export_rows(self.filters, head_sequence=self.head_sequence, fetch_rows=fetch_rows)
            encoded = csv_chunks(rows, chunk_rows=chunk_rows)
        complete = False
        try:
            for data, count in encoded:
                self._digest.update(data)
                self.row_count += count
                yield data
            complete = True
        finally:
            # Release the database cursor (or COPY) now, not at garbage collection: the connection is
            # needed right away to record the export.
            encoded.close()
            if rows is not None and hasattr(rows, "close"):
                rows.close()
            self._finish(complete=complete)

    def write_to(self, stream: BinaryIO) -> ConsentExport:
        for data in self.chunks():
            stream.write(data)
        if self.record is None:  # pragma: no cover - _finish(complete=True) raises instead
            raise RuntimeError("The export finished without being recorded.")
        return self.record

    @property
    def sha256(self) -> str:
        return self._digest.hexdigest()

    def _finish(self, *, complete: bool) -> None:
        try:
            self.record = ConsentExport.objects.create(
                user_id=self.user_id,
                username=self.username,
                created_at=self.started_at,
                format=self.format,
                filters=self.filters.as_dict(),
                row_count=self.row_count,
                sha256=self.sha256,
                head_sequence=self.head_sequence,
                head_hash=self.head_hash,
                complete=complete,
            )
        except Exception:
            if complete:
                raise
            # Already failing (or the client went away): keep the original error, log this one.
            logger.exception("Could not record an interrupted consent export")


def export_begin(
    *, format: str, filters: ExportFilters | None = None, user=None, request=None
) -> LedgerExport:
    """Start an export and write its "export" audit entry (who, what, how many rows)."""
    user = user if user is not None else getattr(request, "user", None)
    export = LedgerExport(format=format, filters=filters, user=user)
    export.expected_row_count = export.expected_rows()
    audit_record(
        action=AuditAction.EXPORT,
        object_type=ConsentEvent,
        summary=(
            f"{export.format} export of {export.expected_row_count} events up to ledger head "
            f"#{export.head_sequence}; filters: {export.filters.describe()}"
        ),
        request=request,
        user=user,
    )
    return export


def export_manifest(record: ConsentExport, *, file_name: str = "") -> dict[str, Any]:
    """What a recipient needs to check a file: its fingerprint, size in rows, and what it claims to be."""
    manifest: dict[str, Any] = {
        "export_id": record.pk,
        "format": record.format,
        "rows": record.row_count,
        "sha256": record.sha256,
        "complete": record.complete,
        "filters": record.filters,
        "whole_chain": not record.filters,
        "ledger_head": {"sequence": record.head_sequence, "hash": record.head_hash},
        "columns": list(CSV_FIELDS if record.format == ExportFormat.CSV else EXPORT_FIELDS),
        "generated_at": record.created_at.isoformat(),
        "generated_by": {"user_id": record.user_id, "username": record.username},
    }
    if file_name:
        manifest["file"] = file_name
    return manifest


def manifest_path_for(path: str | Path) -> Path:
    path = Path(path)
    return path.with_name(path.name + ".manifest.json")


def export_to_path(
    path: str | Path, *, format: str, filters: ExportFilters | None = None, user=None
) -> dict[str, Any]:
    """Write the export to `path` and its manifest to `<path>.manifest.json`; return the manifest."""
    path = Path(path)
    export = export_begin(format=format, filters=filters, user=user)
    # Written beside and renamed when complete: a failed export leaves no file that looks like one.
    partial = path.with_name(path.name + ".partial")
    try:
        with partial.open("wb") as stream:
            record = export.write_to(stream)
        partial.replace(path)
    finally:
        partial.unlink(missing_ok=True)
    manifest = export_manifest(record, file_name=path.name)
    manifest_path_for(path).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def export_to_stream(
    stream: BinaryIO, *, format: str, filters: ExportFilters | None = None, user=None
) -> dict[str, Any]:
    """Write the export to an open binary stream (e.g. stdout); return the manifest."""
    record = export_begin(format=format, filters=filters, user=user).write_to(stream)
    return export_manifest(record)


# --- Offline verification (no database) ------------------------------------------------------------


@dataclass(frozen=True)
class FileVerifyResult:
    ok: bool
    count: int
    whole_chain: bool
    first_sequence: int | None = None
    last_sequence: int | None = None
    last_hash: str = GENESIS_HASH
    links_checked: int = 0
    links_unchecked: int = 0
    problem: str = ""
    bad_sequence: int | None = None
    line: int | None = None
    manifest_checks: list[str] = field(default_factory=list)


class _Broken(Exception):
    def __init__(self, problem: str, sequence: int | None) -> None:
        super().__init__(problem)
        self.problem, self.sequence = problem, sequence


def verify_export_contents(
    contents: Iterable[tuple[int, dict[str, Any]]], *, whole_chain: bool = True
) -> FileVerifyResult:
    """Check exported events given as (line number, parsed object), in file order.

    Every event must hold exactly EXPORT_FIELDS and match its own hash, and sequences must rise.
    `whole_chain`: the events must also be the ledger from event #1 on, each linking to the one before.
    Otherwise (a filtered export) links are checked only between events adjacent in the ledger.
    """
    count = checked = unchecked = 0
    first: int | None = None
    previous: tuple[int, str] | None = None  # (sequence, hash) of the line before
    expected = set(EXPORT_FIELDS)
    line = None
    try:
        for line, content in contents:
            if not isinstance(content, dict):
                raise _Broken(f"line {line} is not a JSON object", None)
            sequence = content.get("sequence")
            if not isinstance(sequence, int) or isinstance(sequence, bool):
                raise _Broken(f"line {line} has no integer sequence", None)
            keys = set(content)
            if keys != expected:
                missing, extra = sorted(expected - keys), sorted(keys - expected)
                detail = "; ".join(
                    part
                    for part in (
                        f"missing {', '.join(missing)}" if missing else "",
                        f"unexpected {', '.join(extra)}" if extra else "",
                    )
                    if part
                )
                raise _Broken(f"event #{sequence} (line {line}) has the wrong fields: {detail}", sequence)
            if content_hash(content) != content["hash"]:
                raise _Broken(
                    f"event #{sequence} (line {line}) does not match its hash: it was changed after "
                    "it was recorded",
                    sequence,
                )
            previous_sequence, previous_hash = previous if previous else (0, GENESIS_HASH)
            if sequence <= previous_sequence:
                raise _Broken(
                    f"event #{sequence} (line {line}) is out of order or repeated: it follows "
                    f"event #{previous_sequence}",
                    sequence,
                )
            if sequence == previous_sequence + 1:
                if content["prev_hash"] != previous_hash:
                    before = f"event #{previous_sequence}'s hash" if previous_sequence else "the genesis hash"
                    raise _Broken(
                        f"link broken at event #{sequence} (line {line}): its prev_hash is not {before}",
                        sequence,
                    )
                checked += 1
            elif whole_chain:
                gap = (
                    f"event #{previous_sequence + 1}"
                    if sequence == previous_sequence + 2
                    else f"events #{previous_sequence + 1} to #{sequence - 1}"
                )
                raise _Broken(
                    f"link broken at event #{sequence} (line {line}): {gap} missing from the file",
                    sequence,
                )
            else:
                unchecked += 1
            first = sequence if first is None else first
            previous = (sequence, content["hash"])
            count += 1
    except _Broken as broken:
        problem, bad_sequence, ok = broken.problem, broken.sequence, False
    else:
        problem, bad_sequence, ok, line = "", None, True, None
    return FileVerifyResult(
        ok=ok,
        count=count,
        whole_chain=whole_chain,
        first_sequence=first,
        last_sequence=previous[0] if previous else None,
        last_hash=previous[1] if previous else GENESIS_HASH,
        links_checked=checked,
        links_unchecked=unchecked,
        problem=problem,
        bad_sequence=bad_sequence,
        line=line,
    )


class _Unreadable(Exception):
    pass


def _parsed_lines(path: Path) -> Iterator[tuple[int, Any]]:
    with path.open("rb") as stream:
        for number, raw in enumerate(stream, start=1):
            text = raw.decode("utf-8").rstrip("\r\n")
            if number == 1 and text.lstrip(CSV_BOM).startswith("sequence,"):
                raise _Unreadable("this is a CSV export; only JSONL exports can be verified")
            if not text.strip():
                raise _Unreadable(f"line {number} is empty")
            try:
                yield number, json.loads(text)
            except json.JSONDecodeError as exc:
                raise _Unreadable(f"line {number} is not valid JSON ({exc.msg})") from exc


def verify_export_file(path: str | Path, *, whole_chain: bool = True) -> FileVerifyResult:
    """Verify an exported jsonl file (see verify_export_contents). Reads it line by line."""
    try:
        return verify_export_contents(_parsed_lines(Path(path)), whole_chain=whole_chain)
    except (_Unreadable, UnicodeDecodeError) as exc:
        return FileVerifyResult(ok=False, count=0, whole_chain=whole_chain, problem=str(exc))


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as stream:
        while block := stream.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def manifest_problems(path: str | Path, manifest: dict[str, Any], result: FileVerifyResult) -> list[str]:
    """What in the file disagrees with its manifest (empty: it is the file the manifest describes)."""
    problems = []
    if manifest.get("format") != ExportFormat.JSONL:
        problems.append(f"the manifest describes a {manifest.get('format')!r} file, not jsonl")
    if manifest.get("sha256") != file_sha256(path):
        problems.append("the file's SHA-256 differs from the manifest's: the file is not the one exported")
    if manifest.get("rows") != result.count:
        problems.append(f"the manifest says {manifest.get('rows')} rows, the file has {result.count}")
    if manifest.get("complete") is False:
        problems.append("the manifest says the export stopped before its last row")
    head = manifest.get("ledger_head") or {}
    ends_at = (result.last_sequence or 0, result.last_hash)
    whole = result.ok and not manifest.get("filters") and manifest.get("complete", True)
    if whole and ends_at != (head.get("sequence"), head.get("hash")):
        problems.append(
            f"the file ends at event #{ends_at[0]}, not at the ledger head #{head.get('sequence')} "
            "recorded in the manifest"
        )
    return problems
