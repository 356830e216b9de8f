"""Inbound messages and customer preferences from Meta's webhooks.

    InboundMessage → the person (by wa_id, else business-scoped user id, else phone number, else a new
    contact) → one Message row per wamid (a redelivery finds it and does nothing more) → the 24-hour
    window opens from the message's own timestamp → keyword rules and auto-replies (messaging.keywords)

What staff see: Meta's message object unchanged in `content` (forwarded flags, the ad `referral`,
media id / mime type / sha256 / caption / filename all stay there), a readable `preview`, and the kind:
text, image, video, audio, document, sticker, location, contacts, reaction as themselves; interactive
replies (button, list, flow) and template quick-reply taps (`button`) as INTERACTIVE, since both are
taps on something we sent; `system` notices, orders and unsupported types as UNSUPPORTED (Meta's type
stays in content["type"], the preview says what happened).

    UserPreference (Meta's `user_preferences`: marketing_messages stop/resume) → the consent ledger
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from compliance.models import ConsentAction, ConsentSource, ConsentStatus, Purpose
from compliance.services import Evidence, consent_current, consent_history, consent_record, next_status
from messaging.keywords import keyword_respond
from messaging.models import Contact, Message, MessageStatus, Sender, WebhookEvent
from messaging.phone import phone_normalize
from messaging.sending import record_status
from messaging.services import sender_for_webhook, sender_get_default
from messaging.webhook_events import InboundMessage, MetaError, ProviderNotice, UserPreference
from messaging.webhook_processing import provider_notice_record

logger = logging.getLogger(__name__)

KIND_OF_TYPE = {
    "text": Message.Kind.TEXT,
    "image": Message.Kind.IMAGE,
    "video": Message.Kind.VIDEO,
    "audio": Message.Kind.AUDIO,
    "document": Message.Kind.DOCUMENT,
    "sticker": Message.Kind.STICKER,
    "location": Message.Kind.LOCATION,
    "contacts": Message.Kind.CONTACTS,
    "interactive": Message.Kind.INTERACTIVE,
    "button": Message.Kind.INTERACTIVE,
    "reaction": Message.Kind.REACTION,
}
#: Types that are not the person writing to us: they do not open the customer-service window.
NOT_FROM_THE_PERSON = {"system"}
MARKETING_CATEGORY = "marketing_messages"
PREVIEW_QUOTE = 60


# --- Previews ----------------------------------------------------------------------------------------


def _with(label: str, *details: Any) -> str:
    shown = [str(d).strip() for d in details if d not in (None, "") and str(d).strip()]
    return f"{label}: {' — '.join(shown)}" if shown else label


def _quote(text: str) -> str:
    text = " ".join(text.split())
    return f"“{text[:PREVIEW_QUOTE]}…”" if len(text) > PREVIEW_QUOTE else f"“{text}”"


def _contacts_preview(cards: Any) -> str:
    names = []
    for card in cards if isinstance(cards, list) else []:
        name = card.get("name") if isinstance(card, dict) and isinstance(card.get("name"), dict) else {}
        names.append(name.get("formatted_name") or name.get("first_name") or "(no name)")
    label = "👤 Contact" if len(names) == 1 else f"👤 {len(names)} contacts"
    return _with(label, ", ".join(names))


def _interactive_preview(body: dict) -> str:
    kind = body.get("type", "")
    reply = body.get(kind) if isinstance(body.get(kind), dict) else {}
    if kind == "button_reply":
        return f"Tapped {_quote(reply.get('title', ''))}"
    if kind == "list_reply":
        return f"Chose {_quote(reply.get('title', ''))}" + (
            f" ({reply['description']})" if reply.get("description") else ""
        )
    if kind == "nfm_reply":
        return _with("📝 Form sent", reply.get("body") or reply.get("name"))
    return f"Interactive reply ({kind or 'unknown'})"


def _reaction_preview(body: dict, target: Message | None) -> str:
    what = _quote(target.preview) if target is not None and target.preview else "a message"
    emoji = str(body.get("emoji") or "")
    return f"Reacted {emoji} to {what}" if emoji else f"Removed their reaction to {what}"


def _error_preview(errors: tuple[MetaError, ...]) -> str:
    first = errors[0] if errors else MetaError()
    return " ".join(part for part in (first.title or first.message, first.details) if part)


def inbound_preview(item: InboundMessage, *, reaction_target: Message | None = None) -> str:
    """What staff read in the conversation list for one inbound message."""
    raw, body = item.raw, item.body
    meta_type = str(raw.get("type") or "")
    if item.type == "text":
        return str(body.get("body") or "")
    if item.type == "image":
        return _with("📷 Photo", body.get("caption"))
    if item.type == "video":
        return _with("🎥 Video", body.get("caption"))
    if item.type == "audio":
        return "🎤 Voice message" if body.get("voice") else "🎵 Audio"
    if item.type == "document":
        return _with("📄 Document", body.get("filename"), body.get("caption"))
    if item.type == "sticker":
        return "💟 Sticker" + (" (animated)" if body.get("animated") else "")
    if item.type == "location":
        place = ", ".join(str(body[k]) for k in ("name", "address") if body.get(k))
        return _with("📍 Location", place or f"{body.get('latitude')}, {body.get('longitude')}")
    if item.type == "contacts":
        return _contacts_preview(raw.get("contacts"))
    if item.type == "interactive":
        return _interactive_preview(body)
    if item.type == "button":
        return f"Tapped {_quote(str(body.get('text') or body.get('payload') or ''))}"
    if item.type == "reaction":
        return _reaction_preview(body, reaction_target)
    if item.type == "system":
        return _with(
            "🔔 " + str(body.get("type") or "system").replace("_", " ").capitalize(), body.get("body")
        )
    if item.type == "order":
        products = body.get("product_items") if isinstance(body.get("product_items"), list) else []
        return _with("🛒 Order", f"{len(products)} item(s)", body.get("text"))
    kind = (body.get("type") if isinstance(body, dict) else "") or meta_type
    return _with(f"⚠️ Unsupported message ({kind or 'unknown type'})", _error_preview(item.errors))


# --- The person --------------------------------------------------------------------------------------


def _phone_from(wa_id: str) -> str | None:
    if not wa_id:
        return None
    try:
        return phone_normalize(wa_id)
    except ValidationError:
        return None


def contact_for_inbound(
    *, wa_id: str, user_id: str, profile_name: str = "", username: str = ""
) -> Contact | None:
    """The person by wa_id, else business-scoped user id, else phone number; created when we have a
    number. None for someone we do not know and whose number Meta does not give (username-only users).
    Known details Meta sent (wa_id, user id, username, profile name) are brought up to date, except a
    name the person corrected."""
    contact = None
    if wa_id:
        contact = Contact.objects.filter(wa_id=wa_id).order_by("pk").first()
    if contact is None and user_id:
        contact = Contact.objects.filter(user_id=user_id).order_by("pk").first()
    phone = _phone_from(wa_id)
    if contact is None and phone:
        contact = Contact.objects.filter(phone_number=phone).first()
    if contact is None:
        if not phone:
            return None
        try:
            with transaction.atomic():
                return Contact.objects.create(
                    phone_number=phone,
                    wa_id=wa_id,
                    user_id=user_id,
                    username=username,
                    profile_name=profile_name,
                )
        except IntegrityError:  # created by a concurrent delivery a moment ago
            return Contact.objects.get(phone_number=phone)
    # A name the person corrected through a privacy request (CCPA's right to correct) stays: their
    # WhatsApp profile name, sent with every message, would otherwise undo the correction silently.
    # Staff may still edit the name in the admin.
    if contact.name_corrected_at is not None:
        profile_name = ""
    changed = []
    for field, value in (
        ("wa_id", wa_id),
        ("user_id", user_id),
        ("username", username),
        ("profile_name", profile_name),
    ):
        if value and getattr(contact, field) != value:
            setattr(contact, field, value[: Contact._meta.get_field(field).max_length])
            changed.append(field)
    if changed:
        contact.save(update_fields=[*changed, "updated_at"])
    return contact


def _window_open(contact: Contact, at: datetime) -> None:
    """The window runs from the person's latest message; a late redelivery never moves it back."""
    Contact.objects.filter(pk=contact.pk).filter(
        Q(last_inbound_at__isnull=True) | Q(last_inbound_at__lt=at)
    ).update(last_inbound_at=at)
    contact.refresh_from_db(fields=["last_inbound_at"])


def _number_changed(item: InboundMessage, contact: Contact, event: WebhookEvent | None) -> None:
    """`user_changed_number`: the contact moves to the new number, unless another contact has it."""
    new_wa_id = str(item.body.get("wa_id") or "")
    new_phone = _phone_from(new_wa_id)
    if not new_phone or new_phone == contact.phone_number:
        return
    holder = Contact.objects.filter(phone_number=new_phone).exclude(pk=contact.pk).first()
    if holder is not None:
        provider_notice_record(
            ProviderNotice(
                kind="contact_number_conflict",
                severity="warning",
                meta=item.meta,
                title=f"Contact {contact.pk} changed number to one contact {holder.pk} already has",
                details="Neither contact was changed: merge or correct them by hand. "
                f"Meta's notice: {item.body.get('body', '')}",
                raw=item.raw,
            ),
            webhook_event=event,
        )
        return
    contact.phone_number, contact.wa_id = new_phone, new_wa_id
    contact.save(update_fields=["phone_number", "wa_id", "updated_at"])


# --- Inbound messages --------------------------------------------------------------------------------


def _sender(item: InboundMessage) -> Sender | None:
    sender = sender_for_webhook(
        phone_number_id=item.meta.phone_number_id,
        display_phone_number=item.meta.display_phone_number,
        waba_id=item.meta.waba_id,
    )
    if sender is not None:
        return sender
    try:
        return sender_get_default()
    except Sender.DoesNotExist:
        return None


def _unmatched(item: InboundMessage, event: WebhookEvent | None, why: str) -> None:
    provider_notice_record(
        ProviderNotice(
            kind="inbound_unmatched",
            severity="warning",
            meta=item.meta,
            title=f"Inbound message {item.wamid[:80]} not stored: {why}",
            details=f"from user id {item.from_user_id or '-'}; type {item.raw.get('type', '')}",
            raw=item.raw,
        ),
        webhook_event=event,
    )


def inbound_message_receive(
    item: InboundMessage, *, webhook_event: WebhookEvent | None = None
) -> Message | None:
    """Store one inbound message (once per wamid), open the window, and run the keyword rules."""
    if Message.objects.filter(provider_message_id=item.wamid).exists():
        return None  # a redelivery or a replay: everything was done the first time
    profile = item.profile
    wa_id = item.from_wa_id or (profile.wa_id if profile else "")
    contact = contact_for_inbound(
        wa_id=wa_id,
        user_id=item.from_user_id or (profile.user_id if profile else ""),
        profile_name=profile.name if profile else "",
        username=profile.username if profile else "",
    )
    if contact is None:
        _unmatched(item, webhook_event, "a person without a phone number whom we do not know yet")
        return None
    sender = _sender(item)
    if sender is None:
        _unmatched(item, webhook_event, "no sender: the webhook names no business number and none is default")
        return None

    at = item.timestamp or (webhook_event.received_at if webhook_event else None) or timezone.now()
    answered_id = (
        str(item.body.get("message_id") or "")
        if item.type == "reaction"
        else str(item.context.get("id") or "")
    )
    answered = Message.objects.filter(provider_message_id=answered_id).first() if answered_id else None
    first_error = item.errors[0] if item.errors else MetaError()
    message = Message(
        direction=Message.Direction.INBOUND,
        contact=contact,
        sender=sender,
        kind=KIND_OF_TYPE.get(item.type, Message.Kind.UNSUPPORTED),
        content=item.raw,
        preview=inbound_preview(item, reaction_target=answered),
        reply_to=answered_id[:128],
        in_reply_to=answered,
        status=MessageStatus.RECEIVED,
        provider_message_id=item.wamid,
        provider_timestamp=at,
        error_code=first_error.code[:32],
        error_title=(first_error.title or first_error.message)[:255],
        error_details=first_error.details,
    )
    try:
        with transaction.atomic():
            message.save()
    except IntegrityError:
        return None  # the same wamid, stored by a concurrent delivery a moment ago
    record_status(message, MessageStatus.RECEIVED, source="webhook", at=at)

    if item.type == "system" and item.body.get("type") == "user_changed_number":
        _number_changed(item, contact, webhook_event)
    if item.type not in NOT_FROM_THE_PERSON:
        _window_open(contact, at)
    keyword_respond(message, at=at)
    return message


# --- Meta's user preferences -------------------------------------------------------------------------


def _marketing_resume_restores(contact_id: int) -> tuple[bool, str]:
    """Resume undoes Meta's stop: true only when the latest marketing event is a user_preferences
    opt-out that revoked a granted consent. Also returns the wording version of that grant."""
    status: str | None = None
    grant_version = ""
    latest = None
    before_latest: str | None = None
    for event in consent_history(contact_id=contact_id):
        if event.purpose != Purpose.MARKETING:
            continue
        before_latest, latest = status, event
        if event.action == ConsentAction.OPT_IN and event.text_version:
            grant_version = event.text_version
        status = next_status(status, event)
    restores = (
        latest is not None
        and latest.action == ConsentAction.OPT_OUT
        and latest.source == ConsentSource.META_USER_PREFERENCES
        and before_latest == ConsentStatus.GRANTED
    )
    return restores, grant_version


def user_preference_apply(item: UserPreference, *, webhook_event: WebhookEvent | None = None) -> None:
    """Meta's marketing stop → marketing opt-out; resume → the consent the stop revoked is restored (a
    person who never consented to marketing gets nothing from resume). Replays change nothing."""
    notice = None
    if item.category != MARKETING_CATEGORY or item.value not in ("stop", "resume"):
        notice = f"user preference {item.category or '(none)'} = {item.value} is not handled"
    profile = item.profile
    contact = None
    if notice is None:
        contact = contact_for_inbound(
            wa_id=item.wa_id,
            user_id=item.user_id,
            profile_name=profile.name if profile else "",
            username=profile.username if profile else "",
        )
        if contact is None:
            notice = "user preference from a person without a phone number whom we do not know"
    if notice is not None:
        provider_notice_record(
            ProviderNotice(
                kind="user_preferences", severity="warning", meta=item.meta, title=notice[:255], raw=item.raw
            ),
            webhook_event=webhook_event,
        )
        return
    at = item.timestamp or timezone.now()
    stamp = int(at.timestamp())
    evidence = Evidence(
        message_id=f"user_preferences:{item.wa_id or item.user_id}:{item.value}:{stamp}",
        reason=f"Meta user_preferences {item.category}={item.value} at {at.isoformat()}: {item.detail}".strip(),
    )
    current = consent_current(contact_id=contact.pk).get(Purpose.MARKETING, {}).get("status")
    if item.value == "stop":
        if current == ConsentStatus.REVOKED:
            return  # already out (a replay, or they had said STOP to us)
        consent_record(
            contact_id=contact.pk,
            phone_number=contact.phone_number,
            purpose=Purpose.MARKETING,
            action=ConsentAction.OPT_OUT,
            source=ConsentSource.META_USER_PREFERENCES,
            evidence=evidence,
            occurred_at=at,
        )
        return
    restores, version = _marketing_resume_restores(contact.pk)
    if not restores:
        logger.info("Meta resume for contact %s: no marketing consent of ours to restore", contact.pk)
        return
    consent_record(
        contact_id=contact.pk,
        phone_number=contact.phone_number,
        name=contact.profile_name,
        purpose=Purpose.MARKETING,
        action=ConsentAction.OPT_IN,
        source=ConsentSource.META_USER_PREFERENCES,
        evidence=evidence,
        text_version=version,
        occurred_at=at,
    )
