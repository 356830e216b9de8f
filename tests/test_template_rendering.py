"""Rendering a template into the exact Graph API `template` object, and its preview."""

import pytest

from templates_app.models import MessageTemplate, TemplateStatus
from templates_app.rendering import TemplateNotApproved, TemplateParametersInvalid, render_template


def make(components, *, status=TemplateStatus.APPROVED, parameter_format="POSITIONAL", name="order_shipped"):
    return MessageTemplate(
        name=name,
        language="en_US",
        category="UTILITY",
        status=status,
        parameter_format=parameter_format,
        components=components,
    )


SHIPPED = make([
    {"type": "HEADER", "format": "TEXT", "text": "Order {{1}}"},
    {"type": "BODY", "text": "Hi {{1}}, your order of {{2}} ships on {{3}}."},
    {"type": "FOOTER", "text": "Reply STOP to opt out"},
    {"type": "BUTTONS", "buttons": [
        {"type": "URL", "text": "Track", "url": "https://shop.example/track/{{1}}"},
        {"type": "QUICK_REPLY", "text": "Talk to us"},
    ]},
])  # fmt: skip


def test_positional_template_renders_every_component_kind():
    rendered = render_template(
        SHIPPED,
        header="#1042",
        body=[
            "Ava",
            {"type": "currency", "fallback_value": "$12.50", "code": "USD", "amount_1000": 12500},
            {"type": "date_time", "fallback_value": "May 4"},
        ],
        buttons=["1042", "talk-1042"],
    )
    assert rendered.payload == {
        "name": "order_shipped",
        "language": {"code": "en_US"},
        "components": [
            {"type": "header", "parameters": [{"type": "text", "text": "#1042"}]},
            {"type": "body", "parameters": [
                {"type": "text", "text": "Ava"},
                {"type": "currency", "currency": {"fallback_value": "$12.50", "code": "USD", "amount_1000": 12500}},
                {"type": "date_time", "date_time": {"fallback_value": "May 4"}},
            ]},
            {"type": "button", "sub_type": "url", "index": "0", "parameters": [{"type": "text", "text": "1042"}]},
            {"type": "button", "sub_type": "quick_reply", "index": "1", "parameters": [{"type": "payload", "payload": "talk-1042"}]},
        ],
    }  # fmt: skip
    assert (
        rendered.preview
        == "*Order #1042*\n\nHi Ava, your order of $12.50 ships on May 4.\n\nReply STOP to opt out\n\n[Track] [Talk to us]"
    )


def test_named_parameters_cover_header_and_body():
    template = make(
        [
            {"type": "HEADER", "format": "TEXT", "text": "Hello {{first_name}}"},
            {"type": "BODY", "text": "Order {{order_id}} is ready, {{first_name}}."},
        ],
        parameter_format="NAMED",
    )
    rendered = render_template(template, body={"first_name": "Ava", "order_id": "1042"})
    assert rendered.payload["components"] == [
        {"type": "header", "parameters": [{"type": "text", "text": "Ava", "parameter_name": "first_name"}]},
        {"type": "body", "parameters": [
            {"type": "text", "text": "1042", "parameter_name": "order_id"},
            {"type": "text", "text": "Ava", "parameter_name": "first_name"},
        ]},
    ]  # fmt: skip
    assert "Order 1042 is ready, Ava." in rendered.preview


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (
            "https://cdn.example/invoice.pdf",
            {"type": "document", "document": {"link": "https://cdn.example/invoice.pdf"}},
        ),
        (
            {"id": "4490709327384033", "filename": "invoice.pdf"},
            {"type": "document", "document": {"id": "4490709327384033", "filename": "invoice.pdf"}},
        ),
    ],
)
def test_media_headers_take_a_link_or_an_uploaded_id(header, expected):
    template = make(
        [{"type": "HEADER", "format": "DOCUMENT"}, {"type": "BODY", "text": "Your invoice is attached."}]
    )
    rendered = render_template(template, header=header)
    assert rendered.payload["components"] == [{"type": "header", "parameters": [expected]}]


def test_location_header():
    template = make(
        [{"type": "HEADER", "format": "LOCATION"}, {"type": "BODY", "text": "Pick up your order here."}]
    )
    rendered = render_template(
        template, header={"latitude": 40.7128, "longitude": -74.006, "name": "Store", "address": "1 Main St"}
    )
    assert rendered.payload["components"][0]["parameters"][0]["location"]["latitude"] == 40.7128


def test_a_template_without_variables_sends_no_components():
    rendered = render_template(make([{"type": "BODY", "text": "Thanks for your order."}]))
    assert rendered.payload == {"name": "order_shipped", "language": {"code": "en_US"}}


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"header": "#1", "body": ["Ava", "x"], "buttons": ["1"]}, "expected 3 values, got 2"),
        ({"header": "#1", "body": ["Ava", "x", "y", "z"], "buttons": ["1"]}, "expected 3 values, got 4"),
        ({"body": ["Ava", "x", "y"], "buttons": ["1"]}, "pass `header`"),
        ({"header": "#1", "body": {"a": "b"}, "buttons": ["1"]}, "positional variables"),
        ({"header": "#1", "body": ["Ava", "x", "y"]}, "URL suffix"),
        ({"header": "#1", "body": ["Ava", "", "y"], "buttons": ["1"]}, "may not be empty"),
        (
            {"header": "#1", "body": ["Ava", {"type": "currency", "code": "USD"}, "y"], "buttons": ["1"]},
            "currency needs",
        ),
    ],
)
def test_wrong_parameters_are_refused_with_a_clear_error(kwargs, fragment):
    with pytest.raises(TemplateParametersInvalid) as excinfo:
        render_template(SHIPPED, **kwargs)
    assert excinfo.value.code == "template_parameters_invalid"
    assert fragment in excinfo.value.detail


def test_named_templates_name_missing_and_unknown_parameters():
    template = make(
        [{"type": "BODY", "text": "Order {{order_id}} is ready, {{first_name}}."}], parameter_format="NAMED"
    )
    with pytest.raises(TemplateParametersInvalid, match="missing first_name"):
        render_template(template, body={"order_id": "1"})
    with pytest.raises(TemplateParametersInvalid, match="unknown variable"):
        render_template(template, body={"order_id": "1", "first_name": "A", "coupon": "X"})


@pytest.mark.parametrize(
    ("status", "fragment"),
    [
        (TemplateStatus.PAUSED, "paused"),
        (TemplateStatus.DISABLED, "disabled"),
        (TemplateStatus.PENDING, "not approved"),
        (TemplateStatus.DRAFT, "not approved"),
    ],
)
def test_only_approved_templates_render_for_sending(status, fragment):
    with pytest.raises(TemplateNotApproved) as excinfo:
        render_template(make([{"type": "BODY", "text": "Hello there."}], status=status))
    assert excinfo.value.code == "template_not_approved"
    assert fragment in excinfo.value.detail
