"""Every outbound message kind, as the exact JSON Meta receives (sent through the whole pipeline into
the memory backend), and every one of Meta's limits refused with an error naming the field and the
limit."""

from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.core.exceptions import ValidationError
from django.utils import timezone

from compliance.services import Evidence, consent_record, consent_text_create
from messaging.message_kinds import build_message
from messaging.models import MessageStatus
from messaging.outbound import message_compose
from messaging.whatsapp import OutgoingMessage, WhatsAppBackend
from messaging.whatsapp.memory import MemoryBackend
from templates_app.models import MessageTemplate, TemplateStatus
from tests.factories import ContactFactory, UserFactory

pytestmark = pytest.mark.django_db

TO = "+15550123456"
WABA = "900800700600500"  # the default sender's business account (config/test_settings.py)


@pytest.fixture
def contact():
    # Wrote to us an hour ago: the 24-hour window is open for free-form messages.
    return ContactFactory(phone_number=TO, last_inbound_at=timezone.now() - timedelta(hours=1))


@pytest.fixture
def trusted():
    user = UserFactory(username="trusted")
    user.user_permissions.add(Permission.objects.get(codename="send_without_approval"))
    return type(user).objects.get(pk=user.pk)


@pytest.fixture
def send(contact, trusted, django_capture_on_commit_callbacks):
    """Compose as a trusted user and let the on-commit send run; return the message and Meta's body."""

    def send(message_type, data, *, reply_to=""):
        with django_capture_on_commit_callbacks(execute=True):
            message = message_compose(
                to_number="+1 (555) 012-3456",
                message_type=message_type,
                data=data,
                created_by=trusted,
                reply_to=reply_to,
            )
        message.refresh_from_db()
        assert message.status == MessageStatus.SENT, message.error_title
        (sent,) = MemoryBackend.outbox
        return message, sent["payload"]

    return send


def envelope(message, kind, content):
    return {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": "15550123456",
        "type": kind,
        kind: content,
        "biz_opaque_callback_data": str(message.pk),
    }


KINDS = [
    pytest.param(
        "text",
        {"text": "See https://shop.example/track/1042", "preview_url": True},
        "text",
        {"body": "See https://shop.example/track/1042", "preview_url": True},
        id="text-with-preview-url",
    ),
    pytest.param(
        "text", {"text": "Hi"}, "text", {"body": "Hi", "preview_url": False}, id="text-default-no-preview"
    ),
    pytest.param(
        "media",
        {"media": "https://cdn.example.com/p/shoe.JPG", "caption": "The red one"},
        "image",
        {"link": "https://cdn.example.com/p/shoe.JPG", "caption": "The red one"},
        id="image-by-link-with-caption",
    ),
    pytest.param(
        "media",
        {"media": "1037543291543636", "media_type": "document", "filename": "invoice-1042.pdf"},
        "document",
        {"id": "1037543291543636", "filename": "invoice-1042.pdf"},
        id="document-by-id-with-filename",
    ),
    pytest.param(
        "media",
        {"media": "https://cdn.example.com/invoices/invoice-1042.pdf", "caption": "Your invoice"},
        "document",
        {
            "link": "https://cdn.example.com/invoices/invoice-1042.pdf",
            "caption": "Your invoice",
            "filename": "invoice-1042.pdf",
        },
        id="document-by-link-filename-from-the-link",
    ),
    pytest.param(
        "media",
        {"media": {"link": "https://cdn.example.com/v/unboxing.mp4"}, "caption": "Unboxing"},
        "video",
        {"link": "https://cdn.example.com/v/unboxing.mp4", "caption": "Unboxing"},
        id="video-by-link-object",
    ),
    pytest.param(
        "media",
        {"media": {"id": "998877"}, "media_type": "audio"},
        "audio",
        {"id": "998877"},
        id="audio-without-caption",
    ),
    pytest.param(
        "media",
        {"media": "https://cdn.example.com/s/thanks.webp"},
        "sticker",
        {"link": "https://cdn.example.com/s/thanks.webp"},
        id="sticker",
    ),
    pytest.param(
        "location",
        {"latitude": 40.7128, "longitude": "-74.006", "name": "Acme Store", "address": "1 Main St"},
        "location",
        {"latitude": 40.7128, "longitude": -74.006, "name": "Acme Store", "address": "1 Main St"},
        id="location",
    ),
    pytest.param(
        "buttons",
        {
            "header": "Delivery",
            "body": "When should we deliver?",
            "footer": "Acme",
            "buttons": [{"id": "today", "title": "Today"}, {"title": "Tomorrow"}],
        },
        "interactive",
        {
            "type": "button",
            "header": {"type": "text", "text": "Delivery"},
            "body": {"text": "When should we deliver?"},
            "footer": {"text": "Acme"},
            "action": {
                "buttons": [
                    {"type": "reply", "reply": {"id": "today", "title": "Today"}},
                    {"type": "reply", "reply": {"id": "btn_2", "title": "Tomorrow"}},
                ]
            },
        },
        id="reply-buttons",
    ),
    pytest.param(
        "list",
        {
            "body": "Pick a slot",
            "button": "Slots",
            "sections": [
                {"title": "Morning", "rows": [{"id": "m9", "title": "9-10 am", "description": "Call first"}]},
                {"title": "Afternoon", "rows": [{"title": "2-3 pm"}]},
            ],
        },
        "interactive",
        {
            "type": "list",
            "body": {"text": "Pick a slot"},
            "action": {
                "button": "Slots",
                "sections": [
                    {
                        "title": "Morning",
                        "rows": [{"id": "m9", "title": "9-10 am", "description": "Call first"}],
                    },
                    {"title": "Afternoon", "rows": [{"id": "row_2", "title": "2-3 pm"}]},
                ],
            },
        },
        id="list",
    ),
    pytest.param(
        "reaction",
        {"message_id": "wamid.HBgLMTU1NTAxMjM0NTY=", "emoji": "👍"},
        "reaction",
        {"message_id": "wamid.HBgLMTU1NTAxMjM0NTY=", "emoji": "👍"},
        id="reaction",
    ),
    pytest.param(
        "reaction",
        {"message_id": "wamid.HBgLMTU1NTAxMjM0NTY="},
        "reaction",
        {"message_id": "wamid.HBgLMTU1NTAxMjM0NTY=", "emoji": ""},
        id="reaction-removed",
    ),
]


@pytest.mark.parametrize(("message_type", "data", "kind", "content"), KINDS)
def test_each_kind_reaches_meta_as_exactly_this_json(send, message_type, data, kind, content):
    message, payload = send(message_type, data)
    assert payload == envelope(message, kind, content)
    assert message.kind == kind and message.content == content


def test_a_reply_carries_the_context_of_the_message_it_answers(send):
    message, payload = send("text", {"text": "Yes, it ships today."}, reply_to="wamid.QUESTION")
    assert payload == {
        **envelope(message, "text", {"body": "Yes, it ships today.", "preview_url": False}),
        "context": {"message_id": "wamid.QUESTION"},
    }


def test_a_template_reaches_meta_with_its_rendered_components(send, contact):
    MessageTemplate.objects.create(
        waba_id=WABA,
        name="order_confirmation",
        language="en_US",
        category="UTILITY",
        status=TemplateStatus.APPROVED,
        components=[
            {"type": "HEADER", "format": "TEXT", "text": "Order {{1}}"},
            {"type": "BODY", "text": "Hi {{1}}, we received your order of {{2}}."},
            {"type": "BUTTONS", "buttons": [
                {"type": "URL", "text": "Track", "url": "https://shop.example/track/{{1}}"},
            ]},
        ],
    )  # fmt: skip
    consent_text_create(version="v1", business_name="Acme", body="Order updates on WhatsApp.")
    consent_record(
        contact_id=contact.id,
        phone_number=contact.phone_number,
        purpose="utility",
        action="opt_in",
        source="api",
        evidence=Evidence(ip_address="203.0.113.9"),
        text_version="v1",
    )
    message, payload = send(
        "template",
        {
            "template_name": "order_confirmation",
            "language": "en_US",
            "header": "#1042",
            "parameters": ["Ava", {"type": "currency", "fallback_value": "$12.50", "code": "USD", "amount_1000": 12500}],
            "buttons": ["1042"],
        },
    )  # fmt: skip
    assert payload == envelope(message, "template", {
        "name": "order_confirmation",
        "language": {"code": "en_US"},
        "components": [
            {"type": "header", "parameters": [{"type": "text", "text": "#1042"}]},
            {"type": "body", "parameters": [
                {"type": "text", "text": "Ava"},
                {"type": "currency", "currency": {"fallback_value": "$12.50", "code": "USD", "amount_1000": 12500}},
            ]},
            {"type": "button", "sub_type": "url", "index": "0", "parameters": [{"type": "text", "text": "1042"}]},
        ],
    })  # fmt: skip
    assert message.preview == "*Order #1042*\n\nHi Ava, we received your order of $12.50.\n\n[Track]"
    assert message.template_category == "UTILITY"


def test_build_message_plus_the_backend_gives_the_same_body_without_the_pipeline():
    built = build_message("media", {"media": "https://cdn.example.com/a.png", "caption": "Hi"})
    payload = WhatsAppBackend.build_message_payload(
        OutgoingMessage(to=TO, type=built.kind, content=built.content, reply_to="wamid.X")
    )
    assert payload == {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": "15550123456",
        "type": "image",
        "image": {"link": "https://cdn.example.com/a.png", "caption": "Hi"},
        "context": {"message_id": "wamid.X"},
    }
    assert built.preview == "Hi"


def _rows(count, **extra):
    return [{"id": f"r{n}", "title": f"Row {n}", **extra} for n in range(count)]


def _list(sections, **extra):
    return {"body": "Pick one", "button": "Options", "sections": sections, **extra}


def _buttons(buttons, **extra):
    return {"body": "Choose", "buttons": buttons, **extra}


BROKEN = [
    # (message_type, data, field, what the message must say)
    ("text", {"text": "x" * 4097}, "text", "text is 4097 characters; the limit is 4096"),
    ("text", {}, "text", "text is required"),
    ("text", {"text": "   "}, "text", "text is required"),
    ("text", {"text": ["hi"]}, "text", "text must be text"),
    ("text", {"text": "hi", "preview_url": "false"}, "preview_url", "true or false"),
    ("media", {"media": "https://x.example/a.jpg", "caption": "c" * 1025}, "caption", "1025 characters; the limit is 1024"),
    ("media", {"media": {"id": "55"}, "media_type": "audio", "caption": "Listen"}, "caption", "no caption on audio"),
    ("media", {"media": "https://x.example/s.webp", "caption": "Hi"}, "caption", "no caption on sticker"),
    ("media", {"media": "http://x.example/a.jpg"}, "media", "https"),
    ("media", {"media": "ftp://x.example/a.jpg"}, "media", "https"),
    ("media", {"media": {"link": "https:///a.jpg"}}, "media", "https"),
    ("media", {"media": "https://[::1/a.jpg"}, "media", "https"),
    ("media", {"media": "https://x.example/invoice.pdf", "media_type": "image"}, "media", "does not accept .pdf files as image; use .jpeg, .jpg, .png"),
    ("media", {"media": "https://x.example/a.png", "media_type": "sticker"}, "media", ".png files as sticker; use .webp"),
    ("media", {"media": "https://x.example/clip.mov"}, "media", ".mov files as document"),
    ("media", {"media": "https://x.example/a.mp3", "media_type": "gif"}, "media_type", "one of image, video, audio, document, sticker"),
    ("media", {"media": "https://x.example/a.jpg", "media_type": ["image"]}, "media_type", "one of image"),
    ("media", {"media": "1037543291543636"}, "media_type", "one of image"),
    ("media", {}, "media", "https link or an uploaded media id"),
    ("media", {"media": ["https://x.example/a.jpg"], "media_type": "image"}, "media", "link, a media id"),
    ("media", {"media": "9", "media_type": "document", "filename": "f" * 241}, "filename", "the limit is 240"),
    ("location", {"latitude": 90.5, "longitude": 0}, "latitude", "between -90 and 90"),
    ("location", {"latitude": -91, "longitude": 0}, "latitude", "between -90 and 90"),
    ("location", {"latitude": 0, "longitude": 180.1}, "longitude", "between -180 and 180"),
    ("location", {"latitude": 0, "longitude": -181}, "longitude", "between -180 and 180"),
    ("location", {"latitude": "north", "longitude": 0}, "latitude", "must be numbers"),
    ("location", {"latitude": 0}, "longitude", "must be numbers"),
    ("location", {"latitude": 10**400, "longitude": 0}, "latitude", "must be numbers"),
    ("location", {"latitude": float("nan"), "longitude": 0}, "latitude", "between -90 and 90"),
    ("location", {"latitude": 0, "longitude": 0, "name": "n" * 1001}, "name", "the limit is 1000"),
    ("buttons", _buttons([]), "buttons", "1 to 3 buttons"),
    ("buttons", _buttons([{"title": f"B{n}"} for n in range(4)]), "buttons", "1 to 3 buttons"),
    ("buttons", _buttons({"id": "a", "title": "A"}), "buttons", "1 to 3 buttons"),
    ("buttons", _buttons([{"title": "x" * 21}]), "buttons", "button 1 title is 21 characters; the limit is 20"),
    ("buttons", _buttons([{"id": "a", "title": "A"}, {"id": "b"}]), "buttons", "button 2 title is required"),
    ("buttons", _buttons([{"id": "a", "title": "A"}, {"id": "a", "title": "B"}]), "buttons", "unique; 'a' repeats"),
    ("buttons", _buttons([{"id": "i" * 257, "title": "A"}]), "buttons", "button 1 id is 257 characters; the limit is 256"),
    ("buttons", _buttons(["Yes"]), "buttons", "Button 1 must have an id and a title"),
    ("buttons", _buttons([{"title": "A"}], body="b" * 1025), "body", "the limit is 1024"),
    ("buttons", _buttons([{"title": "A"}], header="h" * 61), "header", "the limit is 60"),
    ("buttons", _buttons([{"title": "A"}], footer="f" * 61), "footer", "the limit is 60"),
    ("buttons", {"buttons": [{"title": "A"}]}, "body", "body is required"),
    ("list", _list([{"rows": _rows(11)}]), "sections", "at most 10 rows in all"),
    ("list", _list([{"title": "A", "rows": _rows(6)}, {"title": "B", "rows": _rows(5, id=None)}]), "sections", "at most 10 rows in all"),
    ("list", _list([{"rows": _rows(1)}], button="b" * 21), "button", "list button text is 21 characters; the limit is 20"),
    ("list", {"body": "Pick", "sections": [{"rows": _rows(1)}]}, "button", "list button text is required"),
    ("list", _list([{"rows": [{"title": "t" * 25}]}]), "sections", "section 1 row 1 title is 25 characters; the limit is 24"),
    ("list", _list([{"rows": [{"title": "T", "description": "d" * 73}]}]), "sections", "section 1 row 1 description is 73 characters; the limit is 72"),
    ("list", _list([{"title": "s" * 25, "rows": _rows(1)}]), "sections", "section 1 title is 25 characters; the limit is 24"),
    ("list", _list([{"title": "A", "rows": [{"id": "a", "title": "A"}]}, {"rows": [{"id": "b", "title": "B"}]}]), "sections", "section 2 title is required"),
    ("list", _list([{"title": "A", "rows": [{"id": "a", "title": "A"}]}, {"title": "B", "rows": [{"id": "a", "title": "B"}]}]), "sections", "unique; 'a' repeats"),
    ("list", _list([{"title": "A", "rows": []}]), "sections", "Section 1 needs at least one row"),
    ("list", _list([]), "sections", "1 to 10 sections"),
    ("list", _list([{"title": f"S{n}", "rows": [{"id": f"r{n}", "title": "R"}]} for n in range(11)]), "sections", "1 to 10 sections"),
    ("list", _list([{"rows": [{"id": "r" * 201, "title": "R"}]}]), "sections", "section 1 row 1 id is 201 characters; the limit is 200"),
    ("reaction", {"emoji": "👍"}, "message_id", "message_id is required"),
    ("reaction", {"message_id": "wamid.X", "emoji": "👍" * 11}, "emoji", "one emoji"),
    ("reaction", {"message_id": "wamid.X", "emoji": 1}, "emoji", "one emoji"),
    ("carousel", {}, "message_type", "Unknown message_type 'carousel'"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("message_type", "data", "field", "fragment"),
    BROKEN,
    ids=[f"{case[0]}-{case[2]}-{n}" for n, case in enumerate(BROKEN)],
)
def test_each_broken_limit_names_the_field_and_the_limit(message_type, data, field, fragment):
    with pytest.raises(ValidationError) as excinfo:
        build_message(message_type, data)
    errors = excinfo.value.message_dict
    assert list(errors) == [field]
    assert fragment in errors[field][0]


@pytest.mark.parametrize(
    ("message_type", "data"),
    [
        ("text", {"text": "x" * 4096}),
        ("media", {"media": "https://x.example/a.jpg", "caption": "c" * 1024}),
        ("buttons", _buttons([{"id": f"b{n}", "title": "t" * 20} for n in range(3)])),
        ("list", _list([{"title": "s" * 24, "rows": _rows(9, description="d" * 72)}, {"title": "B", "rows": [{"id": "z", "title": "t" * 24}]}], button="b" * 20)),
        ("location", {"latitude": -90, "longitude": 180}),
        ("reaction", {"message_id": "wamid.X", "emoji": ""}),
    ],
)  # fmt: skip
def test_values_exactly_at_each_limit_are_accepted(message_type, data):
    build_message(message_type, data)
