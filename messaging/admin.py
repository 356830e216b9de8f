from collections.abc import Iterator

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.options import IncorrectLookupParameters
from django.core.cache import cache
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import Q
from django.http import HttpResponseRedirect, StreamingHttpResponse
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from compliance.models import ConsentSource, Purpose
from compliance.services import Evidence, consent_current, consent_opt_out_everywhere
from messaging.admin_inbox import ContactInboxMixin
from messaging.admin_paging import BigTableAdmin
from messaging.contact_csv import contact_csv_export_lines, contact_csv_import
from messaging.forms import ContactAdminForm, ContactCsvImportForm
from messaging.models import ApiToken, Contact, Sender, Tag
from messaging.phone import phone_normalize

#: Rows of the import results table; a file of 100,000 bad rows would otherwise make a page no one reads.
IMPORT_ERRORS_SHOWN = 1000
#: Who may record consent changes, staff opt-outs included.
STAFF_OPT_OUT_PERMISSION = "compliance.add_consentevent"
#: Contacts named on the opt-out confirmation page (all selected ones are opted out).
OPT_OUT_CONTACTS_SHOWN = 100


class StaffOptOutForm(forms.Form):
    reason = forms.CharField(
        max_length=2000,
        widget=forms.Textarea(attrs={"rows": 4, "cols": 80}),
        help_text="Why, and how the person asked (e.g. “Called on 10 June asking to stop all messages”). "
        "Kept, encrypted, as the evidence of the opt-out.",
    )


@admin.register(Tag)
class TagAdmin(admin.ModelAdmin):
    search_fields = ["name"]


class TagFilter(admin.SimpleListFilter):
    """Contacts with a tag, as Django's own filter lists them (same parameter), but selected with a
    subquery of the tag's contacts: Django's join could repeat a contact, so the admin made the page
    and its count SELECT DISTINCT over every row of the tag (60-90 ms at 1M contacts, issue #8)."""

    title = "tags"
    parameter_name = "tags__id__exact"

    def lookups(self, request, model_admin):
        return [(str(tag.pk), tag.name) for tag in Tag.objects.order_by("name")]

    def queryset(self, request, queryset):
        if not self.value():
            return queryset
        # Only the ids it lists: anything else ('vip', '²', 20 digits) would fail in the query (a 500).
        if self.value() not in {tag_id for tag_id, _ in self.lookup_choices}:
            raise IncorrectLookupParameters(f"No tag has the id {self.value()!r}.")
        tagged = Contact.tags.through.objects.filter(tag_id=int(self.value())).values("contact_id")
        return queryset.filter(pk__in=tagged)


#: How long the locale filter's choices are reused: listing them reads every contact (no index on locale).
LOCALE_CHOICES_SECONDS = 600


class LocaleFilter(admin.AllValuesFieldListFilter):
    """The locales contacts have, as the default filter lists them, but from a cache: the default runs
    SELECT DISTINCT locale over the whole table on every page of the list (~90 ms at 1M contacts,
    issue #8). A locale first seen in the last few minutes may be missing from the list meanwhile."""

    def __init__(self, field, request, params, model, model_admin, field_path):
        super().__init__(field, request, params, model, model_admin, field_path)
        distinct_locales = self.lookup_choices  # the default's query, not run yet
        self.lookup_choices = cache.get_or_set(
            "admin:contact-locale-choices", lambda: list(distinct_locales), LOCALE_CHOICES_SECONDS
        )


@admin.register(Contact)
class ContactAdmin(BigTableAdmin, ContactInboxMixin, admin.ModelAdmin):
    list_display = [
        "phone_number",
        "profile_name",
        "username",
        "locale",
        "timezone",
        "tag_list",
        "created_at",
    ]
    list_filter = [TagFilter, ("locale", LocaleFilter)]
    search_fields = ["phone_number", "profile_name", "username", "wa_id"]
    form = ContactAdminForm
    autocomplete_fields = ["tags"]
    # name_corrected_at: set by a privacy correction request, after which WhatsApp's profile name no
    # longer overwrites the name (staff see why it stopped following WhatsApp).
    readonly_fields = ["created_at", "updated_at", "name_corrected_at"]
    show_full_result_count = False
    # Adds the conversation and "waiting for a reply" links to the pages below (admin_inbox.py).
    change_list_template = "admin/messaging/contact/change_list_inbox.html"
    change_form_template = "admin/messaging/contact/change_form.html"
    actions = ["export_selected_csv", "staff_opt_out"]

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("tags")

    # --- The conversation: a column on the list, a button on the page (for people who read messages) ---

    def get_list_display(self, request):
        columns = list(super().get_list_display(request))
        return [*columns, "conversation_link"] if self.has_conversation_permission(request) else columns

    @admin.display(description="conversation")
    def conversation_link(self, contact: Contact) -> str:
        return format_html(
            '<a href="{}" class="contact-conversation-link" title="{}">💬 Open</a>',
            self.conversation_url(contact.pk),
            "The conversation: messages both ways, and a reply box",
        )

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra_context = {
            **(extra_context or {}),
            "can_view_conversation": self.has_conversation_permission(request),
        }
        return super().change_view(request, object_id, form_url, extra_context)

    def changelist_view(self, request, extra_context=None):
        extra_context = {
            **(extra_context or {}),
            "can_view_conversation": self.has_conversation_permission(request),
        }
        return super().changelist_view(request, extra_context)

    # --- Consent: a read-only section on the change page, and the staff opt-out action ---

    def get_readonly_fields(self, request, obj=None):
        fields = list(super().get_readonly_fields(request, obj))
        return [*fields, "consent_summary"] if obj is not None else fields

    def get_fieldsets(self, request, obj=None):
        fieldsets = super().get_fieldsets(request, obj)
        if obj is None:
            return fieldsets
        fields = [f for _, options in fieldsets for f in options["fields"] if f != "consent_summary"]
        return [
            (None, {"fields": fields}),
            (
                "Consent",
                {
                    "fields": ["consent_summary"],
                    "description": "From the consent ledger; changed only by the person (opt-in page, "
                    "STOP, the API) or by the “Opt out (staff)” action on the contact list.",
                },
            ),
        ]

    @admin.display(description="current consent")
    def consent_summary(self, contact: Contact):
        states = consent_current(contact_id=contact.pk)
        rows = []
        for purpose, label in Purpose.choices:
            state = states.get(purpose)
            if state is None:
                rows.append((label, "none", "—", ""))
                continue
            source = ConsentSource(state["last_event__source"]).label if state["last_event__source"] else ""
            changed = timezone.localtime(state["changed_at"]).strftime("%Y-%m-%d %H:%M %Z")
            rows.append((label, state["status"], changed, source))
        body = format_html_join(
            "",
            '<tr><th scope="row">{}</th><td class="consent-status">{}</td><td>{}</td><td>{}</td></tr>',
            rows,
        )
        return format_html(
            '<table id="consent-summary"><thead><tr><th scope="col">Purpose</th><th scope="col">Status</th>'
            '<th scope="col">Last change</th><th scope="col">Via</th></tr></thead><tbody>{}</tbody></table>',
            body,
        )

    def has_consent_opt_out_permission(self, request) -> bool:
        return request.user.has_perm(STAFF_OPT_OUT_PERMISSION)

    @admin.action(description="Opt out (staff) of all messages…", permissions=["consent_opt_out"])
    def staff_opt_out(self, request, queryset):
        """Record an opt-out of every purpose for the selected contacts, after a confirmation page that
        asks for the reason (the evidence a staff opt-out needs)."""
        if not self.has_consent_opt_out_permission(request):
            raise PermissionDenied
        form = StaffOptOutForm(request.POST if "confirm" in request.POST else None)
        contacts = list(queryset.prefetch_related(None).only("id", "phone_number", "profile_name"))
        if form.is_bound and form.is_valid():
            evidence = Evidence(staff_user_id=request.user.id, reason=form.cleaned_data["reason"])
            with transaction.atomic():
                for contact in contacts:
                    consent_opt_out_everywhere(
                        contact_id=contact.id,
                        phone_number=contact.phone_number,
                        source=ConsentSource.STAFF,
                        evidence=evidence,
                    )
            for contact in contacts:
                # The reason stays in the ledger (encrypted); the admin history only says it happened.
                self.log_change(request, contact, "Opted out of all messages (staff).")
            self.message_user(
                request,
                f"Opted out {len(contacts)} contact{'s' if len(contacts) != 1 else ''} of all messages "
                "(marketing, utility and authentication), effective immediately.",
                messages.SUCCESS,
            )
            return None  # back to the list
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "Opt out (staff) of all messages",
            "form": form,
            "contacts": contacts[:OPT_OUT_CONTACTS_SHOWN],
            "contacts_hidden": max(0, len(contacts) - OPT_OUT_CONTACTS_SHOWN),
            "count": len(contacts),
            "select_across": request.POST.get("select_across") == "1",
            "selected": request.POST.getlist(helpers.ACTION_CHECKBOX_NAME),
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            "changelist_url": self._changelist_url(),
        }
        return TemplateResponse(request, "admin/messaging/contact/opt_out_confirm.html", context)

    def get_search_results(self, request, queryset, search_term):
        results, may_have_duplicates = super().get_search_results(request, queryset, search_term)
        # "(555) 012-3456" should find +15550123456 although the stored text differs.
        try:
            e164 = phone_normalize(search_term)
        except ValidationError:
            return results, may_have_duplicates
        # A whole phone number names its contact: look it up by the unique number (and the WhatsApp id,
        # its digits) through their indexes, instead of OR-ing it with the substring search, which reads
        # every contact (~530 ms at 1M contacts, issue #8) to find what the exact match already found.
        return queryset.filter(Q(phone_number=e164) | Q(wa_id=e164.lstrip("+"))), False

    @admin.display(description="tags")
    def tag_list(self, contact: Contact) -> str:
        return ", ".join(tag.name for tag in contact.tags.all())

    def get_urls(self):
        prefix = f"{self.opts.app_label}_{self.opts.model_name}"
        # Before the default URLs: their "<path:object_id>/" would take "import/" for a contact id.
        return [
            path("import/", self.admin_site.admin_view(self.import_csv_view), name=f"{prefix}_import"),
            path("export/", self.admin_site.admin_view(self.export_csv_view), name=f"{prefix}_export"),
            *self._inbox_urls(),
            *super().get_urls(),
        ]

    def _changelist_url(self) -> str:
        return reverse(f"{self.admin_site.name}:{self.opts.app_label}_{self.opts.model_name}_changelist")

    def import_csv_view(self, request):
        if not self.has_add_permission(request):
            raise PermissionDenied
        can_update = self.has_change_permission(request)
        if request.method == "POST":
            form = ContactCsvImportForm(request.POST, request.FILES, can_update=can_update)
        else:
            form = ContactCsvImportForm(can_update=can_update)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "Import contacts from CSV",
            "changelist_url": self._changelist_url(),
        }
        if request.method == "POST" and form.is_valid():
            report = contact_csv_import(
                file=form.cleaned_data["file"],
                default_region=form.cleaned_data["default_region"],
                update_existing=form.cleaned_data["update_existing"],
                dry_run=form.cleaned_data["dry_run"],
            )
            context.update(
                title="Dry run: contacts import" if report.dry_run else "Contacts imported",
                report=report,
                file_name=form.cleaned_data["file"].name,
                errors_shown=report.errors[:IMPORT_ERRORS_SHOWN],
                errors_hidden=max(0, len(report.errors) - IMPORT_ERRORS_SHOWN),
            )
            return TemplateResponse(request, "admin/messaging/contact/import_results.html", context)
        context["form"] = form
        return TemplateResponse(request, "admin/messaging/contact/import_form.html", context)

    def export_csv_view(self, request):
        """The changelist as the user sees it (search, filters, ordering), every page of it."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        try:
            changelist = self.get_changelist_instance(request)
        except IncorrectLookupParameters:
            # The changelist answers unknown filters the same way.
            return HttpResponseRedirect(f"{self._changelist_url()}?e=1")
        return self._csv_download(changelist.get_queryset(request))

    @admin.action(description="Export selected contacts as CSV", permissions=["view"])
    def export_selected_csv(self, request, queryset):
        return self._csv_download(queryset)

    def _csv_download(self, contacts) -> StreamingHttpResponse:
        # The byte-order mark makes Excel read the file as UTF-8 instead of mangling non-ASCII names;
        # the import accepts it.
        chunks = contact_csv_export_lines(contacts=contacts)
        response = StreamingHttpResponse(_prepend("\ufeff", chunks), content_type="text/csv; charset=utf-8")
        filename = f"contacts-{timezone.localtime():%Y%m%d-%H%M%S}.csv"
        response["Content-Disposition"] = f'attachment; filename="{filename}"'
        return response


def _prepend(first: str, rest: Iterator[str]) -> Iterator[str]:
    yield first
    yield from rest


@admin.register(Sender)
class SenderAdmin(admin.ModelAdmin):
    list_display = [
        "label",
        "display_phone_number",
        "phone_number_id",
        "waba_id",
        "messages_per_second",
        "is_default",
        "is_active",
    ]
    list_filter = ["is_active", "is_default"]
    search_fields = ["label", "display_phone_number", "phone_number_id"]


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ["prefix", "user", "name", "created_at", "last_used_at", "revoked_at"]
    list_filter = ["revoked_at"]
    readonly_fields = ["prefix", "digest", "created_at", "last_used_at"]
    search_fields = ["user__username", "name", "prefix"]

    def has_add_permission(self, request) -> bool:
        return False  # tokens are created with `manage.py create_api_token` so the secret is shown once


# Unacknowledged errors and warnings from Meta, on top of the admin index (a small include: the index may
# grow into a dashboard; its template is the place to add to).
admin.site.index_template = "admin/messaging/index.html"

from messaging import admin_campaigns, admin_messages  # noqa: E402,F401
