"""The suppression list: numbers that must never be messaged or added again, held as keyed hashes.

The gate refuses every send to a listed number; adding a listed number back (consent opt-in, contact
import or creation) is refused with `suppressed`, so a person erased at their own request cannot come
back silently. Nothing is sent to it either, not even a reply: the gate checks the list before every
send. (Inbound messages from the number are still stored: what someone sends us is theirs to send.)
"""

from django.core.exceptions import ValidationError

from compliance.crypto import phone_keyed_hash
from compliance.models import Suppression


def suppression_entry(e164: str) -> Suppression | None:
    return (
        Suppression.objects.select_related("privacy_request")
        .filter(phone_hash=phone_keyed_hash(e164))
        .first()
    )


def suppression_refusal(entry: Suppression) -> ValidationError:
    """The error shown to whoever tries to add a suppressed number: why, without revealing the number."""
    if entry.privacy_request_id:
        message = (
            "This number was erased at its owner's request (privacy request %(reference)s) and is on the "
            "suppression list: it cannot be added or opted in again, and nothing is sent to it."
        )
        params = {"reference": entry.privacy_request.reference}
    else:
        message = "This number is on the suppression list (%(reason)s): it cannot be added or opted in."
        params = {"reason": entry.reason}
    return ValidationError(message, code="suppressed", params=params)


def suppression_check(e164: str) -> None:
    """Raise ValidationError(code="suppressed") when `e164` is on the suppression list."""
    entry = suppression_entry(e164)
    if entry is not None:
        raise suppression_refusal(entry)


def suppression_add(*, e164: str, reason: str, privacy_request=None) -> Suppression:
    entry, _ = Suppression.objects.get_or_create(
        phone_hash=phone_keyed_hash(e164),
        defaults={"reason": reason[:200], "privacy_request": privacy_request},
    )
    return entry
