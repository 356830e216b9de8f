"""The consent ledger and what is derived from it.

    ConsentText     versioned wording shown to people when they opt in (immutable once created)
    ConsentSubject  the ledger's pseudonymous handle on a person + that person's wrapped data key
    ConsentEvent    one append-only, hash-chained record per opt-in / opt-out / confirmation
    LedgerHead      the chain's current end (sequence, hash); locked while appending
    ConsentState    projection: the current status per person and purpose, rebuilt from the ledger

Events never change and are never deleted (the model layer refuses everywhere; on PostgreSQL a
trigger refuses too). Erasing a person destroys their key, not their events.
"""

import uuid

from django.conf import settings
from django.db import models


class Purpose(models.TextChoices):
    """What a person consents to: Meta's template categories."""

    MARKETING = "marketing"
    UTILITY = "utility"
    AUTHENTICATION = "authentication"


class ConsentAction(models.TextChoices):
    OPT_IN = "opt_in", "opt-in"
    OPT_OUT = "opt_out", "opt-out"
    CONFIRM = "confirm", "double opt-in confirmation"


class ConsentSource(models.TextChoices):
    WEB_FORM = "web_form", "web form"
    API = "api", "API"
    WHATSAPP_KEYWORD = "whatsapp_keyword", "WhatsApp keyword"
    META_USER_PREFERENCES = "meta_user_preferences", "Meta user preferences"
    META_ERROR_131050 = "meta_error_131050", "Meta error 131050"
    STAFF = "staff", "staff"
    IMPORT = "import", "import"
    PRIVACY_REQUEST = "privacy_request", "privacy request"


class LedgerImmutableError(Exception):
    """Raised on any attempt to change or delete a ledger event."""


class ConsentText(models.Model):
    """The exact wording shown when consent is asked. A change of wording is a new version."""

    version = models.CharField(max_length=64, unique=True)
    business_name = models.CharField(max_length=200)
    body = models.TextField(
        help_text="Say what messages people will get, that consent is not a condition of purchase, "
        "and how to stop (reply STOP)."
    )
    sha256 = models.CharField(max_length=64, editable=False)
    is_current = models.BooleanField(default=False, help_text="The version the public opt-in page shows.")
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["is_current"], condition=models.Q(is_current=True), name="one_current_consent_text"
            )
        ]

    def __str__(self) -> str:
        return f"{self.version} ({self.business_name})"


class ConsentSubject(models.Model):
    """The ledger refers to people only through this row. `contact_id` is messaging's contact id,
    deliberately not a foreign key: compliance does not depend on messaging's tables, and erasure can
    cut the link without touching a single ledger event."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    contact_id = models.BigIntegerField(unique=True, null=True, blank=True)
    wrapped_key = models.BinaryField(null=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    erased_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return (
            f"subject {self.id} (contact {self.contact_id})"
            if self.contact_id
            else f"subject {self.id} (erased)"
        )


class ConsentEventQuerySet(models.QuerySet):
    def update(self, **kwargs):
        raise LedgerImmutableError("Consent ledger events cannot be changed.")

    def delete(self):
        raise LedgerImmutableError("Consent ledger events cannot be deleted.")

    def bulk_update(self, objs, fields, batch_size=None):
        raise LedgerImmutableError("Consent ledger events cannot be changed.")


class ConsentEvent(models.Model):
    """One change of consent, with its evidence. Append-only and hash-chained: `hash` covers the
    canonical content (including `prev_hash`), so changing or removing any event breaks the chain."""

    sequence = models.PositiveBigIntegerField(unique=True)
    subject = models.ForeignKey(ConsentSubject, on_delete=models.PROTECT, related_name="events")
    purpose = models.CharField(max_length=16, choices=Purpose.choices)
    action = models.CharField(max_length=16, choices=ConsentAction.choices)
    source = models.CharField(max_length=32, choices=ConsentSource.choices)
    awaiting_confirmation = models.BooleanField(
        default=False, help_text="A double opt-in that counts only once the person confirms."
    )
    text_version = models.CharField(max_length=64, blank=True)
    text_sha256 = models.CharField(max_length=64, blank=True)
    # Identifying evidence (phone number, name, IP, user agent, page URL, message id, staff reason),
    # encrypted with the subject's key. Non-identifying facts stay in clear for auditors.
    evidence_ciphertext = models.TextField()
    staff_user_id = models.IntegerField(null=True, blank=True)
    occurred_at = models.DateTimeField()
    recorded_at = models.DateTimeField()
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64, unique=True)
    # The event's line in a jsonl export (no newline), written once by ledger_append with the one
    # encoder (ledger.export_lines), so exports stream it without formatting 14 columns per row.
    # Derived from the columns above, never trusted on its own: ledger_verify checks it against them.
    export_line = models.TextField(default="", editable=False)

    objects = ConsentEventQuerySet.as_manager()

    class Meta:
        ordering = ["sequence"]
        indexes = [
            models.Index(fields=["subject", "purpose", "sequence"]),
            models.Index(fields=["occurred_at"]),
        ]

    def __str__(self) -> str:
        return f"#{self.sequence} {self.action} {self.purpose} via {self.source}"

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise LedgerImmutableError("Consent ledger events cannot be changed.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise LedgerImmutableError("Consent ledger events cannot be deleted.")


class LedgerHead(models.Model):
    """The single row holding the chain's end; appends lock it so the chain never forks."""

    sequence = models.PositiveBigIntegerField(default=0)
    hash = models.CharField(max_length=64)

    def __str__(self) -> str:
        return f"ledger head #{self.sequence} {self.hash[:12]}"


class ConsentStatus(models.TextChoices):
    GRANTED = "granted"
    PENDING = "pending", "pending confirmation"
    REVOKED = "revoked"


class ConsentState(models.Model):
    """Current consent per person and purpose (a projection of the ledger, rebuildable at any time)."""

    subject = models.ForeignKey(ConsentSubject, on_delete=models.CASCADE, related_name="states")
    contact_id = models.BigIntegerField(null=True, db_index=True)
    purpose = models.CharField(max_length=16, choices=Purpose.choices)
    status = models.CharField(max_length=16, choices=ConsentStatus.choices)
    last_event = models.ForeignKey(ConsentEvent, on_delete=models.PROTECT, related_name="+")
    changed_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["subject", "purpose"], name="one_state_per_subject_purpose")
        ]
        indexes = [models.Index(fields=["contact_id", "purpose", "status"])]

    def __str__(self) -> str:
        return f"{self.purpose}: {self.status}"


class Suppression(models.Model):
    """Numbers that must never be messaged (erased people, legal holds, complaints). Stored only as a
    keyed hash, so the list itself identifies nobody."""

    phone_hash = models.CharField(max_length=64, unique=True)
    reason = models.CharField(max_length=200)
    created_at = models.DateTimeField(auto_now_add=True)
    privacy_request = models.ForeignKey(
        "PrivacyRequest",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="The deletion request that erased the number, when that is why it is here.",
    )

    def __str__(self) -> str:
        return f"suppressed {self.phone_hash[:12]}… ({self.reason})"


# --- Exports and the staff audit trail ------------------------------------------------------------


class AppendOnlyQuerySet(models.QuerySet):
    """Refuses bulk changes and deletes: the rows are a record of what happened."""

    def update(self, **kwargs):
        raise LedgerImmutableError(f"{self.model._meta.verbose_name_plural} cannot be changed.")

    def delete(self):
        raise LedgerImmutableError(f"{self.model._meta.verbose_name_plural} cannot be deleted.")

    def bulk_update(self, objs, fields, batch_size=None):
        raise LedgerImmutableError(f"{self.model._meta.verbose_name_plural} cannot be changed.")

    def erase_personal_data(self, **fields):
        """The one change a record allows: removing a person's data that an erasure request reaches
        (compliance.erasure). Nothing else may call it."""
        return super().update(**fields)


class AppendOnlyModel(models.Model):
    objects = AppendOnlyQuerySet.as_manager()

    class Meta:
        abstract = True

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise LedgerImmutableError(f"{self._meta.verbose_name_plural} cannot be changed.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise LedgerImmutableError(f"{self._meta.verbose_name_plural} cannot be deleted.")


class ExportFormat(models.TextChoices):
    JSONL = "jsonl", "JSON lines (verifiable)"
    CSV = "csv", "CSV (spreadsheets)"


class ConsentExport(AppendOnlyModel):
    """One export of the consent ledger: who took which rows, and the fingerprint of the file they got.
    Together with the ledger head it is the export's manifest (compliance.exports.export_manifest)."""

    user_id = models.IntegerField(null=True, blank=True)
    username = models.CharField(max_length=150, help_text='The staff user, or "cli" for manage.py.')
    created_at = models.DateTimeField(db_index=True)
    format = models.CharField(max_length=8, choices=ExportFormat.choices)
    filters = models.JSONField(default=dict, blank=True)
    row_count = models.PositiveBigIntegerField()
    sha256 = models.CharField(max_length=64, help_text="SHA-256 of the file's bytes.")
    head_sequence = models.PositiveBigIntegerField(help_text="The ledger head when the export started.")
    head_hash = models.CharField(max_length=64)
    complete = models.BooleanField(
        default=True, help_text="False when the download stopped before the last row (count and hash "
        "then describe what was sent)."
    )  # fmt: skip

    class Meta:
        ordering = ["-created_at", "-id"]
        default_permissions = ("view",)
        permissions = [("export_consent", "Can export the consent ledger")]

    def __str__(self) -> str:
        return f"{self.format} export of {self.row_count} events by {self.username}"


class AuditAction(models.TextChoices):
    VIEW = "view"
    CHANGE = "change"
    EXPORT = "export"
    LOOKUP = "lookup"


class StaffAuditEntry(AppendOnlyModel):
    """Who looked at, changed or exported consent data, and when. Identifies people only by contact id
    or ledger subject id, never by phone number."""

    user_id = models.IntegerField(null=True, blank=True)
    username = models.CharField(max_length=150)
    action = models.CharField(max_length=16, choices=AuditAction.choices)
    object_type = models.CharField(max_length=100, help_text='e.g. "compliance.consentevent"')
    object_id = models.CharField(max_length=64, blank=True)
    summary = models.CharField(max_length=300, blank=True)
    at = models.DateTimeField(db_index=True)
    ip = models.GenericIPAddressField(null=True, blank=True)

    class Meta:
        ordering = ["-at", "-id"]
        default_permissions = ("view",)
        verbose_name = "staff audit entry"
        verbose_name_plural = "staff audit entries"

    def __str__(self) -> str:
        return f"{self.username} {self.action} {self.object_type} {self.object_id}".rstrip()


# --- Privacy requests (CCPA/CPRA) -----------------------------------------------------------------


class PrivacyRequestKind(models.TextChoices):
    KNOW_CATEGORIES = "know_categories", "Right to know: categories"
    KNOW_SPECIFIC = "know_specific", "Right to know: specific pieces"
    DELETE = "delete", "Delete"
    CORRECT = "correct", "Correct"
    OPT_OUT_SALE = "opt_out_sale", "Opt out of sale/sharing"
    LIMIT_SENSITIVE = "limit_sensitive", "Limit use of sensitive information"


class PrivacyRequestChannel(models.TextChoices):
    """The manner in which the request reached us (a field of the records the regulations require)."""

    WEB_FORM = "web_form", "web form"
    API = "api", "API"
    EMAIL = "email", "email"
    PHONE = "phone", "toll-free phone"
    MAIL = "mail", "mail"
    IN_PERSON = "in_person", "in person"
    WHATSAPP = "whatsapp", "WhatsApp"


class PrivacyRequestStatus(models.TextChoices):
    """received → awaiting_verification → verified → closed; opt-out and limit requests need no
    verification and go from received to closed. A request can be closed (denied) from any state."""

    RECEIVED = "received"
    AWAITING_VERIFICATION = "awaiting_verification", "awaiting verification"
    VERIFIED = "verified"
    CLOSED = "closed"


class PrivacyOutcome(models.TextChoices):
    COMPLIED = "complied", "complied with in whole"
    COMPLIED_IN_PART = "complied_in_part", "complied with in part"
    DENIED = "denied"


class DenialBasis(models.TextChoices):
    UNVERIFIABLE = "unverifiable", "identity could not be verified"
    NOT_AN_AGENT = "not_an_agent", "agent's authority not shown"
    LEGAL_OBLIGATION = "legal_obligation", "needed to comply with a legal obligation"
    SECURITY = "security", "needed for security or fraud prevention"
    DISPROPORTIONATE = "disproportionate", "impossible or disproportionate effort"
    MANIFESTLY_UNFOUNDED = "manifestly_unfounded", "manifestly unfounded or excessive"
    WITHDRAWN = "withdrawn", "withdrawn by the requester"
    OTHER = "other"


class VerificationMethod(models.TextChoices):
    NOT_REQUIRED = "not_required", "not required (opt-out and limit requests)"
    WHATSAPP_CODE = "whatsapp_code", "one-time code sent to the WhatsApp number"
    MANUAL = "manual", "documented manual check"


class PrivacyRequestQuerySet(models.QuerySet):
    def delete(self):
        if self.filter(received_at__gt=retention_cutoff()).exists():
            raise LedgerImmutableError("Privacy request records are kept at least 24 months.")
        return super().delete()


def retention_cutoff():
    """Requests received after this moment are still within their retention period."""
    from datetime import timedelta

    from django.utils import timezone

    return timezone.now() - timedelta(days=settings.PRIVACY_RECORD_RETENTION_DAYS)


class PrivacyRequest(models.Model):
    """One consumer request under the CCPA/CPRA. Kept at least 24 months (PRIVACY_RECORD_RETENTION):
    what the regulations ask businesses to be able to show (date, nature, manner, date and nature of
    the response, basis for a denial) survives even the erasure of the person it was about; only the
    identifying fields are cleared then (`identity_erased_at`), the keyed `phone_hash` remains."""

    reference = models.CharField(max_length=16, unique=True, editable=False)
    kind = models.CharField(max_length=24, choices=PrivacyRequestKind.choices)
    channel = models.CharField("manner", max_length=16, choices=PrivacyRequestChannel.choices)
    status = models.CharField(
        max_length=24, choices=PrivacyRequestStatus.choices, default=PrivacyRequestStatus.RECEIVED
    )
    # Who the request is about. The phone number is how every app finds the person.
    phone_number = models.CharField(max_length=16, blank=True, help_text="E.164")
    phone_hash = models.CharField(max_length=64, db_index=True, editable=False)
    requester_name = models.CharField(max_length=200, blank=True)
    requester_email = models.EmailField(blank=True, help_text="Where notices and the response go.")
    details = models.TextField(blank=True, help_text="What the person asks for, in their words.")
    corrections = models.JSONField(
        default=dict, blank=True, help_text="Correct requests: field → corrected value."
    )
    contact_id = models.BigIntegerField(null=True, blank=True, help_text="messaging's contact, when known")
    # Authorized agents act for the consumer and must show written permission or a power of attorney.
    agent_name = models.CharField(max_length=200, blank=True)
    agent_email = models.EmailField(blank=True)
    agent_proof = models.FileField(upload_to="privacy/agent-proof/%Y/%m/", blank=True)
    agent_proof_sha256 = models.CharField(max_length=64, blank=True, editable=False)
    agent_proof_note = models.TextField(blank=True, help_text="What the proof is and how it was checked.")
    # The clocks, fixed at receipt by the rule in force (compliance.deadlines), with its version.
    received_at = models.DateTimeField(db_index=True)
    rule_version = models.CharField(max_length=32)
    acknowledge_due = models.DateField(null=True, blank=True)
    respond_due = models.DateField(db_index=True, help_text="The deadline in force (extended if extended).")
    original_respond_due = models.DateField()
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    extension_reason = models.TextField(blank=True)
    extended_at = models.DateTimeField(null=True, blank=True)
    # Identity verification (never pauses the clock).
    verification_method = models.CharField(max_length=16, choices=VerificationMethod.choices, blank=True)
    verification_note = models.TextField(blank=True)
    verified_at = models.DateTimeField(null=True, blank=True)
    verified_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    code_hash = models.CharField(max_length=64, blank=True, editable=False)
    code_expires_at = models.DateTimeField(null=True, blank=True, editable=False)
    code_attempts = models.PositiveSmallIntegerField(default=0, editable=False)
    # The response.
    responded_at = models.DateTimeField(null=True, blank=True)
    outcome = models.CharField(max_length=20, choices=PrivacyOutcome.choices, blank=True)
    response_summary = models.TextField(blank=True)
    denial_basis = models.CharField(max_length=24, choices=DenialBasis.choices, blank=True)
    denial_explanation = models.TextField(blank=True)
    handled_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    filed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="The staff member or API user who entered it; empty for the public page.",
    )
    identity_erased_at = models.DateTimeField(null=True, blank=True)
    erasure_queued_at = models.DateTimeField(
        null=True, blank=True, editable=False, help_text="When the erasure was handed to a background worker."
    )

    objects = PrivacyRequestQuerySet.as_manager()

    class Meta:
        ordering = ["respond_due", "received_at"]
        indexes = [models.Index(fields=["status", "respond_due"])]
        permissions = [
            ("fulfil_privacyrequest", "Can verify, extend, fulfil and deny privacy requests"),
            ("view_privacy_metrics", "Can view and export privacy request records and metrics"),
        ]

    def __str__(self) -> str:
        return f"{self.reference} ({self.get_kind_display()})"

    def delete(self, *args, **kwargs):
        if self.received_at > retention_cutoff():
            raise LedgerImmutableError("Privacy request records are kept at least 24 months.")
        return super().delete(*args, **kwargs)

    @property
    def is_closed(self) -> bool:
        return self.status == PrivacyRequestStatus.CLOSED

    @property
    def is_extended(self) -> bool:
        return self.extended_at is not None


class PrivacyRequestEvent(AppendOnlyModel):
    """The request's own history: every step, notice and download, with who and when. Details never
    hold the person's number (they are scrubbed), so erasure can leave this log whole."""

    class Action(models.TextChoices):
        FILED = "filed"
        ACKNOWLEDGED = "acknowledged"
        CODE_SENT = "code_sent", "verification code sent"
        CODE_FAILED = "code_failed", "verification code not accepted"
        VERIFIED = "verified"
        EXTENDED = "extended"
        NOTICE_SENT = "notice_sent", "notice sent"
        PACKAGE_DELIVERED = "package_delivered", "data package delivered"
        CORRECTED = "corrected"
        OPTED_OUT = "opted_out", "opted out"
        ERASURE_QUEUED = "erasure_queued", "erasure queued"
        ERASED = "erased"
        CLOSED = "closed"

    request = models.ForeignKey(PrivacyRequest, on_delete=models.PROTECT, related_name="events")
    action = models.CharField(max_length=24, choices=Action.choices)
    at = models.DateTimeField()
    user_id = models.IntegerField(null=True, blank=True)
    username = models.CharField(max_length=150, blank=True, help_text='Staff user, "requester" or "system".')
    detail = models.TextField(blank=True)

    class Meta:
        ordering = ["at", "id"]
        default_permissions = ("view",)

    def __str__(self) -> str:
        return f"{self.request.reference} {self.action} by {self.username}"


class DeletionCertificate(AppendOnlyModel):
    """What an erasure did: per store, how many rows were deleted or de-identified, when, and a SHA-256
    digest of the certificate's canonical JSON so a copy handed out can be checked against ours."""

    request = models.OneToOneField(PrivacyRequest, on_delete=models.PROTECT, related_name="certificate")
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField()
    body = models.JSONField(help_text="The certificate as issued (canonical JSON of this is `digest`).")
    digest = models.CharField(max_length=64, unique=True)

    class Meta:
        default_permissions = ("view",)

    def __str__(self) -> str:
        return f"deletion certificate {self.digest[:12]}… for {self.request.reference}"
