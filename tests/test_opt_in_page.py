"""The public opt-in page, as a customer (and a bot, and a staff member publishing wording) meets it."""

import re
import uuid

import pytest
from django.test import Client, override_settings

from compliance.models import ConsentEvent, ConsentStatus, ConsentText
from compliance.services import consent_evidence, consent_status, consent_text_create
from compliance.signals import double_opt_in_requested
from messaging.models import Contact
from tests.factories import ContactFactory, UserFactory

pytestmark = pytest.mark.django_db

URL = "/opt-in/"
THANKS_URL = "/opt-in/thanks/"
USER_AGENT = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) Mobile/15E148"
BODY = (
    "Acme Bikes will send you WhatsApp messages about the things you choose below. "
    "Consent is not a condition of purchase. Reply STOP at any time to stop."
)


@pytest.fixture
def text():
    return consent_text_create(version="2025-06-v1", business_name="Acme Bikes", body=BODY)


def unique_ip() -> str:
    # Every test posts from its own address: rate-limit counters (in a shared Redis, too) never collide.
    a, b, c = uuid.uuid4().bytes[:3]
    return f"10.{a}.{b}.{c}"


@pytest.fixture
def ip():
    return unique_ip()


@pytest.fixture
def client(ip):
    return Client(REMOTE_ADDR=ip, HTTP_USER_AGENT=USER_AGENT)


def form_data(text, **overrides):
    return {
        "phone_number": "(555) 012-3456",
        "name": "Ava Jones",
        "purposes": ["marketing", "utility"],
        "text_version": text.version,
        "homepage": "",
        **overrides,
    }


def checkbox_tags(html: str) -> list[str]:
    return re.findall(r'<input type="checkbox"[^>]*>', html)


def test_the_page_shows_the_business_its_current_wording_and_unticked_boxes(client, text):
    consent_text_create(
        version="2025-01-old", business_name="Acme Bikes", body="OLD WORDING", make_current=False
    )
    consent_text_create(version="2025-07-new", business_name="Acme Bikes", body=BODY + " New.")

    response = client.get(URL)

    html = response.content.decode()
    assert response.status_code == 200
    assert '<html lang="en">' in html and 'name="viewport"' in html
    assert "Get WhatsApp messages from Acme Bikes" in html
    assert BODY + " New." in html and "OLD WORDING" not in html
    assert '<input type="hidden" name="text_version" value="2025-07-new">' in html
    assert "Message and data rates may apply." in html
    assert 'href="/privacy/request/"' in html
    for label in ("Offers and news", "Order and account updates", "Security codes"):
        assert label in html
    boxes = checkbox_tags(html)
    assert len(boxes) == 3 and not any("checked" in box for box in boxes)
    assert "compliance/opt_in.css" in html
    assert response["Cache-Control"].startswith("max-age=0")


def test_the_wording_is_shown_as_text_never_as_markup(client):
    consent_text_create(version="v-html", business_name="<b>Shop</b>", body="Hi <script>alert(1)</script>")
    html = client.get(URL).content.decode()
    assert "<script>alert(1)" not in html and "&lt;script&gt;alert(1)" in html
    assert "<b>Shop</b>" not in html


def test_signing_up_records_one_opt_in_per_ticked_purpose_with_its_evidence(client, text, ip):
    response = client.post(URL, form_data(text))

    assert response.status_code == 302 and response["Location"] == THANKS_URL
    contact = Contact.objects.get(phone_number="+15550123456")
    assert contact.profile_name == "Ava Jones"
    events = list(ConsentEvent.objects.order_by("sequence"))
    assert [(e.purpose, e.action, e.source) for e in events] == [
        ("marketing", "opt_in", "web_form"),
        ("utility", "opt_in", "web_form"),
    ]
    for event in events:
        assert (event.text_version, event.text_sha256) == ("2025-06-v1", text.sha256)
        assert event.subject.contact_id == contact.id and not event.awaiting_confirmation
        evidence = consent_evidence(event)
        assert evidence["ip_address"] == ip
        assert evidence["user_agent"] == USER_AGENT
        assert evidence["page_url"] == "http://testserver/opt-in/"
        assert evidence["phone_number"] == "+15550123456"
        assert evidence["name"] == "Ava Jones"
    assert consent_status(contact_id=contact.id, purpose="marketing") == ConsentStatus.GRANTED
    assert consent_status(contact_id=contact.id, purpose="utility") == ConsentStatus.GRANTED
    assert consent_status(contact_id=contact.id, purpose="authentication") is None

    thanks = client.get(THANKS_URL).content.decode()
    assert "You're signed up" in thanks and "Reply <strong>STOP</strong>" in thanks
    assert "reply <strong>YES</strong>" not in thanks


def test_an_existing_contact_is_found_whatever_format_the_number_is_typed_in(client, text):
    existing = ContactFactory(phone_number="+15550123456", profile_name="Ava J.")

    client.post(URL, form_data(text, phone_number="+1 555-012-3456", purposes=["authentication"]))

    assert Contact.objects.count() == 1
    assert consent_status(contact_id=existing.id, purpose="authentication") == ConsentStatus.GRANTED


@override_settings(CONSENT_DOUBLE_OPT_IN=True)
def test_with_double_opt_in_consent_waits_for_the_whatsapp_confirmation(
    client, text, django_capture_on_commit_callbacks
):
    requested = []

    def receiver(sender, contact_id, purposes, **kwargs):
        requested.append((contact_id, purposes))

    double_opt_in_requested.connect(receiver)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            response = client.post(URL, form_data(text, purposes=["marketing"]))
    finally:
        double_opt_in_requested.disconnect(receiver)

    contact = Contact.objects.get(phone_number="+15550123456")
    assert response.status_code == 302
    assert consent_status(contact_id=contact.id, purpose="marketing") == ConsentStatus.PENDING
    assert ConsentEvent.objects.get().awaiting_confirmation
    assert requested == [(contact.id, ["marketing"])]
    thanks = client.get(THANKS_URL).content.decode()
    assert "reply <strong>YES</strong> to the WhatsApp message we just sent to confirm" in thanks


def test_without_a_ticked_purpose_the_form_asks_for_one_and_records_nothing(client, text):
    response = client.post(URL, form_data(text, purposes=[]))

    html = response.content.decode()
    assert response.status_code == 400
    assert 'id="purposes_error"' in html and "Choose at least one kind of message." in html
    assert 'role="alert"' in html and "<title>Error:" in html
    # What was typed is kept; nothing reached the ledger or the contacts.
    assert 'value="(555) 012-3456"' in html and 'value="Ava Jones"' in html
    assert not ConsentEvent.objects.exists() and not Contact.objects.exists()


def test_an_invalid_phone_number_is_a_form_error(client, text):
    response = client.post(URL, form_data(text, phone_number="12"))

    html = response.content.decode()
    assert response.status_code == 400
    assert re.search(r'id="id_phone_number_error">.*is not a valid phone number', html)
    assert 'aria-invalid="true"' in html
    assert 'aria-describedby="id_phone_number_hint id_phone_number_error"' in html
    # The purposes the person ticked stay ticked while they fix the number.
    assert sum("checked" in box for box in checkbox_tags(html)) == 2
    assert not ConsentEvent.objects.exists() and not Contact.objects.exists()


def test_wording_changed_since_the_page_was_opened_asks_to_review_it(client, text):
    page = client.get(URL).content.decode()
    assert 'value="2025-06-v1"' in page
    consent_text_create(version="2025-07-v2", business_name="Acme Bikes", body=BODY + " Now weekly.")

    response = client.post(URL, form_data(text))

    html = response.content.decode()
    assert response.status_code == 409
    assert "Please review the updated wording" in html
    assert BODY + " Now weekly." in html and 'name="text_version" value="2025-07-v2"' in html
    assert 'value="(555) 012-3456"' in html
    assert not any("checked" in box for box in checkbox_tags(html))
    assert not ConsentEvent.objects.exists()

    client.post(URL, form_data(text, text_version="2025-07-v2"))
    assert {e.text_version for e in ConsentEvent.objects.all()} == {"2025-07-v2"}


@pytest.mark.parametrize("version", ["v999", ""])
def test_a_made_up_or_missing_text_version_is_not_recorded(client, text, version):
    response = client.post(URL, form_data(text, text_version=version))
    assert response.status_code == 409
    assert "Please review the updated wording" in response.content.decode()
    assert not ConsentEvent.objects.exists()


def test_without_current_wording_the_form_is_not_available(client):
    consent_text_create(version="draft", business_name="Acme Bikes", body=BODY, make_current=False)

    page = client.get(URL)
    posted = client.post(URL, {"phone_number": "(555) 012-3456", "name": "Ava", "purposes": ["marketing"]})

    assert page.status_code == 503 and posted.status_code == 503
    assert "This form is not available yet" in page.content.decode()
    assert 'name="phone_number"' not in page.content.decode()
    assert not ConsentEvent.objects.exists()


@override_settings(CONSENT_FORM_RATE_LIMIT="2/10m")
def test_too_many_submissions_from_one_address_are_refused_for_a_while(client, text):
    first = client.post(URL, form_data(text, phone_number="(555) 012-0001"))
    second = client.post(URL, form_data(text, phone_number="(555) 012-0002", purposes=[]))
    third = client.post(URL, form_data(text, phone_number="(555) 012-0003"))

    assert (first.status_code, second.status_code, third.status_code) == (302, 400, 429)
    assert 0 < int(third["Retry-After"]) <= 600
    assert "Too many attempts" in third.content.decode()
    assert "Please wait" in third.content.decode()
    assert not Contact.objects.filter(phone_number="+15550120003").exists()
    # Reading the page is never limited, and other people can still sign up.
    assert client.get(URL).status_code == 200
    other = Client(REMOTE_ADDR=unique_ip(), HTTP_USER_AGENT=USER_AGENT)
    assert other.post(URL, form_data(text, phone_number="(555) 012-0004")).status_code == 302


@override_settings(TRUSTED_PROXY_COUNT=1)
def test_behind_a_trusted_proxy_the_evidence_names_the_real_client(text):
    proxied = Client(
        REMOTE_ADDR="10.255.0.1",
        HTTP_X_FORWARDED_FOR=f"198.51.100.66, {unique_ip()}",
        HTTP_USER_AGENT=USER_AGENT,
    )
    proxied.post(URL, form_data(text, purposes=["marketing"]))
    forwarded_client = proxied.defaults["HTTP_X_FORWARDED_FOR"].split(", ")[1]
    assert consent_evidence(ConsentEvent.objects.get())["ip_address"] == forwarded_client


def test_a_post_without_the_csrf_token_is_refused(text, ip):
    strict = Client(enforce_csrf_checks=True, REMOTE_ADDR=ip, HTTP_USER_AGENT=USER_AGENT)

    refused = strict.post(URL, form_data(text))

    assert refused.status_code == 403
    assert not ConsentEvent.objects.exists()
    # The same browser, having loaded the page (and its token), gets through.
    strict.get(URL)
    token = strict.cookies["csrftoken"].value
    accepted = strict.post(URL, form_data(text, csrfmiddlewaretoken=token))
    assert accepted.status_code == 302
    assert ConsentEvent.objects.count() == 2


def test_a_bot_filling_the_hidden_field_sees_thanks_but_nothing_is_recorded(client, text):
    response = client.post(URL, form_data(text, homepage="https://spam.example"), follow=True)

    assert response.redirect_chain == [(THANKS_URL, 302)]
    assert "You're signed up" in response.content.decode()
    assert not ConsentEvent.objects.exists() and not Contact.objects.exists()


def test_a_browser_that_sends_no_user_agent_cannot_leave_incomplete_evidence(text, ip):
    anonymous = Client(REMOTE_ADDR=ip)

    response = anonymous.post(URL, form_data(text))

    assert response.status_code == 400
    assert "did not send the details we must keep" in response.content.decode()
    assert not ConsentEvent.objects.exists() and not Contact.objects.exists()


# --- Publishing wording in the admin ----------------------------------------------------------------


@pytest.fixture
def staff_client():
    admin_user = UserFactory(username="compliance-admin", is_staff=True, is_superuser=True)
    staff = Client()
    staff.force_login(admin_user)
    return staff, admin_user


def test_staff_publish_a_new_version_that_the_page_then_shows(staff_client, client, text):
    staff, admin_user = staff_client

    response = staff.post(
        "/admin/compliance/consenttext/add/",
        {
            "version": "2025-08-v2",
            "business_name": "Acme Bikes Inc.",
            "body": "New wording.",
            "make_current": "on",
        },
    )

    assert response.status_code == 302
    created = ConsentText.objects.get(version="2025-08-v2")
    assert created.is_current and created.created_by == admin_user
    assert created.sha256 and not ConsentText.objects.get(version="2025-06-v1").is_current
    assert "New wording." in client.get(URL).content.decode()
    listing = staff.get("/admin/compliance/consenttext/").content.decode()
    assert "2025-08-v2" in listing and created.sha256[:12] in listing


def test_a_draft_version_does_not_replace_the_current_one(staff_client, text):
    staff, _ = staff_client
    staff.post(
        "/admin/compliance/consenttext/add/",
        {"version": "2025-08-draft", "business_name": "Acme Bikes", "body": "Draft."},
    )
    assert ConsentText.objects.get(is_current=True).version == "2025-06-v1"
    assert not ConsentText.objects.get(version="2025-08-draft").is_current


def test_a_published_version_can_be_read_but_never_changed_or_deleted(staff_client, text):
    staff, _ = staff_client
    change_url = f"/admin/compliance/consenttext/{text.pk}/change/"

    page = staff.get(change_url).content.decode()
    staff.post(change_url, {"version": "2025-06-v1", "business_name": "Evil", "body": "Changed."})
    deleted = staff.post(f"/admin/compliance/consenttext/{text.pk}/delete/", {"post": "yes"})

    assert BODY in page and 'name="body"' not in page and 'name="_save"' not in page
    text.refresh_from_db()
    assert (text.business_name, text.body) == ("Acme Bikes", BODY)
    assert deleted.status_code == 403
    assert ConsentText.objects.filter(pk=text.pk).exists()


def test_a_suppressed_number_is_refused_without_saying_why(client, text):
    from compliance.suppression import suppression_add

    suppression_add(e164="+15550123456", reason="erased at the person's request (PR-TEST)")
    response = client.post(URL, form_data(text, phone_number="+1 555-012-3456"))

    assert response.status_code == 400
    page = response.content.decode()
    assert "We cannot sign up this number here" in page
    assert "erased" not in page and "PR-TEST" not in page  # a stranger learns nothing about an erasure
