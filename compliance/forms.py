"""The public opt-in form. Rendered field by field in compliance/templates/compliance/opt_in.html."""

from django import forms
from django.core.exceptions import ValidationError

from compliance.contacts import directory
from compliance.models import Purpose

#: (purpose, label, hint) in the order the page lists them; labels are what customers read.
PURPOSE_OPTIONS: tuple[tuple[str, str, str], ...] = (
    (Purpose.MARKETING, "Offers and news", "Sales, new products and events."),
    (Purpose.UTILITY, "Order and account updates", "Confirmations, delivery and appointment updates."),
    (Purpose.AUTHENTICATION, "Security codes", "One-time codes to sign in or confirm it's you."),
)

#: The honeypot's field name: hidden from people (and assistive technology), filled in by bots.
HONEYPOT_FIELD = "homepage"


class OptInForm(forms.Form):
    phone_number = forms.CharField(
        max_length=40, error_messages={"required": "Enter your WhatsApp phone number."}
    )
    name = forms.CharField(max_length=150, error_messages={"required": "Enter your name."})
    purposes = forms.MultipleChoiceField(
        choices=[(value, label) for value, label, _ in PURPOSE_OPTIONS],
        widget=forms.CheckboxSelectMultiple,
        error_messages={
            "required": "Choose at least one kind of message.",
            "invalid_choice": "Choose from the kinds of message listed.",
        },
    )
    text_version = forms.CharField(max_length=64, widget=forms.HiddenInput)
    homepage = forms.CharField(required=False)

    def __init__(self, *args, current_version: str, **kwargs):
        super().__init__(*args, **kwargs)
        self.current_version = current_version

    def clean_phone_number(self) -> str:
        raw = self.cleaned_data["phone_number"]
        # Validates the number in any common format (the directory normalizes it); creating the
        # contact waits until the whole form is valid.
        directory().contact_for_phone(phone_number=raw, create=False)
        return raw

    def clean_text_version(self) -> str:
        version = self.cleaned_data["text_version"]
        if version != self.current_version:
            raise ValidationError(
                "The wording below changed since you opened this page. Please read it and choose again.",
                code="stale_text",
            )
        return version

    @property
    def is_stale(self) -> bool:
        """The wording the person saw is not the current one (or the page did not say which it was)."""
        return "text_version" in self.errors

    def purpose_rows(self) -> list[dict]:
        """What the template needs to draw one checkbox per purpose, ticked only if the person ticked it."""
        chosen = set(self["purposes"].value() or ()) if self.is_bound else set()
        return [
            {
                "value": value,
                "label": label,
                "hint": hint,
                "id": f"id_purposes_{value}",
                "checked": value in chosen,
            }
            for value, label, hint in PURPOSE_OPTIONS
        ]
