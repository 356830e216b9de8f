"""Consent ledger export throughput: our jsonl export (compliance.exports, what `export_consent` runs)
of N events to a file, beside PostgreSQL's own `COPY (SELECT ...) TO STDOUT` of the same rows and
columns to a file, in the same run. PostgreSQL only.

The events live in a throwaway database created beside the configured one and dropped afterwards, so
the benchmark never writes into a real ledger (whose rows could not be deleted again). They are seeded
server-side with one `INSERT ... SELECT generate_series(...)` of plausible columns (purposes, actions,
sources, Fernet-sized ciphertext, microsecond timestamps), each with its stored export line built in SQL
from those same columns (plain ASCII values, so no JSON escaping is needed); seeding then checks a sample
of rows against the Python encoder (ledger.export_lines), so the export writes what ledger_append would
have stored. Their hashes do not chain: this measures throughput, and `ledger_verify` would reject the
seeded ledger.

The export streams the stored lines (one column), the baseline is still COPY of the 14 columns they are
made of: the comparison is with PostgreSQL handing out the same rows' content by itself.

Each side runs in a child process of its own, so each peak RSS (ru_maxrss) is that side's alone.
Both include the process's footprint before the first row (`rss_before_mb`: Python, Django and the
project's imports, ~75 MB here); `rss_growth_mb` is what the export itself added.

    BENCH_EXPORT_EVENTS=200000 DATABASE_URL=postgres://postgres@127.0.0.1:5432/test python -m bench.consent_export
"""

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

from bench.common import skipped_result

ROOT = Path(__file__).resolve().parent.parent
NAME = "consent_export"
UNIT = "rows/s"
TARGET_ROWS_PER_SECOND = 200_000
TARGET_PEAK_RSS_MB = 150
ROUNDS = 3
EXPORTED_COLUMNS = (
    "sequence, subject_id, purpose, action, source, awaiting_confirmation, text_version, text_sha256, "
    "evidence_ciphertext, staff_user_id, occurred_at, recorded_at, prev_hash, hash"
)

SEED_SUBJECTS = """
INSERT INTO compliance_consentsubject (id, contact_id, wrapped_key, created_at, erased_at)
SELECT md5('bench-subject-' || s)::uuid, s, NULL, now(), NULL FROM generate_series(1, %(subjects)s) AS s
"""
# ~290-character urlsafe base64 "ciphertext" (a Fernet token of typical web-form evidence is that long).
SEED_EVENTS = """
INSERT INTO compliance_consentevent (
    sequence, subject_id, purpose, action, source, awaiting_confirmation, text_version, text_sha256,
    evidence_ciphertext, staff_user_id, occurred_at, recorded_at, prev_hash, hash, export_line
)
SELECT
    e.*,
    '{"sequence":' || e.sequence || ',"subject":"' || e.subject_id || '","purpose":"' || e.purpose
    || '","action":"' || e.action || '","source":"' || e.source || '","awaiting_confirmation":'
    || CASE WHEN e.awaiting_confirmation THEN 'true' ELSE 'false' END
    || ',"text_version":"' || e.text_version || '","text_sha256":"' || e.text_sha256
    || '","evidence_ciphertext":"' || e.evidence_ciphertext
    || '","staff_user_id":' || COALESCE(e.staff_user_id::text, 'null')
    || ',"occurred_at":"' || to_char(e.occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"')
    || '","recorded_at":"' || to_char(e.recorded_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"')
    || '","prev_hash":"' || e.prev_hash || '","hash":"' || e.hash || '"}'
FROM (
    SELECT
        g AS sequence,
        md5('bench-subject-' || (1 + g %% %(subjects)s))::uuid AS subject_id,
        (ARRAY['marketing', 'utility', 'authentication'])[1 + g %% 3] AS purpose,
        CASE WHEN g %% 7 = 0 THEN 'opt_out' WHEN g %% 11 = 0 THEN 'confirm' ELSE 'opt_in' END AS action,
        (ARRAY['web_form', 'api', 'whatsapp_keyword', 'meta_user_preferences', 'staff', 'import'])[1 + g %% 6]
            AS source,
        g %% 13 = 0 AS awaiting_confirmation,
        CASE WHEN g %% 7 = 0 OR g %% 11 = 0 THEN '' ELSE 'v' || (1 + g %% 4) END AS text_version,
        CASE WHEN g %% 7 = 0 OR g %% 11 = 0 THEN ''
            ELSE encode(sha256(('text v' || (1 + g %% 4))::bytea), 'hex') END AS text_sha256,
        'gAAAAAB' || translate(
            replace(encode(decode(repeat(md5(g::text), 13), 'hex'), 'base64'), E'\\n', ''), '+/', '-_'
        ) AS evidence_ciphertext,
        CASE WHEN g %% 6 = 4 THEN 1 + g %% 5 END AS staff_user_id,
        TIMESTAMPTZ '2025-01-01 00:00:00+00' + g * INTERVAL '17 seconds'
            + (g %% 999983) * INTERVAL '1 microsecond' AS occurred_at,
        TIMESTAMPTZ '2025-01-01 00:00:00.25+00' + g * INTERVAL '17 seconds'
            + (g %% 999983) * INTERVAL '1 microsecond' AS recorded_at,
        CASE WHEN g = 1 THEN repeat('0', 64) ELSE encode(sha256(('bench-' || (g - 1))::bytea), 'hex') END
            AS prev_hash,
        encode(sha256(('bench-' || g)::bytea), 'hex') AS hash
    FROM generate_series(1, %(events)s) AS g
) AS e
"""
SEED_HEAD = """
INSERT INTO compliance_ledgerhead (id, sequence, hash)
VALUES (1, %(events)s, encode(sha256(('bench-' || %(events)s)::bytea), 'hex'))
"""


def _skipped(reason: str) -> dict[str, Any]:
    return skipped_result(
        name=NAME,
        unit=UNIT,
        baseline="PostgreSQL COPY (SELECT ...) TO STDOUT",
        measured="our jsonl export",
        reason=reason,
    )


def _database_url(settings_dict: dict[str, Any]) -> str:
    user = quote(settings_dict.get("USER") or "", safe="")
    password = quote(settings_dict.get("PASSWORD") or "", safe="")
    credentials = f"{user}:{password}@" if password else (f"{user}@" if user else "")
    host = settings_dict.get("HOST") or "127.0.0.1"
    port = settings_dict.get("PORT") or "5432"
    return f"postgres://{credentials}{host}:{port}/{quote(settings_dict['NAME'], safe='')}"


def _seed(connection, events: int) -> float:
    started = time.perf_counter()
    subjects = max(1, events // 8)
    with connection.cursor() as cursor:
        cursor.execute(SEED_SUBJECTS, {"subjects": subjects})
        cursor.execute(SEED_EVENTS, {"subjects": subjects, "events": events})
        cursor.execute(SEED_HEAD, {"events": events})
        cursor.execute("ANALYZE compliance_consentevent")
    _check_seeded_lines(events)
    return time.perf_counter() - started


def _check_seeded_lines(events: int) -> None:
    """The lines built in SQL must be what the Python encoder writes for the same columns: every case
    of the seeding's CASEs occurs in the first 200 events, the rest are spread over the whole ledger."""
    from compliance.ledger import event_export_line
    from compliance.models import ConsentEvent

    sample = {*range(1, min(events, 200) + 1), *range(1, events + 1, max(1, events // 500)), events}
    checked = 0
    for event in ConsentEvent.objects.filter(sequence__in=sample).iterator(chunk_size=1000):
        expected = event_export_line(event)
        if event.export_line != expected:
            raise RuntimeError(
                f"seeded export line of event #{event.sequence} differs from the encoder's:\n"
                f"  stored  {event.export_line}\n  encoder {expected}"
            )
        checked += 1
    if checked != len(sample):
        raise RuntimeError(f"checked {checked} seeded lines, expected {len(sample)}")


def _child(side: str, database_url: str, output: Path) -> dict[str, Any]:
    env = {**os.environ, "DATABASE_URL": database_url, "DATABASE_CONN_MAX_AGE": "0"}
    result = subprocess.run(  # noqa: S603 - this same module, with arguments of our own
        [sys.executable, "-m", "bench.consent_export", "--child", side, str(output)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=3600,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"{side} child failed:\n{result.stderr}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def run(*, events: int | None = None) -> dict[str, Any]:
    from django.db import connection

    events = events or int(os.environ.get("BENCH_EXPORT_EVENTS", "1000000"))
    load_before = os.getloadavg()
    if connection.vendor != "postgresql":
        return _skipped("needs PostgreSQL: set DATABASE_URL=postgres://postgres@127.0.0.1:5432/test")

    original_name = connection.settings_dict["NAME"]
    connection.settings_dict.setdefault("TEST", {})["NAME"] = f"bench_consent_export_{os.getpid()}"
    connection.creation.create_test_db(verbosity=0, autoclobber=True, serialize=False)
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT current_setting('server_version')")
            server_version = cursor.fetchone()[0]
        seed_seconds = _seed(connection, events)
        database_url = _database_url(connection.settings_dict)
        connection.close()
        with tempfile.TemporaryDirectory(prefix="bench-consent-export-") as tmp:
            best: dict[str, dict[str, Any]] = {}
            # Alternate the two, best of ROUNDS each, so a warm cache or a busy neighbour hits both.
            for _ in range(ROUNDS):
                for side in ("copy", "export"):
                    figures = _child(side, database_url, Path(tmp) / f"{side}.out")
                    if figures["rows"] != events:
                        raise RuntimeError(f"{side} wrote {figures['rows']} rows, expected {events}")
                    if side not in best or figures["seconds"] < best[side]["seconds"]:
                        best[side] = figures
    finally:
        connection.close()
        connection.creation.destroy_test_db(original_name, verbosity=0)

    load_after = os.getloadavg()
    copy, ours = best["copy"], best["export"]
    copy_rate, our_rate = events / copy["seconds"], events / ours["seconds"]
    met = our_rate >= TARGET_ROWS_PER_SECOND and ours["peak_rss_mb"] <= TARGET_PEAK_RSS_MB
    return {
        "name": NAME,
        "description": (
            f"{events} ledger events to a file, PostgreSQL {server_version}; peak RSS ours "
            f"{ours['peak_rss_mb']} MB vs COPY {copy['peak_rss_mb']} MB; seeded in {seed_seconds:.1f} s"
        ),
        "unit": UNIT,
        "baseline": {
            "label": "PostgreSQL COPY (SELECT ...) TO STDOUT (text)",
            "value": round(copy_rate),
            "seconds": round(copy["seconds"], 3),
            "peak_rss_mb": copy["peak_rss_mb"],
            "rss_growth_mb": round(copy["peak_rss_mb"] - copy["rss_before_mb"], 1),
            "bytes": copy["bytes"],
        },
        "measured": {
            "label": "our jsonl export",
            "value": round(our_rate),
            "seconds": round(ours["seconds"], 3),
            "peak_rss_mb": ours["peak_rss_mb"],
            "rss_before_mb": ours["rss_before_mb"],
            "rss_growth_mb": round(ours["peak_rss_mb"] - ours["rss_before_mb"], 1),
            "bytes": ours["bytes"],
        },
        "ratio": round(our_rate / copy_rate, 3),
        # 1, 5 and 15 minute load averages on this 2-core machine shared with other work.
        "load_average": {
            "before": [round(value, 2) for value in load_before],
            "after": [round(value, 2) for value in load_after],
        },
        "targets": {
            "rows_per_second": TARGET_ROWS_PER_SECOND,
            "peak_rss_mb": TARGET_PEAK_RSS_MB,
            "met": met,
        },
    }


# --- Child processes ------------------------------------------------------------------------------


def _peak_rss_mb() -> float:
    """This process's peak resident memory. On Linux, VmHWM of /proc/self/status: ru_maxrss survives
    execve, so a child started by a parent that had grown (`make bench` runs the 1M-row admin bench
    first) would report the parent's peak as its own."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)  # kB
    except OSError:
        pass
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # KiB on Linux


def _child_main(side: str, output: Path) -> None:
    from django.db import connection
    from psycopg import sql

    from compliance.exports import LedgerExport, ledger_head

    rss_before = _peak_rss_mb()
    head_sequence, _ = ledger_head()
    started = time.perf_counter()
    with output.open("wb") as stream:
        if side == "export":
            rows = LedgerExport(format="jsonl").write_to(stream).row_count
        else:
            query = sql.SQL(
                "COPY (SELECT {} FROM compliance_consentevent WHERE sequence <= {} ORDER BY sequence) TO STDOUT"
            ).format(sql.SQL(EXPORTED_COLUMNS), sql.Literal(head_sequence))
            with connection.cursor() as cursor, cursor.cursor.copy(query) as copy:
                for data in copy:
                    stream.write(data)
            rows = -1
    seconds = time.perf_counter() - started
    if rows < 0:  # COPY's text format: one line per row (the seeded values hold no newlines)
        with output.open("rb") as stream:
            rows = sum(block.count(b"\n") for block in iter(lambda: stream.read(1 << 20), b""))
    print(
        json.dumps(
            {
                "rows": rows,
                "seconds": seconds,
                "bytes": output.stat().st_size,
                "rss_before_mb": rss_before,
                "peak_rss_mb": _peak_rss_mb(),
            }
        )
    )


def main() -> int:
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.setdefault("DJANGO_DEBUG", "true")
    django.setup()
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        _child_main(sys.argv[2], Path(sys.argv[3]))
        return 0
    print(json.dumps(run(), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
