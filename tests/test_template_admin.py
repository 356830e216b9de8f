"""Message templates in the admin: the structured editor, rules shown inline, the review workflow by
role, submission and "Sync now" against the Graph API double, read-only Meta-owned templates, filters."""

import re

import pytest
from django.conf import settings
from django.urls import reverse

from bench.graph_double import meta_error
from messaging import roles
from templates_app.models import MessageTemplate, TemplateStatus
from templates_app.services import template_create, template_request_review, template_review
from templates_app.tasks import LOCK_KEY
from tests.factories import UserFactory
from tests.staff import logged_in, messages_of, user_in

pytestmark = pytest.mark.django_db

WABA = settings.WHATSAPP["BUSINESS_ACCOUNT_ID"]  # the editor's default business account
ADD_URL = reverse("admin:templates_app_messagetemplate_add")
CHANGELIST_URL = reverse("admin:templates_app_messagetemplate_changelist")
SYNC_URL = reverse("admin:templates_app_messagetemplate_sync")
BODY = [
    {
        "type": "BODY",
        "text": "Hi {{1}}, your order {{2}} ships today.",
        "example": {"body_text": [["Ava", "#1042"]]},
    }
]
#: The inline status history's management form, which every change-form POST carries.
INLINE_MANAGEMENT = {"status_changes-TOTAL_FORMS": "0", "status_changes-INITIAL_FORMS": "0"}


def change_url(template) -> str:
    return reverse("admin:templates_app_messagetemplate_change", args=[template.pk])


def workflow_url(name: str, template) -> str:
    return reverse(f"admin:templates_app_messagetemplate_{name}", args=[template.pk])


def editor_data(**overrides) -> dict[str, str]:
    """What a composer types into the editor: no JSON anywhere."""
    data = {
        "waba_id": WABA,
        "name": "order_shipped",
        "language": "en_US",
        "category": "UTILITY",
        "parameter_format": "POSITIONAL",
        "header_format": "TEXT",
        "header_text": "Order {{1}}",
        "header_sample": "#1042",
        "body_text": "Hi {{1}}, your order {{2}} ships *today*.",
        "body_samples__1": "Ava",
        "body_samples__2": "#1042",
        "footer_text": "Reply STOP to opt out",
        "buttons-0-type": "URL",
        "buttons-0-text": "Track order",
        "buttons-0-url": "https://shop.example.com/track/{{1}}",
        "buttons-0-example": "https://shop.example.com/track/1042",
        "buttons-1-type": "PHONE_NUMBER",
        "buttons-1-text": "Call us",
        "buttons-1-phone_number": "+15550123456",
        "buttons-2-type": "QUICK_REPLY",
        "buttons-2-text": "Thanks!",
        "_save": "Save",
    }
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


def make_template(*, status=TemplateStatus.DRAFT, created_by=None, name="order_shipped", **fields):
    template = template_create(
        waba_id=WABA,
        name=name,
        language=fields.pop("language", "en_US"),
        category=fields.pop("category", "UTILITY"),
        components=fields.pop("components", BODY),
        created_by=created_by,
    )
    if status != TemplateStatus.DRAFT or fields:
        MessageTemplate.objects.filter(pk=template.pk).update(status=status, **fields)
        template.refresh_from_db()
    return template


@pytest.fixture
def superuser():
    return UserFactory(username="root", is_staff=True, is_superuser=True)


@pytest.fixture
def admin_client(superuser):
    return logged_in(superuser)


@pytest.fixture
def composer():
    return user_in(roles.COMPOSER, username="composer")


@pytest.fixture
def approver():
    return user_in(roles.APPROVER, username="approver")


@pytest.fixture(autouse=True)
def _no_sync_lock():
    from django.core.cache import cache

    cache.delete(LOCK_KEY)
    yield
    cache.delete(LOCK_KEY)


# --- Roles ---------------------------------------------------------------------------------------------


def test_roles_hold_the_template_permissions(composer, approver):
    auditor = user_in(roles.AUDITOR, username="auditor")
    assert composer.has_perms(["templates_app.add_messagetemplate", "templates_app.change_messagetemplate"])
    assert not composer.has_perm("templates_app.review_template")
    assert approver.has_perms(["templates_app.view_messagetemplate", "templates_app.review_template"])
    assert not approver.has_perm("templates_app.change_messagetemplate")
    assert auditor.has_perm("templates_app.view_messagetemplate")
    assert not auditor.has_perm("templates_app.change_messagetemplate")


# --- Creating and editing -----------------------------------------------------------------------------


def test_composer_creates_a_template_with_the_structured_form(composer):
    client = logged_in(composer)
    page = client.get(ADD_URL)
    assert page.status_code == 200
    html = page.text
    for name in (
        "header_format",
        "header_text",
        "body_text",
        "footer_text",
        "buttons-0-type",
        "buttons-9-text",
    ):
        assert f'name="{name}"' in html
    assert 'id="tpl-preview"' in html and "templates_app/editor.js" in html
    assert f'value="{WABA}"' in html  # the configured business account is the default

    response = client.post(ADD_URL, editor_data())

    assert response.status_code == 302, response.context["adminform"].form.errors
    template = MessageTemplate.objects.get()
    assert (template.name, template.status, template.created_by) == ("order_shipped", "DRAFT", composer)
    assert template.components == [
        {"type": "HEADER", "format": "TEXT", "text": "Order {{1}}", "example": {"header_text": ["#1042"]}},
        {
            "type": "BODY",
            "text": "Hi {{1}}, your order {{2}} ships *today*.",
            "example": {"body_text": [["Ava", "#1042"]]},
        },
        {"type": "FOOTER", "text": "Reply STOP to opt out"},
        {
            "type": "BUTTONS",
            "buttons": [
                {
                    "type": "URL",
                    "text": "Track order",
                    "url": "https://shop.example.com/track/{{1}}",
                    "example": ["https://shop.example.com/track/1042"],
                },
                {"type": "PHONE_NUMBER", "text": "Call us", "phone_number": "+15550123456"},
                {"type": "QUICK_REPLY", "text": "Thanks!"},
            ],
        },
    ]


def test_named_variables_and_media_headers_take_metas_shapes(admin_client):
    response = admin_client.post(
        ADD_URL,
        editor_data(
            parameter_format="NAMED",
            header_format="IMAGE",
            header_text="",
            header_sample="4::aW1hZ2UvanBlZw==:ARb",
            body_text="Hi {{first_name}}, your order {{order_id}} ships today.",
            body_samples__1=None,
            body_samples__2=None,
            body_samples__first_name="Ava",
            body_samples__order_id="1042",
            footer_text="",
            **{
                f"buttons-{i}-{f}": ""
                for i in range(3)
                for f in ("type", "text", "url", "phone_number", "example")
            },
        ),
    )

    assert response.status_code == 302, response.context["adminform"].form.errors
    template = MessageTemplate.objects.get()
    assert template.parameter_format == "NAMED"
    assert template.components == [
        {"type": "HEADER", "format": "IMAGE", "example": {"header_handle": ["4::aW1hZ2UvanBlZw==:ARb"]}},
        {
            "type": "BODY",
            "text": "Hi {{first_name}}, your order {{order_id}} ships today.",
            "example": {
                "body_text_named_params": [
                    {"param_name": "first_name", "example": "Ava"},
                    {"param_name": "order_id", "example": "1042"},
                ]
            },
        },
    ]


def test_the_change_form_shows_the_stored_components_as_fields(admin_client):
    admin_client.post(ADD_URL, editor_data())
    template = MessageTemplate.objects.get()

    html = admin_client.get(change_url(template)).text

    assert re.search(
        r'<textarea name="body_text"[^>]*>\s*Hi \{\{1\}\}, your order \{\{2\}\} ships \*today\*\.</textarea>',
        html,
    )
    assert 'name="body_samples__1" value="Ava"' in html
    assert 'name="body_samples__2" value="#1042"' in html
    assert '<option value="URL" selected>' in html
    assert 'name="buttons-1-phone_number" value="+15550123456"' in html
    # The server renders the same template with its samples, as a send would.
    assert "Hi Ava, your order #1042 ships *today*." in html
    assert "&quot;parameter_name&quot;" not in html and "&quot;name&quot;: &quot;order_shipped&quot;" in html


def test_editing_a_draft_saves_through_the_same_rules(admin_client):
    template = make_template()

    response = admin_client.post(
        change_url(template),
        {**editor_data(body_text="Hi {{1}}, your parcel {{2}} left today."), **INLINE_MANAGEMENT},
    )

    assert response.status_code == 302, response.context["adminform"].form.errors
    template.refresh_from_db()
    body = next(c for c in template.components if c["type"] == "BODY")
    assert body["text"] == "Hi {{1}}, your parcel {{2}} left today."


def test_a_template_meta_would_reject_shows_each_rule_inline_and_is_not_saved(admin_client):
    response = admin_client.post(
        ADD_URL,
        editor_data(
            name="Order Shipped",
            body_text="{{1}} your order {{3}} ships",
            body_samples__1="",
            body_samples__2=None,
            footer_text="Thanks {{1}}",
            **{"buttons-1-phone_number": "call me"},
        ),
    )

    assert response.status_code == 200
    assert MessageTemplate.objects.count() == 0
    errors = response.context["adminform"].form.errors.as_data()
    codes = {field: {e.code for e in field_errors} for field, field_errors in errors.items()}
    assert "name_format" in codes["name"]
    assert {"variables_not_sequential", "variable_at_edge"} <= codes["body_text"]
    assert "sample_missing" in codes["body_samples"]
    assert "footer_variables" in codes["footer_text"]
    assert "button_phone" in codes["buttons"]
    html = response.text
    # Inline, beside the field it concerns, naming the rule.
    body_row = re.search(r'<div class="form-row errors field-body_text">.*?</div>', html, re.DOTALL).group(0)
    assert "(rule: variable_at_edge)" in body_row
    assert "(rule: name_format)" in html
    # What the composer typed is still there, with a sample input per variable.
    assert 'name="body_samples__3"' in html
    assert 'value="Order Shipped"' in html


def test_a_taken_name_is_reported_on_the_name_field(admin_client):
    make_template()

    response = admin_client.post(ADD_URL, editor_data())

    assert response.status_code == 200
    assert [e.code for e in response.context["adminform"].form.errors.as_data()["name"]] == [
        "name_not_unique"
    ]
    assert MessageTemplate.objects.count() == 1


def test_a_button_without_a_type_is_refused(admin_client):
    response = admin_client.post(ADD_URL, editor_data(**{"buttons-3-text": "Orphan"}))

    assert response.status_code == 200
    assert "Button 4: choose what the button does" in response.text
    assert MessageTemplate.objects.count() == 0


# --- Internal review ---------------------------------------------------------------------------------


def test_author_cannot_approve_their_own_template(admin_client, superuser):
    template = make_template(created_by=superuser)
    response = admin_client.post(workflow_url("request_review", template), follow=True)
    assert "waiting for a colleague" in " ".join(messages_of(response))
    template.refresh_from_db()
    assert template.status == TemplateStatus.IN_INTERNAL_REVIEW
    assert "nobody approves a template they wrote" in admin_client.get(change_url(template)).text

    response = admin_client.post(workflow_url("review", template), {"decision": "approve"}, follow=True)

    assert response.status_code == 200
    assert "You cannot review a template you wrote; ask a colleague." in messages_of(response)
    template.refresh_from_db()
    assert template.status == TemplateStatus.IN_INTERNAL_REVIEW
    assert template.reviewed_by is None


def test_an_approver_approves_a_composers_template(composer, approver):
    composer_client = logged_in(composer)
    composer_client.post(ADD_URL, editor_data())
    template = MessageTemplate.objects.get()
    page = composer_client.get(change_url(template)).text
    assert "Send for internal review" in page and "Approve</button>" not in page
    composer_client.post(workflow_url("request_review", template))
    assert 'name="decision" value="approve"' not in composer_client.get(change_url(template)).text

    approver_client = logged_in(approver)
    page = approver_client.get(change_url(template))
    assert page.status_code == 200
    assert 'name="decision" value="approve"' in page.text
    assert 'name="body_text"' not in page.text  # approvers read, they do not edit

    response = approver_client.post(workflow_url("review", template), {"decision": "approve"}, follow=True)

    template.refresh_from_db()
    assert (template.status, template.reviewed_by) == (TemplateStatus.APPROVED_INTERNALLY, approver)
    assert any("approved" in m for m in messages_of(response))
    assert "Submit to Meta" in response.text
    history = [c.new_status for c in template.status_changes.order_by("id")]
    assert history == ["IN_INTERNAL_REVIEW", "APPROVED_INTERNALLY"]


def test_sending_back_needs_a_reason_and_returns_the_draft(composer, approver):
    template = make_template(created_by=composer)
    template_request_review(template=template, user=composer)
    client = logged_in(approver)

    response = client.post(
        workflow_url("review", template), {"decision": "send_back", "reason": " "}, follow=True
    )
    assert "Say why the template goes back to its author." in messages_of(response)
    template.refresh_from_db()
    assert template.status == TemplateStatus.IN_INTERNAL_REVIEW

    client.post(workflow_url("review", template), {"decision": "send_back", "reason": "Name the courier."})
    template.refresh_from_db()
    assert template.status == TemplateStatus.DRAFT
    assert "Name the courier." in logged_in(composer).get(change_url(template)).text  # in the history


def test_composers_cannot_review_and_approvers_cannot_edit(composer, approver):
    template = make_template(created_by=approver)
    template_request_review(template=template, user=approver)
    assert (
        logged_in(composer).post(workflow_url("review", template), {"decision": "approve"}).status_code == 403
    )

    draft = make_template(name="another")
    assert logged_in(approver).post(change_url(draft), editor_data(name="another")).status_code == 403
    assert logged_in(approver).get(ADD_URL).status_code == 403


def test_workflow_actions_only_accept_post(admin_client):
    template = make_template()
    assert admin_client.get(workflow_url("request_review", template)).status_code == 405
    assert admin_client.get(SYNC_URL).status_code == 405


# --- Meta: submission, read-only, sync ----------------------------------------------------------------


def reviewed(author, reviewer):
    template = make_template(created_by=author)
    template_request_review(template=template, user=author)
    return template_review(template=template, reviewer=reviewer, approve=True)


def test_submit_to_meta_stores_pending_and_metas_id(cloud, composer, approver):
    template = reviewed(composer, approver)

    response = logged_in(approver).post(workflow_url("submit", template), follow=True)

    template.refresh_from_db()
    assert template.status == TemplateStatus.PENDING
    assert template.meta_template_id == cloud.templates(WABA)[0]["id"]
    (request,) = [r for r in cloud.requests if r.method == "POST"]
    assert request.path.endswith(f"/{WABA}/message_templates")
    assert request.json["components"] == BODY
    assert any("submitted to Meta" in m for m in messages_of(response))
    assert 'data-status="PENDING"' in response.text


def test_metas_refusal_is_an_error_message_and_shown_on_the_template(cloud, composer, approver):
    cloud.add_template(
        WABA, {"name": "order_shipped", "language": "en_US", "category": "UTILITY", "components": BODY}
    )
    template = reviewed(composer, approver)

    response = logged_in(composer).post(workflow_url("submit", template), follow=True)

    (message,) = messages_of(response)
    assert message.startswith("Meta refused the template:") and "already en_US content" in message
    template.refresh_from_db()
    assert template.status == TemplateStatus.APPROVED_INTERNALLY
    assert "The last submission to Meta failed:" in response.text
    assert "already en_US content" in response.text


def test_a_template_at_meta_is_read_only(admin_client):
    template = make_template(status=TemplateStatus.PENDING, meta_template_id="1185")

    page = admin_client.get(change_url(template))

    assert page.status_code == 200
    html = page.text
    assert 'name="body_text"' not in html and 'name="_save"' not in html
    assert "Hi {{1}}, your order {{2}} ships today." in html  # shown, not editable
    assert "Hi Ava, your order #1042 ships today." in html  # rendered with the samples
    assert 'id="tpl-preview-data"' in html
    response = admin_client.post(change_url(template), {**editor_data(), **INLINE_MANAGEMENT})
    assert response.status_code == 403
    template.refresh_from_db()
    assert template.status == TemplateStatus.PENDING


def test_a_rejected_template_can_be_reworked_and_shows_metas_reason(admin_client):
    template = make_template(
        status=TemplateStatus.REJECTED,
        rejected_reason="INVALID_FORMAT",
        meta_recommendation="Remove the emoji from the header.",
    )

    html = admin_client.get(change_url(template)).text

    assert 'name="body_text"' in html
    assert "Meta rejected this template:" in html and "INVALID_FORMAT" in html
    assert "Remove the emoji from the header." in html
    assert "Send for internal review" in html


def test_sync_now_shows_the_counts(cloud, admin_client):
    for name in ("welcome", "receipt"):
        cloud.add_template(
            WABA,
            {
                "name": name,
                "language": "en_US",
                "category": "UTILITY",
                "components": [{"type": "BODY", "text": "Hi."}],
            },
        )
    page = admin_client.get(CHANGELIST_URL).text
    assert f'action="{SYNC_URL}"' in page and "Sync now" in page

    response = admin_client.post(SYNC_URL, follow=True)

    assert response.redirect_chain[-1][0] == CHANGELIST_URL
    assert "Synced with Meta: 2 created, 0 updated, 0 unchanged, 0 conflicts." in messages_of(response)
    assert set(MessageTemplate.objects.values_list("name", "status")) == {
        ("welcome", "APPROVED"),
        ("receipt", "APPROVED"),
    }
    response = admin_client.post(SYNC_URL, follow=True)
    assert "Synced with Meta: 0 created, 0 updated, 2 unchanged, 0 conflicts." in messages_of(response)


def test_sync_now_shows_metas_error(cloud, admin_client):
    cloud.inject_fault(
        status=400,
        error=meta_error(message="(#100) Tried accessing nonexisting field (message_templates)", code=100),
    )

    response = admin_client.post(SYNC_URL, follow=True)

    (message,) = messages_of(response)
    assert f"Sync with Meta failed for business account {WABA}" in message
    assert "Tried accessing nonexisting field" in message


def test_sync_now_is_skipped_while_another_sync_runs(cloud, admin_client):
    from django.core.cache import cache

    cache.add(LOCK_KEY, "someone-else", 60)

    response = admin_client.post(SYNC_URL, follow=True)

    assert "A template sync is already running; try again in a minute." in messages_of(response)
    assert cloud.requests == []


def test_auditors_see_templates_but_cannot_sync(cloud):
    make_template()
    client = logged_in(user_in(roles.AUDITOR, username="auditor"))
    page = client.get(CHANGELIST_URL)
    assert page.status_code == 200 and "order_shipped" in page.text
    assert "Sync now" not in page.text
    assert client.post(SYNC_URL).status_code == 403


# --- The list ------------------------------------------------------------------------------------------


def test_the_list_shows_badges_and_filters_by_status_category_language_and_quality(admin_client):
    make_template(name="approved_one", status=TemplateStatus.APPROVED, quality_rating="GREEN")
    make_template(name="paused_one", status=TemplateStatus.PAUSED, quality_rating="RED")
    make_template(name="promo_es", language="es_MX", category="MARKETING")
    make_template(name="draft_one")

    def names(query):
        response = admin_client.get(CHANGELIST_URL, query)
        assert response.status_code == 200
        return {t.name for t in response.context["cl"].result_list}

    html = admin_client.get(CHANGELIST_URL).text
    assert 'class="tpl-badge tpl-badge--green" data-status="APPROVED"' in html
    assert 'class="tpl-quality tpl-quality--red"' in html
    assert names({"status__exact": "PAUSED"}) == {"paused_one"}
    assert names({"category__exact": "MARKETING"}) == {"promo_es"}
    assert names({"language": "es_MX"}) == {"promo_es"}
    assert names({"quality_rating__exact": "GREEN"}) == {"approved_one"}
    assert names({"q": "one"}) == {"approved_one", "paused_one", "draft_one"}


# --- Media samples ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sample", "rule"),
    [("", "header_handle_missing"), ("https://cdn.example/shoe.jpg", "header_handle_is_link")],
)
def test_a_media_header_asks_for_the_handle_of_an_uploaded_sample(admin_client, sample, rule):
    response = admin_client.post(
        ADD_URL, editor_data(header_format="IMAGE", header_text="", header_sample=sample)
    )

    assert response.status_code == 200
    assert MessageTemplate.objects.count() == 0
    errors = response.context["adminform"].form.errors.as_data()
    assert [e.code for e in errors["header_sample"]] == [rule]
    row = re.search(r'<div class="form-row errors field-header_sample">.*?</div>', response.text, re.DOTALL)
    assert f"(rule: {rule})" in row.group(0) and "Resumable Upload API" in row.group(0)


def test_the_header_sample_field_explains_where_a_handle_comes_from(admin_client):
    html = admin_client.get(ADD_URL).text
    assert "Resumable Upload API" in html and "POST /{app-id}/uploads" in html


# --- Reworking a template Meta rejected or paused ----------------------------------------------------------

META_ID = "1185000000000777"
REWORKED_BODY = "Hi {{1}}, order {{2}} left our warehouse today."


def rejected_template(cloud, *, status=TemplateStatus.REJECTED, created_by=None):
    cloud.add_template(
        WABA,
        {
            "id": META_ID,
            "name": "order_shipped",
            "language": "en_US",
            "category": "UTILITY",
            "components": BODY,
            "status": str(status),
        },
    )
    return make_template(
        status=status, meta_template_id=META_ID, rejected_reason="INVALID_FORMAT", created_by=created_by
    )


def rework_data(**overrides):
    return {
        **editor_data(
            header_format="",
            header_text="",
            header_sample="",
            body_text=REWORKED_BODY,
            footer_text="",
            **{
                f"buttons-{i}-{f}": ""
                for i in range(3)
                for f in ("type", "text", "url", "phone_number", "example")
            },
        ),
        **INLINE_MANAGEMENT,
        **overrides,
    }


def test_a_rejected_template_is_reworked_in_the_admin_and_resubmitted_as_an_edit(cloud, composer, approver):
    template = rejected_template(cloud, created_by=composer)
    author = logged_in(composer)

    page = author.get(change_url(template)).text
    assert 'name="body_text"' in page and 'name="name"' not in page  # Meta's name stays
    assert 'name="language"' not in page

    response = author.post(change_url(template), rework_data(name="renamed"))
    assert response.status_code == 302, response.context["adminform"].form.errors
    template.refresh_from_db()
    assert (template.name, template.status) == ("order_shipped", TemplateStatus.DRAFT)
    page = author.get(change_url(template)).text
    assert f"Reworking Meta's template {META_ID}." in page
    assert "Meta rejected the version it holds:" in page and "INVALID_FORMAT" in page

    author.post(workflow_url("request_review", template))
    logged_in(approver).post(workflow_url("review", template), {"decision": "approve"})
    page = logged_in(approver).get(change_url(template)).text
    assert "Submit edit to Meta" in page
    response = logged_in(approver).post(workflow_url("submit", template), follow=True)

    (edit_request,) = [r for r in cloud.requests if r.method == "POST"]
    assert edit_request.path == f"/v23.0/{META_ID}"
    assert edit_request.json["components"][0]["text"] == REWORKED_BODY
    template.refresh_from_db()
    assert (template.status, template.meta_template_id) == (TemplateStatus.PENDING, META_ID)
    assert cloud.template(META_ID)["status"] == "PENDING"
    assert any("submitted to Meta" in m for m in messages_of(response))


def test_a_paused_template_can_be_reworked_and_says_why_it_cannot_be_sent(cloud, admin_client):
    template = rejected_template(cloud, status=TemplateStatus.PAUSED)

    page = admin_client.get(change_url(template)).text
    assert "Meta paused this template" in page and 'name="body_text"' in page

    response = admin_client.post(change_url(template), rework_data())
    assert response.status_code == 302
    template.refresh_from_db()
    assert template.status == TemplateStatus.DRAFT and template.is_rework
    assert "Edited after Meta's paused" in template.status_changes.first().reason
