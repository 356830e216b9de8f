"""What a campaign has done so far: its progress (polled by the admin's progress bar), its totals
(sent, delivered, read, failed by Meta's error code, cost by pricing category) and the per-recipient
results as CSV. Fixed queries per call, whatever the campaign's size (two GROUP BYs for progress)."""

import csv
import io
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field

from django.db.models import Count, Max

from messaging.campaigns import ON_THEIR_WAY, REASON_LABELS, csv_cell
from messaging.dashboard import Cost, FailureCode, cost_from_counts, failure_codes
from messaging.models import Campaign, CampaignRecipient, Message, MessageStatus

#: Message statuses that mean "dispatch is over for this recipient" (with Meta, or settled without).
SETTLED = frozenset(
    {
        MessageStatus.SENT,
        MessageStatus.DELIVERED,
        MessageStatus.READ,
        MessageStatus.PLAYED,
        MessageStatus.UNCONFIRMED,
        MessageStatus.FAILED,
        MessageStatus.BLOCKED,
        MessageStatus.CANCELLED,
    }
)
REACHED_SENT = (MessageStatus.SENT, MessageStatus.DELIVERED, MessageStatus.READ, MessageStatus.PLAYED)
REACHED_DELIVERED = (MessageStatus.DELIVERED, MessageStatus.READ, MessageStatus.PLAYED)
REACHED_READ = (MessageStatus.READ, MessageStatus.PLAYED)


@dataclass
class CampaignProgress:
    status: str
    total: int  # recipients (0 until the fan-out)
    pending: int = 0  # not dispatched yet
    excluded: dict[str, int] = field(default_factory=dict)  # reason → recipients
    cancelled_recipients: int = 0
    messages: dict[str, int] = field(default_factory=dict)  # message status → count

    def _count(self, statuses) -> int:
        return sum(self.messages.get(s, 0) for s in statuses)

    @property
    def excluded_total(self) -> int:
        return sum(self.excluded.values())

    @property
    def sent(self) -> int:
        """Reached Meta (sent, and beyond)."""
        return self._count(REACHED_SENT)

    @property
    def delivered(self) -> int:
        return self._count(REACHED_DELIVERED)

    @property
    def read(self) -> int:
        return self._count(REACHED_READ)

    @property
    def failed(self) -> int:
        return self._count((MessageStatus.FAILED, MessageStatus.BLOCKED))

    @property
    def waiting(self) -> int:
        """Messages created but not with Meta yet: queued, deferred (quiet hours), sending, held."""
        return self._count(ON_THEIR_WAY)

    @property
    def done(self) -> int:
        """Recipients whose dispatch is over: excluded, cancelled, or their message settled."""
        return self.excluded_total + self.cancelled_recipients + self._count(SETTLED)

    @property
    def percent(self) -> int:
        if self.total == 0:
            return 100 if self.status in (Campaign.Status.COMPLETED, Campaign.Status.CANCELLED) else 0
        return min(100, self.done * 100 // self.total)

    def as_json(self) -> dict:
        return {
            **asdict(self),
            "excluded_total": self.excluded_total,
            "sent": self.sent,
            "delivered": self.delivered,
            "read": self.read,
            "failed": self.failed,
            "waiting": self.waiting,
            "done": self.done,
            "percent": self.percent,
        }


def campaign_progress(campaign: Campaign) -> CampaignProgress:
    """Where the campaign stands, from its recipients and its messages (two GROUP BY queries)."""
    progress = _recipients_progress(campaign)
    messages = Message.objects.filter(campaign=campaign).values("status").annotate(n=Count("*")).order_by()
    progress.messages = {row["status"]: row["n"] for row in messages}
    _keep_snapshot(campaign, progress)
    return progress


def _recipients_progress(campaign: Campaign) -> CampaignProgress:
    """The progress as far as the recipients tell it (pending, excluded, cancelled): one GROUP BY."""
    progress = CampaignProgress(status=campaign.status, total=campaign.recipients_total)
    recipients = (
        CampaignRecipient.objects.filter(campaign=campaign)
        .exclude(status=CampaignRecipient.Status.QUEUED)
        .values("status", "reason")
        .annotate(n=Count("pk"))
        .order_by()
    )
    for row in recipients:
        if row["status"] == CampaignRecipient.Status.PENDING:
            progress.pending += row["n"]
        elif row["status"] == CampaignRecipient.Status.EXCLUDED:
            progress.excluded[row["reason"]] = progress.excluded.get(row["reason"], 0) + row["n"]
        else:
            progress.cancelled_recipients += row["n"]
    return progress


def _keep_snapshot(campaign: Campaign, progress: CampaignProgress) -> None:
    if progress.percent != campaign.progress_percent:
        # The list's snapshot (one small UPDATE, only when it moved).
        campaign.progress_percent = progress.percent
        Campaign.objects.filter(pk=campaign.pk).update(progress_percent=progress.percent)


@dataclass(frozen=True)
class CampaignTotals:
    progress: CampaignProgress
    failures: list[FailureCode]  # failed or blocked messages by error code, most frequent first
    cost: Cost
    excluded: list[tuple[str, str, int]]  # (reason code, label, recipients), most frequent first


def campaign_totals(campaign: Campaign) -> CampaignTotals:
    """The progress, failures by error code and cost by pricing category. The campaign's messages are
    read once, grouped by all four of status, error code, pricing category and billable (a few dozen
    groups): three GROUP BYs, one per figure, read a 100,000-message campaign three times (issue #8:
    its page under 300 ms)."""
    progress = _recipients_progress(campaign)
    groups = (
        Message.objects.filter(campaign=campaign)
        .values("status", "error_code", "pricing_category", "billable")
        .annotate(n=Count("*"), title=Max("error_title"))
        .order_by()
    )
    failures: list[tuple[str, str, int]] = []
    billable: dict[str, int] = {}
    for row in groups:
        progress.messages[row["status"]] = progress.messages.get(row["status"], 0) + row["n"]
        if row["status"] in (MessageStatus.FAILED, MessageStatus.BLOCKED):
            failures.append((row["error_code"], row["title"] or "", row["n"]))
        if row["billable"]:
            billable[row["pricing_category"]] = billable.get(row["pricing_category"], 0) + row["n"]
    _keep_snapshot(campaign, progress)
    excluded = sorted(progress.excluded.items(), key=lambda item: (-item[1], item[0]))
    return CampaignTotals(
        progress=progress,
        failures=failure_codes(failures),
        cost=cost_from_counts(billable),
        excluded=[(code, REASON_LABELS.get(code, code), n) for code, n in excluded],
    )


RESULTS_HEADER = (
    "phone_number",
    "recipient_status",
    "reason",
    "detail",
    "message_id",
    "message_status",
    "error_code",
    "error_title",
    "sent_at",
    "delivered_at",
    "read_at",
    "failed_at",
    "pricing_category",
)


def campaign_results_csv(campaign: Campaign, *, chunk_size: int = 2000) -> Iterator[str]:
    """Every recipient and what became of them, as CSV text chunks (header first) for a streaming
    response; read in keyset pages so a 100,000-recipient campaign never sits in memory."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(RESULTS_HEADER)
    yield buffer.getvalue()
    last_id = 0
    while True:
        page = list(
            CampaignRecipient.objects.filter(campaign=campaign, pk__gt=last_id)
            .select_related("contact", "message")
            .only(
                "id",
                "status",
                "reason",
                "detail",
                "contact__phone_number",
                *(
                    f"message__{name}"
                    for name in (
                        "id",
                        "status",
                        "error_code",
                        "error_title",
                        "sent_at",
                        "delivered_at",
                        "read_at",
                        "failed_at",
                        "pricing_category",
                    )
                ),
            )
            .order_by("pk")[:chunk_size]
        )
        if not page:
            return
        buffer.seek(0)
        buffer.truncate()
        for recipient in page:
            message = recipient.message

            def when(name: str, message=message) -> str:
                value = getattr(message, name) if message else None
                return value.isoformat(timespec="seconds") if value else ""

            writer.writerow(
                [
                    csv_cell(recipient.contact.phone_number),
                    recipient.status,
                    recipient.reason,
                    csv_cell(recipient.detail),
                    message.pk if message else "",
                    message.status if message else "",
                    csv_cell(message.error_code) if message else "",
                    csv_cell(message.error_title) if message else "",
                    when("sent_at"),
                    when("delivered_at"),
                    when("read_at"),
                    when("failed_at"),
                    csv_cell(message.pricing_category) if message else "",
                ]
            )
        yield buffer.getvalue()
        last_id = page[-1].pk
