"""Telling staff when Meta changes a template: an email to the people who work on templates, and the
notices the template list shows until they mark them seen (see admin.py).

Who hears about a change: the template's author and reviewer, and every active user of a group that
may write or review templates. Sync collects its notices and sends one email per person at the end, so
a sync that finds 40 changes sends 40 lines, not 40 emails. Mail is sent after the transaction that
recorded the change commits; a mail server that is down is logged and never undoes the change.
"""

import logging
from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import EmailMessage, get_connection
from django.db.models import Q
from django.utils import timezone

from templates_app.models import TemplateNoticesSeen, TemplateStatus, TemplateStatusChange

logger = logging.getLogger(__name__)

#: Permissions that make someone a template person (their groups hear about every template).
TEMPLATE_PERMISSIONS = ("change_messagetemplate", "review_template")
#: How far back the template list looks for notices a user has never marked seen.
NOTICE_WINDOW_DAYS = 14


def notice_text(change: TemplateStatusChange) -> str:
    template = change.template
    if change.old_status != change.new_status:
        headline = f"{template}: {_label(change.old_status)} → {_label(change.new_status)}"
    else:
        headline = f"{template}: still {_label(change.new_status)}"
    return f"{headline} — {change.reason}" if change.reason else headline


def _label(status: str) -> str:
    return TemplateStatus(status).label if status in TemplateStatus.values else status or "—"


def notice_recipients(changes: Iterable[TemplateStatusChange]) -> dict[str, list[TemplateStatusChange]]:
    """email address → the changes that person hears about."""
    changes = list(changes)
    by_email: dict[str, list[TemplateStatusChange]] = defaultdict(list)
    if not changes:
        return by_email
    team = list(
        get_user_model()
        .objects.filter(is_active=True)
        .exclude(email="")
        .filter(
            Q(groups__permissions__content_type__app_label="templates_app")
            & Q(groups__permissions__codename__in=TEMPLATE_PERMISSIONS)
        )
        .distinct()
        .values_list("email", flat=True)
    )
    for change in changes:
        template = change.template
        people = [*team]
        for user in (template.created_by, template.reviewed_by):
            if user is not None and user.is_active and user.email:
                people.append(user.email)
        for email in dict.fromkeys(e.strip().lower() for e in people):
            by_email[email].append(change)
    return by_email


def template_notices_send(change_ids: Iterable[int]) -> int:
    """Email the notices with these ids (one message per recipient); returns the number of emails sent."""
    changes = list(
        TemplateStatusChange.objects.filter(pk__in=list(change_ids), is_notice=True)
        .select_related("template", "template__created_by", "template__reviewed_by")
        .order_by("changed_at", "id")
    )
    recipients = notice_recipients(changes)
    if not recipients:
        return 0
    messages = []
    for email, theirs in recipients.items():
        if len(theirs) == 1:
            subject = f"WhatsApp template {theirs[0].template}: Meta changed it"
        else:
            subject = f"{len(theirs)} changes from Meta to your WhatsApp templates"
        lines = [f"- {notice_text(change)}" for change in theirs]
        body = (
            "Meta changed these WhatsApp message templates:\n\n"
            + "\n".join(lines)
            + "\n\nRejected or paused templates can be edited in the admin and sent for review again; "
            "paused and disabled templates cannot be sent until Meta approves them.\n"
        )
        messages.append(EmailMessage(subject, body, settings.DEFAULT_FROM_EMAIL, [email]))
    try:
        return get_connection().send_messages(messages) or 0
    except Exception:  # SMTP, DNS, TLS…: the change is recorded either way and the admin shows it
        logger.exception("Could not email %d template notice(s)", len(changes))
        return 0


# --- What the admin shows --------------------------------------------------------------------------


def notices_since(user) -> datetime:
    """The moment after which Meta's changes are news to this user."""
    window_start = timezone.now() - timedelta(days=NOTICE_WINDOW_DAYS)
    seen = TemplateNoticesSeen.objects.filter(user=user).values_list("seen_at", flat=True).first()
    return max(seen, window_start) if seen else window_start


def notices_unseen(user, *, limit: int = 20) -> list[TemplateStatusChange]:
    return list(
        TemplateStatusChange.objects.filter(is_notice=True, changed_at__gt=notices_since(user))
        .select_related("template")
        .order_by("-changed_at", "-id")[:limit]
    )


def notices_mark_seen(*, user) -> None:
    TemplateNoticesSeen.objects.update_or_create(user=user, defaults={"seen_at": timezone.now()})
