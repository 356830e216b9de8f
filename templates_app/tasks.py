"""Keeping local templates in step with Meta's.

`sync_templates` runs every 15 minutes from Celery beat (settings.CELERY_BEAT_SCHEDULE), and on demand
from `manage.py sync_templates` and the admin's "Sync now" button. All three share one lock in Django's
cache, so two syncs never run at once (a slow Meta plus a 15-minute schedule would otherwise pile them
up): the one that finds the lock taken does nothing and says "skipped".
"""

import contextlib
import logging
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from celery import shared_task
from django.conf import settings
from django.core.cache import cache

from messaging.whatsapp import WhatsAppBackend, WhatsAppError, get_backend
from templates_app.services import COUNT_KEYS, template_sync

logger = logging.getLogger(__name__)

LOCK_KEY = "templates_app:sync_templates:lock"
#: A crashed sync's lock expires after this long; a healthy sync of thousands of templates takes seconds.
LOCK_TIMEOUT_SECONDS = 10 * 60


@dataclass
class SyncReport:
    accounts: dict[str, dict[str, int]] = field(default_factory=dict)  # waba id → template_sync counts
    errors: dict[str, WhatsAppError] = field(default_factory=dict)  # waba id → what Meta answered

    @property
    def totals(self) -> dict[str, int]:
        return {key: sum(counts.get(key, 0) for counts in self.accounts.values()) for key in COUNT_KEYS}


def default_waba_ids() -> list[str]:
    waba_id = str(settings.WHATSAPP.get("BUSINESS_ACCOUNT_ID") or "").strip()
    return [waba_id] if waba_id else []


@contextlib.contextmanager
def sync_lock(timeout: int = LOCK_TIMEOUT_SECONDS) -> Iterator[bool]:
    """Yields True when this caller holds the lock, False when another sync does. Never blocks."""
    token = uuid.uuid4().hex
    acquired = cache.add(LOCK_KEY, token, timeout)
    try:
        yield acquired
    finally:
        # Only release our own lock: after a timeout another sync may hold a new one.
        if acquired and cache.get(LOCK_KEY) == token:
            cache.delete(LOCK_KEY)


def templates_sync_accounts(*, waba_ids: Iterable[str], backend: WhatsAppBackend | None = None) -> SyncReport:
    """Sync each business account; one account's failure does not stop the others. No lock: callers
    hold `sync_lock()`."""
    report = SyncReport()
    for waba_id in dict.fromkeys(w.strip() for w in waba_ids if w and w.strip()):
        try:
            report.accounts[waba_id] = template_sync(waba_id=waba_id, backend=backend or get_backend())
        except WhatsAppError as exc:
            logger.error("Template sync for business account %s failed: %s", waba_id, exc)
            report.errors[waba_id] = exc
    return report


def describe_counts(counts: dict[str, int]) -> str:
    """ "3 created, 1 updated, 40 unchanged, 0 conflicts" (and the reworks waiting here, if any)."""
    text = ", ".join(f"{counts.get(key, 0)} {key}" for key in COUNT_KEYS if key != "reworks")
    if counts.get("reworks"):
        text += f", {counts['reworks']} kept as local rework (waiting to be resubmitted)"
    return text


@shared_task(name="templates_app.tasks.sync_templates")
def sync_templates(waba_ids: list[str] | None = None) -> dict[str, int] | str:
    """Mirror Meta's templates (status, quality, category, components) for the configured business
    account, or for `waba_ids`. Returns the counts, or "skipped" when another sync holds the lock.
    Raises Meta's error (after syncing the other accounts) so a failure shows up as a failed task."""
    ids = list(waba_ids or default_waba_ids())
    if not ids:
        logger.warning("Template sync skipped: WHATSAPP_BUSINESS_ACCOUNT_ID is not set.")
        return "skipped"
    with sync_lock() as acquired:
        if not acquired:
            logger.info("Template sync skipped: another sync is still running.")
            return "skipped"
        report = templates_sync_accounts(waba_ids=ids)
    logger.info("Template sync: %s", describe_counts(report.totals))
    if report.errors:
        raise next(iter(report.errors.values()))
    return report.totals
