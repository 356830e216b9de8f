"""Messaging reads (the counterpart of services.py)."""

from django.db.models import QuerySet

from messaging.models import Contact
from messaging.phone import phone_normalize


def contact_list(*, phone_number: str | None = None, tag: str | None = None) -> QuerySet[Contact]:
    contacts = Contact.objects.prefetch_related("tags")
    if phone_number:
        contacts = contacts.filter(phone_number=phone_normalize(phone_number))
    if tag:
        contacts = contacts.filter(tags__name=tag)
    return contacts.order_by("-created_at", "-id")
