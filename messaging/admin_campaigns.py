"""Campaigns in the admin: create and edit drafts (parameter mapping checked against the template's
slots, an uploaded audience list), a dry run page (who receives it, who is excluded and why) with a CSV
download, and the approval buttons: Submit (drafts), Approve / Reject with a reason (pending campaigns,
for people allowed to approve). Once started, the campaign's page shows its live progress (polled from
`progress.json`), Pause / Resume / Cancel for people allowed to control campaigns, its totals (failures
by error code, exclusions by reason, cost), its history, and links to its recipients (a read-only
changelist) and their results as CSV. Imported at the end of messaging/admin.py; the rules live in
messaging.campaigns, messaging.campaign_dispatch, messaging.campaign_results and
messaging.campaign_upload.
"""

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, HttpResponseRedirect, JsonResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.decorators import method_decorator
from django.utils.html import format_html, format_html_join
from django.views.decorators.http import require_POST

from messaging.admin_paging import BigTableAdmin
from messaging.campaign_dispatch import (
    CONTROL_CAMPAIGN,
    campaign_cancel,
    campaign_pause,
    campaign_resume,
)
from messaging.campaign_results import campaign_progress, campaign_results_csv, campaign_totals
from messaging.campaign_upload import campaign_audience_upload
from messaging.campaigns import (
    APPROVE_CAMPAIGN,
    REASON_LABELS,
    CampaignDryRun,
    campaign_approve,
    campaign_check_parameters,
    campaign_dry_run_csv,
    campaign_dry_run_request,
    campaign_dry_run_rows,
    campaign_reject,
    campaign_submit,
    dry_run_time,
)
from messaging.contact_csv import MAX_FILE_BYTES
from messaging.forms import region_choices
from messaging.models import (
    Campaign,
    CampaignDryRunReport,
    CampaignEvent,
    CampaignRecipient,
    Message,
    MessageStatus,
)
from messaging.phone import phone_normalize
from templates_app.models import MessageTemplate
from templates_app.rendering import template_slots

method_decorator_post = method_decorator(require_POST)


#: Statuses in which a campaign's numbers still move: its page polls progress.json.
LIVE_STATUSES = (Campaign.Status.APPROVED, Campaign.Status.RUNNING, Campaign.Status.PAUSED)
#: Statuses from which the campaign has recipients (its fan-out has run, or it was cancelled first).
STARTED_STATUSES = (*LIVE_STATUSES, Campaign.Status.COMPLETED, Campaign.Status.CANCELLED)
#: Which control applies in which status (the services refuse the others; the page hides them).
CONTROL_STATUSES = {
    "pause": (Campaign.Status.RUNNING,),
    "resume": (Campaign.Status.PAUSED,),
    "cancel": LIVE_STATUSES,
}


def slots_text(template: MessageTemplate | None) -> str:
    """The template's slots for people: "1. body {{1}}, 2. body {{2}}" (or why there is nothing)."""
    if template is None:
        return "Choose a template to see the values it needs."
    slots = template_slots(template)
    if not slots:
        return f"“{template.name}” needs no values: leave the list empty ([])."
    listed = ", ".join(f"{n}. {slot.label}" for n, slot in enumerate(slots, start=1))
    return f"“{template.name}” needs {len(slots)} value{'s' if len(slots) != 1 else ''}, in this order: {listed}."


class CampaignForm(forms.ModelForm):
    """The draft's form: a mapping that does not fit the template (or the uploaded list) is a form
    error on save, not a surprise at submission."""

    class Meta:
        model = Campaign
        fields = [
            "name",
            "sender",
            "template",
            "template_parameters",
            "audience_source",
            "audience_tags",
            "audience_locale",
            "frequency_cap_count",
            "frequency_cap_days",
            "scheduled_at",
        ]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Blank means the model's default ("filters", 7 days): an older form or API client that does
        # not post them keeps working.
        for name in ("audience_source", "frequency_cap_days"):
            if name in self.fields:
                self.fields[name].required = False
        if "template_parameters" in self.fields:
            field = self.fields["template_parameters"]
            field.help_text = format_html(
                '{}<br><strong id="campaign-template-slots" data-url="{}">{}</strong>',
                field.help_text,
                reverse("admin:messaging_campaign_template_slots"),
                slots_text(self._chosen_template()),
            )

    def _chosen_template(self) -> MessageTemplate | None:
        template_id = self.data.get("template") if self.is_bound else None
        if template_id:
            return (
                MessageTemplate.objects.filter(pk=template_id).first() if str(template_id).isdigit() else None
            )
        return self.instance.template if self.instance.template_id else None

    def clean_audience_source(self):
        return self.cleaned_data.get("audience_source") or Campaign.AudienceSource.FILTERS

    def clean_frequency_cap_days(self):
        days = self.cleaned_data.get("frequency_cap_days")
        return days if days is not None else Campaign._meta.get_field("frequency_cap_days").default

    def clean(self):
        cleaned = super().clean()
        template = cleaned.get("template")
        if template is None or "template_parameters" not in cleaned:
            return cleaned  # the field errors already say what to fix
        probe = Campaign(
            template=template,
            template_parameters=cleaned["template_parameters"] or [],
            audience_source=cleaned.get("audience_source") or self.instance.audience_source,
            audience_upload_summary=self.instance.audience_upload_summary,
        )
        campaign_check_parameters(probe)  # its ValidationError (with its code) is a form-level error
        return cleaned


def _upload_region_choices() -> list[tuple[str, str]]:
    # A callable, read when the form is built: region_choices() loads libphonenumber's geocoder
    # (~100 MB), which every web and worker process would carry if it ran at import.
    return [("", "(the site's default)"), *region_choices()]


class AudienceUploadForm(forms.Form):
    file = forms.FileField(
        label="CSV file",
        help_text="UTF-8 CSV with a header line naming a phone number column (phone_number, phone, "
        "whatsapp, mobile or to_number); other columns can fill template parameters.",
        widget=forms.ClearableFileInput(attrs={"accept": ".csv,.txt,text/csv"}),
    )
    default_region = forms.ChoiceField(
        label="Default country",
        choices=_upload_region_choices,
        required=False,
        help_text="Used for numbers written without a country code, e.g. “(555) 012-3456”.",
    )

    def clean_file(self):
        upload = self.cleaned_data["file"]
        if upload.size > MAX_FILE_BYTES:
            raise forms.ValidationError(
                "The file is larger than %(limit)s MB; split it into smaller lists.",
                code="file_too_large",
                params={"limit": MAX_FILE_BYTES // (1024 * 1024)},
            )
        return upload


@admin.register(Campaign)
class CampaignAdmin(admin.ModelAdmin):
    form = CampaignForm
    list_display = [
        "name",
        "status",
        "progress_column",
        "recipients_total",
        "template",
        "sender",
        "audience_locale",
        "scheduled_at",
        "created_by",
        "created_at",
    ]
    list_filter = ["status"]
    list_select_related = ["template", "sender", "created_by"]
    search_fields = ["name"]
    autocomplete_fields = ["template"]
    filter_horizontal = ["audience_tags"]
    readonly_fields = [
        "status",
        "audience_upload",
        "rejection_reason",
        "created_by",
        "created_at",
        "updated_at",
        "submitted_by",
        "submitted_at",
        "approved_by",
        "approved_at",
        "started_at",
        "finished_at",
        "recipients_total",
    ]
    fields = [*CampaignForm.Meta.fields, *readonly_fields]

    def has_change_permission(self, request, obj=None):
        # Pending and approved campaigns are frozen (shown read-only): what the approver approves is
        # what goes out. A rejected campaign is a draft again and can be fixed.
        if obj is not None and obj.status != Campaign.Status.DRAFT:
            return False
        return super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None):
        if obj is not None and obj.status != Campaign.Status.DRAFT:
            return False
        return super().has_delete_permission(request, obj)

    def get_actions(self, request):
        # "Delete selected" asks has_delete_permission without a campaign, so it would delete approved
        # and started campaigns (with their recipients and history) in bulk: drafts are deleted one
        # at a time, from their page.
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions

    # --- The list: progress without a query per row ---------------------------------------------------

    @admin.display(description="progress")
    def progress_column(self, campaign: Campaign) -> str | None:
        if campaign.status not in STARTED_STATUSES:
            return None
        # The snapshot the campaign's page and its dispatch steps keep (campaign_results.campaign_progress):
        # no counting per listed campaign.
        if campaign.status in (Campaign.Status.COMPLETED, Campaign.Status.CANCELLED):
            percent = 100  # dispatch is over (the counts are on the campaign's page)
        else:
            percent = campaign.progress_percent
        return format_html(
            '<progress class="campaign-list-progress" value="{}" max="100"></progress> {}%', percent, percent
        )

    # --- Read-only fields -------------------------------------------------------------------------

    @admin.display(description="uploaded list")
    def audience_upload(self, campaign: Campaign) -> str | None:
        summary = campaign.audience_upload_summary or {}
        if not summary:
            return "No list uploaded."
        lines = format_html_join(
            "",
            "<li>line {}: {}</li>",
            ((line.get("line"), line.get("error")) for line in summary.get("invalid_lines") or []),
        )
        return format_html(
            '<div id="campaign-upload-summary">“{}”, uploaded {} by {}: '
            '<span data-count="listed">{}</span> listed, '
            '<span data-count="not_contacts">{}</span> not contacts, '
            '<span data-count="duplicates">{}</span> duplicates, '
            '<span data-count="invalid">{}</span> invalid lines{}.{}{}</div>',
            summary.get("file_name") or "(no name)",
            summary.get("uploaded_at", ""),
            summary.get("uploaded_by") or "?",
            summary.get("listed", 0),
            summary.get("not_contacts", 0),
            summary.get("duplicates", 0),
            summary.get("invalid", 0),
            format_html(" (columns: {})", ", ".join(summary["columns"])) if summary.get("columns") else "",
            format_html('<ul class="campaign-invalid-lines">{}</ul>', lines) if lines else "",
            ""
            if campaign.audience_source == Campaign.AudienceSource.UPLOAD
            else format_html(
                " <em>Not used: the audience source is “{}”.</em>", campaign.get_audience_source_display()
            ),
        )

    # --- The change page ----------------------------------------------------------------------------

    def change_view(self, request, object_id, form_url="", extra_context=None):
        campaign = self.get_object(request, unquote(object_id))
        extra_context = extra_context or {}
        if campaign is not None and self.has_view_permission(request, campaign):
            extra_context |= self._campaign_context(request, campaign)
        return super().change_view(request, object_id, form_url, extra_context)

    def _campaign_context(self, request, campaign: Campaign) -> dict:
        can_control = request.user.has_perm(CONTROL_CAMPAIGN)
        started = campaign.status in STARTED_STATUSES
        context = {
            "can_submit": self.has_change_permission(request, campaign),
            "can_review": campaign.status == Campaign.Status.PENDING_APPROVAL
            and request.user.has_perm(APPROVE_CAMPAIGN)
            and request.user.pk not in {campaign.created_by_id, campaign.submitted_by_id},
            "can_upload": campaign.status == Campaign.Status.DRAFT
            and super().has_change_permission(request, campaign),
            "upload_url": self._url("audience", campaign.pk),
            "started": started,
            "live": campaign.status in LIVE_STATUSES,
            "live_statuses": " ".join(LIVE_STATUSES),
            "history": CampaignEvent.objects.filter(campaign=campaign).select_related("user"),
        }
        if started:
            totals = campaign_totals(campaign)
            context |= {
                "totals": totals,
                "progress": totals.progress,
                "progress_url": self._url("progress", campaign.pk),
                "controls": [
                    (action, " ".join(statuses), self._url(action, campaign.pk))
                    for action, statuses in CONTROL_STATUSES.items()
                ]
                if can_control
                else [],
                "status_display": campaign.get_status_display(),
            }
        if request.user.has_perm("messaging.view_campaignrecipient"):
            # Both list every recipient's number: the links only for those who may open them.
            context["recipients_url"] = (
                reverse("admin:messaging_campaignrecipient_changelist")
                + f"?campaign__id__exact={campaign.pk}"
            )
            if started:
                context["results_url"] = self._url("results", campaign.pk)
        return context

    def save_model(self, request, obj, form, change):
        if not change:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)

    class Media:
        js = ["messaging/campaign.js"]
        css = {"all": ["messaging/campaign.css"]}

    def get_urls(self):
        view = self.admin_site.admin_view
        prefix = f"{self.opts.app_label}_{self.opts.model_name}"
        # Before the default URLs, whose "<path:object_id>/" would take these.
        return [
            path("template-slots.json", view(self.template_slots_view), name=f"{prefix}_template_slots"),
            path("<path:object_id>/dry-run/", view(self.dry_run_view), name=f"{prefix}_dry_run"),
            path("<path:object_id>/dry-run.csv", view(self.dry_run_csv_view), name=f"{prefix}_dry_run_csv"),
            path("<path:object_id>/submit/", view(self.submit_view), name=f"{prefix}_submit"),
            path("<path:object_id>/approve/", view(self.approve_view), name=f"{prefix}_approve"),
            path("<path:object_id>/reject/", view(self.reject_view), name=f"{prefix}_reject"),
            path("<path:object_id>/progress.json", view(self.progress_view), name=f"{prefix}_progress"),
            path("<path:object_id>/results.csv", view(self.results_csv_view), name=f"{prefix}_results"),
            path("<path:object_id>/pause/", view(self.pause_view), name=f"{prefix}_pause"),
            path("<path:object_id>/resume/", view(self.resume_view), name=f"{prefix}_resume"),
            path("<path:object_id>/cancel/", view(self.cancel_view), name=f"{prefix}_cancel"),
            path("<path:object_id>/audience/", view(self.audience_upload_view), name=f"{prefix}_audience"),
            *super().get_urls(),
        ]

    def _url(self, name: str, *args) -> str:
        return reverse(
            f"{self.admin_site.name}:{self.opts.app_label}_{self.opts.model_name}_{name}", args=args
        )

    def _campaign_or_404(self, request, object_id) -> Campaign:
        campaign_id = unquote(object_id)
        if not campaign_id.isdigit():  # "abc/progress.json": no such campaign, not a 500
            raise Http404
        campaign = get_object_or_404(Campaign.objects.select_related("template", "sender"), pk=campaign_id)
        if not self.has_view_permission(request, campaign):
            raise PermissionDenied
        return campaign

    def template_slots_view(self, request):
        """The values a template needs, for the form's help while a composer picks the template."""
        if not (self.has_add_permission(request) or super().has_change_permission(request)):
            raise PermissionDenied
        template_id = request.GET.get("template", "")
        template = MessageTemplate.objects.filter(pk=template_id).first() if template_id.isdigit() else None
        slots = template_slots(template) if template else []
        return JsonResponse({"text": slots_text(template), "slots": [slot.label for slot in slots]})

    def dry_run_view(self, request, object_id):
        """The campaign's latest dry run (worked out in a worker: a large audience takes longer than a
        request may), and a button to run it (again). The page reloads itself while one is running."""
        campaign = self._campaign_or_404(request, object_id)
        if request.method == "POST":
            try:
                campaign_dry_run_request(campaign=campaign, user=request.user)
            except ValidationError as exc:
                self.message_user(request, " ".join(exc.messages), messages.ERROR)
            return HttpResponseRedirect(self._url("dry_run", campaign.pk))
        report = campaign.dry_runs.select_related("requested_by").first()
        done = report is not None and report.status == CampaignDryRunReport.Status.DONE
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": f"Dry run: {campaign}",
            "campaign": campaign,
            "report": report,
            "dry_run": CampaignDryRun.from_summary(at=report.at, summary=report.summary) if done else None,
            "change_url": self._url("change", campaign.pk),
            "csv_url": self._url("dry_run_csv", campaign.pk),
        }
        return TemplateResponse(request, "admin/messaging/campaign/dry_run.html", context)

    def dry_run_csv_view(self, request, object_id):
        """One row per person as of now (or the schedule), worked out while it downloads: the first
        rows leave at once, and no one's row is kept."""
        campaign = self._campaign_or_404(request, object_id)
        at = dry_run_time(campaign)
        try:
            rows = campaign_dry_run_rows(campaign, at=at)
        except ValidationError as exc:
            self.message_user(request, " ".join(exc.messages), messages.ERROR)
            return HttpResponseRedirect(self._url("dry_run", campaign.pk))
        response = StreamingHttpResponse(
            campaign_dry_run_csv(rows, at=at), content_type="text/csv; charset=utf-8"
        )
        response["Content-Disposition"] = f'attachment; filename="campaign-{campaign.pk}-dry-run.csv"'
        return response

    def _transition(self, request, campaign: Campaign, service, done: str, **kwargs):
        """Run one approval or control service; its refusals become error messages on the campaign's
        page."""
        try:
            service(campaign=campaign, user=request.user, **kwargs)
        except ValidationError as exc:
            self.message_user(request, " ".join(exc.messages), messages.ERROR)
        else:
            self.message_user(request, done, messages.SUCCESS)
        return HttpResponseRedirect(self._url("change", campaign.pk))

    @method_decorator_post
    def submit_view(self, request, object_id):
        campaign = self._campaign_or_404(request, object_id)
        if not super().has_change_permission(request, campaign):
            raise PermissionDenied
        return self._transition(request, campaign, campaign_submit, f"“{campaign}” is waiting for approval.")

    def _campaign_to_review(self, request, object_id) -> Campaign:
        campaign = self._campaign_or_404(request, object_id)
        if not request.user.has_perm(APPROVE_CAMPAIGN):
            raise PermissionDenied
        return campaign

    @method_decorator_post
    def approve_view(self, request, object_id):
        campaign = self._campaign_to_review(request, object_id)
        return self._transition(request, campaign, campaign_approve, f"“{campaign}” is approved.")

    @method_decorator_post
    def reject_view(self, request, object_id):
        campaign = self._campaign_to_review(request, object_id)
        reason = request.POST.get("reason", "")
        return self._transition(
            request, campaign, campaign_reject, f"“{campaign}” is back to draft.", reason=reason
        )

    # --- A started campaign: progress, results, controls ----------------------------------------------

    def progress_view(self, request, object_id):
        """Where the campaign stands (messaging.campaign_results.CampaignProgress), for the page's
        progress bar; `live` says whether the numbers can still move (the page stops polling when not)."""
        campaign = self._campaign_or_404(request, object_id)
        progress = campaign_progress(campaign)
        response = JsonResponse(
            {
                **progress.as_json(),
                "status_display": campaign.get_status_display(),
                "live": campaign.status in LIVE_STATUSES,
            }
        )
        response["Cache-Control"] = "no-store"
        return response

    def results_csv_view(self, request, object_id):
        campaign = self._campaign_or_404(request, object_id)
        # Every recipient's number and outcome: the drill-down's permission, not only the campaign's.
        if not request.user.has_perm("messaging.view_campaignrecipient"):
            raise PermissionDenied
        response = StreamingHttpResponse(
            campaign_results_csv(campaign), content_type="text/csv; charset=utf-8"
        )
        response["Content-Disposition"] = f'attachment; filename="campaign-{campaign.pk}-results.csv"'
        return response

    def _campaign_to_control(self, request, object_id) -> Campaign:
        campaign = self._campaign_or_404(request, object_id)
        if not request.user.has_perm(CONTROL_CAMPAIGN):
            raise PermissionDenied
        return campaign

    @method_decorator_post
    def pause_view(self, request, object_id):
        campaign = self._campaign_to_control(request, object_id)
        return self._transition(
            request, campaign, campaign_pause, f"“{campaign}” is paused: messages not yet sent are held."
        )

    @method_decorator_post
    def resume_view(self, request, object_id):
        campaign = self._campaign_to_control(request, object_id)
        return self._transition(request, campaign, campaign_resume, f"“{campaign}” is running again.")

    @method_decorator_post
    def cancel_view(self, request, object_id):
        campaign = self._campaign_to_control(request, object_id)
        reason = request.POST.get("reason", "")[:500]
        return self._transition(
            request, campaign, campaign_cancel, f"“{campaign}” is cancelled.", reason=reason
        )

    # --- A draft's uploaded audience list -----------------------------------------------------------

    def audience_upload_view(self, request, object_id):
        campaign = self._campaign_or_404(request, object_id)
        if not super().has_change_permission(request, campaign):
            raise PermissionDenied
        change_url = self._url("change", campaign.pk)
        if campaign.status != Campaign.Status.DRAFT:
            self.message_user(request, "Only a draft campaign's audience can be changed.", messages.ERROR)
            return HttpResponseRedirect(change_url)
        form = AudienceUploadForm(request.POST or None, request.FILES or None)
        if request.method == "POST" and form.is_valid():
            upload = form.cleaned_data["file"]
            try:
                summary = campaign_audience_upload(
                    campaign=campaign,
                    file=upload,
                    user=request.user,
                    file_name=upload.name,
                    region=form.cleaned_data["default_region"] or None,
                )
            except ValidationError as exc:
                form.add_error("file", exc)
            else:
                self.message_user(
                    request,
                    f"{summary.listed} contacts listed from “{upload.name}” "
                    f"({summary.not_contacts} not contacts, {summary.duplicates} duplicates, "
                    f"{summary.invalid} invalid lines). The campaign's audience is this list now.",
                    messages.SUCCESS,
                )
                return HttpResponseRedirect(change_url)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": f"Upload an audience list: {campaign}",
            "campaign": campaign,
            "form": form,
            "change_url": change_url,
        }
        return TemplateResponse(request, "admin/messaging/campaign/audience_upload.html", context)


class CampaignFilter(admin.SimpleListFilter):
    """`?campaign__id__exact=` from the campaign's page, without listing every campaign as a choice."""

    title = "campaign"
    parameter_name = "campaign__id__exact"

    def lookups(self, request, model_admin):
        value = self.value()
        if value and value.isdigit():
            campaign = Campaign.objects.filter(pk=value).only("name").first()
            if campaign is not None:
                return [(value, campaign.name)]
        return []

    def queryset(self, request, queryset):
        value = self.value()
        if value is None:
            return queryset
        return queryset.filter(campaign_id=value) if value.isdigit() else queryset.none()


class ReasonFilter(admin.SimpleListFilter):
    title = "reason"
    parameter_name = "reason"

    def lookups(self, request, model_admin):
        return [*REASON_LABELS.items(), ("cancelled", "Campaign cancelled")]

    def queryset(self, request, queryset):
        return queryset.filter(reason=self.value()) if self.value() else queryset


#: The statuses a campaign's messages can have (they are created queued or deferred, never drafts).
CAMPAIGN_MESSAGE_STATUSES = [
    status
    for status in MessageStatus
    if status
    not in (
        MessageStatus.DRAFT,
        MessageStatus.PENDING_APPROVAL,
        MessageStatus.REJECTED,
        MessageStatus.RECEIVED,
    )
]


class MessageStatusFilter(admin.SimpleListFilter):
    title = "message status"
    parameter_name = "message_status"

    def lookups(self, request, model_admin):
        return [(status.value, status.label) for status in CAMPAIGN_MESSAGE_STATUSES]

    def queryset(self, request, queryset):
        if not self.value():
            return queryset
        # From the campaign's messages in that status (their campaign+status index), not a join of
        # every recipient to its message: 12,000 failures of a 100,000-recipient campaign in a few ms.
        messages = Message.objects.filter(status=self.value())
        campaign_id = request.GET.get("campaign__id__exact", "")
        if campaign_id.isdigit():
            messages = messages.filter(campaign_id=int(campaign_id))
        else:
            messages = messages.filter(campaign__isnull=False)
        return queryset.filter(message_id__in=messages.values("pk"))


@admin.register(CampaignRecipient)
class CampaignRecipientAdmin(BigTableAdmin, admin.ModelAdmin):
    """Each person a started campaign is for and what became of them; read-only (the dispatch writes
    these rows). Reached from a campaign's page, filtered to it."""

    list_display = [
        "contact_link",
        "status",
        "reason_label",
        "message_link",
        "sent_at",
        "delivered_at",
        "read_at",
    ]
    list_filter = [CampaignFilter, "status", ReasonFilter, MessageStatusFilter]
    # The page's contacts and messages by two small queries after the LIMIT, not joined before it: a
    # filtered page (12,000 failures of a 100,000-recipient campaign) would join them all to sort.
    list_select_related = False
    search_fields = ["=contact__phone_number"]
    search_help_text = "A whole phone number, in any common format."
    show_full_result_count = False
    list_per_page = 100

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("contact", "message")

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def get_search_results(self, request, queryset, search_term):
        if not search_term.strip():
            return queryset, False
        # "(555) 012-3456" finds +15550123456; an exact match on the unique number (its index).
        try:
            e164 = phone_normalize(search_term)
        except ValidationError:
            e164 = search_term.strip()
        return queryset.filter(contact__phone_number=e164), False

    @admin.display(description="contact", ordering="contact__phone_number")
    def contact_link(self, recipient: CampaignRecipient) -> str:
        return format_html(
            '<a href="{}">{}</a>',
            reverse("admin:messaging_contact_change", args=[recipient.contact_id]),
            recipient.contact.phone_number,
        )

    @admin.display(description="reason", ordering="reason")
    def reason_label(self, recipient: CampaignRecipient) -> str | None:
        if not recipient.reason:
            return None
        label = REASON_LABELS.get(recipient.reason, recipient.reason)
        return format_html('<span title="{}">{}</span>', recipient.detail, label)

    @admin.display(description="message", ordering="message__status")
    def message_link(self, recipient: CampaignRecipient) -> str | None:
        message = recipient.message
        if message is None:
            return None
        return format_html(
            '<a href="{}" class="msg-status" data-status="{}">{}</a>',
            reverse("admin:messaging_message_change", args=[message.pk]),
            message.status,
            message.get_status_display(),
        )

    def _message_time(self, recipient: CampaignRecipient, name: str):
        return getattr(recipient.message, name) if recipient.message else None

    @admin.display(description="sent")
    def sent_at(self, recipient):
        return self._message_time(recipient, "sent_at")

    @admin.display(description="delivered")
    def delivered_at(self, recipient):
        return self._message_time(recipient, "delivered_at")

    @admin.display(description="read")
    def read_at(self, recipient):
        return self._message_time(recipient, "read_at")
