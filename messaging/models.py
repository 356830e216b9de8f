"""Messaging data: the people we talk to, the business numbers we talk from, API credentials and
the raw webhook deliveries we receive."""

import functools
import zoneinfo

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from django.utils import timezone

from messaging.whatsapp.base import SenderRef

e164_validator = RegexValidator(
    r"^\+[1-9]\d{6,14}$", "Store phone numbers in E.164 form, e.g. +15550123456.", code="invalid_phone_number"
)


@functools.cache
def iana_timezones() -> frozenset[str]:
    # available_timezones() walks the tz database on disk (~13 ms); the set never changes at run time.
    return frozenset(zoneinfo.available_timezones())


def validate_iana_timezone(value: str) -> None:
    if value and value not in iana_timezones():
        raise ValidationError(
            "“%(value)s” is not an IANA time zone (e.g. America/New_York).",
            code="invalid_timezone",
            params={"value": value},
        )


class Tag(models.Model):
    name = models.SlugField(max_length=64, unique=True, allow_unicode=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Contact(models.Model):
    """A customer reachable on WhatsApp, identified by an E.164 phone number."""

    phone_number = models.CharField(max_length=16, unique=True, validators=[e164_validator])
    wa_id = models.CharField("WhatsApp id", max_length=20, blank=True, db_index=True)
    # Meta's business-scoped user id and username (2026 payloads), for users who hide their number.
    user_id = models.CharField("business-scoped user id", max_length=128, blank=True, db_index=True)
    username = models.CharField(max_length=64, blank=True)
    profile_name = models.CharField(max_length=256, blank=True)
    # Set when the person corrected their name through a privacy request: from then on the name they
    # gave wins over the WhatsApp profile name that comes with every inbound message (messaging.inbound).
    name_corrected_at = models.DateTimeField(null=True, blank=True, editable=False)
    locale = models.CharField(max_length=16, blank=True, help_text="e.g. en_US")
    timezone = models.CharField(
        max_length=64,
        blank=True,
        validators=[validate_iana_timezone],
        help_text="IANA name, e.g. America/Chicago",
    )
    tags = models.ManyToManyField(Tag, blank=True, related_name="contacts")
    # When the person last wrote to us: opens the 24-hour customer-service window.
    last_inbound_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        # The admin's first page of contacts reads this index instead of sorting every contact.
        indexes = [models.Index(fields=["-created_at", "-id"], name="contact_newest_first")]

    def __str__(self) -> str:
        return f"{self.profile_name} ({self.phone_number})" if self.profile_name else self.phone_number


class Sender(models.Model):
    """A business phone number registered with the WhatsApp Cloud API."""

    phone_number_id = models.CharField(max_length=32, unique=True, help_text="Meta's phone number id")
    display_phone_number = models.CharField(max_length=16, validators=[e164_validator])
    waba_id = models.CharField("WhatsApp Business Account id", max_length=32)
    label = models.CharField(max_length=100)
    messages_per_second = models.PositiveIntegerField(
        default=80,
        validators=[MinValueValidator(1), MaxValueValidator(1000)],
        help_text="Meta's throughput limit for this number (80 by default, up to 1,000 when upgraded).",
    )
    is_default = models.BooleanField(default=False)
    is_active = models.BooleanField(default=True)
    # Set when Meta refuses our credentials or account: sending stops, messages stay queued.
    paused_at = models.DateTimeField(null=True, blank=True)
    pause_reason = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-is_default", "label"]
        constraints = [
            models.UniqueConstraint(
                fields=["is_default"], condition=models.Q(is_default=True), name="one_default_sender"
            )
        ]

    def __str__(self) -> str:
        return f"{self.label} ({self.display_phone_number})"

    @property
    def ref(self) -> SenderRef:
        """What a provider backend needs to know about this number."""
        return SenderRef(self.phone_number_id, self.display_phone_number, self.waba_id)


class ApiToken(models.Model):
    """A bearer token for the REST API. Only a SHA-256 digest is stored; the token is shown once."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100, blank=True)
    prefix = models.CharField(max_length=12, help_text="First characters of the token, to recognise it.")
    digest = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.user})"


class WebhookEvent(models.Model):
    """One webhook delivery exactly as received, stored before it is acknowledged.

    Processing (normalizing it into statuses, inbound messages, template updates) happens after the
    acknowledgement, so the raw body is the source of truth and can be replayed.
    """

    class State(models.TextChoices):
        RECEIVED = "received"
        PROCESSING = "processing"
        PROCESSED = "processed"
        FAILED = "failed"

    provider = models.CharField(max_length=32, default="whatsapp")
    body_sha256 = models.CharField(max_length=64, unique=True, help_text="Meta redelivers; one row per body.")
    raw_body = models.TextField()
    headers = models.JSONField(default=dict)
    received_at = models.DateTimeField(auto_now_add=True, db_index=True)
    state = models.CharField(max_length=16, choices=State.choices, default=State.RECEIVED)
    claimed_at = models.DateTimeField(null=True, blank=True, help_text="When a worker took it to process.")
    processed_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0, help_text="Times processing ran (replays included).")
    # What the body held, filled by processing: e.g. {"status": 3, "message": 1, "unsupported": 1}.
    summary = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-received_at", "-id"]
        indexes = [
            # The drain's queue, and the sweeper's: deliveries not processed yet (or whose worker died).
            models.Index(
                fields=["id"],
                name="webhook_unprocessed",
                condition=models.Q(state__in=["received", "processing"]),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.provider} webhook {self.body_sha256[:12]} ({self.state})"


class MessageStatus(models.TextChoices):
    DRAFT = "draft"
    PENDING_APPROVAL = "pending_approval", "waiting for approval"
    REJECTED = "rejected"
    QUEUED = "queued"
    DEFERRED = "deferred"
    SENDING = "sending"
    UNCONFIRMED = "unconfirmed", "sent?: awaiting Meta's confirmation"
    SENT = "sent"
    DELIVERED = "delivered"
    READ = "read"
    PLAYED = "played"  # voice messages the recipient listened to
    FAILED = "failed"
    BLOCKED = "blocked", "blocked by policy"
    CANCELLED = "cancelled"
    HELD = "held", "held: campaign paused"
    RECEIVED = "received"  # inbound messages


#: Delivery progress only moves up this ladder (Meta's statuses arrive late, twice and out of order).
DELIVERY_RANK = {
    MessageStatus.SENT: 1,
    MessageStatus.DELIVERED: 2,
    MessageStatus.READ: 3,
    MessageStatus.PLAYED: 4,
}
FINAL_STATUSES = frozenset(
    {MessageStatus.REJECTED, MessageStatus.FAILED, MessageStatus.BLOCKED, MessageStatus.CANCELLED}
)


class Message(models.Model):
    """One WhatsApp message, outbound or inbound.

    Outbound lifecycle:

        draft ─▶ pending_approval ─▶ queued ─▶ sending ─▶ sent ─▶ delivered ─▶ read
                      │                │  ▲       │ │
                      ▼                ▼  │       │ └─▶ unconfirmed (request may have left: reconcile, never resend)
                  rejected          deferred      └─▶ failed | blocked (the gate said no right before sending)
                                   (quiet hours, retry backoff, paused sender)

    `queued`/`deferred` rows with `next_attempt_at` due are the work queue (one partial index).
    Sending claims a row with one conditional UPDATE (queued → sending), so two workers, or a task
    delivered twice, never send it twice.
    """

    class Direction(models.TextChoices):
        OUTBOUND = "outbound"
        INBOUND = "inbound"

    class Kind(models.TextChoices):
        TEXT = "text"
        IMAGE = "image"
        VIDEO = "video"
        AUDIO = "audio"
        DOCUMENT = "document"
        STICKER = "sticker"
        LOCATION = "location"
        CONTACTS = "contacts"
        TEMPLATE = "template"
        INTERACTIVE = "interactive"
        REACTION = "reaction"
        UNSUPPORTED = "unsupported"

    direction = models.CharField(max_length=8, choices=Direction.choices, default=Direction.OUTBOUND)
    # No index of its own: (contact, -created_at) below serves every lookup by contact. Each index on
    # this table is written again by every status change a send makes (queued, sending, sent).
    contact = models.ForeignKey(Contact, on_delete=models.CASCADE, related_name="messages", db_index=False)
    sender = models.ForeignKey(Sender, on_delete=models.PROTECT, related_name="messages")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    # The object Meta expects under the key named by `kind` (outbound), or Meta's message (inbound).
    content = models.JSONField(default=dict)
    preview = models.TextField(blank=True, help_text="What the customer reads, as plain text.")
    template = models.ForeignKey(
        "templates_app.MessageTemplate",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="messages",
        db_index=False,  # a partial index in Meta: only messages that have one
    )
    template_category = models.CharField(max_length=16, blank=True)
    # Set only by the system for the messages the gate treats specially (compliance.gate.SystemPurpose:
    # the STOP confirmation, the double opt-in request); never from the API or the admin.
    purpose = models.CharField(max_length=32, blank=True, editable=False)
    reply_to = models.CharField(max_length=128, blank=True, help_text="wamid this message answers")
    status = models.CharField(max_length=20, choices=MessageStatus.choices, default=MessageStatus.DRAFT)
    # Unique by a constraint (in Meta), not unique=True, which on PostgreSQL adds a second index for
    # LIKE searches nobody makes on a wamid. NULL until Meta gives one: a unique column holds many
    # NULLs, but only one "".
    provider_message_id = models.CharField(max_length=128, null=True, blank=True)  # noqa: DJ001
    error_code = models.CharField(max_length=32, blank=True)
    error_title = models.CharField(max_length=255, blank=True)
    error_details = models.TextField(blank=True)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    claimed_at = models.DateTimeField(null=True, blank=True)
    pricing_category = models.CharField(max_length=32, blank=True)
    pricing_type = models.CharField(max_length=32, blank=True)
    pricing_model = models.CharField(max_length=16, blank=True)
    billable = models.BooleanField(null=True, blank=True)
    conversation_id = models.CharField(max_length=128, blank=True)
    # Inbound: when the customer wrote it (Meta's timestamp), the message of ours it answers, forwarded
    # flags and the ad that brought them (`referral`) live in `content`.
    provider_timestamp = models.DateTimeField(null=True, blank=True)
    in_reply_to = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="replies", db_index=False
    )
    # An index of its own (partial, in Meta) although two partial ones lead with it: counting a
    # campaign's messages by status (its live page) took 35 ms without it against 20 (100,000 messages).
    campaign = models.ForeignKey(
        "Campaign",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="messages",
        editable=False,
        db_index=False,
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        db_index=False,
    )
    approved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        db_index=False,
    )
    approved_at = models.DateTimeField(null=True, blank=True)
    rejection_reason = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    read_at = models.DateTimeField(null=True, blank=True)
    played_at = models.DateTimeField(null=True, blank=True)
    failed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(
                fields=["next_attempt_at"],
                name="message_work_queue",
                condition=models.Q(status__in=["queued", "deferred"]),
            ),
            models.Index(fields=["contact", "-created_at"]),
            models.Index(fields=["status", "-created_at"]),
            models.Index(fields=["direction", "status", "-created_at"]),
            # Foreign keys many messages leave empty (campaign and API messages have no author in the
            # admin, few answer a message, text has no template): indexed only where set. A status
            # change writes a new entry in every index whose condition the row meets, so these cost
            # those messages nothing; a deleted user, template or message still finds its rows.
            *(
                models.Index(
                    fields=[name],
                    name=f"message_{name}_set",
                    condition=models.Q(**{f"{name}__isnull": False}),
                )
                for name in ("template", "in_reply_to", "created_by", "approved_by")
            ),
            # A campaign's progress (messages per status) and its dispatch window (messages in flight);
            # also the campaign foreign key's index (its first column). A second index on the campaign
            # alone was smaller, so PostgreSQL preferred it even for a status: a campaign's 12,500
            # failures of 100,000 read all 100,000 rows (40-55 ms instead of 10).
            models.Index(
                fields=["campaign", "status"],
                name="message_campaign_status",
                condition=models.Q(campaign__isnull=False),
            ),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["provider_message_id"], name="message_provider_message_id_unique"
            ),
            # A campaign reaches each person once, whatever happens to its dispatch (retries, resumes).
            models.UniqueConstraint(
                fields=["campaign", "contact"],
                condition=models.Q(campaign__isnull=False),
                name="one_message_per_campaign_contact",
            ),
        ]
        permissions = [
            ("approve_message", "Can approve or reject messages written by others"),
            ("send_without_approval", "Can send messages without a second person's approval"),
        ]

    def __str__(self) -> str:
        arrow = "to" if self.direction == self.Direction.OUTBOUND else "from"
        return f"#{self.pk} {self.kind} {arrow} contact {self.contact_id} ({self.get_status_display()})"


class MessageStatusEvent(models.Model):
    """The message's timeline: every status it reached, when, and who or what said so."""

    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="status_events")
    status = models.CharField(max_length=20, choices=MessageStatus.choices)
    source = models.CharField(max_length=16)  # api, admin, worker, webhook, gate
    detail = models.TextField(blank=True)
    occurred_at = models.DateTimeField()
    recorded_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["occurred_at", "id"]
        constraints = [
            # Meta redelivers statuses: each one lands in the timeline once.
            models.UniqueConstraint(
                fields=["message", "status"],
                condition=models.Q(source="webhook"),
                name="one_webhook_status_per_message",
            )
        ]

    def __str__(self) -> str:
        return f"{self.status} at {self.occurred_at:%Y-%m-%d %H:%M:%S}"


class PendingStatus(models.Model):
    """A status webhook for a wamid we have not recorded yet (it raced our own send): kept, and applied
    the moment the send records that wamid."""

    provider_message_id = models.CharField(max_length=128, db_index=True)
    status = models.CharField(max_length=20)
    payload = models.JSONField(help_text="Meta's status object as received.")
    webhook_event = models.ForeignKey(WebhookEvent, null=True, blank=True, on_delete=models.SET_NULL)
    received_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["received_at", "id"]
        verbose_name_plural = "pending statuses"
        constraints = [
            models.UniqueConstraint(
                fields=["provider_message_id", "status"], name="one_pending_status_per_wamid"
            )
        ]

    def __str__(self) -> str:
        return f"{self.status} for {self.provider_message_id}"


class ProviderAlert(models.Model):
    """Something Meta told us that staff must see: value-level errors (e.g. 130429 throughput), account
    alerts and updates, phone number quality changes, and webhook fields we do not understand."""

    class Severity(models.TextChoices):
        INFO = "info"
        WARNING = "warning"
        ERROR = "error"

    kind = models.CharField(max_length=64, help_text="Meta's field, e.g. account_alerts, or 'error'.")
    severity = models.CharField(max_length=8, choices=Severity.choices, default=Severity.WARNING)
    code = models.CharField(max_length=32, blank=True)
    title = models.CharField(max_length=255, blank=True)
    details = models.TextField(blank=True)
    sender = models.ForeignKey(
        Sender, null=True, blank=True, on_delete=models.SET_NULL, related_name="alerts"
    )
    payload = models.JSONField(default=dict)
    webhook_event = models.ForeignKey(WebhookEvent, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    acknowledged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.kind} {self.code} {self.title}".strip()


class AutoReply(models.Model):
    """A staff-configured answer to a keyword customers send (e.g. HOURS → our opening hours).

    Matching ignores case, surrounding spaces and punctuation. Opt-out/opt-in keywords (STOP, START,
    ...) are handled by consent rules first and can never be overridden here."""

    class Match(models.TextChoices):
        EXACT = "exact", "the whole message is the keyword"
        CONTAINS = "contains", "the message contains the keyword as a word"

    keyword = models.CharField(max_length=64)
    match = models.CharField(max_length=8, choices=Match.choices, default=Match.EXACT)
    reply_text = models.TextField(blank=True, max_length=4096)
    template = models.ForeignKey(
        "templates_app.MessageTemplate", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    template_parameters = models.JSONField(default=list, blank=True)
    is_active = models.BooleanField(default=True)
    priority = models.PositiveSmallIntegerField(default=100, help_text="Lower wins when several match.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["priority", "keyword"]
        verbose_name_plural = "auto-replies"

    def __str__(self) -> str:
        return self.keyword

    def clean(self) -> None:
        if bool(self.reply_text.strip()) == bool(self.template_id):
            raise ValidationError("Give either a reply text or a template, not both and not neither.")


class ProviderCall(models.Model):
    """One request to the provider (the delivery log), with tokens and phone numbers redacted."""

    message = models.ForeignKey(
        Message, null=True, blank=True, on_delete=models.CASCADE, related_name="provider_calls"
    )
    backend = models.CharField(max_length=32)
    method = models.CharField(max_length=8)
    url = models.CharField(max_length=500)
    http_status = models.PositiveSmallIntegerField(null=True, blank=True)
    elapsed_ms = models.PositiveIntegerField(default=0)
    request_body = models.TextField(blank=True)
    response_body = models.TextField(blank=True)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.method} {self.url} → {self.http_status or self.error[:40]}"


#: Contact fields a campaign may put into a template parameter (`{"field": name}`): what a person told
#: us or WhatsApp shows about them, never internal ids or consent data.
CAMPAIGN_CONTACT_FIELDS = ("profile_name", "username", "phone_number", "wa_id", "locale", "timezone")


def validate_campaign_parameters(value) -> None:
    """A list whose items are each {"text": "literal"}, {"field": "<one of CAMPAIGN_CONTACT_FIELDS>"} or
    {"column": "<a column of the uploaded audience list>"} (checked against the list when it is used)."""
    if not isinstance(value, list):
        raise ValidationError("Template parameters must be a list.", code="invalid_parameters")
    for position, item in enumerate(value, start=1):
        if isinstance(item, dict) and set(item) == {"text"} and isinstance(item["text"], str):
            continue
        if isinstance(item, dict) and set(item) == {"field"} and item["field"] in CAMPAIGN_CONTACT_FIELDS:
            continue
        if (
            isinstance(item, dict)
            and set(item) == {"column"}
            and isinstance(item["column"], str)
            and item["column"]
        ):
            continue
        raise ValidationError(
            'Parameter %(position)s must be {"text": "…"}, {"column": "…"} or {"field": "…"} with a field '
            "among %(fields)s.",
            code="invalid_parameters",
            params={"position": position, "fields": ", ".join(CAMPAIGN_CONTACT_FIELDS)},
        )


class Campaign(models.Model):
    """One approved template sent from one sender to an audience of contacts.

    Lifecycle:

        draft ─▶ pending_approval ─▶ approved ─▶ running ⇄ paused
          ▲            │              (waits for   │         │
          └─ rejected ◀┘              scheduled_at) ├─▶ completed
                                          │         │
                                          └─────────┴─────────┴──▶ cancelled

    A draft can be edited and dry-run; submitted, it waits for a second person who approves it or
    sends it back to draft with a `rejection_reason` (kept so the author sees why; every step is in
    its CampaignEvent history). Pending and approved campaigns are frozen: what was approved is what
    goes out. At its time an approved campaign starts: its audience is materialized once into
    CampaignRecipient rows (the fan-out), then dispatched in paced batches through the outbound
    pipeline (messaging.campaign_dispatch).
    """

    class Status(models.TextChoices):
        DRAFT = "draft"
        PENDING_APPROVAL = "pending_approval", "Pending approval"
        APPROVED = "approved", "Approved (scheduled)"
        RUNNING = "running"
        PAUSED = "paused"
        COMPLETED = "completed"
        CANCELLED = "cancelled"

    class AudienceSource(models.TextChoices):
        FILTERS = "filters", "Tags and locale"
        UPLOAD = "upload", "An uploaded list (CSV)"

    name = models.CharField(max_length=200)
    sender = models.ForeignKey(Sender, on_delete=models.PROTECT, related_name="campaigns")
    template = models.ForeignKey(
        "templates_app.MessageTemplate", on_delete=models.PROTECT, related_name="campaigns"
    )
    template_parameters = models.JSONField(
        default=list,
        blank=True,
        validators=[validate_campaign_parameters],
        help_text=(
            "One item per template variable, in order (a text header's or a media header's first, then "
            'the body\'s): {"text": "literal"}, {"field": "profile_name"} (a contact field) or '
            '{"column": "order_id"} (a column of the uploaded list).'
        ),
    )
    audience_source = models.CharField(
        max_length=8, choices=AudienceSource.choices, default=AudienceSource.FILTERS
    )
    audience_tags = models.ManyToManyField(
        Tag,
        blank=True,
        related_name="campaigns",
        help_text="Contacts with any of these tags; none: everyone.",
    )
    audience_locale = models.CharField(max_length=16, blank=True, help_text="e.g. en_US; blank: any locale.")
    # What the last uploaded list held: counts and the lines that could not be used (never the numbers).
    audience_upload_summary = models.JSONField(default=dict, blank=True, editable=False)
    scheduled_at = models.DateTimeField(null=True, blank=True, help_text="Blank: as soon as approved.")
    frequency_cap_count = models.PositiveSmallIntegerField(
        null=True,
        blank=True,
        help_text=(
            "Skip people who already received this many marketing messages from us in the period below "
            "(blank: only the account-wide cap applies)."
        ),
    )
    frequency_cap_days = models.PositiveSmallIntegerField(default=7, help_text="The frequency cap's period.")
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.DRAFT, editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    submitted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        editable=False,
    )
    submitted_at = models.DateTimeField(null=True, blank=True, editable=False)
    approved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        editable=False,
    )
    approved_at = models.DateTimeField(null=True, blank=True, editable=False)
    rejection_reason = models.TextField(blank=True, editable=False)
    started_at = models.DateTimeField(null=True, blank=True, editable=False)
    finished_at = models.DateTimeField(null=True, blank=True, editable=False)
    recipients_total = models.PositiveIntegerField(default=0, editable=False)
    # When a dispatch step last ran: the periodic safety net restarts a chain of steps that stopped.
    advanced_at = models.DateTimeField(null=True, blank=True, editable=False)
    # The current chain of dispatch steps (messaging.campaign_dispatch): steps of older chains stop.
    dispatch_chain = models.CharField(max_length=32, blank=True, editable=False)
    # The last progress computed (its page's poll, the dispatch steps): what the campaign list shows,
    # which would otherwise count every listed campaign's messages on every view.
    progress_percent = models.PositiveSmallIntegerField(default=0, editable=False)

    class Meta:
        ordering = ["-created_at", "-id"]
        permissions = [
            ("approve_campaign", "Can approve campaigns written by others"),
            ("control_campaign", "Can pause, resume and cancel running campaigns"),
        ]

    def __str__(self) -> str:
        return self.name


class CampaignAudienceMember(models.Model):
    """One contact of an uploaded audience list, with the list's other columns for its parameters."""

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="audience_members")
    contact = models.ForeignKey(Contact, on_delete=models.CASCADE, related_name="+")
    values = models.JSONField(default=dict, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["campaign", "contact"], name="one_listing_per_campaign_contact")
        ]

    def __str__(self) -> str:
        return f"contact {self.contact_id} in campaign {self.campaign_id}"


class CampaignRecipient(models.Model):
    """One person a started campaign is for (the fan-out), and what became of them: a message
    (`queued`, its delivery then on the message), `excluded` with the gate's reason, or `cancelled`.
    One row per campaign and contact; its message is created once, under the campaign's lock."""

    class Status(models.TextChoices):
        PENDING = "pending", "waiting to be dispatched"
        QUEUED = "queued", "message created"
        EXCLUDED = "excluded"
        CANCELLED = "cancelled"

    # The fan-out writes 100,000 rows in one statement, and PostgreSQL checks each row's foreign keys
    # at commit, one lookup per key per row: a third of its time per key. Two keys are safe without the
    # database's check, because only our code writes them, from rows it holds: the campaign's (the
    # fan-out runs under the campaign's row lock, and only drafts, which have no recipients, can be
    # deleted) and the message's (set by the dispatch step that created the message; Django's
    # collector clears it when the message goes). The contact's keeps its check: contacts can be erased
    # by a privacy request while a fan-out reads them. Django still cascades all three.
    campaign = models.ForeignKey(
        Campaign, on_delete=models.CASCADE, related_name="recipients", db_constraint=False, db_index=False
    )
    contact = models.ForeignKey(Contact, on_delete=models.CASCADE, related_name="+")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    reason = models.CharField(max_length=32, blank=True)
    detail = models.CharField(max_length=255, blank=True)
    values = models.JSONField(null=True, blank=True, help_text="The uploaded list's columns, if any.")
    # One message per recipient (a partial unique index: the fan-out's rows, all without a message
    # yet, cost it nothing).
    message = models.ForeignKey(
        "Message",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="campaign_recipients",
        db_constraint=False,
        db_index=False,
    )

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=["campaign", "contact"], name="one_recipient_per_campaign_contact"
            ),
            models.UniqueConstraint(
                fields=["message"],
                condition=models.Q(message__isnull=False),
                name="one_recipient_per_message",
            ),
        ]
        # The unique constraint's index serves lookups by campaign; this one the dispatch queue (pending,
        # in order) and the progress counts by status.
        indexes = [models.Index(fields=["campaign", "status", "id"], name="campaign_recipient_queue")]

    def __str__(self) -> str:
        return f"contact {self.contact_id} in campaign {self.campaign_id} ({self.status})"


class CampaignEvent(models.Model):
    """The campaign's history: who submitted, rejected (and why), approved, started, paused, resumed,
    cancelled it, and when."""

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="events")
    action = models.CharField(max_length=20)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    detail = models.TextField(blank=True)
    occurred_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["occurred_at", "id"]

    def __str__(self) -> str:
        return f"{self.action} at {self.occurred_at:%Y-%m-%d %H:%M:%S}"


class CampaignDryRunReport(models.Model):
    """One dry run of a campaign, worked out in a worker (100,000 people take several seconds, a
    million longer than a request may last): who would receive it, now or later, and how many are
    excluded for each reason. Counts only; the per-person CSV is computed again when downloaded, so no
    one's number is kept here (an erasure has nothing to find)."""

    class Status(models.TextChoices):
        RUNNING = "running"
        DONE = "done"
        FAILED = "failed"

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="dry_runs")
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    requested_at = models.DateTimeField(default=timezone.now)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.RUNNING)
    finished_at = models.DateTimeField(null=True, blank=True)
    at = models.DateTimeField(
        null=True, blank=True, help_text="The moment the campaign was imagined going out."
    )
    summary = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-requested_at", "-id"]

    def __str__(self) -> str:
        return f"dry run of {self.campaign_id} at {self.requested_at:%Y-%m-%d %H:%M:%S} ({self.status})"


class DashboardDay(models.Model):
    """The dashboard's figures for the outbound messages created on one calendar day (in `time_zone`):
    how far they got, their failures by Meta's code and the billable ones by pricing category. The admin
    index reads these rows instead of scanning every message of the period; messaging.dashboard
    computes them again while the day's messages may still move (see dashboard_snapshot)."""

    day = models.DateField()
    time_zone = models.CharField(max_length=64)
    queued = models.PositiveIntegerField(default=0)
    sent = models.PositiveIntegerField(default=0)
    delivered = models.PositiveIntegerField(default=0)
    read = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    failures = models.JSONField(default=list)  # [[error code, title, count], ...]
    billable = models.JSONField(default=dict)  # {pricing category: count}
    computed_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["time_zone", "day"], name="one_dashboard_day_per_zone")
        ]

    def __str__(self) -> str:
        return f"dashboard {self.day} ({self.time_zone}) as of {self.computed_at:%H:%M:%S}"
