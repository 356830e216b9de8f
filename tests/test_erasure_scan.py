"""The acceptance test of erasure (issue #7): a person who used every part of the product asks to be
deleted; afterwards not one column of one table, Django's own tables included, still holds their
number in any shape, their name, their email, or anything they wrote or we wrote to them. Another
person, whose messages arrived in the same webhook deliveries, keeps everything, byte for byte: even his
message that names her is his data, and only her number leaves what he wrote.

The scan reads every column of every table with plain SQL (a superset of the text, char and JSON
columns), so a store nobody thought of fails this test as soon as it holds the person. It runs on the
default database; CI runs the suite on PostgreSQL too.
"""

import base64
import contextlib
import hashlib
import io
import json
from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.db import connection
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from compliance.contacts import directory
from compliance.ledger import ledger_verify
from compliance.models import ConsentEvent, ConsentState, ConsentSubject, DeletionCertificate
from compliance.personal_data import phone_formats
from compliance.privacy import privacy_request_file, privacy_request_fulfil, privacy_verify_manually
from compliance.services import Evidence, consent_record, consent_status, consent_text_create
from messaging.contact_csv import contact_csv_import
from messaging.models import (
    Contact,
    Message,
    MessageStatus,
    MessageStatusEvent,
    PendingStatus,
    ProviderAlert,
    ProviderCall,
    WebhookEvent,
)
from messaging.outbound import message_compose
from messaging.whatsapp import webhook_payloads
from messaging.whatsapp.base import SenderRef
from tests.factories import StaffUserFactory, UserFactory
from tests.webhook_client import post_webhook

pytestmark = pytest.mark.django_db

SENDER = SenderRef("100200300400500", "+15550100000", "900800700600500")  # config/test_settings.py

AVA, AVA_WA, AVA_NAME = "+15550123456", "15550123456", "Ava Jones"
AVA_USER_ID = "US.1234567890123456789"
AVA_EMAIL = "ava.jones@example.com"
AVA_WRITES = "Hi, I'd like to return the Trail 500 helmet I bought on Saturday."
AVA_CAPTION = "Here is the crack on the left side of the helmet"
AVA_ADDRESS = "12 Orchard Lane, Brooklyn, NY 11201"
WE_WRITE_AVA = "A courier will collect the helmet from Orchard Lane on Tuesday between 9 and 12."
AVA_REQUEST = "Please delete everything you have about me and my helmet return."

BEN, BEN_WA, BEN_NAME = "+15550987654", "15550987654", "Ben Okafor"
BEN_WRITES = "Is the Flatiron shop open on Sunday afternoon?"
# His words, naming her: they stay. The scan looks past exactly this text (see database_scan).
BEN_NAMES_AVA = f"{AVA_NAME} told me about your shop. Do you repair helmets too?"
WE_WRITE_BEN = "We open at noon on Sundays, see you there."

CONSENT_EVIDENCE = Evidence(
    ip_address="203.0.113.7", user_agent="Mozilla/5.0", page_url="https://shop.example/"
)


def real_wamid(wa_id: str, n: int) -> str:
    """A wamid shaped like Meta's: base64 of a small record that holds the recipient's number."""
    tail = hashlib.sha256(f"{wa_id}-{n}".encode()).hexdigest()[:18].upper().encode()
    return (
        "wamid."
        + base64.b64encode(b"\x1c\x18\x0b" + wa_id.encode() + b"\x15\x02\x00\x12\x18\x12" + tail).decode()
    )


def base64_forms(text: str) -> set[str]:
    """`text` as it shows inside any base64 string that encodes it, at each of the three alignments."""
    data = text.encode()
    forms = set()
    for start in range(3):
        chunk = data[start : start + (len(data) - start) // 3 * 3]
        forms.add(base64.b64encode(chunk).decode())
    return forms


def deliver(client, value: dict[str, Any]) -> WebhookEvent:
    response = post_webhook(client, webhook_payloads.envelope(SENDER, value))
    assert response.status_code == 200
    event = WebhookEvent.objects.order_by("-id").first()
    assert (event.state, event.error) == (WebhookEvent.State.PROCESSED, "")
    return event


def now_ts(offset: int = 0) -> str:
    return str(int(timezone.now().timestamp()) + offset)


# --- The database scan -------------------------------------------------------------------------------


def _as_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, memoryview | bytes | bytearray):
        return bytes(value).decode("utf-8", "ignore")
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    text = str(value)
    if text[:1] in "{[":
        # JSON stored as text (SQLite) keeps "José" as "Jos\u00e9": look at the decoded form too.
        with contextlib.suppress(ValueError):
            text += "\n" + json.dumps(json.loads(text), ensure_ascii=False)
    return text


def database_scan(needles: set[str], *, theirs: tuple[str, ...] = ()) -> dict[str, set[str]]:
    """{"table.column": {needles found there}} over every column of every table. `theirs`: whole texts
    that belong to someone else and may name the person (taken out before looking, so the same needle
    anywhere else is still found)."""
    found: dict[str, set[str]] = {}
    quote = connection.ops.quote_name
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names(cursor):
            columns = [c.name for c in connection.introspection.get_table_description(cursor, table)]
            cursor.execute(f"SELECT {', '.join(quote(c) for c in columns)} FROM {quote(table)}")  # noqa: S608
            for row in cursor.fetchall():
                for column, value in zip(columns, row, strict=True):
                    text = _as_text(value)
                    for text_of_theirs in theirs:
                        text = text.replace(text_of_theirs, "")
                    hits = {needle for needle in needles if needle in text}
                    if hits:
                        found.setdefault(f"{table}.{column}", set()).update(hits)
    return found


# --- The people ----------------------------------------------------------------------------------------


def ava_value(wamid: str, message: dict[str, Any]) -> dict[str, Any]:
    return {
        "contacts": [{"profile": {"name": AVA_NAME}, "wa_id": AVA_WA, "user_id": AVA_USER_ID}],
        "messages": [
            {"from": AVA_WA, "from_user_id": AVA_USER_ID, "id": wamid, "timestamp": now_ts(), **message}
        ],
    }


def ben_value(wamid: str, text: str) -> dict[str, Any]:
    return webhook_payloads.inbound_text_value(
        wamid=wamid, from_wa_id=BEN_WA, text=text, profile_name=BEN_NAME, timestamp=int(now_ts())
    )


def batched(*values: dict[str, Any]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for value in values:
        for key, items in value.items():
            merged.setdefault(key, []).extend(items)
    return merged


def send(contact: Contact, text: str, user, capture) -> Message:
    with capture(execute=True):
        message = message_compose(
            to_number=contact.phone_number, message_type="text", data={"text": text}, created_by=user
        )
    message.refresh_from_db()
    assert message.status == MessageStatus.SENT, message.error_title
    return message


def status(message: Message, name: str, offset: int) -> dict[str, Any]:
    return webhook_payloads.status_value(
        wamid=message.provider_message_id,
        status=name,
        recipient_wa_id=message.contact.phone_number.lstrip("+"),
        timestamp=int(now_ts(offset)),
    )


def _rows(queryset) -> list[dict[str, Any]]:
    return [
        {name: bytes(value) if isinstance(value, memoryview) else value for name, value in row.items()}
        for row in queryset.order_by("pk").values()
    ]


def _his_items(body: str) -> list[Any]:
    """Ben's items in one stored delivery (his contacts entry, messages, statuses)."""
    his = []
    for entry in json.loads(body).get("entry", []):
        for change in entry.get("changes", []):
            for key, items in change.get("value", {}).items():
                if isinstance(items, list):
                    his += [
                        (key, item)
                        for item in items
                        if BEN_WA in (item.get("wa_id"), item.get("from"), item.get("recipient_id"))
                    ]
    return his


def bens_data(ben: Contact) -> dict[str, Any]:
    """Every row and every webhook item of Ben's, as stored."""
    subject = ConsentSubject.objects.get(contact_id=ben.pk)
    return {
        "contact": _rows(Contact.objects.filter(pk=ben.pk)),
        "tags": sorted(ben.tags.values_list("name", flat=True)),
        "messages": _rows(Message.objects.filter(contact=ben)),
        "timelines": _rows(MessageStatusEvent.objects.filter(message__contact=ben)),
        "provider calls": _rows(ProviderCall.objects.filter(message__contact=ben)),
        "consent subject": _rows(ConsentSubject.objects.filter(pk=subject.pk)),
        "consent events": _rows(ConsentEvent.objects.filter(subject=subject)),
        "consent state": _rows(ConsentState.objects.filter(subject=subject)),
        "webhook items": {
            event.pk: _his_items(event.raw_body) for event in WebhookEvent.objects.order_by("pk")
        },
    }


def her_number_erased(value: Any) -> Any:
    """`value` with her number (as Meta writes it, in Ben's notice) replaced: what erasure may change."""
    return json.loads(json.dumps(value).replace(AVA_WA, "[erased]"))


@pytest.fixture
def staff():
    return StaffUserFactory(username="privacy-officer", is_superuser=True)


@pytest.fixture
def composer():
    user = UserFactory(username="composer")
    user.user_permissions.add(Permission.objects.get(codename="send_without_approval"))
    return type(user).objects.get(pk=user.pk)


def test_after_erasure_no_column_of_any_table_holds_the_person(
    client, staff, composer, django_capture_on_commit_callbacks
):
    consent_text_create(version="v1", business_name="Acme Bikes", body="Acme offers. Reply STOP to stop.")

    # Ava and Ben write to us; Meta batches their messages into the same deliveries.
    deliver(
        client,
        batched(
            ava_value(real_wamid(AVA_WA, 1), {"type": "text", "text": {"body": AVA_WRITES}}),
            ben_value(real_wamid(BEN_WA, 1), BEN_WRITES),
        ),
    )
    deliver(
        client,
        batched(
            ava_value(
                real_wamid(AVA_WA, 2),
                {
                    "type": "image",
                    "image": {"id": "1479537139650973", "mime_type": "image/jpeg", "caption": AVA_CAPTION},
                },
            ),
            ben_value(real_wamid(BEN_WA, 3), BEN_NAMES_AVA),
        ),
    )
    deliver(
        client,
        ava_value(
            real_wamid(AVA_WA, 3),
            {
                "type": "location",
                "location": {"latitude": 40.69, "longitude": -73.99, "address": AVA_ADDRESS},
            },
        ),
    )
    ava, ben = Contact.objects.get(phone_number=AVA), Contact.objects.get(phone_number=BEN)
    for person in (ava, ben):
        consent_record(
            contact_id=person.pk,
            phone_number=person.phone_number,
            name=person.profile_name,
            purpose="marketing",
            action="opt_in",
            source="web_form",
            evidence=CONSENT_EVIDENCE,
            text_version="v1",
        )

    # Staff answer both; Meta's statuses for both arrive in one delivery.
    to_ava = send(ava, WE_WRITE_AVA, composer, django_capture_on_commit_callbacks)
    to_ben = send(ben, WE_WRITE_BEN, composer, django_capture_on_commit_callbacks)
    deliver(
        client,
        batched(
            status(to_ava, "delivered", 1),
            status(to_ben, "delivered", 1),
            status(to_ava, "read", 2),
            status(to_ben, "read", 2),
        ),
    )
    # A status for a send of ours Meta confirmed before we recorded it: it waits as a PendingStatus.
    deliver(
        client,
        webhook_payloads.status_value(wamid=real_wamid(AVA_WA, 9), status="sent", recipient_wa_id=AVA_WA),
    )
    # Ben changes his number to one Ava has: staff get an alert quoting Meta's notice (her number).
    deliver(
        client,
        {
            "messages": [
                {
                    "from": BEN_WA,
                    "id": real_wamid(BEN_WA, 2),
                    "timestamp": now_ts(3),
                    "type": "system",
                    "system": {
                        "body": f"User {BEN_NAME} changed from {BEN_WA} to {AVA_WA}",
                        "wa_id": AVA_WA,
                        "type": "user_changed_number",
                    },
                }
            ]
        },
    )
    assert ProviderAlert.objects.filter(kind="contact_number_conflict").exists()

    # A staff member corrects her time zone in the admin (Django's LogEntry names her).
    admin = Client()
    admin.force_login(staff)
    change_url = reverse("admin:messaging_contact_change", args=[ava.pk])
    assert admin.get(change_url).status_code == 200
    response = admin.post(
        change_url,
        {
            "phone_number": AVA,
            "wa_id": AVA_WA,
            "user_id": AVA_USER_ID,
            "username": "",
            "profile_name": AVA_NAME,
            "locale": "en_US",
            "timezone": "America/Chicago",
            "_save": "Save",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]

    # She asks, on the web form, to be deleted; staff verify her by calling back.
    request = privacy_request_file(
        kind="delete",
        channel="web_form",
        phone_number="(555) 012-3456",
        requester_name=AVA_NAME,
        requester_email=AVA_EMAIL,
        details=AVA_REQUEST,
    )
    # Filing on the web sent her a verification code on WhatsApp (messaging's person_notify).
    assert Message.objects.filter(contact=ava, purpose="privacy_request").count() == 1
    privacy_verify_manually(
        request=request,
        user=staff,
        note=f"Called {AVA_NAME} back on (555) 012-3456; she confirmed the order.",
    )

    traces = {
        *phone_formats(AVA),
        *base64_forms(AVA_WA),  # inside Meta's wamids
        AVA_NAME,
        AVA_USER_ID,
        AVA_EMAIL,
        AVA_WRITES,
        AVA_CAPTION,
        AVA_ADDRESS,
        WE_WRITE_AVA,
        AVA_REQUEST,
    }
    before = database_scan(traces, theirs=(BEN_NAMES_AVA,))
    # The scan sees her wherever the product put her (so an empty scan afterwards means something).
    seen = set().union(*before.values())
    assert traces - phone_formats(AVA) - base64_forms(AVA_WA) <= seen
    assert AVA in seen and AVA_WA in seen and seen & base64_forms(AVA_WA)
    assert {
        "messaging_contact.phone_number",
        "messaging_message.preview",
        "messaging_webhookevent.raw_body",
        "messaging_pendingstatus.payload",
        "messaging_provideralert.details",
        "django_admin_log.object_repr",
        "compliance_privacyrequest.requester_email",
        "compliance_privacyrequest.verification_note",
    } <= before.keys()
    assert AVA_NAME in database_scan({AVA_NAME})["messaging_message.preview"]  # Ben's words, before too
    ben_before = bens_data(ben)

    with django_capture_on_commit_callbacks(execute=True):
        privacy_request_fulfil(request=request, user=staff)

    left = database_scan(traces, theirs=(BEN_NAMES_AVA,))
    assert left == {}, "still holding the erased person:\n" + "\n".join(
        f"  {where}: {sorted(needles)}" for where, needles in sorted(left.items())
    )
    certificate = DeletionCertificate.objects.get(request=request)
    assert certificate.body["erased"]["messaging"]["contacts deleted"] == 1
    assert certificate.body["erased"]["messaging"]["messages deleted"] == 5  # 3 from her, 2 to her
    assert ConsentSubject.objects.filter(erased_at__isnull=False, wrapped_key__isnull=True).count() == 1
    assert ledger_verify().ok

    # Ben keeps everything, byte for byte: contact, messages, timelines, delivery log, consent, and his
    # items in the shared deliveries. Only his notice quoting her number loses the number.
    ben.refresh_from_db()
    assert (ben.phone_number, ben.profile_name) == (BEN, BEN_NAME)
    number_change = real_wamid(BEN_WA, 2)
    expected = json.loads(json.dumps(ben_before, default=str))
    for message in expected["messages"]:
        if message["provider_message_id"] == number_change:
            message.update(
                preview=f"🔔 User changed number: User {BEN_NAME} changed from {BEN_WA} to [erased]",
                content=her_number_erased(message["content"]),
            )
    for event_pk, items in expected["webhook items"].items():
        expected["webhook items"][event_pk] = [
            her_number_erased(item) if item[1].get("id") == number_change else item for item in items
        ]
    assert json.loads(json.dumps(bens_data(ben), default=str)) == expected
    names_her = Message.objects.get(provider_message_id=real_wamid(BEN_WA, 3))
    assert (names_her.preview, names_her.content["text"]["body"]) == (BEN_NAMES_AVA, BEN_NAMES_AVA)
    assert consent_status(contact_id=ben.pk, purpose="marketing") == "granted"
    shared = WebhookEvent.objects.filter(raw_body__contains=real_wamid(BEN_WA, 1)).get()
    assert BEN_WRITES in shared.raw_body and BEN_NAME in shared.raw_body
    assert BEN_NAMES_AVA in WebhookEvent.objects.get(raw_body__contains=real_wamid(BEN_WA, 3)).raw_body
    his_statuses = WebhookEvent.objects.get(raw_body__contains=to_ben.provider_message_id)
    assert his_statuses.raw_body.count(to_ben.provider_message_id) == 2  # delivered and read
    assert his_statuses.summary["erased"] == 2  # hers went
    assert PendingStatus.objects.count() == 0

    # She cannot be brought back by anyone but herself.
    report = contact_csv_import(file=io.BytesIO(b"phone_number,name\n555-012-3456,Ava\n"))
    assert report.failed == 1 and "erased at its owner's request" in report.errors[0].message
    with pytest.raises(Exception) as excinfo:
        directory().contact_for_phone(phone_number=AVA, create=True)  # every opt-in path starts here
    assert excinfo.value.error_dict["phone_number"][0].code == "suppressed"
    assert not Contact.objects.filter(phone_number=AVA).exists()


def test_a_later_consent_opt_in_through_the_api_is_refused_as_suppressed(authed_client, api_user, staff):
    consent_text_create(version="v1", business_name="Acme Bikes", body="Acme offers. Reply STOP to stop.")
    api_user.user_permissions.add(Permission.objects.get(codename="add_consentevent"))
    request = privacy_request_file(kind="delete", channel="email", phone_number=AVA, requester_name=AVA_NAME)
    privacy_verify_manually(request=request, user=staff, note="Checked her ID at the shop.")
    privacy_request_fulfil(request=request, user=staff)

    response = authed_client.post(
        "/api/v1/consents/",
        {
            "phone_number": "(555) 012-3456",
            "purpose": "marketing",
            "action": "opt_in",
            "consent_text_version": "v1",
            "ip_address": "203.0.113.7",
            "name": AVA_NAME,
        },
        format="json",
    )

    assert response.status_code == 400
    assert response.json()["code"] == "suppressed"
    assert not Contact.objects.filter(phone_number=AVA).exists()
