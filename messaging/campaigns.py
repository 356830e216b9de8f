"""Campaigns: who a campaign reaches, what each person's template parameters are, and the dry run that
says, before anyone approves it, how many will receive it and why everyone else will not.

The dry run asks the same compliance gate a real send asks, with facts built the way
`messaging.sending.message_facts` builds them, so its verdicts are the ones the fan-out will meet
(unless consent changes in between: the gate runs again at send time).
"""

import csv
import io
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Count, QuerySet
from django.utils import timezone

from compliance.gate import MessageFacts, Verdict, gate_check_many
from messaging.contact_csv import E164, FORMULA_TRIGGERS
from messaging.models import Campaign, Contact, Message
from messaging.phone import phone_normalize
from templates_app.models import TemplateStatus

#: Contacts checked by the gate per batch (two queries each): bounded memory and query size.
DRY_RUN_CHUNK_SIZE = 2000

APPROVE_CAMPAIGN = "messaging.approve_campaign"

#: Human labels for the reason codes a dry run reports (the gate's codes plus our own).
REASON_LABELS = {
    "no_consent": "No consent for this kind of message",
    "opted_out": "Opted out",
    "suppressed": "On the suppression list",
    "invalid_number": "Invalid phone number",
    "frequency_cap": "Frequency cap reached",
    "template_paused": "Template paused by Meta",
    "missing_parameter": "Missing a value for a template parameter",
    "quiet_hours": "Quiet hours: sent later",
}


class Outcome:
    SEND = "send"
    LATER = "later"
    EXCLUDED = "excluded"


@dataclass(frozen=True)
class DryRunRow:
    contact_id: int
    phone_number: str
    outcome: str  # Outcome.SEND / LATER / EXCLUDED
    reason: str = ""  # a REASON_LABELS code, "" when sent now
    detail: str = ""
    defer_until: datetime | None = None


@dataclass
class CampaignDryRun:
    """`total` = `will_receive` + excluded; `later` (quiet hours) is the part of `will_receive` that
    waits until `earliest_later` or after."""

    at: datetime
    total: int = 0
    will_receive: int = 0
    later: int = 0
    earliest_later: datetime | None = None
    excluded: Counter = field(default_factory=Counter)
    rows: list[DryRunRow] = field(default_factory=list)

    @property
    def now(self) -> int:
        return self.will_receive - self.later

    @property
    def excluded_total(self) -> int:
        return sum(self.excluded.values())

    def excluded_by_reason(self) -> list[tuple[str, str, int]]:
        """(code, human label, count), most frequent first."""
        return [(code, REASON_LABELS.get(code, code), n) for code, n in self.excluded.most_common()]

    def _add(self, row: DryRunRow) -> None:
        self.rows.append(row)
        self.total += 1
        if row.outcome == Outcome.EXCLUDED:
            self.excluded[row.reason] += 1
            return
        self.will_receive += 1
        if row.outcome == Outcome.LATER:
            self.later += 1
            if self.earliest_later is None or row.defer_until < self.earliest_later:
                self.earliest_later = row.defer_until


class MissingParameter(Exception):
    pass


def campaign_audience(campaign: Campaign) -> QuerySet[Contact]:
    """Contacts with any of the campaign's tags (everyone when it has none), in its locale if set."""
    contacts = Contact.objects.all()
    tag_ids = list(campaign.audience_tags.values_list("pk", flat=True))
    if tag_ids:
        # A subquery rather than a join: a contact with two of the tags is still one recipient.
        tagged = Contact.tags.through.objects.filter(tag_id__in=tag_ids).values("contact_id")
        contacts = contacts.filter(pk__in=tagged)
    if campaign.audience_locale:
        contacts = contacts.filter(locale__iexact=campaign.audience_locale)
    return contacts.order_by("pk")


def campaign_parameters_for(campaign: Campaign, contact: Contact) -> list[str]:
    """The template parameters for one recipient. Raises MissingParameter when a mapped contact field
    is blank: sending "Hi ," is worse than not sending."""
    values = []
    for position, item in enumerate(campaign.template_parameters, start=1):
        if "field" in item:
            value = str(getattr(contact, item["field"]) or "").strip()
            if not value:
                raise MissingParameter(f"Parameter {position} ({item['field']}) is blank for this contact.")
            values.append(value)
        else:
            values.append(item["text"])
    return values


def campaign_check_sendable(campaign: Campaign) -> None:
    """Refuse (ValidationError) what no recipient could receive: an unapproved template, an unusable
    sender."""
    template, sender = campaign.template, campaign.sender
    if template.status != TemplateStatus.APPROVED:
        raise ValidationError(
            "The template “%(name)s” is %(status)s, not approved by Meta: no one can receive it.",
            code="template_not_approved",
            params={"name": template.name, "status": template.get_status_display()},
        )
    if not sender.is_active or sender.paused_at is not None:
        raise ValidationError(
            "The sender “%(sender)s” is %(state)s: choose another one or fix it first.",
            code="sender_unavailable",
            params={"sender": sender.label, "state": "paused" if sender.paused_at else "inactive"},
        )


def _marketing_sent_recently(contacts: QuerySet[Contact], *, at: datetime) -> dict[int, int]:
    """Outbound marketing messages per contact within the frequency cap's period, for a whole
    audience in one grouped query (the same filter `message_facts` uses for one message)."""
    rows = (
        Message.objects.filter(
            contact_id__in=contacts.values("pk"),
            direction=Message.Direction.OUTBOUND,
            template_category__iexact="MARKETING",
            sent_at__gte=at - timedelta(days=settings.CONSENT_FREQUENCY_CAP_DAYS),
        )
        .values("contact_id")
        .annotate(n=Count("pk"))
        .order_by()
    )
    return {row["contact_id"]: row["n"] for row in rows}


def _is_valid_number(phone: str) -> bool:
    try:
        return phone_normalize(phone) == phone
    except ValidationError:
        return False


def campaign_dry_run(campaign: Campaign, *, at: datetime | None = None) -> CampaignDryRun:
    """What would happen if the campaign went out at `at` (default: its schedule, or now if that is
    past or unset): who receives it now, who later (quiet hours), who not and why.

    Raises ValidationError when nobody could receive it (campaign_check_sendable). Queries: a fixed
    handful plus two per DRY_RUN_CHUNK_SIZE contacts, however large the audience.
    """
    campaign_check_sendable(campaign)
    now = timezone.now()
    at = at or max(campaign.scheduled_at or now, now)
    template = campaign.template
    is_marketing = template.category.upper() == "MARKETING"
    audience = campaign_audience(campaign)
    recent = _marketing_sent_recently(audience, at=at) if is_marketing else {}
    result = CampaignDryRun(at=at)

    chunk: list[Contact] = []
    fields = [
        "pk",
        "last_inbound_at",
        *{item["field"] for item in campaign.template_parameters if "field" in item},
    ]
    for contact in audience.only(*fields, "phone_number", "timezone").iterator(chunk_size=DRY_RUN_CHUNK_SIZE):
        chunk.append(contact)
        if len(chunk) == DRY_RUN_CHUNK_SIZE:
            _check_chunk(campaign, chunk, recent=recent, at=at, into=result)
            chunk = []
    if chunk:
        _check_chunk(campaign, chunk, recent=recent, at=at, into=result)
    return result


def _check_chunk(
    campaign: Campaign, contacts: list[Contact], *, recent: dict[int, int], at: datetime, into: CampaignDryRun
) -> None:
    template = campaign.template
    valid = [c for c in contacts if _is_valid_number(c.phone_number)]
    facts = [
        MessageFacts(
            contact_id=contact.pk,
            phone_number=contact.phone_number,
            at=at,
            kind="template",
            template_category=template.category,
            template_status=template.status,
            timezone=contact.timezone,
            last_inbound_at=contact.last_inbound_at,
            marketing_sent_recently=recent.get(contact.pk, 0),
        )
        for contact in valid
    ]
    decisions = dict(zip((c.pk for c in valid), gate_check_many(facts), strict=True)) if facts else {}
    for contact in contacts:
        decision = decisions.get(contact.pk)
        row = DryRunRow(contact.pk, contact.phone_number, Outcome.SEND)
        if decision is None:
            row = DryRunRow(
                contact.pk,
                contact.phone_number,
                Outcome.EXCLUDED,
                "invalid_number",
                "Not a valid phone number.",
            )
        elif decision.verdict is Verdict.DENY:
            row = DryRunRow(
                contact.pk, contact.phone_number, Outcome.EXCLUDED, decision.code, decision.detail
            )
        else:
            try:
                campaign_parameters_for(campaign, contact)
            except MissingParameter as exc:
                row = DryRunRow(
                    contact.pk, contact.phone_number, Outcome.EXCLUDED, "missing_parameter", str(exc)
                )
            else:
                if decision.verdict is Verdict.DEFER:
                    row = DryRunRow(
                        contact.pk,
                        contact.phone_number,
                        Outcome.LATER,
                        decision.code,
                        decision.detail,
                        decision.defer_until,
                    )
        into._add(row)


CSV_HEADER = ("phone_number", "outcome", "reason", "detail", "send_at")


def _cell(value: str) -> str:
    # Spreadsheets run cells starting with = + - @ as formulas; E.164 numbers are validated digits.
    if E164.fullmatch(value):
        return value
    return "'" + value if value.startswith(FORMULA_TRIGGERS) else value


def campaign_dry_run_csv(dry_run: CampaignDryRun, *, lines_per_chunk: int = 500) -> Iterator[str]:
    """The dry run's rows as CSV text chunks of whole lines (header first), for a StreamingHttpResponse.
    `send_at` is when the person would receive it (ISO 8601, UTC), blank when excluded."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_HEADER)
    for count, row in enumerate(dry_run.rows, start=1):
        if row.outcome == Outcome.EXCLUDED:
            send_at = ""
        else:
            send_at = (row.defer_until or dry_run.at).isoformat(timespec="seconds")
        writer.writerow([_cell(row.phone_number), row.outcome, row.reason, _cell(row.detail), send_at])
        if count % lines_per_chunk == 0:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


# --- Approval: draft → pending_approval → approved, or back to draft with a reason ----------------


def _locked(campaign: Campaign) -> Campaign:
    """The campaign's row, locked until the transaction ends, with its current status: of two people
    acting on it at once, the second sees what the first did. Only the campaign's row is locked, not
    its template's or sender's."""
    return (
        Campaign.objects.select_for_update(of=("self",))
        .select_related("template", "sender")
        .get(pk=campaign.pk)
    )


def _refuse_own(campaign: Campaign, user, *, action: str) -> None:
    # The author and whoever submitted it are both "the first person": neither can be the second.
    if user.pk in {campaign.created_by_id, campaign.submitted_by_id}:
        raise ValidationError(
            "You cannot %(action)s a campaign you wrote or submitted; ask a colleague.",
            code="own_campaign",
            params={"action": action},
        )


def _refuse_unless_approver(campaign: Campaign, user) -> None:
    if campaign.status != Campaign.Status.PENDING_APPROVAL:
        raise ValidationError(
            "This campaign is not waiting for approval (it is %(status)s).",
            code="not_pending",
            params={"status": campaign.get_status_display().lower()},
        )
    if not user.has_perm(APPROVE_CAMPAIGN):
        raise ValidationError("You are not allowed to approve or reject campaigns.", code="not_allowed")


@transaction.atomic
def campaign_submit(*, campaign: Campaign, user) -> Campaign:
    """Ask a second person to approve the draft. Refused when the dry run says nobody would receive
    it: an approver should never be asked to approve a campaign that sends nothing."""
    campaign = _locked(campaign)
    if campaign.status != Campaign.Status.DRAFT:
        raise ValidationError("Only drafts can be submitted for approval.", code="not_a_draft")
    if campaign_dry_run(campaign).will_receive == 0:  # also raises campaign_check_sendable's errors
        raise ValidationError(
            "Nobody in this campaign's audience would receive it (see the dry run).",
            code="empty_audience",
        )
    campaign.status = Campaign.Status.PENDING_APPROVAL
    campaign.submitted_by, campaign.submitted_at = user, timezone.now()
    # A new submission: the previous rejection has been addressed (or argued with).
    campaign.rejection_reason = ""
    campaign.save(update_fields=["status", "submitted_by", "submitted_at", "rejection_reason", "updated_at"])
    return campaign


@transaction.atomic
def campaign_approve(*, campaign: Campaign, user) -> Campaign:
    """A second person approves the campaign as submitted. Nobody approves their own."""
    campaign = _locked(campaign)
    _refuse_unless_approver(campaign, user)
    _refuse_own(campaign, user, action="approve")
    # The template or sender may have been paused since it was submitted.
    campaign_check_sendable(campaign)
    campaign.status = Campaign.Status.APPROVED
    campaign.approved_by, campaign.approved_at = user, timezone.now()
    campaign.save(update_fields=["status", "approved_by", "approved_at", "updated_at"])
    return campaign


@transaction.atomic
def campaign_reject(*, campaign: Campaign, user, reason: str) -> Campaign:
    """Send the campaign back to draft with the reason, for its author to fix and submit again."""
    campaign = _locked(campaign)
    _refuse_unless_approver(campaign, user)
    _refuse_own(campaign, user, action="reject")
    if not reason.strip():
        raise ValidationError("Say why the campaign is rejected.", code="reason_required")
    campaign.status = Campaign.Status.DRAFT
    campaign.rejection_reason = reason.strip()
    campaign.submitted_by, campaign.submitted_at = None, None
    campaign.save(update_fields=["status", "rejection_reason", "submitted_by", "submitted_at", "updated_at"])
    return campaign
