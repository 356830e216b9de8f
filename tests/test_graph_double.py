"""The Graph API double itself answers like Meta: tests against it are only as good as it is."""

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
