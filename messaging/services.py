"""Messaging services: every write to contacts, senders and API tokens goes through these functions
(views, admin, API, commands and tasks stay thin)."""

import hashlib
import secrets
from collections.abc import Iterable
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from django.utils.text import slugify

from compliance.suppression import suppression_entry, suppression_refusal
from messaging.models import ApiToken, Contact, Sender, Tag
from messaging.phone import phone_normalize

CONTACT_EDITABLE_FIELDS = ("wa_id", "user_id", "username", "profile_name", "locale", "timezone")


# --- Contacts -------------------------------------------------------------------------------------


def tags_from_names(names: Iterable[str]) -> list[Tag]:
    """Tags for the given names (created as needed). Names are slugified: "VIP customers" → "vip-customers"."""
    slugs = {slugify(name, allow_unicode=True) for name in names if name and name.strip()}
    slugs.discard("")
    existing = {tag.name: tag for tag in Tag.objects.filter(name__in=slugs)}
    for slug in slugs - existing.keys():
        existing[slug], _ = Tag.objects.get_or_create(name=slug)
    return sorted(existing.values(), key=lambda tag: tag.name)


@transaction.atomic
def contact_create(*, phone_number: str, tags: Iterable[str] = (), **fields: Any) -> Contact:
    """Create a contact from a phone number as typed. Raises ValidationError (e.g. duplicate number).

    Creating a contact never records consent: that is the consent ledger's job. A number on the
    suppression list (erased at its owner's request) is refused with code `suppressed`: staff, imports
    and the API cannot bring the person back. Only the person can, by writing to us (inbound messages
    create their contact without this service).
    """
    e164 = phone_normalize(phone_number)
    if Contact.objects.filter(phone_number=e164).exists():
        raise ValidationError(
            {
                "phone_number": ValidationError(
                    "A contact with phone number %(value)s already exists.",
                    code="duplicate_contact",
                    params={"value": e164},
                )
            }
        )
    suppressed = suppression_entry(e164)
    if suppressed is not None:
        raise ValidationError({"phone_number": suppression_refusal(suppressed)})
    contact = Contact(phone_number=e164, **_known_fields(fields))
    contact.full_clean()
    contact.save()
    if tags:
        contact.tags.set(tags_from_names(tags))
    return contact


@transaction.atomic
def contact_update(*, contact: Contact, tags: Iterable[str] | None = None, **fields: Any) -> Contact:
    """Update a contact's details; `phone_number` may change if it stays unique. `tags` replaces the set."""
    if "phone_number" in fields:
        e164 = phone_normalize(fields.pop("phone_number"))
        if Contact.objects.filter(phone_number=e164).exclude(pk=contact.pk).exists():
            raise ValidationError(
                {
                    "phone_number": ValidationError(
                        "Another contact already has phone number %(value)s.",
                        code="duplicate_contact",
                        params={"value": e164},
                    )
                }
            )
        if e164 != contact.phone_number:
            suppressed = suppression_entry(e164)
            if suppressed is not None:
                raise ValidationError({"phone_number": suppression_refusal(suppressed)})
        contact.phone_number = e164
    for name, value in _known_fields(fields).items():
        setattr(contact, name, value)
    contact.full_clean()
    contact.save()
    if tags is not None:
        contact.tags.set(tags_from_names(tags))
    return contact


def _known_fields(fields: dict[str, Any]) -> dict[str, Any]:
    unknown = set(fields) - set(CONTACT_EDITABLE_FIELDS)
    if unknown:
        raise TypeError(f"Unknown contact fields: {', '.join(sorted(unknown))}")
    return {name: (value or "") for name, value in fields.items()}


# --- Senders --------------------------------------------------------------------------------------


def sender_get_default() -> Sender:
    """The sender messages go out from unless another is chosen: the one marked default, else the
    number configured in the environment (WHATSAPP_PHONE_NUMBER_ID), created on first use."""
    sender = Sender.objects.filter(is_default=True, is_active=True).first()
    if sender is not None:
        return sender
    sender = sender_sync_from_settings()
    if sender is None:
        raise Sender.DoesNotExist(
            "No default sender: set WHATSAPP_PHONE_NUMBER_ID or mark a sender as default in the admin."
        )
    return sender


@transaction.atomic
def sender_sync_from_settings() -> Sender | None:
    """Create or update the sender the environment describes; it becomes the default if none is."""
    config = settings.WHATSAPP
    if not config["PHONE_NUMBER_ID"]:
        return None
    display = config["DISPLAY_PHONE_NUMBER"]
    sender, created = Sender.objects.get_or_create(
        phone_number_id=config["PHONE_NUMBER_ID"],
        defaults={
            "display_phone_number": phone_normalize(display) if display else "+10000000000",
            "waba_id": config["BUSINESS_ACCOUNT_ID"],
            "label": "Default (from environment)",
            "messages_per_second": config["MESSAGES_PER_SECOND"],
        },
    )
    if not created:
        sender.waba_id = config["BUSINESS_ACCOUNT_ID"] or sender.waba_id
        sender.messages_per_second = config["MESSAGES_PER_SECOND"]
        if display:
            sender.display_phone_number = phone_normalize(display)
    if not Sender.objects.filter(is_default=True).exclude(pk=sender.pk).exists():
        sender.is_default = True
    sender.save()
    return sender


def sender_for_webhook(*, phone_number_id: str, display_phone_number: str, waba_id: str) -> Sender | None:
    """The sender a webhook's `metadata` names. A signed webhook proves the number belongs to our Meta
    app, so a number we have not registered yet (added in Meta's dashboard) is recorded rather than its
    customers' messages dropped; staff see it in the admin with the label saying where it came from."""
    if not phone_number_id:
        return None
    sender = Sender.objects.filter(phone_number_id=phone_number_id).first()
    if sender is not None:
        return sender
    try:
        display = phone_normalize(display_phone_number)
    except ValidationError:
        display = "+10000000000"
    sender, _ = Sender.objects.get_or_create(
        phone_number_id=phone_number_id,
        defaults={
            "display_phone_number": display,
            "waba_id": waba_id,
            "label": f"Discovered from a webhook ({display})",
            "messages_per_second": settings.WHATSAPP["MESSAGES_PER_SECOND"],
        },
    )
    return sender


# --- API tokens -----------------------------------------------------------------------------------

API_TOKEN_PREFIX = "wa_"  # noqa: S105 - a public marker, not a secret


def api_token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def api_token_create(*, user: AbstractBaseUser, name: str = "") -> tuple[ApiToken, str]:
    """Create a bearer token for `user`. Returns the row and the token itself, which is not stored."""
    token = API_TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = ApiToken.objects.create(user=user, name=name, prefix=token[:10], digest=api_token_digest(token))
    return row, token


def api_token_authenticate(token: str) -> ApiToken | None:
    """The active token row for a presented token, or None. Marks it used (at most once a minute)."""
    row = (
        ApiToken.objects.select_related("user")
        .filter(digest=api_token_digest(token), revoked_at__isnull=True, user__is_active=True)
        .first()
    )
    if row is not None:
        now = timezone.now()
        if row.last_used_at is None or (now - row.last_used_at).total_seconds() > 60:
            ApiToken.objects.filter(pk=row.pk).update(last_used_at=now)
    return row


def api_token_revoke(*, token: ApiToken) -> None:
    ApiToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
