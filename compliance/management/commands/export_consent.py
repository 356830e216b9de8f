import argparse
import json
from datetime import date
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from compliance.exports import (
    ExportError,
    ExportFilters,
    ExportLineMissing,
    export_to_path,
    export_to_stream,
    manifest_path_for,
)
from compliance.models import ExportFormat, Purpose


def _day(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{value!r} is not a date; use YYYY-MM-DD") from exc


class _TextSink:
    """Bytes into a text stream (stdout replaced by a StringIO, as in tests)."""

    def __init__(self, out) -> None:
        self.out = out

    def write(self, data: bytes) -> None:
        self.out.write(data.decode())


class Command(BaseCommand):
    help = (
        "Export the consent ledger in sequence order as jsonl (verifiable offline with "
        "`verify_consent_ledger --file`) or csv. Writes FILE and FILE.manifest.json with --output; "
        "otherwise the data goes to stdout and the manifest to stderr. Every export is recorded."
    )

    def add_arguments(self, parser):
        parser.add_argument("--format", required=True, choices=ExportFormat.values)
        parser.add_argument("--since", type=_day, help="First day (occurred_at, inclusive), YYYY-MM-DD.")
        parser.add_argument("--until", type=_day, help="Last day (occurred_at, inclusive), YYYY-MM-DD.")
        parser.add_argument("--purpose", choices=Purpose.values)
        parser.add_argument("--output", metavar="FILE", help="Write here instead of stdout.")

    def handle(self, *args, format: str, since, until, purpose, output, **options):
        try:
            filters = ExportFilters(since=since, until=until, purpose=purpose or "")
        except ExportError as exc:
            raise CommandError(str(exc)) from exc
        try:
            self._export(format, filters, output)
        except ExportLineMissing as exc:
            # The export is recorded as incomplete; what was written is cut short, never wrong.
            raise CommandError(f"Export FAILED: {exc}.") from exc

    def _export(self, format: str, filters: ExportFilters, output: str | None) -> None:
        if output:
            manifest = export_to_path(output, format=format, filters=filters)
            self.stdout.write(
                f"Exported {manifest['rows']} events to {output} (SHA-256 {manifest['sha256']}); "
                f"manifest: {manifest_path_for(output)}"
            )
            return
        manifest = self._to_stdout(format, filters)
        self.stderr.write(json.dumps(manifest, indent=2))

    def _to_stdout(self, format: str, filters: ExportFilters) -> dict[str, Any]:
        out = self.stdout._out
        self.stdout.flush()
        buffer = getattr(out, "buffer", None)
        manifest = export_to_stream(buffer or _TextSink(out), format=format, filters=filters)
        (buffer or out).flush()
        return manifest
