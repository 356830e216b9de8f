"""How compliance finds people without importing messaging.

Messaging depends on compliance (it asks the gate), so compliance must not import messaging back.
Messaging registers an implementation of `ContactDirectory` when it starts (messaging/apps.py);
compliance's forms and API use it to turn a typed phone number into a contact.
"""

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class ContactInfo:
    id: int
    phone_number: str  # E.164
    profile_name: str = ""
    timezone: str = ""


class ContactDirectory(Protocol):
    def contact_for_phone(
        self, *, phone_number: str, profile_name: str = "", create: bool
    ) -> ContactInfo | None:
        """The contact with this number (any common format), created if `create`. Raises
        django.core.exceptions.ValidationError (code `invalid_phone_number`) for a bad number."""

    def contact_by_id(self, contact_id: int) -> ContactInfo | None: ...

    def contact_ids_for_person(self, phone_number: str) -> list[int]:
        """Every contact that is the person with this E.164 number: by number, and by WhatsApp id
        (older contacts of the same person whose number changed)."""

    def phone_number_normalize(self, raw: str) -> str:
        """`raw` as E.164. Raises ValidationError (code `invalid_phone_number`) for a bad number."""

    def person_notify(
        self, *, contact_id: int, text: str, template: str = "", parameters: list[str] = ()
    ) -> bool:
        """Queue a WhatsApp message about the person's privacy request (gate purpose
        `privacy_request`): the approved template `template` with positional body `parameters` when a
        template name is given, else `text` as a free-form message (only inside the 24-hour window).
        Returns False when nothing could be queued (the gate refused, the template is missing)."""


_directory: ContactDirectory | None = None


def directory_register(directory: ContactDirectory) -> None:
    global _directory
    _directory = directory


def directory() -> ContactDirectory:
    if _directory is None:
        raise RuntimeError("No contact directory registered (is the messaging app installed?)")
    return _directory
