"""Running an approved campaign: start (the fan-out), paced dispatch through the outbound pipeline,
pause, resume, cancel, completion.

    start     approved → running. The audience is materialized once, in the database, into
              CampaignRecipient rows (one INSERT ... SELECT: 100,000 people in well under a second on
              PostgreSQL), so who the campaign is for no longer changes while it runs.
    advance   one dispatch step, repeated about every second while the campaign runs: under the
              campaign's row lock, the next pending recipients are checked (the gate, the campaign's
              frequency cap, their template values), their messages created `queued` (or `deferred`
              to the end of their quiet hours) and handed to the send workers; the others are marked
              `excluded` with the reason. Steps keep at most DISPATCH_AHEAD_SECONDS of the sender's
              rate in flight, so a pause takes effect within seconds and the sender's limiter is
              never flooded.
    pause     running → paused: the campaign's messages not yet claimed by a worker are `held`
              (a status the workers never claim); pending recipients stay pending.
    resume    paused → running: held messages are queued again. A message exists once per
              recipient (a unique constraint on campaign and contact) and is claimed atomically, so
              resuming, a step run twice or a task redelivered never sends anyone the campaign twice.
    cancel    approved, running or paused → cancelled: held, queued and deferred messages are
              cancelled, pending recipients too. Messages already with Meta stay as they are.

Every step is in the campaign's history (CampaignEvent) and every message's timeline says which
campaign created, held, released or cancelled it. The gate runs again right before each send.
"""

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.db.models import OuterRef, Subquery
from django.utils import timezone

from messaging.campaign_results import campaign_progress
from messaging.campaigns import (
    ON_THEIR_WAY,
    Outcome,
    campaign_audience,
    campaign_check_fields,
    campaign_check_recipients,
    campaign_check_sendable,
    campaign_event,
    campaign_frequency_counts,
    campaign_locked,
)
from messaging.models import (
    Campaign,
    CampaignAudienceMember,
    CampaignRecipient,
    Message,
    MessageStatus,
    MessageStatusEvent,
)
from messaging.sending import rows_insert

logger = logging.getLogger(__name__)

CONTROL_CAMPAIGN = "messaging.control_campaign"
#: Recipients checked and turned into messages per dispatch step, at most.
DISPATCH_BATCH_SIZE = 1000
#: How far ahead of the sender's rate a campaign creates messages (settings.CAMPAIGN_DISPATCH_AHEAD_SECONDS).
DISPATCH_AHEAD_SECONDS = 10
#: Messages in flight a campaign may always have, whatever its sender's rate.
DISPATCH_MIN_WINDOW = 100
#: Seconds between dispatch steps of a running campaign (its task re-enqueues itself).
DISPATCH_TICK_SECONDS = 1.0
#: ... and once everyone is dispatched, while the last messages (e.g. deferred by quiet hours) leave.
DISPATCH_IDLE_TICK_SECONDS = 10.0
#: A running campaign whose last step is older than this has lost its chain of steps (a worker died):
#: the periodic safety net starts a new one.
DISPATCH_STALE_SECONDS = 30

#: A campaign's messages that have not reached Meta yet (nor failed): what pause holds, cancel cancels.
NOT_YET_SENT = (MessageStatus.QUEUED, MessageStatus.DEFERRED)


@dataclass(frozen=True)
class StepResult:
    status: str  # the campaign's status after the step
    created: int = 0  # messages created
    excluded: int = 0  # recipients excluded
    waiting: bool = False  # nothing to do until messages in flight go out
    idle: bool = False  # everyone dispatched: only waiting for the last messages to leave
    full: bool = False  # a whole batch: more may be waiting, take the next one without a pause
    superseded: bool = False  # a newer chain of steps runs this campaign: this one ends

    @property
    def running(self) -> bool:
        return self.status == Campaign.Status.RUNNING and not self.superseded


def dispatch_window(campaign: Campaign) -> int:
    ahead = getattr(settings, "CAMPAIGN_DISPATCH_AHEAD_SECONDS", DISPATCH_AHEAD_SECONDS)
    return max(DISPATCH_MIN_WINDOW, int(campaign.sender.messages_per_second * ahead))


# --- Start: approved → running, the fan-out -----------------------------------------------------------


def campaign_fan_out(campaign: Campaign) -> int:
    """Materialize the campaign's audience as pending CampaignRecipient rows with one INSERT ... SELECT
    (the database copies the ids; nothing travels through Python). Returns how many."""
    audience_sql, audience_params = (
        campaign_audience(campaign).values("id").query.get_compiler(connection=connection).as_sql()
    )
    quote = connection.ops.quote_name
    recipient = {f.name: quote(f.column) for f in CampaignRecipient._meta.concrete_fields}
    member = {f.name: quote(f.column) for f in CampaignAudienceMember._meta.concrete_fields}
    listed = campaign.audience_source == Campaign.AudienceSource.UPLOAD
    values_sql = "listed." + member["values"] if listed else "NULL"
    join_sql = (
        f"LEFT JOIN {quote(CampaignAudienceMember._meta.db_table)} listed "
        f"ON listed.{member['campaign']} = %s AND listed.{member['contact']} = audience.{quote('id')}"
        if listed
        else ""
    )
    # Table and column names come from the models' metadata; every value is a parameter.
    sql = (
        f"INSERT INTO {quote(CampaignRecipient._meta.db_table)} "  # noqa: S608
        f"({recipient['campaign']}, {recipient['contact']}, {recipient['status']}, {recipient['reason']}, "
        f"{recipient['detail']}, {recipient['values']}, {recipient['message']}) "
        f"SELECT %s, audience.{quote('id')}, %s, '', '', {values_sql}, NULL "
        f"FROM ({audience_sql}) audience {join_sql}"
    )
    params = [campaign.pk, CampaignRecipient.Status.PENDING, *audience_params]
    if listed:
        params.append(campaign.pk)  # the join's
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.rowcount


@transaction.atomic
def campaign_start(campaign_id: int, *, now: datetime | None = None) -> bool:
    """Start an approved campaign whose time has come: fan out, then dispatch (on commit). Safe to
    call twice: the second call finds it running and does nothing. A campaign whose template or sender
    became unusable since its approval is paused with the reason instead (staff resume it once fixed)."""
    now = now or timezone.now()
    campaign = campaign_locked(campaign_id)
    if campaign.status != Campaign.Status.APPROVED or (campaign.scheduled_at and campaign.scheduled_at > now):
        return False
    total = campaign_fan_out(campaign)
    campaign.status = Campaign.Status.RUNNING
    campaign.recipients_total, campaign.started_at, campaign.advanced_at = total, now, now
    campaign.save(update_fields=["status", "recipients_total", "started_at", "advanced_at", "updated_at"])
    campaign_event(campaign, "started", detail=f"{total} recipients")
    if _paused_if_unsendable(campaign):
        return True
    _new_chain(campaign)
    return True


def _paused_if_unsendable(campaign: Campaign) -> bool:
    """Pause a running campaign (locked by the caller) whose template or sender can no longer send:
    at its start, or at any step (Meta pauses templates, staff senders), rather than exclude every
    recipient still pending. Staff resume it once fixed."""
    try:
        campaign_check_sendable(campaign)
    except ValidationError as exc:
        _pause(campaign, user=None, why="Could not send: " + " ".join(exc.messages))
        return True
    return False


def _new_chain(campaign: Campaign) -> None:
    """Start a new chain of dispatch steps once the transaction (holding the campaign's lock) commits.
    Its token replaces the previous chain's, whose next step then ends without rescheduling itself:
    a resume right after a pause, or the safety net restarting a late chain, never leaves two chains
    stepping the same campaign."""
    campaign.dispatch_chain = uuid.uuid4().hex
    campaign.save(update_fields=["dispatch_chain"])
    chain = campaign.dispatch_chain
    transaction.on_commit(lambda: _advance_later(campaign.pk, chain=chain))


def _advance_later(campaign_id: int, *, chain: str) -> None:
    from messaging.tasks import advance_campaign

    if advance_campaign.app.conf.task_always_eager:
        # No broker (`make run`, tests): one step now; the dispatcher loop runs the next ones.
        advance_campaign(campaign_id, chain)
    else:
        advance_campaign.apply_async((campaign_id, chain))


# --- Advance: one paced dispatch step ------------------------------------------------------------------


def campaign_advance(
    campaign_id: int, *, chain: str | None = None, now: datetime | None = None
) -> StepResult:
    """One dispatch step (see the module's docstring). The messages it queued are handed to the send
    workers once its transaction commits. A step of a superseded chain (`chain` no longer the
    campaign's) does nothing and says so, so that its task stops rescheduling itself."""
    now = now or timezone.now()
    with transaction.atomic():
        campaign = campaign_locked(campaign_id)
        if campaign.status != Campaign.Status.RUNNING:
            return StepResult(campaign.status)
        if chain is not None and chain != campaign.dispatch_chain:
            return StepResult(campaign.status, superseded=True)
        if _paused_if_unsendable(campaign):
            return StepResult(campaign.status)
        campaign.advanced_at = now
        campaign.save(update_fields=["advanced_at"])
        # Messages waiting for a worker now; those deferred to the end of someone's quiet hours (or
        # a retry later) do not hold the others back.
        in_flight = (
            Message.objects.filter(
                campaign=campaign, status__in=[MessageStatus.QUEUED, MessageStatus.SENDING]
            )
            .exclude(status=MessageStatus.QUEUED, next_attempt_at__gt=now)
            .count()
        )
        room = min(DISPATCH_BATCH_SIZE, dispatch_window(campaign) - in_flight)
        if room <= 0:
            _refresh_progress_snapshot(campaign)
            return StepResult(campaign.status, waiting=True)
        recipients = list(
            CampaignRecipient.objects.filter(campaign=campaign, status=CampaignRecipient.Status.PENDING)
            .select_related("contact")
            .only("id", "values", "contact_id", *(f"contact__{f}" for f in campaign_check_fields(campaign)))
            .order_by("id")[:room]
        )
        if not recipients:
            status = _complete_if_done(campaign, now=now)
            _refresh_progress_snapshot(campaign, force=status == Campaign.Status.COMPLETED)
            return StepResult(status, idle=True)
        queued_ids, excluded = _dispatch(campaign, recipients, now=now)
        if queued_ids:
            from messaging.tasks import messages_enqueue

            transaction.on_commit(lambda: messages_enqueue(queued_ids))
    return StepResult(
        Campaign.Status.RUNNING,
        created=len(recipients) - excluded,
        excluded=excluded,
        full=len(recipients) == DISPATCH_BATCH_SIZE,
    )


#: The campaign list's progress snapshot is refreshed by dispatch steps at most this often (two GROUP
#: BYs over the campaign's messages; its own page refreshes it on every poll).
PROGRESS_SNAPSHOT_SECONDS = 10


def _refresh_progress_snapshot(campaign: Campaign, *, force: bool = False) -> None:
    if force or cache.add(f"campaign-progress-snapshot:{campaign.pk}", 1, PROGRESS_SNAPSHOT_SECONDS):
        campaign_progress(campaign)


def _dispatch(
    campaign: Campaign, recipients: list[CampaignRecipient], *, now: datetime
) -> tuple[list[int], int]:
    """Check the recipients, create their messages, record what became of each. Returns the ids of the
    messages due now, and how many recipients were excluded."""
    contacts = [r.contact for r in recipients]
    counts = campaign_frequency_counts(campaign, [c.pk for c in contacts], at=now)
    values = {r.contact_id: r.values for r in recipients if r.values}
    checked = campaign_check_recipients(campaign, contacts, values=values, counts=counts, at=now)
    template = campaign.template
    messages: list[Message] = []
    sent_for: list[CampaignRecipient] = []
    excluded: dict[tuple[str, str], list[int]] = {}  # (reason, detail) → recipient ids
    for recipient, check in zip(recipients, checked, strict=True):
        row = check.row
        if row.outcome == Outcome.EXCLUDED:
            excluded.setdefault((row.reason, row.detail[:255]), []).append(recipient.pk)
            continue
        later = row.outcome == Outcome.LATER
        messages.append(
            Message(
                direction=Message.Direction.OUTBOUND,
                contact_id=recipient.contact_id,
                sender_id=campaign.sender_id,
                kind=Message.Kind.TEMPLATE,
                content=check.rendered.payload,
                preview=check.rendered.preview,
                template=template,
                template_category=template.category,
                status=MessageStatus.DEFERRED if later else MessageStatus.QUEUED,
                next_attempt_at=row.defer_until if later else None,
                created_by_id=campaign.created_by_id,
                approved_by_id=campaign.approved_by_id,
                approved_at=campaign.approved_at,
                campaign=campaign,
            )
        )
        sent_for.append(recipient)
    rows_insert(Message, messages)  # one COPY on PostgreSQL: 1,000 messages in a few milliseconds
    if messages and messages[0].pk is None:
        # COPY hands no ids back: each is the campaign's one message to its contact.
        ids = dict(
            Message.objects.filter(
                campaign=campaign, contact_id__in=[m.contact_id for m in messages]
            ).values_list("contact_id", "pk")
        )
        for message in messages:
            message.pk = ids[message.contact_id]
    approver = campaign.approved_by.get_username() if campaign.approved_by else "?"
    detail = f"campaign “{campaign.name}” (#{campaign.pk}), approved by {approver}"
    events = [
        MessageStatusEvent(message=m, status=m.status, source="campaign", detail=detail, occurred_at=now)
        for m in messages
    ]
    rows_insert(MessageStatusEvent, events)
    # Two or three UPDATEs for the whole batch (bulk_update would build a CASE per row): each
    # recipient's message is the campaign's one message to its contact.
    if sent_for:
        CampaignRecipient.objects.filter(pk__in=[r.pk for r in sent_for]).update(
            status=CampaignRecipient.Status.QUEUED,
            message_id=Subquery(
                Message.objects.filter(
                    campaign_id=OuterRef("campaign_id"), contact_id=OuterRef("contact_id")
                ).values("pk")[:1]
            ),
        )
    for (reason, detail), ids in excluded.items():
        CampaignRecipient.objects.filter(pk__in=ids).update(
            status=CampaignRecipient.Status.EXCLUDED, reason=reason, detail=detail
        )
    return [m.pk for m in messages if m.status == MessageStatus.QUEUED], len(recipients) - len(sent_for)


def _complete_if_done(campaign: Campaign, *, now: datetime) -> str:
    """Nobody left to dispatch: the campaign is complete once its last message has left."""
    if Message.objects.filter(campaign=campaign, status__in=ON_THEIR_WAY).exists():
        return campaign.status
    campaign.status, campaign.finished_at = Campaign.Status.COMPLETED, now
    campaign.save(update_fields=["status", "finished_at", "updated_at"])
    campaign_event(campaign, "completed")
    return campaign.status


def campaigns_tick(*, now: datetime | None = None) -> dict[str, int]:
    """The periodic safety net (messaging.tasks.dispatch_due_messages): start approved campaigns whose
    time has come, and give a running campaign whose chain of steps stopped (or, without a broker,
    every running campaign) its next step."""
    now = now or timezone.now()
    started = 0
    for campaign_id in Campaign.objects.filter(status=Campaign.Status.APPROVED).values_list("pk", flat=True):
        started += campaign_start(campaign_id, now=now)
    from messaging.tasks import advance_campaign

    eager = advance_campaign.app.conf.task_always_eager
    running = Campaign.objects.filter(status=Campaign.Status.RUNNING)
    if not eager:
        running = running.filter(advanced_at__lt=now - timedelta(seconds=DISPATCH_STALE_SECONDS))
    advanced = 0
    for campaign_id in running.values_list("pk", flat=True):
        with transaction.atomic():
            campaign = campaign_locked(campaign_id)
            if campaign.status == Campaign.Status.RUNNING:
                _new_chain(campaign)
                advanced += 1
    return {"started": started, "advanced": advanced, "settled": campaign_messages_settle()}


def campaign_messages_settle() -> int:
    """Messages that came back to the queue (a retry, a deferral) after their campaign was paused or
    cancelled while they were with a worker: held, or cancelled, like their siblings. The workers'
    claim never takes them meanwhile (messaging.sending.messages_claim). Returns how many moved."""
    stopped = (
        Message.objects.filter(
            status__in=NOT_YET_SENT,
            campaign__status__in=[Campaign.Status.PAUSED, Campaign.Status.CANCELLED],
        )
        .values_list("campaign_id", flat=True)
        .distinct()
    )
    moved = 0
    for campaign_id in list(stopped):
        with transaction.atomic():
            campaign = campaign_locked(campaign_id)
            if campaign.status == Campaign.Status.PAUSED:
                moved += len(
                    _move_messages(
                        campaign,
                        from_statuses=NOT_YET_SENT,
                        to_status=MessageStatus.HELD,
                        detail="campaign paused (came back to the queue after the pause)",
                    )
                )
            elif campaign.status == Campaign.Status.CANCELLED:
                moved += len(
                    _move_messages(
                        campaign,
                        from_statuses=NOT_YET_SENT,
                        to_status=MessageStatus.CANCELLED,
                        detail="campaign cancelled (came back to the queue after the cancellation)",
                    )
                )
    return moved


# --- Pause, resume, cancel -----------------------------------------------------------------------------


def _refuse_unless_controller(user) -> None:
    if not user.has_perm(CONTROL_CAMPAIGN):
        raise ValidationError("You are not allowed to pause, resume or cancel campaigns.", code="not_allowed")


def _move_messages(
    campaign: Campaign, *, from_statuses, to_status: str, detail: str, only=None, **fields
) -> list[int]:
    """Move the campaign's messages still in one of `from_statuses` (among `only`, a queryset, if
    given; a worker's claim may win some of them first: those are left alone), each with its timeline
    entry. Returns the ids moved."""
    messages = only if only is not None else Message.objects.all()
    ids = list(
        messages.select_for_update()
        .filter(campaign=campaign, status__in=from_statuses)
        .values_list("pk", flat=True)
    )
    if not ids:
        return []
    moved = []
    for start in range(0, len(ids), 1000):
        chunk = ids[start : start + 1000]
        Message.objects.filter(pk__in=chunk, status__in=from_statuses).update(status=to_status, **fields)
        moved += chunk
    now = timezone.now()
    rows_insert(
        MessageStatusEvent,
        [
            MessageStatusEvent(
                message_id=pk, status=to_status, source="campaign", detail=detail, occurred_at=now
            )
            for pk in moved
        ],
    )
    return moved


@transaction.atomic
def campaign_pause(*, campaign: Campaign, user) -> int:
    """Stop a running campaign within seconds: its messages not yet claimed by a worker are held.
    Returns how many were held."""
    _refuse_unless_controller(user)
    campaign = campaign_locked(campaign.pk)
    if campaign.status != Campaign.Status.RUNNING:
        raise ValidationError(
            "Only a running campaign can be paused (this one is %(status)s).",
            code="not_running",
            params={"status": campaign.get_status_display().lower()},
        )
    return _pause(campaign, user=user, why="")


def _pause(campaign: Campaign, *, user, why: str) -> int:
    """Pause a running campaign (locked by the caller): hold what the workers have not claimed."""
    campaign.status = Campaign.Status.PAUSED
    campaign.save(update_fields=["status", "updated_at"])
    by = f"by {user.get_username()}" if user else "by the system"
    held = _move_messages(
        campaign,
        from_statuses=NOT_YET_SENT,
        to_status=MessageStatus.HELD,
        detail=f"campaign paused {by}" + (f": {why}" if why else ""),
    )
    campaign_event(
        campaign, "paused", user=user, detail=f"{len(held)} messages held" + (f". {why}" if why else "")
    )
    return len(held)


@transaction.atomic
def campaign_resume(*, campaign: Campaign, user) -> int:
    """Continue a paused campaign where it stopped: held messages go back to the queue (each still the
    one message its recipient gets), pending recipients are dispatched. Refused while its template or
    sender cannot send. Returns how many messages were released."""
    _refuse_unless_controller(user)
    campaign = campaign_locked(campaign.pk)
    if campaign.status != Campaign.Status.PAUSED:
        raise ValidationError(
            "Only a paused campaign can be resumed (this one is %(status)s).",
            code="not_paused",
            params={"status": campaign.get_status_display().lower()},
        )
    campaign_check_sendable(campaign)
    now = timezone.now()
    campaign.status, campaign.advanced_at = Campaign.Status.RUNNING, now
    campaign.save(update_fields=["status", "advanced_at", "updated_at"])
    detail = f"campaign resumed by {user.get_username()}"
    # Held messages whose time had not come (quiet hours, a retry's backoff) wait for it again.
    later = Message.objects.filter(campaign=campaign, status=MessageStatus.HELD, next_attempt_at__gt=now)
    deferred = _move_messages(
        campaign,
        from_statuses=[MessageStatus.HELD],
        to_status=MessageStatus.DEFERRED,
        detail=detail,
        only=later,
    )
    released = _move_messages(
        campaign, from_statuses=[MessageStatus.HELD], to_status=MessageStatus.QUEUED, detail=detail
    )
    campaign_event(
        campaign, "resumed", user=user, detail=f"{len(released) + len(deferred)} messages released"
    )

    def hand_over() -> None:
        from messaging.tasks import messages_enqueue

        messages_enqueue(released)

    transaction.on_commit(hand_over)
    _new_chain(campaign)
    return len(released) + len(deferred)


@transaction.atomic
def campaign_cancel(*, campaign: Campaign, user, reason: str = "") -> int:
    """Stop a campaign for good: messages not yet with Meta are cancelled, pending recipients too.
    Returns how many messages were cancelled."""
    _refuse_unless_controller(user)
    campaign = campaign_locked(campaign.pk)
    if campaign.status not in (Campaign.Status.APPROVED, Campaign.Status.RUNNING, Campaign.Status.PAUSED):
        raise ValidationError(
            "Only an approved, running or paused campaign can be cancelled (this one is %(status)s).",
            code="not_cancellable",
            params={"status": campaign.get_status_display().lower()},
        )
    now = timezone.now()
    campaign.status, campaign.finished_at = Campaign.Status.CANCELLED, now
    campaign.save(update_fields=["status", "finished_at", "updated_at"])
    who = f"campaign cancelled by {user.get_username()}" + (f": {reason.strip()}" if reason.strip() else "")
    cancelled = _move_messages(
        campaign,
        from_statuses=[*NOT_YET_SENT, MessageStatus.HELD],
        to_status=MessageStatus.CANCELLED,
        detail=who,
    )
    skipped = CampaignRecipient.objects.filter(
        campaign=campaign, status=CampaignRecipient.Status.PENDING
    ).update(status=CampaignRecipient.Status.CANCELLED, reason="cancelled", detail=who[:255])
    campaign_event(
        campaign,
        "cancelled",
        user=user,
        detail=f"{len(cancelled)} messages and {skipped} recipients not yet dispatched cancelled"
        + (f"; reason: {reason.strip()}" if reason.strip() else ""),
    )
    return len(cancelled)
