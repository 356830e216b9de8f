"""Phone numbers: everything we store is E.164 ("+15550123456"); people type all kinds of shapes."""

import phonenumbers
from django.conf import settings
from django.core.exceptions import ValidationError


def phone_normalize(raw: str, *, region: str | None = None) -> str:
    """Return `raw` as an E.164 string, reading numbers without a country code in `region`
    (default: settings.PHONE_DEFAULT_REGION). Raises ValidationError with code `invalid_phone_number`.

    "+1-555-0123456", "(555) 012-3456", "1 555 012 3456" and "15550123456" (a WhatsApp `wa_id`, which has
    the country code but no "+") all become "+15550123456".
    """
    text = (raw or "").strip()
    if not text:
        raise ValidationError("Enter a phone number.", code="invalid_phone_number")
    region = region or settings.PHONE_DEFAULT_REGION
    digits = "".join(ch for ch in text if ch.isdigit())
    candidates = [text]
    if not text.startswith("+") and text.startswith(digits[:1]) and len(digits) > 10:
        # Meta's wa_id and many CSV exports carry the country code without the "+".
        candidates.insert(0, "+" + digits)
    for candidate in candidates:
        try:
            parsed = phonenumbers.parse(candidate, region)
        except phonenumbers.NumberParseException:
            continue
        if phonenumbers.is_possible_number(parsed) and _is_acceptable(parsed):
            return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    raise ValidationError(
        "“%(value)s” is not a valid phone number. Use the international format, e.g. +1 555 012 3456.",
        code="invalid_phone_number",
        params={"value": text},
    )


def _is_acceptable(parsed: phonenumbers.PhoneNumber) -> bool:
    # North America's 555 numbers are reserved for fiction and testing; libphonenumber calls them
    # invalid, but demo data, documentation and Meta's own examples ("+1-555-0123456") use them.
    if phonenumbers.is_valid_number(parsed):
        return True
    national = str(parsed.national_number)
    return parsed.country_code == 1 and len(national) == 10 and "555" in (national[:3], national[3:6])


def phone_to_wa_id(e164: str) -> str:
    """Meta addresses recipients by digits without the leading "+"."""
    return e164.lstrip("+")
