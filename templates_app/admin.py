"""Message templates in the admin: a structured editor with a live WhatsApp preview, the internal review
workflow (author → a second person → Meta), and "Sync now"."""

import json
from typing import Any

from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Exists, OuterRef
from django.http import HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils.decorators import method_decorator
from django.utils.html import format_html, format_html_join
from django.views.decorators.http import require_POST

from messaging.whatsapp import WhatsAppApiError, WhatsAppError, get_backend
from templates_app.forms import COMMON_LANGUAGES, MessageTemplateForm, components_to_values, preview_data
from templates_app.models import (
    EDITABLE_STATUSES,
    MessageTemplate,
    ParameterFormat,
    TemplateStatus,
    TemplateStatusChange,
)
from templates_app.notifications import notice_text, notices_mark_seen, notices_since, notices_unseen
from templates_app.rendering import TemplateError, render_template
from templates_app.services import (
    IDENTITY_FIELDS,
    template_create,
    template_request_review,
    template_review,
    template_save_edit,
    template_submit,
)
from templates_app.tasks import default_waba_ids, describe_counts, sync_lock, templates_sync_accounts
from templates_app.validation import variables_in

REVIEW_PERMISSION = "templates_app.review_template"
CHANGE_PERMISSION = "templates_app.change_messagetemplate"

STATUS_COLORS = {
    TemplateStatus.DRAFT: "grey",
    TemplateStatus.IN_INTERNAL_REVIEW: "amber",
    TemplateStatus.APPROVED_INTERNALLY: "teal",
    TemplateStatus.PENDING: "blue",
    TemplateStatus.APPROVED: "green",
    TemplateStatus.REJECTED: "red",
    TemplateStatus.PAUSED: "orange",
    TemplateStatus.DISABLED: "darkred",
    TemplateStatus.IN_APPEAL: "purple",
    TemplateStatus.LIMIT_EXCEEDED: "red",
}
QUALITY_COLORS = {"GREEN": "green", "YELLOW": "amber", "RED": "red"}
STATUS_FIELDS = [
    "status_badge",
    "quality_badge",
    "meta_template_id",
    "created_by",
    "reviewed_by",
    "submitted_at",
    "synced_at",
    "updated_at",
]
CONTENT_DISPLAY_FIELDS = ["header_display", "body_display", "footer_display", "buttons_display"]


def status_badge_html(status: str) -> str:
    label = TemplateStatus(status).label if status in TemplateStatus.values else status
    return format_html(
        '<span class="tpl-badge tpl-badge--{}" data-status="{}">{}</span>',
        STATUS_COLORS.get(status, "grey"),
        status,
        label,
    )


class TemplateStatusChangeInline(admin.TabularInline):
    model = TemplateStatusChange
    verbose_name = "status change"
    verbose_name_plural = "Status history"
    fields = ["changed_at", "kind", "old_status", "new_status", "source", "changed_by", "reason"]
    readonly_fields = fields
    extra = 0
    max_num = 0
    can_delete = False
    show_change_link = False

    def has_view_permission(self, request, obj=None) -> bool:
        # Whoever may see the template may see its history, without a separate permission.
        return request.user.has_perm("templates_app.view_messagetemplate") or request.user.has_perm(
            CHANGE_PERMISSION
        )

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(MessageTemplate)
class MessageTemplateAdmin(admin.ModelAdmin):
    form = MessageTemplateForm
    list_display = [
        "name",
        "language",
        "category",
        "status_badge",
        "quality_badge",
        "meta_news",
        "updated_at",
    ]
    list_filter = ["status", "category", "language", "quality_rating"]
    search_fields = ["name"]
    inlines = [TemplateStatusChangeInline]
    show_full_result_count = False

    class Media:
        css = {"all": ["templates_app/editor.css"]}
        js = ["templates_app/editor.js"]

    # --- Permissions ------------------------------------------------------------------------------

    def is_editable(self, obj: MessageTemplate | None) -> bool:
        return obj is None or obj.status in EDITABLE_STATUSES

    def has_change_permission(self, request, obj=None) -> bool:
        # Once a template is in review or at Meta its content is frozen: the page becomes read-only.
        return super().has_change_permission(request, obj) and self.is_editable(obj)

    def _can_author(self, request) -> bool:
        return request.user.has_perm(CHANGE_PERMISSION)

    def _can_review(self, request) -> bool:
        return request.user.has_perm(REVIEW_PERMISSION)

    # --- Forms ------------------------------------------------------------------------------------

    def get_inlines(self, request, obj):
        return self.inlines if obj is not None else []

    def get_fieldsets(self, request, obj=None):
        identity = (None, {"fields": ["name", "language", "category", "parameter_format", "waba_id"]})
        if obj is not None and not self.has_change_permission(request, obj):
            return [
                identity,
                ("Content", {"fields": CONTENT_DISPLAY_FIELDS}),
                ("Status", {"fields": STATUS_FIELDS}),
                ("Rendered with the samples", {"fields": ["server_preview"]}),
            ]
        fieldsets = [
            identity,
            (
                "Header",
                {
                    "fields": ["header_format", "header_text", "header_sample"],
                    "classes": ["tpl-section", "tpl-section--header"],
                },
            ),
            ("Body", {"fields": ["body_text", "body_samples"], "classes": ["tpl-section"]}),
            ("Footer", {"fields": ["footer_text"], "classes": ["tpl-section"]}),
            ("Buttons", {"fields": ["buttons"], "classes": ["tpl-section"]}),
        ]
        if obj is not None:
            fieldsets += [
                ("Status", {"fields": STATUS_FIELDS}),
                ("Rendered with the samples", {"fields": ["server_preview"]}),
            ]
        return fieldsets

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return []
        readonly = [*STATUS_FIELDS, "server_preview", *CONTENT_DISPLAY_FIELDS]
        if obj.meta_template_id:  # Meta's name and language stay; an edit changes the content only
            readonly += IDENTITY_FIELDS
        return readonly

    def get_queryset(self, request):
        """Each template knows whether Meta changed it since this user last marked changes seen."""
        news = TemplateStatusChange.objects.filter(
            template=OuterRef("pk"), is_notice=True, changed_at__gt=notices_since(request.user)
        )
        return super().get_queryset(request).annotate(has_meta_news=Exists(news))

    def save_form(self, request, form, change):
        if change:
            return form.save(commit=False)
        form.save(commit=False)  # the admin calls form.save_m2m() afterwards
        return template_create_from_form(form, user=request.user)

    def save_model(self, request, obj, form, change):
        if change:  # additions were saved by template_create in save_form
            template_save_edit(template=obj, user=request.user)

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        template = obj or MessageTemplate()
        context.update(
            preview_data=preview_data(template.components),
            preview_editable=self.is_editable(obj) and (add or self.has_change_permission(request, obj)),
            language_choices=COMMON_LANGUAGES,
            business_name=_business_name(),
        )
        if obj is not None:
            context.update(self._workflow_context(request, obj))
        return super().render_change_form(request, context, add, change, form_url, obj)

    def _workflow_context(self, request, obj: MessageTemplate) -> dict[str, Any]:
        status = obj.status
        is_author = obj.created_by_id is not None and obj.created_by_id == request.user.pk
        url = self._url_for
        return {
            "workflow": {
                "can_request_review": status in EDITABLE_STATUSES and self._can_author(request),
                "request_review_url": url("request_review", obj.pk),
                "awaiting_review": status == TemplateStatus.IN_INTERNAL_REVIEW,
                "can_review": status == TemplateStatus.IN_INTERNAL_REVIEW and self._can_review(request),
                "is_author": is_author,
                "review_url": url("review", obj.pk),
                "can_submit": status == TemplateStatus.APPROVED_INTERNALLY
                and (self._can_author(request) or self._can_review(request)),
                "submit_url": url("submit", obj.pk),
                "is_rework": obj.is_rework,
                "meta_template_id": obj.meta_template_id,
                "reviewed_by": obj.reviewed_by,
                "steps": workflow_steps(status),
            },
            "meta_feedback": {
                "rejected_reason": obj.rejected_reason
                if status == TemplateStatus.REJECTED or obj.is_rework
                else "",
                "is_rework": obj.is_rework,
                "paused": status == TemplateStatus.PAUSED,
                "meta_recommendation": obj.meta_recommendation,
                "last_error": obj.last_error,
                "status": status,
            },
        }

    # --- Display ----------------------------------------------------------------------------------

    @admin.display(description="status", ordering="status")
    def status_badge(self, obj: MessageTemplate) -> str:
        return status_badge_html(obj.status)

    @admin.display(description="quality", ordering="quality_rating")
    def quality_badge(self, obj: MessageTemplate) -> str:
        if obj.quality_rating not in QUALITY_COLORS:
            return format_html('<span class="tpl-quality tpl-quality--none">{}</span>', "—")
        return format_html(
            '<span class="tpl-quality tpl-quality--{}">{}</span>',
            QUALITY_COLORS[obj.quality_rating],
            obj.get_quality_rating_display(),
        )

    @admin.display(description="news from Meta")
    def meta_news(self, obj: MessageTemplate) -> str:
        if not getattr(obj, "has_meta_news", False):
            return ""
        return format_html('<span class="tpl-news" title="{}">changed by Meta</span>', "see the panel above")

    @admin.display(description="header")
    def header_display(self, obj: MessageTemplate) -> str:
        values = components_to_values(obj.components)
        if not values["header_format"]:
            return "—"
        if values["header_format"] == "TEXT":
            return format_html(
                "{} <em>(sample: {})</em>", values["header_text"], values["header_sample"] or "—"
            )
        return format_html("{} <em>{}</em>", values["header_format"].lower(), values["header_sample"])

    @admin.display(description="body")
    def body_display(self, obj: MessageTemplate) -> str:
        values = components_to_values(obj.components)
        samples = format_html_join(
            ", ", "{{{{{}}}}} = {}", ((name, value) for name, value in values["body_samples"].items())
        )
        return format_html(
            '<div class="tpl-pre">{}</div>{}',
            values["body_text"] or "—",
            format_html("<div><em>Samples: {}</em></div>", samples) if values["body_samples"] else "",
        )

    @admin.display(description="footer")
    def footer_display(self, obj: MessageTemplate) -> str:
        return components_to_values(obj.components)["footer_text"] or "—"

    @admin.display(description="buttons")
    def buttons_display(self, obj: MessageTemplate) -> str:
        buttons = components_to_values(obj.components)["buttons"]
        if not buttons:
            return "—"
        return format_html(
            "<ol class='tpl-button-list'>{}</ol>",
            format_html_join(
                "",
                "<li>{} <strong>{}</strong> {}</li>",
                (
                    (b["type"].replace("_", " ").lower(), b["text"], b["url"] or b["phone_number"])
                    for b in buttons
                ),
            ),
        )

    @admin.display(description="preview")
    def server_preview(self, obj: MessageTemplate) -> str:
        """What `render_template` makes of the template with its own samples: the customer's text and
        the Graph API `template` object a send would carry."""
        try:
            rendered = render_template(obj, check_status=False, **sample_parameters(obj))
        except TemplateError as exc:
            return format_html('<span class="tpl-preview-error">Cannot render yet: {}</span>', exc.detail)
        return format_html(
            '<div class="tpl-pre tpl-server-preview">{}</div>'
            '<details class="tpl-payload"><summary>Graph API payload</summary><pre>{}</pre></details>',
            rendered.preview,
            json.dumps(rendered.payload, indent=2, ensure_ascii=False),
        )

    # --- Workflow views ---------------------------------------------------------------------------

    def get_urls(self):
        view = self.admin_site.admin_view
        prefix = f"{self.opts.app_label}_{self.opts.model_name}"
        # Before the default URLs, whose "<path:object_id>/" would take "sync/" for an id.
        return [
            path("sync/", view(self.sync_view), name=f"{prefix}_sync"),
            path("notices/seen/", view(self.notices_seen_view), name=f"{prefix}_notices_seen"),
            path(
                "<path:object_id>/request-review/",
                view(self.request_review_view),
                name=f"{prefix}_request_review",
            ),
            path("<path:object_id>/review/", view(self.review_view), name=f"{prefix}_review"),
            path("<path:object_id>/submit/", view(self.submit_view), name=f"{prefix}_submit"),
            *super().get_urls(),
        ]

    def _url_for(self, name: str, *args) -> str:
        return reverse(
            f"{self.admin_site.name}:{self.opts.app_label}_{self.opts.model_name}_{name}", args=args
        )

    def _template_or_404(self, request, object_id) -> MessageTemplate:
        template = get_object_or_404(MessageTemplate, pk=object_id)
        if not self.has_view_permission(request, template):
            raise PermissionDenied
        return template

    def _error_messages(self, request, exc: ValidationError) -> None:
        for message in exc.messages:
            messages.error(request, message)

    @method_decorator(require_POST)
    def request_review_view(self, request, object_id):
        template = self._template_or_404(request, object_id)
        if not self._can_author(request):
            raise PermissionDenied
        try:
            template_request_review(template=template, user=request.user)
        except ValidationError as exc:
            self._error_messages(request, exc)
        else:
            self.log_change(request, template, "Sent for internal review.")
            messages.success(request, f"{template} is waiting for a colleague's review.")
        return HttpResponseRedirect(self._url_for("change", template.pk))

    @method_decorator(require_POST)
    def review_view(self, request, object_id):
        template = self._template_or_404(request, object_id)
        if not self._can_review(request):
            raise PermissionDenied
        approve = request.POST.get("decision") == "approve"
        reason = request.POST.get("reason", "")
        try:
            template_review(template=template, reviewer=request.user, approve=approve, reason=reason)
        except PermissionDenied as exc:
            messages.error(request, str(exc) or "You may not review this template.")
        except ValidationError as exc:
            self._error_messages(request, exc)
        else:
            if approve:
                self.log_change(request, template, "Approved internally.")
                messages.success(request, f"{template} is approved and can be submitted to Meta.")
            else:
                self.log_change(request, template, f"Sent back to its author: {reason}")
                messages.warning(request, f"{template} went back to its author: {reason}")
        return HttpResponseRedirect(self._url_for("change", template.pk))

    @method_decorator(require_POST)
    def submit_view(self, request, object_id):
        template = self._template_or_404(request, object_id)
        if not (self._can_author(request) or self._can_review(request)):
            raise PermissionDenied
        try:
            template_submit(template=template, user=request.user, backend=get_backend())
        except ValidationError as exc:
            self._error_messages(request, exc)
        except WhatsAppApiError as exc:
            messages.error(request, f"Meta refused the template: {exc}")
        except WhatsAppError as exc:
            messages.error(request, f"Could not reach Meta; the template is unchanged, try again: {exc}")
        else:
            self.log_change(request, template, f"Submitted to Meta ({template.meta_template_id}).")
            messages.success(
                request,
                f"{template} was submitted to Meta, which answered {template.get_status_display()}. "
                "Its review usually takes minutes to a day; the status updates by webhook and sync.",
            )
        return HttpResponseRedirect(self._url_for("change", template.pk))

    @method_decorator(require_POST)
    def sync_view(self, request):
        if not (self._can_author(request) or self._can_review(request)):
            raise PermissionDenied
        changelist = self._url_for("changelist")
        waba_ids = default_waba_ids()
        if not waba_ids:
            messages.error(request, "Set WHATSAPP_BUSINESS_ACCOUNT_ID to sync templates with Meta.")
            return HttpResponseRedirect(changelist)
        with sync_lock() as acquired:
            if not acquired:
                messages.warning(request, "A template sync is already running; try again in a minute.")
                return HttpResponseRedirect(changelist)
            report = templates_sync_accounts(waba_ids=waba_ids)
        for waba_id, exc in report.errors.items():
            messages.error(request, f"Sync with Meta failed for business account {waba_id}: {exc}")
        if report.accounts:
            totals = report.totals
            messages.success(request, f"Synced with Meta: {describe_counts(totals)}.")
            if totals["conflicts"]:
                messages.warning(
                    request,
                    f"{totals['conflicts']} local draft(s) share a name and language with a template at "
                    "Meta and were left alone; rename the draft to keep both.",
                )
        return HttpResponseRedirect(changelist)

    @method_decorator(require_POST)
    def notices_seen_view(self, request):
        if not self.has_view_permission(request):
            raise PermissionDenied
        notices_mark_seen(user=request.user)
        messages.success(request, "Meta's template changes are marked as seen.")
        return HttpResponseRedirect(self._url_for("changelist"))

    def changelist_view(self, request, extra_context=None):
        notices = [
            {
                "text": notice_text(change),
                "when": change.changed_at,
                "source": change.get_source_display(),
                "url": self._url_for("change", change.template_id),
                "status": change.new_status,
            }
            for change in notices_unseen(request.user)
        ]
        extra_context = {
            **(extra_context or {}),
            "can_sync": self._can_author(request) or self._can_review(request),
            "sync_url": self._url_for("sync"),
            "meta_notices": notices,
            "notices_seen_url": self._url_for("notices_seen"),
        }
        return super().changelist_view(request, extra_context)


WORKFLOW_STEPS = ["Draft", "Internal review", "Approved internally", "Meta's review", "Approved by Meta"]
_STEP_OF_STATUS = {
    TemplateStatus.DRAFT: 0,
    TemplateStatus.IN_INTERNAL_REVIEW: 1,
    TemplateStatus.APPROVED_INTERNALLY: 2,
    TemplateStatus.PENDING: 3,
    TemplateStatus.IN_APPEAL: 3,
    TemplateStatus.REJECTED: 3,
    TemplateStatus.APPROVED: 4,
    TemplateStatus.PAUSED: 4,
    TemplateStatus.DISABLED: 4,
}
_STOPPED_STATUSES = {TemplateStatus.REJECTED, TemplateStatus.PAUSED, TemplateStatus.DISABLED}


def workflow_steps(status: str) -> list[tuple[str, str]]:
    """(label, done|current|stopped|todo) per step, for the progress line on the change page."""
    current = _STEP_OF_STATUS.get(status)
    if current is None:  # deleted, archived, unknown…: no place on the happy path
        return [(label, "todo") for label in WORKFLOW_STEPS]
    steps = []
    for index, label in enumerate(WORKFLOW_STEPS):
        if index < current:
            state = "done"
        elif index == current:
            state = "stopped" if status in _STOPPED_STATUSES else "current"
            if status in _STOPPED_STATUSES:
                label = f"{label}: {TemplateStatus(status).label}"
        else:
            state = "todo"
        steps.append((label, state))
    return steps


# --- Saving -------------------------------------------------------------------------------------------


def template_create_from_form(form: MessageTemplateForm, *, user) -> MessageTemplate:
    data = form.cleaned_data
    return template_create(
        waba_id=data["waba_id"],
        name=data["name"],
        language=data["language"],
        category=data["category"],
        parameter_format=data["parameter_format"],
        components=form.instance.components,
        created_by=user,
    )


def sample_parameters(template: MessageTemplate) -> dict[str, Any]:
    """`render_template` arguments made of the template's own samples."""
    values = components_to_values(template.components)
    samples = values["body_samples"]
    named = template.parameter_format == ParameterFormat.NAMED
    body_names = list(dict.fromkeys(variables_in(values["body_text"])))
    if named:
        body: Any = {name: samples.get(name) or f"[{name}]" for name in body_names}
    else:
        body = [samples.get(name) or f"[{name}]" for name in body_names]
    header: Any = None
    header_format = values["header_format"]
    if header_format == "TEXT" and variables_in(values["header_text"]):
        header = values["header_sample"] or "[header]"
    elif header_format in ("IMAGE", "VIDEO", "DOCUMENT"):
        sample = values["header_sample"]
        header = sample if sample.startswith(("https://", "http://")) else "https://example.com/sample"
    elif header_format == "LOCATION":
        header = {"latitude": 0, "longitude": 0, "name": "Sample location"}
    buttons = []
    for button in values["buttons"]:
        value = None
        if button["type"] == "URL" and variables_in(button["url"]):
            prefix = button["url"].split("{{", 1)[0]
            example = button["example"]
            value = example[len(prefix) :] if example.startswith(prefix) and example != prefix else "sample"
        elif button["type"] == "COPY_CODE":
            value = button["example"] or "CODE"
        buttons.append(value)
    return {"body": body, "header": header, "buttons": buttons}


def _business_name() -> str:
    return settings.WHATSAPP.get("DISPLAY_PHONE_NUMBER") or "Your business"
