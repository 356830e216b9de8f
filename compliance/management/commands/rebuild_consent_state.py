from django.core.management.base import BaseCommand

from compliance.services import consent_projection_rebuild


class Command(BaseCommand):
    help = "Recompute everyone's current consent (ConsentState) from the ledger."

    def add_arguments(self, parser):
        parser.add_argument(
            "--contact-id", type=int, action="append", help="Only these contacts (repeatable)."
        )

    def handle(self, *args, contact_id: list[int] | None, **options):
        written = consent_projection_rebuild(contact_ids=contact_id)
        self.stdout.write(f"Rebuilt {written} consent state row(s) from the ledger.")
