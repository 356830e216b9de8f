"""Keywords people send us, and the replies we send on our own: consent keywords, HELP, the double
opt-in confirmation, and staff-configured auto-replies.

For one inbound message, the first rule that applies wins, and it sends at most one reply:

    1. opt-out   STOP, QUIT, END, REVOKE, OPT OUT, CANCEL, UNSUBSCRIBE → opted out of every purpose
                 (ledger evidence: the inbound message id). One confirmation, only when the opt-out
                 changed something: a second STOP is recorded but answered with silence.
    2. opt-in    START, UNSTOP → the purposes the person's opt-out took away (those granted right before
                 it) are granted again, against the current consent text; confirmed. A person who had
                 granted nothing gets nothing granted: START restores, it never invents consent.
    3. confirm   YES, CONFIRM, or the double opt-in template's first quick-reply button, while an opt-in
                 of the person waits for confirmation → consent_confirm_pending; confirmed.
    4. help      HELP → settings.WHATSAPP_HELP_TEXT (or the built-in wording naming the business).
    5. staff AutoReply rows (active, by priority): exact, or contains-as-a-word; text or template.

Matching (pure, `keyword_of`, `autoreply_choose`): Unicode-normalized, case-insensitive, surrounding
whitespace and punctuation ignored ("  stop!! ", "Stop 🛑"). For the consent keywords, separators
inside the word are ignored too, so "OPT OUT", "opt-out" and "OptOut" all match. A keyword inside a
sentence ("don't stop", "please stop it") is not a keyword: people must be able to say the word.

Replies are ordinary outbound messages (system-created: no author, no approval), queued and sent by
the normal pipeline, so the gate runs again right before sending. Two of them have a gate rule of
their own (compliance.gate.SystemPurpose), stored on the message as `purpose` when the system writes
it: the STOP confirmation and the double opt-in request.
"""

from __future__ import annotations

import enum
import logging
import re
import unicodedata
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from compliance.gate import SystemPurpose, Verdict, gate_check
from compliance.models import ConsentAction, ConsentSource, ConsentStatus, Purpose
from compliance.services import (
    Evidence,
    consent_confirm_pending,
    consent_current,
    consent_history,
    consent_opt_out_everywhere,
    consent_record,
    consent_text_current,
    next_status,
)
from messaging.models import AutoReply, Contact, Message, MessageStatus, ProviderAlert, Sender

logger = logging.getLogger(__name__)


class Keyword(enum.StrEnum):
    OPT_OUT = "opt_out"
    OPT_IN = "opt_in"
    CONFIRM = "confirm"
    HELP = "help"


#: Words compared with separators removed ("opt out" → "optout").
KEYWORDS: dict[str, Keyword] = {
    **dict.fromkeys(("stop", "quit", "end", "revoke", "optout", "cancel", "unsubscribe"), Keyword.OPT_OUT),
    **dict.fromkeys(("start", "unstop"), Keyword.OPT_IN),
    **dict.fromkeys(("yes", "confirm"), Keyword.CONFIRM),
    "help": Keyword.HELP,
}
#: Quick-reply payloads we put on the double opt-in template's buttons (first confirms, others do not).
CONFIRM_PAYLOAD = "CONSENT_CONFIRM"
DECLINE_PAYLOAD = "CONSENT_DECLINE"

_EDGES = re.compile(r"^[\W_]+|[\W_]+$")
_SPACES = re.compile(r"\s+")
_SEPARATORS = re.compile(r"[\s\-_.·]+")


# --- Matching (pure) -------------------------------------------------------------------------------


def text_normalize(text: str) -> str:
    """Casefolded, NFKC, without surrounding whitespace/punctuation, inner whitespace collapsed."""
    folded = unicodedata.normalize("NFKC", text or "").casefold()
    return _SPACES.sub(" ", _EDGES.sub("", folded))


def keyword_of(text: str) -> Keyword | None:
    """The consent/help keyword the whole message is, if it is one."""
    return KEYWORDS.get(_SEPARATORS.sub("", text_normalize(text)))


def _typed_parts(raw: dict[str, Any]) -> tuple[str, dict, dict]:
    """(type, the object under the type's key, the interactive reply inside it) of an inbound message."""
    kind = raw.get("type")
    body = raw.get(kind) if isinstance(raw.get(kind), dict) else {}
    reply = body.get(body.get("type", ""))
    return kind, body, reply if kind == "interactive" and isinstance(reply, dict) else {}


def inbound_text(raw: dict[str, Any]) -> str:
    """What the person typed or tapped: a text's body, a quick-reply or button title; else ""."""
    kind, body, reply = _typed_parts(raw)
    if kind == "text":
        return str(body.get("body") or "")
    if kind == "button":
        return str(body.get("text") or "")
    return str(reply.get("title") or "")


def inbound_payload(raw: dict[str, Any]) -> str:
    """The payload of a tapped template quick-reply, or the id of a tapped interactive reply."""
    kind, body, reply = _typed_parts(raw)
    if kind == "button":
        return str(body.get("payload") or "")
    return str(reply.get("id") or "")


def autoreply_matches(*, keyword: str, match: str, text: str) -> bool:
    wanted, said = text_normalize(keyword), text_normalize(text)
    if not wanted or not said:
        return False
    if match == AutoReply.Match.EXACT:
        return said == wanted
    return re.search(rf"(?<!\w){re.escape(wanted)}(?!\w)", said) is not None


def autoreply_choose(text: str, rules: Iterable[AutoReply]) -> AutoReply | None:
    """The matching rule with the lowest priority number (then keyword, then oldest), if any."""
    ordered = sorted(rules, key=lambda rule: (rule.priority, rule.keyword.casefold(), rule.pk or 0))
    return next(
        (rule for rule in ordered if autoreply_matches(keyword=rule.keyword, match=rule.match, text=text)),
        None,
    )


# --- Texts -----------------------------------------------------------------------------------------

DEFAULT_TEXTS = {
    "help": "{business} on WhatsApp: write your question here and our team will answer. "
    "Reply STOP to stop all messages from us, START to get them again.",
    "opt_out": "You are unsubscribed: you will get no more WhatsApp messages from {business}. "
    "Reply START to subscribe again.",
    "opt_in": "You are subscribed again to WhatsApp messages from {business}. Reply STOP at any time to stop.",
    "double_opt_in_confirmed": "Thank you: your subscription to WhatsApp messages from {business} is "
    "confirmed. Reply STOP at any time to stop.",
}
TEXT_SETTINGS = {
    "help": "WHATSAPP_HELP_TEXT",
    "opt_out": "WHATSAPP_OPT_OUT_CONFIRMATION_TEXT",
    "opt_in": "WHATSAPP_OPT_IN_CONFIRMATION_TEXT",
    "double_opt_in_confirmed": "WHATSAPP_DOUBLE_OPT_IN_CONFIRMED_TEXT",
}


def business_name() -> str:
    if settings.WHATSAPP_BUSINESS_NAME:
        return settings.WHATSAPP_BUSINESS_NAME
    text = consent_text_current()
    return text.business_name if text else "us"


def reply_text(name: str) -> str:
    """The configured (or built-in) wording, with {business} filled in (other braces left alone)."""
    wording = getattr(settings, TEXT_SETTINGS[name], "") or DEFAULT_TEXTS[name]
    return wording.replace("{business}", business_name())


# --- System-created outbound messages --------------------------------------------------------------


def system_message_queue(
    *,
    contact: Contact,
    sender: Sender,
    message_type: str,
    data: dict[str, Any],
    source: str,
    detail: str,
    reply_to: str = "",
    purpose: SystemPurpose | str = "",
) -> Message | None:
    """Queue a message the system writes (no author, no approval), after asking the gate as compose
    does. Returns None when the gate refuses (logged) or the content cannot be built (ProviderAlert)."""
    from messaging.outbound import MessageRefused, compose_content
    from messaging.sending import message_facts, record_status
    from messaging.tasks import send_message

    try:
        composed = compose_content(message_type=message_type, data=data, sender=sender)
    except (MessageRefused, ValidationError) as exc:
        reason = exc.detail if isinstance(exc, MessageRefused) else "; ".join(exc.messages)
        alert_raise(
            kind=f"{source}_failed",
            title=f"Could not build the {source.replace('_', ' ')} message",
            details=reason,
        )
        return None
    message = Message(
        direction=Message.Direction.OUTBOUND,
        contact=contact,
        sender=sender,
        kind=composed.kind,
        content=composed.content,
        preview=composed.preview,
        template=composed.template,
        template_category=composed.template.category if composed.template else "",
        reply_to=reply_to,
        purpose=str(purpose),
        status=MessageStatus.QUEUED,
    )
    now = timezone.now()
    decision = gate_check(message_facts(message, now))
    if decision.verdict is Verdict.DENY:
        logger.info("No %s to contact %s: the gate said %s", source, contact.pk, decision.code)
        return None
    if decision.verdict is Verdict.DEFER:
        message.status, message.next_attempt_at = MessageStatus.DEFERRED, decision.defer_until
    message.save()
    record_status(message, message.status, source=source, detail=detail)
    if message.status == MessageStatus.QUEUED:
        transaction.on_commit(lambda: send_message.delay(message.pk))
    return message


def alert_raise(*, kind: str, title: str, details: str = "", sender: Sender | None = None) -> ProviderAlert:
    """One open (unacknowledged) alert per kind and title: repeats do not flood the admin."""
    logger.error("%s: %s", title, details)
    alert, _ = ProviderAlert.objects.get_or_create(
        kind=kind[:64],
        title=title[:255],
        acknowledged_at__isnull=True,
        defaults={"severity": ProviderAlert.Severity.ERROR, "details": details, "sender": sender},
    )
    return alert


# --- Keyword actions -------------------------------------------------------------------------------


def _reply(inbound: Message, name: str, *, source: str, purpose: SystemPurpose | str = "") -> Message | None:
    return system_message_queue(
        contact=inbound.contact,
        sender=inbound.sender,
        message_type="text",
        data={"text": reply_text(name)},
        source=source,
        detail=f"answer to {name.replace('_', ' ')} ({inbound.provider_message_id})",
        reply_to=inbound.provider_message_id or "",
        purpose=purpose,
    )


def _opt_out(inbound: Message, at: datetime) -> Message | None:
    contact = inbound.contact
    before = {purpose: row["status"] for purpose, row in consent_current(contact_id=contact.pk).items()}
    changed = any(before.get(purpose) != ConsentStatus.REVOKED for purpose in Purpose.values)
    # Recorded every time (a second STOP after writing to us again closes the door again).
    consent_opt_out_everywhere(
        contact_id=contact.pk,
        phone_number=contact.phone_number,
        source=ConsentSource.WHATSAPP_KEYWORD,
        evidence=Evidence(message_id=inbound.provider_message_id or ""),
        occurred_at=at,
    )
    if not changed:
        return None
    return _reply(inbound, "opt_out", source="keyword", purpose=SystemPurpose.OPT_OUT_CONFIRMATION)


def purposes_to_restore(contact_id: int) -> list[str]:
    """Purposes revoked now that were granted right before their latest opt-out (from the ledger)."""
    status: dict[str, str | None] = {}
    before_opt_out: dict[str, str | None] = {}
    for event in consent_history(contact_id=contact_id):
        if event.action == ConsentAction.OPT_OUT:
            before_opt_out[event.purpose] = status.get(event.purpose)
        status[event.purpose] = next_status(status.get(event.purpose), event)
    return [
        purpose
        for purpose in Purpose.values
        if status.get(purpose) == ConsentStatus.REVOKED
        and before_opt_out.get(purpose) == ConsentStatus.GRANTED
    ]


def _opt_in(inbound: Message, at: datetime) -> Message | None:
    contact = inbound.contact
    restore = purposes_to_restore(contact.pk)
    if not restore:
        return None
    text = consent_text_current()
    if text is None:
        alert_raise(
            kind="keyword_opt_in_failed",
            title="A customer sent START but there is no current consent text to record it against",
            details="Publish a consent text (compliance admin); the customer stays opted out meanwhile.",
            sender=inbound.sender,
        )
        return None
    for purpose in restore:
        consent_record(
            contact_id=contact.pk,
            phone_number=contact.phone_number,
            name=contact.profile_name,
            purpose=purpose,
            action=ConsentAction.OPT_IN,
            source=ConsentSource.WHATSAPP_KEYWORD,
            evidence=Evidence(message_id=inbound.provider_message_id or ""),
            text_version=text.version,
            occurred_at=at,
        )
    return _reply(inbound, "opt_in", source="keyword")


def _has_pending(contact_id: int) -> bool:
    return any(
        row["status"] == ConsentStatus.PENDING for row in consent_current(contact_id=contact_id).values()
    )


def _auto_reply(inbound: Message, text: str) -> Message | None:
    rule = autoreply_choose(text, AutoReply.objects.filter(is_active=True).select_related("template"))
    if rule is None:
        return None
    detail = f"auto-reply {rule.keyword!r} to {inbound.provider_message_id}"
    if rule.template_id:
        data = {
            "template_name": rule.template.name,
            "language": rule.template.language,
            "parameters": rule.template_parameters or None,
        }
        return system_message_queue(
            contact=inbound.contact,
            sender=inbound.sender,
            message_type="template",
            data=data,
            source="auto_reply",
            detail=detail,
        )
    return system_message_queue(
        contact=inbound.contact,
        sender=inbound.sender,
        message_type="text",
        data={"text": rule.reply_text},
        source="auto_reply",
        detail=detail,
        reply_to=inbound.provider_message_id or "",
    )


def keyword_respond(inbound: Message, *, at: datetime) -> Message | None:
    """Apply the rules above to a newly stored inbound message; returns the reply queued, if any.

    Called once per inbound message (the wamid is unique), so a redelivery acts and replies once."""
    text = inbound_text(inbound.content)
    payload = inbound_payload(inbound.content)
    keyword = keyword_of(text)
    if payload == CONFIRM_PAYLOAD:
        keyword = Keyword.CONFIRM
    if keyword is Keyword.OPT_OUT:
        return _opt_out(inbound, at)
    if keyword is Keyword.OPT_IN:
        return _opt_in(inbound, at)
    if keyword is Keyword.CONFIRM and _has_pending(inbound.contact_id):
        consent_confirm_pending(
            contact_id=inbound.contact_id,
            phone_number=inbound.contact.phone_number,
            message_id=inbound.provider_message_id or "",
            occurred_at=at,
        )
        return _reply(inbound, "double_opt_in_confirmed", source="keyword")
    if keyword is Keyword.HELP:
        return _reply(inbound, "help", source="keyword")
    if payload == DECLINE_PAYLOAD or not text:
        return None
    return _auto_reply(inbound, text)


# --- Double opt-in request -------------------------------------------------------------------------

#: A second request to the same person within this time is not sent (a form submitted twice).
DOUBLE_OPT_IN_RESEND_AFTER = timedelta(minutes=10)


def _quick_reply_payloads(components: list[dict[str, Any]]) -> list[str | None]:
    buttons = next(
        (c.get("buttons") or [] for c in components if str(c.get("type", "")).upper() == "BUTTONS"), []
    )
    payloads: list[str | None] = []
    first = True
    for button in buttons:
        if str(button.get("type", "")).upper() == "QUICK_REPLY":
            payloads.append(CONFIRM_PAYLOAD if first else DECLINE_PAYLOAD)
            first = False
        else:
            payloads.append(None)
    return payloads


def double_opt_in_request_send(*, contact_id: int, purposes: Iterable[str] = ()) -> Message | None:
    """Send the configured confirmation template to a person whose web opt-in awaits confirmation.
    No such approved template (or no sender): an alert for staff and a log line, never an exception."""
    from messaging.services import sender_get_default
    from templates_app.models import MessageTemplate, TemplateStatus

    contact = Contact.objects.filter(pk=contact_id).first()
    if contact is None:
        logger.warning("Double opt-in requested for unknown contact %s", contact_id)
        return None
    try:
        sender = sender_get_default()
    except Sender.DoesNotExist as exc:
        alert_raise(
            kind="double_opt_in_failed", title="No sender for the double opt-in request", details=str(exc)
        )
        return None
    name, language = settings.CONSENT_DOUBLE_OPT_IN_TEMPLATE, settings.CONSENT_DOUBLE_OPT_IN_TEMPLATE_LANGUAGE
    template = (
        MessageTemplate.objects.filter(waba_id=sender.waba_id, name=name, language=language).first()
        if name
        else None
    )
    if template is None or template.status != TemplateStatus.APPROVED:
        alert_raise(
            kind="double_opt_in_template_missing",
            title="Double opt-in confirmations cannot be sent: no approved confirmation template",
            details=(
                f"CONSENT_DOUBLE_OPT_IN_TEMPLATE is {name or 'not set'} [{language}]"
                + (f" and its status is {template.status}" if template else "")
                + ". People who opt in on the web stay pending until one is approved and they confirm."
            ),
            sender=sender,
        )
        return None
    recent = Message.objects.filter(
        contact=contact,
        template=template,
        created_at__gte=timezone.now() - DOUBLE_OPT_IN_RESEND_AFTER,
        status__in=[MessageStatus.QUEUED, MessageStatus.SENDING, MessageStatus.SENT, MessageStatus.DELIVERED],
    )
    if recent.exists():
        return None
    with transaction.atomic():
        return system_message_queue(
            contact=contact,
            sender=sender,
            message_type="template",
            data={
                "template_name": name,
                "language": language,
                "buttons": _quick_reply_payloads(template.components),
            },
            source="double_opt_in",
            detail=f"confirmation request for {', '.join(purposes) or 'pending consent'}",
            purpose=SystemPurpose.DOUBLE_OPT_IN_REQUEST,
        )


def on_double_opt_in_requested(sender, *, contact_id: int, purposes: list[str], **kwargs) -> None:
    """Receiver of compliance.signals.double_opt_in_requested (sent after the opt-in committed): the
    person's consent is already recorded, so a failure here is logged, never raised into their page."""
    try:
        double_opt_in_request_send(contact_id=contact_id, purposes=purposes)
    except Exception:
        logger.exception("Double opt-in request to contact %s could not be queued", contact_id)
