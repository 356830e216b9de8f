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
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.core.cache import cache
from django.db import connection, models, transaction
from django.db.models import Count, F, Q
from django.utils import timezone

from compliance.gate import MessageFacts, Verdict, gate_check_many
from config.logging import redact
from messaging.limiter import SendSlot, rate_grant, slot_wait
from messaging.models import (
    Campaign,
    Message,
    MessageStatus,
    MessageStatusEvent,
    PendingStatus,
    ProviderCall,
    Sender,
)
from messaging.whatsapp import (
    ErrorAction,
    OutgoingMessage,
    SenderRef,
    SendResult,
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
#: How long the slots of a batch's messages that wait for a free send thread stay usable (a few
#: requests' time): they start without a limiter round trip of their own when their thread comes.
#: The limiter grants it only while the sender's window has room (messaging/limiter.py).
QUEUED_SLOT_HOLD = 0.25
LOG_BODY_LIMIT = 4000
#: Requests one worker process keeps in flight (its send pool; override: settings.WHATSAPP_SEND_THREADS).
#: At Meta's ~50-200 ms per request, 1,000 msg/s needs 50-200 in flight across all workers.
SEND_THREADS = 32
#: Message ids per send task (send_messages): one claim, one read, one gate query pair, one write.
SEND_BATCH_SIZE = 32
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
    return messages_facts([message], at)[0]


def messages_facts(messages: Sequence[Message], at: datetime) -> list[MessageFacts]:
    """message_facts for a batch: the marketing messages each person got lately (the frequency cap)
    counted in one query for all of them, not one per message."""
    marketing = [m for m in messages if m.template_category.upper() == "MARKETING"]
    recent_marketing: dict[int, int] = {}
    since = at - timedelta(days=settings.CONSENT_FREQUENCY_CAP_DAYS)
    if marketing:
        rows = (
            Message.objects.filter(
                contact_id__in={m.contact_id for m in marketing},
                direction=Message.Direction.OUTBOUND,
                template_category__iexact="MARKETING",
                sent_at__gte=since,
            )
            .values("contact_id")
            .annotate(n=Count("pk"))
            .order_by()
        )
        recent_marketing = {row["contact_id"]: row["n"] for row in rows}
    facts = []
    for message in messages:
        recent = 0
        if message.template_category.upper() == "MARKETING":
            recent = recent_marketing.get(message.contact_id, 0)
            if message.sent_at is not None and message.sent_at >= since:
                recent -= 1  # counted above: the message itself is not one of "the others"
        facts.append(
            MessageFacts(
                contact_id=message.contact_id,
                phone_number=message.contact.phone_number,
                at=at,
                kind="template" if message.kind == Message.Kind.TEMPLATE else "free_form",
                template_category=message.template_category,
                template_status=message.template.status if message.template_id else "",
                timezone=message.contact.timezone,
                last_inbound_at=message.contact.last_inbound_at,
                marketing_sent_recently=recent,
                purpose=message.purpose,
            )
        )
    return facts


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


# --- One batch of messages through the pipeline ---------------------------------------------------
#
# A batch is what one task hands over: one claim (UPDATE ... RETURNING), one read, one gate query
# pair, one circuit check per sender; one rate-limit grant per sender for as many messages as the
# process's send pool can start at once, and held slots for the others while the sender's window has
# room (without room they take their slot when a thread is free); every
# message waits for its slot and makes its request on the send pool (SEND_THREADS at once, each
# thread keeping one pooled keep-alive connection of the backend's); then one write of the answers. A single message
# (send_message) takes the same path, its request made inline.


@dataclass(frozen=True)
class _Ready:
    """A claimed message cleared to go: everything the request needs, and its circuit ticket."""

    backend: WhatsAppBackend
    outgoing: OutgoingMessage
    payload: dict
    sender_ref: SenderRef
    ticket: _CircuitTicket


@dataclass
class _SenderTurn:
    """One sender's circuit, as this batch saw it. Once a send of the batch fails in a way that counts
    against the circuit, the batch's remaining sends of that sender ask the circuit again first."""

    ticket: _CircuitTicket
    failed: bool = False


@dataclass
class _Attempt:
    """What happened to one cleared message on the send pool."""

    message: Message
    ready: _Ready
    result: SendResult | None = None  # Meta accepted it
    error: WhatsAppError | None = None  # Meta (or the way there) refused it
    not_sent: SendOutcome | None = None  # nothing left: back to the queue (this outcome)
    not_sent_detail: str = ""
    crash: BaseException | None = None  # an unexpected exception (re-raised once the batch is recorded)
    elapsed_ms: int = 0
    answered_at: datetime | None = None


def messages_claim(message_ids: Sequence[int], *, now: datetime | None = None) -> list[int]:
    """Take due messages for sending with one conditional UPDATE ... RETURNING (queued or deferred and
    due → sending). Each id is won by exactly one caller; returns the ids this caller won."""
    if not message_ids:
        return []
    now = now or timezone.now()
    column = {name: connection.ops.quote_name(Message._meta.get_field(name).column) for name in _CLAIM_FIELDS}
    table = connection.ops.quote_name(Message._meta.db_table)
    campaigns = connection.ops.quote_name(Campaign._meta.db_table)
    campaign_status = connection.ops.quote_name(Campaign._meta.get_field("status").column)
    campaign_id = connection.ops.quote_name(Campaign._meta.pk.column)
    when = connection.ops.adapt_datetimefield_value(now)
    # Names come from the model's own metadata; every value is a parameter. A campaign's message goes
    # only while its campaign runs: one that came back to the queue (a retry, a deferral) after staff
    # paused or cancelled the campaign stays put (campaign_dispatch settles it).
    sql = (
        f"UPDATE {table} SET {column['status']} = %s, {column['claimed_at']} = %s, "  # noqa: S608
        f"{column['attempts']} = {column['attempts']} + 1 "
        f"WHERE {column['id']} IN ({', '.join(['%s'] * len(message_ids))}) "
        f"AND {column['direction']} = %s AND {column['status']} IN (%s, %s) "
        f"AND ({column['next_attempt_at']} IS NULL OR {column['next_attempt_at']} <= %s) "
        f"AND ({column['campaign']} IS NULL OR {column['campaign']} IN "
        f"(SELECT {campaign_id} FROM {campaigns} WHERE {campaign_status} = %s)) "
        f"RETURNING {column['id']}"
    )
    params = [
        MessageStatus.SENDING,
        when,
        *message_ids,
        Message.Direction.OUTBOUND,
        MessageStatus.QUEUED,
        MessageStatus.DEFERRED,
        when,
        Campaign.Status.RUNNING,
    ]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        won = {row[0] for row in cursor.fetchall()}
    return [pk for pk in dict.fromkeys(message_ids) if pk in won]


#: What sending reads of a message and its contact, sender and template: loading only these keeps a
#: batch's read lean (a message row holds its preview, errors, pricing, timestamps... a template its
#: components). Anything else is loaded on first use, one query per message: keep this list complete.
_SEND_FIELDS = (
    "status",
    "attempts",
    "kind",
    "content",
    "reply_to",
    "purpose",
    "template_category",
    "sent_at",
    "provider_message_id",
    "campaign_id",
    "contact__phone_number",
    "contact__timezone",
    "contact__last_inbound_at",
    "sender__phone_number_id",
    "sender__display_phone_number",
    "sender__waba_id",
    "sender__messages_per_second",
    "sender__paused_at",
    "sender__pause_reason",
    "sender__is_active",
    "template__status",
)

_CLAIM_FIELDS = ("id", "status", "claimed_at", "attempts", "direction", "next_attempt_at", "campaign")


def message_claim(message_id: int, *, now: datetime | None = None) -> bool:
    """Take one due message for sending. Exactly one caller wins; the others get False."""
    return bool(messages_claim([message_id], now=now))


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
    return messages_send([message_id], backend=backend)[message_id]


def messages_send(
    message_ids: Sequence[int], *, backend: WhatsAppBackend | None = None
) -> dict[int, SendOutcome]:
    """Send the due messages among `message_ids` that nobody else is sending; every id gets its
    outcome ("not_claimed" for those another caller has, or that are not due)."""
    outcomes = {pk: SendOutcome("not_claimed") for pk in message_ids}
    with transaction.atomic():  # the claim and its delivery log entries: one commit
        claimed = messages_claim(message_ids)
        if not claimed:
            return outcomes
        by_id = (
            Message.objects.select_related("contact", "sender", "template")
            .only(*_SEND_FIELDS)
            .in_bulk(claimed)
        )
        messages = [by_id[pk] for pk in claimed]
        rows_insert(
            MessageStatusEvent,
            [
                _status_event(m, MessageStatus.SENDING, source="worker", detail=f"attempt {m.attempts}")
                for m in messages
            ],
        )
    try:
        cleared = _clear_to_send(messages, backend, outcomes)
    except Exception as exc:
        # Nothing has left yet (a configuration error, the database or Redis unreachable, ...): back to
        # the queue rather than stuck in `sending`, which would end `unconfirmed` although nothing was sent.
        logger.exception("Messages %s: error before sending; back to the queue", [m.pk for m in messages])
        retry_at = timezone.now() + timedelta(seconds=PAUSED_SENDER_RECHECK_SECONDS)
        for message in messages:
            if message.status == MessageStatus.SENDING:
                _back_to_queue(message, detail=f"worker error before sending: {exc}"[:500], retry_at=retry_at)
        raise
    attempts = _send_all(cleared)
    outcomes.update(_record(attempts))
    crash = next((a.crash for a in attempts if a.crash is not None), None)
    if crash is not None:
        raise crash
    return outcomes


def rows_insert(model: type[models.Model], objects: list[models.Model]) -> None:
    """Insert new rows of `model`, their ids not needed back: one COPY on PostgreSQL (its rows are
    written by psycopg's C code, where bulk_create spends Python time on every value of every row),
    bulk_create elsewhere (which sets the objects' ids; COPY does not). Field values must be plain
    (text, numbers, datetimes, None) or JSON; auto_now_add fields are filled here."""
    if not objects:
        return
    if connection.vendor != "postgresql":
        model.objects.bulk_create(objects)
        return
    now = timezone.now()
    fields = [f for f in model._meta.concrete_fields if not f.primary_key]
    for field in fields:
        if getattr(field, "auto_now_add", False) or getattr(field, "auto_now", False):
            for obj in objects:
                if getattr(obj, field.attname) is None:
                    setattr(obj, field.attname, now)
    quote = connection.ops.quote_name
    columns = ", ".join(quote(f.column) for f in fields)
    attnames = [f.attname for f in fields]
    # JSON values go in as psycopg's Jsonb, the way Django's own INSERTs send them.
    json_positions = [i for i, f in enumerate(fields) if isinstance(f, models.JSONField)]
    with (
        connection.cursor() as cursor,
        cursor.copy(
            f"COPY {quote(model._meta.db_table)} ({columns}) FROM STDIN"  # names from the model's metadata
        ) as copy,
    ):
        for obj in objects:
            row = [getattr(obj, name) for name in attnames]
            for i in json_positions:
                row[i] = fields[i].get_db_prep_value(row[i], connection)
            copy.write_row(row)


def _status_event(message: Message, status: str, *, source: str, detail: str = "") -> MessageStatusEvent:
    return MessageStatusEvent(
        message_id=message.pk, status=status, source=source, detail=detail, occurred_at=timezone.now()
    )


def _clear_to_send(
    messages: list[Message], backend: WhatsAppBackend | None, outcomes: dict[int, SendOutcome]
) -> list[tuple[Message, _Ready]]:
    """Paused sender, the gate, the circuit, in that order; the messages that may go, each with what
    its request needs (built before its rate-limit slot, so it leaves the moment the slot opens).
    Every other message gets its outcome in `outcomes`. Nothing sent yet."""
    now = timezone.now()
    active = []
    for message in messages:
        if message.sender.paused_at or not message.sender.is_active:
            outcomes[message.pk] = _back_to_queue(
                message,
                detail=f"sender paused: {message.sender.pause_reason or 'inactive'}",
                retry_at=now + timedelta(seconds=PAUSED_SENDER_RECHECK_SECONDS),
            )
        else:
            active.append(message)

    decisions = gate_check_many(messages_facts(active, now))
    allowed = []
    for message, decision in zip(active, decisions, strict=True):
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
            outcomes[message.pk] = SendOutcome(MessageStatus.BLOCKED)
        elif decision.verdict is Verdict.DEFER:
            _move(
                message,
                from_status=MessageStatus.SENDING,
                to_status=MessageStatus.DEFERRED,
                source="gate",
                detail=decision.detail,
                next_attempt_at=decision.defer_until,
                attempts=F("attempts") - 1,
            )
            outcomes[message.pk] = SendOutcome(MessageStatus.DEFERRED, decision.defer_until)
        else:
            allowed.append(message)

    backend = backend or (get_backend() if allowed else None)
    tickets: dict[int, _CircuitTicket] = {}
    cleared = []
    for message in allowed:
        ticket = tickets.get(message.sender_id)
        if ticket is None:
            ticket = tickets[message.sender_id] = _circuit_before_send(message.sender_id, now)
        elif ticket.probe:
            # Half-open: the batch's first message of this sender is the one probe; the rest wait.
            ticket = _CircuitTicket(
                False,
                retry_at=now + timedelta(seconds=circuit_config()["HALF_OPEN_RECHECK_SECONDS"]),
                detail="circuit half-open: waiting for the probe send to Meta",
            )
        if not ticket.allowed:
            outcomes[message.pk] = _back_to_queue(message, detail=ticket.detail, retry_at=ticket.retry_at)
            continue
        outgoing = OutgoingMessage(
            to=message.contact.phone_number,
            type=message.kind,
            content=message.content,
            reply_to=message.reply_to or None,
            callback_data=str(message.pk),
        )
        payload = backend.build_message_payload(outgoing)
        cleared.append((message, _Ready(backend, outgoing, payload, message.sender.ref, ticket)))
    return cleared


_send_pool: ThreadPoolExecutor | None = None
_send_pool_lock = threading.Lock()


def send_threads() -> int:
    """Requests one process keeps in flight (settings.WHATSAPP_SEND_THREADS, default SEND_THREADS)."""
    return int(getattr(settings, "WHATSAPP_SEND_THREADS", SEND_THREADS))


def _pool() -> ThreadPoolExecutor:
    global _send_pool
    with _send_pool_lock:
        if _send_pool is None:
            _send_pool = ThreadPoolExecutor(max_workers=send_threads(), thread_name_prefix="whatsapp-send")
        return _send_pool


def _send_all(cleared: list[tuple[Message, _Ready]]) -> list[_Attempt]:
    """Every cleared message's slot and request; a lone message's inline, a batch's on the send pool."""
    turns = {m.sender_id: _SenderTurn(ready.ticket) for m, ready in cleared}
    attempts = [_Attempt(message, ready) for message, ready in cleared]
    if len(attempts) == 1:
        slots = _grant_slots(attempts, free_threads=1)
        if attempts[0].not_sent is None:
            _attempt(attempts[0], turns[attempts[0].message.sender_id], slots.get(id(attempts[0])))
        return attempts
    global _in_flight
    with _send_pool_lock:
        free_threads = send_threads() - _in_flight
        _in_flight += len(attempts)
    try:
        slots = _grant_slots(attempts, free_threads=free_threads)
    except BaseException:
        _attempts_done(len(attempts))
        raise
    futures = []
    for a in attempts:
        if a.not_sent is None:
            futures.append(_pool().submit(_attempt_on_pool, a, turns[a.message.sender_id], slots.get(id(a))))
        else:
            _attempts_done(1)
    for future in futures:
        future.result()  # _attempt keeps its exceptions in the attempt
    return attempts


#: Attempts handed to this process's send pool and not finished yet (see _grant_slots).
_in_flight = 0


def _attempts_done(count: int) -> None:
    global _in_flight
    with _send_pool_lock:
        _in_flight -= count


def _attempt_on_pool(attempt: _Attempt, turn: _SenderTurn, slot: SendSlot | None) -> None:
    try:
        _attempt(attempt, turn, slot)
    finally:
        _attempts_done(1)


def _grant_slots(attempts: list[_Attempt], *, free_threads: int) -> dict[int, SendSlot]:
    """Rate-limit slots granted ahead, one grant per sender (one Redis round trip), keyed by
    id(attempt): for the attempts the send pool can start at once (a slot must be used within
    LATE_TOLERANCE of its time), and, while the sender's window has room, held slots for the ones
    that wait for a free thread (QUEUED_SLOT_HOLD), so that they need no round trip of their own;
    any others take their slot when they start. Attempts refused a slot within RATE_LIMIT_MAX_WAIT,
    or whose sender's limiter failed, are not sent (`not_sent`)."""
    by_sender: dict[int, list[_Attempt]] = {}
    for a in attempts:
        by_sender.setdefault(a.message.sender_id, []).append(a)
    slots: dict[int, SendSlot] = {}
    for sender_id, mine in by_sender.items():
        ahead = mine[: max(0, free_threads)]
        free_threads -= len(ahead)
        try:
            granted = rate_grant(
                sender_id=sender_id,
                per_second=mine[0].message.sender.messages_per_second,
                count=len(ahead),
                max_wait=RATE_LIMIT_MAX_WAIT,
                held=len(mine) - len(ahead),
                hold=QUEUED_SLOT_HOLD,
            )
        except Exception as exc:
            logger.exception("Sender %s: rate limiter failed; its messages go back to the queue", sender_id)
            retry_at = timezone.now() + timedelta(seconds=PAUSED_SENDER_RECHECK_SECONDS)
            for a in mine:
                _circuit_release_probe(sender_id, a.ready.ticket)
                a.not_sent = SendOutcome(MessageStatus.QUEUED, retry_at)
                a.not_sent_detail = f"worker error before sending: {exc}"[:500]
                a.crash = exc
            continue
        for a, slot in zip(mine, granted, strict=False):
            slots[id(a)] = slot
        if len(granted) < len(ahead):  # the next free slot is too far away: so it is for the rest
            for a in mine[len(granted) :]:
                _rate_limited(a)
    return slots


def _rate_limited(attempt: _Attempt) -> None:
    _circuit_release_probe(attempt.message.sender_id, attempt.ready.ticket)
    # Spread over a few seconds: messages refused together must not all come back together.
    spread = RATE_LIMIT_MAX_WAIT * random.uniform(1, 3)  # noqa: S311 - jitter, not security
    attempt.not_sent = SendOutcome(MessageStatus.QUEUED, timezone.now() + timedelta(seconds=spread))
    attempt.not_sent_detail = "rate limit: waiting for a send slot"


def _attempt(attempt: _Attempt, turn: _SenderTurn, slot: SendSlot | None) -> None:
    """One message: the circuit again if the batch saw it fail, its rate-limit slot (a fresh one if
    it comes too late for the one granted), the request. Runs on the send pool: touches Redis and
    the network, never the database."""
    message, ready = attempt.message, attempt.ready
    try:
        if turn.failed and not ready.ticket.probe:
            ticket = _circuit_before_send(message.sender_id, timezone.now())
            if not ticket.allowed:
                attempt.not_sent = SendOutcome(MessageStatus.QUEUED, ticket.retry_at)
                attempt.not_sent_detail = ticket.detail
                return
            if ticket.probe:
                attempt.ready = ready = _Ready(
                    ready.backend, ready.outgoing, ready.payload, ready.sender_ref, ticket
                )
        try:
            acquired = slot_wait(
                slot,
                sender_id=message.sender_id,
                per_second=message.sender.messages_per_second,
                max_wait=RATE_LIMIT_MAX_WAIT,
            )
        except Exception:
            _circuit_release_probe(message.sender_id, ready.ticket)
            raise
    except Exception as exc:
        logger.exception("Message %s: error before sending; back to the queue", message.pk)
        retry_at = timezone.now() + timedelta(seconds=PAUSED_SENDER_RECHECK_SECONDS)
        attempt.not_sent = SendOutcome(MessageStatus.QUEUED, retry_at)
        attempt.not_sent_detail = f"worker error before sending: {exc}"[:500]
        attempt.crash = exc
        return
    if not acquired:
        _rate_limited(attempt)
        return
    # From here on the request may have left: no error puts the message back in the queue blindly.
    started = time.perf_counter()
    try:
        attempt.result = ready.backend.send(sender=ready.sender_ref, message=ready.outgoing)
    except WhatsAppError as exc:
        attempt.error = exc
    except Exception as exc:  # a bug, not Meta: the message stays `sending` (it may have left)
        logger.exception("Message %s: unexpected error while sending", message.pk)
        attempt.crash = exc
        return
    finally:
        attempt.elapsed_ms = int((time.perf_counter() - started) * 1000)
        attempt.answered_at = timezone.now()
    if attempt.error is not None and _counts_against_circuit(attempt.error):
        turn.failed = True
    _circuit_after_send(message.sender_id, ready.ticket, attempt.error)


def _provider_call(attempt: _Attempt) -> ProviderCall:
    backend, error = attempt.ready.backend, attempt.error
    if error is None:
        http_status, response, text = 200, attempt.result.raw, ""
    else:
        http_status = getattr(error, "http_status", None)
        response, text = (error.raw if isinstance(error, WhatsAppApiError) else ""), str(error)
    return ProviderCall(
        message_id=attempt.message.pk,
        backend=backend.name,
        method="POST",
        url=backend.message_endpoint(attempt.ready.sender_ref),
        http_status=http_status,
        elapsed_ms=attempt.elapsed_ms,
        request_body=redact(json.dumps(attempt.ready.payload, ensure_ascii=False))[:LOG_BODY_LIMIT],
        response_body=redact(
            response if isinstance(response, str) else json.dumps(response, ensure_ascii=False)
        )[:LOG_BODY_LIMIT],
        error=redact(text)[:LOG_BODY_LIMIT],
    )


def _mark_sent(accepted: list[_Attempt]) -> int:
    """Move accepted messages that are still `sending` (the claim's: another actor may have moved one
    since) to `sent` with Meta's id, in one statement for the batch. Returns the rows moved."""
    column = {name: connection.ops.quote_name(Message._meta.get_field(name).column) for name in _SENT_FIELDS}
    table = connection.ops.quote_name(Message._meta.db_table)
    assignments = (
        f"{column['status']} = %s, {column['provider_message_id']} = {{wamid}}, {column['sent_at']} = {{at}}, "
        f"{column['error_code']} = '', {column['error_title']} = '', {column['error_details']} = ''"
    )
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # One UPDATE joined to the batch's values as arrays: the server plans it once, where 32
            # single-row UPDATEs (even pipelined) cost 32 binds and executions on both sides.
            sql = (
                f"UPDATE {table} SET {assignments.format(wamid='v.wamid', at='v.at')} "  # noqa: S608
                "FROM unnest(%s::bigint[], %s::text[], %s::timestamptz[]) AS v(id, wamid, at) "
                f"WHERE {table}.{column['id']} = v.id AND {table}.{column['status']} = %s"
            )
            cursor.execute(
                sql,
                [
                    MessageStatus.SENT,
                    [a.message.pk for a in accepted],
                    [a.result.provider_message_id for a in accepted],
                    [a.answered_at for a in accepted],
                    MessageStatus.SENDING,
                ],
            )
            return cursor.rowcount
        sql = (
            f"UPDATE {table} SET {assignments.format(wamid='%s', at='%s')} "  # noqa: S608
            f"WHERE {column['id']} = %s AND {column['status']} = %s"
        )
        rows = [
            (
                MessageStatus.SENT,
                a.result.provider_message_id,
                connection.ops.adapt_datetimefield_value(a.answered_at),
                a.message.pk,
                MessageStatus.SENDING,
            )
            for a in accepted
        ]
        cursor.executemany(sql, rows)
        return cursor.rowcount


_SENT_FIELDS = (
    "id",
    "status",
    "provider_message_id",
    "sent_at",
    "error_code",
    "error_title",
    "error_details",
)


def _record(attempts: list[_Attempt]) -> dict[int, SendOutcome]:
    """Write what the send pool did: the delivery log in one insert, every accepted message moved to
    `sent` with Meta's id in one conditional update, errors classified one by one."""
    outcomes: dict[int, SendOutcome] = {}
    accepted = [a for a in attempts if a.result is not None]
    lost: list[_Attempt] = []
    with transaction.atomic():  # one commit for the batch's log and its `sent` messages
        rows_insert(
            ProviderCall, [_provider_call(a) for a in attempts if a.result is not None or a.error is not None]
        )
        for a in accepted:
            m = a.message
            m.status, m.provider_message_id, m.sent_at = (
                MessageStatus.SENT,
                a.result.provider_message_id,
                a.answered_at,
            )
            m.error_code = m.error_title = m.error_details = ""
        if accepted:
            moved = _mark_sent(accepted)
            if moved < len(accepted):
                mine = set(
                    Message.objects.filter(
                        pk__in=[a.message.pk for a in accepted],
                        provider_message_id__in=[a.result.provider_message_id for a in accepted],
                    ).values_list("pk", flat=True)
                )
                lost = [a for a in accepted if a.message.pk not in mine]
                accepted = [a for a in accepted if a.message.pk in mine]
            rows_insert(
                MessageStatusEvent,
                [
                    _status_event(
                        a.message,
                        MessageStatus.SENT,
                        source="worker",
                        detail=f"accepted by Meta ({a.result.message_status or 'accepted'})",
                    )
                    for a in accepted
                ],
            )
    for a in accepted:
        outcomes[a.message.pk] = SendOutcome(MessageStatus.SENT)
    for a in lost:
        outcomes[a.message.pk] = _record_late_acceptance(a)
    _apply_pending_statuses(
        [a.result.provider_message_id for a in [*accepted, *lost] if a.message.status == MessageStatus.SENT]
    )
    for a in attempts:
        if a.error is not None:
            outcomes[a.message.pk] = _handle_error(a.message, a.error)
        elif a.not_sent is not None:
            outcomes[a.message.pk] = _back_to_queue(
                a.message, detail=a.not_sent_detail, retry_at=a.not_sent.retry_at
            )
        elif a.crash is not None:
            outcomes[a.message.pk] = SendOutcome(MessageStatus.SENDING)
    return outcomes


def _record_late_acceptance(attempt: _Attempt) -> SendOutcome:
    """Meta accepted a message that left `sending` while its request was out (the sweeper made it
    `unconfirmed` after a very slow answer): Meta's answer settles it; anything else stays as it is."""
    message, result = attempt.message, attempt.result
    message.status = MessageStatus.UNCONFIRMED
    if _move(
        message,
        from_status=MessageStatus.UNCONFIRMED,
        to_status=MessageStatus.SENT,
        source="worker",
        detail=f"accepted by Meta ({result.message_status or 'accepted'}) after a slow answer",
        provider_message_id=result.provider_message_id,
        sent_at=attempt.answered_at,
        error_code="",
        error_title="",
    ):
        return SendOutcome(MessageStatus.SENT)
    message.refresh_from_db(fields=["status", "provider_message_id", "sent_at"])
    logger.warning(
        "Message %s: Meta accepted it as %s but it is %s now; not recorded",
        message.pk,
        result.provider_message_id,
        message.status,
    )
    return SendOutcome(message.status)


def _apply_pending_statuses(wamids: list[str]) -> None:
    """Status webhooks that arrived before we recorded these wamids were kept: apply them now. One
    query finds the few wamids that have any (a status racing our own send is rare), so a batch does
    not pay pending_statuses_apply's queries for every message."""
    from messaging.statuses import pending_statuses_apply

    if not wamids:
        return
    waiting = set(
        PendingStatus.objects.filter(provider_message_id__in=wamids).values_list(
            "provider_message_id", flat=True
        )
    )
    for wamid in wamids:
        if wamid not in waiting:
            continue
        try:
            pending_statuses_apply(wamid)
        except Exception:  # the send is recorded; the statuses stay pending for the sweeper
            logger.exception("Pending statuses of %s could not be applied", wamid)


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
        from messaging.statuses import marketing_opt_out_from_meta

        marketing_opt_out_from_meta(message=message)
    return SendOutcome(MessageStatus.FAILED)


def messages_due(*, now: datetime | None = None, limit: int = 1000) -> list[int]:
    """Ids of queued or deferred messages whose time has come (the work queue's partial index)."""
    now = now or timezone.now()
    return list(
        Message.objects.filter(status__in=[MessageStatus.QUEUED, MessageStatus.DEFERRED])
        .filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now))
        .filter(Q(campaign__isnull=True) | Q(campaign__status=Campaign.Status.RUNNING))
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
