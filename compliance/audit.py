"""The staff audit trail: who viewed, looked up, changed or exported consent data, when and from where.

Entries name people only by contact id or ledger subject id. As a second line of defence, anything
shaped like a phone number in a summary is removed before it is stored (a search box, a careless
caller), because the trail itself must not become a copy of the personal data it watches over.
"""

import ipaddress
import re

from django.db import models
from django.http import HttpRequest
from django.utils import timezone

from compliance.models import AuditAction, StaffAuditEntry
from config.ratelimit import client_ip

#: 10 to 15 digits, optionally with "+", spaces, dots, dashes or parentheses between them, standing
#: alone (not part of a UUID, a hash or "#1234567890"-style sequence number).
_PHONE_LIKE = re.compile(r"(?<![\w#-])\+?\(?\d(?:[\s().-]{0,2}\d){9,14}(?![\w-])")
PHONE_REMOVED = "[phone number removed]"


def scrub_phone_numbers(text: str) -> str:
    return _PHONE_LIKE.sub(PHONE_REMOVED, text)


def _object_type(obj: type[models.Model] | models.Model | str) -> str:
    if isinstance(obj, str):
        return obj
    return obj._meta.label_lower


def audit_record(
    *,
    action: str,
    object_type: type[models.Model] | models.Model | str,
    object_id: object = "",
    summary: str = "",
    request: HttpRequest | None = None,
    user=None,
    ip: str | None = None,
) -> StaffAuditEntry:
    """Append one entry. The user and IP come from `request` when given; without a request or user the
    entry is attributed to "cli" (a management command run on the server)."""
    if action not in AuditAction.values:
        raise ValueError(f"Unknown audit action {action!r}; use one of {', '.join(AuditAction.values)}.")
    if user is None and request is not None:
        user = getattr(request, "user", None)
    if ip is None and request is not None:
        ip = client_ip(request)
    authenticated = user is not None and getattr(user, "is_authenticated", False)
    return StaffAuditEntry.objects.create(
        user_id=user.pk if authenticated else None,
        username=user.get_username() if authenticated else "cli",
        action=action,
        object_type=_object_type(object_type),
        object_id=scrub_phone_numbers(str(object_id))[:64],
        summary=scrub_phone_numbers(summary)[:300],
        at=timezone.now(),
        ip=_valid_ip(ip),
    )


def _valid_ip(value: str | None) -> str | None:
    try:
        return str(ipaddress.ip_address(value)) if value else None
    except ValueError:
        return None
