"""Apply Meta's status webhooks to our outbound messages.

Meta sends statuses late, twice and out of order, so a message's delivery status is a ladder it only
climbs, never a state machine that checks transitions:

    unconfirmed ─▶ sent ─▶ delivered ─▶ read ─▶ played
                     └──▶ failed (terminal)
    (a status moves the message only from a rung below its own; anything else changes no status)

`failed` is terminal, and it never overrides delivered, read or played: it moves a message only from
`unconfirmed` or `sent`, and nothing moves a failed message afterwards (a late `delivered` after a
`failed` is recorded in the timeline, where staff see Meta contradicting itself, but the outcome that
was reported and acted on stands). Every move is one conditional UPDATE (`status__in=<statuses it may
replace>`), so two processes applying different statuses at once can never move a message backwards.

What else a status does:
- Every distinct status lands in the message's timeline once (source "webhook", at Meta's timestamp),
  including late ones that moved nothing and values we do not act on (`deleted`, `warning`,
  `unknown`): the timeline is what Meta told us. A redelivered status hits the unique constraint and is
  a no-op, so the side effects below also happen once.
- Timestamps come from Meta's `timestamp` (else when the webhook arrived). `delivered_at`, `read_at`
  and `played_at` keep the earliest value claimed. A `read` or `played` without a `delivered` sets
  `delivered_at` (it must have been delivered by then) but adds no `delivered` row to the timeline:
  the timeline shows only what Meta said; a real `delivered` arriving later corrects the time.
  `sent_at` is ours when our send recorded it; a reconciled `unconfirmed` send takes Meta's.
- `failed` moving the message stores Meta's first error; a `delivered`/`read`/`played` moving it
  clears the error fields (a failure it outranks, or the transport error of an unconfirmed send).
  Error 131050 is the person stopping marketing messages: an opt-out in the consent ledger, whatever
  the message's status (Meta said so), exactly as when the send itself is refused with it.
- Pricing (category, type, model, billable) and the conversation id are stored whenever present.

Finding the message: by wamid. A status whose wamid we do not know yet (our send raced Meta's webhook)
is kept as a PendingStatus and applied when the send records the wamid (`pending_statuses_apply`). An
`unconfirmed` message (the request may have left, we got no answer, so no wamid) is matched by the
`biz_opaque_callback_data` our send put in the request (our message id): the status proves Meta has
it, so the wamid is recorded then. Statuses for inbound messages or messages not sent yet are ignored.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import DateTimeField, F, Value
from django.db.models.functions import Coalesce, Least
from django.utils import timezone

from compliance.models import ConsentSource
from compliance.services import Evidence, consent_record
from compliance.suppression import suppression_entry
from messaging.models import Message, MessageStatus, MessageStatusEvent, PendingStatus, WebhookEvent
from messaging.phone import phone_normalize
from messaging.webhook_events import MetaError, StatusUpdate, webhook_normalize
from messaging.webhook_events import storable as _storable

logger = logging.getLogger(__name__)

#: The rungs a webhook status can put an outbound message on, lowest first (see the module docstring).
LADDER: tuple[str, ...] = (
    MessageStatus.UNCONFIRMED,
    MessageStatus.SENT,
    MessageStatus.FAILED,
    MessageStatus.DELIVERED,
    MessageStatus.READ,
    MessageStatus.PLAYED,
)
#: Which current statuses each Meta status may replace: the rungs below it, except that nothing
#: replaces `failed` (terminal).
MOVES_FROM: dict[str, tuple[str, ...]] = {
    status: tuple(rung for rung in LADDER[: LADDER.index(status)] if rung != MessageStatus.FAILED)
    for status in LADDER[1:]
}
#: Statuses saying the message reached Meta at least (they confirm an unconfirmed send).
PROGRESS = (MessageStatus.SENT, MessageStatus.DELIVERED, MessageStatus.READ, MessageStatus.PLAYED)
#: The timestamp field each status claims (the earliest claim wins).
TIMESTAMP_FIELD = {
    MessageStatus.DELIVERED: "delivered_at",
    MessageStatus.READ: "read_at",
    MessageStatus.PLAYED: "played_at",
}

META_MARKETING_OPT_OUT_CODE = "131050"
WAMID_MAX_LENGTH = Message._meta.get_field("provider_message_id").max_length
PENDING_SWEEP_AFTER = timedelta(minutes=1)


def marketing_opt_out_from_meta(*, message: Message, occurred_at: datetime | None = None) -> None:
    """Meta refused a message with error 131050: the person stopped marketing messages. That is an
    opt-out, effective at once, with our message as the evidence. (sending.py calls this too when the send
    itself is refused with 131050.)"""
    consent_record(
        contact_id=message.contact_id,
        phone_number=message.contact.phone_number,
        purpose="marketing",
        action="opt_out",
        source=ConsentSource.META_ERROR_131050,
        evidence=Evidence(message_id=f"message:{message.pk}"),
        occurred_at=occurred_at,
    )


# --- Finding the message -----------------------------------------------------------------------------

_APPLY, _WAIT, _IGNORE = "apply", "wait", "ignore"


def _callback_message_id(callback_data: str) -> int | None:
    """Our send puts the message id in biz_opaque_callback_data; anything else is not ours."""
    value = callback_data.strip()
    if not value.isascii() or not value.isdigit() or len(value) > 18:  # bigint range
        return None
    return int(value)


def _by_wamid(wamid: str) -> Message | None:
    return Message.objects.select_related("contact").filter(provider_message_id=wamid).first()


def _decide(message: Message) -> str:
    if message.direction != Message.Direction.OUTBOUND:
        return _IGNORE
    if message.status == MessageStatus.SENDING:
        return _WAIT  # the send is recording this wamid right now; it applies pending statuses after
    return _APPLY if message.status in LADDER else _IGNORE


def _reconcile_by_callback(update: StatusUpdate) -> Message | None:
    """An unconfirmed message named by the status's callback data takes the status's wamid: Meta has
    it, so the send went through. Returns the message, or None when the callback data names no
    unconfirmed message of ours without a wamid (from this sender, when the webhook says which)."""
    message_id = _callback_message_id(update.callback_data)
    if message_id is None:
        return None
    candidates = Message.objects.filter(
        pk=message_id,
        direction=Message.Direction.OUTBOUND,
        status=MessageStatus.UNCONFIRMED,
        provider_message_id__isnull=True,
    )
    if update.meta.phone_number_id:
        # Another of the app's numbers may use the same kind of callback data for its own messages.
        candidates = candidates.filter(sender__phone_number_id=update.meta.phone_number_id)
    try:
        with transaction.atomic():  # savepoint: the wamid is unique
            claimed = candidates.update(provider_message_id=update.wamid)
    except IntegrityError:
        claimed = 0
    if claimed:
        logger.info("Message %s: unconfirmed send confirmed by Meta's %s status", message_id, update.status)
        return _by_wamid(update.wamid)
    return None


def _resolve(update: StatusUpdate) -> tuple[str, Message | None, bool]:
    """(what to do, the message, whether its wamid was recorded just now by callback data)."""
    message = _by_wamid(update.wamid)
    if message is not None:
        return _decide(message), message, False
    reconciled = _reconcile_by_callback(update)
    if reconciled is not None:
        return _APPLY, reconciled, True
    # Lost the reconciliation to a concurrent delivery of another status of the same message?
    message = _by_wamid(update.wamid)
    if message is not None:
        return _decide(message), message, False
    return _WAIT, None, False


# --- Applying ----------------------------------------------------------------------------------------


def _error_text(error: MetaError) -> str:
    text = ": ".join(part for part in (error.code, error.title or error.message) if part)
    return f"{text} ({error.details})" if error.details else text


def _timeline_detail(update: StatusUpdate, *, reconciled: bool) -> str:
    parts = []
    if update.errors:
        parts.append(_error_text(update.errors[0]))
    elif update.status == MessageStatus.FAILED:
        parts.append("Meta gave no reason")
    if update.status == "unknown":
        parts.append(f"Meta sent status {str(update.raw.get('status'))[:100]!r}")
    if reconciled:
        parts.append("confirms the unconfirmed send (matched by our callback data); wamid recorded")
    return "; ".join(parts)


def _timeline_add(message: Message, update: StatusUpdate, at: datetime, *, reconciled: bool) -> bool:
    """One timeline row per status per message; False when Meta had sent this status before."""
    try:
        with transaction.atomic():  # savepoint: the unique constraint is the duplicate check
            MessageStatusEvent.objects.create(
                message=message,
                status=update.status,
                source="webhook",
                detail=_storable(_timeline_detail(update, reconciled=reconciled)),
                occurred_at=at,
            )
    except IntegrityError:
        return False
    return True


def _earliest(field: str, at: datetime) -> Coalesce:
    # LEAST is NULL on SQLite when either side is; PostgreSQL skips the NULL. Coalesce covers both.
    moment = Value(at, output_field=DateTimeField())
    return Coalesce(Least(F(field), moment), moment)


def _move_fields(update: StatusUpdate, at: datetime) -> dict:
    """What changes with the status itself (only when the status moves)."""
    if update.status == MessageStatus.FAILED:
        error = update.errors[0] if update.errors else MetaError(title="Meta reported the message failed")
        return {
            "failed_at": at,
            "error_code": _storable(error.code)[:32],
            "error_title": _storable(error.title or error.message)[:255],
            "error_details": _storable(error.details),
        }
    # Delivered (or better) settles an unconfirmed send: the transport error no longer applies.
    return {"failed_at": None, "error_code": "", "error_title": "", "error_details": ""}


def _always_fields(update: StatusUpdate, at: datetime) -> dict:
    """What a status says whether or not it moves the message: times, pricing, conversation."""
    fields: dict = {}
    if update.status in PROGRESS:
        fields["sent_at"] = Coalesce(F("sent_at"), Value(at, output_field=DateTimeField()))
    if update.status in (MessageStatus.READ, MessageStatus.PLAYED):
        fields["delivered_at"] = _earliest("delivered_at", at)
    if update.status in TIMESTAMP_FIELD:
        fields[TIMESTAMP_FIELD[update.status]] = _earliest(TIMESTAMP_FIELD[update.status], at)
    pricing = update.pricing
    for field, key, limit in (
        ("pricing_category", "category", 32),
        ("pricing_type", "type", 32),
        ("pricing_model", "pricing_model", 16),
    ):
        value = pricing.get(key)
        if isinstance(value, str) and value:
            fields[field] = _storable(value)[:limit]
    if isinstance(pricing.get("billable"), bool):
        fields["billable"] = pricing["billable"]
    conversation_id = update.conversation.get("id")
    if isinstance(conversation_id, str) and conversation_id:
        fields["conversation_id"] = _storable(conversation_id)[:128]
    return fields


def _apply(message: Message, update: StatusUpdate, at: datetime, *, reconciled: bool) -> None:
    if not _timeline_add(message, update, at, reconciled=reconciled):
        return  # Meta redelivered it: everything below happened the first time
    if update.status in MOVES_FROM:
        moved = Message.objects.filter(pk=message.pk, status__in=MOVES_FROM[update.status]).update(
            status=update.status, **_move_fields(update, at)
        )
        if not moved:
            logger.debug("Message %s: %s changes no status (it is past that)", message.pk, update.status)
    fields = _always_fields(update, at)
    if fields:
        Message.objects.filter(pk=message.pk).update(**fields)
    if update.errors and update.errors[0].code == META_MARKETING_OPT_OUT_CODE:
        marketing_opt_out_from_meta(message=message, occurred_at=at)


def _pending_keep(update: StatusUpdate, webhook_event: WebhookEvent | None) -> None:
    try:
        with transaction.atomic():  # savepoint: one row per wamid and status
            PendingStatus.objects.create(
                provider_message_id=update.wamid,
                status=update.status,
                payload=_storable(update.raw),
                webhook_event=webhook_event,
            )
    except IntegrityError:
        pass  # Meta redelivered a status we are keeping already


def _erased_recipient(update: StatusUpdate) -> str | None:
    """The recipient's number when it was erased at its owner's request (this is a late status for a
    message deleted with them), else None. One keyed-hash look-up, only for statuses whose wamid we do
    not know. Numbers suppressed for other reasons (a complaint, a legal hold) keep the usual path."""
    try:
        e164 = phone_normalize(update.recipient_id)
    except ValidationError:
        return None
    entry = suppression_entry(e164)
    return e164 if entry is not None and entry.privacy_request_id is not None else None


def _status_apply(
    update: StatusUpdate, *, webhook_event: WebhookEvent | None, received_at: datetime | None
) -> None:
    if not update.wamid or len(update.wamid) > WAMID_MAX_LENGTH or _storable(update.wamid) != update.wamid:
        logger.warning("Status %s for an id that cannot be a wamid of ours; ignored", update.status)
        return
    with transaction.atomic():
        action, message, reconciled = _resolve(update)
        if action == _IGNORE:
            logger.info(
                "Status %s for message %s (%s, %s) ignored: not an outbound message in delivery",
                update.status,
                message.pk,
                message.direction,
                message.status,
            )
            return
        if action == _WAIT:
            erased = _erased_recipient(update) if message is None else None
            if erased is not None:
                # Keeping it would store their number again, for a message that no longer exists.
                logger.info("Status %s for an unknown wamid to an erased number: dropped", update.status)
                if webhook_event is not None:
                    from messaging.personal_data import webhook_event_drop_person

                    webhook_event_drop_person(webhook_event, phone_number=erased)
                return
            _pending_keep(update, webhook_event)
            # The send may have recorded the wamid between our look-up and our row: then it has
            # already looked for pending statuses, and not seen ours.
            if _ready_for_statuses(update.wamid):
                pending_statuses_apply(update.wamid)
            return
        at = update.timestamp or received_at or timezone.now()
        _apply(message, update, at, reconciled=reconciled)
        if reconciled:
            # Other statuses of this send may have arrived while it was still `sending`.
            pending_statuses_apply(update.wamid)


def status_apply(update: StatusUpdate, *, webhook_event: WebhookEvent | None = None) -> None:
    """Apply one status of one of our outbound messages (idempotent; safe from concurrent processes)."""
    _status_apply(
        update,
        webhook_event=webhook_event,
        received_at=webhook_event.received_at if webhook_event is not None else None,
    )


# --- Statuses that arrived before their wamid ------------------------------------------------------

#: The order pending statuses are applied in (the outcome does not depend on it; the log reads well).
_PENDING_ORDER = {status: rank for rank, status in enumerate(LADDER)}


def _ready_for_statuses(provider_message_id: str) -> bool:
    return (
        Message.objects.filter(provider_message_id=provider_message_id)
        .exclude(status=MessageStatus.SENDING)
        .exists()
    )


def _pending_update(row: PendingStatus) -> StatusUpdate | None:
    """The stored status object, read by the same normalizer as a fresh webhook."""
    envelope = {"entry": [{"changes": [{"field": "messages", "value": {"statuses": [row.payload]}}]}]}
    items = webhook_normalize(envelope)
    return items[0] if len(items) == 1 and isinstance(items[0], StatusUpdate) else None


def _pending_apply_rows(rows: list[PendingStatus]) -> int:
    applied = 0
    for row in sorted(rows, key=lambda r: (_PENDING_ORDER.get(r.status, len(LADDER)), r.pk)):
        update = _pending_update(row)
        try:
            with transaction.atomic():
                if not PendingStatus.objects.filter(pk=row.pk).delete()[0]:
                    continue  # another process applied it
                if update is not None:
                    _status_apply(
                        update,
                        webhook_event=row.webhook_event,
                        received_at=row.received_at,
                    )
                    applied += 1
        except Exception:
            # Never let a stored status break the send that calls us: the row stays for the sweep.
            logger.exception(
                "Pending status %s for %s could not be applied", row.status, row.provider_message_id
            )
    return applied


def pending_statuses_apply(provider_message_id: str) -> int:
    """Apply statuses that arrived before our send recorded this wamid; returns how many. Call it
    right after recording a wamid. Never raises for a stored status it cannot apply (that row stays)."""
    if not provider_message_id or not _ready_for_statuses(provider_message_id):
        return 0
    rows = list(
        PendingStatus.objects.select_related("webhook_event").filter(provider_message_id=provider_message_id)
    )
    return _pending_apply_rows(rows)


def pending_statuses_sweep(*, older_than: timedelta = PENDING_SWEEP_AFTER, limit: int = 500) -> int:
    """Periodic safety net for statuses kept waiting: apply those whose wamid has been recorded since
    (the send's own call missed them in a race), and settle unconfirmed messages their callback data
    names. Returns how many statuses were applied."""
    cutoff = timezone.now() - older_than
    wamids = list(
        PendingStatus.objects.filter(received_at__lte=cutoff)
        .order_by()
        .values_list("provider_message_id", flat=True)
        .distinct()[:limit]
    )
    applied = 0
    for wamid in wamids:
        if not _ready_for_statuses(wamid):
            for row in PendingStatus.objects.filter(provider_message_id=wamid):
                update = _pending_update(row)
                if update is not None and update.callback_data:
                    with transaction.atomic():
                        if _reconcile_by_callback(update) is not None:
                            break
        applied += pending_statuses_apply(wamid)
    return applied
