"""The sending pipeline for one outbound message:

    claim (queued → sending, one conditional UPDATE) → sender paused? → the gate, again → rate limiter
    → provider call outside any transaction → record Meta's id, or classify Meta's error

Every exit leaves the message in a named state with its reason; nothing is dropped silently and
nothing is sent twice: a lost claim does nothing, and a request that may have reached Meta is never
repeated blindly (it becomes `unconfirmed` until a status webhook or staff settles it).
"""

import json
import logging
import random
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from compliance.gate import MessageFacts, Verdict, gate_check
from compliance.models import ConsentSource
from compliance.services import Evidence, consent_record
from config.logging import redact
from messaging.limiter import rate_reserve
from messaging.models import Message, MessageStatus, MessageStatusEvent, ProviderCall, Sender
from messaging.whatsapp import (
    ErrorAction,
    OutgoingMessage,
    WhatsAppApiError,
    WhatsAppBackend,
    WhatsAppError,
    WhatsAppTransportError,
    get_backend,
)

logger = logging.getLogger(__name__)

MAX_ATTEMPTS = 8
BACKOFF_BASE_SECONDS = 5
BACKOFF_CAP_SECONDS = 15 * 60
DEFER_SECONDS = 60 * 60  # Meta's spam and quality limits: come back much later
PAUSED_SENDER_RECHECK_SECONDS = 60
RATE_LIMIT_MAX_WAIT = 2.0
LOG_BODY_LIMIT = 4000
META_MARKETING_OPT_OUT_CODE = 131050


@dataclass(frozen=True)
class SendOutcome:
    status: str  # the message's status afterwards, or "not_claimed"
    retry_at: datetime | None = None  # when the message is due again, if it is


def backoff_delay(attempt: int) -> float:
    """Exponential backoff with full jitter (so retries of a burst do not arrive together)."""
    ceiling = min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2 ** max(0, attempt - 1))
    return random.uniform(ceiling / 2, ceiling)  # noqa: S311 - jitter, not security


def record_status(
    message: Message, status: str, *, source: str, detail: str = "", at: datetime | None = None
) -> None:
    MessageStatusEvent.objects.create(
        message=message, status=status, source=source, detail=detail, occurred_at=at or timezone.now()
    )


def _move(
    message: Message, *, from_status: str, to_status: str, source: str, detail: str = "", **fields
) -> bool:
    """Conditional transition: only if the message is still in `from_status` (another actor may have moved it)."""
    with transaction.atomic():
        moved = Message.objects.filter(pk=message.pk, status=from_status).update(status=to_status, **fields)
        if moved:
            record_status(message, to_status, source=source, detail=detail)
    if moved:
        message.status = to_status
        for name, value in fields.items():
            if not hasattr(value, "resolve_expression"):  # F() updates stay in the database
                setattr(message, name, value)
    return bool(moved)


def message_facts(message: Message, at: datetime) -> MessageFacts:
    """What the gate needs to know about a message, from messaging's own data."""
    cap_days = settings.CONSENT_FREQUENCY_CAP_DAYS
    recent_marketing = 0
    if message.template_category.upper() == "MARKETING":
        recent_marketing = (
            Message.objects.filter(
                contact_id=message.contact_id,
                direction=Message.Direction.OUTBOUND,
                template_category__iexact="MARKETING",
                sent_at__gte=at - timedelta(days=cap_days),
            )
            .exclude(pk=message.pk)
            .count()
        )
    return MessageFacts(
        contact_id=message.contact_id,
        phone_number=message.contact.phone_number,
        at=at,
        kind="template" if message.kind == Message.Kind.TEMPLATE else "free_form",
        template_category=message.template_category,
        template_status=message.template.status if message.template_id else "",
        timezone=message.contact.timezone,
        last_inbound_at=message.contact.last_inbound_at,
        marketing_sent_recently=recent_marketing,
    )


def message_claim(message_id: int, *, now: datetime | None = None) -> bool:
    """Take a due message for sending. Exactly one caller wins; the others get False."""
    now = now or timezone.now()
    claimed = (
        Message.objects.filter(
            pk=message_id,
            direction=Message.Direction.OUTBOUND,
            status__in=[MessageStatus.QUEUED, MessageStatus.DEFERRED],
        )
        .filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now))
        .update(status=MessageStatus.SENDING, claimed_at=now, attempts=F("attempts") + 1)
    )
    return claimed == 1


def _log_call(
    message: Message,
    backend: WhatsAppBackend,
    payload: dict,
    *,
    started: float,
    http_status: int | None,
    response: object = "",
    error: str = "",
) -> None:
    ProviderCall.objects.create(
        message=message,
        backend=backend.name,
        method="POST",
        url=backend.message_endpoint(message.sender.ref),
        http_status=http_status,
        elapsed_ms=int((time.perf_counter() - started) * 1000),
        request_body=redact(json.dumps(payload, ensure_ascii=False))[:LOG_BODY_LIMIT],
        response_body=redact(
            response if isinstance(response, str) else json.dumps(response, ensure_ascii=False)
        )[:LOG_BODY_LIMIT],
        error=redact(error)[:LOG_BODY_LIMIT],
    )


def message_send(message_id: int, *, backend: WhatsAppBackend | None = None) -> SendOutcome:
    """Send one message if it is due and nobody else is sending it."""
    if not message_claim(message_id):
        return SendOutcome("not_claimed")
    message = Message.objects.select_related("contact", "sender", "template").get(pk=message_id)
    record_status(message, MessageStatus.SENDING, source="worker", detail=f"attempt {message.attempts}")
    now = timezone.now()

    if message.sender.paused_at or not message.sender.is_active:
        retry_at = now + timedelta(seconds=PAUSED_SENDER_RECHECK_SECONDS)
        _move(
            message,
            from_status=MessageStatus.SENDING,
            to_status=MessageStatus.QUEUED,
            source="worker",
            detail=f"sender paused: {message.sender.pause_reason or 'inactive'}",
            next_attempt_at=retry_at,
            attempts=F("attempts") - 1,
        )
        return SendOutcome(MessageStatus.QUEUED, retry_at)

    decision = gate_check(message_facts(message, now))
    if decision.verdict is Verdict.DENY:
        _move(
            message,
            from_status=MessageStatus.SENDING,
            to_status=MessageStatus.BLOCKED,
            source="gate",
            detail=decision.detail,
            error_code=decision.code,
            error_title=decision.detail,
            failed_at=now,
        )
        return SendOutcome(MessageStatus.BLOCKED)
    if decision.verdict is Verdict.DEFER:
        _move(
            message,
            from_status=MessageStatus.SENDING,
            to_status=MessageStatus.DEFERRED,
            source="gate",
            detail=decision.detail,
            next_attempt_at=decision.defer_until,
            attempts=F("attempts") - 1,
        )
        return SendOutcome(MessageStatus.DEFERRED, decision.defer_until)

    wait = rate_reserve(
        sender_id=message.sender_id,
        per_second=message.sender.messages_per_second,
        max_wait=RATE_LIMIT_MAX_WAIT,
    )
    if wait is None:
        retry_at = now + timedelta(seconds=RATE_LIMIT_MAX_WAIT)
        _move(
            message,
            from_status=MessageStatus.SENDING,
            to_status=MessageStatus.QUEUED,
            source="worker",
            detail="rate limit: waiting for a send slot",
            next_attempt_at=retry_at,
            attempts=F("attempts") - 1,
        )
        return SendOutcome(MessageStatus.QUEUED, retry_at)
    if wait > 0:
        time.sleep(wait)

    backend = backend or get_backend()
    outgoing = OutgoingMessage(
        to=message.contact.phone_number,
        type=message.kind,
        content=message.content,
        reply_to=message.reply_to or None,
        callback_data=str(message.pk),
    )
    payload = backend.build_message_payload(outgoing)
    started = time.perf_counter()
    try:
        result = backend.send(sender=message.sender.ref, message=outgoing)
    except WhatsAppError as exc:
        response = exc.raw if isinstance(exc, WhatsAppApiError) else ""
        _log_call(
            message,
            backend,
            payload,
            started=started,
            http_status=getattr(exc, "http_status", None),
            response=response,
            error=str(exc),
        )
        return _handle_error(message, exc)
    _log_call(message, backend, payload, started=started, http_status=200, response=result.raw)
    sent_at = timezone.now()
    _move(
        message,
        from_status=MessageStatus.SENDING,
        to_status=MessageStatus.SENT,
        source="worker",
        detail=f"accepted by Meta ({result.message_status or 'accepted'})",
        provider_message_id=result.provider_message_id,
        sent_at=sent_at,
        error_code="",
        error_title="",
        error_details="",
    )
    return SendOutcome(MessageStatus.SENT)


def _handle_error(message: Message, exc: WhatsAppError) -> SendOutcome:
    now = timezone.now()
    code = str(getattr(exc, "code", "") or "")
    title = getattr(exc, "message", "") or str(exc)
    details = getattr(exc, "details", "")
    if isinstance(exc, WhatsAppTransportError) and exc.may_have_been_sent:
        _move(
            message,
            from_status=MessageStatus.SENDING,
            to_status=MessageStatus.UNCONFIRMED,
            source="worker",
            detail="The request may have reached Meta; not resending until a status webhook or staff confirms.",
            error_code="transport",
            error_title=str(exc)[:255],
        )
        return SendOutcome(MessageStatus.UNCONFIRMED)
    if exc.action is ErrorAction.AUTH:
        Sender.objects.filter(pk=message.sender_id).update(
            paused_at=now, pause_reason=f"Meta refused our credentials: {title}"
        )
        logger.error("Sender %s paused: Meta refused our credentials (%s)", message.sender_id, code)
        retry_at = now + timedelta(seconds=PAUSED_SENDER_RECHECK_SECONDS)
        _move(
            message,
            from_status=MessageStatus.SENDING,
            to_status=MessageStatus.QUEUED,
            source="worker",
            detail=f"sender paused after Meta error {code}",
            next_attempt_at=retry_at,
            error_code=code,
            error_title=title[:255],
            attempts=F("attempts") - 1,
        )
        return SendOutcome(MessageStatus.QUEUED, retry_at)
    if exc.action in (ErrorAction.RETRY, ErrorAction.DEFER) and message.attempts < MAX_ATTEMPTS:
        delay = DEFER_SECONDS if exc.action is ErrorAction.DEFER else backoff_delay(message.attempts)
        retry_at = now + timedelta(seconds=delay)
        status = MessageStatus.DEFERRED if exc.action is ErrorAction.DEFER else MessageStatus.QUEUED
        _move(
            message,
            from_status=MessageStatus.SENDING,
            to_status=status,
            source="worker",
            detail=f"Meta error {code or 'transport'}: retry in {int(delay)} s",
            next_attempt_at=retry_at,
            error_code=code or "transport",
            error_title=title[:255],
            error_details=details,
        )
        return SendOutcome(status, retry_at)
    if exc.action is ErrorAction.NEEDS_TEMPLATE:
        code, title = (
            "window_closed",
            "More than 24 hours since the person last wrote: only a template can reach them.",
        )
    _move(
        message,
        from_status=MessageStatus.SENDING,
        to_status=MessageStatus.FAILED,
        source="worker",
        detail=f"{code}: {title}",
        error_code=code or "transport",
        error_title=title[:255],
        error_details=details,
        failed_at=now,
    )
    if getattr(exc, "code", None) == META_MARKETING_OPT_OUT_CODE:
        # Meta says the person stopped marketing messages: that is an opt-out, effective at once.
        consent_record(
            contact_id=message.contact_id,
            phone_number=message.contact.phone_number,
            purpose="marketing",
            action="opt_out",
            source=ConsentSource.META_ERROR_131050,
            evidence=Evidence(message_id=f"message:{message.pk}"),
        )
    return SendOutcome(MessageStatus.FAILED)


def messages_due(*, now: datetime | None = None, limit: int = 1000) -> list[int]:
    """Ids of queued or deferred messages whose time has come (the work queue's partial index)."""
    now = now or timezone.now()
    return list(
        Message.objects.filter(status__in=[MessageStatus.QUEUED, MessageStatus.DEFERRED])
        .filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now))
        .order_by("next_attempt_at", "id")
        .values_list("id", flat=True)[:limit]
    )


def messages_unstick(*, older_than: timedelta = timedelta(minutes=5), now: datetime | None = None) -> int:
    """A worker that died mid-send leaves its message in `sending`. We cannot know whether Meta got
    it, so it becomes `unconfirmed` (never resent blindly) for a status webhook or staff to settle."""
    now = now or timezone.now()
    stuck = list(Message.objects.filter(status=MessageStatus.SENDING, claimed_at__lt=now - older_than))
    for message in stuck:
        _move(
            message,
            from_status=MessageStatus.SENDING,
            to_status=MessageStatus.UNCONFIRMED,
            source="worker",
            detail="The worker stopped mid-send; waiting for Meta's status before anything is resent.",
        )
    return len(stuck)
