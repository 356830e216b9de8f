from django import forms
from django.contrib import admin

from compliance.models import ConsentText
from compliance.services import consent_text_create

# --- Consent texts: new versions only; existing ones are read-only because evidence points at them ----


class ConsentTextAddForm(forms.ModelForm):
    # Not the model field: the form would check it against the one-current-version constraint, while
    # consent_text_create retires the old current version in the same transaction.
    make_current = forms.BooleanField(
        label="Make current",
        required=False,
        initial=True,
        help_text="Show this version on the public opt-in page from now on (replacing the current one).",
    )

    class Meta:
        model = ConsentText
        fields = ["version", "business_name", "body"]
        help_texts = {
            "version": "A new name for every change of wording, e.g. 2025-06-v2. It can never be reused.",
        }


@admin.register(ConsentText)
class ConsentTextAdmin(admin.ModelAdmin):
    list_display = ["version", "business_name", "is_current", "created_at", "sha256_prefix", "created_by"]
    list_filter = ["is_current"]
    search_fields = ["version", "business_name", "body"]
    ordering = ["-created_at"]
    readonly_fields_on_change = [
        "version",
        "business_name",
        "body",
        "is_current",
        "sha256",
        "created_at",
        "created_by",
    ]

    @admin.display(description="SHA-256", ordering="sha256")
    def sha256_prefix(self, obj: ConsentText) -> str:
        return f"{obj.sha256[:12]}…"

    def get_form(self, request, obj=None, change=False, **kwargs):
        if obj is None:
            kwargs["form"] = ConsentTextAddForm
        return super().get_form(request, obj, change=change, **kwargs)

    def get_fields(self, request, obj=None):
        if obj is None:
            return [*ConsentTextAddForm.Meta.fields, "make_current"]
        return self.readonly_fields_on_change

    def get_readonly_fields(self, request, obj=None):
        return self.readonly_fields_on_change if obj is not None else []

    def has_change_permission(self, request, obj=None):
        # Existing versions never change (people's consent evidence names them); the page stays viewable.
        return obj is None and super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None):
        return False

    def save_model(self, request, obj, form, change):
        if change:  # unreachable through the admin: nothing about a saved version is editable
            return
        created = consent_text_create(
            version=form.cleaned_data["version"],
            business_name=form.cleaned_data["business_name"],
            body=form.cleaned_data["body"],
            make_current=form.cleaned_data["make_current"],
            created_by=request.user,
        )
        obj.pk = created.pk
        obj.refresh_from_db()


# --- Other registrations follow --------------------------------------------------------------------


# --- auditor views ---
# Ledger events, current consent, exports and the staff audit trail are records: nobody adds, changes
# or deletes them here, superusers included. Opening consent data leaves a "view" entry in the staff
# audit trail; the lookup and export pages leave "lookup" and "export" entries.

from django import forms  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.core.exceptions import PermissionDenied, ValidationError  # noqa: E402
from django.http import JsonResponse, StreamingHttpResponse  # noqa: E402
from django.shortcuts import get_object_or_404  # noqa: E402
from django.template.response import TemplateResponse  # noqa: E402
from django.urls import path, reverse  # noqa: E402
from django.utils import timezone  # noqa: E402
from django.utils.html import format_html, format_html_join  # noqa: E402

from compliance import crypto  # noqa: E402
from compliance.audit import audit_record  # noqa: E402
from compliance.contacts import directory  # noqa: E402
from compliance.exports import ExportError, ExportFilters, export_begin, export_manifest  # noqa: E402
from compliance.ledger import GENESIS_HASH, content_hash, event_content  # noqa: E402
from compliance.models import (  # noqa: E402
    AuditAction,
    ConsentEvent,
    ConsentExport,
    ConsentState,
    ConsentSubject,
    ConsentText,
    ExportFormat,
    Purpose,
    StaffAuditEntry,
)
from compliance.services import consent_evidence  # noqa: E402

EXPORT_PERMISSION = "compliance.export_consent"
#: Evidence keys in the order, and with the labels, the admin shows them.
EVIDENCE_LABELS = {
    "phone_number": "Phone number",
    "name": "Name",
    "ip_address": "IP address",
    "user_agent": "User agent",
    "page_url": "Page URL",
    "message_id": "WhatsApp message id",
    "reason": "Reason",
}
ERASED = "erased (this person's key was destroyed; the event still verifies)"


class ReadOnlyAdmin(admin.ModelAdmin):
    """Viewable with the model's view permission; never addable, changeable or deletable."""

    actions = None

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


class AuditedAdmin(ReadOnlyAdmin):
    """Every list and detail page shown leaves a "view" entry (no phone numbers: ids only)."""

    def audit_summary(self, obj) -> str:
        return str(obj)

    def changelist_view(self, request, extra_context=None):
        response = super().changelist_view(request, extra_context)
        if request.method == "GET" and response.status_code == 200:
            # Decoded, so that audit_record recognizes (and drops) a phone number typed into a search.
            query = ", ".join(f"{key}={value}" for key, value in request.GET.items())
            audit_record(
                request=request,
                action=AuditAction.VIEW,
                object_type=self.model,
                summary=f"list{'; ' + query if query else ''}",
            )
        return response

    def change_view(self, request, object_id, form_url="", extra_context=None):
        response = super().change_view(request, object_id, form_url, extra_context)
        if request.method == "GET" and response.status_code == 200:
            obj = response.context_data.get("original") if hasattr(response, "context_data") else None
            audit_record(
                request=request,
                action=AuditAction.VIEW,
                object_type=self.model,
                object_id=object_id,
                summary=self.audit_summary(obj) if obj is not None else "",
            )
        return response


def _evidence_items(event: ConsentEvent) -> list[tuple[str, str]] | None:
    """(label, value) pairs of the decrypted evidence, or None once the person's key is gone."""
    try:
        evidence = consent_evidence(event)
    except crypto.EvidenceUnavailable:
        return None
    items = [(label, str(evidence[key])) for key, label in EVIDENCE_LABELS.items() if evidence.get(key)]
    items += [(key, str(value)) for key, value in evidence.items() if key not in EVIDENCE_LABELS and value]
    if event.staff_user_id is not None:
        staff = get_user_model().objects.filter(pk=event.staff_user_id).first()
        items.append(
            ("Staff user", f"{staff.get_username() if staff else 'deleted user'} (id {event.staff_user_id})")
        )
    return items


def _texts_for(events: list[ConsentEvent]) -> dict[str, ConsentText]:
    versions = {event.text_version for event in events if event.text_version}
    return {text.version: text for text in ConsentText.objects.filter(version__in=versions)}


class ConsentLookupForm(forms.Form):
    phone_number = forms.CharField(
        max_length=40,
        help_text="Any format, e.g. +1 555 012 3456 or (555) 012-3456. It is not stored in the audit trail.",
    )

    def clean_phone_number(self):
        # The directory normalizes the number and raises ValidationError for one that cannot exist.
        return directory().contact_for_phone(phone_number=self.cleaned_data["phone_number"], create=False)


class ConsentExportForm(forms.Form):
    format = forms.ChoiceField(
        choices=ExportFormat.choices, initial=ExportFormat.JSONL, widget=forms.RadioSelect
    )
    since = forms.DateField(
        required=False,
        widget=forms.DateInput(attrs={"type": "date"}),
        help_text="First day, inclusive (UTC).",
    )
    until = forms.DateField(
        required=False, widget=forms.DateInput(attrs={"type": "date"}), help_text="Last day, inclusive (UTC)."
    )
    purpose = forms.ChoiceField(choices=[("", "All purposes"), *Purpose.choices], required=False)

    def clean(self):
        data = super().clean()
        try:
            data["filters"] = ExportFilters(
                since=data.get("since"), until=data.get("until"), purpose=data.get("purpose") or ""
            )
        except ExportError as exc:
            raise ValidationError(str(exc), code="invalid_filters") from exc
        return data


@admin.register(ConsentEvent)
class ConsentEventAdmin(AuditedAdmin):
    list_display = ["sequence", "occurred", "purpose", "action", "source", "text_version", "subject"]
    list_filter = ["purpose", "action", "source"]
    list_select_related = ["subject"]
    ordering = ["-sequence"]
    show_full_result_count = False
    change_list_template = "admin/compliance/consentevent/change_list.html"
    readonly_fields = [
        "sequence", "occurred", "recorded", "purpose", "action", "source", "awaiting_confirmation",
        "subject", "staff_user_id", "text_version", "text_sha256", "consent_text", "evidence",
        "prev_hash", "hash", "integrity",
    ]  # fmt: skip

    def get_fieldsets(self, request, obj=None):
        fieldsets = [
            (None, {"fields": [
                "sequence", "occurred", "recorded", "purpose", "action", "source",
                "awaiting_confirmation", "subject", "staff_user_id",
            ]}),
            ("Consent text shown", {"fields": ["text_version", "text_sha256", "consent_text"]}),
            ("Hash chain", {"fields": ["prev_hash", "hash", "integrity"]}),
        ]  # fmt: skip
        if request.user.has_perm("compliance.view_consentevent"):
            fieldsets.insert(2, ("Evidence (decrypted)", {"fields": ["evidence"]}))
        return fieldsets

    def audit_summary(self, event: ConsentEvent) -> str:
        return f"event #{event.sequence} ({event.purpose} {event.action}), subject {event.subject_id}"

    # Exact to the microsecond, as hashed: the admin's default date format drops the seconds.
    @admin.display(description="occurred at", ordering="occurred_at")
    def occurred(self, event: ConsentEvent) -> str:
        return event.occurred_at.isoformat(timespec="microseconds")

    @admin.display(description="recorded at", ordering="recorded_at")
    def recorded(self, event: ConsentEvent) -> str:
        return event.recorded_at.isoformat(timespec="microseconds")

    @admin.display(description="evidence")
    def evidence(self, event: ConsentEvent):
        items = _evidence_items(event)
        if items is None:
            return ERASED
        if not items:
            return "—"
        rows = format_html_join("", "<tr><th>{}</th><td>{}</td></tr>", items)
        return format_html('<table class="consent-evidence">{}</table>', rows)

    @admin.display(description="text")
    def consent_text(self, event: ConsentEvent):
        if not event.text_version:
            return "— (no text: only opt-ins carry one)"
        text = ConsentText.objects.filter(version=event.text_version).first()
        if text is None:
            return format_html("<strong>Version {} is missing.</strong>", event.text_version)
        shown = format_html(
            '<blockquote style="white-space: pre-wrap">{}</blockquote><p>{} — {}</p>',
            text.body,
            text.business_name,
            text.version,
        )
        if text.sha256 != event.text_sha256:
            warning = "This wording does not match the hash recorded with the event."
            return format_html("<p><strong>{}</strong></p>{}", warning, shown)
        return shown

    @admin.display(description="integrity")
    def integrity(self, event: ConsentEvent) -> str:
        matches = content_hash(event_content(event)) == event.hash
        own = "content matches its hash" if matches else "CONTENT DOES NOT MATCH ITS HASH"
        if event.sequence == 1:
            before, expected = "the genesis hash", GENESIS_HASH
        else:
            before = f"event #{event.sequence - 1}"
            expected = (
                ConsentEvent.objects.filter(sequence=event.sequence - 1)
                .values_list("hash", flat=True)
                .first()
            )
        link = f"links to {before}" if expected == event.prev_hash else f"LINK TO {before.upper()} IS BROKEN"
        return f"{own}; {link}"

    # --- Extra pages: lookup and export ---

    def get_urls(self):
        prefix = f"{self.opts.app_label}_{self.opts.model_name}"
        # Before the default URLs, whose "<path:object_id>/" would take "lookup/" for an event id.
        return [
            path("lookup/", self.admin_site.admin_view(self.lookup_view), name=f"{prefix}_lookup"),
            path("export/", self.admin_site.admin_view(self.export_view), name=f"{prefix}_export"),
            *super().get_urls(),
        ]

    def changelist_view(self, request, extra_context=None):
        extra_context = {**(extra_context or {}), "can_export": request.user.has_perm(EXPORT_PERMISSION)}
        return super().changelist_view(request, extra_context)

    def _context(self, request, title: str) -> dict:
        return {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": title,
            "changelist_url": reverse(f"{self.admin_site.name}:compliance_consentevent_changelist"),
        }

    def lookup_view(self, request):
        """How, when and with which text did this number consent? The number travels by POST, so it
        stays out of URLs and access logs, and the audit entry names the contact id only."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        form = ConsentLookupForm(request.POST if request.method == "POST" else None)
        context = self._context(request, "Look up a person's consent")
        if form.is_bound and form.is_valid():
            contact = form.cleaned_data["phone_number"]
            context.update(self._history(contact.id) if contact else {"found": False})
            subject_id = context.get("subject_id") or ""
            audit_record(
                request=request,
                action=AuditAction.LOOKUP,
                object_type=ConsentSubject,
                object_id=subject_id,
                summary=(
                    f"consent history of contact {contact.id}: {len(context['rows'])} events"
                    if contact
                    else "no contact has this number"
                ),
            )
            context["searched"] = True
        context["form"] = form
        return TemplateResponse(request, "admin/compliance/consentevent/lookup.html", context)

    def _history(self, contact_id: int) -> dict:
        subject = ConsentSubject.objects.filter(contact_id=contact_id).first()
        events = list(
            ConsentEvent.objects.filter(subject=subject).select_related("subject").order_by("sequence")
            if subject
            else []
        )
        texts = _texts_for(events)
        rows = []
        for event in events:
            text = texts.get(event.text_version)
            rows.append(
                {
                    "event": event,
                    "text": text,
                    "text_matches": text is None or text.sha256 == event.text_sha256,
                    "evidence": _evidence_items(event),
                }
            )
        return {
            "found": True,
            "contact_id": contact_id,
            "subject_id": str(subject.id) if subject else "",
            "rows": rows,
            "states": ConsentState.objects.filter(contact_id=contact_id).order_by("purpose"),
            "erased_label": ERASED,
        }

    def export_view(self, request):
        if not request.user.has_perm(EXPORT_PERMISSION):
            raise PermissionDenied
        form = ConsentExportForm(request.POST if request.method == "POST" else None)
        if form.is_bound and form.is_valid():
            fmt, filters = form.cleaned_data["format"], form.cleaned_data["filters"]
            export = export_begin(format=fmt, filters=filters, request=request)
            content_type = "text/csv" if fmt == ExportFormat.CSV else "application/x-ndjson"
            response = StreamingHttpResponse(export.chunks(), content_type=f"{content_type}; charset=utf-8")
            stamp = f"{timezone.localtime(export.started_at):%Y%m%d-%H%M%S}"
            name = f"consent-ledger-{stamp}{'-filtered' if filters.filtered else ''}.{fmt}"
            response["Content-Disposition"] = f'attachment; filename="{name}"'
            response["X-Consent-Export-Rows"] = str(export.expected_row_count)
            response["X-Consent-Ledger-Head"] = f"{export.head_sequence} {export.head_hash}"
            return response
        context = self._context(request, "Export the consent ledger")
        context["form"] = form
        context["exports_url"] = reverse(f"{self.admin_site.name}:compliance_consentexport_changelist")
        return TemplateResponse(request, "admin/compliance/consentevent/export.html", context)


@admin.register(ConsentState)
class ConsentStateAdmin(AuditedAdmin):
    list_display = ["contact_id", "purpose", "status", "changed_at", "last_event_sequence"]
    list_filter = ["purpose", "status"]
    search_fields = ["=contact_id"]
    search_help_text = "A contact id (use the consent lookup page for a phone number)."
    ordering = ["-changed_at"]
    show_full_result_count = False
    list_select_related = ["last_event"]
    fields = ["contact_id", "subject", "purpose", "status", "changed_at", "last_event_sequence"]
    readonly_fields = fields

    def get_search_results(self, request, queryset, search_term):
        term = search_term.strip()
        if not term:
            return queryset, False
        return (queryset.filter(contact_id=int(term)) if term.isdigit() else queryset.none()), False

    @admin.display(description="last event", ordering="last_event__sequence")
    def last_event_sequence(self, state: ConsentState) -> str:
        return f"#{state.last_event.sequence}"

    def audit_summary(self, state: ConsentState) -> str:
        return f"{state.purpose} consent of contact {state.contact_id}: {state.status}"


@admin.register(ConsentExport)
class ConsentExportAdmin(ReadOnlyAdmin):
    list_display = [
        "created_at",
        "username",
        "format",
        "filters",
        "row_count",
        "complete",
        "head_sequence",
        "sha256",
    ]
    list_filter = ["format", "complete"]
    search_fields = ["username", "sha256"]
    readonly_fields = [
        "created_at", "username", "user_id", "format", "filters", "row_count", "sha256", "complete",
        "head_sequence", "head_hash",
    ]  # fmt: skip
    fields = readonly_fields
    change_form_template = "admin/compliance/consentexport/change_form.html"

    def get_urls(self):
        prefix = f"{self.opts.app_label}_{self.opts.model_name}"
        return [
            path(
                "<int:export_id>/manifest/",
                self.admin_site.admin_view(self.manifest_view),
                name=f"{prefix}_manifest",
            ),
            *super().get_urls(),
        ]

    def manifest_view(self, request, export_id: int):
        """The manifest of an export made here, to check the downloaded file with
        `manage.py verify_consent_ledger --file FILE --manifest FILE.manifest.json`."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        record = get_object_or_404(ConsentExport, pk=export_id)
        response = JsonResponse(export_manifest(record), json_dumps_params={"indent": 2})
        response["Content-Disposition"] = f'attachment; filename="consent-export-{record.pk}.manifest.json"'
        return response


@admin.register(StaffAuditEntry)
class StaffAuditEntryAdmin(ReadOnlyAdmin):
    list_display = ["at", "username", "action", "object_type", "object_id", "summary", "ip"]
    list_filter = ["action", "object_type"]
    search_fields = ["username", "object_id"]
    show_full_result_count = False
    readonly_fields = ["at", "username", "user_id", "action", "object_type", "object_id", "summary", "ip"]
    fields = readonly_fields


from compliance import admin_privacy  # noqa: E402, F401 - registers the privacy request admin
