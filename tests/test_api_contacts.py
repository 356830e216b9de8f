from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from messaging.models import Contact
from tests.factories import ContactFactory, UserFactory

pytestmark = pytest.mark.django_db
URL = "/api/v1/contacts/"


def test_requests_without_a_token_are_refused_with_a_code(api_client):
    response = api_client.get(URL)
    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"
    assert response["WWW-Authenticate"] == "Bearer"


def test_wrong_and_revoked_tokens_are_refused(api_client, api_user):
    from messaging.services import api_token_create, api_token_revoke

    api_client.credentials(HTTP_AUTHORIZATION="Bearer wa_not-a-real-token")
    assert api_client.get(URL).json()["code"] == "invalid_token"

    row, token = api_token_create(user=api_user)
    api_token_revoke(token=row)
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    response = api_client.get(URL)
    assert response.status_code == 401
    assert response.json()["code"] == "invalid_token"


def test_create_normalizes_the_phone_number_and_never_grants_consent(authed_client):
    response = authed_client.post(
        URL,
        {
            "phone_number": "(555) 012-3456",
            "profile_name": "Ava",
            "timezone": "America/Chicago",
            "tags": ["VIP"],
        },
        format="json",
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["phone_number"] == "+15550123456"
    assert body["tags"] == ["vip"]
    assert Contact.objects.get().timezone == "America/Chicago"


@pytest.mark.parametrize(
    ("payload", "field", "fragment"),
    [
        ({"phone_number": "call me maybe"}, "phone_number", "not a valid phone number"),
        ({"phone_number": "+15550123456", "timezone": "Mars/Olympus"}, "timezone", "IANA"),
        ({}, "phone_number", "required"),
    ],
)
def test_invalid_contacts_get_a_validation_error_naming_the_field(authed_client, payload, field, fragment):
    response = authed_client.post(URL, payload, format="json")
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "validation_error"
    assert field in body["errors"]
    assert fragment in body["detail"]


def test_duplicate_phone_numbers_are_refused_whatever_the_format(authed_client):
    ContactFactory(phone_number="+15550123456")
    response = authed_client.post(URL, {"phone_number": "+1-555-0123456"}, format="json")
    assert response.status_code == 400
    assert "already exists" in response.json()["errors"]["phone_number"][0]
    assert Contact.objects.count() == 1


def test_list_filters_by_phone_number_in_any_format_and_by_tag(authed_client):
    wanted = ContactFactory(phone_number="+15550123456", tags=["vip"])
    ContactFactory(phone_number="+15550123457", tags=["vip"])
    ContactFactory(phone_number="+15550123458")

    by_phone = authed_client.get(URL, {"phone_number": "(555) 012-3456"}).json()
    assert [c["id"] for c in by_phone["results"]] == [wanted.id]

    by_tag = authed_client.get(URL, {"tag": "vip"}).json()
    assert by_tag["count"] == 2

    bad = authed_client.get(URL, {"phone_number": "nope"})
    assert bad.status_code == 400
    assert bad.json()["code"] == "validation_error"


def test_retrieve_and_update(authed_client):
    contact = ContactFactory(phone_number="+15550123456", profile_name="Old")
    detail = authed_client.get(f"{URL}{contact.id}/").json()
    assert detail["profile_name"] == "Old"

    response = authed_client.patch(
        f"{URL}{contact.id}/", {"profile_name": "New", "tags": ["a", "b"]}, format="json"
    )
    assert response.status_code == 200
    contact.refresh_from_db()
    assert contact.profile_name == "New"
    assert sorted(contact.tags.values_list("name", flat=True)) == ["a", "b"]

    taken = ContactFactory(phone_number="+15550123499")
    clash = authed_client.patch(f"{URL}{contact.id}/", {"phone_number": taken.phone_number}, format="json")
    assert clash.status_code == 400
    assert clash.json()["code"] == "validation_error"


def test_unknown_contact_is_a_404_with_a_code(authed_client):
    response = authed_client.get(f"{URL}999999/")
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"


def test_create_api_token_prints_only_the_token_and_it_authenticates(api_client):
    UserFactory(username="shopify-bot")
    out = StringIO()
    call_command("create_api_token", "shopify-bot", stdout=out)
    token = out.getvalue().strip()
    assert "\n" not in token and token.startswith("wa_") and len(token) > 40

    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    assert api_client.get(URL).status_code == 200


def test_create_api_token_for_an_unknown_user_fails_clearly():
    with pytest.raises(CommandError, match="No user named 'ghost'"):
        call_command("create_api_token", "ghost", stdout=StringIO())


def test_openapi_schema_documents_the_contacts_api_and_bearer_auth(client):
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    assert "/api/v1/contacts/" in schema["paths"]
    schemes = schema["components"]["securitySchemes"]
    assert any(s.get("scheme") == "bearer" for s in schemes.values())
    docs = client.get("/api/docs/")
    assert docs.status_code == 200
    assert b"swagger" in docs.content.lower()
