"""Automations in the admin: integrations (the endpoint and headers to configure; the secret is
write-only), rules (activated by a second person), and the events and runs, read-only."""

from contextvars import ContextVar

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from messaging.automations.models import AutomationEvent, AutomationRule, AutomationRun, Integration
from messaging.automations.services import (
    ACTIVATE_RULE,
    integration_secret_set,
    rule_activate,
    rule_deactivate,
    rule_save,
    rule_validate,
)
from messaging.automations.signatures import HEADERS_BY_KIND

#: The request being answered, to show each endpoint's full address (a context variable, not an
#: attribute of the admin: one ModelAdmin instance serves every thread).
_current_request: ContextVar = ContextVar("automations_admin_request", default=None)

SIGNING_HELP = {
    "shopify": "Shopify signs each webhook with your app's client secret: paste that secret here. "
    "Shopify sends X-Shopify-Hmac-Sha256, X-Shopify-Topic and X-Shopify-Webhook-Id by itself.",
    "zendesk": "Paste the webhook's signing secret (Zendesk: Webhooks → your webhook → Reveal secret). "
    "Zendesk sends X-Zendesk-Webhook-Signature and X-Zendesk-Webhook-Signature-Timestamp by itself. "
    'For a trigger webhook, put "event_type": "ticket.solved" and the requester\'s phone in the JSON body.',
    "bamboohr": "Paste the webhook's private key (BambooHR: Webhooks → Private key → Generate). BambooHR "
    "sends X-BambooHR-Signature and X-BambooHR-Timestamp by itself; post the Mobile Phone field.",
    "generic": "Your system signs each POST: X-Signature: sha256=<hex HMAC-SHA256(secret, "
    '"<timestamp>.<raw body>")>, X-Timestamp: <Unix seconds> (within 5 minutes of our clock). The '
    'JSON body names the event: "event_id": <your unique id> and "event_type": <what happened> '
    "(read from the signed body only; X-Event-Id and X-Event-Type headers are ignored).",
}


class IntegrationForm(forms.ModelForm):
    secret = forms.CharField(
        required=False,
        strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="The signing secret shared with the outside system (at least 16 characters). It is "
        "stored encrypted and never shown again; leave empty to keep the current one.",
    )

    class Meta:
        model = Integration
        fields = ["kind", "name", "is_active"]

    def clean(self):
        cleaned = super().clean()
        secret = cleaned.get("secret", "")
        if self.instance.pk is None and not secret:
            self.add_error("secret", "An integration needs its signing secret.")
        elif secret:
            try:
                integration_secret_set(integration=self.instance, secret=secret, save=False)
            except ValidationError as exc:
                self.add_error("secret", exc)
        return cleaned


@admin.register(Integration)
class IntegrationAdmin(admin.ModelAdmin):
    form = IntegrationForm
    list_display = ["name", "kind", "is_active", "endpoint", "created_at"]
    list_filter = ["kind", "is_active"]
    search_fields = ["name"]
    readonly_fields = ["endpoint", "headers_to_configure", "created_by", "created_at"]

    def get_fieldsets(self, request, obj=None):
        fields = ["kind", "name", "secret", "is_active"]
        if obj is not None:
            fields += ["endpoint", "headers_to_configure", "created_by", "created_at"]
        return [(None, {"fields": fields})]

    @admin.display(description="Endpoint URL")
    def endpoint(self, integration: Integration) -> str:
        if not integration.pk:
            return "-"
        path = reverse("automations-endpoint", args=[integration.slug])
        request = _current_request.get()
        return request.build_absolute_uri(path) if request is not None else path

    @admin.display(description="Signing")
    def headers_to_configure(self, integration: Integration) -> str:
        headers = format_html_join(", ", "<code>{}</code>", ((h,) for h in HEADERS_BY_KIND[integration.kind]))
        return format_html("{}<br>Headers: {}", SIGNING_HELP[integration.kind], headers)

    def _rendered_with_request(self, request, view):
        token = _current_request.set(request)
        try:
            response = view()
            if hasattr(response, "render") and not response.is_rendered:
                response.render()  # the readonly fields are read while rendering: do it while we know
            return response
        finally:
            _current_request.reset(token)

    def changeform_view(self, request, *args, **kwargs):
        return self._rendered_with_request(
            request, lambda: super(IntegrationAdmin, self).changeform_view(request, *args, **kwargs)
        )

    def changelist_view(self, request, extra_context=None):
        return self._rendered_with_request(
            request, lambda: super(IntegrationAdmin, self).changelist_view(request, extra_context)
        )

    def save_model(self, request, obj, form, change):
        if not change:
            obj.created_by = request.user
        # The form put the encrypted secret on the instance (IntegrationForm.clean).
        super().save_model(request, obj, form, change)


class RuleForm(forms.ModelForm):
    class Meta:
        model = AutomationRule
        fields = ["integration", "name", "event_type", "template", "parameters", "phone_path", "sender"]

    def _post_clean(self):
        super()._post_clean()
        if not self.errors:
            try:
                rule_validate(self.instance)
            except ValidationError as exc:
                self._update_errors(exc)


@admin.register(AutomationRule)
class AutomationRuleAdmin(admin.ModelAdmin):
    form = RuleForm
    list_display = [
        "name",
        "integration",
        "event_type",
        "template",
        "is_active",
        "created_by",
        "last_changed_by",
        "activated_by",
    ]
    list_filter = ["is_active", "integration", "event_type"]
    search_fields = ["name", "event_type"]
    readonly_fields = [
        "is_active",
        "created_by",
        "last_changed_by",
        "activated_by",
        "activated_at",
        "created_at",
        "updated_at",
    ]
    actions = ["activate", "deactivate"]

    def save_model(self, request, obj, form, change):
        rule_save(rule=obj, user=request.user)
        if change:
            messages.info(request, "The rule changed: it is inactive until a colleague activates it again.")

    def get_actions(self, request):
        actions = super().get_actions(request)
        if not request.user.has_perm(ACTIVATE_RULE):
            actions.pop("activate", None)
            actions.pop("deactivate", None)
        return actions

    @admin.action(description="Activate the selected rules (not their author or last editor)")
    def activate(self, request, queryset):
        for rule in queryset:
            try:
                rule_activate(rule=rule, user=request.user)
            except (PermissionDenied, ValidationError) as exc:
                text = "; ".join(exc.messages) if isinstance(exc, ValidationError) else str(exc)
                messages.error(request, f"{rule.name}: {text}")
            else:
                messages.success(request, f"{rule.name}: active.")

    @admin.action(description="Deactivate the selected rules")
    def deactivate(self, request, queryset):
        for rule in queryset:
            try:
                rule_deactivate(rule=rule, user=request.user)
            except PermissionDenied as exc:
                messages.error(request, f"{rule.name}: {exc}")
            else:
                messages.success(request, f"{rule.name}: stopped.")


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(AutomationEvent)
class AutomationEventAdmin(ReadOnlyAdmin):
    list_display = ["event_type", "event_id", "integration", "received_at", "processed_at"]
    list_filter = ["integration", "event_type"]
    search_fields = ["event_id"]
    list_select_related = ["integration"]


@admin.register(AutomationRun)
class AutomationRunAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "outcome", "code", "rule", "event", "message_link", "detail"]
    list_filter = ["outcome", "event__integration", "rule"]
    list_select_related = ["rule", "event"]
    fields = ["event", "rule", "outcome", "code", "detail", "message_link", "created_at"]
    readonly_fields = fields

    @admin.display(description="Message")
    def message_link(self, run: AutomationRun) -> str:
        if run.message_id is None:
            return "-"
        url = reverse("admin:messaging_message_change", args=[run.message_id])
        return format_html('<a href="{}">Message #{}</a>', url, run.message_id)
