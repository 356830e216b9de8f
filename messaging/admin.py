from django.contrib import admin

from messaging.models import ApiToken, Contact, Sender, Tag, WebhookEvent


@admin.register(Tag)
class TagAdmin(admin.ModelAdmin):
    search_fields = ["name"]


@admin.register(Contact)
class ContactAdmin(admin.ModelAdmin):
    list_display = [
        "phone_number",
        "profile_name",
        "username",
        "locale",
        "timezone",
        "tag_list",
        "created_at",
    ]
    list_filter = ["tags", "locale"]
    search_fields = ["phone_number", "profile_name", "username", "wa_id"]
    autocomplete_fields = ["tags"]
    readonly_fields = ["created_at", "updated_at"]
    show_full_result_count = False

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("tags")

    @admin.display(description="tags")
    def tag_list(self, contact: Contact) -> str:
        return ", ".join(tag.name for tag in contact.tags.all())


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


@admin.register(WebhookEvent)
class WebhookEventAdmin(admin.ModelAdmin):
    list_display = ["received_at", "provider", "state", "body_sha256"]
    list_filter = ["state", "provider"]
    readonly_fields = [field.name for field in WebhookEvent._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False
