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
a chunked cursor elsewhere) and encoded by hand, so memory stays flat whatever the ledger's size:
bench/consent_export.py measures the speed beside PostgreSQL's own COPY.

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
from json.encoder import encode_basestring_ascii
from pathlib import Path
from typing import Any, BinaryIO

from django.db import connection, models, transaction
from django.db.models import Value
from django.db.models.functions import Cast, Coalesce
from django.utils import timezone
from psycopg import sql as psycopg_sql

from compliance.audit import audit_record
from compliance.ledger import GENESIS_HASH, HASHED_FIELDS, content_hash
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

#: Columns of a jsonl line (and the first columns of a csv row).
EXPORT_FIELDS = (*HASHED_FIELDS, "hash")
CSV_FIELDS = (*EXPORT_FIELDS, "purpose_label", "action_label", "source_label")
#: The model's column names, in HASHED_FIELDS order ("subject" is the subject's id).
_DB_COLUMNS = tuple("subject_id" if name == "subject" else name for name in EXPORT_FIELDS)
#: Rows fetched from the database per round trip, and rows per chunk of bytes handed to the writer.
FETCH_ROWS = 5000
CHUNK_ROWS = 1000
CSV_BOM = "\ufeff"


class ExportError(ValueError):
    """An export was asked for with impossible options."""


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


# --- Encoding -------------------------------------------------------------------------------------


def jsonl_lines(rows: Iterable[tuple]) -> Iterator[str]:
    """One line per row, each parsing to exactly `{**ledger.event_content(event), "hash": event.hash}`.

    Built by hand, as this is the hot path of a million-row export: the run of low-cardinality columns
    (purpose to text_sha256) is formatted once per distinct combination and reused, and every string
    not known to be safe goes through the json module's own C escaping."""
    q = encode_basestring_ascii
    middles: dict[tuple, str] = {}
    for (
        sequence, subject, purpose, action, source, awaiting, text_version, text_sha256, ciphertext,
        staff_user_id, occurred_at, recorded_at, prev_hash, hash_,
    ) in rows:  # fmt: skip
        key = (purpose, action, source, awaiting, text_version, text_sha256)
        middle = middles.get(key)
        if middle is None:
            if len(middles) > 10_000:  # a ledger of countless text versions: stay bounded
                middles.clear()
            middle = middles[key] = (
                f'"purpose":{q(purpose)},"action":{q(action)},"source":{q(source)},'
                f'"awaiting_confirmation":{"true" if awaiting else "false"},'
                f'"text_version":{q(text_version)},"text_sha256":{q(text_sha256)},'
            )
        yield (
            f'{{"sequence":{sequence},"subject":"{subject}",{middle}"evidence_ciphertext":{q(ciphertext)},'
            f'"staff_user_id":{"null" if staff_user_id is None else staff_user_id},'
            f'"occurred_at":"{occurred_at}","recorded_at":"{recorded_at}",'
            f'"prev_hash":{q(prev_hash)},"hash":{q(hash_)}}}\n'
        )


_LABELS = {
    "purpose": dict(Purpose.choices),
    "action": dict(ConsentAction.choices),
    "source": dict(ConsentSource.choices),
}


def csv_chunks(rows: Iterable[tuple], *, chunk_rows: int = CHUNK_ROWS) -> Iterator[tuple[str, int]]:
    """(text, rows in it) pieces of a CSV file: BOM and header first, then `chunk_rows` rows a piece."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(CSV_FIELDS)
    yield CSV_BOM + buffer.getvalue(), 0
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
            yield buffer.getvalue(), pending
            buffer.seek(0)
            buffer.truncate()
            pending = 0
    if pending:
        yield buffer.getvalue(), pending


def jsonl_chunks(rows: Iterable[tuple], *, chunk_rows: int = CHUNK_ROWS) -> Iterator[tuple[str, int]]:
    lines: list[str] = []
    for line in jsonl_lines(rows):
        lines.append(line)
        if len(lines) == chunk_rows:
            yield "".join(lines), chunk_rows
            lines = []
    if lines:
        yield "".join(lines), len(lines)


_ENCODERS = {ExportFormat.JSONL: jsonl_chunks, ExportFormat.CSV: csv_chunks}


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
        rows = export_rows(self.filters, head_sequence=self.head_sequence, fetch_rows=fetch_rows)
        encoded = _ENCODERS[self.format](rows, chunk_rows=chunk_rows)
        complete = False
        try:
            for text, count in encoded:
                data = text.encode()
                self._digest.update(data)
                self.row_count += count
                yield data
            complete = True
        finally:
            # Release the database cursor (or COPY) now, not at garbage collection: the connection is
            # needed right away to record the export.
            encoded.close()
            if hasattr(rows, "close"):
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
    with path.open("wb") as stream:
        record = export.write_to(stream)
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
        return FileVerifyResult(
            ok=False,
            count=count,
            whole_chain=whole_chain,
            first_sequence=first,
            last_sequence=previous[0] if previous else None,
            last_hash=previous[1] if previous else GENESIS_HASH,
            links_checked=checked,
            links_unchecked=unchecked,
            problem=broken.problem,
            bad_sequence=broken.sequence,
            line=line,
        )
    return FileVerifyResult(
        ok=True,
        count=count,
        whole_chain=whole_chain,
        first_sequence=first,
        last_sequence=previous[0] if previous else None,
        last_hash=previous[1] if previous else GENESIS_HASH,
        links_checked=checked,
        links_unchecked=unchecked,
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
