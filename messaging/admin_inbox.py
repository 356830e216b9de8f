"""The receiving side in the admin: the webhook inbox (every delivery as received, what it produced, replay),
Meta's alerts (acknowledge), and per contact the conversation (both directions in one thread, the
24-hour window, a reply box) plus the list of people waiting for our answer.

Imported at the end of messaging/admin.py; ContactAdmin mixes in `ContactInboxMixin`. Replies go through
messaging.outbound.message_compose (approval rules apply); replays through webhook_event_process (safe to
repeat). The selectors at the top are plain reads the views call.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.db.models import DateTimeField, F, Max, OuterRef, Q, QuerySet, Subquery, Value
from django.db.models.functions import Coalesce
from django.http import HttpResponseBadRequest, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.decorators import method_decorator
from django.utils.html import format_html, format_html_join
from django.utils.timesince import timesince
from django.views.decorators.http import require_POST

from compliance.gate import CUSTOMER_SERVICE_WINDOW
from compliance.models import Purpose
from compliance.services import consent_current
from messaging.admin_paging import BigTableAdmin
from messaging.models import Contact, Message, MessageStatus, PendingStatus, ProviderAlert, WebhookEvent
from messaging.outbound import SEND_WITHOUT_APPROVAL, MessageRefused, message_compose
from messaging.phone import phone_normalize
from messaging.webhook_events import InboundMessage, StatusUpdate, webhook_normalize
from messaging.webhook_processing import webhook_event_process

VIEW_MESSAGE = "messaging.view_message"
COMPOSE_MESSAGE = "messaging.add_message"
#: Replaying re-applies a stored delivery: the one "change" a read-only delivery allows.
REPLAY_WEBHOOK = "messaging.change_webhookevent"
#: Acknowledging is the one "change" a read-only alert allows.
ACKNOWLEDGE_ALERT = "messaging.change_provideralert"
VIEW_ALERT = "messaging.view_provideralert"

CONVERSATION_PAGE_SIZE = 50
#: A raw-body search reads this many of the newest deliveries (within the other filters), not 1M rows.
SEARCH_SCAN_LIMIT = 20_000
#: Replays run in the request, so the admin can say at once how many worked.
REPLAY_LIMIT = 200
#: Beyond this, the detail page shows the start of the body (Meta's batches reach 3 MB).
RAW_BODY_SHOWN_CHARS = 200_000
PRODUCED_ROWS_SHOWN = 100
ALERTS_IN_BANNER = 3
#: The banner counts up to this many ("99+"): bounded work on every index view.
BANNER_COUNT_CAP = 99
#: Outbound messages that do not answer anyone: never left, or will not leave.
NOT_AN_ANSWER = [
    MessageStatus.DRAFT,
    MessageStatus.REJECTED,
    MessageStatus.CANCELLED,
    MessageStatus.FAILED,
    MessageStatus.BLOCKED,
]
#: Stands for "we never answered" in comparisons with the time someone wrote.
NEVER = datetime(1970, 1, 1, tzinfo=UTC)
#: Not shown in the conversation: work in progress, or withdrawn by its author.
HIDDEN_FROM_CONVERSATION = [MessageStatus.DRAFT, MessageStatus.CANCELLED]


def _local(moment: datetime | None) -> str:
    return timezone.localtime(moment).strftime("%Y-%m-%d %H:%M:%S %Z") if moment else "—"


def _badge(color: str, text: str, *, css: str = "", data: str = "") -> str:
    return format_html(
        '<span class="tpl-badge tpl-badge--{} {}" data-value="{}">{}</span>', color, css, data, text
    )


def _pretty_json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False)


# --- Selectors ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ServiceWindow:
    """WhatsApp's 24-hour customer-service window: free-form messages only while it is open."""

    is_open: bool
    last_inbound_at: datetime | None
    closes_at: datetime | None


def service_window(*, contact: Contact, now: datetime | None = None) -> ServiceWindow:
    now = now or timezone.now()
    last = contact.last_inbound_at
    if last is None:
        return ServiceWindow(False, None, None)
    closes_at = last + CUSTOMER_SERVICE_WINDOW
    return ServiceWindow(now < closes_at, last, closes_at)


@dataclass
class ConversationPage:
    """Up to one page of a contact's messages, oldest first; `older_than` is the cursor for the page
    before (None at the very beginning)."""

    messages: list[Message]
    older_than: int | None
    reply_targets: dict[str, Message] = field(default_factory=dict)


def conversation_page(
    *, contact: Contact, before_id: int | None = None, size: int = CONVERSATION_PAGE_SIZE
) -> ConversationPage:
    """The newest `size` messages of the conversation (or those before message `before_id`). Ordered by
    when we recorded them, the order staff saw them happen; the (contact, -created_at) index serves it."""
    rows = Message.objects.filter(contact=contact).exclude(status__in=HIDDEN_FROM_CONVERSATION)
    if before_id is not None:
        anchor = Message.objects.filter(contact=contact, pk=before_id).values("created_at").first()
        if anchor is None:
            raise ValueError("unknown cursor")
        rows = rows.filter(
            Q(created_at__lt=anchor["created_at"]) | Q(created_at=anchor["created_at"], pk__lt=before_id)
        )
    newest_first = list(
        rows.select_related("in_reply_to", "created_by").order_by("-created_at", "-id")[: size + 1]
    )
    has_older = len(newest_first) > size
    page = newest_first[:size][::-1]
    # Replies and reactions name their target by wamid; one query finds those not on this page.
    on_page = {m.provider_message_id: m for m in page if m.provider_message_id}
    wanted = {wamid for m in page for wamid in (m.reply_to, _reaction(m)[0]) if wamid} - on_page.keys()
    targets = dict(on_page)
    if wanted:
        targets.update(
            (m.provider_message_id, m)
            for m in Message.objects.filter(contact=contact, provider_message_id__in=wanted).only(
                "id", "provider_message_id", "preview", "direction", "kind"
            )
        )
    return ConversationPage(page, page[0].pk if has_older and page else None, targets)


def _reaction(message: Message) -> tuple[str, str]:
    """(target wamid, emoji) of a reaction: outbound content is Meta's reaction object, inbound content is
    Meta's whole message with the object under "reaction"."""
    if message.kind != Message.Kind.REACTION or not isinstance(message.content, dict):
        return "", ""
    body = message.content.get("reaction", message.content)
    if not isinstance(body, dict):
        return "", ""
    return str(body.get("message_id") or ""), str(body.get("emoji") or "")


def contacts_awaiting_reply() -> QuerySet[Contact]:
    """Contacts whose latest inbound message (reactions aside: a 👍 needs no answer) is newer than our
    latest outbound message that answers anything; oldest waiting first. One query: a GROUP BY over the
    inbound messages, with our latest answer as a correlated subquery on the (contact, -created_at) index.
    """
    latest_answer = (
        Message.objects.filter(contact=OuterRef("pk"), direction=Message.Direction.OUTBOUND)
        .exclude(status__in=NOT_AN_ANSWER)
        .order_by("-created_at")
        .values("created_at")[:1]
    )
    latest_inbound_preview = (
        Message.objects.filter(contact=OuterRef("pk"), direction=Message.Direction.INBOUND)
        .exclude(kind=Message.Kind.REACTION)
        .order_by("-created_at", "-id")
        .values("preview")[:1]
    )
    return (
        Contact.objects.filter(messages__direction=Message.Direction.INBOUND)
        .annotate(
            waiting_since=Max("messages__created_at", filter=~Q(messages__kind=Message.Kind.REACTION)),
            answered_at=Subquery(latest_answer),
        )
        .filter(waiting_since__isnull=False)
        # One comparison (not "IS NULL OR <"), so the database evaluates the subquery once per contact.
        .alias(answered_or_never=Coalesce("answered_at", Value(NEVER, output_field=DateTimeField())))
        .filter(answered_or_never__lt=F("waiting_since"))
        .annotate(last_words=Subquery(latest_inbound_preview))
        .order_by("waiting_since", "pk")
    )


def webhook_event_wamids(event: WebhookEvent) -> list[str]:
    """The message ids a delivery talks about: statuses of ours, messages from customers."""
    try:
        body = json.loads(event.raw_body)
    except ValueError:
        return []
    return [
        item.wamid for item in webhook_normalize(body) if isinstance(item, (StatusUpdate, InboundMessage))
    ]


# --- Webhook inbox ----------------------------------------------------------------------------------------

STATE_COLORS = {
    WebhookEvent.State.RECEIVED: "blue",
    WebhookEvent.State.PROCESSED: "green",
    WebhookEvent.State.FAILED: "red",
}
SUMMARY_LABELS = [
    ("status", "status", "statuses"),
    ("message", "message", "messages"),
    ("notice", "notice", "notices"),
    ("template", "template update", "template updates"),
    ("user_preference", "preference", "preferences"),
]


def webhook_summary_text(summary: dict) -> str:
    parts = []
    for key, one, many in SUMMARY_LABELS:
        count = summary.get(key) or 0
        if count:
            parts.append(f"{count} {one if count == 1 else many}")
    return " · ".join(parts) or "—"


@admin.register(WebhookEvent)
class WebhookEventAdmin(BigTableAdmin, admin.ModelAdmin):
    list_display = ["received", "state_badge", "contents", "attempts", "error_first_line"]
    list_display_links = ["received"]
    # No filter by provider: its choices would be a DISTINCT over every stored delivery, for one value.
    list_filter = ["state", ("received_at", admin.DateFieldListFilter)]
    search_fields = ["raw_body"]  # shows the search box; the search itself is get_search_results below
    show_full_result_count = False
    list_per_page = 50
    actions = ["replay_selected"]
    change_form_template = "admin/messaging/webhookevent/change_form.html"
    readonly_fields = [
        "received_at",
        "state_badge",
        "processed_at",
        "attempts",
        "contents",
        "error_text",
        "provider",
        "body_sha256",
        "headers_pretty",
        "body_pretty",
        "produced_messages",
        "produced_alerts",
        "produced_pending",
    ]
    fieldsets = [
        (None, {"fields": ["received_at", "provider", "body_sha256", "headers_pretty"]}),
        (
            "Processing",
            {
                "fields": ["state_badge", "processed_at", "attempts", "contents", "error_text"],
                "description": "Processing is idempotent: a replay changes nothing the first run did.",
            },
        ),
        (
            "What it produced",
            {"fields": ["produced_messages", "produced_alerts", "produced_pending"]},
        ),
        ("Raw body", {"fields": ["body_pretty"]}),
    ]

    class Media:
        css = {"all": ["templates_app/editor.css", "messaging/conversation.css"]}

    # --- Permissions: read-only deliveries; replay for operators; delete for superusers ----------

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False  # the raw delivery is the source of truth

    def has_delete_permission(self, request, obj=None) -> bool:
        return request.user.is_active and request.user.is_superuser

    def has_replay_permission(self, request, obj=None) -> bool:
        return request.user.has_perm(REPLAY_WEBHOOK)

    def get_queryset(self, request):
        # The list never reads bodies (up to 3 MB each); the detail page loads its own.
        return super().get_queryset(request).defer("raw_body", "headers")

    @property
    def search_help_text(self) -> str:
        return (
            f"A wamid or a phone number, as found in the raw body (searches the newest {SEARCH_SCAN_LIMIT:,} "
            "deliveries within the other filters)."
        )

    def get_search_results(self, request, queryset, search_term):
        term = search_term.strip()
        if not term:
            return queryset, False
        needles = {term}
        with contextlib.suppress(ValidationError):
            # Meta writes numbers as digits without "+": "+1 (555) 012-3456" → 15550123456.
            needles.add(phone_normalize(term).lstrip("+"))
        boundary = list(
            queryset.order_by("-pk").values_list("pk", flat=True)[SEARCH_SCAN_LIMIT - 1 : SEARCH_SCAN_LIMIT]
        )
        if boundary:
            queryset = queryset.filter(pk__gte=boundary[0])
        matches = Q()
        for needle in needles:
            matches |= Q(raw_body__icontains=needle)
        return queryset.filter(matches), False

    # --- List columns ---------------------------------------------------------------------------

    @admin.display(description="received", ordering="received_at")
    def received(self, event: WebhookEvent) -> str:
        return format_html(
            '<time datetime="{}">{}</time>', event.received_at.isoformat(), _local(event.received_at)
        )

    @admin.display(description="state", ordering="state")
    def state_badge(self, event: WebhookEvent) -> str:
        return _badge(
            STATE_COLORS.get(event.state, "grey"), event.get_state_display(), css="wh-state", data=event.state
        )

    @admin.display(description="contents")
    def contents(self, event: WebhookEvent) -> str:
        if event.state == WebhookEvent.State.RECEIVED and not event.summary:
            return "not processed yet"
        return webhook_summary_text(event.summary or {})

    @admin.display(description="error")
    def error_first_line(self, event: WebhookEvent) -> str:
        first = (event.error or "").strip().splitlines()[:1]
        if not first:
            return ""
        line = first[0]
        return line if len(line) <= 120 else line[:119] + "…"

    # --- Detail ---------------------------------------------------------------------------------

    @admin.display(description="error")
    def error_text(self, event: WebhookEvent) -> str:
        return format_html('<pre class="wh-pre">{}</pre>', event.error) if event.error else "—"

    @admin.display(description="headers")
    def headers_pretty(self, event: WebhookEvent) -> str:
        return format_html('<pre class="wh-pre" id="wh-headers">{}</pre>', _pretty_json(event.headers))

    @admin.display(description="body")
    def body_pretty(self, event: WebhookEvent) -> str:
        raw = event.raw_body
        try:
            text = _pretty_json(json.loads(raw))
        except ValueError:
            text = raw
        note = ""
        if len(text) > RAW_BODY_SHOWN_CHARS:
            note = f"The first {RAW_BODY_SHOWN_CHARS:,} of {len(text):,} characters."
            text = text[:RAW_BODY_SHOWN_CHARS]
        # format_html escapes: a customer's "<script>" in a message body stays text.
        return format_html(
            '<p class="help">{}</p><pre class="wh-pre wh-body" id="wh-body">{}</pre>', note, text
        )

    @admin.display(description="messages")
    def produced_messages(self, event: WebhookEvent) -> str:
        wamids = webhook_event_wamids(event)
        if not wamids:
            return "None in this delivery."
        found = list(
            Message.objects.filter(provider_message_id__in=set(wamids))
            .select_related("contact")
            .order_by("created_at", "id")[:PRODUCED_ROWS_SHOWN]
        )
        if not found:
            return format_html(
                '<span class="msg-quiet">{}</span>',
                f"{len(wamids)} message id{'s' if len(wamids) != 1 else ''} in the body; no matching message stored.",
            )
        rows = format_html_join(
            "",
            '<tr><td><a href="{}">#{}</a></td><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td></tr>',
            (
                (
                    reverse("admin:messaging_message_change", args=[m.pk]),
                    m.pk,
                    "← inbound" if m.direction == Message.Direction.INBOUND else "→ outbound",
                    m.contact,
                    m.get_status_display(),
                    m.provider_message_id,
                )
                for m in found
            ),
        )
        return format_html(
            '<table class="msg-table" id="wh-messages"><thead><tr><th>Message</th><th>Direction</th>'
            "<th>Contact</th><th>Status now</th><th>wamid</th></tr></thead><tbody>{}</tbody></table>",
            rows,
        )

    @admin.display(description="alerts")
    def produced_alerts(self, event: WebhookEvent) -> str:
        alerts = list(ProviderAlert.objects.filter(webhook_event=event).order_by("id")[:PRODUCED_ROWS_SHOWN])
        if not alerts:
            return "None."
        return format_html(
            '<ul id="wh-alerts">{}</ul>',
            format_html_join(
                "",
                '<li><a href="{}">{}</a> {}</li>',
                (
                    (
                        reverse("admin:messaging_provideralert_change", args=[a.pk]),
                        a,
                        severity_badge(a.severity),
                    )
                    for a in alerts
                ),
            ),
        )

    @admin.display(description="statuses waiting for their message")
    def produced_pending(self, event: WebhookEvent) -> str:
        pending = list(PendingStatus.objects.filter(webhook_event=event).order_by("id")[:PRODUCED_ROWS_SHOWN])
        if not pending:
            return "None."
        return format_html_join(", ", "{}", ((str(p),) for p in pending))

    # --- Replay -----------------------------------------------------------------------------------

    def get_urls(self):
        prefix = f"{self.opts.app_label}_{self.opts.model_name}"
        return [
            path(
                "<path:object_id>/replay/",
                self.admin_site.admin_view(self.replay_view),
                name=f"{prefix}_replay",
            ),
            *super().get_urls(),
        ]

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra_context = {
            **(extra_context or {}),
            "can_replay": self.has_replay_permission(request),
            "replay_url": reverse(f"{self.admin_site.name}:messaging_webhookevent_replay", args=[object_id]),
        }
        return super().change_view(request, object_id, form_url, extra_context)

    @admin.action(description="Replay selected deliveries (process them again)", permissions=["replay"])
    def replay_selected(self, request, queryset):
        ids = list(queryset.order_by("received_at", "pk").values_list("pk", flat=True)[: REPLAY_LIMIT + 1])
        if len(ids) > REPLAY_LIMIT:
            self.message_user(
                request,
                f"Select at most {REPLAY_LIMIT} deliveries per replay (filter by state or date to narrow down).",
                messages.ERROR,
            )
            return None
        self._replay(request, ids)
        return None

    @method_decorator(require_POST)
    def replay_view(self, request, object_id):
        if not self.has_replay_permission(request):
            raise PermissionDenied
        event = get_object_or_404(WebhookEvent.objects.only("pk"), pk=unquote(object_id))
        self._replay(request, [event.pk])
        return HttpResponseRedirect(
            reverse(f"{self.admin_site.name}:messaging_webhookevent_change", args=[event.pk])
        )

    def _replay(self, request, ids: list[int]) -> None:
        processed = failed = 0
        for event_id in ids:
            try:
                event = webhook_event_process(event_id)
            except WebhookEvent.DoesNotExist:
                continue  # deleted meanwhile
            if event.state == WebhookEvent.State.FAILED:
                failed += 1
            else:
                processed += 1
            self.log_change(request, event, f"Replayed: {event.get_state_display()}.")
        total = processed + failed
        level = messages.WARNING if failed else messages.SUCCESS
        self.message_user(
            request,
            f"Replayed {total} deliver{'ies' if total != 1 else 'y'}: {processed} processed, {failed} failed.",
            level,
        )


# --- Provider alerts --------------------------------------------------------------------------------------

SEVERITY_COLORS = {
    ProviderAlert.Severity.INFO: "blue",
    ProviderAlert.Severity.WARNING: "amber",
    ProviderAlert.Severity.ERROR: "red",
}


def severity_badge(severity: str) -> str:
    return _badge(SEVERITY_COLORS.get(severity, "grey"), severity, css="alert-severity", data=severity)


def alerts_needing_attention() -> QuerySet[ProviderAlert]:
    """Unacknowledged errors and warnings, newest first: what the admin index banner shows."""
    return ProviderAlert.objects.filter(
        acknowledged_at__isnull=True,
        severity__in=[ProviderAlert.Severity.ERROR, ProviderAlert.Severity.WARNING],
    ).order_by("-created_at", "-id")


def provider_alerts_acknowledge(*, alert_ids: list[int], user) -> int:
    """Record who saw the alerts and when; already-acknowledged ones keep their first acknowledgement."""
    return ProviderAlert.objects.filter(pk__in=alert_ids, acknowledged_at__isnull=True).update(
        acknowledged_at=timezone.now(), acknowledged_by=user
    )


class AcknowledgedFilter(admin.SimpleListFilter):
    title = "acknowledged"
    parameter_name = "acknowledged"

    def lookups(self, request, model_admin):
        return [("no", "Not yet"), ("yes", "Acknowledged")]

    def queryset(self, request, queryset):
        if self.value() == "no":
            return queryset.filter(acknowledged_at__isnull=True)
        if self.value() == "yes":
            return queryset.filter(acknowledged_at__isnull=False)
        return queryset


@admin.register(ProviderAlert)
class ProviderAlertAdmin(admin.ModelAdmin):
    list_display = ["created_at", "severity_display", "kind", "code", "title", "sender", "acknowledgement"]
    list_display_links = ["created_at", "title"]
    list_filter = [AcknowledgedFilter, "severity", "kind"]
    list_select_related = ["sender", "acknowledged_by"]
    search_fields = ["title", "code", "kind"]
    show_full_result_count = False
    actions = ["acknowledge_selected"]
    change_form_template = "admin/messaging/provideralert/change_form.html"
    readonly_fields = [
        "created_at",
        "severity_display",
        "kind",
        "code",
        "title",
        "details",
        "sender",
        "delivery_link",
        "acknowledgement",
        "payload_pretty",
    ]
    fields = readonly_fields

    class Media:
        css = {"all": ["templates_app/editor.css", "messaging/conversation.css"]}

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False  # what Meta said stays as said; acknowledging is its own action

    def has_delete_permission(self, request, obj=None) -> bool:
        return request.user.is_active and request.user.is_superuser

    def has_acknowledge_permission(self, request, obj=None) -> bool:
        return request.user.has_perm(ACKNOWLEDGE_ALERT)

    @admin.display(description="severity", ordering="severity")
    def severity_display(self, alert: ProviderAlert) -> str:
        return severity_badge(alert.severity)

    @admin.display(description="acknowledged", ordering="acknowledged_at")
    def acknowledgement(self, alert: ProviderAlert) -> str:
        if alert.acknowledged_at is None:
            return format_html('<span class="alert-unacknowledged">{}</span>', "not yet")
        return format_html(
            '<span class="alert-acknowledged">✓ {} by {}</span>',
            _local(alert.acknowledged_at),
            alert.acknowledged_by or "a deleted user",
        )

    @admin.display(description="delivery")
    def delivery_link(self, alert: ProviderAlert) -> str:
        if alert.webhook_event_id is None:
            return "—"
        url = reverse("admin:messaging_webhookevent_change", args=[alert.webhook_event_id])
        return format_html('<a href="{}">webhook delivery #{}</a>', url, alert.webhook_event_id)

    @admin.display(description="what Meta sent")
    def payload_pretty(self, alert: ProviderAlert) -> str:
        return format_html('<pre class="wh-pre">{}</pre>', _pretty_json(alert.payload))

    @admin.action(description="Acknowledge selected alerts", permissions=["acknowledge"])
    def acknowledge_selected(self, request, queryset):
        count = provider_alerts_acknowledge(
            alert_ids=list(queryset.values_list("pk", flat=True)), user=request.user
        )
        self.message_user(
            request, f"Acknowledged {count} alert{'s' if count != 1 else ''}.", messages.SUCCESS
        )

    def get_urls(self):
        prefix = f"{self.opts.app_label}_{self.opts.model_name}"
        return [
            path(
                "<path:object_id>/acknowledge/",
                self.admin_site.admin_view(self.acknowledge_view),
                name=f"{prefix}_acknowledge",
            ),
            *super().get_urls(),
        ]

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra_context = {
            **(extra_context or {}),
            "can_acknowledge": self.has_acknowledge_permission(request),
            "acknowledge_url": reverse(
                f"{self.admin_site.name}:messaging_provideralert_acknowledge", args=[object_id]
            ),
        }
        return super().change_view(request, object_id, form_url, extra_context)

    @method_decorator(require_POST)
    def acknowledge_view(self, request, object_id):
        if not self.has_acknowledge_permission(request):
            raise PermissionDenied
        alert = get_object_or_404(ProviderAlert, pk=unquote(object_id))
        if provider_alerts_acknowledge(alert_ids=[alert.pk], user=request.user):
            self.message_user(request, "Acknowledged.", messages.SUCCESS)
        else:
            self.message_user(request, "Already acknowledged.", messages.INFO)
        return HttpResponseRedirect(
            reverse(f"{self.admin_site.name}:messaging_provideralert_change", args=[alert.pk])
        )


# --- Conversation and the unanswered list (on ContactAdmin) -----------------------------------------------


class ReplyForm(forms.Form):
    text = forms.CharField(
        max_length=4096,
        strip=True,
        widget=forms.Textarea(attrs={"rows": 3, "placeholder": "Type a reply", "aria-label": "Reply"}),
    )
    reply_to = forms.CharField(max_length=128, required=False, widget=forms.HiddenInput)


#: (symbol, css class) per outbound status; the template draws "pending" as a small clock icon.
TICKS: dict[str, tuple[str, str]] = {
    MessageStatus.PENDING_APPROVAL: ("🕓", "pending"),
    MessageStatus.QUEUED: ("🕓", "pending"),
    MessageStatus.SENDING: ("🕓", "pending"),
    MessageStatus.DEFERRED: ("🕓", "pending"),
    MessageStatus.UNCONFIRMED: ("?", "unconfirmed"),
    MessageStatus.SENT: ("✓", "sent"),
    MessageStatus.DELIVERED: ("✓✓", "delivered"),
    MessageStatus.READ: ("✓✓", "read"),
    MessageStatus.PLAYED: ("✓✓", "read"),
    MessageStatus.FAILED: ("✗", "failed"),
    MessageStatus.BLOCKED: ("✗", "failed"),
    MessageStatus.REJECTED: ("✗", "failed"),
}


def _tick_label(message: Message) -> str:
    status = message.status
    if status in (MessageStatus.FAILED, MessageStatus.BLOCKED):
        why = message.error_title or message.error_details or message.error_code
        return f"{message.get_status_display()}: {why}" if why else message.get_status_display()
    if status == MessageStatus.REJECTED:
        return f"rejected: {message.rejection_reason}" if message.rejection_reason else "rejected"
    if status == MessageStatus.DEFERRED and message.next_attempt_at:
        return f"deferred until {timezone.localtime(message.next_attempt_at):%Y-%m-%d %H:%M}"
    return message.get_status_display()


def _excerpt(text: str, limit: int = 80) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def conversation_items(page: ConversationPage) -> list[dict[str, Any]]:
    """One dict per bubble, for the template (which escapes everything in it). A customer's reaction hangs
    on the bubble it reacts to when that is on the page, like WhatsApp draws it (the latest one wins; an
    empty emoji removed it); other reactions are bubbles of their own."""
    shown = {m.provider_message_id for m in page.messages if m.provider_message_id}
    customer_reactions: dict[str, str] = {}
    attached: set[int] = set()
    for message in page.messages:
        target, emoji = _reaction(message)
        if message.direction == Message.Direction.INBOUND and target in shown:
            customer_reactions[target] = emoji
            attached.add(message.pk)
    items = []
    for message in page.messages:
        if message.pk in attached:
            continue
        inbound = message.direction == Message.Direction.INBOUND
        target, emoji = _reaction(message)
        moment = (message.provider_timestamp if inbound else message.sent_at) or message.created_at
        if message.in_reply_to_id:
            quoted = _excerpt(message.in_reply_to.preview) or "a message"
        elif message.reply_to:
            known = page.reply_targets.get(message.reply_to)
            quoted = _excerpt(known.preview) if known is not None and known.preview else "a message"
        else:
            quoted = ""
        tick, tick_class = ("", "") if inbound else TICKS.get(message.status, ("", ""))
        reaction_target = page.reply_targets.get(target) if target else None
        items.append(
            {
                "id": message.pk,
                "direction": message.direction,
                "inbound": inbound,
                "kind": message.kind,
                "kind_label": "" if message.kind == Message.Kind.TEXT else message.get_kind_display().lower(),
                "text": message.preview,
                "reaction_emoji": emoji,
                "reaction_target": _excerpt(reaction_target.preview) if reaction_target is not None else "",
                "time": timezone.localtime(moment).strftime("%H:%M"),
                "datetime": moment.isoformat(),
                "day": timezone.localtime(moment).date(),
                "status": message.status,
                "tick": tick,
                "tick_class": tick_class,
                "tick_label": "" if inbound else _tick_label(message),
                "not_sent": message.status in (MessageStatus.REJECTED, MessageStatus.BLOCKED),
                "quoted": quoted,
                "reaction": customer_reactions.get(message.provider_message_id or "", ""),
                "author": ""
                if inbound
                else (message.created_by.get_username() if message.created_by else "automation"),
                "wamid": message.provider_message_id or "",
                "url": reverse("admin:messaging_message_change", args=[message.pk]),
            }
        )
    return items


class ContactInboxMixin:
    """The conversation page and the unanswered list, as custom URLs of ContactAdmin."""

    def _inbox_urls(self) -> list:
        view = self.admin_site.admin_view
        prefix = f"{self.opts.app_label}_{self.opts.model_name}"
        return [
            path("unanswered/", view(self.unanswered_view), name=f"{prefix}_unanswered"),
            path(
                "<path:object_id>/conversation/", view(self.conversation_view), name=f"{prefix}_conversation"
            ),
        ]

    def has_conversation_permission(self, request) -> bool:
        return self.has_view_permission(request) and request.user.has_perm(VIEW_MESSAGE)

    def has_reply_permission(self, request) -> bool:
        return self.has_conversation_permission(request) and request.user.has_perm(COMPOSE_MESSAGE)

    def conversation_url(self, contact_id: int) -> str:
        return reverse(f"{self.admin_site.name}:messaging_contact_conversation", args=[contact_id])

    def conversation_view(self, request, object_id):
        if not self.has_conversation_permission(request):
            raise PermissionDenied
        contact = get_object_or_404(Contact, pk=unquote(object_id))
        can_reply = self.has_reply_permission(request)
        window = service_window(contact=contact)
        form = ReplyForm()
        if request.method == "POST":
            if not can_reply:
                raise PermissionDenied
            form = ReplyForm(request.POST)
            if form.is_valid():
                sent = self._reply(request, contact, form)
                if sent is not None:
                    return HttpResponseRedirect(self.conversation_url(contact.pk) + "#conversation-end")
        before = request.GET.get("before")
        try:
            page = conversation_page(contact=contact, before_id=int(before) if before else None)
        except ValueError:
            return HttpResponseBadRequest(
                "invalid_cursor: “before” must be the id of a message in this conversation.",
                content_type="text/plain; charset=utf-8",
            )
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": f"Conversation with {contact}",
            "contact": contact,
            "items": conversation_items(page),
            "older_url": f"?before={page.older_than}" if page.older_than else "",
            "is_latest": before is None,
            "window": window,
            "consent": _consent_rows(contact),
            "form": form,
            "can_reply": can_reply,
            "trusted": request.user.has_perm(SEND_WITHOUT_APPROVAL),
            "template_compose_url": reverse("admin:messaging_message_add")
            + f"?to_number={contact.phone_number}&message_type=template",
            "contact_url": reverse(f"{self.admin_site.name}:messaging_contact_change", args=[contact.pk]),
            "unanswered_url": reverse(f"{self.admin_site.name}:messaging_contact_unanswered"),
        }
        return TemplateResponse(request, "admin/messaging/contact/conversation.html", context)

    def _reply(self, request, contact: Contact, form: ReplyForm) -> Message | None:
        reply_to = form.cleaned_data["reply_to"]
        if reply_to and not Message.objects.filter(contact=contact, provider_message_id=reply_to).exists():
            form.add_error(None, "The message you reply to is not part of this conversation.")
            return None
        try:
            message = message_compose(
                to_number=contact.phone_number,
                message_type="text",
                data={"text": form.cleaned_data["text"]},
                created_by=request.user,
                from_number=_reply_sender_number(contact),
                reply_to=reply_to,
            )
        except ValidationError as exc:
            form.add_error("text", exc.messages)
            return None
        except MessageRefused as exc:
            form.add_error(None, f"{exc.detail} ({exc.code})")
            return None
        self.log_addition(request, message, "Replied from the conversation page.")
        if message.status == MessageStatus.PENDING_APPROVAL:
            self.message_user(
                request,
                "Reply submitted for approval: a colleague with the Approver role approves it before it is sent.",
                messages.SUCCESS,
            )
        else:
            self.message_user(request, f"Reply sent ({message.get_status_display()}).", messages.SUCCESS)
        return message

    def unanswered_view(self, request):
        if not self.has_conversation_permission(request):
            raise PermissionDenied
        paginator = Paginator(contacts_awaiting_reply(), 50)
        page = paginator.get_page(request.GET.get("p"))
        now = timezone.now()
        rows = [
            {
                "contact": contact,
                "waiting_since": contact.waiting_since,
                "waiting_for": timesince(contact.waiting_since, now).split(",")[0],
                "window_open": now < contact.waiting_since + CUSTOMER_SERVICE_WINDOW,
                "last_words": _excerpt(contact.last_words or "", 100),
                "answered_at": contact.answered_at,
                "url": self.conversation_url(contact.pk),
            }
            for contact in page.object_list
        ]
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "Waiting for a reply",
            "rows": rows,
            "page_obj": page,
        }
        return TemplateResponse(request, "admin/messaging/contact/unanswered.html", context)


def _reply_sender_number(contact: Contact) -> str | None:
    """Answer from the number the person last wrote to, when it can still send; else the default."""
    last = (
        Message.objects.filter(contact=contact, direction=Message.Direction.INBOUND, sender__is_active=True)
        .order_by("-created_at", "-id")
        .values_list("sender__display_phone_number", flat=True)
        .first()
    )
    return last or None


def _consent_rows(contact: Contact) -> list[tuple[str, str]]:
    states = consent_current(contact_id=contact.pk)
    return [
        (label, states[purpose]["status"] if purpose in states else "none")
        for purpose, label in Purpose.choices
    ]
