"""Staff-configured auto-replies (messaging.keywords applies them). Imported from messaging/apps.py."""

from django import forms
from django.contrib import admin

from messaging.keywords import Keyword, keyword_of, text_normalize
from messaging.models import AutoReply
from templates_app.models import MessageTemplate, TemplateStatus

#: Keywords whose rule always applies first, so an auto-reply on them would never be sent.
RESERVED = frozenset({Keyword.OPT_OUT, Keyword.OPT_IN, Keyword.HELP})


class AutoReplyForm(forms.ModelForm):
    class Meta:
        model = AutoReply
        fields = [
            "keyword",
            "match",
            "reply_text",
            "template",
            "template_parameters",
            "priority",
            "is_active",
        ]
        help_texts = {
            "keyword": "Case, surrounding spaces and punctuation are ignored. STOP, START, HELP and their "
            "variants are handled by the consent rules and cannot be used here (YES can: it only confirms "
            "a pending double opt-in).",
            "template_parameters": 'Body values of the template, e.g. ["9 am", "6 pm"]; [] when it has none.',
        }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["template"].queryset = MessageTemplate.objects.filter(status=TemplateStatus.APPROVED)
        self.fields[
            "template"
        ].help_text = "An approved template, instead of a reply text (outside the 24-hour "
        "window only a template reaches the person, and only with their consent for its category)."

    def clean_keyword(self) -> str:
        keyword = self.cleaned_data["keyword"]
        if not text_normalize(keyword):
            raise forms.ValidationError("Give a word or phrase (letters or digits).", code="invalid")
        if keyword_of(keyword) in RESERVED:
            raise forms.ValidationError(
                "“%(keyword)s” is a consent keyword handled by the opt-out/opt-in rules.",
                code="reserved_keyword",
                params={"keyword": keyword},
            )
        return keyword.strip()


@admin.register(AutoReply)
class AutoReplyAdmin(admin.ModelAdmin):
    form = AutoReplyForm
    list_display = ["keyword", "match", "reply_summary", "priority", "is_active", "updated_at"]
    list_editable = ["priority", "is_active"]
    list_filter = ["is_active", "match"]
    search_fields = ["keyword", "reply_text"]
    ordering = ["priority", "keyword"]

    @admin.display(description="reply")
    def reply_summary(self, rule: AutoReply) -> str:
        if rule.template_id:
            return f"template {rule.template}"
        return rule.reply_text if len(rule.reply_text) <= 80 else rule.reply_text[:79] + "…"
