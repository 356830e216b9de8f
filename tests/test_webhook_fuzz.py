"""Whatever arrives at the webhook endpoint, it never answers 500 and processing never raises.

- Correctly signed bodies of any shape (random JSON; Meta-like envelopes whose entries, changes,
  values, statuses and errors have the wrong types, huge numbers, NaN, odd strings): 200 when it is a
  whatsapp_business_account envelope, else 400 with a machine-readable code; a stored delivery always
  ends `processed` or `failed` (the task ran to its end), and our message never leaves the delivery
  ladder.
- Garbled, missing or foreign signatures: 401, nothing stored.
- Bytes that are not UTF-8 JSON (other encodings, lone surrogates, random binary): 400.
"""

import hashlib
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from messaging.models import Message, MessageStatus, WebhookEvent
from messaging.services import sender_get_default
from messaging.statuses import LADDER
from messaging.webhook_events import ACCOUNT_FIELDS, STATUS_VALUES, TEMPLATE_FIELDS
from messaging.whatsapp.signatures import webhook_signature
from tests.factories import ContactFactory
from tests.webhook_client import APP_SECRET, WEBHOOK_URL, post_webhook

pytestmark = pytest.mark.django_db

FUZZ_WAMID = "wamid.FUZZ0000000000000000000000"
FUZZ_SETTINGS = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# --- Strategies -----------------------------------------------------------------------------------------

leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**40), max_value=10**40),
    st.floats(),  # NaN and ±Infinity too: Python's json writes and reads them
    st.text(max_size=30),
    st.sampled_from(["", "\x00", "\u202e", "😀" * 50, "9" * 300, "-1", "1e400"]),
)
any_json = st.recursive(
    leaves,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)


def maybe(strategy):
    """Usually the right shape, sometimes anything at all."""
    return st.one_of(strategy, strategy, any_json)


timestamps = st.one_of(
    st.integers(min_value=-(10**20), max_value=10**20).map(str), st.integers(), st.floats(), any_json
)
meta_errors = st.lists(
    maybe(
        st.fixed_dictionaries(
            {"code": maybe(st.sampled_from([131050, 131026, 130429, "131050"]))},
            optional={
                "title": maybe(st.text(max_size=300)),
                "message": any_json,
                "error_data": maybe(st.fixed_dictionaries({"details": any_json})),
            },
        )
    ),
    max_size=3,
)
statuses = st.fixed_dictionaries(
    {
        "id": maybe(st.sampled_from([FUZZ_WAMID, "wamid.OTHER", "", "x" * 500])),
        "status": maybe(st.sampled_from([*sorted(STATUS_VALUES), "SENT", "queued"])),
    },
    optional={
        "timestamp": timestamps,
        "recipient_id": any_json,
        "recipient_user_id": any_json,
        "biz_opaque_callback_data": maybe(st.sampled_from(["1", "-1", "99999999999999999999999", "abc"])),
        "pricing": maybe(
            st.fixed_dictionaries(
                {},
                optional={
                    "billable": any_json,
                    "pricing_model": maybe(st.text(max_size=40)),
                    "category": maybe(st.text(max_size=40)),
                    "type": any_json,
                },
            )
        ),
        "conversation": maybe(st.fixed_dictionaries({"id": any_json, "origin": any_json})),
        "errors": maybe(meta_errors),
    },
)
values = st.fixed_dictionaries(
    {},
    optional={
        "messaging_product": any_json,
        "metadata": maybe(
            st.fixed_dictionaries(
                {"phone_number_id": maybe(st.just("100200300400500")), "display_phone_number": any_json}
            )
        ),
        "statuses": maybe(st.lists(statuses, max_size=4)),
        "messages": maybe(st.lists(any_json, max_size=2)),
        "contacts": maybe(st.lists(any_json, max_size=2)),
        "errors": maybe(meta_errors),
        "user_preferences": maybe(st.lists(any_json, max_size=2)),
        "event": any_json,
        "alert_type": any_json,
    },
)
changes = maybe(
    st.fixed_dictionaries(
        {
            "field": maybe(
                st.sampled_from(
                    ["messages", "user_preferences", "unknown_field", *TEMPLATE_FIELDS, *ACCOUNT_FIELDS]
                )
            ),
            "value": maybe(values),
        }
    )
)
entries = maybe(st.fixed_dictionaries({"id": any_json, "changes": maybe(st.lists(changes, max_size=3))}))
envelopes = st.fixed_dictionaries(
    {"object": maybe(st.just("whatsapp_business_account")), "entry": maybe(st.lists(entries, max_size=3))}
)
bodies = st.one_of(envelopes, envelopes, envelopes, any_json)


def is_envelope(body) -> bool:
    return (
        isinstance(body, dict)
        and body.get("object") == "whatsapp_business_account"
        and isinstance(body.get("entry"), list)
    )


# --- Tests ------------------------------------------------------------------------------------------------


@pytest.fixture
def our_message():
    return Message.objects.create(
        contact=ContactFactory(),
        sender=sender_get_default(),
        kind="text",
        content={"body": "hi"},
        status=MessageStatus.SENT,
        provider_message_id=FUZZ_WAMID,
    )


@FUZZ_SETTINGS
@given(body=bodies)
def test_signed_bodies_of_any_shape_never_give_a_500_and_processing_always_finishes(
    client, our_message, body
):
    raw = json.dumps(body).encode()
    response = post_webhook(client, raw)
    if is_envelope(body):
        assert response.status_code == 200, response.content
        event = WebhookEvent.objects.get(body_sha256=hashlib.sha256(raw).hexdigest())
        assert event.state in (WebhookEvent.State.PROCESSED, WebhookEvent.State.FAILED)
    else:
        assert response.status_code == 400, response.content
        assert response.json()["code"] == "not_a_whatsapp_event"
    our_message.refresh_from_db()
    assert our_message.status in LADDER


@FUZZ_SETTINGS
@given(
    signature=st.one_of(
        st.text(max_size=80),
        st.text(alphabet="0123456789abcdef", min_size=64, max_size=64).map(lambda h: "sha256=" + h),
        st.sampled_from(["sha256=", "sha1=abc", "SHA256=", "sha256 ="]),
        st.text(min_size=1, max_size=20).map(lambda secret: webhook_signature(b"{}", "other-" + secret)),
    ),
    body=envelopes,
)
def test_garbled_or_foreign_signatures_are_a_401_and_nothing_is_stored(client, signature, body):
    raw = json.dumps(body).encode()
    response = client.post(
        WEBHOOK_URL, data=raw, content_type="application/json", HTTP_X_HUB_SIGNATURE_256=signature
    )
    assert response.status_code == 401
    assert response.json()["code"] == "invalid_signature"
    assert not WebhookEvent.objects.exists()


@pytest.mark.parametrize("signature", ["upper", "other-secret", "missing"])
def test_the_right_signature_in_the_wrong_form_is_a_401(client, signature):
    raw = b'{"object": "whatsapp_business_account", "entry": []}'
    right = webhook_signature(raw, APP_SECRET)
    header = {
        "upper": right.upper(),
        "other-secret": webhook_signature(raw, APP_SECRET + "x"),
        "missing": None,
    }[signature]
    extra = {"HTTP_X_HUB_SIGNATURE_256": header} if header is not None else {}
    response = client.post(WEBHOOK_URL, data=raw, content_type="application/json", **extra)
    assert response.status_code == 401


ENVELOPE = {"object": "whatsapp_business_account", "entry": []}


@pytest.mark.parametrize(
    "raw",
    [
        json.dumps(ENVELOPE).encode("utf-16"),  # valid JSON to Python's json (it sniffs the encoding)
        json.dumps(ENVELOPE).encode("utf-32"),
        b'{"object": "whatsapp_business_account", "entry": [], "x": "\xed\xa0\x80"}',  # a lone surrogate
        b'{"object": "whatsapp_business_account", "entry": [], "x": "\xff\xfe"}',
        b'{"object": "whatsapp_business_account", "entry": [], "x": "caf\xe9"}',  # Latin-1
        b"\x00\x01\x02",
    ],
    ids=["utf-16", "utf-32", "surrogate", "invalid-bytes", "latin-1", "binary"],
)
def test_bodies_that_are_not_utf8_json_are_a_400(client, raw):
    response = post_webhook(client, raw)
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_json"
    assert not WebhookEvent.objects.exists()


@FUZZ_SETTINGS
@given(raw=st.binary(max_size=200))
def test_random_signed_bytes_are_a_400_unless_they_happen_to_be_an_envelope(client, raw):
    response = post_webhook(client, raw)
    assert response.status_code in (200, 400)
    if response.status_code == 400:
        assert response.json()["code"] in ("invalid_json", "not_a_whatsapp_event")


def test_escaped_nul_and_surrogates_inside_valid_json_are_stored_and_the_status_applied(client, our_message):
    raw = (
        b'{"object": "whatsapp_business_account", "entry": [{"id": "\\u0000", "changes": [{"field": '
        b'"messages", "value": {"statuses": [{"id": "' + FUZZ_WAMID.encode() + b'", "status": "failed", '
        b'"timestamp": "1767261600", "errors": [{"code": "\\ud800", "title": "\\u0000\\udfff"}]}]}}]}]}'
    )
    response = post_webhook(client, raw)
    assert response.status_code == 200
    event = WebhookEvent.objects.get()
    assert event.raw_body.encode() == raw
    # PostgreSQL refuses NUL and lone surrogates in text: the status is stored without them.
    assert (event.state, event.error) == (WebhookEvent.State.PROCESSED, "")
    our_message.refresh_from_db()
    assert our_message.status == MessageStatus.FAILED
    assert "\x00" not in our_message.error_title
