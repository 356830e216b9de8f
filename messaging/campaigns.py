"""Campaigns: who a campaign reaches, what each person's template parameters are, and the dry run that
says, before anyone approves it, how many will receive it and why everyone else will not.

The dry run asks the same compliance gate a real send asks, with facts built the way
`messaging.sending.message_facts` builds them, so its verdicts are the ones the fan-out will meet
(unless consent changes in between: the gate runs again at send time).
"""

import csv
import io
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import SimpleNamespace

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Count, Q, QuerySet
from django.utils import timezone
from phonenumbers import COUNTRY_CODE_TO_REGION_CODE

from compliance.gate import MessageFacts, Verdict, gate_check_many
from messaging.contact_csv import E164, FORMULA_TRIGGERS
from messaging.models import (
    Campaign,
    CampaignAudienceMember,
    CampaignDryRunReport,
    CampaignEvent,
    Contact,
    Message,
    MessageStatus,
)
from templates_app.models import ParameterFormat, TemplateStatus
from templates_app.rendering import RenderedTemplate, TemplateError, render_template, template_slots

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
    "invalid_parameter": "A value does not fit the template",
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

    @property
    def now(self) -> int:
        return self.will_receive - self.later

    @property
    def excluded_total(self) -> int:
        return sum(self.excluded.values())

    def excluded_by_reason(self) -> list[tuple[str, str, int]]:
        """(code, human label, count), most frequent first."""
        return [(code, REASON_LABELS.get(code, code), n) for code, n in self.excluded.most_common()]

    def summary(self) -> dict:
        """The counts, JSON-ready (a CampaignDryRunReport keeps them)."""
        return {
            "total": self.total,
            "will_receive": self.will_receive,
            "later": self.later,
            "earliest_later": self.earliest_later.isoformat() if self.earliest_later else None,
            "excluded": dict(self.excluded),
        }

    @classmethod
    def from_summary(cls, *, at: datetime, summary: dict) -> "CampaignDryRun":
        """The counts of a kept dry run."""
        earliest = summary.get("earliest_later")
        return cls(
            at=at,
            total=summary["total"],
            will_receive=summary["will_receive"],
            later=summary["later"],
            earliest_later=datetime.fromisoformat(earliest) if earliest else None,
            excluded=Counter(summary["excluded"]),
        )

    def _count(self, row: DryRunRow) -> None:
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


def campaign_check_parameters(campaign: Campaign) -> None:
    """The mapping fits the template (one item per slot) and the audience (columns the uploaded list
    has); ValidationError naming what to change otherwise."""
    slots = template_slots(campaign.template)
    mapping = campaign.template_parameters or []
    if len(mapping) != len(slots):
        expected = ", ".join(slot.label for slot in slots) or "none"
        raise ValidationError(
            "The template “%(name)s” needs %(expected_count)s value(s) (%(expected)s); the campaign maps "
            "%(given)s.",
            code="parameter_count",
            params={
                "name": campaign.template.name,
                "expected_count": len(slots),
                "expected": expected,
                "given": len(mapping),
            },
        )
    columns = [item["column"] for item in mapping if "column" in item]
    if not columns:
        return
    if campaign.audience_source != Campaign.AudienceSource.UPLOAD:
        raise ValidationError(
            "Parameters from list columns (%(columns)s) need an uploaded audience list.",
            code="column_without_upload",
            params={"columns": ", ".join(columns)},
        )
    available = set(campaign.audience_upload_summary.get("columns") or [])
    unknown = [c for c in columns if c not in available]
    if unknown:
        raise ValidationError(
            "The uploaded list has no column %(unknown)s (it has: %(available)s).",
            code="unknown_column",
            params={"unknown": ", ".join(unknown), "available": ", ".join(sorted(available)) or "none"},
        )


def campaign_audience(campaign: Campaign) -> QuerySet[Contact]:
    """The uploaded list's contacts, or contacts with any of the campaign's tags (everyone when it has
    none); in its locale if set."""
    contacts = Contact.objects.all()
    if campaign.audience_source == Campaign.AudienceSource.UPLOAD:
        listed = CampaignAudienceMember.objects.filter(campaign=campaign).values("contact_id")
        contacts = contacts.filter(pk__in=listed)
    else:
        tag_ids = list(campaign.audience_tags.values_list("pk", flat=True))
        if tag_ids:
            # A subquery rather than a join: a contact with two of the tags is still one recipient.
            tagged = Contact.tags.through.objects.filter(tag_id__in=tag_ids).values("contact_id")
            contacts = contacts.filter(pk__in=tagged)
    if campaign.audience_locale:
        contacts = contacts.filter(locale__iexact=campaign.audience_locale)
    return contacts.order_by("pk")


def campaign_parameters_for(campaign: Campaign, contact: Contact, values: dict | None = None) -> list[str]:
    """The template's values for one recipient, in slot order. Raises MissingParameter when a mapped
    contact field or list column is blank: sending "Hi ," is worse than not sending."""
    result = []
    for position, item in enumerate(campaign.template_parameters, start=1):
        if "field" in item:
            value, source = str(getattr(contact, item["field"]) or "").strip(), item["field"]
        elif "column" in item:
            value, source = str((values or {}).get(item["column"]) or "").strip(), f"column {item['column']}"
        else:
            result.append(item["text"])
            continue
        if not value:
            raise MissingParameter(f"Parameter {position} ({source}) is blank for this contact.")
        result.append(value)
    return result


def campaign_render_for(campaign: Campaign, contact: Contact, values: dict | None = None) -> RenderedTemplate:
    """The template message for one recipient (Meta's `template` object and the preview).
    Raises MissingParameter, or TemplateError when a value does not fit its slot."""
    template = campaign.template
    given = campaign_parameters_for(campaign, contact, values)
    slots = template_slots(template)
    named = template.parameter_format == ParameterFormat.NAMED
    header = None
    body: list | dict = {} if named else []
    buttons_component = next(
        (c for c in template.components or [] if str(c.get("type", "")).upper() == "BUTTONS"), {}
    )
    buttons: list = [None] * len(buttons_component.get("buttons") or [])  # filled by position
    for slot, value in zip(slots, given, strict=True):
        if slot.part == "header":
            if named and slot.name != "media":
                body[slot.name] = value
            else:
                header = value
        elif slot.part == "body":
            if named:
                body[slot.name] = value
            else:
                body.append(value)
        else:
            buttons[int(slot.name) - 1] = value
    return render_template(template, body=body, header=header, buttons=buttons or None)


def campaign_check_sendable(campaign: Campaign) -> None:
    """Refuse (ValidationError) what no recipient could receive: an unapproved template, an unusable
    sender, a parameter mapping that does not fit the template or the audience list."""
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
    campaign_check_parameters(campaign)


#: Outbound messages created and not with Meta yet. A campaign is not complete while any of its own
#: is; its frequency cap counts a person's as sent already, or two campaigns dispatched in the same
#: minutes would both pass it for the same person.
ON_THEIR_WAY = (MessageStatus.QUEUED, MessageStatus.DEFERRED, MessageStatus.SENDING, MessageStatus.HELD)


def marketing_sent_since(contact_ids, *, since: datetime) -> dict[int, int]:
    """Outbound marketing messages per contact sent since `since` or on their way, for many contacts in
    one grouped query (`contact_ids`: a list or a subquery)."""
    rows = (
        Message.objects.filter(
            Q(sent_at__gte=since) | Q(status__in=ON_THEIR_WAY),
            contact_id__in=contact_ids,
            direction=Message.Direction.OUTBOUND,
            template_category__iexact="MARKETING",
        )
        .values("contact_id")
        .annotate(n=Count("pk"))
        .order_by()
    )
    return {row["contact_id"]: row["n"] for row in rows}


@dataclass
class FrequencyCounts:
    """Marketing messages per contact in the account-wide cap's period (for the gate) and in the
    campaign's own period (for its cap)."""

    account: dict[int, int]
    campaign: dict[int, int]


def campaign_frequency_counts(campaign: Campaign, contact_ids, *, at: datetime) -> FrequencyCounts:
    if campaign.template.category.upper() != "MARKETING":
        return FrequencyCounts({}, {})
    account_days = settings.CONSENT_FREQUENCY_CAP_DAYS
    account = marketing_sent_since(contact_ids, since=at - timedelta(days=account_days))
    if campaign.frequency_cap_count is None:
        return FrequencyCounts(account, {})
    if campaign.frequency_cap_days == account_days:
        return FrequencyCounts(account, account)
    own = marketing_sent_since(contact_ids, since=at - timedelta(days=campaign.frequency_cap_days))
    return FrequencyCounts(account, own)


def _is_sendable_number(phone: str) -> bool:
    """A well-formed E.164 number of a country that exists. Every way into the contacts table validates
    numbers fully (messaging.phone.phone_normalize, ~0.1 ms each, too slow for 100,000 recipients per
    dry run); the audience checks only catch rows that got in another way (old imports, direct SQL)."""
    if not E164.fullmatch(phone or ""):
        return False
    # Country calling codes are prefix-free: at most one of the first 1, 2 or 3 digits is one.
    return any(int(phone[1 : 1 + n]) in COUNTRY_CODE_TO_REGION_CODE for n in (1, 2, 3))


@dataclass(frozen=True)
class Checked:
    """One recipient's verdict and, unless excluded, their message."""

    row: DryRunRow
    rendered: RenderedTemplate | None = None


def campaign_check_recipients(
    campaign: Campaign,
    contacts: list[Contact],
    *,
    values: dict[int, dict],
    counts: FrequencyCounts,
    at: datetime,
) -> list[Checked]:
    """Verdicts for a batch of recipients, in order: an invalid number, the compliance gate (the same
    facts `message_facts` gives it at send time), the campaign's own frequency cap, values the
    template needs. Two queries for the whole batch (the gate's)."""
    template = campaign.template
    valid = [c for c in contacts if _is_sendable_number(c.phone_number)]
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
            marketing_sent_recently=counts.account.get(contact.pk, 0),
        )
        for contact in valid
    ]
    decisions = dict(zip((c.pk for c in valid), gate_check_many(facts), strict=True)) if facts else {}
    cap = campaign.frequency_cap_count
    checked = []
    for contact in contacts:
        decision = decisions.get(contact.pk)

        def excluded(reason: str, detail: str, contact=contact) -> Checked:
            return Checked(DryRunRow(contact.pk, contact.phone_number, Outcome.EXCLUDED, reason, detail))

        if decision is None:
            checked.append(excluded("invalid_number", "Not a valid phone number."))
            continue
        if decision.verdict is Verdict.DENY:
            checked.append(excluded(decision.code, decision.detail))
            continue
        sent = counts.campaign.get(contact.pk, 0)
        if cap is not None and sent >= cap:
            checked.append(
                excluded(
                    "frequency_cap",
                    f"Already {sent} marketing messages in {campaign.frequency_cap_days} days "
                    f"(this campaign's cap: {cap}).",
                )
            )
            continue
        try:
            rendered = campaign_render_for(campaign, contact, values.get(contact.pk))
        except MissingParameter as exc:
            checked.append(excluded("missing_parameter", str(exc)))
            continue
        except TemplateError as exc:
            checked.append(excluded("invalid_parameter", exc.detail[:255]))
            continue
        if decision.verdict is Verdict.DEFER:
            row = DryRunRow(
                contact.pk,
                contact.phone_number,
                Outcome.LATER,
                decision.code,
                decision.detail,
                decision.defer_until,
            )
        else:
            row = DryRunRow(contact.pk, contact.phone_number, Outcome.SEND)
        checked.append(Checked(row, rendered))
    return checked


#: The Contact columns the checks read (plus the fields the campaign's parameters map).
CHECK_FIELDS = ("id", "phone_number", "timezone", "last_inbound_at")


def campaign_check_fields(campaign: Campaign) -> list[str]:
    return [*CHECK_FIELDS, *{item["field"] for item in campaign.template_parameters if "field" in item}]


def campaign_listed_values(campaign: Campaign, contact_ids: list[int]) -> dict[int, dict]:
    """The uploaded list's columns for these contacts (empty for tag audiences)."""
    if campaign.audience_source != Campaign.AudienceSource.UPLOAD:
        return {}
    rows = CampaignAudienceMember.objects.filter(campaign=campaign, contact_id__in=contact_ids)
    return dict(rows.values_list("contact_id", "values"))


def campaign_dry_run(campaign: Campaign, *, at: datetime | None = None) -> CampaignDryRun:
    """What would happen if the campaign went out at `at` (default: its schedule, or now if that is
    past or unset): how many receive it now, how many later (quiet hours), how many not and why. The
    counts only: each person's row is campaign_dry_run_rows' (a million people need not be held).

    Raises ValidationError when nobody could receive it (campaign_check_sendable). Queries: a fixed
    handful plus three per DRY_RUN_CHUNK_SIZE contacts, however large the audience.
    """
    at = dry_run_time(campaign, at)
    result = CampaignDryRun(at=at)
    for row in campaign_dry_run_rows(campaign, at=at):
        result._count(row)
    return result


def dry_run_time(campaign: Campaign, at: datetime | None = None) -> datetime:
    """`at`, or when the campaign would go out if approved now: its schedule, or now if that is past."""
    now = timezone.now()
    return at or max(campaign.scheduled_at or now, now)


def campaign_dry_run_rows(campaign: Campaign, *, at: datetime) -> Iterator[DryRunRow]:
    """Each person of the audience and what would become of them at `at`, read and checked
    DRY_RUN_CHUNK_SIZE at a time (a CSV streams them as they come). Raises ValidationError at once,
    before any row, when nobody could receive the campaign."""
    campaign_check_sendable(campaign)
    return _dry_run_rows(campaign, at)


def _dry_run_rows(campaign: Campaign, at: datetime) -> Iterator[DryRunRow]:
    audience = campaign_audience(campaign)
    counts = campaign_frequency_counts(campaign, audience.values("pk"), at=at)

    def check(chunk: list[SimpleNamespace]) -> Iterator[DryRunRow]:
        values = campaign_listed_values(campaign, [c.pk for c in chunk])
        for checked in campaign_check_recipients(campaign, chunk, values=values, counts=counts, at=at):
            yield checked.row

    # Plain rows, not model instances: a third of the time at 100,000 recipients went to building
    # Contact objects the checks only read a few attributes of.
    chunk: list[SimpleNamespace] = []
    for row in audience.values(*campaign_check_fields(campaign)).iterator(chunk_size=DRY_RUN_CHUNK_SIZE):
        chunk.append(SimpleNamespace(pk=row["id"], **row))
        if len(chunk) == DRY_RUN_CHUNK_SIZE:
            yield from check(chunk)
            chunk = []
    if chunk:
        yield from check(chunk)


CSV_HEADER = ("phone_number", "outcome", "reason", "detail", "send_at")


def csv_cell(value: str) -> str:
    # Spreadsheets run cells starting with = + - @ as formulas; E.164 numbers are validated digits.
    if E164.fullmatch(value):
        return value
    return "'" + value if value.startswith(FORMULA_TRIGGERS) else value


def campaign_dry_run_csv(
    rows: Iterable[DryRunRow], *, at: datetime, lines_per_chunk: int = 500
) -> Iterator[str]:
    """Dry-run rows as CSV text chunks of whole lines (header first), for a StreamingHttpResponse.
    `send_at` is when the person would receive it (ISO 8601, UTC; `at` unless deferred), blank when
    excluded."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_HEADER)
    for count, row in enumerate(rows, start=1):
        if row.outcome == Outcome.EXCLUDED:
            send_at = ""
        else:
            send_at = (row.defer_until or at).isoformat(timespec="seconds")
        writer.writerow([csv_cell(row.phone_number), row.outcome, row.reason, csv_cell(row.detail), send_at])
        if count % lines_per_chunk == 0:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


# --- Dry runs in a worker -------------------------------------------------------------------------

#: A dry run still "running" this long after it was asked for was lost with its worker: another may
#: start (a million people take a minute or two).
DRY_RUN_LOST_AFTER = timedelta(minutes=15)


def campaign_dry_run_request(*, campaign: Campaign, user) -> CampaignDryRunReport:
    """Have the campaign's dry run worked out in a worker (without a broker, right after this
    commits), unless one is under way already: two clicks start one. Refuses at once (ValidationError)
    what the worker would refuse."""
    with transaction.atomic():
        campaign = campaign_locked(campaign.pk)
        running = campaign.dry_runs.filter(
            status=CampaignDryRunReport.Status.RUNNING,
            requested_at__gte=timezone.now() - DRY_RUN_LOST_AFTER,
        ).first()
        if running is not None:
            return running
        campaign_check_sendable(campaign)
        report = CampaignDryRunReport.objects.create(campaign=campaign, requested_by=user)
        transaction.on_commit(lambda: _dry_run_later(report.pk))
    return report


def _dry_run_later(report_id: int) -> None:
    from messaging.tasks import campaign_dry_run_report as task

    task.delay(report_id)


def campaign_dry_run_report(report_id: int) -> CampaignDryRunReport:
    """Work out a requested dry run and keep its counts (the worker's part); a report already
    finished is left as it is (a task delivered twice; two deliveries at once may both work it
    out, to the same counts: it only reads)."""
    report = CampaignDryRunReport.objects.select_related("campaign__template", "campaign__sender").get(
        pk=report_id
    )
    if report.status != CampaignDryRunReport.Status.RUNNING:
        return report
    unexpected = None
    try:
        dry_run = campaign_dry_run(report.campaign)
    except ValidationError as exc:
        report.status, report.error = CampaignDryRunReport.Status.FAILED, " ".join(exc.messages)
    except Exception as exc:  # the page must not say "running" for ever; the worker logs the rest
        report.status = CampaignDryRunReport.Status.FAILED
        report.error = "The dry run stopped on an unexpected error (see the worker's log); run it again."
        unexpected = exc
    else:
        report.status, report.at, report.summary = (
            CampaignDryRunReport.Status.DONE,
            dry_run.at,
            dry_run.summary(),
        )
    report.finished_at = timezone.now()
    report.save(update_fields=["status", "error", "at", "summary", "finished_at"])
    if unexpected is not None:
        raise unexpected
    return report


# --- Approval: draft → pending_approval → approved, or back to draft with a reason ----------------


def campaign_locked(campaign_id: int) -> Campaign:
    """The campaign's row, locked until the transaction ends, with its current status: of two people
    (or a person and a dispatch step) acting on it at once, the second sees what the first did. Only
    the campaign's row is locked, not its template's or sender's."""
    return (
        Campaign.objects.select_for_update(of=("self",))
        .select_related("template", "sender", "approved_by")
        .get(pk=campaign_id)
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
    campaign = campaign_locked(campaign.pk)
    if campaign.status != Campaign.Status.DRAFT:
        raise ValidationError("Only drafts can be submitted for approval.", code="not_a_draft")
    # Stops at the first person who would receive it (a chunk of the audience, not all of it); also
    # raises campaign_check_sendable's errors.
    rows = campaign_dry_run_rows(campaign, at=dry_run_time(campaign))
    if all(row.outcome == Outcome.EXCLUDED for row in rows):
        raise ValidationError(
            "Nobody in this campaign's audience would receive it (see the dry run).",
            code="empty_audience",
        )
    campaign.status = Campaign.Status.PENDING_APPROVAL
    campaign.submitted_by, campaign.submitted_at = user, timezone.now()
    # A new submission: the previous rejection has been addressed (or argued with).
    campaign.rejection_reason = ""
    campaign.save(update_fields=["status", "submitted_by", "submitted_at", "rejection_reason", "updated_at"])
    campaign_event(campaign, "submitted", user=user)
    return campaign


@transaction.atomic
def campaign_approve(*, campaign: Campaign, user) -> Campaign:
    """A second person approves the campaign as submitted. Nobody approves their own."""
    campaign = campaign_locked(campaign.pk)
    _refuse_unless_approver(campaign, user)
    _refuse_own(campaign, user, action="approve")
    # The template or sender may have been paused since it was submitted.
    campaign_check_sendable(campaign)
    campaign.status = Campaign.Status.APPROVED
    campaign.approved_by, campaign.approved_at = user, timezone.now()
    campaign.save(update_fields=["status", "approved_by", "approved_at", "updated_at"])
    campaign_event(campaign, "approved", user=user)
    if campaign.scheduled_at is None or campaign.scheduled_at <= campaign.approved_at:
        # Now: the fan-out runs in a worker (or, without a broker, right after this commits). Later:
        # the periodic dispatcher starts it when its time comes.
        transaction.on_commit(lambda: _start_now(campaign.pk))
    return campaign


def _start_now(campaign_id: int) -> None:
    from messaging.tasks import start_campaign

    start_campaign.delay(campaign_id)


def campaign_event(campaign: Campaign, action: str, *, user=None, detail: str = "") -> CampaignEvent:
    """One line of the campaign's history (submitted, rejected and why, approved, started, ...)."""
    return CampaignEvent.objects.create(campaign=campaign, action=action, user=user, detail=detail)


@transaction.atomic
def campaign_reject(*, campaign: Campaign, user, reason: str) -> Campaign:
    """Send the campaign back to draft with the reason, for its author to fix and submit again."""
    campaign = campaign_locked(campaign.pk)
    _refuse_unless_approver(campaign, user)
    _refuse_own(campaign, user, action="reject")
    if not reason.strip():
        raise ValidationError("Say why the campaign is rejected.", code="reason_required")
    campaign.status = Campaign.Status.DRAFT
    campaign.rejection_reason = reason.strip()
    campaign.submitted_by, campaign.submitted_at = None, None
    campaign.save(update_fields=["status", "rejection_reason", "submitted_by", "submitted_at", "updated_at"])
    campaign_event(campaign, "rejected", user=user, detail=campaign.rejection_reason)
    return campaign
