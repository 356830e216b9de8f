from django.core.management.base import BaseCommand, CommandError

from templates_app.tasks import default_waba_ids, describe_counts, sync_lock, templates_sync_accounts


class Command(BaseCommand):
    help = (
        "Mirror Meta's message templates locally (status, quality, category, components) and print how many "
        "were created, updated, unchanged, and left alone because a local draft has the same name (or a "
        "local rework of a rejected or paused template waits to be resubmitted). "
        "Syncs WHATSAPP_BUSINESS_ACCOUNT_ID unless --waba-id is given."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--waba-id",
            action="append",
            dest="waba_ids",
            metavar="ID",
            help="WhatsApp Business Account id to sync instead of the configured one; repeat for several.",
        )

    def handle(self, *args, waba_ids: list[str] | None = None, **options):
        ids = [w.strip() for w in (waba_ids or default_waba_ids()) if w.strip()]
        if not ids:
            raise CommandError(
                "No WhatsApp Business Account id: set WHATSAPP_BUSINESS_ACCOUNT_ID or pass --waba-id."
            )
        with sync_lock() as acquired:
            if not acquired:
                raise CommandError(
                    "Another template sync is running (the periodic task or the admin); try again shortly."
                )
            report = templates_sync_accounts(waba_ids=ids)

        for waba_id, counts in report.accounts.items():
            self.stdout.write(f"{waba_id}: {describe_counts(counts)}")
            if counts["conflicts"]:
                self.stderr.write(
                    f"{waba_id}: {counts['conflicts']} local draft(s) share a name and language with a "
                    "template at Meta and were left alone; rename the draft or delete it to take Meta's."
                )
        if len(report.accounts) > 1:
            self.stdout.write(f"total: {describe_counts(report.totals)}")
        if report.errors:
            raise CommandError(
                "; ".join(
                    f"Meta refused the sync of {waba_id}: {exc}" for waba_id, exc in report.errors.items()
                )
            )
