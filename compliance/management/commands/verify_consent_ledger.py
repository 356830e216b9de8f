import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from compliance.exports import manifest_path_for, manifest_problems, verify_export_file
from compliance.ledger import ledger_verify


class Command(BaseCommand):
    help = (
        "Verify the consent ledger's hash chain in the database, or with --file an exported jsonl file "
        "offline (no database needed), optionally against its --manifest. Exits non-zero naming the "
        "first event whose hash or link is wrong."
    )
    # Offline verification must work on a machine with no database; checks are not needed for either.
    requires_system_checks = []

    def add_arguments(self, parser):
        parser.add_argument(
            "--file", metavar="FILE.jsonl", help="Verify this export instead of the database."
        )
        parser.add_argument(
            "--manifest",
            metavar="FILE.manifest.json",
            help="Also check the file's SHA-256, row count and ledger head against its manifest.",
        )
        parser.add_argument(
            "--filtered",
            action="store_true",
            help="Without a manifest: the file is a filtered export, so gaps between events are expected.",
        )

    def handle(self, *args, file, manifest, filtered, **options):
        if manifest and not file:
            raise CommandError("--manifest goes with --file.")
        if file:
            self._verify_file(Path(file), Path(manifest) if manifest else None, filtered=filtered)
        else:
            self._verify_database()

    def _verify_database(self) -> None:
        result = ledger_verify()
        if not result.ok:
            where = f" at event #{result.bad_sequence}" if result.bad_sequence is not None else ""
            raise CommandError(f"Consent ledger verification FAILED{where}: {result.problem}.")
        self.stdout.write(
            f"Consent ledger OK: {result.count} events, every hash and link verified; "
            f"head #{result.count} {result.head_hash}"
        )

    def _verify_file(self, path: Path, manifest_path: Path | None, *, filtered: bool) -> None:
        if not path.is_file():
            raise CommandError(f"No such file: {path}")
        manifest = None
        if manifest_path is not None:
            try:
                manifest = json.loads(manifest_path.read_text())
            except (OSError, ValueError) as exc:
                raise CommandError(f"Cannot read the manifest {manifest_path}: {exc}") from exc
        whole_chain = not manifest.get("filters") if manifest is not None else not filtered
        result = verify_export_file(path, whole_chain=whole_chain)
        if not result.ok:
            where = f" at event #{result.bad_sequence}" if result.bad_sequence is not None else ""
            hint = (
                " (if this is a filtered export, pass its --manifest or --filtered)"
                if manifest is None and whole_chain and "missing from the file" in result.problem
                else ""
            )
            raise CommandError(f"{path}: verification FAILED{where}: {result.problem}{hint}.")
        span = f" (#{result.first_sequence} to #{result.last_sequence})" if result.count else ""
        if whole_chain:
            self.stdout.write(
                f"{path}: OK, {result.count} events{span}; every hash and link verified from the genesis "
                f"hash to {result.last_hash}."
            )
        else:
            self.stdout.write(
                f"{path}: OK, {result.count} events{span}; every event matches its own hash. "
                f"{result.links_checked} links between adjacent events verified, "
                f"{result.links_unchecked} not checkable: this is a filtered export, and only an "
                "unfiltered export verifies the whole chain."
            )
        if manifest is None:
            sibling = manifest_path_for(path)
            self.stdout.write(
                "No manifest checked: lines removed from the end, or a file rewritten as a whole, go "
                "unnoticed without it." + (f" Pass --manifest {sibling}." if sibling.is_file() else "")
            )
            return
        problems = manifest_problems(path, manifest, result)
        if problems:
            raise CommandError(f"{path} does not match its manifest: {'; '.join(problems)}.")
        head = manifest.get("ledger_head") or {}
        self.stdout.write(
            f"Manifest OK: SHA-256 {manifest['sha256']}, {manifest['rows']} rows, exported at ledger head "
            f"#{head.get('sequence')} {head.get('hash')} by {manifest['generated_by']['username']} "
            f"on {manifest['generated_at']}."
        )
