import pytest
from django.core.exceptions import ValidationError

from messaging.phone import phone_normalize, phone_to_wa_id


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        ("+1-555-0123456", "+15550123456"),
        ("(555) 012-3456", "+15550123456"),
        ("555.012.3456", "+15550123456"),
        ("1 555 012 3456", "+15550123456"),
        ("15550123456", "+15550123456"),  # a wa_id: country code without "+"
        ("+44 20 7946 0018", "+442079460018"),
        ("  +49 30 901820  ", "+4930901820"),
        ("+1 (212) 555-0199", "+12125550199"),
    ],
)
def test_normalizes_what_people_type_to_e164(typed, expected):
    assert phone_normalize(typed) == expected


def test_default_region_reads_national_numbers():
    assert phone_normalize("020 7946 0018", region="GB") == "+442079460018"


@pytest.mark.parametrize("typed", ["", "   ", "hello", "12", "+1 555", "+999 1234567", "555-CALL-NOW-PLEASE"])
def test_rejects_garbage_with_a_clear_error(typed):
    with pytest.raises(ValidationError) as excinfo:
        phone_normalize(typed)
    assert excinfo.value.code == "invalid_phone_number"


def test_wa_id_is_e164_without_plus():
    assert phone_to_wa_id("+15550123456") == "15550123456"
