"""Campaigns in the admin: create and edit drafts, and a dry run page (who receives it, who is excluded
and why) with a CSV download. Imported at the end of messaging/admin.py; the rules live in
messaging.campaigns.
"""

from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpResponseRedirect, StreamingHttpResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse

from messaging.campaigns import CampaignDryRun, campaign_dry_run, campaign_dry_run_csv
from messaging.models import Campaign


@admin.register(Campaign)
class CampaignAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "status",
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
    readonly_fields = ["status", "created_by", "created_at", "updated_at"]
    fields = [
        "name",
        "sender",
        "template",
        "template_parameters",
        "audience_tags",
        "audience_locale",
        "scheduled_at",
        *readonly_fields,
    ]

    def save_model(self, request, obj, form, change):
        if not change:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)

    def get_urls(self):
        view = self.admin_site.admin_view
        prefix = f"{self.opts.app_label}_{self.opts.model_name}"
        # Before the default URLs, whose "<path:object_id>/" would take these.
        return [
            path("<path:object_id>/dry-run/", view(self.dry_run_view), name=f"{prefix}_dry_run"),
            path("<path:object_id>/dry-run.csv", view(self.dry_run_csv_view), name=f"{prefix}_dry_run_csv"),
            *super().get_urls(),
        ]

    def _url(self, name: str, *args) -> str:
        return reverse(
            f"{self.admin_site.name}:{self.opts.app_label}_{self.opts.model_name}_{name}", args=args
        )

    def _campaign_or_404(self, request, object_id) -> Campaign:
        campaign = get_object_or_404(
            Campaign.objects.select_related("template", "sender"), pk=unquote(object_id)
        )
        if not self.has_view_permission(request, campaign):
            raise PermissionDenied
        return campaign

    def _dry_run_or_message(self, request, campaign: Campaign) -> CampaignDryRun | None:
        try:
            return campaign_dry_run(campaign)
        except ValidationError as exc:
            self.message_user(request, " ".join(exc.messages), messages.ERROR)
            return None

    def dry_run_view(self, request, object_id):
        campaign = self._campaign_or_404(request, object_id)
        dry_run = self._dry_run_or_message(request, campaign)
        if dry_run is None:
            return HttpResponseRedirect(self._url("change", campaign.pk))
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": f"Dry run: {campaign}",
            "campaign": campaign,
            "dry_run": dry_run,
            "change_url": self._url("change", campaign.pk),
            "csv_url": self._url("dry_run_csv", campaign.pk),
        }
        return TemplateResponse(request, "admin/messaging/campaign/dry_run.html", context)

    def dry_run_csv_view(self, request, object_id):
        campaign = self._campaign_or_404(request, object_id)
        dry_run = self._dry_run_or_message(request, campaign)
        if dry_run is None:
            return HttpResponseRedirect(self._url("change", campaign.pk))
        response = StreamingHttpResponse(
            campaign_dry_run_csv(dry_run), content_type="text/csv; charset=utf-8"
        )
        response["Content-Disposition"] = f'attachment; filename="campaign-{campaign.pk}-dry-run.csv"'
        return response
