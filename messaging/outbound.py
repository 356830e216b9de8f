"""Composing outbound messages: validate the kind, resolve recipient and sender, render templates,
ask the gate, and store the message waiting for approval — or queued, for people trusted to send
without a second pair of eyes. Approval is a second person's act, enforced here."""

from dataclasses import dataclass
from typing import Any

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone

from compliance.gate import Verdict, gate_check
from messaging.message_kinds import build_message
from messaging.models import Contact, Message, MessageStatus, Sender
from messaging.phone import phone_normalize
from messaging.sending import message_facts, record_status
from messaging.services import contact_create, sender_get_default
from templates_app.models import MessageTemplate
from templates_app.rendering import TemplateError, render_template

SEND_WITHOUT_APPROVAL = "messaging.send_without_approval"
APPROVE_MESSAGE = "messaging.approve_message"


class MessageRefused(Exception):
    """The message cannot be accepted; `code` is machine-readable (no_consent, window_closed, ...)."""

    def __init__(self, code: str, detail: str, *, field: str = ""):
        super().__init__(detail)
        self.code, self.detail, self.field = code, detail, field


@dataclass(frozen=True)
class ComposedContent:
    kind: str
    content: dict[str, Any]
    preview: str
    template: MessageTemplate | None = None


def _sender_for(from_number: str | None) -> Sender:
    if not from_number:
        try:
            return sender_get_default()
        except Sender.DoesNotExist as exc:
            raise MessageRefused("sender_unknown", str(exc)) from exc
    try:
        e164 = phone_normalize(from_number)
    except ValidationError as exc:
        raise MessageRefused(
            "sender_unknown", f"from_number: {exc.messages[0]}", field="from_number"
        ) from exc
    sender = Sender.objects.filter(display_phone_number=e164, is_active=True).first()
    if sender is None:
        raise MessageRefused(
            "sender_unknown", f"No active sender has the number {e164}.", field="from_number"
        )
    return sender


def _contact_for(to_number: str) -> Contact:
    try:
        e164 = phone_normalize(to_number)
    except ValidationError as exc:
        raise MessageRefused(
            "invalid_phone_number", f"to_number: {exc.messages[0]}", field="to_number"
        ) from exc
    contact = Contact.objects.filter(phone_number=e164).first()
    return contact or contact_create(phone_number=e164)


def compose_content(*, message_type: str, data: dict[str, Any], sender: Sender) -> ComposedContent:
    """Meta's object for the message, validated (ValidationError naming field and limit) or, for
    templates, rendered from an approved template (MessageRefused otherwise)."""
    if message_type != "template":
        built = build_message(message_type, data)
        return ComposedContent(built.kind, built.content, built.preview)
    name, language = data.get("template_name") or "", data.get("language") or ""
    if not name or not language:
        raise ValidationError(
            {"template_name": ValidationError("template_name and language are required.", code="required")}
        )
    template = MessageTemplate.objects.filter(waba_id=sender.waba_id, name=name, language=language).first()
    if template is None:
        raise MessageRefused(
            "template_not_approved",
            f"No template {name} [{language}] in this business account.",
            field="template_name",
        )
    try:
        rendered = render_template(
            template, body=data.get("parameters"), header=data.get("header"), buttons=data.get("buttons")
        )
    except TemplateError as exc:
        raise MessageRefused(exc.code, exc.detail, field="parameters") from exc
    return ComposedContent("template", rendered.payload, rendered.preview, template)


def _fill(
    message: Message, *, composed: ComposedContent, contact: Contact, sender: Sender, reply_to: str
) -> None:
    message.contact, message.sender, message.reply_to = contact, sender, reply_to
    message.kind, message.content, message.preview = composed.kind, composed.content, composed.preview
    message.template = composed.template
    message.template_category = composed.template.category if composed.template else ""


def _refuse_unless_allowed(message: Message) -> None:
    decision = gate_check(message_facts(message, timezone.now()))
    if decision.verdict is Verdict.DENY:
        raise MessageRefused(decision.code, decision.detail)


def _submit(message: Message, *, user, source: str) -> None:
    """Into the approval queue, or straight out for people trusted to send without approval."""
    if user is not None and user.has_perm(SEND_WITHOUT_APPROVAL):
        _release(message, approver=user, detail="sent without approval (trusted sender)")
        return
    message.status = MessageStatus.PENDING_APPROVAL
    message.save(update_fields=["status"])
    record_status(message, MessageStatus.PENDING_APPROVAL, source=source)


@transaction.atomic
def message_compose(
    *,
    to_number: str,
    message_type: str,
    data: dict[str, Any],
    created_by=None,
    from_number: str | None = None,
    reply_to: str = "",
    submit: bool = True,
    released_by_rule: str = "",
) -> Message:
    """Create an outbound message. Raises ValidationError for malformed content and MessageRefused
    for a message that may not go out (its code says why). Deferred by quiet hours is accepted.
    `released_by_rule` (messaging.automations) queues it at once: a second person approved the rule
    that composes it, and the timeline names that rule."""
    sender = _sender_for(from_number)
    composed = compose_content(message_type=message_type, data=data, sender=sender)
    message = Message(created_by=created_by, status=MessageStatus.DRAFT)
    _fill(message, composed=composed, contact=_contact_for(to_number), sender=sender, reply_to=reply_to)
    _refuse_unless_allowed(message)
    message.save()
    record_status(message, MessageStatus.DRAFT, source="compose")
    if released_by_rule:
        _release(message, approver=None, detail=f"released by automation rule {released_by_rule}")
    elif submit:
        _submit(message, user=created_by, source="compose")
    return message


@transaction.atomic
def draft_update(
    *,
    message: Message,
    editor,
    to_number: str,
    message_type: str,
    data: dict[str, Any],
    from_number: str | None = None,
    reply_to: str = "",
    submit: bool = False,
) -> Message:
    """The author replaces a draft's content (same rules and refusals as message_compose) and, with
    `submit`, sends it for approval (or out, for people trusted to send without approval)."""
    message = Message.objects.select_for_update().get(pk=message.pk)
    if message.status != MessageStatus.DRAFT:
        raise ValidationError("Only drafts can be edited.", code="invalid_state")
    if message.created_by_id != editor.pk:
        raise PermissionDenied("Only the author of a draft can edit it.")
    sender = _sender_for(from_number)
    composed = compose_content(message_type=message_type, data=data, sender=sender)
    _fill(message, composed=composed, contact=_contact_for(to_number), sender=sender, reply_to=reply_to)
    _refuse_unless_allowed(message)
    message.save()
    record_status(message, MessageStatus.DRAFT, source="admin", detail=f"edited by {editor.get_username()}")
    if submit:
        _submit(message, user=editor, source="admin")
    return message


@transaction.atomic
def message_cancel(*, message: Message, user) -> Message:
    """The author withdraws a draft or a message still waiting for approval."""
    message = Message.objects.select_for_update().get(pk=message.pk)
    if message.status not in (MessageStatus.DRAFT, MessageStatus.PENDING_APPROVAL):
        raise ValidationError(
            "Only drafts and messages waiting for approval can be cancelled.", code="invalid_state"
        )
    if message.created_by_id != user.pk:
        raise PermissionDenied("Only the author can cancel this message.")
    message.status = MessageStatus.CANCELLED
    message.save(update_fields=["status"])
    record_status(
        message, MessageStatus.CANCELLED, source="admin", detail=f"cancelled by {user.get_username()}"
    )
    return message


def _release(message: Message, *, approver, detail: str) -> None:
    from messaging.tasks import send_message

    message.status = MessageStatus.QUEUED
    message.approved_by = approver
    message.approved_at = timezone.now()
    message.save(update_fields=["status", "approved_by", "approved_at"])
    record_status(message, MessageStatus.QUEUED, source="approval", detail=detail)
    transaction.on_commit(lambda: send_message.delay(message.pk))


@transaction.atomic
def message_approve(*, message: Message, approver) -> Message:
    """A second person releases the message for sending. Nobody approves their own message."""
    message = Message.objects.select_for_update().get(pk=message.pk)
    if message.status != MessageStatus.PENDING_APPROVAL:
        raise ValidationError("This message is not waiting for approval.", code="invalid_state")
    if message.created_by_id is not None and message.created_by_id == approver.pk:
        raise PermissionDenied("You cannot approve a message you wrote; ask a colleague.")
    if not approver.has_perm(APPROVE_MESSAGE):
        raise PermissionDenied("You are not allowed to approve messages.")
    _release(message, approver=approver, detail=f"approved by {approver.get_username()}")
    return message


@transaction.atomic
def message_reject(*, message: Message, approver, reason: str) -> Message:
    message = Message.objects.select_for_update().get(pk=message.pk)
    if message.status != MessageStatus.PENDING_APPROVAL:
        raise ValidationError("This message is not waiting for approval.", code="invalid_state")
    if message.created_by_id is not None and message.created_by_id == approver.pk:
        raise PermissionDenied("You cannot reject a message you wrote; cancel it instead.")
    if not approver.has_perm(APPROVE_MESSAGE):
        raise PermissionDenied("You are not allowed to approve or reject messages.")
    if not reason.strip():
        raise ValidationError("Say why the message is rejected.", code="reason_required")
    message.status, message.rejection_reason, message.approved_by = MessageStatus.REJECTED, reason, approver
    message.save(update_fields=["status", "rejection_reason", "approved_by"])
    record_status(message, MessageStatus.REJECTED, source="approval", detail=reason)
    return message
