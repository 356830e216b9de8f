import logging

import pytest
from django.db import IntegrityError

from config.logging import RedactPIIFilter, redact
from messaging.models import Sender
from messaging.services import sender_get_default
from tests.factories import SenderFactory


@pytest.mark.django_db
def test_the_environment_defines_the_default_sender():
    sender = sender_get_default()
    assert sender.phone_number_id == "100200300400500"  # config/test_settings.py
    assert sender.display_phone_number == "+15550100000"
    assert sender.waba_id == "900800700600500"
    assert sender.messages_per_second == 80
    assert sender.is_default
    assert sender_get_default() == sender
    assert Sender.objects.count() == 1


@pytest.mark.django_db
def test_a_sender_marked_default_in_the_admin_wins():
    chosen = SenderFactory(is_default=True, label="Support line")
    assert sender_get_default() == chosen


@pytest.mark.django_db
def test_only_one_sender_can_be_the_default():
    SenderFactory(is_default=True)
    with pytest.raises(IntegrityError):
        SenderFactory(is_default=True)


@pytest.mark.parametrize(
    ("line", "leaked"),
    [
        ("sent to +1 555 012 3456 ok", "555 012"),
        ("wa_id=15550123456 replied", "5550123"),
        ("Authorization: Bearer EAAGm0PX4ZCpsBA secret", "EAAGm0PX4ZCpsBA"),
        ("GET /v23.0/me?access_token=EAAB123&x=1", "EAAB123"),
        ("AUTHORIZATION: BEARER EAAGm0PX4ZCpsBA", "EAAGm0PX4ZCpsBA"),  # any case
        ("GET /me?ACCESS_TOKEN=EAAB123", "EAAB123"),
        ("db password=hunter2hunter2 secret=s3cr3t", "hunter2"),
        ('{"secret=": 1, "next": "?Token=EAAC456"}', "EAAC456"),
    ],
)
def test_logs_never_carry_phone_numbers_or_tokens(line, leaked):
    assert leaked not in redact(line)


def test_the_filter_masks_formatted_arguments():
    record = logging.LogRecord(
        "x", logging.INFO, __file__, 1, "message to %s failed", ("+15550123456",), None
    )
    RedactPIIFilter().filter(record)
    assert "5550123456" not in record.getMessage()
    assert "[phone:…56]" in record.getMessage()


def test_access_log_numbers_are_not_mistaken_for_phone_numbers():
    line = '"GET /opt-in/ HTTP/1.1" 200 4381'
    assert redact(line) == line
