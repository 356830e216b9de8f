"""The Graph API double itself answers like Meta: tests against it are only as good as it is."""

import json
import socket
from urllib.parse import urlsplit

import pytest
import requests

from bench.graph_double import INVALID_OAUTH_MESSAGE, GraphApiDouble

TOKEN = "double-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
VALID_TEXT = {
    "messaging_product": "whatsapp",
    "recipient_type": "individual",
    "to": "15550123456",
    "type": "text",
    "text": {"body": "Hi"},
}


@pytest.fixture
def double():
    with GraphApiDouble(access_token=TOKEN) as graph:
        yield graph


@pytest.fixture
def http():
    with requests.Session() as session:
        yield session


def post_message(double, http, body, headers=AUTH):
    return http.post(
        f"{double.base_url}/v23.0/106540352242922/messages", json=body, headers=headers, timeout=2
    )


def test_a_valid_send_is_accepted_with_a_wamid(double, http):
    response = post_message(double, http, {**VALID_TEXT, "to": "+1 555 012 3456"})

    assert response.status_code == 200
    body = response.json()
    assert body["messaging_product"] == "whatsapp"
    assert body["contacts"] == [{"input": "+1 555 012 3456", "wa_id": "15550123456"}]
    [message] = body["messages"]
    assert message["id"].startswith("wamid.")
    assert message["message_status"] == "accepted"
    assert post_message(double, http, VALID_TEXT).json()["messages"][0]["id"] != message["id"]


@pytest.mark.parametrize(
    ("body", "named_in_details"),
    [
        ({k: v for k, v in VALID_TEXT.items() if k != "messaging_product"}, "messaging_product"),
        ({**VALID_TEXT, "messaging_product": "instagram"}, "messaging_product"),
        ({**VALID_TEXT, "recipient_type": "group"}, "recipient_type"),
        ({k: v for k, v in VALID_TEXT.items() if k != "to"}, "to"),
        ({**VALID_TEXT, "type": "poll", "poll": {}}, "poll"),
        ({**VALID_TEXT, "type": "image"}, "image"),
        ({**VALID_TEXT, "text": "Hi"}, "text"),
        ({**VALID_TEXT, "text": {"preview_url": False}}, "text['body']"),
        (
            {**VALID_TEXT, "type": "location", "location": {"latitude": "52.52", "longitude": 13.4}},
            "location['latitude']",
        ),
        (
            {**VALID_TEXT, "type": "template", "template": {"name": "hello_world"}},
            "template['language']['code']",
        ),
    ],
)
def test_a_malformed_send_gets_metas_100_error(double, http, body, named_in_details):
    response = post_message(double, http, body)

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == 100
    assert error["type"] == "OAuthException"
    assert error["message"].startswith("(#100) ")
    assert error["error_data"]["messaging_product"] == "whatsapp"
    assert named_in_details in error["error_data"]["details"]
    assert error["fbtrace_id"]
    assert double.messages == []


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}])
def test_a_missing_or_wrong_token_gets_401_code_190(double, http, headers):
    response = post_message(double, http, VALID_TEXT, headers=headers)

    assert response.status_code == 401
    error = response.json()["error"]
    assert (error["code"], error["type"], error["message"]) == (190, "OAuthException", INVALID_OAUTH_MESSAGE)
    assert error["fbtrace_id"]
    assert double.messages == []


def test_an_unknown_route_gets_404_unsupported_request(double, http):
    response = http.get(f"{double.base_url}/v23.0/106540352242922/media_library", headers=AUTH, timeout=2)

    assert response.status_code == 404
    error = response.json()["error"]
    assert error["code"] == 100
    assert error["message"].startswith("Unsupported get request. Object with ID '106540352242922'")
    post = http.post(f"{double.base_url}/v23.0/123/message_templates/extra", json={}, headers=AUTH, timeout=2)
    assert post.status_code == 404
    assert post.json()["error"]["message"].startswith("Unsupported post request.")


def test_template_pages_link_to_the_next_until_the_last(double, http):
    for i in range(5):
        double.add_template("waba", {"name": f"t_{i}", "language": "en_US", "category": "UTILITY"})

    url, names, pages = f"{double.base_url}/v23.0/waba/message_templates?limit=2", [], []
    while url:
        page = http.get(url, headers=AUTH, timeout=2).json()
        pages.append(page)
        names += [t["name"] for t in page["data"]]
        url = page["paging"].get("next")

    assert names == [f"t_{i}" for i in range(5)]
    assert len(pages) == 3
    assert "after" in pages[-1]["paging"]["cursors"]  # cursors are still there on the last page...
    assert "next" not in pages[-1]["paging"]  # ...but `next` is not


def test_faults_answer_the_next_matching_requests_then_stop(double, http):
    error = {"message": "(#130429) Rate limit hit", "type": "OAuthException", "code": 130429}
    double.inject_fault(status=400, error=error, times=2, path_contains="/messages")

    templates = http.get(f"{double.base_url}/v23.0/waba/message_templates", headers=AUTH, timeout=2)
    answers = [post_message(double, http, VALID_TEXT) for _ in range(3)]

    assert templates.status_code == 200  # path_contains did not match
    assert [a.status_code for a in answers] == [400, 400, 200]
    assert answers[0].json() == {"error": error}
    assert len(double.requests) == 4
    assert len(double.messages) == 1

    double.reset()
    assert double.requests == []
    assert double.messages == []


# --- Editing templates (Meta's "Edit template", POST /{message-template-id}) ------------------------------

NEW_BODY = [{"type": "BODY", "text": "Order {{1}} is on its way.", "example": {"body_text": [["#1"]]}}]


def edit(double, http, template_id, body):
    return http.post(f"{double.base_url}/v23.0/{template_id}", json=body, headers=AUTH, timeout=2)


def seeded(double, **fields):
    return double.add_template(
        "waba", {"name": "t_1", "language": "en_US", "category": "UTILITY", "components": [], **fields}
    )


def test_an_edit_takes_new_content_and_goes_back_to_review(double, http):
    template = seeded(double, status="REJECTED", rejected_reason="INVALID_FORMAT")

    response = edit(double, http, template["id"], {"category": "MARKETING", "components": NEW_BODY})

    assert (response.status_code, response.json()) == (200, {"success": True})
    stored = double.template(template["id"])
    assert (stored["status"], stored["category"], stored["components"]) == ("PENDING", "MARKETING", NEW_BODY)
    assert "rejected_reason" not in stored


@pytest.mark.parametrize(
    ("fields", "body", "fragment"),
    [
        ({"status": "PENDING"}, {"components": NEW_BODY}, "this one is PENDING"),
        ({"status": "DISABLED"}, {"components": NEW_BODY}, "this one is DISABLED"),
        ({"status": "REJECTED"}, {"name": "t_2", "components": NEW_BODY}, "name of a template cannot"),
        ({"status": "REJECTED"}, {"language": "de", "components": NEW_BODY}, "language of a template"),
        ({"status": "APPROVED"}, {"category": "MARKETING"}, "category of an approved template"),
        ({"status": "PAUSED"}, {"category": "MARKETING"}, "category of an approved template"),
        ({"status": "REJECTED"}, {"components": NEW_BODY, "parameter_format": "NAMED"}, "parameter_format"),
        ({"status": "REJECTED"}, {"components": []}, "components is required"),
        ({"status": "REJECTED"}, {}, "needs components or a category"),
    ],
)
def test_edits_meta_refuses(double, http, fields, body, fragment):
    template = seeded(double, **fields)

    response = edit(double, http, template["id"], body)

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == 100
    assert fragment in (error.get("error_user_msg") or error["error_data"]["details"])
    assert double.template(template["id"])["status"] == fields["status"]


def test_approved_templates_are_edited_once_a_day_and_ten_times_a_month(double, http):
    now = [1_700_000_000.0]
    double.clock = lambda: now[0]
    template = seeded(double)
    answers = []
    for _day in range(12):
        answers.append(edit(double, http, template["id"], {"components": NEW_BODY}).status_code)
        double.set_template(template["id"], status="APPROVED")  # Meta approves the new version
        answers.append(edit(double, http, template["id"], {"components": NEW_BODY}).status_code)
        double.set_template(template["id"], status="APPROVED")
        now[0] += 24 * 60 * 60 + 1

    assert answers[0::2] == [200] * 10 + [400, 400]  # the first edit of each day, until 10 in 30 days
    assert answers[1::2] == [400] * 12  # never a second one on the same day
    refused = edit(double, http, template["id"], {"components": NEW_BODY}).json()["error"]
    assert "10 times per 30 days" in refused["error_user_msg"]
    now[0] += 20 * 24 * 60 * 60  # the oldest edits leave the 30-day window
    assert edit(double, http, template["id"], {"components": NEW_BODY}).status_code == 200


def test_rejected_and_paused_templates_are_edited_without_limit(double, http):
    for status in ("REJECTED", "PAUSED"):
        template = seeded(double, status=status, name=f"t_{status.lower()}")
        for _ in range(12):
            assert edit(double, http, template["id"], {"components": NEW_BODY}).status_code == 200
            double.set_template(template["id"], status=status)


def test_an_unknown_template_id_is_an_unsupported_post_request(double, http):
    response = edit(double, http, "1234", {"components": NEW_BODY})

    assert response.status_code == 404
    assert response.json()["error"]["message"].startswith("Unsupported post request. Object with ID '1234'")


def raw_exchange(double, request: bytes) -> bytes:
    """Send `request` as bytes on a new connection and read until the double closes it."""
    host, port = urlsplit(double.base_url).hostname, urlsplit(double.base_url).port
    with socket.create_connection((host, port), timeout=2) as connection:
        connection.sendall(request)
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    return answer


def test_headers_are_read_whatever_their_case_and_connection_close_is_honoured(double):
    body = json.dumps(VALID_TEXT).encode()
    answer = raw_exchange(
        double,
        b"POST /v23.0/106540352242922/messages HTTP/1.1\r\nhost: graph\r\n"
        + f"authorization: Bearer {TOKEN}\r\ncontent-type: application/json\r\n".encode()
        + f"CONTENT-LENGTH: {len(body)}\r\nConnection: close\r\n\r\n".encode()
        + body,
    )

    assert answer.startswith(b"HTTP/1.1 200 ")
    assert b'"message_status": "accepted"' in answer
    assert [m["payload"]["to"] for m in double.messages] == ["15550123456"]


@pytest.mark.parametrize(
    ("request_bytes", "status_line"),
    [
        (b"POST /v23.0/1/messages HTTP/2.0\r\n\r\n", b"HTTP/1.1 505 "),
        (b"POST /v23.0/1/messages HTTP/1.1\r\nno colon here\r\n\r\n", b"HTTP/1.1 400 "),
        (b"POST /v23.0/1/messages HTTP/1.1\r\n" + b"X-A: b\r\n" * 101 + b"\r\n", b"HTTP/1.1 431 "),
    ],
)
def test_a_malformed_request_gets_an_http_error_and_is_not_taken(double, request_bytes, status_line):
    answer = raw_exchange(double, request_bytes)

    assert answer.startswith(status_line)
    assert double.messages == []
