"""The hash chain: canonical content, appending under a lock, and verification.

An event's hash is SHA-256 over its canonical JSON (sorted keys, no spaces, UTF-8) which includes the
previous event's hash. The first event links to GENESIS_HASH. Verification needs only the events
themselves (from the database or an exported JSONL file), never a key: ciphertext is hashed as text.

Each event also stores its jsonl export line (`export_line`), built at append time by `export_lines`,
the one encoder of that format, so an export streams stored bytes instead of formatting every row.
The line is derived data, not evidence: verification rebuilds it from the columns and refuses a ledger
whose stored line says anything else, so it can never become a way to show an auditor other content.
"""

import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from json.encoder import encode_basestring_ascii
from typing import Any

from django.db import transaction

from compliance.models import ConsentEvent, LedgerHead

GENESIS_HASH = "0" * 64
#: The fields, in the ledger's own names, that an event's hash covers. Exports carry exactly these.
HASHED_FIELDS = (
    "sequence", "subject", "purpose", "action", "source", "awaiting_confirmation", "text_version",
    "text_sha256", "evidence_ciphertext", "staff_user_id", "occurred_at", "recorded_at", "prev_hash",
)  # fmt: skip
#: The fields of an export line, in order: what the hash covers, then the hash.
EXPORT_FIELDS = (*HASHED_FIELDS, "hash")


def _timestamp(value: datetime) -> str:
    # Always UTC: the database hands timestamps back in UTC whatever offset they were written with.
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def event_content(event: ConsentEvent) -> dict[str, Any]:
    """The hashed content of an event as plain JSON values (what exports write, minus `hash`)."""
    return {
        "sequence": event.sequence,
        "subject": str(event.subject_id),
        "purpose": event.purpose,
        "action": event.action,
        "source": event.source,
        "awaiting_confirmation": event.awaiting_confirmation,
        "text_version": event.text_version,
        "text_sha256": event.text_sha256,
        "evidence_ciphertext": event.evidence_ciphertext,
        "staff_user_id": event.staff_user_id,
        "occurred_at": _timestamp(event.occurred_at),
        "recorded_at": _timestamp(event.recorded_at),
        "prev_hash": event.prev_hash,
    }


def content_hash(content: dict[str, Any]) -> str:
    canonical = json.dumps(
        {k: content[k] for k in HASHED_FIELDS}, sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def export_lines(rows: Iterable[tuple]) -> Iterator[str]:
    """The jsonl export line (without its newline) of each row of EXPORT_FIELDS values, each parsing to
    exactly `{**event_content(event), "hash": event.hash}`; ASCII only (json's own escaping).

    The only encoder of the format: ledger_append stores its line with each event, the migration that
    added `export_line` backfilled with it, and ledger_verify rebuilds lines with it. Rows hold JSON-ready
    values: `sequence` and `staff_user_id` as digits (int or str) or None, `awaiting_confirmation` a
    bool, the rest text as event_content writes it (subject and timestamps need no escaping).

    Built by hand for speed (a backfill or verification of millions of rows): the run of low-cardinality
    columns (purpose to text_sha256) is formatted once per distinct combination and reused, and every
    string not known to be safe goes through the json module's C escaping."""
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
            f'"prev_hash":{q(prev_hash)},"hash":{q(hash_)}}}'
        )


def content_export_line(content: dict[str, Any]) -> str:
    """The export line of an event given as event_content plus "hash"."""
    return next(export_lines([tuple(content[name] for name in EXPORT_FIELDS)]))


def event_export_line(event: ConsentEvent) -> str:
    """The export line an event's columns give (what its `export_line` must hold)."""
    return content_export_line({**event_content(event), "hash": event.hash})


def ledger_append(event: ConsentEvent) -> ConsentEvent:
    """Give `event` the next sequence number, link and hash it, and save it, all under the head lock.
    Must run inside the caller's transaction so the event and its projection commit together."""
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("ledger_append must run inside transaction.atomic()")
    head = LedgerHead.objects.select_for_update().filter(pk=1).first()
    if head is None:
        head, _ = LedgerHead.objects.get_or_create(pk=1, defaults={"sequence": 0, "hash": GENESIS_HASH})
        head = LedgerHead.objects.select_for_update().get(pk=1)
    event.sequence = head.sequence + 1
    event.prev_hash = head.hash
    content = event_content(event)
    event.hash = content_hash(content)
    event.export_line = content_export_line({**content, "hash": event.hash})
    event.save(force_insert=True)
    head.sequence, head.hash = event.sequence, event.hash
    head.save(update_fields=["sequence", "hash"])
    return event


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    count: int
    head_hash: str
    problem: str = ""
    bad_sequence: int | None = None


def ledger_verify_contents(contents: Iterable[dict[str, Any]]) -> VerifyResult:
    """Check a stream of exported events (dicts with HASHED_FIELDS + `hash`), in sequence order.
    An event that also carries `export_line` (events read from the database) must hold exactly the line
    its content gives: that stored line is what exports hand to auditors."""
    previous_hash, expected_sequence, count = GENESIS_HASH, 1, 0
    for content in contents:
        sequence = content.get("sequence")
        missing = [name for name in (*HASHED_FIELDS, "hash") if name not in content]
        if missing:
            return VerifyResult(
                False, count, previous_hash, f"event #{sequence} lacks {', '.join(missing)}", sequence
            )
        if sequence != expected_sequence:
            return VerifyResult(
                False,
                count,
                previous_hash,
                f"expected event #{expected_sequence}, found #{sequence}",
                sequence,
            )
        if content["prev_hash"] != previous_hash:
            return VerifyResult(
                False,
                count,
                previous_hash,
                f"event #{sequence} does not link to the event before it",
                sequence,
            )
        if content_hash(content) != content["hash"]:
            return VerifyResult(
                False, count, previous_hash, f"event #{sequence} does not match its hash", sequence
            )
        if "export_line" in content and content["export_line"] != content_export_line(content):
            problem = (
                f"event #{sequence}'s stored export line is not the line its columns give"
                if content["export_line"]
                else f"event #{sequence} has no stored export line"
            )
            return VerifyResult(
                False,
                count,
                previous_hash,
                f"{problem}: exports would not show what the ledger holds",
                sequence,
            )
        previous_hash, expected_sequence, count = content["hash"], expected_sequence + 1, count + 1
    return VerifyResult(True, count, previous_hash)


def _database_contents(chunk_size: int = 5000) -> Iterator[dict[str, Any]]:
    for event in ConsentEvent.objects.order_by("sequence").iterator(chunk_size=chunk_size):
        yield {**event_content(event), "hash": event.hash, "export_line": event.export_line}


def ledger_verify() -> VerifyResult:
    """Verify the whole ledger in the database, and that the head row agrees with its last event."""
    result = ledger_verify_contents(_database_contents())
    if not result.ok:
        return result
    head = LedgerHead.objects.filter(pk=1).first()
    head_sequence, head_hash = (head.sequence, head.hash) if head else (0, GENESIS_HASH)
    if (head_sequence, head_hash) != (result.count, result.head_hash):
        return VerifyResult(
            False, result.count, result.head_hash, "the ledger head does not match its last event"
        )
    return result
