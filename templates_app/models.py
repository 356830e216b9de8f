"""WhatsApp message templates as Meta defines them, plus their review history.

Lifecycle (status):

    draft ──(internal review: a second person)──▶ approved_internally ──(submit)──▶ PENDING
    PENDING ──▶ APPROVED | REJECTED            (Meta's review; sync or webhook)
    APPROVED ──▶ PAUSED ──▶ APPROVED | DISABLED (quality; Meta un-pauses or disables)
    REJECTED ──▶ IN_APPEAL ──▶ APPROVED | REJECTED
    REJECTED | PAUSED ──(staff edit the content)──▶ draft ──▶ … ──(submit sends Meta an *edit*)──▶ PENDING

Local drafts are ours alone; everything from PENDING on mirrors Meta's status. A rework is a draft that
already has a `meta_template_id`: editing a rejected or paused template turns it back into a local draft
(so sync and late webhooks never overwrite the edit), and submitting it edits Meta's template in place
(`POST /{message-template-id}`) instead of creating a new one.
"""

from django.conf import settings
from django.db import models


class Category(models.TextChoices):
    MARKETING = "MARKETING", "marketing"
    UTILITY = "UTILITY", "utility"
    AUTHENTICATION = "AUTHENTICATION", "authentication"


class ParameterFormat(models.TextChoices):
    POSITIONAL = "POSITIONAL", "positional ({{1}}, {{2}}, …)"
    NAMED = "NAMED", "named ({{first_name}}, …)"


class TemplateStatus(models.TextChoices):
    DRAFT = "DRAFT", "draft"
    IN_INTERNAL_REVIEW = "IN_INTERNAL_REVIEW", "awaiting internal review"
    APPROVED_INTERNALLY = "APPROVED_INTERNALLY", "approved internally, not submitted"
    PENDING = "PENDING", "pending Meta's review"
    APPROVED = "APPROVED", "approved"
    REJECTED = "REJECTED", "rejected"
    PAUSED = "PAUSED", "paused"
    DISABLED = "DISABLED", "disabled"
    IN_APPEAL = "IN_APPEAL", "in appeal"
    PENDING_DELETION = "PENDING_DELETION", "pending deletion"
    DELETED = "DELETED", "deleted"
    LIMIT_EXCEEDED = "LIMIT_EXCEEDED", "limit exceeded"
    ARCHIVED = "ARCHIVED", "archived"
    UNKNOWN = "UNKNOWN", "unknown"


LOCAL_STATUSES = frozenset(
    {TemplateStatus.DRAFT, TemplateStatus.IN_INTERNAL_REVIEW, TemplateStatus.APPROVED_INTERNALLY}
)


#: Meta's statuses whose content staff may rework and resubmit as an edit of the same Meta template.
REWORKABLE_STATUSES = frozenset({TemplateStatus.REJECTED, TemplateStatus.PAUSED})
#: Statuses whose content staff may edit in the admin.
EDITABLE_STATUSES = frozenset({TemplateStatus.DRAFT, *REWORKABLE_STATUSES})


class QualityRating(models.TextChoices):
    GREEN = "GREEN", "high"
    YELLOW = "YELLOW", "medium"
    RED = "RED", "low"
    UNKNOWN = "UNKNOWN", "unknown"


class MessageTemplate(models.Model):
    waba_id = models.CharField("WhatsApp Business Account id", max_length=32)
    name = models.CharField(max_length=512)
    language = models.CharField(max_length=16, help_text="Meta's language code, e.g. en_US")
    category = models.CharField(max_length=16, choices=Category.choices)
    parameter_format = models.CharField(
        max_length=16, choices=ParameterFormat.choices, default=ParameterFormat.POSITIONAL
    )
    # Meta's component list: HEADER, BODY, FOOTER, BUTTONS objects with their `example` samples.
    components = models.JSONField(default=list)
    meta_template_id = models.CharField(max_length=64, blank=True, db_index=True)
    status = models.CharField(
        max_length=24, choices=TemplateStatus.choices, default=TemplateStatus.DRAFT, db_index=True
    )
    rejected_reason = models.CharField(max_length=200, blank=True)
    meta_recommendation = models.TextField(blank=True, help_text="What Meta suggests changing, when it says.")
    last_error = models.TextField(blank=True, help_text="Meta's answer to the last failed submission.")
    quality_rating = models.CharField(
        max_length=8, choices=QualityRating.choices, default=QualityRating.UNKNOWN
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    reviewed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    submitted_at = models.DateTimeField(null=True, blank=True)
    synced_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name", "language"]
        constraints = [
            models.UniqueConstraint(
                fields=["waba_id", "name", "language"], name="unique_template_name_language_per_waba"
            )
        ]
        permissions = [("review_template", "Can approve or reject templates before they go to Meta")]

    def __str__(self) -> str:
        return f"{self.name} [{self.language}]"

    @property
    def is_sendable(self) -> bool:
        return self.status == TemplateStatus.APPROVED

    @property
    def is_rework(self) -> bool:
        """A local version of a template Meta already holds: submitting it sends an edit."""
        return bool(self.meta_template_id) and self.status in LOCAL_STATUSES


class TemplateStatusChange(models.Model):
    """Every status a template went through, from whichever source told us."""

    class Source(models.TextChoices):
        STAFF = "staff"
        SUBMIT = "submit"
        SYNC = "sync"
        WEBHOOK = "webhook"

    template = models.ForeignKey(MessageTemplate, on_delete=models.CASCADE, related_name="status_changes")
    old_status = models.CharField(max_length=24, blank=True)
    new_status = models.CharField(max_length=24)
    reason = models.TextField(blank=True)
    source = models.CharField(max_length=16, choices=Source.choices)
    changed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    changed_at = models.DateTimeField(auto_now_add=True)

    class Kind(models.TextChoices):
        STATUS = "status"
        QUALITY = "quality"
        CATEGORY = "category"
        REMARK = "remark", "remark (Meta's news for a template being reworked here)"

    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.STATUS)
    # Meta changed the status, quality or category of a template we already had: staff get an email and
    # the template list shows it until they mark it seen. Our own steps and first syncs are not news.
    is_notice = models.BooleanField(default=False)

    class Meta:
        ordering = ["-changed_at", "-id"]
        indexes = [
            models.Index(
                fields=["-changed_at"], condition=models.Q(is_notice=True), name="template_notice_recent"
            )
        ]

    def __str__(self) -> str:
        return f"{self.template}: {self.old_status or '—'} → {self.new_status}"


class TemplateNoticesSeen(models.Model):
    """Up to when a staff member has looked at Meta's template changes (the "Mark as seen" button)."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="template_notices_seen"
    )
    seen_at = models.DateTimeField()

    class Meta:
        verbose_name_plural = "template notices seen"

    def __str__(self) -> str:
        return f"{self.user} saw template changes up to {self.seen_at:%Y-%m-%d %H:%M}"
