"""Messages in the admin: composing every kind (errors on the field that broke Meta's limit, refusals
with their code, nothing stored), drafts, the approval queue by role (nobody approves their own), the
rejection reason, cancelling, and the read-only message page with its timeline and delivery log."""

import re
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from compliance.services import Evidence, consent_record, consent_text_create
from messaging import roles
from messaging.models import Contact, Message, MessageStatus, ProviderCall
from messaging.outbound import message_compose
from messaging.services import sender_get_default
from messaging.whatsapp.memory import MemoryBackend
from templates_app.models import MessageTemplate, TemplateStatus
from tests.factories import ContactFactory, SenderFactory, UserFactory
from tests.staff import logged_in, messages_of, user_in

pytestmark = pytest.mark.django_db

ADD_URL = reverse("admin:messaging_message_add")
CHANGELIST_URL = reverse("admin:messaging_message_changelist")
ACTION_CHECKBOX = "_selected_action"


def change_url(message) -> str:
    return reverse("admin:messaging_message_change", args=[message.pk])


@pytest.fixture(autouse=True)
def _roles():
    roles.roles_apply_permissions()


@pytest.fixture
def sender():
    return sender_get_default()  # the test environment's number, the default


@pytest.fixture
def contact():
    # Wrote to us an hour ago: the 24-hour window is open for free-form messages.
    return ContactFactory(
        phone_number="+15550123456",
        profile_name="Ava Johnson",
        last_inbound_at=timezone.now() - timedelta(hours=1),
    )


@pytest.fixture
def composer():
    return user_in(roles.COMPOSER, username="composer")


@pytest.fixture
def approver():
    return user_in(roles.APPROVER, username="approver")


@pytest.fixture
def auditor():
    return user_in(roles.AUDITOR, username="auditor")


def compose_data(sender, **overrides) -> dict[str, str]:
    data = {
        "to_number": "(555) 012-3456",
        "sender": str(sender.pk),
        "message_type": "text",
        "text": "Your order *#1042* shipped today.",
        "_submit": "Submit for approval",
    }
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


def pending_message(composer, text="Your order shipped.") -> Message:
    return message_compose(
        to_number="+15550123456", message_type="text", data={"text": text}, created_by=composer
    )


def form_errors(response) -> dict[str, list[str]]:
    assert response.status_code == 200, response
    return {k: list(v) for k, v in response.context["adminform"].form.errors.items()}


# --- Compose ------------------------------------------------------------------------------------------


def test_the_compose_page_offers_every_kind_with_the_default_sender_and_a_preview(composer, sender):
    response = logged_in(composer).get(ADD_URL)

    assert response.status_code == 200
    html = response.text
    for kind in ("text", "media", "location", "template", "buttons", "list", "reaction"):
        assert f'name="message_type" value="{kind}"' in html
    assert re.search(rf'<option value="{sender.pk}" selected>', html)
    assert 'id="msg-preview"' in html and "messaging/compose.js" in html
    assert 'id="msg-compose-data"' in html
    assert 'name="_submit"' in html and 'value="Submit for approval"' in html
    assert 'name="_save_draft"' in html


def test_a_composer_submits_a_text_which_waits_for_approval(composer, sender, contact):
    client = logged_in(composer)

    response = client.post(ADD_URL, compose_data(sender))

    message = Message.objects.get()
    assert response.status_code == 302 and response.url == change_url(message)
    assert (message.status, message.created_by, message.contact) == (
        MessageStatus.PENDING_APPROVAL,
        composer,
        contact,
    )
    assert message.content == {"body": "Your order *#1042* shipped today.", "preview_url": False}
    assert [e.status for e in message.status_events.all()] == ["draft", "pending_approval"]
    assert MemoryBackend.outbox == []
    page = client.get(response.url)
    assert "Submitted for approval" in " ".join(messages_of(response))
    assert "Waiting for a colleague" in page.text  # the author's own page says so, with no approve button
    assert 'id="msg-approve"' not in page.text and 'id="msg-cancel"' in page.text


def test_a_draft_is_saved_edited_by_its_author_and_then_submitted(composer, sender, contact):
    client = logged_in(composer)
    client.post(ADD_URL, compose_data(sender, _submit=None, _save_draft="Save draft", text="First try"))
    draft = Message.objects.get()
    assert draft.status == MessageStatus.DRAFT

    page = client.get(change_url(draft))  # the author edits a draft on the compose page, prefilled
    assert page.status_code == 200 and "Edit draft" in page.text
    assert page.context["adminform"].form.initial["text"] == "First try"
    assert 'id="msg-discard"' in page.text

    response = client.post(change_url(draft), compose_data(sender, text="Second, better try"))

    assert response.status_code == 302
    draft.refresh_from_db()
    assert (draft.status, draft.preview) == (MessageStatus.PENDING_APPROVAL, "Second, better try")
    assert Message.objects.count() == 1
    assert [e.status for e in draft.status_events.all()] == ["draft", "draft", "pending_approval"]


ROUND_TRIPS = {
    "text": {"text": "Hi *there*", "preview_url": "on"},
    "media": {
        "media": "https://example.com/catalog.pdf",
        "caption": "Our catalog",
        "filename": "catalog.pdf",
    },
    "location": {
        "latitude": "40.7128",
        "longitude": "-74.006",
        "location_name": "Store",
        "location_address": "1 Main St",
    },
    "buttons": {
        "interactive_header": "Delivery",
        "interactive_body": "Did it arrive?",
        "interactive_footer": "Acme",
        "button_1_title": "Yes",
        "button_1_id": "yes",
        "button_2_title": "No",
    },
    "list": {
        "interactive_body": "Pick a slot",
        "list_button": "Slots",
        "row_1_section": "Monday",
        "row_1_title": "Morning",
        "row_1_description": "8-12",
        "row_2_section": "Tuesday",
        "row_2_title": "Evening",
        "row_2_id": "tue_pm",
    },
    "reaction": {"reaction_message_id": "wamid.HBgLMTU1NTAxMjM0NTY", "emoji": "👍"},
}


@pytest.mark.parametrize("kind", list(ROUND_TRIPS))
def test_every_kind_of_draft_comes_back_into_the_form_unchanged(kind, composer, sender, contact):
    client = logged_in(composer)
    post = compose_data(sender, message_type=kind, text=None, _submit=None, _save_draft="Save draft")
    response = client.post(ADD_URL, {**post, **ROUND_TRIPS[kind]})
    assert response.status_code == 302, form_errors(response)
    draft = Message.objects.get()

    form = client.get(change_url(draft)).context["adminform"].form
    again = {
        name: "" if value is None else str(value)
        for name, value in form.initial.items()
        if value is not False
    }
    response = client.post(change_url(draft), {**again, "_save_draft": "Save draft"})

    assert response.status_code == 302, form_errors(response)
    edited = Message.objects.get()
    assert (edited.pk, edited.kind, edited.content) == (draft.pk, draft.kind, draft.content)


def test_nobody_else_edits_a_draft(composer, sender, contact):
    draft = message_compose(
        to_number=contact.phone_number,
        message_type="text",
        data={"text": "Mine"},
        created_by=composer,
        submit=False,
    )
    other = logged_in(user_in(roles.COMPOSER, username="other-composer"))

    page = other.get(change_url(draft))
    assert page.status_code == 200 and "only its author can edit" in page.text
    assert other.post(change_url(draft), compose_data(draft.sender)).status_code == 403
    draft.refresh_from_db()
    assert draft.preview == "Mine"


def test_a_broken_limit_is_shown_on_its_field_naming_the_limit(composer, sender, contact):
    client = logged_in(composer)

    errors = form_errors(client.post(ADD_URL, compose_data(sender, text="x" * 4097)))
    assert errors == {"text": ["text is 4097 characters; the limit is 4096."]}

    # Reply buttons 1 and 3 filled: the service's "button 2" is the third row on the page.
    response = client.post(
        ADD_URL,
        compose_data(
            sender,
            message_type="buttons",
            interactive_body="Did your order arrive?",
            button_1_title="Yes",
            button_3_title="No, and I want my money back",
        ),
    )
    assert form_errors(response) == {"button_3_title": ["button 2 title is 28 characters; the limit is 20."]}
    assert "Please correct the error below." in response.text

    errors = form_errors(
        client.post(
            ADD_URL,
            compose_data(
                sender,
                message_type="list",
                interactive_body="Pick a delivery slot",
                list_button="Slots",
                row_1_section="Monday",
                row_1_title="Morning",
                row_2_section="Tuesday",
                row_2_title="Afternoon",
                row_2_description="x" * 73,
            ),
        )
    )
    assert errors == {"row_2_description": ["section 2 row 1 description is 73 characters; the limit is 72."]}

    errors = form_errors(
        client.post(ADD_URL, compose_data(sender, message_type="location", latitude="91", longitude="0"))
    )
    assert errors == {"latitude": ["latitude must be between -90 and 90."]}
    assert not Message.objects.exists()


def test_an_unreadable_phone_number_is_shown_on_the_recipient(composer, sender):
    errors = form_errors(logged_in(composer).post(ADD_URL, compose_data(sender, to_number="call me")))
    assert list(errors) == ["to_number"] and "not a valid phone number" in errors["to_number"][0]


def test_a_refused_message_shows_its_code_and_stores_nothing(composer, sender):
    ContactFactory(phone_number="+15550123456", last_inbound_at=timezone.now() - timedelta(hours=30))
    contacts = Contact.objects.count()
    client = logged_in(composer)

    response = client.post(ADD_URL, compose_data(sender))
    errors = form_errors(response)
    assert list(errors) == ["__all__"]
    assert errors["__all__"][0].startswith("Refused (window_closed): ")
    assert "Refused (window_closed)" in response.text

    # A number nobody wrote from: the contact the service would create is not kept either.
    response = client.post(ADD_URL, compose_data(sender, to_number="+1 555 010 9999"))
    assert form_errors(response)["__all__"][0].startswith("Refused (window_closed)")
    assert not Message.objects.exists()
    assert Contact.objects.count() == contacts


# --- Templates ----------------------------------------------------------------------------------------


@pytest.fixture
def template(sender):
    return MessageTemplate.objects.create(
        waba_id=sender.waba_id,
        name="order_shipped",
        language="en_US",
        category="UTILITY",
        status=TemplateStatus.APPROVED,
        components=[
            {
                "type": "HEADER",
                "format": "TEXT",
                "text": "Order {{1}}",
                "example": {"header_text": ["#1042"]},
            },
            {
                "type": "BODY",
                "text": "Hi {{1}}, your order ships {{2}}.",
                "example": {"body_text": [["Ava", "today"]]},
            },
            {
                "type": "BUTTONS",
                "buttons": [
                    {
                        "type": "URL",
                        "text": "Track",
                        "url": "https://shop.example.com/t/{{1}}",
                        "example": ["https://shop.example.com/t/1042"],
                    }
                ],
            },
        ],
    )


def template_post(sender, template, **overrides):
    values = {
        "message_type": "template",
        "template": str(template.pk),
        "tpl_header": "#1042",
        "tpl_var__1": "Ava",
        "tpl_var__2": "tomorrow",
        "tpl_button__0": "1042",
    }
    return compose_data(sender, **{**values, **overrides})


def test_a_template_is_chosen_and_its_variables_filled(composer, sender, contact, template):
    consent_text_create(
        version="v1", business_name="Acme", body="Order updates on WhatsApp. Reply STOP to stop."
    )
    consent_record(
        contact_id=contact.id,
        phone_number=contact.phone_number,
        purpose="utility",
        action="opt_in",
        source="api",
        evidence=Evidence(ip_address="203.0.113.9"),
        text_version="v1",
    )
    SenderFactory(waba_id="111222333")  # another business account's templates are not offered
    MessageTemplate.objects.create(
        waba_id=sender.waba_id, name="draft_one", language="en_US", category="UTILITY", components=[]
    )
    client = logged_in(composer)

    page = client.get(ADD_URL)
    data = page.context["compose_data"]["templates"]
    assert list(data) == [str(template.pk)]  # approved ones only
    assert [p["field"] for p in data[str(template.pk)]["params"]] == [
        "tpl_header",
        "tpl_var__1",
        "tpl_var__2",
        "tpl_button__0",
    ]

    # A missing variable is named on its own input.
    errors = form_errors(client.post(ADD_URL, template_post(sender, template, tpl_var__2="")))
    assert errors == {"tpl_var__2": ["Give a value for {{2}}."]}

    # Its inputs stay on the page while the composer tries another kind; a text needs none of them.
    switched = client.post(ADD_URL, template_post(sender, template, message_type="text", tpl_var__2=""))
    assert switched.status_code == 302
    Message.objects.all().delete()

    response = client.post(ADD_URL, template_post(sender, template))

    assert response.status_code == 302
    message = Message.objects.get()
    assert (message.kind, message.template, message.status) == ("template", template, "pending_approval")
    assert message.content["components"] == [
        {"type": "header", "parameters": [{"type": "text", "text": "#1042"}]},
        {
            "type": "body",
            "parameters": [{"type": "text", "text": "Ava"}, {"type": "text", "text": "tomorrow"}],
        },
        {"type": "button", "sub_type": "url", "index": "0", "parameters": [{"type": "text", "text": "1042"}]},
    ]
    assert message.preview.startswith("*Order #1042*\n\nHi Ava, your order ships tomorrow.")


def test_a_template_without_consent_is_refused_with_no_consent(composer, sender, contact, template):
    errors = form_errors(logged_in(composer).post(ADD_URL, template_post(sender, template)))
    assert errors["__all__"][0].startswith("Refused (no_consent): ")
    assert not Message.objects.exists()


# --- The approval queue -------------------------------------------------------------------------------


def test_the_queue_is_the_approvers_default_and_approving_sends(
    composer, approver, sender, contact, django_capture_on_commit_callbacks
):
    message = pending_message(composer)
    sent_earlier = Message.objects.create(
        contact=contact, sender=sender, kind="text", status="sent", preview="Old"
    )
    client = logged_in(approver)

    queue = client.get(CHANGELIST_URL)
    assert list(queue.context["cl"].result_list) == [message]  # waiting for approval, by default
    assert 'data-queue="waiting"' in queue.text and "msg-queue-tab--selected" in queue.text
    assert 'value="approve_selected"' in queue.text and 'value="reject_selected"' in queue.text
    assert "composer" in queue.text and "+15550123456" in queue.text and "Your order shipped." in queue.text
    everything = client.get(CHANGELIST_URL, {"queue": "all"})
    assert set(everything.context["cl"].result_list) == {message, sent_earlier}

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(CHANGELIST_URL, {"action": "approve_selected", ACTION_CHECKBOX: [message.pk]})

    assert response.status_code == 302
    assert messages_of(response) == ["Approved 1 message; sending now."]
    message.refresh_from_db()
    assert message.status == MessageStatus.SENT
    assert message.provider_message_id.startswith("wamid.")
    assert message.approved_by == approver
    assert [m["payload"]["text"]["body"] for m in MemoryBackend.outbox] == ["Your order shipped."]


def test_nobody_approves_their_own_message(sender, contact, django_capture_on_commit_callbacks):
    both = user_in(roles.COMPOSER, roles.APPROVER, username="both")
    message = pending_message(both)
    client = logged_in(both)

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(CHANGELIST_URL, {"action": "approve_selected", ACTION_CHECKBOX: [message.pk]})
    assert response.status_code == 302
    assert messages_of(response) == [
        f"Message #{message.pk}: You cannot approve a message you wrote; ask a colleague."
    ]

    # The message page offers no approve button to its author; posting anyway changes nothing either.
    page = client.get(change_url(message))
    assert 'id="msg-approve"' not in page.text and "nobody approves a message they wrote" in page.text
    response = client.post(reverse("admin:messaging_message_approve", args=[message.pk]))
    assert response.status_code == 302
    assert "You cannot approve a message you wrote" in messages_of(response)[0]
    message.refresh_from_db()
    assert message.status == MessageStatus.PENDING_APPROVAL
    assert MemoryBackend.outbox == []


def test_approving_takes_a_post_a_link_approves_nothing(composer, approver, sender, contact):
    # A GET carries no CSRF token: an approve link planted in a page an approver opens must not send.
    message = pending_message(composer)
    client = logged_in(approver)

    response = client.get(reverse("admin:messaging_message_approve", args=[message.pk]))

    assert response.status_code == 405
    message.refresh_from_db()
    assert message.status == MessageStatus.PENDING_APPROVAL
    assert MemoryBackend.outbox == []


def test_rejecting_asks_for_a_reason_the_author_then_reads(composer, approver, sender, contact):
    message = pending_message(composer)
    client = logged_in(approver)
    action = {"action": "reject_selected", ACTION_CHECKBOX: [message.pk]}

    page = client.post(CHANGELIST_URL, action)
    assert page.status_code == 200 and 'name="reason"' in page.text and "Your order shipped." in page.text
    page = client.post(CHANGELIST_URL, {**action, "confirm": "yes", "reason": " "})
    assert page.status_code == 200 and "errornote" in page.text
    message.refresh_from_db()
    assert message.status == MessageStatus.PENDING_APPROVAL

    response = client.post(CHANGELIST_URL, {**action, "confirm": "yes", "reason": "Wrong order number"})

    assert response.status_code == 302
    message.refresh_from_db()
    assert (message.status, message.rejection_reason, message.approved_by) == (
        MessageStatus.REJECTED,
        "Wrong order number",
        approver,
    )
    detail = logged_in(composer).get(change_url(message))
    assert "Wrong order number" in detail.text and "Rejected" in detail.text
    assert MemoryBackend.outbox == []


def test_reject_from_the_message_page(composer, approver, sender, contact):
    message = pending_message(composer)
    client = logged_in(approver)
    assert 'id="msg-approve"' in client.get(change_url(message)).text
    reject_url = reverse("admin:messaging_message_reject", args=[message.pk])

    assert 'name="reason"' in client.get(reject_url).text
    response = client.post(reject_url, {"confirm": "yes", "reason": "Too pushy"})

    assert response.status_code == 302 and response.url == change_url(message)
    message.refresh_from_db()
    assert (message.status, message.rejection_reason) == ("rejected", "Too pushy")


def test_composers_see_no_approve_action_and_cannot_use_it(composer, sender, contact):
    message = pending_message(UserFactory(username="someone-else"))
    client = logged_in(composer)

    page = client.get(CHANGELIST_URL)
    assert page.status_code == 200
    assert "approve_selected" not in page.text and "reject_selected" not in page.text
    assert list(page.context["cl"].result_list) == [message]  # composers land on every message
    assert 'id="msg-approve"' not in client.get(change_url(message)).text

    client.post(CHANGELIST_URL, {"action": "approve_selected", ACTION_CHECKBOX: [message.pk]})
    assert client.post(reverse("admin:messaging_message_approve", args=[message.pk])).status_code == 403
    message.refresh_from_db()
    assert message.status == MessageStatus.PENDING_APPROVAL


def test_the_author_cancels_a_pending_message_and_nobody_else_can(composer, approver, sender, contact):
    message = pending_message(composer)
    cancel_url = reverse("admin:messaging_message_cancel", args=[message.pk])

    response = logged_in(approver).post(cancel_url)
    assert messages_of(response) == ["Only the author can cancel this message."]
    message.refresh_from_db()
    assert message.status == MessageStatus.PENDING_APPROVAL

    response = logged_in(composer).post(cancel_url)
    assert messages_of(response) == ["Cancelled: the message will not be sent."]
    message.refresh_from_db()
    assert message.status == MessageStatus.CANCELLED
    assert message.status_events.last().detail == "cancelled by composer"


def test_the_author_discards_a_draft_from_the_compose_page(composer, sender, contact):
    client = logged_in(composer)
    client.post(ADD_URL, compose_data(sender, _submit=None, _save_draft="Save draft"))
    draft = Message.objects.get()

    # "Discard draft" posts the compose form to the cancel URL (the button's formaction).
    response = client.post(reverse("admin:messaging_message_cancel", args=[draft.pk]), compose_data(sender))

    assert response.status_code == 302 and response.url == change_url(draft)
    draft.refresh_from_db()
    assert draft.status == MessageStatus.CANCELLED
    page = client.get(change_url(draft))  # no longer editable: the read-only page
    assert "Edit draft" not in page.text and "Cancelled by its author" in page.text


# --- The message page ---------------------------------------------------------------------------------


def test_the_message_page_shows_timeline_people_and_the_delivery_log(
    composer, approver, auditor, sender, contact, django_capture_on_commit_callbacks
):
    message = pending_message(composer)
    with django_capture_on_commit_callbacks(execute=True):
        logged_in(approver).post(reverse("admin:messaging_message_approve", args=[message.pk]))
    call = ProviderCall.objects.get(message=message)
    message.refresh_from_db()

    page = logged_in(auditor).get(change_url(message))

    assert page.status_code == 200
    html = page.text
    timeline = re.search(r'<table class="msg-table" id="msg-timeline">.*?</table>', html, re.DOTALL).group(0)
    assert re.findall(r'data-status="(\w+)"', timeline) == [
        "draft",
        "pending_approval",
        "queued",
        "sending",
        "sent",
    ]
    assert "approved by approver" in timeline
    log = re.search(r'<table class="msg-table" id="msg-provider-calls">.*?</table>', html, re.DOTALL).group(0)
    assert call.url in log and 'msg-http--ok">200<' in log and f"{call.elapsed_ms} ms" in log
    assert "5550123456" not in log  # redacted before it was stored
    people = re.search(r'<table class="msg-table msg-people">.*?</table>', html, re.DOTALL).group(0)
    assert "composer" in people and "approver" in people
    assert message.provider_message_id in html
    assert f"#{message.pk} · text to Ava Johnson (+15550123456)" in html  # title and breadcrumb
    assert 'name="_save"' not in html  # read-only

    # Approvers read the message and its timeline, not the HTTP log.
    page = logged_in(approver).get(change_url(message))
    assert 'id="msg-timeline"' in page.text and 'id="msg-provider-calls"' not in page.text
    assert "Auditor role" in page.text


def test_a_failed_message_shows_metas_error(
    composer, approver, sender, contact, django_capture_on_commit_callbacks
):
    from messaging.whatsapp import WhatsAppApiError

    MemoryBackend.script(
        WhatsAppApiError(
            http_status=400,
            code=131026,
            message="Message undeliverable",
            details="The recipient is not on WhatsApp.",
            raw={"error": {"code": 131026}},
        )
    )
    message = pending_message(composer)
    with django_capture_on_commit_callbacks(execute=True):
        logged_in(approver).post(reverse("admin:messaging_message_approve", args=[message.pk]))
    message.refresh_from_db()
    assert message.status == MessageStatus.FAILED

    html = logged_in(auditor_user := user_in(roles.AUDITOR, username="aud")).get(change_url(message)).text
    assert auditor_user.has_perm("messaging.view_providercall")
    assert "131026" in html and "Message undeliverable" in html and "not on WhatsApp" in html
    assert 'msg-http--error">400<' in html


# --- The list -----------------------------------------------------------------------------------------


def test_filters_search_by_phone_as_typed_and_no_query_per_row(
    auditor, sender, contact, django_assert_max_num_queries
):
    other_sender = SenderFactory()
    other = ContactFactory(phone_number="+447700900123")
    rows = [
        Message.objects.create(
            contact=contact, sender=sender, kind="text", status="sent", preview="Order shipped"
        ),
        Message.objects.create(
            contact=contact, sender=sender, kind="image", status="failed", preview="[image]"
        ),
        Message.objects.create(
            contact=other,
            sender=other_sender,
            kind="text",
            status="received",
            direction="inbound",
            preview="Hi!",
        ),
    ]
    client = logged_in(auditor)

    def listed(**params) -> set[str]:
        response = client.get(CHANGELIST_URL, params)
        assert response.status_code == 200
        return {m.preview for m in response.context["cl"].result_list}

    assert listed() == {"Order shipped", "[image]", "Hi!"}
    assert listed(status__exact="failed") == {"[image]"}
    assert listed(direction__exact="inbound") == {"Hi!"}
    assert listed(kind__exact="image") == {"[image]"}
    assert listed(sender__id__exact=other_sender.pk) == {"Hi!"}
    assert listed(q="(555) 012-3456") == {"Order shipped", "[image]"}
    assert listed(q="07700 900123") == set()  # a UK number typed nationally is read in the default region
    assert listed(q="+44 7700 900123") == {"Hi!"}
    assert listed(q="shipped") == {"Order shipped"}
    assert listed(queue="attention") == {"[image]"}

    page = client.get(CHANGELIST_URL)
    assert 'data-status="failed"' in page.text and "tpl-badge--red" in page.text
    assert "created_at__gte=" in page.text  # by date: today, past 7 days, this month, this year

    # The list costs the same number of queries for 3 rows or 30.
    with django_assert_max_num_queries(50) as few:
        client.get(CHANGELIST_URL)
    for n in range(27):
        Message.objects.create(
            contact=ContactFactory(), sender=rows[0].sender, kind="text", preview=f"m{n}",
            created_by=UserFactory(),
        )  # fmt: skip
    with django_assert_max_num_queries(len(few.captured_queries)):
        client.get(CHANGELIST_URL)
