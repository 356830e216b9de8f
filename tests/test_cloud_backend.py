"""The Cloud API backend against a local double of Meta's Graph API (bench/graph_double.py): the exact
requests it makes, how it reads Meta's answers and errors, and how it pages through templates."""

import socket
import threading

import pytest
from django.conf import settings

from bench.graph_double import INVALID_OAUTH_MESSAGE, GraphApiDouble
from messaging.whatsapp import (
    ErrorAction,
    OutgoingMessage,
    SenderRef,
    WhatsAppApiError,
    WhatsAppConfigurationError,
    WhatsAppTransportError,
    backend_create,
)
from messaging.whatsapp.cloud import CloudBackend

TOKEN = "EAAGm0PX4ZCpsBAtest"
API_VERSION = "v23.0"
PHONE_NUMBER_ID = "106540352242922"
WABA_ID = "102290129340398"
SENDER = SenderRef(phone_number_id=PHONE_NUMBER_ID, display_phone_number="+15550100001", waba_id=WABA_ID)
TO = "+15550123456"
MESSAGES_PATH = f"/{API_VERSION}/{PHONE_NUMBER_ID}/messages"
TEMPLATES_PATH = f"/{API_VERSION}/{WABA_ID}/message_templates"


@pytest.fixture
def double():
    with GraphApiDouble(access_token=TOKEN) as graph:
        yield graph


def make_backend(double: GraphApiDouble, **overrides) -> CloudBackend:
    options = {
        "graph_url": double.base_url,
        "api_version": API_VERSION,
        "access_token": TOKEN,
        "connect_timeout": 1.0,
        "read_timeout": 2.0,
        **overrides,
    }
    return CloudBackend(**options)


@pytest.fixture
def backend(double):
    cloud = make_backend(double)
    yield cloud
    cloud.close()


def text(body: str = "Hello from the shop", **kwargs) -> OutgoingMessage:
    return OutgoingMessage(to=TO, type="text", content={"preview_url": False, "body": body}, **kwargs)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- The request Meta receives ---------------------------------------------------------------------


def test_text_message_goes_out_as_metas_documented_request(double, backend):
    message = OutgoingMessage(
        to=TO, type="text", content={"preview_url": True, "body": "Track it: https://example.com/o/1234"}
    )

    result = backend.send(sender=SENDER, message=message)

    [request] = double.requests
    assert request.method == "POST"
    assert request.path == MESSAGES_PATH
    assert request.header("Authorization") == f"Bearer {TOKEN}"
    assert request.header("Content-Type") == "application/json"
    assert request.json == {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": "15550123456",
        "type": "text",
        "text": {"preview_url": True, "body": "Track it: https://example.com/o/1234"},
    }
    [accepted] = double.messages
    assert result.provider_message_id == accepted["id"]
    assert result.provider_message_id.startswith("wamid.")
    assert result.wa_id == "15550123456"
    assert result.message_status == "accepted"
    assert result.raw["contacts"] == [{"input": "15550123456", "wa_id": "15550123456"}]


REPLY_TO = "wamid.HBgLMTU1NTAxMjM0NTYVAgASGBQzQTdGMjk2QjM4OEI1RjlDNkY0NwA="
ENVELOPE = {"messaging_product": "whatsapp", "recipient_type": "individual", "to": "15550123456"}


@pytest.mark.parametrize(
    ("message", "expected_body"),
    [
        pytest.param(
            text("Yes, it ships tomorrow", reply_to=REPLY_TO),
            {
                **ENVELOPE,
                "type": "text",
                "text": {"preview_url": False, "body": "Yes, it ships tomorrow"},
                "context": {"message_id": REPLY_TO},
            },
            id="reply",
        ),
        pytest.param(
            text("Spring sale", callback_data="campaign:42;contact:7"),
            {
                **ENVELOPE,
                "type": "text",
                "text": {"preview_url": False, "body": "Spring sale"},
                "biz_opaque_callback_data": "campaign:42;contact:7",
            },
            id="callback-data",
        ),
        pytest.param(
            OutgoingMessage(
                to=TO,
                type="template",
                content={
                    "name": "order_update",
                    "language": {"code": "en_US"},
                    "components": [{"type": "body", "parameters": [{"type": "text", "text": "#1234"}]}],
                },
            ),
            {
                **ENVELOPE,
                "type": "template",
                "template": {
                    "name": "order_update",
                    "language": {"code": "en_US"},
                    "components": [{"type": "body", "parameters": [{"type": "text", "text": "#1234"}]}],
                },
            },
            id="template",
        ),
        pytest.param(
            OutgoingMessage(
                to=TO,
                type="location",
                content={
                    "latitude": 52.520008,
                    "longitude": 13.404954,
                    "name": "Pickup point",
                    "address": "Alexanderplatz 1, Berlin",
                },
            ),
            {
                **ENVELOPE,
                "type": "location",
                "location": {
                    "latitude": 52.520008,
                    "longitude": 13.404954,
                    "name": "Pickup point",
                    "address": "Alexanderplatz 1, Berlin",
                },
            },
            id="location",
        ),
    ],
)
def test_message_shapes_are_sent_exactly_and_accepted(double, backend, message, expected_body):
    result = backend.send(sender=SENDER, message=message)

    [request] = double.requests
    assert request.json == expected_body
    assert b'"to": "15550123456"' in request.body  # digits only: Meta's wa_id form, no "+"
    [accepted] = double.messages
    assert result.provider_message_id == accepted["id"]
    if message.type == "location":  # numbers, not strings: Meta rejects "52.52"
        assert isinstance(request.json["location"]["latitude"], float)
        assert isinstance(request.json["location"]["longitude"], float)


def test_backend_create_builds_a_cloud_backend_on_the_configured_api_version(double):
    cloud = backend_create("cloud", graph_url=double.base_url, access_token=TOKEN, read_timeout=2.0)
    try:
        assert isinstance(cloud, CloudBackend)
        cloud.send(sender=SENDER, message=text())
    finally:
        cloud.close()

    [request] = double.requests
    assert request.path == f"/{settings.WHATSAPP['API_VERSION']}/{PHONE_NUMBER_ID}/messages"


def test_sends_reuse_one_pooled_keep_alive_connection(double, backend):
    results = [backend.send(sender=SENDER, message=text(f"Message {n}")) for n in range(5)]

    assert len({r.provider_message_id for r in results}) == 5
    assert double.connections_opened == 1
    assert len({r.connection_id for r in double.requests}) == 1
    assert len({r.client_port for r in double.requests}) == 1


def test_concurrent_sends_share_the_pool_without_a_connection_per_message(double, backend):
    results, errors = [], []

    def worker(n: int) -> None:
        for i in range(5):
            try:
                results.append(backend.send(sender=SENDER, message=text(f"Worker {n} message {i}")))
            except Exception as exc:  # pragma: no cover - reported by the assertion below
                errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)

    assert errors == []
    assert len({r.provider_message_id for r in results}) == 20
    assert 1 <= double.connections_opened <= 4  # at most one connection per concurrent sender


# --- Meta's errors ---------------------------------------------------------------------------------


def graph_error(code, message, *, details=None, subcode=None, error_type="OAuthException"):
    error = {"message": message, "type": error_type}
    if code is not None:
        error["code"] = code
    if subcode is not None:
        error["error_subcode"] = subcode
    if details is not None:
        error["error_data"] = {"messaging_product": "whatsapp", "details": details}
    error["fbtrace_id"] = "AZxq3B7rT2c"
    return error


ERROR_TABLE = [
    pytest.param(
        400,
        graph_error(
            131047,
            "(#131047) Re-engagement message",
            details="Message failed to send because more than 24 hours have passed since the customer last replied to this number.",
        ),
        ErrorAction.NEEDS_TEMPLATE,
        id="131047-outside-24h-window",
    ),
    pytest.param(
        400,
        graph_error(
            130429, "(#130429) Rate limit hit", details="Cloud API message throughput has been reached."
        ),
        ErrorAction.RETRY,
        id="130429-throughput",
    ),
    pytest.param(
        500,
        graph_error(131000, "(#131000) Something went wrong", details="Something went wrong"),
        ErrorAction.RETRY,
        id="131000-something-went-wrong",
    ),
    pytest.param(
        500,
        graph_error(None, "An unexpected error has occurred. Please retry your request later."),
        ErrorAction.RETRY,
        id="http-500-without-code",
    ),
    pytest.param(
        400,
        graph_error(
            131056,
            "(#131056) (Business Account, Consumer Account) pair rate limit hit",
            details="Message failed to send because there were too many messages sent from this phone number to the same phone number in a short period of time.",
        ),
        ErrorAction.RETRY,
        id="131056-pair-rate-limit",
    ),
    pytest.param(
        401,
        graph_error(
            190,
            "Error validating access token: Session has expired on Tuesday, 01-Jul-25 10:00:00 PDT.",
            subcode=463,
        ),
        ErrorAction.AUTH,
        id="190-token-expired",
    ),
    pytest.param(401, graph_error(None, "Unauthorized"), ErrorAction.AUTH, id="http-401-without-code"),
    pytest.param(
        400,
        graph_error(100, "(#100) Invalid parameter", details="Parameter 'to' is not a valid phone number."),
        ErrorAction.PERMANENT,
        id="100-invalid-parameter",
    ),
    pytest.param(
        400,
        graph_error(131026, "(#131026) Message Undeliverable.", details="Message Undeliverable."),
        ErrorAction.PERMANENT,
        id="131026-undeliverable",
    ),
    pytest.param(
        404,
        graph_error(
            132001,
            "(#132001) Template name does not exist in the translation",
            details="template name (order_update) does not exist in en_US",
        ),
        ErrorAction.PERMANENT,
        id="132001-template-missing",
    ),
]


@pytest.mark.parametrize(("http_status", "error", "action"), ERROR_TABLE)
def test_meta_errors_are_parsed_and_classified(double, backend, http_status, error, action):
    double.inject_fault(status=http_status, error=error)

    with pytest.raises(WhatsAppApiError) as excinfo:
        backend.send(sender=SENDER, message=text())

    exc = excinfo.value
    assert exc.action == action
    assert exc.retryable == (action in (ErrorAction.RETRY, ErrorAction.DEFER))
    assert exc.http_status == http_status
    assert exc.code == error.get("code")
    assert exc.subcode == error.get("error_subcode")
    assert exc.error_type == "OAuthException"
    assert exc.message == error["message"]
    assert exc.details == error.get("error_data", {}).get("details", "")
    assert exc.fbtrace_id == "AZxq3B7rT2c"
    assert error["message"] in str(exc)
    assert len(double.requests) == 1  # never retried behind the caller's back: a POST could send twice


def test_a_wrong_token_is_an_auth_error_with_metas_code_190(double):
    cloud = make_backend(double, access_token="EAAG-revoked")
    with pytest.raises(WhatsAppApiError) as excinfo:
        cloud.send(sender=SENDER, message=text())
    cloud.close()

    assert excinfo.value.action == ErrorAction.AUTH
    assert excinfo.value.code == 190
    assert excinfo.value.http_status == 401
    assert excinfo.value.message == INVALID_OAUTH_MESSAGE
    assert excinfo.value.fbtrace_id
    assert double.messages == []


def test_a_body_meta_rejects_surfaces_its_details_as_permanent(double, backend):
    message = OutgoingMessage(to=TO, type="text", content={"preview_url": False})  # no body

    with pytest.raises(WhatsAppApiError) as excinfo:
        backend.send(sender=SENDER, message=message)

    assert excinfo.value.action == ErrorAction.PERMANENT
    assert excinfo.value.code == 100
    assert "text['body']" in excinfo.value.details
    assert double.messages == []


def test_a_non_json_502_is_retryable_with_a_clear_message(double, backend):
    double.inject_raw_response(status=502)

    with pytest.raises(WhatsAppApiError) as excinfo:
        backend.send(sender=SENDER, message=text())

    assert excinfo.value.action == ErrorAction.RETRY
    assert excinfo.value.code is None
    assert excinfo.value.http_status == 502
    assert "HTTP 502 without a Graph API error body" in str(excinfo.value)
    assert "502 Bad Gateway" in excinfo.value.raw["body"]


def test_a_read_timeout_on_send_may_have_sent_and_the_next_send_recovers(double):
    cloud = make_backend(double, read_timeout=0.2)
    double.inject_delay(5.0)
    try:
        with pytest.raises(WhatsAppTransportError) as excinfo:
            cloud.send(sender=SENDER, message=text("First"))
        assert excinfo.value.may_have_been_sent is True  # Meta got it; a retry must reconcile first
        assert excinfo.value.action == ErrorAction.RETRY
        assert "did not answer in time" in str(excinfo.value)
        assert len(double.requests) == 1

        result = cloud.send(sender=SENDER, message=text("Second"))  # the timed-out connection is not reused
        assert result.provider_message_id.startswith("wamid.")
    finally:
        cloud.close()


def test_a_read_timeout_on_a_read_only_call_was_not_a_send(double):
    cloud = make_backend(double, read_timeout=0.2)
    double.inject_delay(5.0)
    try:
        with pytest.raises(WhatsAppTransportError) as excinfo:
            cloud.list_templates(waba_id=WABA_ID)
    finally:
        cloud.close()
    assert excinfo.value.may_have_been_sent is False
    assert excinfo.value.action == ErrorAction.RETRY


def test_a_refused_connection_is_a_retryable_transport_error():
    cloud = CloudBackend(
        graph_url=f"http://127.0.0.1:{closed_port()}",
        api_version=API_VERSION,
        access_token=TOKEN,
        connect_timeout=0.5,
        read_timeout=0.5,
    )
    try:
        with pytest.raises(WhatsAppTransportError) as excinfo:
            cloud.send(sender=SENDER, message=text())
    finally:
        cloud.close()
    assert excinfo.value.action == ErrorAction.RETRY
    assert excinfo.value.retryable
    assert "Connection to the Graph API failed" in str(excinfo.value)
    # Nothing listened, so nothing was sent: the message can simply be retried, no reconciling.
    assert excinfo.value.may_have_been_sent is False


def test_a_connection_dropped_after_the_request_went_out_may_have_sent(double, backend):
    double.inject_disconnect()

    with pytest.raises(WhatsAppTransportError) as excinfo:
        backend.send(sender=SENDER, message=text())

    assert excinfo.value.may_have_been_sent is True
    assert excinfo.value.action == ErrorAction.RETRY
    assert len(double.requests) == 1
    assert backend.send(sender=SENDER, message=text("Again")).provider_message_id.startswith("wamid.")


# --- Templates -------------------------------------------------------------------------------------


def seed_templates(double: GraphApiDouble, count: int) -> list[dict]:
    return [
        double.add_template(
            WABA_ID,
            {
                "name": f"template_{i:03d}",
                "language": "en_US",
                "category": "UTILITY",
                "components": [{"type": "BODY", "text": f"Body {i}"}],
            },
        )
        for i in range(count)
    ]


def test_list_templates_returns_one_page_and_the_cursor_of_the_next(double, backend):
    seed_templates(double, 250)

    first = backend.list_templates(waba_id=WABA_ID, limit=100)
    second = backend.list_templates(waba_id=WABA_ID, after=first.after, limit=100)
    last = backend.list_templates(waba_id=WABA_ID, after=second.after, limit=100)

    assert [t["name"] for t in first.templates] == [f"template_{i:03d}" for i in range(100)]
    assert [t["name"] for t in second.templates] == [f"template_{i:03d}" for i in range(100, 200)]
    assert [t["name"] for t in last.templates] == [f"template_{i:03d}" for i in range(200, 250)]
    assert last.after is None  # Meta still sends cursors on the last page, but no `next`
    assert [r.query for r in double.requests] == [
        {"limit": "100"},
        {"limit": "100", "after": first.after},
        {"limit": "100", "after": second.after},
    ]
    assert all(r.method == "GET" and r.path == TEMPLATES_PATH for r in double.requests)


@pytest.mark.parametrize(("count", "expected_requests"), [(250, 3), (200, 2), (0, 1)])
def test_iter_templates_follows_the_cursors_to_the_end(double, backend, count, expected_requests):
    seeded = seed_templates(double, count)

    templates = list(backend.iter_templates(waba_id=WABA_ID, limit=100))

    assert templates == seeded  # all of them, in order, each once
    assert len(double.requests) == expected_requests
    afters = [r.query.get("after") for r in double.requests]
    assert afters[0] is None
    assert all(afters[1:]) and len(set(afters[1:])) == len(afters) - 1


def test_create_template_submits_the_definition_and_returns_metas_answer(double, backend):
    definition = {
        "name": "order_update",
        "language": "en_US",
        "category": "UTILITY",
        "components": [
            {"type": "BODY", "text": "Your order {{1}} has shipped.", "example": {"body_text": [["#1234"]]}}
        ],
    }

    created = backend.create_template(waba_id=WABA_ID, definition=definition)

    assert set(created) == {"id", "status", "category"}
    assert created["id"].isdigit()
    assert created["status"] == "PENDING"
    assert created["category"] == "UTILITY"
    [request] = double.requests
    assert (request.method, request.path) == ("POST", TEMPLATES_PATH)
    assert request.header("Authorization") == f"Bearer {TOKEN}"
    assert request.json == definition
    [stored] = double.templates(WABA_ID)
    assert (stored["id"], stored["status"]) == (created["id"], "PENDING")


def test_a_duplicate_template_is_a_permanent_error_with_metas_subcode(double, backend):
    seed_templates(double, 1)
    duplicate = {
        "name": "template_000",
        "language": "en_US",
        "category": "UTILITY",
        "components": [{"type": "BODY", "text": "Again"}],
    }

    with pytest.raises(WhatsAppApiError) as excinfo:
        backend.create_template(waba_id=WABA_ID, definition=duplicate)

    assert excinfo.value.code == 100
    assert excinfo.value.subcode == 2388024
    assert "already en_US content" in excinfo.value.details  # Meta's error_user_msg, shown to staff
    assert excinfo.value.http_status == 400
    assert excinfo.value.action == ErrorAction.PERMANENT
    assert not excinfo.value.retryable
    # The same name in another language is a new translation, not a duplicate.
    created = backend.create_template(waba_id=WABA_ID, definition={**duplicate, "language": "de"})
    assert created["status"] == "PENDING"


def test_an_invalid_template_name_is_rejected_permanently(double, backend):
    definition = {
        "name": "Order Update!",
        "language": "en_US",
        "category": "UTILITY",
        "components": [{"type": "BODY", "text": "Hi"}],
    }

    with pytest.raises(WhatsAppApiError) as excinfo:
        backend.create_template(waba_id=WABA_ID, definition=definition)

    assert (excinfo.value.code, excinfo.value.action) == (100, ErrorAction.PERMANENT)
    assert double.templates(WABA_ID) == []


# --- Editing a template Meta holds (a rejected or paused template being reworked) ------------------

#: The request body of Meta's "Edit template" (operationId editTemplate, POST /{Version}/{TEMPLATE_ID}
#: in Meta's OpenAPI spec v23.0), restated here: the documented properties and nothing else.
EDIT_TEMPLATE_REQUEST_SCHEMA = {
    "type": "object",
    "properties": {
        "category": {"type": "string"},
        "components": {"type": "array", "items": {"type": "object"}},
        "language": {"type": "string"},
        "name": {"type": "string"},
    },
    "additionalProperties": False,
}
EDIT_TEMPLATE_RESPONSE_SCHEMA = {"type": "object", "properties": {"success": {"type": "boolean"}}}
EDITED_COMPONENTS = [
    {"type": "BODY", "text": "Your order {{1}} left our warehouse.", "example": {"body_text": [["#1234"]]}}
]


def test_edit_template_posts_metas_documented_body_to_the_template_node(double, backend):
    import jsonschema

    (seeded,) = seed_templates(double, 1)
    double.set_template(seeded["id"], status="REJECTED", rejected_reason="INVALID_FORMAT")

    answer = backend.edit_template(
        template_id=seeded["id"], payload={"category": "UTILITY", "components": EDITED_COMPONENTS}
    )

    assert answer == {"success": True}
    jsonschema.validate(answer, EDIT_TEMPLATE_RESPONSE_SCHEMA)
    [request] = double.requests
    assert (request.method, request.path) == ("POST", f"/{API_VERSION}/{seeded['id']}")
    assert request.header("Authorization") == f"Bearer {TOKEN}"
    assert request.header("Content-Type") == "application/json"
    jsonschema.validate(request.json, EDIT_TEMPLATE_REQUEST_SCHEMA)
    stored = double.template(seeded["id"])
    assert (stored["status"], stored["components"]) == ("PENDING", EDITED_COMPONENTS)


def test_the_services_edit_payload_fits_metas_schema():
    import jsonschema

    from templates_app.models import MessageTemplate
    from templates_app.services import template_edit_payload

    template = MessageTemplate(name="t", language="en_US", category="UTILITY", components=EDITED_COMPONENTS)
    jsonschema.validate(template_edit_payload(template), EDIT_TEMPLATE_REQUEST_SCHEMA)


def test_an_edit_meta_refuses_is_a_permanent_error_with_metas_explanation(double, backend):
    (seeded,) = seed_templates(double, 1)  # APPROVED: once per 24 hours
    backend.edit_template(template_id=seeded["id"], payload={"components": EDITED_COMPONENTS})
    double.set_template(seeded["id"], status="APPROVED")

    with pytest.raises(WhatsAppApiError) as excinfo:
        backend.edit_template(template_id=seeded["id"], payload={"components": EDITED_COMPONENTS})

    assert (excinfo.value.code, excinfo.value.http_status) == (100, 400)
    assert excinfo.value.action == ErrorAction.PERMANENT
    assert "1 time per 24 hours" in excinfo.value.details


def test_an_edit_answer_without_success_is_an_error(double, backend):
    (seeded,) = seed_templates(double, 1)
    double.inject_raw_response(
        status=200, body='{"success": false}', content_type="application/json", path_contains=seeded["id"]
    )

    with pytest.raises(WhatsAppApiError) as excinfo:
        backend.edit_template(template_id=seeded["id"], payload={"components": EDITED_COMPONENTS})

    assert "did not confirm" in str(excinfo.value)


def test_editing_an_unknown_template_is_metas_unsupported_request(double, backend):
    with pytest.raises(WhatsAppApiError) as excinfo:
        backend.edit_template(template_id="999", payload={"components": EDITED_COMPONENTS})

    assert (excinfo.value.http_status, excinfo.value.code) == (404, 100)
    assert "Object with ID '999' does not exist" in excinfo.value.message


# --- Configuration ---------------------------------------------------------------------------------


@pytest.mark.parametrize("token", ["", None])
def test_a_missing_access_token_fails_at_construction(double, token):
    with pytest.raises(WhatsAppConfigurationError) as excinfo:
        backend_create("cloud", graph_url=double.base_url, access_token=token)

    assert "WHATSAPP_ACCESS_TOKEN" in str(excinfo.value)
    assert excinfo.value.action == ErrorAction.AUTH
    assert double.requests == []
