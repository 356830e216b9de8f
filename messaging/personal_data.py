"""Messaging's personal data, for privacy requests (compliance.personal_data.PersonalDataHolder).

Where messaging keeps a person:

    Contact            number, WhatsApp id, user id, username, profile name, locale, time zone, tags
    Message            everything they wrote to us and we wrote to them (content, preview, errors)
      MessageStatusEvent, ProviderCall   the messages' timelines and delivery log (cascade with them)
    PendingStatus      statuses for wamids we had not recorded yet (Meta's status object: recipient_id)
    WebhookEvent       the raw deliveries as received: their items, often batched with other people's
    ProviderAlert      Meta's notices for staff, whose title, details and payload may quote them
    other people's messages, timelines and provider calls: a contact card or a text quoting the number
    LogEntry           Django's admin history of their contacts and messages, and entries quoting them

Erasure deletes the contact (its messages, timelines and provider calls go with it) and the pending
statuses about them, removes their items from stored webhooks and redacts what remains anywhere else
(to "[erased]"). Other people's data is kept: in a batched webhook only this person's items go.

What counts as "mentioning" the person: any shape of their number (compliance.personal_data
.phone_formats), their WhatsApp and business-scoped user ids and username: these are unique to them, so
they are replaced wherever they are. Their names and the texts of their messages are replaced only in
what is about them: their own items (removed whole), and an alert or a processing error that quotes
one of those unique identifiers. A name is not unique, and "Ava Jones" or "Thanks, see you tomorrow"
in someone else's message (or in an alert about someone else) is that person's data, not this one's.

A needle matches only as a whole: a number never inside a longer number ("+15550123456" is not in
"155501234567" nor in "Order 5550123456789"), a name or username never inside a longer word.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache, cached_property, lru_cache
from typing import Any

from django.contrib.admin.models import LogEntry
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q, QuerySet, TextField
from django.db.models.functions import Cast
from django.utils import timezone

from compliance.personal_data import CorrectableField, HeldCategory, HeldData, Person, phone_formats
from messaging.models import (
    Contact,
    Message,
    MessageStatusEvent,
    PendingStatus,
    ProviderAlert,
    ProviderCall,
    WebhookEvent,
    iana_timezones,
)

logger = logging.getLogger(__name__)

ERASED = "[erased]"
#: Shorter names, ids and texts are not searched for or replaced: "Al" or "Yes" would match (and
#: mangle) other people's data far more often than it would find this person's.
MIN_NAME_LENGTH = 3
MIN_TEXT_LENGTH = 8
#: Keys of Meta's message objects (and ours) that hold what a person wrote or was sent.
TEXT_KEYS = frozenset({"body", "caption", "text", "filename", "address", "title", "description"})
#: Where a webhook value lists one item per person, and the keys naming that person (wa_id, user id).
PERSON_ITEMS = {
    "contacts": ("wa_id", "user_id"),
    "messages": ("from", "from_user_id"),
    "statuses": ("recipient_id", "recipient_user_id"),
    "user_preferences": ("wa_id", "user_id"),
}
MEDIA_KINDS = frozenset(
    {Message.Kind.IMAGE, Message.Kind.VIDEO, Message.Kind.AUDIO, Message.Kind.DOCUMENT, Message.Kind.STICKER}
)
LOCALE = re.compile(r"^(?P<language>[a-z]{2,3})(?:[_-](?P<region>[a-z]{2}|\d{3}))?$", re.IGNORECASE)
NAME_MAX = Contact._meta.get_field("profile_name").max_length


# --- Who, and how they are written -----------------------------------------------------------------


@dataclass(frozen=True)
class Traces:
    """How the person can appear in stored text."""

    wa_ids: frozenset[str]  # WhatsApp ids (digits): how webhooks name them
    user_ids: frozenset[str]  # Meta's business-scoped user ids
    identifiers: tuple[str, ...]  # numbers in every shape, ids, username: unique to them
    names: tuple[str, ...]
    texts: tuple[str, ...]  # what they wrote and what we wrote to them

    @cached_property
    def everything(self) -> tuple[str, ...]:
        return _longest_first([*self.identifiers, *self.names, *self.texts])

    @property
    def unique(self) -> tuple[str, ...]:
        return self.identifiers  # already longest first


def _longest_first(needles: Iterable[str]) -> tuple[str, ...]:
    # Longest first: "15550123456" must be replaced whole, not leave a "1" before "[erased]".
    return tuple(sorted({n for n in needles if n}, key=lambda n: (-len(n), n)))


def person_contacts(person: Person) -> QuerySet[Contact]:
    """The person's contacts: by id (`contact_id`, `contact_ids`), by number, and by WhatsApp id and
    business-scoped user id, theirs or those of the contacts found so (an older contact of the same
    person whose number changed keeps the WhatsApp id or user id)."""
    ids = person.all_contact_ids
    found = list(
        Contact.objects.filter(
            Q(pk__in=ids) | Q(phone_number=person.phone_number) | Q(wa_id=person.wa_id)
        ).only("wa_id", "user_id")
    )
    wa_ids = {person.wa_id} | {c.wa_id for c in found if c.wa_id}
    user_ids = {c.user_id for c in found if c.user_id}
    return Contact.objects.filter(
        Q(pk__in=[c.pk for c in found]) | Q(wa_id__in=sorted(wa_ids)) | Q(user_id__in=sorted(user_ids))
    )


def person_contact_ids(phone_number: str) -> list[int]:
    """Every contact that is the person with this E.164 number (ContactDirectory.contact_ids_for_person)."""
    return sorted(person_contacts(Person(phone_number=phone_number)).values_list("pk", flat=True))


def _message_texts(message: Message) -> set[str]:
    texts = {message.preview, message.error_details, message.rejection_reason}
    texts.update(_texts_in(message.content))
    return {text.strip() for text in texts if text and len(text.strip()) >= MIN_TEXT_LENGTH}


def _texts_in(value: Any) -> Iterable[str]:
    if isinstance(value, dict):
        for key, item in value.items():
            if key in TEXT_KEYS and isinstance(item, str):
                yield item
            else:
                yield from _texts_in(item)
    elif isinstance(value, list):
        for item in value:
            yield from _texts_in(item)


def _traces(person: Person, contacts: list[Contact], messages: Iterable[Message]) -> Traces:
    numbers = {person.phone_number, *(contact.phone_number for contact in contacts)}
    wa_ids = {person.wa_id} | {c.wa_id for c in contacts if c.wa_id} | {n.lstrip("+") for n in numbers}
    user_ids = {c.user_id for c in contacts if c.user_id}
    usernames = {c.username for c in contacts if len(c.username) >= MIN_NAME_LENGTH}
    identifiers = set().union(*(phone_formats(number) for number in numbers)) | wa_ids | user_ids | usernames
    names = {name.strip() for name in (*person.names, *(c.profile_name for c in contacts)) if name}
    texts = set().union(*(_message_texts(message) for message in messages))
    return Traces(
        wa_ids=frozenset(wa_ids),
        user_ids=frozenset(user_ids),
        identifiers=_longest_first(identifiers),
        names=_longest_first(n for n in names if len(n) >= MIN_NAME_LENGTH),
        texts=_longest_first(texts),
    )


def _stored_forms(needle: str) -> set[str]:
    """The needle as it may sit in a column: itself, and JSON-escaped (SQLite keeps JSON columns as
    json.dumps wrote them, "José" as "Jos\\u00e9"; Meta may escape the same way in raw bodies)."""
    return {needle, json.dumps(needle)[1:-1]}


def _mentioning(fields: Iterable[str], needles: Iterable[str], *, json_fields: Iterable[str] = ()) -> Q:
    """Rows where any of `fields` (text) or `json_fields` (as their JSON text) contains any needle.
    A scan of the table: fine for a rare erasure, never for a hot path."""
    query = Q()
    forms = set().union(*(_stored_forms(needle) for needle in needles if needle))
    if not forms:
        return Q(pk__in=[])
    for form in forms:
        for name in fields:
            query |= Q(**{f"{name}__contains": form})
        for name in json_fields:
            query |= Q(**{f"{name}_text__contains": form})
    return query


def _with_json_text(queryset: QuerySet, json_fields: Iterable[str]) -> QuerySet:
    return queryset.annotate(**{f"{name}_text": Cast(name, TextField()) for name in json_fields})


# --- Redaction (pure) --------------------------------------------------------------------------------


#: What may not touch a needle's edge: a digit next to a number ("+15550123456" is not in
#: "155501234567"), a letter next to a name or username ("Ava" is not in "Lava"). `[^\W\d_]` is a letter
#: in any script.
DIGIT_BEFORE, DIGIT_AFTER = r"(?<!\d)", r"(?!\d)"
LETTER_BEFORE, LETTER_AFTER = r"(?<![^\W\d_])", r"(?![^\W\d_])"


def _whole(needle: str) -> str:
    """A regex for `needle` standing on its own, never as part of a longer number or word."""
    first, last = needle[0], needle[-1]
    before = DIGIT_BEFORE if first.isdigit() or first == "+" else LETTER_BEFORE if first.isalpha() else ""
    after = DIGIT_AFTER if last.isdigit() else LETTER_AFTER if last.isalpha() else ""
    return before + re.escape(needle) + after


@lru_cache(maxsize=64)
def _needles_pattern(needles: tuple[str, ...]) -> re.Pattern | None:
    # Longest first: the alternation takes the first that matches, and "15550123456" must be replaced
    # whole, not leave a "1" before "[erased]".
    ordered = sorted({n for n in needles if n}, key=lambda n: (-len(n), n))
    return re.compile("|".join(_whole(n) for n in ordered)) if ordered else None


def scrub(value: Any, needles: tuple[str, ...]) -> Any:
    """`value` with every needle in every string (keys included) replaced by "[erased]", where it
    stands whole (see the module docstring)."""
    if isinstance(value, str):
        # The plain substring test first: most strings hold no needle, and it is far cheaper.
        if any(needle and needle in value for needle in needles):
            value = _needles_pattern(tuple(needles)).sub(ERASED, value)
        return value
    if isinstance(value, dict):
        return {scrub(key, needles): scrub(item, needles) for key, item in value.items()}
    if isinstance(value, list):
        return [scrub(item, needles) for item in value]
    if isinstance(value, int) and not isinstance(value, bool) and str(value) in needles:
        return ERASED  # a number written as a JSON number
    return value


def _mentions(value: Any, needles: tuple[str, ...]) -> bool:
    return scrub(value, needles) != value


def _forget_if_about(value: Any, traces: Traces) -> Any:
    """Free text we cannot split by person (a processing error, a body that is not JSON). If it quotes
    one of their unique identifiers it is about them, and their names and texts go too; if not, it is
    left as it is: a name alone is not them (see the module docstring)."""
    return scrub(value, traces.everything) if _mentions(value, traces.unique) else value


def _is_persons_item(item: Any, traces: Traces, id_keys: tuple[str, str]) -> bool:
    if not isinstance(item, dict):
        return False
    wa_id, user_id = (item.get(key) for key in id_keys)
    return (isinstance(wa_id, str) and wa_id in traces.wa_ids) or (
        isinstance(user_id, str) and user_id in traces.user_ids
    )


def _is_any_persons_item(item: Any, traces: Traces) -> bool:
    return any(_is_persons_item(item, traces, keys) for keys in PERSON_ITEMS.values())


def webhook_body_forget(body: Any, traces: Traces) -> tuple[Any, int]:
    """A webhook body without the person's items (their contacts entry, messages, statuses and
    preferences), and their unique identifiers replaced in what remains. What remains is other
    people's: their names and words stay, even when they name this person. Returns the body and how
    many items were removed."""
    removed = 0
    entries = body.get("entry") if isinstance(body, dict) else None
    for entry in entries if isinstance(entries, list) else []:
        changes = entry.get("changes") if isinstance(entry, dict) else None
        for change in changes if isinstance(changes, list) else []:
            value = change.get("value") if isinstance(change, dict) else None
            if not isinstance(value, dict):
                continue
            for key, id_keys in PERSON_ITEMS.items():
                items = value.get(key)
                if isinstance(items, list):
                    kept = [item for item in items if not _is_persons_item(item, traces, id_keys)]
                    removed += len(items) - len(kept)
                    value[key] = kept
    return scrub(body, traces.unique), removed


def webhook_raw_forget(raw_body: str, traces: Traces) -> tuple[str, int]:
    try:
        body = json.loads(raw_body)
    except ValueError:
        return _forget_if_about(raw_body, traces), 0  # not JSON (a hand-made row): no items to tell apart
    forgotten, removed = webhook_body_forget(json.loads(raw_body), traces)
    if forgotten == body:
        # The database's match was looser than ours (SQLite's LIKE ignores case): leave it as received.
        return raw_body, 0
    return json.dumps(forgotten, ensure_ascii=False), removed


def _webhook_event_forget(event: WebhookEvent, traces: Traces) -> bool:
    """Rewrite one stored delivery without the person. Its body then no longer matches Meta's
    signature: expected, and noted in its summary. `body_sha256` stays, so a redelivery of the original
    body is still recognised as a duplicate, and never brings the person back."""
    raw_body, removed = webhook_raw_forget(event.raw_body, traces)
    error = _forget_if_about(event.error, traces)
    if raw_body == event.raw_body and error == event.error:
        return False
    summary = dict(event.summary or {})
    summary["erased"] = int(summary.get("erased", 0)) + removed
    WebhookEvent.objects.filter(pk=event.pk).update(raw_body=raw_body, error=error, summary=summary)
    return True


def webhook_event_drop_person(event: WebhookEvent, *, phone_number: str) -> bool:
    """Remove one person's items (and every shape of their number) from a stored delivery. For
    statuses.py: a late status for a number erased at its owner's request must not keep that number."""
    traces = _traces(Person(phone_number=phone_number), [], [])
    event = WebhookEvent.objects.filter(pk=event.pk).only("raw_body", "error", "summary").first()
    return event is not None and _webhook_event_forget(event, traces)


# --- The holder ------------------------------------------------------------------------------------


class MessagingPersonalData:
    name = "messaging"

    # -- Correct ----------------------------------------------------------------------------------

    def correctable_fields(self) -> list[CorrectableField]:
        return [
            CorrectableField(
                "name", "Your name, as our staff see it in WhatsApp conversations", _name_correct
            ),
            CorrectableField("locale", "Your language and region (e.g. en_US, es_MX)", _locale_correct),
            CorrectableField("timezone", "Your time zone (e.g. America/Los_Angeles)", _timezone_correct),
        ]

    def personal_data_correct(self, person: Person, corrections: dict[str, str]) -> list[str]:
        wanted = _corrections_validate(corrections)
        if not wanted:
            return []
        from messaging.services import contact_update

        changed: set[str] = set()
        with transaction.atomic():
            for contact in person_contacts(person):
                fields = {
                    CONTACT_FIELD[name]: value
                    for name, value in wanted.items()
                    if getattr(contact, CONTACT_FIELD[name]) != value
                }
                if fields:
                    contact_update(contact=contact, **fields)
                    changed.update(name for name, field in CONTACT_FIELD.items() if field in fields)
                if "name" in wanted and ("profile_name" in fields or contact.name_corrected_at is None):
                    # The name they asked for now outranks their WhatsApp profile name, which every
                    # inbound message would otherwise write back (messaging.inbound).
                    Contact.objects.filter(pk=contact.pk).update(name_corrected_at=timezone.now())
        return sorted(changed)

    # -- Know --------------------------------------------------------------------------------------

    def personal_data_collect(self, person: Person) -> HeldData:
        contacts = list(person_contacts(person).prefetch_related("tags"))
        if not contacts:
            return HeldData()
        messages = list(
            Message.objects.filter(contact__in=contacts)
            .select_related("template")
            .prefetch_related("status_events")
            .order_by("created_at", "id")
        )
        return HeldData(
            categories=_categories(contacts, messages),
            pieces={
                "contacts": [_contact_piece(contact) for contact in contacts],
                "messages": [_message_piece(message) for message in messages],
            },
        )

    # -- Delete ------------------------------------------------------------------------------------

    def personal_data_erase(self, person: Person) -> dict[str, int]:
        contacts = list(person_contacts(person))
        messages = list(
            Message.objects.filter(contact__in=contacts).only(
                "preview", "content", "error_details", "rejection_reason", "provider_message_id"
            )
        )
        # Everything that identifies them, read before the rows that hold it are gone.
        traces = _traces(person, contacts, messages)
        wamids = [m.provider_message_id for m in messages if m.provider_message_id]

        counts = {
            "pending statuses deleted": _pending_statuses_delete(traces, wamids),
            "webhook events redacted": sum(
                _webhook_event_forget(event, traces) for event in _webhook_events_mentioning(traces)
            ),
            "alerts redacted": _alerts_redact(traces),
            "admin history entries redacted": _admin_history_redact(
                traces, contact_ids=[c.pk for c in contacts], message_ids=[m.pk for m in messages]
            ),
        }

        _, deleted = Contact.objects.filter(pk__in=[c.pk for c in contacts]).delete()
        counts |= {
            "contacts deleted": deleted.get("messaging.Contact", 0),
            "messages deleted": deleted.get("messaging.Message", 0),
            "status events deleted": deleted.get("messaging.MessageStatusEvent", 0),
            "provider calls deleted": deleted.get("messaging.ProviderCall", 0),
        }
        counts |= _others_redact(traces)
        return counts


# --- Correcting ------------------------------------------------------------------------------------

CONTACT_FIELD = {"name": "profile_name", "locale": "locale", "timezone": "timezone"}


@cache
def _timezones_by_lowercase_name() -> dict[str, str]:
    return {name.lower(): name for name in iana_timezones()}


def _corrections_validate(corrections: dict[str, str]) -> dict[str, str]:
    """The corrections this holder owns, normalized ("en-us" → "en_US", "europe/paris" →
    "Europe/Paris"). Raises one ValidationError naming every bad field, with a code each."""
    wanted: dict[str, str] = {}
    errors: dict[str, ValidationError] = {}
    for name in CONTACT_FIELD:
        if name not in corrections:
            continue
        value = str(corrections[name] or "").strip()
        try:
            wanted[name] = CORRECTORS[name](value)
        except ValidationError as exc:
            errors[name] = exc
    if errors:
        raise ValidationError(errors)
    return wanted


def _name_correct(value: str) -> str:
    if not value:
        raise ValidationError("Enter the corrected name.", code="required")
    if len(value) > NAME_MAX:
        raise ValidationError(
            "A name can have at most %(limit)d characters.", code="max_length", params={"limit": NAME_MAX}
        )
    return value


def _locale_correct(value: str) -> str:
    match = LOCALE.match(value)
    if match is None:
        raise ValidationError(
            "“%(value)s” is not a language code; use a language and region like en_US or es_MX.",
            code="invalid_locale",
            params={"value": value[:40]},
        )
    region = match["region"]
    return match["language"].lower() + (f"_{region.upper()}" if region else "")


def _timezone_correct(value: str) -> str:
    canonical = _timezones_by_lowercase_name().get(value.lower())
    if canonical is None:
        raise ValidationError(
            "“%(value)s” is not an IANA time zone (e.g. America/New_York).",
            code="invalid_timezone",
            params={"value": value[:80]},
        )
    return canonical


CORRECTORS = {"name": _name_correct, "locale": _locale_correct, "timezone": _timezone_correct}


# --- Collecting ------------------------------------------------------------------------------------

FROM_THEM = "you, through WhatsApp"
TO_CONVERSE = "to exchange the WhatsApp messages you asked for and answer yours"


def _categories(contacts: list[Contact], messages: list[Message]) -> list[HeldCategory]:
    inbound = [m for m in messages if m.direction == Message.Direction.INBOUND]
    outbound = [m for m in messages if m.direction == Message.Direction.OUTBOUND]
    held = [
        ("phone number", any(c.phone_number for c in contacts)),
        ("WhatsApp id", any(c.wa_id for c in contacts)),
        ("WhatsApp profile name", any(c.profile_name for c in contacts)),
        ("WhatsApp username", any(c.username for c in contacts)),
        ("WhatsApp business-scoped user id", any(c.user_id for c in contacts)),
        ("language and time zone", any(c.locale or c.timezone for c in contacts)),
        ("the labels (tags) our staff gave you", any(c.tags.all() for c in contacts)),
    ]
    categories = [
        HeldCategory(
            category="Identifiers",
            pieces=", ".join(piece for piece, present in held if present),
            source=f"{FROM_THEM} (your profile), our staff, or a list you were added to",
            purpose=TO_CONVERSE,
            count=len(contacts),
        )
    ]
    if messages:
        categories.append(
            HeldCategory(
                category="Commercial information",
                pieces=f"the WhatsApp messages you sent us ({len(inbound)}) and we sent you "
                f"({len(outbound)}): their text or media reference, when they were written, sent and read",
                source=f"{FROM_THEM}, and our staff and systems",
                purpose=TO_CONVERSE,
                count=len(messages),
            )
        )
    locations = sum(1 for m in inbound if m.kind == Message.Kind.LOCATION)
    if locations:
        categories.append(
            HeldCategory(
                category="Geolocation data",
                pieces="the locations you shared in WhatsApp messages",
                source=FROM_THEM,
                purpose=TO_CONVERSE,
                count=locations,
            )
        )
    media = sum(1 for m in inbound if m.kind in MEDIA_KINDS)
    if media:
        categories.append(
            HeldCategory(
                category="Audio, electronic, visual or similar information",
                pieces="references to the photos, videos, voice messages and documents you sent "
                "(the files themselves stay with WhatsApp)",
                source=FROM_THEM,
                purpose=TO_CONVERSE,
                count=media,
            )
        )
    receipts = sum(1 for m in outbound for event in m.status_events.all() if event.source == "webhook")
    if receipts:
        categories.append(
            HeldCategory(
                category="Internet or other electronic network activity",
                pieces="delivery statuses and read receipts of the messages we sent you",
                source="WhatsApp (Meta), as your phone reported them",
                purpose="to know whether our messages reached you, and what WhatsApp charges for them",
                count=receipts,
            )
        )
    return categories


def _iso(moment) -> str | None:
    return moment.isoformat() if moment else None


def _contact_piece(contact: Contact) -> dict[str, Any]:
    return {
        "phone_number": contact.phone_number,
        "whatsapp_id": contact.wa_id,
        "whatsapp_user_id": contact.user_id,
        "whatsapp_username": contact.username,
        "profile_name": contact.profile_name,
        "locale": contact.locale,
        "timezone": contact.timezone,
        "name_corrected_at": _iso(contact.name_corrected_at),
        "tags": [tag.name for tag in contact.tags.all()],
        "last_message_from_you_at": _iso(contact.last_inbound_at),
        "created_at": _iso(contact.created_at),
        "updated_at": _iso(contact.updated_at),
    }


def _message_piece(message: Message) -> dict[str, Any]:
    """One message as the person may see it: what was said and what happened to it, not our internals
    (no staff names, no provider call logs, no rate-limiter or retry bookkeeping)."""
    inbound = message.direction == Message.Direction.INBOUND
    piece: dict[str, Any] = {
        "direction": "from you" if inbound else "to you",
        "kind": message.kind,
        "text": message.preview,
        "content": message.content,
        "template": message.template.name if message.template else "",
        "status": message.status,
        "written_at": _iso(message.provider_timestamp if inbound else message.created_at),
        "sent_at": _iso(message.sent_at),
        "delivered_at": _iso(message.delivered_at),
        "read_at": _iso(message.read_at),
        "played_at": _iso(message.played_at),
        "failed_at": _iso(message.failed_at),
        "status_history": [
            {"status": event.status, "at": _iso(event.occurred_at)} for event in message.status_events.all()
        ],
    }
    if message.error_code or message.error_title:
        piece["error"] = {"code": message.error_code, "title": message.error_title}
    if message.pricing_category or message.billable is not None:
        piece["pricing"] = {
            "category": message.pricing_category,
            "type": message.pricing_type,
            "model": message.pricing_model,
            "billable": message.billable,
        }
    return piece


# --- Erasing ---------------------------------------------------------------------------------------


def _pending_statuses_delete(traces: Traces, wamids: list[str]) -> int:
    match = Q(payload__recipient_id__in=sorted(traces.wa_ids)) | Q(provider_message_id__in=wamids)
    if traces.user_ids:
        match |= Q(payload__recipient_user_id__in=sorted(traces.user_ids))
    deleted, _ = PendingStatus.objects.filter(match).delete()
    return deleted


def _webhook_events_mentioning(traces: Traces) -> QuerySet[WebhookEvent]:
    # Their items always carry their wa_id or user id, and a name alone changes nothing (see
    # _forget_if_about), so the unique identifiers find every delivery there is something to do in.
    return WebhookEvent.objects.filter(_mentioning(["raw_body", "error"], traces.unique)).only(
        "raw_body", "error", "summary"
    )


def _alerts_redact(traces: Traces) -> int:
    """Alerts about the person: one whose payload is their item, or that quotes a unique identifier of
    theirs. Those lose the names and texts too; an alert that only shares a name is someone else's."""
    alerts = _with_json_text(ProviderAlert.objects.all(), ["payload"]).filter(
        _mentioning(["title", "details"], traces.unique, json_fields=["payload"])
    )
    redacted = 0
    for alert in alerts:
        theirs = _is_any_persons_item(alert.payload, traces)
        if not theirs and not _mentions([alert.title, alert.details, alert.payload], traces.unique):
            continue  # the database's match was looser than ours (a number inside a longer one)
        # An alert about one of their items (an inbound message we could not store, say) keeps no copy.
        payload = {"erased": ERASED} if theirs else alert.payload
        fields = {
            "title": scrub(alert.title, traces.everything),
            "details": scrub(alert.details, traces.everything),
            "payload": scrub(payload, traces.everything),
        }
        if any(getattr(alert, name) != value for name, value in fields.items()):
            ProviderAlert.objects.filter(pk=alert.pk).update(**fields)
            redacted += 1
    return redacted


def _admin_history_redact(traces: Traces, *, contact_ids: list[int], message_ids: list[int]) -> int:
    """Django's admin history of their contacts and messages (an entry's object_repr is the contact's
    name and number, its change message the fields staff changed), and any entry quoting one of their
    unique identifiers. Entries about other objects that only share a name are someone else's."""
    types = ContentType.objects.get_for_models(Contact, Message)
    about = Q(content_type=types[Contact], object_id__in=[str(pk) for pk in contact_ids]) | Q(
        content_type=types[Message], object_id__in=[str(pk) for pk in message_ids]
    )
    ids = list(LogEntry.objects.filter(about).values_list("pk", flat=True))
    ids += [
        entry.pk
        for entry in LogEntry.objects.filter(_mentioning(["object_repr", "change_message"], traces.unique))
        .exclude(pk__in=ids)
        .only("object_repr", "change_message")
        if _mentions([entry.object_repr, entry.change_message], traces.unique)
    ]
    return LogEntry.objects.filter(pk__in=ids).update(object_repr=ERASED, change_message="")


def _others_redact(traces: Traces) -> dict[str, int]:
    """Their number in other people's conversations (a shared contact card, a text quoting it), in
    timelines and in the delivery log. Only the unique identifiers: see the module docstring."""
    needles = traces.unique
    candidates = {
        "other people's messages redacted": (
            _with_json_text(Message.objects.all(), ["content"]).filter(
                _mentioning(
                    ["preview", "error_details", "rejection_reason"], needles, json_fields=["content"]
                )
            ),
            ["preview", "content", "error_details", "rejection_reason"],
        ),
        "other timelines redacted": (
            MessageStatusEvent.objects.filter(_mentioning(["detail"], needles)),
            ["detail"],
        ),
        "provider calls redacted": (
            ProviderCall.objects.filter(
                _mentioning(["url", "request_body", "response_body", "error"], needles)
            ),
            ["url", "request_body", "response_body", "error"],
        ),
    }
    return {label: _rows_scrub(rows, fields, needles) for label, (rows, fields) in candidates.items()}


def _rows_scrub(rows: QuerySet, fields: list[str], needles: tuple[str, ...]) -> int:
    """Rewrite the candidate rows the database found (LIKE cannot tell "5550123456" alone from the
    same digits inside a longer number) where a needle really stands; return how many changed."""
    changed = 0
    for row in rows.only(*fields):
        values = {name: scrub(getattr(row, name), needles) for name in fields}
        if any(getattr(row, name) != value for name, value in values.items()):
            type(row).objects.filter(pk=row.pk).update(**values)
            changed += 1
    return changed
