"""Messages in the admin: compose every kind with a live WhatsApp preview, the two-person approval queue,
and each message's page: status timeline, who wrote and approved it, Meta's error, the delivery log.

Imported at the end of messaging/admin.py. Writes go through messaging.outbound (message_compose,
message_approve, message_reject); the draft edits and cancellations below follow the same rules.
"""

import json
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.decorators import method_decorator
from django.utils.html import format_html, format_html_join
from django.utils.text import capfirst
from django.utils.timesince import timesince
from django.views.decorators.http import require_POST

from messaging.admin_paging import BigTableAdmin
from messaging.dashboard import dashboard_period, dashboard_period_days, dashboard_snapshot
from messaging.forms_compose import (
    MessageComposeForm,
    RejectForm,
    compose_client_data,
    initial_from_message,
)
from messaging.models import Message, MessageStatus, MessageStatusEvent, ProviderCall, Sender
from messaging.outbound import (
    APPROVE_MESSAGE,
    SEND_WITHOUT_APPROVAL,
    MessageRefused,
    draft_update,
    message_approve,
    message_cancel,
    message_compose,
    message_reject,
)
from messaging.phone import phone_normalize
from messaging.services import sender_get_default

VIEW_PROVIDER_CALLS = "messaging.view_providercall"
PREVIEW_CHARS = 90
LOG_EXCERPT_CHARS = 600
REJECT_SHOWN = 100

STATUS_COLORS = {
    MessageStatus.DRAFT: "grey",
    MessageStatus.PENDING_APPROVAL: "amber",
    MessageStatus.REJECTED: "red",
    MessageStatus.QUEUED: "blue",
    MessageStatus.DEFERRED: "orange",
    MessageStatus.SENDING: "blue",
    MessageStatus.UNCONFIRMED: "purple",
    MessageStatus.SENT: "teal",
    MessageStatus.DELIVERED: "green",
    MessageStatus.READ: "green",
    MessageStatus.FAILED: "red",
    MessageStatus.BLOCKED: "darkred",
    MessageStatus.CANCELLED: "grey",
    MessageStatus.RECEIVED: "teal",
}


def status_badge_html(status: str) -> str:
    label = capfirst(MessageStatus(status).label if status in MessageStatus.values else status)
    return format_html(
        '<span class="tpl-badge tpl-badge--{} msg-status" data-status="{}">{}</span>',
        STATUS_COLORS.get(status, "grey"),
        status,
        label,
    )


def _local(moment) -> str:
    return timezone.localtime(moment).strftime("%Y-%m-%d %H:%M:%S %Z") if moment else "—"


# --- The queue ----------------------------------------------------------------------------------------


def _is_reviewer(user) -> bool:
    """Approvers land on the approval queue; superusers (and composers) on every message."""
    return user.has_perm(APPROVE_MESSAGE) and not user.is_superuser


#: Query parameters that keep the default tab: paging and ordering, nothing that narrows the list.
_NEUTRAL_PARAMS = {"o", "p", "_changelist_filters"}


class StatusFilter(admin.ChoicesFieldListFilter):
    """The status choices, capitalised alike (some model labels are sentences, some single words)."""

    def choices(self, changelist):
        for choice in super().choices(changelist):
            yield {**choice, "display": capfirst(str(choice["display"]))}


class QueueFilter(admin.SimpleListFilter):
    title = "queue"
    parameter_name = "queue"
    WAITING, MINE, DRAFTS, ATTENTION, ALL = "waiting", "mine", "drafts", "attention", "all"

    def lookups(self, request, model_admin):
        return [
            (self.ALL, "All messages"),
            (self.WAITING, "Waiting for approval"),
            (self.DRAFTS, "My drafts"),
            (self.MINE, "Written by me"),
            (self.ATTENTION, "Needs attention"),
        ]

    def value(self):
        chosen = super().value()
        if chosen is None and _is_reviewer(self.request.user) and set(self.request.GET) <= _NEUTRAL_PARAMS:
            return self.WAITING
        return chosen

    def queryset(self, request, queryset):
        value = self.value()
        if value == self.WAITING:
            return queryset.filter(status=MessageStatus.PENDING_APPROVAL)
        if value == self.DRAFTS:
            return queryset.filter(status=MessageStatus.DRAFT, created_by=request.user)
        if value == self.MINE:
            return queryset.filter(created_by=request.user)
        if value == self.ATTENTION:
            return queryset.filter(
                status__in=[MessageStatus.FAILED, MessageStatus.BLOCKED, MessageStatus.UNCONFIRMED]
            )
        return queryset

    def choices(self, changelist):
        current = self.value() or self.ALL
        for lookup, title in self.lookup_choices:
            yield {
                "selected": current == lookup,
                "query_string": changelist.get_query_string({self.parameter_name: lookup}),
                "display": title,
            }


@admin.register(Message)
class MessageAdmin(BigTableAdmin, admin.ModelAdmin):
    list_display = [
        "age",
        "status_badge",
        "recipient",
        "kind_display",
        "preview_excerpt",
        "created_by",
    ]
    list_display_links = ["age", "preview_excerpt"]
    # Dates by a list filter (today, past 7 days, this month, this year), not date_hierarchy, whose
    # year links cost a DISTINCT over every message's date on each view of the unfiltered list.
    list_filter = [
        QueueFilter,
        ("status", StatusFilter),
        "direction",
        "kind",
        "sender",
        ("created_at", admin.DateFieldListFilter),
    ]
    list_select_related = ["contact", "created_by"]
    search_fields = ["preview", "contact__phone_number", "contact__profile_name"]
    search_help_text = "A phone number as you would type it, a name, or words from the message."
    show_full_result_count = False
    list_per_page = 50
    actions = ["approve_selected", "reject_selected"]
    change_list_template = "admin/messaging/message/change_list.html"
    change_form_template = "admin/messaging/message/change_form.html"

    class Media:
        # The template editor's WhatsApp look (bubble, badges, workflow box), plus the compose page.
        css = {"all": ["templates_app/editor.css", "messaging/compose.css"]}
        js = ["messaging/compose.js"]

    # --- Permissions ------------------------------------------------------------------------------

    def has_change_permission(self, request, obj=None) -> bool:
        # Messages change only through their workflow (compose, approve, reject, cancel, send): the
        # detail page is read-only for everyone; authors edit drafts on the compose page.
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # the record of what was sent, and who approved it, stays

    def has_approve_permission(self, request) -> bool:
        return request.user.has_perm(APPROVE_MESSAGE)

    def _is_author(self, request, message: Message) -> bool:
        return message.created_by_id is not None and message.created_by_id == request.user.pk

    def _can_edit_draft(self, request, message: Message) -> bool:
        return (
            message.status == MessageStatus.DRAFT
            and self._is_author(request, message)
            and self.has_add_permission(request)
        )

    # --- List -------------------------------------------------------------------------------------

    @admin.display(description="age", ordering="created_at")
    def age(self, message: Message) -> str:
        recent = timezone.now() - message.created_at < timedelta(minutes=1)
        return format_html(
            '<time datetime="{}" title="{}">{}</time>',
            message.created_at.isoformat(),
            _local(message.created_at),
            "just now" if recent else f"{timesince(message.created_at).split(',')[0]} ago",
        )

    @admin.display(description="status", ordering="status")
    def status_badge(self, message: Message) -> str:
        return status_badge_html(message.status)

    @admin.display(description="contact", ordering="contact__phone_number")
    def recipient(self, message: Message) -> str:
        contact = message.contact
        inbound = message.direction == Message.Direction.INBOUND
        return format_html(
            '<span class="msg-direction" title="{}">{}</span> {}{}',
            "from the customer (inbound)" if inbound else "to the customer (outbound)",
            "←" if inbound else "→",
            contact.phone_number,
            format_html(" <span class='msg-quiet'>{}</span>", contact.profile_name)
            if contact.profile_name
            else "",
        )

    @admin.display(description="kind", ordering="kind")
    def kind_display(self, message: Message) -> str:
        return kind_label(message)

    @admin.display(description="preview")
    def preview_excerpt(self, message: Message) -> str:
        text = " ".join((message.preview or "").split())
        return text if len(text) <= PREVIEW_CHARS else text[: PREVIEW_CHARS - 1] + "…"

    def get_search_results(self, request, queryset, search_term):
        results, may_have_duplicates = super().get_search_results(request, queryset, search_term)
        # "(555) 012-3456" finds messages to +15550123456 although the stored text differs.
        try:
            e164 = phone_normalize(search_term)
        except ValidationError:
            return results, may_have_duplicates
        return results | queryset.filter(contact__phone_number=e164), may_have_duplicates

    def changelist_view(self, request, extra_context=None):
        waiting = Message.objects.filter(status=MessageStatus.PENDING_APPROVAL).count()
        chosen = request.GET.get(QueueFilter.parameter_name)
        if chosen is None:
            neutral = set(request.GET) <= _NEUTRAL_PARAMS
            chosen = QueueFilter.WAITING if neutral and _is_reviewer(request.user) else QueueFilter.ALL
        tabs = [
            (QueueFilter.ALL, "All messages", None),
            (QueueFilter.WAITING, "Waiting for approval", waiting),
            (QueueFilter.DRAFTS, "My drafts", None),
            (QueueFilter.ATTENTION, "Needs attention", None),
        ]
        extra_context = {
            **(extra_context or {}),
            "queue_tabs": [
                {
                    "key": key,
                    "label": label,
                    "count": count,
                    "selected": key == chosen,
                    "url": f"?queue={key}",
                }
                for key, label, count in tabs
            ],
            "is_reviewer": self.has_approve_permission(request),
        }
        return super().changelist_view(request, extra_context)

    # --- Actions ----------------------------------------------------------------------------------

    @admin.action(description="Approve selected messages (they are sent at once)", permissions=["approve"])
    def approve_selected(self, request, queryset):
        waiting = self._waiting_only(request, queryset)
        approved = 0
        for message in waiting:
            if self._approve_one(request, message):
                approved += 1
        if approved:
            self.message_user(
                request,
                f"Approved {approved} message{'s' if approved != 1 else ''}; sending now.",
                messages.SUCCESS,
            )

    def _approve_one(self, request, message: Message) -> bool:
        try:
            message_approve(message=message, approver=request.user)
        except PermissionDenied as exc:
            self.message_user(request, f"Message #{message.pk}: {exc}", messages.ERROR)
        except ValidationError as exc:
            self.message_user(request, f"Message #{message.pk}: {' '.join(exc.messages)}", messages.ERROR)
        else:
            self.log_change(request, message, "Approved.")
            return True
        return False

    @admin.action(description="Reject selected messages…", permissions=["approve"])
    def reject_selected(self, request, queryset):
        waiting = self._waiting_only(request, queryset, warn="confirm" not in request.POST)
        if not waiting:
            return None
        return self._reject_page(request, waiting, from_action=True)

    def _waiting_only(self, request, queryset, *, warn: bool = True) -> list[Message]:
        """The selected messages still waiting for approval; says how many others were left alone."""
        selected = list(queryset.select_related("contact", "created_by").order_by("created_at", "id"))
        waiting = [m for m in selected if m.status == MessageStatus.PENDING_APPROVAL]
        skipped = len(selected) - len(waiting)
        if skipped and warn:
            self.message_user(
                request,
                f"{skipped} selected message{'s were' if skipped != 1 else ' was'} not waiting for approval "
                "and left unchanged.",
                messages.WARNING,
            )
        return waiting

    def _reject_page(self, request, selected: list[Message], *, from_action: bool):
        """Ask for the reason (the author reads it), then reject every selected message."""
        form = RejectForm(request.POST if "confirm" in request.POST else None)
        if form.is_bound and form.is_valid():
            rejected = 0
            for message in selected:
                try:
                    message_reject(message=message, approver=request.user, reason=form.cleaned_data["reason"])
                except PermissionDenied as exc:
                    self.message_user(request, f"Message #{message.pk}: {exc}", messages.ERROR)
                except ValidationError as exc:
                    self.message_user(
                        request, f"Message #{message.pk}: {' '.join(exc.messages)}", messages.ERROR
                    )
                else:
                    rejected += 1
                    self.log_change(request, message, f"Rejected: {form.cleaned_data['reason']}")
            if rejected:
                self.message_user(
                    request,
                    f"Rejected {rejected} message{'s' if rejected != 1 else ''}; the author sees your reason.",
                    messages.WARNING,
                )
            if from_action:
                return None  # back to the list
            return HttpResponseRedirect(self._url("change", selected[0].pk))
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "Reject messages" if len(selected) != 1 else "Reject message",
            "form": form,
            "selected_messages": selected[:REJECT_SHOWN],
            "hidden_count": max(0, len(selected) - REJECT_SHOWN),
            "count": len(selected),
            "from_action": from_action,
            "select_across": request.POST.get("select_across") == "1",
            "selected": request.POST.getlist(helpers.ACTION_CHECKBOX_NAME),
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            "changelist_url": self._url("changelist"),
            "cancel_url": self._url("changelist") if from_action else self._url("change", selected[0].pk),
        }
        return TemplateResponse(request, "admin/messaging/message/reject_confirm.html", context)

    # --- URLs and single-message workflow views ----------------------------------------------------

    def get_urls(self):
        view = self.admin_site.admin_view
        prefix = f"{self.opts.app_label}_{self.opts.model_name}"
        # Before the default URLs, whose "<path:object_id>/" would take these.
        return [
            path("dashboard/refresh/", view(self.dashboard_refresh_view), name=f"{prefix}_dashboard_refresh"),
            path("<path:object_id>/approve/", view(self.approve_view), name=f"{prefix}_approve"),
            path("<path:object_id>/reject/", view(self.reject_view), name=f"{prefix}_reject"),
            path("<path:object_id>/cancel/", view(self.cancel_view), name=f"{prefix}_cancel"),
            *super().get_urls(),
        ]

    def _url(self, name: str, *args) -> str:
        return reverse(
            f"{self.admin_site.name}:{self.opts.app_label}_{self.opts.model_name}_{name}", args=args
        )

    def _message_or_404(self, request, object_id) -> Message:
        message = get_object_or_404(Message, pk=unquote(object_id))
        if not self.has_view_permission(request, message):
            raise PermissionDenied
        return message

    @method_decorator(require_POST)
    def dashboard_refresh_view(self, request):
        """The admin index's "Refresh now": the dashboard's stored days of the period shown, computed again."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        period = dashboard_period(days=dashboard_period_days(request.POST.get("period")))
        dashboard_snapshot(period=period, refresh=True)
        self.message_user(
            request, f"Dashboard figures of the last {period.days} days computed again.", messages.SUCCESS
        )
        return HttpResponseRedirect(f"{reverse(f'{self.admin_site.name}:index')}?period={period.days}")

    @method_decorator(require_POST)
    def approve_view(self, request, object_id):
        message = self._message_or_404(request, object_id)
        if not self.has_approve_permission(request):
            raise PermissionDenied
        if self._approve_one(request, message):
            self.message_user(request, "Approved; the message is being sent.", messages.SUCCESS)
        return HttpResponseRedirect(self._url("change", message.pk))

    def reject_view(self, request, object_id):
        message = self._message_or_404(request, object_id)
        if not self.has_approve_permission(request):
            raise PermissionDenied
        return self._reject_page(request, [message], from_action=False)

    @method_decorator(require_POST)
    def cancel_view(self, request, object_id):
        message = self._message_or_404(request, object_id)
        try:
            message_cancel(message=message, user=request.user)
        except PermissionDenied as exc:
            self.message_user(request, str(exc), messages.ERROR)
        except ValidationError as exc:
            self.message_user(request, " ".join(exc.messages), messages.ERROR)
        else:
            self.log_change(request, message, "Cancelled by its author.")
            self.message_user(request, "Cancelled: the message will not be sent.", messages.SUCCESS)
        return HttpResponseRedirect(self._url("change", message.pk))

    # --- Compose ----------------------------------------------------------------------------------

    def add_view(self, request, form_url="", extra_context=None):
        return self.compose_view(request)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        message = self.get_object(request, unquote(object_id))
        if message is not None and self._can_edit_draft(request, message):
            return self.compose_view(request, draft=message)
        if message is not None:
            extra_context = {
                **(extra_context or {}),
                "workflow": self._workflow_context(request, message),
                "subtitle": message_title(message),
                "message_title": message_title(message),
            }
        return super().change_view(request, object_id, form_url, extra_context)

    def compose_view(self, request, draft: Message | None = None):
        if not self.has_add_permission(request):
            raise PermissionDenied
        if request.method == "POST":
            form = MessageComposeForm(request.POST)
            if form.is_valid():
                response = self._compose_save(request, form, draft)
                if response is not None:
                    return response
        else:
            form = MessageComposeForm(initial=self._compose_initial(request, draft))
        return self._compose_render(request, form, draft)

    def _compose_initial(self, request, draft: Message | None) -> dict[str, Any]:
        if draft is not None:
            return initial_from_message(draft)
        initial: dict[str, Any] = {"message_type": "text"}
        default = Sender.objects.filter(is_default=True, is_active=True).first()
        if default is None:
            try:
                default = sender_get_default()  # the environment's number, created on first use
            except Sender.DoesNotExist:
                default = None
        if default is not None:
            initial["sender"] = default.pk
        # Links elsewhere may prefill: ?to_number=…&message_type=reaction&reaction_message_id=wamid…
        for name in ("to_number", "message_type", "reaction_message_id", "reply_to", "text"):
            if request.GET.get(name):
                initial[name] = request.GET[name]
        return initial

    def _compose_save(self, request, form: MessageComposeForm, draft: Message | None):
        submit = "_submit" in request.POST
        arguments = form.service_arguments
        try:
            if draft is None:
                message = message_compose(**arguments, created_by=request.user, submit=submit)
            else:
                message = draft_update(message=draft, editor=request.user, submit=submit, **arguments)
        except ValidationError as exc:
            form.add_service_error(exc)
            return None
        except MessageRefused as exc:
            form.add_refusal(exc)
            return None
        except PermissionDenied as exc:
            self.message_user(request, str(exc) or "You may not change this message.", messages.ERROR)
            return None
        if draft is None:
            self.log_addition(request, message, "Composed in the admin.")
        else:
            self.log_change(request, message, "Draft edited.")
        if message.status == MessageStatus.DRAFT:
            self.message_user(
                request, "Draft saved. Nothing is sent until you submit it for approval.", messages.SUCCESS
            )
        elif message.status == MessageStatus.PENDING_APPROVAL:
            self.message_user(
                request,
                "Submitted for approval: a colleague with the Approver role approves it before it is sent.",
                messages.SUCCESS,
            )
        else:
            self.message_user(
                request,
                f"Sent without a second approval (you are trusted to); status: {message.get_status_display()}.",
                messages.SUCCESS,
            )
        return HttpResponseRedirect(self._url("change", message.pk))

    def _compose_render(self, request, form: MessageComposeForm, draft: Message | None):
        adminform = helpers.AdminForm(form, form.fieldsets(), {}, model_admin=self)
        trusted = request.user.has_perm(SEND_WITHOUT_APPROVAL)
        context = {
            **self.admin_site.each_context(request),
            "title": "Compose message" if draft is None else "Edit draft",
            "subtitle": None,
            "adminform": adminform,
            "form": form,
            "errors": helpers.AdminErrorList(form, []),
            "inline_admin_formsets": [],
            "media": self.media + adminform.media,
            "opts": self.opts,
            "app_label": self.opts.app_label,
            "add": draft is None,
            "change": draft is not None,
            "original": draft,
            "is_popup": False,
            "to_field": None,
            "save_as": False,
            "save_on_top": False,
            "has_file_field": False,
            "has_view_permission": True,
            "has_add_permission": True,
            "has_change_permission": False,
            "has_delete_permission": False,
            "has_editable_inline_admin_formsets": False,
            "has_absolute_url": False,
            "form_url": "",
            "trusted": trusted,
            "cancel_url": self._url("cancel", draft.pk) if draft is not None else "",
            "compose_data": compose_client_data(form, business_name=_business_name()),
            "business_name": _business_name(),
        }
        return TemplateResponse(request, "admin/messaging/message/compose.html", context)

    # --- Detail page ------------------------------------------------------------------------------

    readonly_fields = [
        "status_badge",
        "direction",
        "kind_display",
        "contact_link",
        "sender",
        "whatsapp_preview",
        "reply_to",
        "template",
        "payload",
        "people",
        "provider_message_id",
        "delivery_times",
        "attempts",
        "next_attempt_at",
        "pricing",
        "error_code",
        "error_title",
        "error_details",
        "status_timeline",
        "delivery_log",
        "delivery_log_restricted",
    ]

    def get_fieldsets(self, request, obj=None):
        fieldsets = [
            (
                None,
                {
                    "fields": [
                        "status_badge",
                        "direction",
                        "kind_display",
                        "contact_link",
                        "sender",
                        "whatsapp_preview",
                        "reply_to",
                        "template",
                        "payload",
                    ]
                },
            ),
            ("Who and when", {"fields": ["people"]}),
        ]
        if obj is not None and (obj.error_code or obj.error_title or obj.error_details):
            fieldsets.append(
                (
                    "Error",
                    {"fields": ["error_code", "error_title", "error_details"], "classes": ["msg-error"]},
                )
            )
        fieldsets += [
            (
                "Delivery",
                {
                    "fields": [
                        "provider_message_id",
                        "delivery_times",
                        "attempts",
                        "next_attempt_at",
                        "pricing",
                    ]
                },
            ),
            ("Status timeline", {"fields": ["status_timeline"]}),
        ]
        if request.user.has_perm(VIEW_PROVIDER_CALLS):
            log = {
                "fields": ["delivery_log"],
                "description": "Every request to the provider for this message. Tokens and phone numbers "
                "are redacted before they are stored.",
            }
        else:
            log = {"fields": ["delivery_log_restricted"]}
        return [*fieldsets, ("Delivery log", log)]

    def _workflow_context(self, request, message: Message) -> dict[str, Any]:
        status = message.status
        pending = status == MessageStatus.PENDING_APPROVAL
        is_author = self._is_author(request, message)
        return {
            "outbound": message.direction == Message.Direction.OUTBOUND,
            "pending": pending,
            "is_author": is_author,
            "can_review": pending and self.has_approve_permission(request) and not is_author,
            "can_cancel": is_author and status in (MessageStatus.DRAFT, MessageStatus.PENDING_APPROVAL),
            "draft_by_other": status == MessageStatus.DRAFT and not is_author,
            "approve_url": self._url("approve", message.pk),
            "reject_url": self._url("reject", message.pk),
            "cancel_url": self._url("cancel", message.pk),
            "rejection_reason": message.rejection_reason if status == MessageStatus.REJECTED else "",
            "steps": workflow_steps(message),
        }

    @admin.display(description="recipient")
    def contact_link(self, message: Message) -> str:
        contact = message.contact
        url = reverse(f"{self.admin_site.name}:messaging_contact_change", args=[contact.pk])
        return format_html('<a href="{}">{}</a>', url, contact)

    @admin.display(description="as WhatsApp shows it")
    def whatsapp_preview(self, message: Message) -> str:
        return format_html(
            '<div class="wa-chat msg-detail-chat"><div class="wa-card"><div class="wa-bubble">'
            '<div class="wa-body msg-pre">{}</div><span class="wa-time">{}</span></div></div></div>',
            message.preview or "—",
            timezone.localtime(message.sent_at or message.created_at).strftime("%H:%M"),
        )

    @admin.display(description="Graph API object")
    def payload(self, message: Message) -> str:
        return format_html(
            '<details class="tpl-payload"><summary>{} object</summary><pre>{}</pre></details>',
            message.kind,
            json.dumps(message.content, indent=2, ensure_ascii=False),
        )

    @admin.display(description="people")
    def people(self, message: Message) -> str:
        rows = [("Composed", message.created_by or "—", _local(message.created_at), "")]
        if message.status == MessageStatus.REJECTED:
            rejected = message.status_events.filter(status=MessageStatus.REJECTED).last()
            rows.append(
                (
                    "Rejected",
                    message.approved_by or "—",
                    _local(rejected.occurred_at if rejected else None),
                    message.rejection_reason,
                )
            )
        elif message.approved_by_id:
            note = "trusted: no second approval" if message.approved_by_id == message.created_by_id else ""
            rows.append(("Approved", message.approved_by, _local(message.approved_at), note))
        elif message.status == MessageStatus.PENDING_APPROVAL:
            rows.append(("Approval", "waiting for a colleague", "", ""))
        return format_html(
            '<table class="msg-table msg-people"><tbody>{}</tbody></table>',
            format_html_join("", '<tr><th scope="row">{}</th><td>{}</td><td>{}</td><td>{}</td></tr>', rows),
        )

    @admin.display(description="times")
    def delivery_times(self, message: Message) -> str:
        rows = [
            (label, _local(value))
            for label, value in (
                ("sent", message.sent_at),
                ("delivered", message.delivered_at),
                ("read", message.read_at),
                ("played", message.played_at),
                ("failed", message.failed_at),
            )
            if value
        ]
        if not rows:
            return "—"
        return format_html_join(", ", "{} {}", rows)

    @admin.display(description="pricing")
    def pricing(self, message: Message) -> str:
        parts = [message.pricing_category, message.pricing_type, message.pricing_model]
        if message.billable is False:
            parts.append("not billable")
        return " / ".join(part for part in parts if part) or "—"

    @admin.display(description="timeline")
    def status_timeline(self, message: Message) -> str:
        events = list(MessageStatusEvent.objects.filter(message=message).order_by("occurred_at", "id"))
        if not events:
            return "—"
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            ((_local(e.occurred_at), status_badge_html(e.status), e.source, e.detail) for e in events),
        )
        return format_html(
            '<table class="msg-table" id="msg-timeline"><thead><tr><th scope="col">When</th>'
            '<th scope="col">Status</th><th scope="col">Source</th><th scope="col">Detail</th></tr></thead>'
            "<tbody>{}</tbody></table>",
            rows,
        )

    @admin.display(description="provider calls")
    def delivery_log(self, message: Message) -> str:
        calls = list(ProviderCall.objects.filter(message=message).order_by("created_at", "id"))
        if not calls:
            return "No request to the provider yet."
        # One row of facts per call, then its request and response bodies side by side beneath.
        rows = format_html_join(
            "",
            '<tr class="msg-call"><td>{}</td><td>{}</td><td><code>{} {}</code></td><td>{}</td><td>{} ms</td>'
            "<td>{}</td></tr>"
            '<tr class="msg-call-bodies"><td colspan="6"><div class="msg-log-bodies">'
            '<div><div class="msg-log-label">Request</div>{}</div>'
            '<div><div class="msg-log-label">Response</div>{}</div></div></td></tr>',
            (
                (
                    _local(call.created_at),
                    call.backend,
                    call.method,
                    call.url,
                    _http_status(call.http_status),
                    call.elapsed_ms,
                    call.error or "",
                    _excerpt(call.request_body),
                    _excerpt(call.response_body),
                )
                for call in calls
            ),
        )
        return format_html(
            '<table class="msg-table" id="msg-provider-calls"><thead><tr><th scope="col">When</th>'
            '<th scope="col">Backend</th><th scope="col">Request</th><th scope="col">HTTP</th>'
            '<th scope="col">Latency</th><th scope="col">Error</th></tr></thead><tbody>{}</tbody></table>',
            rows,
        )

    @admin.display(description="provider calls")
    def delivery_log_restricted(self, message: Message) -> str:
        return format_html(
            '<span class="msg-quiet">{}</span>',
            "Shown to people with the “view provider call” permission (the Auditor role).",
        )


def kind_label(message: Message) -> str:
    if message.kind == Message.Kind.INTERACTIVE:
        return {"button": "reply buttons", "list": "list"}.get(message.content.get("type"), "interactive")
    return message.get_kind_display().lower()


def message_title(message: Message) -> str:
    """“#12 · text to Ava Johnson (+15550123456)”: what the message page is about."""
    way = "to" if message.direction == Message.Direction.OUTBOUND else "from"
    return f"#{message.pk} · {kind_label(message)} {way} {message.contact}"


def _http_status(status: int | None) -> str:
    if status is None:
        return format_html('<span class="msg-http msg-http--none">{}</span>', "no answer")
    return format_html(
        '<span class="msg-http msg-http--{}">{}</span>', "ok" if 200 <= status < 300 else "error", status
    )


def _excerpt(body: str) -> str:
    if not body:
        return "—"
    if len(body) <= LOG_EXCERPT_CHARS:
        return format_html('<pre class="msg-log">{}</pre>', body)
    return format_html(
        '<details class="msg-log-details"><summary><pre class="msg-log">{}…</pre></summary>'
        '<pre class="msg-log">{}</pre></details>',
        body[:LOG_EXCERPT_CHARS],
        body,
    )


WORKFLOW_STEPS = ["Draft", "Waiting for approval", "Approved", "Sent", "Delivered", "Read"]
_STEP_OF_STATUS = {
    MessageStatus.DRAFT: 0,
    MessageStatus.PENDING_APPROVAL: 1,
    MessageStatus.REJECTED: 1,
    MessageStatus.QUEUED: 2,
    MessageStatus.DEFERRED: 2,
    MessageStatus.SENDING: 2,
    MessageStatus.UNCONFIRMED: 3,
    MessageStatus.BLOCKED: 3,
    MessageStatus.FAILED: 3,
    MessageStatus.SENT: 3,
    MessageStatus.DELIVERED: 4,
    MessageStatus.READ: 5,
}
_STOPPED = {MessageStatus.REJECTED, MessageStatus.BLOCKED, MessageStatus.FAILED}


def workflow_steps(message: Message) -> list[tuple[str, str]]:
    """(label, done|current|stopped|todo) per step of an outbound message's way to the customer."""
    status = message.status
    if status == MessageStatus.CANCELLED:
        return [("Cancelled by its author", "stopped")]
    current = _STEP_OF_STATUS.get(status)
    if current is None:
        return []
    steps = []
    for index, label in enumerate(WORKFLOW_STEPS):
        if index < current:
            state = "done"
        elif index == current:
            state = "stopped" if status in _STOPPED else "current"
            if status in _STOPPED or status in (MessageStatus.DEFERRED, MessageStatus.UNCONFIRMED):
                label = f"{label}: {MessageStatus(status).label}"
        else:
            state = "todo"
        steps.append((label, state))
    return steps


def _business_name() -> str:
    return settings.WHATSAPP.get("DISPLAY_PHONE_NUMBER") or "Your business"
