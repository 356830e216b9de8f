"""Messaging's side of compliance.contacts.ContactDirectory."""

import logging

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from compliance.contacts import ContactInfo
from compliance.gate import SystemPurpose
from messaging.models import Contact, Sender
from messaging.personal_data import person_contact_ids
from messaging.phone import phone_normalize
from messaging.services import contact_create, sender_get_default

logger = logging.getLogger(__name__)


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
                # (Otherwise, e.g. a suppressed number, the error goes to the caller.)
                contact = Contact.objects.filter(phone_number=e164).first()
                if contact is None:
                    raise
        return _info(contact) if contact else None

    def contact_by_id(self, contact_id: int) -> ContactInfo | None:
        contact = Contact.objects.filter(pk=contact_id).first()
        return _info(contact) if contact else None

    def contact_ids_for_person(self, phone_number: str) -> list[int]:
        return person_contact_ids(phone_number)

    def phone_number_normalize(self, raw: str) -> str:
        return phone_normalize(raw)

    def person_notify(
        self, *, contact_id: int, text: str, template: str = "", parameters: list[str] = ()
    ) -> bool:
        """Queue a message about the person's privacy request (see ContactDirectory.person_notify).
        The gate's `privacy_request` rule decides, here and again right before sending."""
        from messaging.keywords import system_message_queue

        contact = Contact.objects.filter(pk=contact_id).first()
        if contact is None:
            return False
        try:
            sender = sender_get_default()
        except Sender.DoesNotExist:
            logger.warning("No sender: privacy request notice to contact %s not queued", contact_id)
            return False
        approved = _approved_template(name=template, waba_id=sender.waba_id, locale=contact.locale)
        if approved is not None:
            message_type = "template"
            data = {
                "template_name": approved.name,
                "language": approved.language,
                "parameters": list(parameters) or None,
            }
        elif text:
            message_type, data = "text", {"text": text}
        else:
            return False
        with transaction.atomic():
            message = system_message_queue(
                contact=contact,
                sender=sender,
                message_type=message_type,
                data=data,
                source="privacy_request",
                # The timeline says what was sent, never the text: it may carry a verification code.
                detail=f"privacy request notice ({f'template {approved.name}' if approved else 'text'})",
                purpose=SystemPurpose.PRIVACY_REQUEST,
            )
        return message is not None


def _approved_template(*, name: str, waba_id: str, locale: str):
    """The approved template `name` in the person's language if we have it, else in any language."""
    from templates_app.models import MessageTemplate, TemplateStatus

    if not name:
        return None
    candidates = MessageTemplate.objects.filter(waba_id=waba_id, name=name, status=TemplateStatus.APPROVED)
    language = locale.split("_")[0].lower()
    return min(
        candidates,
        key=lambda t: (t.language != locale, t.language.split("_")[0].lower() != language, t.language),
        default=None,
    )
