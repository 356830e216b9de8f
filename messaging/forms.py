"""Forms for the messaging admin's own pages (the model forms are the admin's)."""

from functools import cache

import phonenumbers
from django import forms
from django.conf import settings

from compliance.suppression import suppression_check
from messaging.contact_csv import MAX_FILE_BYTES
from messaging.models import Contact
from messaging.phone import phone_normalize


@cache
def region_choices() -> list[tuple[str, str]]:
    """Every region libphonenumber knows, as ("GB", "United Kingdom (GB, +44)"), sorted by name."""
    # Imported here: the geocoder's data costs every process ~100 MB, and only this admin form needs it.
    from phonenumbers import geocoder

    choices = []
    for region in phonenumbers.SUPPORTED_REGIONS:
        example = phonenumbers.example_number(region)
        name = geocoder.country_name_for_number(example, "en") if example else ""
        code = phonenumbers.country_code_for_region(region)
        choices.append((region, f"{name or region} ({region}, +{code})"))
    return sorted(choices, key=lambda choice: choice[1])


class ContactCsvImportForm(forms.Form):
    file = forms.FileField(
        label="CSV file",
        help_text="UTF-8 CSV with a header line; at most 10 MB and 100,000 contacts.",
        widget=forms.ClearableFileInput(attrs={"accept": ".csv,.txt,text/csv"}),
    )
    default_region = forms.ChoiceField(
        label="Default country",
        choices=region_choices,
        help_text="Used for numbers written without a country code, e.g. “(555) 012-3456”.",
    )
    update_existing = forms.BooleanField(
        label="Update existing contacts",
        required=False,
        initial=True,
        help_text="Contacts are matched by phone number. Empty cells never erase stored values; a "
        "non-empty tags cell replaces the contact's tags.",
    )
    dry_run = forms.BooleanField(
        label="Dry run",
        required=False,
        help_text="Check the file and show what would happen, without saving anything.",
    )

    def __init__(self, *args, can_update: bool = True, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["default_region"].initial = settings.PHONE_DEFAULT_REGION
        if not can_update:
            # A disabled field ignores what is posted, so the missing permission cannot be bypassed.
            update = self.fields["update_existing"]
            update.initial = False
            update.disabled = True
            update.help_text = (
                "You may add contacts but not change them: rows for numbers that already exist are skipped."
            )

    def clean_file(self):
        upload = self.cleaned_data["file"]
        if upload.size > MAX_FILE_BYTES:
            raise forms.ValidationError(
                "The file is larger than %(limit)s MB; split it into smaller files.",
                code="file_too_large",
                params={"limit": MAX_FILE_BYTES // (1024 * 1024)},
            )
        return upload


class ContactAdminForm(forms.ModelForm):
    """The admin's contact form: phone numbers are typed like people type them and stored as E.164."""

    phone_number = forms.CharField(
        max_length=40,
        help_text="Any common format, e.g. (555) 012-3456 or +44 20 7946 0018; stored as E.164.",
    )

    class Meta:
        model = Contact
        fields = [
            "phone_number",
            "wa_id",
            "user_id",
            "username",
            "profile_name",
            "locale",
            "timezone",
            "tags",
        ]

    def clean_phone_number(self) -> str:
        e164 = phone_normalize(self.cleaned_data["phone_number"])
        if e164 != self.instance.phone_number:  # a new contact, or a number changed to this one
            suppression_check(e164)
        return e164
