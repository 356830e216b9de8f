"""The embedded stand-in for Celery beat (`make run` starts it beside the web server): every few
seconds it sends what is due — messages deferred by quiet hours, retries after backoff, messages of
a sender back from a pause — settles sends abandoned mid-way, and keeps the admin dashboard's figures
fresh (a no-op until a day is due). Production runs `make beat`."""

import time

from django.core.management.base import BaseCommand
from django.db import close_old_connections

from messaging.tasks import dispatch_due_messages, refresh_dashboard


class Command(BaseCommand):
    help = "Dispatch due outbound messages in a loop (or once with --once)."

    def add_arguments(self, parser):
        parser.add_argument("--interval", type=float, default=5.0, help="Seconds between passes.")
        parser.add_argument("--once", action="store_true", help="One pass, then exit.")

    def handle(self, *args, interval: float, once: bool, **options):
        while True:
            dispatched = dispatch_due_messages()
            refresh_dashboard()
            if dispatched or once:
                self.stdout.write(f"dispatched {dispatched} due message(s)")
            if once:
                return
            time.sleep(interval)
            close_old_connections()  # a long-lived loop must not keep a broken or stale connection
