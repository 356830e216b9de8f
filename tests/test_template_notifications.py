"""Staff hear about Meta's changes to their templates: an email to the template's author and reviewer
and to everyone in a template role, and a panel on the template list until they mark it seen."""

import logging

import pytest
from django.contrib.auth.models import Group
from django.core.mail.backends.base import BaseEmailBackend
from django.test import Client
from django.urls import reverse

from messaging import roles
from templates_app.models import MessageTemplate, TemplateStatus
from templates_app.services import template_apply_webhook, template_create, template_sync
from tests.factories import StaffUserFactory, UserFactory

pytestmark = pytest.mark.django_db
WABA = "102290129340398"
CHANGELIST_URL = reverse("admin:templates_app_messagetemplate_changelist")
SEEN_URL = reverse("admin:templates_app_messagetemplate_notices_seen")
BODY = [{"type": "BODY", "text": "Hi {{1}}, it ships today.", "example": {"body_text": [["Ava"]]}}]


class BrokenMailServer(BaseEmailBackend):
    def send_messages(self, email_messages):
        raise ConnectionRefusedError("SMTP server down")


def in_role(role: str, username: str, **fields):
    user = StaffUserFactory(username=username, **fields)
    user.groups.add(Group.objects.get(name=role))
    return user


@pytest.fixture
def author():
    return UserFactory(username="author")


@pytest.fixture
def reviewer():
    return UserFactory(username="reviewer")


@pytest.fixture
def template(author, reviewer):
    template = template_create(
        waba_id=WABA, name="order_shipped", language="en_US", category="UTILITY", components=BODY
    )
    MessageTemplate.objects.filter(pk=template.pk).update(
        status=TemplateStatus.PENDING, meta_template_id="1185", created_by=author, reviewed_by=reviewer
    )
    template.refresh_from_db()
    return template


def webhook(event: str, **extra):
    return template_apply_webhook(
        field="message_template_status_update",
        value={"message_template_id": "1185", "event": event, "reason": "NONE", **extra},
    )


def test_a_rejection_emails_author_reviewer_and_the_template_roles(
    template, mailoutbox, django_capture_on_commit_callbacks
):
    in_role(roles.APPROVER, "approver")
    in_role(roles.COMPOSER, "composer")
    in_role(roles.COMPOSER, "left_the_company", is_active=False)
    in_role(roles.COMPOSER, "no_address", email="")
    in_role(roles.AUDITOR, "auditor")  # reads templates, does not work on them

    with django_capture_on_commit_callbacks(execute=True):
        webhook("REJECTED", reason="INVALID_FORMAT")

    recipients = sorted(address for mail in mailoutbox for address in mail.to)
    assert recipients == [
        "approver@example.com",
        "author@example.com",
        "composer@example.com",
        "reviewer@example.com",
    ]
    mail = mailoutbox[0]
    assert mail.subject == "WhatsApp template order_shipped [en_US]: Meta changed it"
    assert "order_shipped [en_US]: pending Meta's review → rejected — INVALID_FORMAT" in mail.body


def test_quality_and_category_changes_are_news_too(template, mailoutbox, django_capture_on_commit_callbacks):
    base = {"message_template_id": "1185"}
    with django_capture_on_commit_callbacks(execute=True):
        template_apply_webhook(
            field="message_template_quality_update",
            value={**base, "previous_quality_score": "UNKNOWN", "new_quality_score": "YELLOW"},
        )
        template_apply_webhook(
            field="template_category_update",
            value={**base, "previous_category": "UTILITY", "new_category": "MARKETING"},
        )

    bodies = [mail.body for mail in mailoutbox if mail.to == ["author@example.com"]]
    assert len(bodies) == 2
    assert "Quality rating changed from unknown to medium." in bodies[0]
    assert "Meta changed the category from UTILITY to MARKETING." in bodies[1]


def test_a_duplicate_webhook_sends_nothing_more(template, mailoutbox, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        webhook("APPROVED")
    sent = len(mailoutbox)
    with django_capture_on_commit_callbacks(execute=True):
        webhook("APPROVED")
    assert sent == 2 and len(mailoutbox) == sent


def test_no_mail_goes_out_before_the_change_is_committed(
    template, mailoutbox, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        webhook("APPROVED")
    assert mailoutbox == [] and len(callbacks) == 1


def test_a_mail_server_outage_never_loses_the_change(
    template, settings, mailoutbox, caplog, django_capture_on_commit_callbacks
):
    settings.EMAIL_BACKEND = f"{__name__}.BrokenMailServer"

    with caplog.at_level(logging.ERROR), django_capture_on_commit_callbacks(execute=True):
        webhook("PAUSED", reason="Low quality")

    template.refresh_from_db()
    assert template.status == TemplateStatus.PAUSED
    assert "Could not email 1 template notice(s)" in caplog.text


def test_sync_sends_one_digest_per_person_and_nothing_for_new_templates(graph_double, author, mailoutbox):
    from messaging.whatsapp import backend_create

    backend = backend_create(
        "cloud", graph_url=graph_double.base_url, access_token="double-token", api_version="v23.0"
    )
    for n in range(3):
        graph_double.add_template(
            WABA, {"name": f"promo_{n}", "language": "en_US", "category": "MARKETING", "components": BODY}
        )
    template_sync(waba_id=WABA, backend=backend)
    assert mailoutbox == []  # a first sync brings templates in; nothing changed

    MessageTemplate.objects.update(created_by=author)
    for stored in graph_double.templates(WABA):
        graph_double.set_template(stored["id"], status="PAUSED", quality_score={"score": "RED"})
    template_sync(waba_id=WABA, backend=backend)
    backend.close()

    (mail,) = mailoutbox
    assert mail.to == ["author@example.com"]
    assert mail.subject == "6 changes from Meta to your WhatsApp templates"
    assert mail.body.count("approved → paused") == 3
    assert mail.body.count("Quality rating changed from unknown to low.") == 3


# --- In the admin ------------------------------------------------------------------------------------------


def test_the_template_list_shows_metas_changes_until_marked_seen(template):
    approver = in_role(roles.APPROVER, "approver")
    composer = in_role(roles.COMPOSER, "composer")
    MessageTemplate.objects.create(waba_id=WABA, name="quiet", language="en_US", category="UTILITY")
    webhook("REJECTED", reason="INVALID_FORMAT")

    client = Client()
    client.force_login(approver)
    html = client.get(CHANGELIST_URL).text
    assert "1 change from Meta since you last looked" in html
    assert "order_shipped [en_US]: pending Meta&#x27;s review → rejected — INVALID_FORMAT" in html
    assert html.count('class="tpl-news"') == 1  # only the changed template's row is flagged

    response = client.post(SEEN_URL, follow=True)
    assert "marked as seen" in response.text
    assert "since you last looked" not in response.text and 'class="tpl-news"' not in response.text

    other = Client()
    other.force_login(composer)
    assert "1 change from Meta since you last looked" in other.get(CHANGELIST_URL).text

    webhook("APPROVED")
    assert "1 change from Meta since you last looked" in client.get(CHANGELIST_URL).text


def test_our_own_steps_are_not_news(graph_double, author):
    from messaging.whatsapp import backend_create
    from templates_app.services import template_request_review, template_review, template_submit

    reviewer = in_role(roles.APPROVER, "approver")
    template = template_create(
        waba_id=WABA,
        name="fresh",
        language="en_US",
        category="UTILITY",
        components=BODY,
        created_by=author,
    )
    template_request_review(template=template, user=author)
    template_review(template=template, reviewer=reviewer, approve=True)
    backend = backend_create(
        "cloud", graph_url=graph_double.base_url, access_token="double-token", api_version="v23.0"
    )
    template_submit(template=template, backend=backend)
    backend.close()

    client = Client()
    client.force_login(reviewer)
    html = client.get(CHANGELIST_URL).text
    assert "since you last looked" not in html and 'class="tpl-news"' not in html


def test_marking_seen_needs_post_and_a_template_permission(template):
    outsider = StaffUserFactory(username="outsider")
    client = Client()
    client.force_login(outsider)
    assert client.post(SEEN_URL).status_code == 403
    client.force_login(in_role(roles.AUDITOR, "auditor"))
    assert client.get(SEEN_URL).status_code == 405
