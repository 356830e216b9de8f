"""Signals compliance sends for other apps to act on (compliance never imports them).

double_opt_in_requested
    Sent (after the transaction commits) when a web-form opt-in under `CONSENT_DOUBLE_OPT_IN` left at
    least one purpose pending confirmation. Keyword arguments: `contact_id` (the directory's contact
    id) and `purposes` (the purposes now pending). Messaging is to send the double opt-in confirmation
    template to that contact on it; the person's "YES" reply then goes through
    `compliance.services.consent_confirm_pending`.
    Messaging connects `messaging.keywords.on_double_opt_in_requested` (messaging/apps.py), which sends
    the CONSENT_DOUBLE_OPT_IN_TEMPLATE template, or alerts staff when no approved one exists.
"""

from django.dispatch import Signal

double_opt_in_requested = Signal()
