"""The public privacy request form and the verification code form (compliance/privacy_views.py).

The forms check what a browser can get wrong (a missing choice, a malformed email, a file that is not
a PDF or an image); the rules of a request (a valid number, an agent's proof, what a correction needs)
stay in compliance.privacy, whose ValidationErrors the view puts back on these forms' fields.
"""

import re

from django import forms
from django.core.exceptions import ValidationError

from compliance.contacts import directory
from compliance.models import PrivacyRequestKind
from compliance.personal_data import CorrectableField, correctable_fields
from compliance.privacy import agent_proof_validate

#: (kind, label, one-line explanation) in the order the page lists them; labels are what people read.
KIND_OPTIONS: tuple[tuple[str, str, str], ...] = (
    (
        PrivacyRequestKind.KNOW_CATEGORIES,
        "Tell me what kinds of information you hold about me",
        "The categories of personal information, where they came from and why we keep them.",
    ),
    (
        PrivacyRequestKind.KNOW_SPECIFIC,
        "Give me a copy of my information",
        "The specific pieces we hold, as a file you can download.",
    ),
    (
        PrivacyRequestKind.DELETE,
        "Delete my information",
        "We erase what we hold about you and stop messaging you.",
    ),
    (
        PrivacyRequestKind.CORRECT,
        "Correct my information",
        "Tell us which detail is wrong and what it should be.",
    ),
    (
        PrivacyRequestKind.OPT_OUT_SALE,
        "Do not sell or share my information",
        "Takes effect at once, and stops our marketing messages to you.",
    ),
    (
        PrivacyRequestKind.LIMIT_SENSITIVE,
        "Limit the use of my sensitive information",
        "Sensitive information (such as your messages) is then used only to provide our service.",
    ),
)
KIND_LABELS = {kind: label for kind, label, _ in KIND_OPTIONS}

#: The honeypot's field name: hidden from people (and assistive technology), filled in by bots.
HONEYPOT_FIELD = "homepage"
CORRECTION_PREFIX = "correct_"


def correction_field_name(field: CorrectableField) -> str:
    return f"{CORRECTION_PREFIX}{field.name}"


class AgentProofCleaning:
    """The proof upload checked by its own bytes (compliance.privacy.agent_proof_validate), reported
    with the form's other mistakes: shared by the public page and the admin's filing form."""

    def clean_agent_proof(self):
        proof = self.cleaned_data.get("agent_proof")
        if proof:
            agent_proof_validate(proof)
        return proof or None


class PrivacyRequestForm(AgentProofCleaning, forms.Form):
    kind = forms.ChoiceField(
        choices=[(value, label) for value, label, _ in KIND_OPTIONS],
        widget=forms.RadioSelect,
        error_messages={
            "required": "Choose what you are asking for.",
            "invalid_choice": "Choose one of the requests listed.",
        },
    )
    phone_number = forms.CharField(
        max_length=40, error_messages={"required": "Enter the WhatsApp phone number the request is about."}
    )
    name = forms.CharField(max_length=200, required=False)
    email = forms.EmailField(
        max_length=254,
        required=False,
        error_messages={"invalid": "Enter an email address like name@example.com."},
    )
    details = forms.CharField(max_length=5000, required=False, widget=forms.Textarea)
    is_agent = forms.BooleanField(required=False)
    agent_name = forms.CharField(max_length=200, required=False)
    agent_email = forms.EmailField(
        max_length=254,
        required=False,
        error_messages={"invalid": "Enter an email address like name@example.com."},
    )
    agent_proof = forms.FileField(required=False)
    agent_proof_note = forms.CharField(max_length=2000, required=False, widget=forms.Textarea)
    homepage = forms.CharField(required=False)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # One optional input per detail a correction may change (the holders say which: messaging owns
        # name, language and time zone).
        self.correctable = correctable_fields()
        for field in self.correctable:
            self.fields[correction_field_name(field)] = forms.CharField(
                label=field.label, max_length=200, required=False
            )

    def clean_phone_number(self) -> str:
        raw = self.cleaned_data["phone_number"]
        # Checked here too, so a bad number is reported together with the form's other mistakes.
        directory().phone_number_normalize(raw)
        return raw

    def clean(self):
        data = super().clean()
        if data.get("is_agent"):
            if not (data.get("agent_name") or "").strip():
                self.add_error("agent_name", "Enter your name as the person's authorized agent.")
        else:
            # Agent details left over from a change of mind are not part of the request.
            data.update(agent_name="", agent_email="", agent_proof=None, agent_proof_note="")
        return data

    @property
    def first_correction_field(self) -> str | None:
        return correction_field_name(self.correctable[0]) if self.correctable else None

    def corrections(self) -> dict[str, str]:
        """The corrected values the person entered, by field name (empty inputs left out)."""
        data = getattr(self, "cleaned_data", {})
        return {
            field.name: data[correction_field_name(field)].strip()
            for field in self.correctable
            if (data.get(correction_field_name(field)) or "").strip()
        }

    def kind_rows(self) -> list[dict]:
        """What the template needs to draw one radio button per kind, checked if it was chosen."""
        chosen = self["kind"].value() if self.is_bound else None
        return [
            {
                "value": value,
                "label": label,
                "hint": hint,
                "id": f"id_kind_{value}",
                "checked": value == chosen,
            }
            for value, label, hint in KIND_OPTIONS
        ]

    def correction_rows(self) -> list:
        return [self[correction_field_name(field)] for field in self.correctable]


class VerificationCodeForm(forms.Form):
    code = forms.CharField(max_length=20, error_messages={"required": "Enter the 6-digit code."})

    def clean_code(self) -> str:
        code = re.sub(r"[\s-]", "", self.cleaned_data["code"])
        if not re.fullmatch(r"\d{6}", code):
            raise ValidationError("Enter the 6-digit code from the WhatsApp message.", code="invalid_code")
        return code
