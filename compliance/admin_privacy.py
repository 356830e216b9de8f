"""Privacy requests (CCPA/CPRA) in the admin: the queue sorted by due date with its urgency flags, staff
filing (with an authorized agent's proof), each request's case page (clocks, timeline, deletion
certificate) with its actions, and the records-and-metrics page for auditors.

Imported at the end of compliance/admin.py. Every change goes through compliance.privacy; this module
only turns forms into service calls and the services' ValidationErrors into admin messages. Nobody
deletes a request here: the records are kept at least 24 months (PRIVACY_RECORD_RETENTION_DAYS).

Permissions: view_privacyrequest opens the queue and the case pages; add_privacyrequest files a request;
fulfil_privacyrequest runs every action (acknowledge, verify, extend, fulfil, deny, data packages);
view_privacy_metrics opens the records and metrics and downloads their CSV files.
"""

import json
from datetime import date, datetime, timedelta
from pathlib import PurePath
from typing import Any
from zoneinfo import ZoneInfo

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Case, IntegerField, Q, Value, When
from django.http import FileResponse, Http404, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.decorators import method_decorator
from django.utils.functional import lazy
from django.utils.html import format_html, format_html_join
from django.utils.text import capfirst, format_lazy
from django.views.decorators.http import require_POST

from compliance import deadlines
from compliance.audit import audit_record
from compliance.contacts import directory
from compliance.crypto import phone_keyed_hash
from compliance.erasure import certificate_digest, certificate_verify
from compliance.models import (
    AuditAction,
    DeletionCertificate,
    DenialBasis,
    PrivacyOutcome,
    PrivacyRequest,
    PrivacyRequestChannel,
    PrivacyRequestEvent,
    PrivacyRequestKind,
    PrivacyRequestStatus,
)
from compliance.personal_data import correctable_fields
from compliance.privacy import (
    KNOW_KINDS,
    privacy_package_build,
    privacy_package_delivered,
    privacy_package_summary,
    privacy_request_acknowledge,
    privacy_request_deny,
    privacy_request_extend,
    privacy_request_file,
    privacy_request_fulfil,
    privacy_today,
    privacy_urgency,
    privacy_verification_confirm,
    privacy_verification_start,
    privacy_verify_manually,
)
from compliance.privacy_forms import AgentProofCleaning, VerificationCodeForm
from compliance.privacy_records import (
    ALL_KINDS,
    METRIC_COLUMNS,
    privacy_metrics,
    privacy_metrics_csv,
    privacy_record_years,
    privacy_records,
    privacy_records_csv,
    privacy_records_range_check,
)

FULFIL_PERMISSION = "compliance.fulfil_privacyrequest"
METRICS_PERMISSION = "compliance.view_privacy_metrics"
TEMPLATES = "admin/compliance/privacyrequest"
Urgency = deadlines.Urgency

#: How the queue shows each urgency: (colour, label).
URGENCY_BADGES = {
    Urgency.OVERDUE: ("red", "Overdue"),
    Urgency.DUE_SOON: ("amber", "Due soon"),
    Urgency.OK: ("green", "OK"),
    Urgency.DONE: ("grey", "Done"),
}
STATUS_COLORS = {
    PrivacyRequestStatus.RECEIVED: "blue",
    PrivacyRequestStatus.AWAITING_VERIFICATION: "amber",
    PrivacyRequestStatus.VERIFIED: "teal",
    PrivacyRequestStatus.CLOSED: "grey",
}
OUTCOME_COLORS = {
    PrivacyOutcome.COMPLIED: "green",
    PrivacyOutcome.COMPLIED_IN_PART: "amber",
    PrivacyOutcome.DENIED: "red",
}
#: Manners staff record when they enter a request; the web form and the API file their own.
STAFF_CHANNELS = [
    PrivacyRequestChannel.EMAIL,
    PrivacyRequestChannel.PHONE,
    PrivacyRequestChannel.MAIL,
    PrivacyRequestChannel.IN_PERSON,
    PrivacyRequestChannel.WHATSAPP,
]
CORRECTION_PREFIX = "correct_"


def badge(color: str, text: str, *, kind: str, value: str) -> str:
    return format_html('<span class="pr-badge pr-badge--{}" data-{}="{}">{}</span>', color, kind, value, text)


def urgency_badge(privacy_request: PrivacyRequest, *, today: date | None = None) -> str:
    urgency = privacy_urgency(privacy_request, today=today)
    color, label = URGENCY_BADGES[urgency]
    return badge(color, label, kind="urgency", value=urgency.value)


def _days_left(due: date, today: date) -> str:
    left = (due - today).days
    if left < 0:
        return f"{-left} day{'s' if left != -1 else ''} overdue"
    if left == 0:
        return "due today"
    return f"{left} day{'s' if left != 1 else ''} left"


def _privacy_zone() -> ZoneInfo:
    """The calendar the deadlines are counted in: the admin shows the dates they count from in it."""
    return ZoneInfo(settings.PRIVACY_TIME_ZONE)


#: "America/Los_Angeles", read when a label is drawn (tests and deployments may change the setting).
_privacy_zone_name = lazy(lambda: settings.PRIVACY_TIME_ZONE, str)


def _local(moment: datetime | None) -> str:
    """A moment in the privacy time zone, with the zone's abbreviation (PST, PDT)."""
    return timezone.localtime(moment, _privacy_zone()).strftime("%Y-%m-%d %H:%M %Z") if moment else "—"


def _local_day(moment: datetime) -> str:
    return f"{timezone.localtime(moment, _privacy_zone()):%Y-%m-%d}"


def _reasons(exc: ValidationError) -> str:
    return " ".join(exc.messages)


def acknowledgement_html(privacy_request: PrivacyRequest, today: date) -> str:
    """The duty to confirm receipt: a short badge (its key in data-ack) and the date it is about."""
    due = privacy_request.acknowledge_due
    if due is None:
        key, color, label, note = "not_required", "grey", "Not needed", ""
    elif privacy_request.acknowledged_at is not None:
        key, color, label = "done", "green", "Sent"
        note = _local_day(privacy_request.acknowledged_at)
    elif privacy_request.is_closed:
        key, color, label, note = "not_sent", "grey", "Never sent", "answered instead"
    elif today > due:
        key, color, label, note = "overdue", "red", "Overdue", f"was due {due:%Y-%m-%d}"
    else:
        key, color, label, note = "owed", "amber", "Owed", f"by {due:%Y-%m-%d}"
    return format_html(
        '{} <span class="pr-quiet">{}</span>', badge(color, label, kind="ack", value=key), note
    )


def _acknowledgement_owed(privacy_request: PrivacyRequest) -> bool:
    return (
        not privacy_request.is_closed
        and privacy_request.acknowledge_due is not None
        and privacy_request.acknowledged_at is None
    )


# --- Queue filters ------------------------------------------------------------------------------------


def _due_soon_q(today: date) -> Q:
    """Open requests due within their rule's warning window (each rule version keeps its own)."""
    q = Q(pk__in=[])
    for version, rule in deadlines.RULES.items():
        q |= Q(
            rule_version=version,
            respond_due__gte=today,
            respond_due__lte=today + timedelta(days=rule.due_soon_days),
        )
    return q


class CapitalizedChoicesFilter(admin.ChoicesFieldListFilter):
    """The model's choices, capitalised alike (some labels are sentences, some single words)."""

    def choices(self, changelist):
        for choice in super().choices(changelist):
            yield {**choice, "display": capfirst(str(choice["display"]))}


class UrgencyFilter(admin.SimpleListFilter):
    title = "urgency"
    parameter_name = "urgency"
    OVERDUE, DUE_SOON, ACK_OVERDUE, OPEN, CLOSED = "overdue", "due_soon", "ack_overdue", "open", "closed"

    def lookups(self, request, model_admin):
        return [
            (self.OVERDUE, "Overdue"),
            (self.DUE_SOON, "Due soon"),
            (self.ACK_OVERDUE, "Acknowledgement overdue"),
            (self.OPEN, "Open"),
            (self.CLOSED, "Closed"),
        ]

    def queryset(self, request, queryset):
        today = privacy_today()
        still_open = queryset.exclude(status=PrivacyRequestStatus.CLOSED)
        match self.value():
            case self.OVERDUE:
                return still_open.filter(respond_due__lt=today)
            case self.DUE_SOON:
                return still_open.filter(_due_soon_q(today))
            case self.ACK_OVERDUE:
                return still_open.filter(acknowledged_at__isnull=True, acknowledge_due__lt=today)
            case self.OPEN:
                return still_open
            case self.CLOSED:
                return queryset.filter(status=PrivacyRequestStatus.CLOSED)
        return queryset


# --- Forms ----------------------------------------------------------------------------------------------


class PrivacyZoneDateTimeField(forms.DateTimeField):
    """A date and time typed in the privacy time zone (not the site's), like the case page shows it."""

    def to_python(self, value):
        with timezone.override(_privacy_zone()):
            return super().to_python(value)

    def prepare_value(self, value):
        if isinstance(value, datetime) and timezone.is_aware(value):
            return timezone.make_naive(value, _privacy_zone())
        return value


class PrivacyRequestFileForm(AgentProofCleaning, forms.Form):
    """A request staff received by email, phone, mail, in person or in a WhatsApp conversation."""

    kind = forms.ChoiceField(label="What the person asks for", choices=PrivacyRequestKind.choices)
    channel = forms.ChoiceField(
        label="Manner",
        choices=[(c.value, capfirst(c.label)) for c in STAFF_CHANNELS],
        help_text="How the request reached us (it is part of the record kept for 24 months).",
    )
    received_at = PrivacyZoneDateTimeField(
        label=format_lazy("Received at ({} time)", _privacy_zone_name()),
        required=False,
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
        help_text=format_lazy(
            "When the request reached us, if not just now (a letter opened yesterday): the clocks start "
            "then. In {} time, the calendar the deadlines count in.",
            _privacy_zone_name(),
        ),
    )
    phone_number = forms.CharField(
        label="WhatsApp phone number",
        max_length=40,
        help_text="The number the request is about, in any format, e.g. +1 555 012 3456.",
    )
    requester_name = forms.CharField(label="Name", max_length=200, required=False)
    requester_email = forms.EmailField(
        label="Email", required=False, help_text="Notices and the response go here."
    )
    details = forms.CharField(
        label="Details", required=False, widget=forms.Textarea(attrs={"rows": 3}), help_text="In their words."
    )
    agent_name = forms.CharField(label="Agent's name", max_length=200, required=False)
    agent_email = forms.EmailField(label="Agent's email", required=False)
    agent_proof = forms.FileField(
        label="Agent's proof",
        required=False,
        help_text="The consumer's signed permission or a power of attorney (PDF, PNG or JPEG, 10 MB at most).",
    )
    agent_proof_note = forms.CharField(
        label="About the proof",
        required=False,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="What the proof is and how you checked it.",
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Correct requests: one box per detail some app lets a person correct (messaging's profile name…).
        self.correction_fields = []
        for correctable in correctable_fields():
            name = CORRECTION_PREFIX + correctable.name
            self.fields[name] = forms.CharField(
                label=f"Corrected {correctable.label.lower()}", max_length=200, required=False
            )
            self.correction_fields.append(name)

    def clean_received_at(self):
        received_at = self.cleaned_data.get("received_at")
        if received_at and received_at > timezone.now():
            raise ValidationError("A request cannot be received in the future.", code="received_in_future")
        return received_at

    @property
    def corrections(self) -> dict[str, str]:
        return {
            name.removeprefix(CORRECTION_PREFIX): self.cleaned_data.get(name, "")
            for name in self.correction_fields
            if self.cleaned_data.get(name, "").strip()
        }

    def fieldsets(self) -> list[tuple[str | None, list[str], str]]:
        return [
            (None, ["kind", "channel", "received_at"], ""),
            ("The person", ["phone_number", "requester_name", "requester_email", "details"], ""),
            (
                "Corrections",
                self.correction_fields,
                "For correct requests only: the corrected values, as the person gave them.",
            ),
            (
                "Authorized agent",
                ["agent_name", "agent_email", "agent_proof", "agent_proof_note"],
                "Only when someone acts for the consumer: their proof of authority is required.",
            ),
        ]

    def add_service_error(self, exc: ValidationError) -> None:
        """Put each of the service's errors on the field it is about (else above the form)."""
        if not hasattr(exc, "error_dict"):
            self.add_error(None, exc)
            return
        for field, errors in exc.error_dict.items():
            target = field if field in self.fields else None
            if field == "corrections" and self.correction_fields:
                target = self.correction_fields[0]
            for error in errors:
                self.add_error(target, error)


class AcknowledgeForm(forms.Form):
    note = forms.CharField(
        label="How you confirmed receipt",
        required=False,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="Needed only when we have no email or WhatsApp conversation to send the confirmation to "
        "(e.g. by phone on 3 March).",
    )


class ManualVerificationForm(forms.Form):
    note = forms.CharField(
        label="How you verified the person",
        required=False,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="E.g. called the number back and matched the order number and address we hold.",
    )


class ExtendForm(forms.Form):
    reason = forms.CharField(
        label="Reason (sent to the person)", required=False, widget=forms.Textarea(attrs={"rows": 2})
    )
    extra_days = forms.IntegerField(label="Extra days", initial=45, help_text="At most 45 calendar days.")
    notice_note = forms.CharField(
        label="How you told them",
        required=False,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="Needed only when we have no email or WhatsApp conversation for them.",
    )


class CheckCodeForm(VerificationCodeForm):
    """The code a person reads out to staff (a request filed by staff has no status page to enter it)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["code"].label = "Code the person read out"
        self.fields["code"].widget.attrs.update(inputmode="numeric", autocomplete="off")


class FulfilForm(forms.Form):
    outcome = forms.ChoiceField(
        label="Outcome",
        choices=[
            (PrivacyOutcome.COMPLIED, capfirst(PrivacyOutcome.COMPLIED.label)),
            (PrivacyOutcome.COMPLIED_IN_PART, capfirst(PrivacyOutcome.COMPLIED_IN_PART.label)),
        ],
        initial=PrivacyOutcome.COMPLIED,
        widget=forms.RadioSelect,
    )
    summary = forms.CharField(
        label="Summary",
        required=False,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="Required when complying in part: what was not done, and why.",
    )


class DenyForm(forms.Form):
    basis = forms.ChoiceField(
        label="Basis for the denial",
        choices=[("", "—"), *((value, capfirst(label)) for value, label in DenialBasis.choices)],
        required=False,
    )
    explanation = forms.CharField(
        label="Explanation (sent to the person)", required=False, widget=forms.Textarea(attrs={"rows": 2})
    )


class RecordsRangeForm(forms.Form):
    start = forms.DateField(label="From", widget=forms.DateInput(attrs={"type": "date"}))
    end = forms.DateField(label="To", widget=forms.DateInput(attrs={"type": "date"}))

    def clean(self):
        data = super().clean()
        if data.get("start") and data.get("end"):
            # Backwards, longer than ten years, or beyond the calendar the records can count in.
            privacy_records_range_check(start=data["start"], end=data["end"])
        return data


# --- The admin ------------------------------------------------------------------------------------------


@admin.register(PrivacyRequest)
class PrivacyRequestAdmin(admin.ModelAdmin):
    list_display = [
        "reference",
        "kind_display",
        "manner",
        "status_badge",
        "received",
        "respond_by",
        "acknowledgement",
        "outcome_badge",
    ]
    list_filter = [
        UrgencyFilter,
        ("status", CapitalizedChoicesFilter),
        ("kind", CapitalizedChoicesFilter),
        ("channel", CapitalizedChoicesFilter),
        ("outcome", CapitalizedChoicesFilter),
    ]
    search_fields = ["reference"]
    search_help_text = "A reference (PR-…) or the person's phone number as you would type it."
    list_per_page = 50
    actions = None
    change_list_template = f"{TEMPLATES}/change_list.html"
    change_form_template = f"{TEMPLATES}/change_form.html"

    # --- Permissions ----------------------------------------------------------------------------------

    def has_change_permission(self, request, obj=None) -> bool:
        # The case page is read-only for everyone: requests change only through the actions below.
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # the record of every request is kept at least 24 months

    def has_fulfil_permission(self, request) -> bool:
        return request.user.has_perm(FULFIL_PERMISSION)

    def has_metrics_permission(self, request) -> bool:
        return request.user.has_perm(METRICS_PERMISSION)

    # --- Queue ----------------------------------------------------------------------------------------

    def get_ordering(self, request):
        # Open requests first, each group by due date: the top of the list is what needs doing next.
        closed_last = Case(
            When(status=PrivacyRequestStatus.CLOSED, then=Value(1)),
            default=Value(0),
            output_field=IntegerField(),
        )
        return [closed_last.asc(), "respond_due", "received_at"]

    def get_search_results(self, request, queryset, search_term):
        results, may_have_duplicates = super().get_search_results(request, queryset, search_term)
        # The number itself may be erased from the request: its keyed hash stays and still matches.
        try:
            e164 = directory().phone_number_normalize(search_term.strip())
        except ValidationError:
            return results, may_have_duplicates
        return results | queryset.filter(phone_hash=phone_keyed_hash(e164)), may_have_duplicates

    @admin.display(description="kind", ordering="kind")
    def kind_display(self, obj: PrivacyRequest) -> str:
        return obj.get_kind_display()

    @admin.display(description="manner", ordering="channel")
    def manner(self, obj: PrivacyRequest) -> str:
        return capfirst(obj.get_channel_display())

    @admin.display(description="status", ordering="status")
    def status_badge(self, obj: PrivacyRequest) -> str:
        return badge(
            STATUS_COLORS.get(obj.status, "grey"),
            capfirst(obj.get_status_display()),
            kind="status",
            value=obj.status,
        )

    @admin.display(description=format_lazy("received ({})", _privacy_zone_name()), ordering="received_at")
    def received(self, obj: PrivacyRequest) -> str:
        # The day the deadlines count from, in their calendar: 21:00 in California on 1 March is the 1st.
        return format_html(
            '<time datetime="{}" title="{}">{}</time>',
            obj.received_at.isoformat(),
            _local(obj.received_at),
            _local_day(obj.received_at),
        )

    @admin.display(description=format_lazy("received at ({} time)", _privacy_zone_name()))
    def received_at_local(self, obj: PrivacyRequest) -> str:
        return _local(obj.received_at)

    @admin.display(description="respond by", ordering="respond_due")
    def respond_by(self, obj: PrivacyRequest) -> str:
        today = privacy_today()
        return format_html(
            '{} {} <span class="pr-quiet">{}</span>',
            f"{obj.respond_due:%Y-%m-%d}",
            urgency_badge(obj, today=today),
            "" if obj.is_closed else _days_left(obj.respond_due, today),
        )

    @admin.display(description="acknowledgement", ordering="acknowledge_due")
    def acknowledgement(self, obj: PrivacyRequest) -> str:
        return acknowledgement_html(obj, privacy_today())

    @admin.display(description="outcome", ordering="outcome")
    def outcome_badge(self, obj: PrivacyRequest) -> str:
        if not obj.outcome:
            return "—"
        return badge(
            OUTCOME_COLORS.get(obj.outcome, "grey"),
            capfirst(obj.get_outcome_display()),
            kind="outcome",
            value=obj.outcome,
        )

    def changelist_view(self, request, extra_context=None):
        extra_context = {
            **(extra_context or {}),
            "can_see_metrics": self.has_metrics_permission(request),
            "records_url": self._url("records"),
        }
        return super().changelist_view(request, extra_context)

    # --- URLs -----------------------------------------------------------------------------------------

    def get_urls(self):
        view = self.admin_site.admin_view
        prefix = f"{self.opts.app_label}_{self.opts.model_name}"
        case_views = [
            ("acknowledge", self.acknowledge_view),
            ("send-code", self.send_code_view),
            ("check-code", self.check_code_view),
            ("verify", self.verify_view),
            ("extend", self.extend_view),
            ("fulfil", self.fulfil_view),
            ("deny", self.deny_view),
            ("package.json", self.package_json_view),
            ("package.txt", self.package_summary_view),
            ("certificate.json", self.certificate_view),
            ("agent-proof", self.agent_proof_view),
        ]
        # Before the default URLs, whose "<path:object_id>/" would take these.
        return [
            path("records/", view(self.records_view), name=f"{prefix}_records"),
            path("records/requests.csv", view(self.records_csv_view), name=f"{prefix}_records_csv"),
            path("records/metrics.csv", view(self.metrics_csv_view), name=f"{prefix}_metrics_csv"),
            *(
                path(
                    f"<path:object_id>/{suffix}/",
                    view(handler),
                    name=f"{prefix}_{suffix.replace('-', '_').replace('.', '_')}",
                )
                for suffix, handler in case_views
            ),
            *super().get_urls(),
        ]

    def _url(self, name: str, *args) -> str:
        return reverse(
            f"{self.admin_site.name}:{self.opts.app_label}_{self.opts.model_name}_{name}", args=args
        )

    def _case_or_404(self, request, object_id) -> PrivacyRequest:
        # get_object answers None for an id that is not one (…/privacyrequest/abc/fulfil/), not a 500.
        privacy_request = self.get_object(request, unquote(object_id))
        if privacy_request is None:
            raise Http404("No privacy request with this id.")
        if not self.has_view_permission(request, privacy_request):
            raise PermissionDenied
        return privacy_request

    # --- Filing ---------------------------------------------------------------------------------------

    def add_view(self, request, form_url="", extra_context=None):
        if not self.has_add_permission(request):
            raise PermissionDenied
        if request.method == "POST":
            form = PrivacyRequestFileForm(request.POST, request.FILES)
            if form.is_valid():
                filed = self._file(request, form)
                if filed is not None:
                    return HttpResponseRedirect(self._url("change", filed.pk))
        else:
            form = PrivacyRequestFileForm()
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "File a privacy request",
            "form": form,
            "fieldsets": [
                (title, [form[name] for name in names], description)
                for title, names, description in form.fieldsets()
                if names
            ],
            "changelist_url": self._url("changelist"),
        }
        return TemplateResponse(request, f"{TEMPLATES}/file.html", context)

    def _file(self, request, form: PrivacyRequestFileForm) -> PrivacyRequest | None:
        data = form.cleaned_data
        try:
            filed = privacy_request_file(
                kind=data["kind"],
                channel=data["channel"],
                phone_number=data["phone_number"],
                requester_name=data["requester_name"],
                requester_email=data["requester_email"],
                details=data["details"],
                corrections=form.corrections,
                agent_name=data["agent_name"],
                agent_email=data["agent_email"],
                agent_proof=data["agent_proof"],
                agent_proof_note=data["agent_proof_note"],
                filed_by=request.user,
                received_at=data["received_at"],
            )
        except ValidationError as exc:
            form.add_service_error(exc)
            return None
        filed.refresh_from_db()  # an opt-out was fulfilled (and closed) on a copy of its own
        if filed.is_closed:
            done = f"done at once: {filed.response_summary}"
        else:
            done = f"respond by {filed.respond_due:%Y-%m-%d}."
        self.message_user(request, f"Filed {filed.reference}; {done}", messages.SUCCESS)
        return filed

    # --- The case page --------------------------------------------------------------------------------

    def get_fieldsets(self, request, obj=None):
        fieldsets = [
            (
                "Request",
                {
                    "fields": [
                        "reference",
                        "kind",
                        "channel",
                        "status_badge",
                        "received_at_local",
                        "filed_by",
                        "details",
                        "corrections_display",
                    ]
                },
            ),
            (
                "The person",
                {
                    "fields": [
                        "phone_number",
                        "requester_name",
                        "requester_email",
                        "contact_id",
                        "identity_erased_at",
                    ]
                },
            ),
            (
                "Authorized agent",
                {"fields": ["agent_name", "agent_email", "agent_proof_link", "agent_proof_note"]},
            ),
            (
                "Clocks",
                {
                    "fields": [
                        "rule_version",
                        "acknowledge_by",
                        "acknowledgement",
                        "respond_by",
                        "original_due",
                        "extension",
                    ]
                },
            ),
            (
                "Identity verification",
                {"fields": ["verification_method", "verification_note", "verified_at", "verified_by"]},
            ),
            (
                "Response",
                {
                    "fields": [
                        "outcome_badge",
                        "responded_at",
                        "handled_by",
                        "response_summary",
                        "denial_basis",
                        "denial_explanation",
                    ]
                },
            ),
        ]
        if obj is not None and obj.kind == PrivacyRequestKind.DELETE:
            fieldsets.append(("Deletion certificate", {"fields": ["deletion_certificate"]}))
        fieldsets.append(("Timeline", {"fields": ["timeline"]}))
        return fieldsets

    @admin.display(description="corrections")
    def corrections_display(self, obj: PrivacyRequest) -> str:
        if not obj.corrections:
            return "—"
        return format_html_join(", ", "{} → “{}”", sorted(obj.corrections.items()))

    @admin.display(description="proof of authority")
    def agent_proof_link(self, obj: PrivacyRequest) -> str:
        if obj.agent_proof:
            return format_html(
                '<a href="{}" id="pr-agent-proof">Download {}</a> <span class="pr-quiet">SHA-256 {}</span>',
                self._url("agent_proof", obj.pk),
                PurePath(obj.agent_proof.name).name,
                obj.agent_proof_sha256,
            )
        if obj.agent_proof_sha256:
            return f"Erased with the person's data (SHA-256 {obj.agent_proof_sha256})"
        return "—"

    @admin.display(description="acknowledge by")
    def acknowledge_by(self, obj: PrivacyRequest) -> str:
        if obj.acknowledge_due is None:
            return "Not needed (opt-out and limit requests are simply done)"
        return f"{obj.acknowledge_due:%Y-%m-%d} (10 business days after receipt)"

    @admin.display(description="first respond-by date")
    def original_due(self, obj: PrivacyRequest) -> str:
        return f"{obj.original_respond_due:%Y-%m-%d}"

    @admin.display(description="extension")
    def extension(self, obj: PrivacyRequest) -> str:
        if not obj.is_extended:
            return "Not extended"
        return format_html(
            "Extended on {} from {} to {}: {}",
            _local_day(obj.extended_at),
            f"{obj.original_respond_due:%Y-%m-%d}",
            f"{obj.respond_due:%Y-%m-%d}",
            obj.extension_reason,
        )

    @admin.display(description="certificate")
    def deletion_certificate(self, obj: PrivacyRequest) -> str:
        certificate = DeletionCertificate.objects.filter(request=obj).first()
        if certificate is None:
            if obj.erasure_queued_at and not obj.is_closed:
                return f"Erasure running in the background since {obj.erasure_queued_at:%Y-%m-%d %H:%M} UTC."
            return "Issued when the request is fulfilled."
        verifies = certificate_verify(certificate)
        return format_html(
            '<p>SHA-256 <code id="pr-certificate-digest">{}</code> · verifies: '
            '<strong id="pr-certificate-verifies" class="pr-verifies--{}">{}</strong> · '
            '<a href="{}" id="pr-certificate-download">Download the certificate (JSON)</a></p>'
            '<pre class="pr-certificate" id="pr-certificate-body">{}</pre>',
            certificate.digest,
            "yes" if verifies else "no",
            "yes" if verifies else "NO: the stored body no longer matches its digest",
            self._url("certificate_json", obj.pk),
            json.dumps(certificate.body, indent=2, sort_keys=True, ensure_ascii=False),
        )

    @admin.display(description="events")
    def timeline(self, obj: PrivacyRequest) -> str:
        events = list(PrivacyRequestEvent.objects.filter(request=obj).order_by("at", "id"))
        if not events:
            return "—"
        rows = format_html_join(
            "",
            '<tr data-action="{}"><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>',
            (
                (
                    event.action,
                    _local(event.at),
                    capfirst(event.get_action_display()),
                    event.username,
                    event.detail,
                )
                for event in events
            ),
        )
        return format_html(
            '<table class="pr-table" id="pr-timeline"><thead><tr><th scope="col">When</th>'
            '<th scope="col">What</th><th scope="col">Who</th><th scope="col">Detail</th></tr></thead>'
            "<tbody>{}</tbody></table>",
            rows,
        )

    readonly_fields = [
        "status_badge",
        "received_at_local",
        "acknowledge_by",
        "original_due",
        "corrections_display",
        "agent_proof_link",
        "acknowledgement",
        "respond_by",
        "extension",
        "outcome_badge",
        "deletion_certificate",
        "timeline",
    ]

    def change_view(self, request, object_id, form_url="", extra_context=None):
        privacy_request = self.get_object(request, unquote(object_id))
        if privacy_request is not None and self.has_view_permission(request, privacy_request):
            extra_context = {
                **(extra_context or {}),
                "title": f"{privacy_request.reference} · {privacy_request.get_kind_display()}",
                "subtitle": None,
                "case": self._case_context(request, privacy_request),
            }
        response = super().change_view(request, object_id, form_url, extra_context)
        if request.method == "GET" and response.status_code == 200 and privacy_request is not None:
            audit_record(
                request=request,
                action=AuditAction.VIEW,
                object_type=PrivacyRequest,
                object_id=privacy_request.pk,
                summary=f"privacy request {privacy_request.reference}",
            )
        return response

    def _case_context(self, request, privacy_request: PrivacyRequest) -> dict[str, Any]:
        today = privacy_today()
        is_open = not privacy_request.is_closed
        awaiting = privacy_request.status == PrivacyRequestStatus.AWAITING_VERIFICATION
        can_act = self.has_fulfil_permission(request)
        return {
            "urgency": urgency_badge(privacy_request, today=today),
            "days_left": _days_left(privacy_request.respond_due, today) if is_open else "",
            "acknowledgement": acknowledgement_html(privacy_request, today),
            "can_act": can_act and is_open,
            "read_only_reason": ""
            if can_act
            else "You can read this request; acting on it needs the Compliance officer role.",
            "show_acknowledge": _acknowledgement_owed(privacy_request),
            "show_verification": awaiting,
            "show_extend": is_open
            and not privacy_request.is_extended
            and privacy_request.kind in deadlines.EXTENDABLE_KINDS,
            "acknowledge_form": AcknowledgeForm(prefix="ack"),
            "verify_form": ManualVerificationForm(prefix="verify"),
            "check_code_form": CheckCodeForm(prefix="code"),
            "code_ttl_minutes": settings.PRIVACY_CODE_TTL_MINUTES,
            "extend_form": ExtendForm(prefix="extend"),
            "fulfil_form": FulfilForm(prefix="fulfil"),
            "deny_form": DenyForm(prefix="deny"),
            "urls": {
                name: self._url(name, privacy_request.pk)
                for name in ("acknowledge", "send_code", "check_code", "verify", "extend", "fulfil", "deny")
            },
            "packages": self._packages_context(request, privacy_request),
        }

    def _package_refusal(self, privacy_request: PrivacyRequest) -> str:
        """Why no data package can be handed out for this request now ("" when one can)."""
        if privacy_request.kind not in KNOW_KINDS:
            return "Only right-to-know requests have a data package."
        if privacy_request.identity_erased_at is not None:
            return "The person was erased: there is nothing left to put in a package."
        if privacy_request.outcome == PrivacyOutcome.DENIED:
            return "The request was denied."
        if privacy_request.status not in (PrivacyRequestStatus.VERIFIED, PrivacyRequestStatus.CLOSED):
            return "Verify the person's identity before preparing their data."
        return ""

    def _packages_context(self, request, privacy_request: PrivacyRequest) -> dict[str, Any] | None:
        if privacy_request.kind not in KNOW_KINDS or not self.has_fulfil_permission(request):
            return None
        return {
            "refusal": self._package_refusal(privacy_request),
            "json_url": self._url("package_json", privacy_request.pk),
            "summary_url": self._url("package_txt", privacy_request.pk),
        }

    # --- Actions (POST, fulfil permission) -----------------------------------------------------------

    def _act(self, request, object_id, form_class, prefix: str, run, *, doing: str):
        """Validate the action's form, run the service, and show its outcome or its reasons."""
        privacy_request = self._case_or_404(request, object_id)
        if not self.has_fulfil_permission(request):
            raise PermissionDenied
        form = form_class(request.POST, prefix=prefix) if form_class else None
        if form is not None and not form.is_valid():
            problems = [f"{form.fields[f].label if f in form.fields else ''}: {' '.join(e)}".lstrip(": ")
                        for f, e in form.errors.items()]  # fmt: skip
            self.message_user(request, f"Could not {doing}: {' '.join(problems)}", messages.ERROR)
        else:
            try:
                done = run(privacy_request, form.cleaned_data if form is not None else {})
            except ValidationError as exc:
                self.message_user(request, f"Could not {doing}: {_reasons(exc)}", messages.ERROR)
            else:
                self.message_user(request, done[0], done[1])
        return HttpResponseRedirect(self._url("change", privacy_request.pk))

    @method_decorator(require_POST)
    def acknowledge_view(self, request, object_id):
        def run(privacy_request, data):
            privacy_request_acknowledge(request=privacy_request, user=request.user, note=data["note"])
            return "Receipt acknowledged.", messages.SUCCESS

        return self._act(request, object_id, AcknowledgeForm, "ack", run, doing="acknowledge")

    @method_decorator(require_POST)
    def send_code_view(self, request, object_id):
        def run(privacy_request, data):
            if privacy_verification_start(request=privacy_request, user=request.user):
                return "A one-time code was sent to the person's WhatsApp number.", messages.SUCCESS
            return (
                "No code could be sent: we have no WhatsApp conversation with this number, or the "
                "verification template is missing. Verify the person another way and record it.",
                messages.WARNING,
            )

        return self._act(request, object_id, None, "", run, doing="send a code")

    @method_decorator(require_POST)
    def check_code_view(self, request, object_id):
        """The code the person read out to staff, checked like one typed on the status page (the same
        attempts, expiry and limits), for requests filed by staff, which have no status page."""

        def run(privacy_request, data):
            privacy_verification_confirm(request=privacy_request, code=data["code"], user=request.user)
            return "The code is right: identity verified.", messages.SUCCESS

        return self._act(request, object_id, CheckCodeForm, "code", run, doing="check the code")

    @method_decorator(require_POST)
    def verify_view(self, request, object_id):
        def run(privacy_request, data):
            privacy_verify_manually(request=privacy_request, user=request.user, note=data["note"])
            return "Identity verified.", messages.SUCCESS

        return self._act(request, object_id, ManualVerificationForm, "verify", run, doing="verify")

    @method_decorator(require_POST)
    def extend_view(self, request, object_id):
        def run(privacy_request, data):
            extended = privacy_request_extend(
                request=privacy_request,
                user=request.user,
                reason=data["reason"],
                extra_days=data["extra_days"],
                notice_note=data["notice_note"],
            )
            return f"Extended: respond by {extended.respond_due:%Y-%m-%d}.", messages.SUCCESS

        return self._act(request, object_id, ExtendForm, "extend", run, doing="extend")

    @method_decorator(require_POST)
    def fulfil_view(self, request, object_id):
        def run(privacy_request, data):
            done = privacy_request_fulfil(
                request=privacy_request, user=request.user, outcome=data["outcome"], summary=data["summary"]
            )
            if not done.is_closed:  # a deletion, erasing in a background worker
                return (
                    "Erasure started in the background: the request closes, and its deletion certificate "
                    "appears here, when it is done.",
                    messages.SUCCESS,
                )
            return f"Fulfilled and closed: {done.response_summary}", messages.SUCCESS

        return self._act(request, object_id, FulfilForm, "fulfil", run, doing="fulfil")

    @method_decorator(require_POST)
    def deny_view(self, request, object_id):
        def run(privacy_request, data):
            privacy_request_deny(
                request=privacy_request,
                user=request.user,
                basis=data["basis"],
                explanation=data["explanation"],
            )
            return "Denied and closed; the person was told why.", messages.WARNING

        return self._act(request, object_id, DenyForm, "deny", run, doing="deny")

    # --- Downloads ------------------------------------------------------------------------------------

    def _package_or_refuse(self, request, object_id):
        privacy_request = self._case_or_404(request, object_id)
        if not self.has_fulfil_permission(request):
            raise PermissionDenied
        refusal = self._package_refusal(privacy_request)
        if refusal:
            self.message_user(request, f"No data package: {refusal}", messages.ERROR)
            return privacy_request, None
        return privacy_request, privacy_package_build(request=privacy_request)

    def _record_download(self, request, privacy_request, package, form: str) -> None:
        privacy_package_delivered(
            request=privacy_request,
            package=package,
            user=request.user,
            how=f"downloaded by {request.user.get_username()} ({form})",
        )
        audit_record(
            request=request,
            action=AuditAction.EXPORT,
            object_type=PrivacyRequest,
            object_id=privacy_request.pk,
            summary=f"data package of {privacy_request.reference} ({form})",
        )

    def package_json_view(self, request, object_id):
        privacy_request, package = self._package_or_refuse(request, object_id)
        if package is None:
            return HttpResponseRedirect(self._url("change", privacy_request.pk))
        self._record_download(request, privacy_request, package, "JSON")
        response = HttpResponse(
            json.dumps(package, indent=2, ensure_ascii=False, default=str),
            content_type="application/json; charset=utf-8",
        )
        response["Content-Disposition"] = f'attachment; filename="{privacy_request.reference}-data.json"'
        return response

    def package_summary_view(self, request, object_id):
        privacy_request, package = self._package_or_refuse(request, object_id)
        if package is None:
            return HttpResponseRedirect(self._url("change", privacy_request.pk))
        self._record_download(request, privacy_request, package, "readable summary")
        response = HttpResponse(privacy_package_summary(package), content_type="text/plain; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="{privacy_request.reference}-summary.txt"'
        return response

    def certificate_view(self, request, object_id):
        """The certificate's canonical JSON: `sha256sum` of the file is the digest on the case page."""
        privacy_request = self._case_or_404(request, object_id)
        certificate = get_object_or_404(DeletionCertificate, request=privacy_request)
        canonical = json.dumps(certificate.body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        audit_record(
            request=request,
            action=AuditAction.EXPORT,
            object_type=DeletionCertificate,
            object_id=certificate.pk,
            summary=f"deletion certificate of {privacy_request.reference}",
        )
        response = HttpResponse(canonical.encode(), content_type="application/json; charset=utf-8")
        response["Content-Disposition"] = (
            f'attachment; filename="{privacy_request.reference}-deletion-certificate.json"'
        )
        response["X-Certificate-SHA256"] = certificate_digest(certificate.body)
        return response

    def agent_proof_view(self, request, object_id):
        """The agent's proof, to staff who may read the request only (it is never under MEDIA_URL)."""
        privacy_request = self._case_or_404(request, object_id)
        if not privacy_request.agent_proof:
            raise Http404("No proof document is stored for this request.")
        try:
            handle = privacy_request.agent_proof.open("rb")
        except FileNotFoundError:
            raise Http404("The proof document is missing from storage.") from None
        audit_record(
            request=request,
            action=AuditAction.EXPORT,
            object_type=PrivacyRequest,
            object_id=privacy_request.pk,
            summary=f"agent's proof of {privacy_request.reference}",
        )
        return FileResponse(
            handle, as_attachment=True, filename=PurePath(privacy_request.agent_proof.name).name
        )

    # --- Records and metrics (view_privacy_metrics) --------------------------------------------------

    def _require_metrics(self, request) -> None:
        if not self.has_metrics_permission(request):
            raise PermissionDenied

    def _year(self, request) -> int:
        years = privacy_record_years()
        try:
            year = int(request.GET.get("year", ""))
        except ValueError:
            return years[0]
        return year if 1970 <= year <= years[0] else years[0]

    def records_view(self, request):
        self._require_metrics(request)
        year = self._year(request)
        today = privacy_today()
        range_form = RecordsRangeForm(
            initial={"start": date(year, 1, 1), "end": min(date(year, 12, 31), today)}
        )
        metrics = privacy_metrics(year=year)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": f"Privacy request records and metrics, {year}",
            "year": year,
            "years": privacy_record_years(),
            "metrics": [row for row in metrics if row["kind"] != ALL_KINDS],
            "totals": next(row for row in metrics if row["kind"] == ALL_KINDS),
            "metric_columns": METRIC_COLUMNS,
            "range_form": range_form,
            "changelist_url": self._url("changelist"),
            "records_csv_url": self._url("records_csv"),
            "metrics_csv_url": f"{self._url('metrics_csv')}?year={year}",
            "retention_days": settings.PRIVACY_RECORD_RETENTION_DAYS,
            "time_zone": settings.PRIVACY_TIME_ZONE,
        }
        return TemplateResponse(request, f"{TEMPLATES}/records.html", context)

    def _csv_response(self, content: str, filename: str) -> HttpResponse:
        # A byte-order mark, so spreadsheet programs open the UTF-8 file with the right characters.
        response = HttpResponse(("\ufeff" + content).encode(), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="{filename}"'
        return response

    def records_csv_view(self, request):
        self._require_metrics(request)
        form = RecordsRangeForm(request.GET)
        if not form.is_valid():
            problems = " ".join(message for errors in form.errors.values() for message in errors)
            self.message_user(request, f"Choose a date range: {problems}", messages.ERROR)
            return HttpResponseRedirect(self._url("records"))
        start, end = form.cleaned_data["start"], form.cleaned_data["end"]
        rows = privacy_records(start=start, end=end)
        audit_record(
            request=request,
            action=AuditAction.EXPORT,
            object_type=PrivacyRequest,
            summary=f"privacy request records {start:%Y-%m-%d} to {end:%Y-%m-%d}: {len(rows)} rows (CSV)",
        )
        return self._csv_response(
            privacy_records_csv(rows), f"privacy-requests-{start:%Y-%m-%d}-to-{end:%Y-%m-%d}.csv"
        )

    def metrics_csv_view(self, request):
        self._require_metrics(request)
        year = self._year(request)
        rows = privacy_metrics(year=year)
        audit_record(
            request=request,
            action=AuditAction.EXPORT,
            object_type=PrivacyRequest,
            summary=f"privacy request metrics {year} (CSV)",
        )
        return self._csv_response(privacy_metrics_csv(rows), f"privacy-request-metrics-{year}.csv")


# --- What the case page shows, also browsable on its own (read-only) ----------------------------------


class _ReadOnly(admin.ModelAdmin):
    actions = None

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(PrivacyRequestEvent)
class PrivacyRequestEventAdmin(_ReadOnly):
    list_display = ["at", "request", "action", "username", "detail"]
    list_filter = ["action"]
    list_select_related = ["request"]
    search_fields = ["request__reference", "username"]
    show_full_result_count = False
    ordering = ["-at", "-id"]
    fields = ["request", "action", "at", "user_id", "username", "detail"]
    readonly_fields = fields


@admin.register(DeletionCertificate)
class DeletionCertificateAdmin(_ReadOnly):
    list_display = ["request", "finished_at", "digest", "verifies"]
    list_select_related = ["request"]
    search_fields = ["request__reference", "digest"]
    ordering = ["-finished_at"]
    fields = ["request", "started_at", "finished_at", "digest", "verifies", "body_pretty"]
    readonly_fields = fields

    @admin.display(description="verifies", boolean=True)
    def verifies(self, certificate: DeletionCertificate) -> bool:
        return certificate_verify(certificate)

    @admin.display(description="body")
    def body_pretty(self, certificate: DeletionCertificate) -> str:
        return format_html(
            '<pre class="pr-certificate">{}</pre>',
            json.dumps(certificate.body, indent=2, sort_keys=True, ensure_ascii=False),
        )
