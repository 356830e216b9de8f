"""The sending pipeline for one outbound message:

    claim (queued → sending, one conditional UPDATE) → sender paused? → the gate, again → the
    sender's circuit → rate limiter → provider call outside any transaction → record Meta's id, or
    classify Meta's error

The circuit breaker per sender: when Meta keeps answering a sender's sends with transient errors, it
stops calling Meta for that sender for a cool-down, keeps the messages queued (attempts untouched),
then lets one probe through and closes on its success (`sender_circuit_state` shows where it is).
Anything failing before the request leaves puts the message back in the queue.

Every exit leaves the message in a named state with its reason; nothing is dropped silently and
nothing is sent twice: a lost claim does nothing, and a request that may have reached Meta is never
repeated blindly (it becomes `unconfirmed` until a status webhook or staff settles it).
"""

import json
import logging
import random
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from compliance.gate import MessageFacts, Verdict, gate_check
from compliance.models import ConsentSource
from compliance.services import Evidence, consent_record
from config.logging import redact
from messaging.limiter import rate_acquire
from messaging.models import Message, MessageStatus, MessageStatusEvent, ProviderCall, Sender
from messaging.whatsapp import (
    ErrorAction,
    OutgoingMessage,
    SenderRef,
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
# How long a worker thread may sleep for its sender's next send slot before the message goes back to
# the queue instead. Long enough that every worker thread can hold a slot at ordinary limits (80/s x
# 5 s = 400 slots), because a refusal is expensive: the message is claimed, read and checked again
# later. Shorter would free threads sooner for other senders' messages, at that cost.
RATE_LIMIT_MAX_WAIT = 5.0
LOG_BODY_LIMIT = 4000
META_MARKETING_OPT_OUT_CODE = 131050
META_PAIR_RATE_LIMIT_CODE = 131056  # one recipient throttled: says nothing about Meta's health


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


# --- Circuit breaker per sender ------------------------------------------------------------------
#
# closed ──(THRESHOLD consecutive RETRY-class failures within WINDOW)──▶ open
# open ──(cool-down over)──▶ half-open: exactly one send (the probe) may call Meta
# half-open ──probe accepted (or answered with a non-transient error)──▶ closed
# half-open ──probe failed transiently──▶ open again, cool-down doubled (capped)
#
# The state lives in Django's cache (Redis when REDIS_URL), so every worker on every machine sees the
# same circuit; without Redis it is per process, like the limiter. Losing the cache closes every
# circuit, which is safe: the breaker only saves Meta (and our attempts) from pointless calls.

CIRCUIT_DEFAULTS = {
    "FAILURE_THRESHOLD": 20,  # consecutive RETRY-class failures that open the circuit
    "FAILURE_WINDOW_SECONDS": 60.0,  # ... counted from the first of them
    "COOLDOWN_SECONDS": 30.0,  # first cool-down; doubled after every failed probe
    "COOLDOWN_MAX_SECONDS": 600.0,
    "PROBE_TIMEOUT_SECONDS": 45.0,  # a probe whose worker died frees its turn after this
    "HALF_OPEN_RECHECK_SECONDS": 5.0,  # when messages held back by a probe in flight are due again
}


def circuit_config() -> dict[str, float]:
    """CIRCUIT_DEFAULTS, overridden by settings.WHATSAPP_CIRCUIT_BREAKER (a dict of the same keys)."""
    return {**CIRCUIT_DEFAULTS, **getattr(settings, "WHATSAPP_CIRCUIT_BREAKER", {})}


def _circuit_keys(sender_id: int) -> tuple[str, str, str]:
    base = f"sender-circuit:{sender_id}"
    return f"{base}:state", f"{base}:failures", f"{base}:probe"


@dataclass(frozen=True)
class _CircuitTicket:
    allowed: bool
    probe: bool = False  # this send is the half-open probe
    failures_seen: int = 0
    retry_at: datetime | None = None  # when a held-back message is due again
    detail: str = ""


def _epoch(value: float) -> datetime:
    return datetime.fromtimestamp(value, tz=UTC)


def _circuit_before_send(sender_id: int, now: datetime) -> _CircuitTicket:
    state_key, failures_key, probe_key = _circuit_keys(sender_id)
    found = cache.get_many([state_key, failures_key])  # one round trip on the hot path
    state, failures = found.get(state_key), int(found.get(failures_key) or 0)
    if state is None:
        return _CircuitTicket(True, failures_seen=failures)
    config = circuit_config()
    open_until = state["open_until"]
    if now.timestamp() < open_until:
        # Spread the held-back messages over a second so the end of the cool-down is no stampede.
        retry_at = _epoch(open_until) + timedelta(seconds=random.uniform(0, 1))  # noqa: S311
        return _CircuitTicket(
            False,
            retry_at=retry_at,
            detail=f"circuit open: Meta failing for this sender ({state['last_error']}); "
            f"next try after {_epoch(open_until):%H:%M:%S} UTC",
        )
    if cache.add(probe_key, now.timestamp(), timeout=config["PROBE_TIMEOUT_SECONDS"]):
        logger.info(
            "Sender %s circuit half-open: one probe send after a %s s cool-down",
            sender_id,
            state["cooldown"],
        )
        return _CircuitTicket(True, probe=True, failures_seen=failures)
    return _CircuitTicket(
        False,
        retry_at=now + timedelta(seconds=config["HALF_OPEN_RECHECK_SECONDS"]),
        detail="circuit half-open: waiting for the probe send to Meta",
    )


def _counts_against_circuit(exc: WhatsAppError) -> bool:
    return exc.action is ErrorAction.RETRY and getattr(exc, "code", None) != META_PAIR_RATE_LIMIT_CODE


def _circuit_open(sender_id: int, *, cooldown: float, failures: int, error: str, trips: int) -> None:
    state_key, _, probe_key = _circuit_keys(sender_id)
    now = time.time()
    state = {
        "opened_at": now,
        "open_until": now + cooldown,
        "cooldown": cooldown,
        "failures": failures,
        "last_error": error[:200],
        "trips": trips,
    }
    cache.set(state_key, state, timeout=int(cooldown) + 24 * 60 * 60)
    cache.delete(probe_key)
    logger.warning(
        "Sender %s circuit OPEN (trip %s) after %s consecutive transient failures (last: %s): "
        "no calls to Meta for %s s; messages stay queued",
        sender_id,
        trips,
        failures,
        redact(error)[:200],
        cooldown,
    )


def _circuit_close(sender_id: int, reason: str) -> None:
    cache.delete_many(list(_circuit_keys(sender_id)))
    logger.info("Sender %s circuit closed: %s", sender_id, reason)


def _circuit_release_probe(sender_id: int, ticket: _CircuitTicket) -> None:
    """The probe did not go out after all (no rate-limit slot, an error): let another message probe."""
    if ticket.probe:
        cache.delete(_circuit_keys(sender_id)[2])


def _circuit_after_send(sender_id: int, ticket: _CircuitTicket, exc: WhatsAppError | None) -> None:
    """Feed one send's outcome to the breaker."""
    _, failures_key, _ = _circuit_keys(sender_id)
    if exc is None or not _counts_against_circuit(exc):
        # Meta answered (accepted, or refused this message for its own reasons): it is up.
        if ticket.probe:
            _circuit_close(sender_id, "the probe send went through")
        elif ticket.failures_seen:
            cache.delete(failures_key)
        return
    config = circuit_config()
    if ticket.probe:
        state = cache.get(_circuit_keys(sender_id)[0]) or {}
        cooldown = min(config["COOLDOWN_MAX_SECONDS"], 2 * state.get("cooldown", config["COOLDOWN_SECONDS"]))
        _circuit_open(
            sender_id,
            cooldown=cooldown,
            failures=state.get("failures", 0) + 1,
            error=str(exc),
            trips=state.get("trips", 0) + 1,
        )
        return
    window = max(1, int(config["FAILURE_WINDOW_SECONDS"]))
    cache.add(failures_key, 0, timeout=window)
    try:
        failures = cache.incr(failures_key)
    except ValueError:  # expired between add and incr
        cache.add(failures_key, 1, timeout=window)
        failures = 1
    if failures >= config["FAILURE_THRESHOLD"] and cache.get(_circuit_keys(sender_id)[0]) is None:
        _circuit_open(
            sender_id, cooldown=config["COOLDOWN_SECONDS"], failures=failures, error=str(exc), trips=1
        )


def sender_circuit_state(sender_id: int) -> dict:
    """What staff see: `state` is closed, open or half_open, with when and why it opened."""
    state_key, failures_key, probe_key = _circuit_keys(sender_id)
    found = cache.get_many([state_key, failures_key, probe_key])
    state = found.get(state_key)
    result = {
        "sender_id": sender_id,
        "state": "closed",
        "consecutive_failures": int(found.get(failures_key) or 0),
        "opened_at": None,
        "open_until": None,
        "cooldown_seconds": None,
        "trips": 0,
        "last_error": "",
        "probe_in_flight": probe_key in found,
    }
    if state is not None:
        result.update(
            state="open" if time.time() < state["open_until"] else "half_open",
            consecutive_failures=max(result["consecutive_failures"], state["failures"]),
            opened_at=_epoch(state["opened_at"]),
            open_until=_epoch(state["open_until"]),
            cooldown_seconds=state["cooldown"],
            trips=state["trips"],
            last_error=state["last_error"],
        )
    return result


def sender_circuit_reset(sender_id: int) -> None:
    """Close a sender's circuit by hand (staff know Meta is back)."""
    _circuit_close(sender_id, "reset by hand")


@dataclass(frozen=True)
class _Ready:
    """A claimed message cleared to go: everything the request needs, and its circuit ticket."""

    backend: WhatsAppBackend
    outgoing: OutgoingMessage
    payload: dict
    sender_ref: SenderRef
    ticket: _CircuitTicket


def _back_to_queue(message: Message, *, detail: str, retry_at: datetime | None) -> SendOutcome:
    """Nothing was sent: the message waits again, its attempt not spent."""
    _move(
        message,
        from_status=MessageStatus.SENDING,
        to_status=MessageStatus.QUEUED,
        source="worker",
        detail=detail,
        next_attempt_at=retry_at,
        attempts=F("attempts") - 1,
    )
    return SendOutcome(MessageStatus.QUEUED, retry_at)


def message_send(message_id: int, *, backend: WhatsAppBackend | None = None) -> SendOutcome:
    """Send one message if it is due and nobody else is sending it."""
    if not message_claim(message_id):
        return SendOutcome("not_claimed")
    message = Message.objects.select_related("contact", "sender", "template").get(pk=message_id)
    record_status(message, MessageStatus.SENDING, source="worker", detail=f"attempt {message.attempts}")
    try:
        ready = _clear_to_send(message, backend)
    except Exception as exc:
        # Nothing has left yet (a configuration error, Redis unreachable, ...): back to the queue
        # rather than stuck in `sending`, which would end `unconfirmed` although nothing was sent.
        logger.exception("Message %s: error before sending; back to the queue", message.pk)
        retry_at = timezone.now() + timedelta(seconds=PAUSED_SENDER_RECHECK_SECONDS)
        _back_to_queue(message, detail=f"worker error before sending: {exc}"[:500], retry_at=retry_at)
        raise
    if isinstance(ready, SendOutcome):
        return ready
    return _send_ready(message, ready)


def _clear_to_send(message: Message, backend: WhatsAppBackend | None) -> "_Ready | SendOutcome":
    """Paused sender, the gate, the circuit and the rate limit, in that order; nothing sent yet."""
    now = timezone.now()
    if message.sender.paused_at or not message.sender.is_active:
        return _back_to_queue(
            message,
            detail=f"sender paused: {message.sender.pause_reason or 'inactive'}",
            retry_at=now + timedelta(seconds=PAUSED_SENDER_RECHECK_SECONDS),
        )

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

    # Everything the request needs is ready before the slot, so it leaves the moment the slot opens.
    backend = backend or get_backend()
    outgoing = OutgoingMessage(
        to=message.contact.phone_number,
        type=message.kind,
        content=message.content,
        reply_to=message.reply_to or None,
        callback_data=str(message.pk),
    )
    payload = backend.build_message_payload(outgoing)

    ticket = _circuit_before_send(message.sender_id, now)
    if not ticket.allowed:
        return _back_to_queue(message, detail=ticket.detail, retry_at=ticket.retry_at)
    try:
        acquired = rate_acquire(
            sender_id=message.sender_id,
            per_second=message.sender.messages_per_second,
            max_wait=RATE_LIMIT_MAX_WAIT,
        )
    except Exception:
        _circuit_release_probe(message.sender_id, ticket)
        raise
    if not acquired:
        _circuit_release_probe(message.sender_id, ticket)
        # Spread over a few seconds: messages refused together must not all come back together.
        spread = RATE_LIMIT_MAX_WAIT * random.uniform(1, 3)  # noqa: S311 - jitter, not security
        return _back_to_queue(
            message,
            detail="rate limit: waiting for a send slot",
            retry_at=timezone.now() + timedelta(seconds=spread),
        )
    return _Ready(backend, outgoing, payload, message.sender.ref, ticket)


def _send_ready(message: Message, ready: _Ready) -> SendOutcome:
    """The request to Meta, and what its answer means. From here on the request may have left: no
    error puts the message back in the queue blindly."""
    backend = ready.backend
    started = time.perf_counter()
    try:
        result = backend.send(sender=ready.sender_ref, message=ready.outgoing)
    except WhatsAppError as exc:
        response = exc.raw if isinstance(exc, WhatsAppApiError) else ""
        _log_call(
            message,
            backend,
            ready.payload,
            started=started,
            http_status=getattr(exc, "http_status", None),
            response=response,
            error=str(exc),
        )
        _circuit_after_send(message.sender_id, ready.ticket, exc)
        return _handle_error(message, exc)
    _circuit_after_send(message.sender_id, ready.ticket, None)
    _log_call(message, backend, ready.payload, started=started, http_status=200, response=result.raw)
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
