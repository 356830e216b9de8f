"""Campaigns in the admin: create and edit drafts, a dry run page (who receives it, who is excluded
and why) with a CSV download, and the approval buttons: Submit (drafts), Approve / Reject with a reason
(pending campaigns, for people allowed to approve). Imported at the end of messaging/admin.py; the
rules live in messaging.campaigns.
"""

from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpResponseRedirect, StreamingHttpResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.decorators import method_decorator
from django.views.decorators.http import require_POST

from messaging.campaigns import (
    APPROVE_CAMPAIGN,
    CampaignDryRun,
    campaign_approve,
    campaign_dry_run,
    campaign_dry_run_csv,
    campaign_reject,
    campaign_submit,
)
from messaging.models import Campaign

method_decorator_post = method_decorator(require_POST)


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
    readonly_fields = [
        "status",
        "rejection_reason",
        "created_by",
        "created_at",
        "updated_at",
        "submitted_by",
        "submitted_at",
        "approved_by",
        "approved_at",
    ]
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

    def change_view(self, request, object_id, form_url="", extra_context=None):
        campaign = self.get_object(request, unquote(object_id))
        extra_context = extra_context or {}
        if campaign is not None:
            extra_context |= {
                "can_submit": self.has_change_permission(request, campaign),
                "can_review": campaign.status == Campaign.Status.PENDING_APPROVAL
                and request.user.has_perm(APPROVE_CAMPAIGN)
                and request.user.pk not in {campaign.created_by_id, campaign.submitted_by_id},
            }
        return super().change_view(request, object_id, form_url, extra_context)

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
            path("<path:object_id>/submit/", view(self.submit_view), name=f"{prefix}_submit"),
            path("<path:object_id>/approve/", view(self.approve_view), name=f"{prefix}_approve"),
            path("<path:object_id>/reject/", view(self.reject_view), name=f"{prefix}_reject"),
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

    def _transition(self, request, campaign: Campaign, service, done: str, **kwargs):
        """Run one approval service; its refusals become error messages on the campaign's page."""
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
