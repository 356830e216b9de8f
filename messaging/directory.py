"""Messaging's side of compliance.contacts.ContactDirectory."""

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from compliance.contacts import ContactInfo
from messaging.models import Contact
from messaging.phone import phone_normalize
from messaging.services import contact_create


def _info(contact: Contact) -> ContactInfo:
    return ContactInfo(
        id=contact.id,
        phone_number=contact.phone_number,
        profile_name=contact.profile_name,
        timezone=contact.timezone,
    )


class MessagingContactDirectory:
    def contact_for_phone(
        self, *, phone_number: str, profile_name: str = "", create: bool
    ) -> ContactInfo | None:
        e164 = phone_normalize(phone_number)
        contact = Contact.objects.filter(phone_number=e164).first()
        if contact is None and create:
            try:
                with transaction.atomic():
                    contact = contact_create(phone_number=e164, profile_name=profile_name)
            except (IntegrityError, ValidationError):
                # Two requests created the same number at once: the other one won, use its row.
                contact = Contact.objects.filter(phone_number=e164).first()
                if contact is None:
                    raise
        return _info(contact) if contact else None

    def contact_by_id(self, contact_id: int) -> ContactInfo | None:
        contact = Contact.objects.filter(pk=contact_id).first()
        return _info(contact) if contact else None
