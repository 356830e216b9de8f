"""Authoring → internal review → submit to Meta → sync and webhooks, against the Graph API double."""

import pytest
from django.core.exceptions import PermissionDenied, ValidationError

from bench.graph_double import GraphApiDouble, meta_error
from messaging.whatsapp import WhatsAppApiError, backend_create
from templates_app.models import MessageTemplate, TemplateStatus
from templates_app.services import (
    template_apply_webhook,
    template_create,
    template_request_review,
    template_review,
    template_save_edit,
    template_submit,
    template_sync,
)
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db
WABA = "102290129340398"
TOKEN = "double-token"
COMPONENTS = [
    {
        "type": "BODY",
        "text": "Hi {{1}}, your order {{2}} ships today.",
        "example": {"body_text": [["Ava", "#1042"]]},
    }
]


@pytest.fixture
def double():
    with GraphApiDouble(access_token=TOKEN) as server:
        yield server


@pytest.fixture
def backend(double):
    backend = backend_create("cloud", graph_url=double.base_url, access_token=TOKEN, api_version="v23.0")
    yield backend
    backend.close()


@pytest.fixture
def author():
    return UserFactory(username="author")


@pytest.fixture
def reviewer():
    return UserFactory(username="reviewer")


def reviewed(author, reviewer, **kwargs):
    template = template_create(
        waba_id=WABA,
        name=kwargs.pop("name", "order_shipped"),
        language="en_US",
        category="UTILITY",
        components=COMPONENTS,
        created_by=author,
    )
    template_request_review(template=template, user=author)
    return template_review(template=template, reviewer=reviewer, approve=True)


def test_create_refuses_a_template_meta_would_reject(author):
    with pytest.raises(ValidationError) as excinfo:
        template_create(
            waba_id=WABA,
            name="Order Shipped",
            language="en_US",
            category="UTILITY",
            components=[{"type": "BODY", "text": "{{1}} hi"}],
        )
    codes = {e.code for e in excinfo.value.error_list}
    assert {"name_format", "variable_at_edge", "sample_missing"} <= codes


def test_name_and_language_are_unique_per_business_account(author):
    template_create(
        waba_id=WABA, name="order_shipped", language="en_US", category="UTILITY", components=COMPONENTS
    )
    with pytest.raises(ValidationError) as excinfo:
        template_create(
            waba_id=WABA, name="order_shipped", language="en_US", category="UTILITY", components=COMPONENTS
        )
    assert excinfo.value.error_list[0].code == "name_not_unique"
    template_create(
        waba_id=WABA, name="order_shipped", language="es_MX", category="UTILITY", components=COMPONENTS
    )


def test_nobody_reviews_their_own_template(author):
    template = template_create(
        waba_id=WABA,
        name="t1",
        language="en_US",
        category="UTILITY",
        components=COMPONENTS,
        created_by=author,
    )
    template_request_review(template=template, user=author)
    with pytest.raises(PermissionDenied):
        template_review(template=template, reviewer=author, approve=True)
    assert template.status == TemplateStatus.IN_INTERNAL_REVIEW


def test_sending_back_needs_a_reason(author, reviewer):
    template = template_create(
        waba_id=WABA,
        name="t1",
        language="en_US",
        category="UTILITY",
        components=COMPONENTS,
        created_by=author,
    )
    template_request_review(template=template, user=author)
    with pytest.raises(ValidationError):
        template_review(template=template, reviewer=reviewer, approve=False)
    template_review(template=template, reviewer=reviewer, approve=False, reason="Say which order.")
    assert template.status == TemplateStatus.DRAFT
    assert template.status_changes.first().reason == "Say which order."


def test_submit_posts_metas_shape_and_stores_id_and_status(double, backend, author, reviewer):
    template = reviewed(author, reviewer)
    template_submit(template=template, backend=backend, user=reviewer)
    (request,) = double.requests
    assert (request.method, request.path) == ("POST", f"/v23.0/{WABA}/message_templates")
    assert request.json == {
        "name": "order_shipped",
        "language": "en_US",
        "category": "UTILITY",
        "components": COMPONENTS,
    }
    template.refresh_from_db()
    assert template.status == TemplateStatus.PENDING
    assert template.meta_template_id and template.submitted_at
    assert [c.new_status for c in template.status_changes.order_by("id")] == [
        "IN_INTERNAL_REVIEW",
        "APPROVED_INTERNALLY",
        "PENDING",
    ]


def test_unreviewed_templates_cannot_be_submitted(backend, author):
    template = template_create(
        waba_id=WABA,
        name="t1",
        language="en_US",
        category="UTILITY",
        components=COMPONENTS,
        created_by=author,
    )
    with pytest.raises(ValidationError):
        template_submit(template=template, backend=backend)


def test_metas_refusal_is_shown_on_the_template(double, backend, author, reviewer):
    double.add_template(
        WABA, {"name": "order_shipped", "language": "en_US", "category": "UTILITY", "components": COMPONENTS}
    )
    template = reviewed(author, reviewer)
    with pytest.raises(WhatsAppApiError):
        template_submit(template=template, backend=backend)
    template.refresh_from_db()
    assert "already en_US content" in template.last_error
    assert template.status == TemplateStatus.APPROVED_INTERNALLY


def test_a_meta_outage_during_submit_keeps_the_template_ready_to_retry(double, backend, author, reviewer):
    double.inject_fault(status=500, error=meta_error(message="(#131000) Something went wrong", code=131000))
    template = reviewed(author, reviewer)
    with pytest.raises(WhatsAppApiError):
        template_submit(template=template, backend=backend)
    template.refresh_from_db()
    assert template.status == TemplateStatus.APPROVED_INTERNALLY
    template_submit(template=template, backend=backend)
    assert template.status == TemplateStatus.PENDING


def test_sync_follows_paging_creates_updates_and_never_deletes_drafts(double, backend, author):
    for n in range(120):
        double.add_template(
            WABA,
            {
                "name": f"promo_{n:03d}",
                "language": "en_US",
                "category": "MARKETING",
                "components": [{"type": "BODY", "text": "Sale today."}],
                "quality_score": {"score": "GREEN"},
            },
        )
    double.add_template(
        WABA,
        {
            "name": "order_shipped",
            "language": "en_US",
            "category": "UTILITY",
            "status": "REJECTED",
            "rejected_reason": "INVALID_FORMAT",
            "components": COMPONENTS,
        },
    )
    draft = template_create(
        waba_id=WABA,
        name="local_only",
        language="en_US",
        category="UTILITY",
        components=COMPONENTS,
        created_by=author,
    )

    first = template_sync(waba_id=WABA, backend=backend)
    assert first["created"] == 121
    list_requests = [r for r in double.requests if r.method == "GET"]
    assert len(list_requests) == 2 and "after" in list_requests[1].query
    rejected = MessageTemplate.objects.get(name="order_shipped")
    assert (rejected.status, rejected.rejected_reason) == (TemplateStatus.REJECTED, "INVALID_FORMAT")
    assert MessageTemplate.objects.get(name="promo_007").quality_rating == "GREEN"
    assert MessageTemplate.objects.filter(pk=draft.pk, status=TemplateStatus.DRAFT).exists()

    second = template_sync(waba_id=WABA, backend=backend)
    assert second == {"created": 0, "updated": 0, "unchanged": 121, "conflicts": 0, "reworks": 0}


def test_status_quality_and_category_webhooks_update_the_template(author, reviewer, double, backend):
    template = reviewed(author, reviewer)
    template_submit(template=template, backend=backend)
    base = {
        "message_template_id": template.meta_template_id,
        "message_template_name": "order_shipped",
        "message_template_language": "en_US",
    }

    template_apply_webhook(
        field="message_template_status_update", value={**base, "event": "APPROVED", "reason": "NONE"}
    )
    template.refresh_from_db()
    assert template.status == TemplateStatus.APPROVED and template.is_sendable

    template_apply_webhook(
        field="message_template_quality_update",
        value={**base, "previous_quality_score": "GREEN", "new_quality_score": "YELLOW"},
    )
    template_apply_webhook(
        field="message_template_status_update",
        value={
            **base,
            "event": "PAUSED",
            "reason": "Low quality",
            "other_info": {"title": "FIRST_PAUSE", "description": "Paused for 3 hours."},
        },
    )
    template.refresh_from_db()
    assert (template.status, template.quality_rating) == (TemplateStatus.PAUSED, "YELLOW")
    assert template.meta_recommendation == "Paused for 3 hours."
    assert not template.is_sendable

    template_apply_webhook(
        field="template_category_update",
        value={**base, "previous_category": "UTILITY", "new_category": "MARKETING"},
    )
    template.refresh_from_db()
    assert template.category == "MARKETING"
    assert "from UTILITY to MARKETING" in template.status_changes.first().reason


def test_rejection_webhook_keeps_metas_reason(author, reviewer, double, backend):
    template = reviewed(author, reviewer)
    template_submit(template=template, backend=backend)
    template_apply_webhook(
        field="message_template_status_update",
        value={
            "message_template_id": template.meta_template_id,
            "event": "REJECTED",
            "reason": "INVALID_FORMAT",
        },
    )
    template.refresh_from_db()
    assert (template.status, template.rejected_reason) == (TemplateStatus.REJECTED, "INVALID_FORMAT")


def test_webhooks_for_unknown_templates_change_nothing():
    assert (
        template_apply_webhook(
            field="message_template_status_update", value={"message_template_id": "999", "event": "APPROVED"}
        )
        is None
    )


# --- Reworking a template Meta rejected or paused ------------------------------------------------------

BETTER_COMPONENTS = [
    {
        "type": "BODY",
        "text": "Hello {{1}}, order {{2}} left our warehouse today.",
        "example": {"body_text": [["Ava", "#1042"]]},
    }
]


def rejected_at_meta(double, backend, author, reviewer, **meta_fields):
    """A template submitted, then rejected by Meta (the double plays Meta's review, the webhook tells us)."""
    template = reviewed(author, reviewer)
    template_submit(template=template, backend=backend)
    double.set_template(template.meta_template_id, status="REJECTED", rejected_reason="INVALID_FORMAT")
    template_apply_webhook(
        field="message_template_status_update",
        value={
            "message_template_id": template.meta_template_id,
            "event": "REJECTED",
            "reason": "INVALID_FORMAT",
        },
    )
    template.refresh_from_db()
    return template


def rework(template, author, components=BETTER_COMPONENTS, **fields):
    template.components = components
    for name, value in fields.items():
        setattr(template, name, value)
    return template_save_edit(template=template, user=author)


def test_a_rejected_template_is_edited_reviewed_again_and_resubmitted_as_an_edit(
    double, backend, author, reviewer
):
    template = rejected_at_meta(double, backend, author, reviewer)
    meta_id = template.meta_template_id

    rework(template, author)
    assert (template.status, template.is_rework) == (TemplateStatus.DRAFT, True)
    assert f"submitting sends Meta an edit of template {meta_id}" in template.status_changes.first().reason

    template_request_review(template=template, user=author)
    template_review(template=template, reviewer=reviewer, approve=True)
    before = len(double.requests)
    template_submit(template=template, backend=backend, user=reviewer)

    (request,) = double.requests[before:]
    assert (request.method, request.path) == ("POST", f"/v23.0/{meta_id}")
    assert request.json == {"category": "UTILITY", "components": BETTER_COMPONENTS}
    template.refresh_from_db()
    assert (template.status, template.meta_template_id, template.rejected_reason) == (
        TemplateStatus.PENDING,
        meta_id,
        "",
    )
    assert template.status_changes.first().reason == f"Sent Meta an edit of template {meta_id}."
    at_meta = double.template(meta_id)
    assert (at_meta["status"], at_meta["components"]) == ("PENDING", BETTER_COMPONENTS)
    assert len(double.templates(WABA)) == 1  # edited in place, not a second template


def test_sync_leaves_a_rework_alone_and_counts_it_apart(double, backend, author, reviewer):
    template = rejected_at_meta(double, backend, author, reviewer)
    rework(template, author)

    counts = template_sync(waba_id=WABA, backend=backend)

    assert counts == {"created": 0, "updated": 0, "unchanged": 0, "conflicts": 0, "reworks": 1}
    template.refresh_from_db()
    assert (template.status, template.components) == (TemplateStatus.DRAFT, BETTER_COMPONENTS)


def test_saving_a_rejected_template_unchanged_keeps_metas_status(double, backend, author, reviewer):
    template = rejected_at_meta(double, backend, author, reviewer)

    template_save_edit(template=template, user=author)

    assert template.status == TemplateStatus.REJECTED
    assert template_sync(waba_id=WABA, backend=backend)["unchanged"] == 1


def test_a_rework_keeps_metas_name_and_language(double, backend, author, reviewer):
    template = rejected_at_meta(double, backend, author, reviewer)

    with pytest.raises(ValidationError) as excinfo:
        rework(template, author, name="order_left_warehouse", language="en_GB")

    (error,) = excinfo.value.error_list
    assert error.code == "identity_locked" and "name, language cannot change" in error.message
    template.refresh_from_db()
    assert (template.name, template.status) == ("order_shipped", TemplateStatus.REJECTED)


@pytest.mark.parametrize("status", [TemplateStatus.PENDING, TemplateStatus.APPROVED, TemplateStatus.DISABLED])
def test_templates_in_review_or_live_cannot_be_edited(author, status):
    template = template_create(
        waba_id=WABA, name="t1", language="en_US", category="UTILITY", components=COMPONENTS
    )
    MessageTemplate.objects.filter(pk=template.pk).update(status=status, meta_template_id="77")
    template.refresh_from_db()

    with pytest.raises(ValidationError) as excinfo:
        rework(template, author)

    assert excinfo.value.error_list[0].code == "invalid_state"
    template.refresh_from_db()
    assert template.components == COMPONENTS


def test_a_paused_template_can_be_reworked_but_not_recategorized_at_meta(double, backend, author, reviewer):
    template = reviewed(author, reviewer)
    template_submit(template=template, backend=backend)
    double.set_template(template.meta_template_id, status="PAUSED")
    template_apply_webhook(
        field="message_template_status_update",
        value={"message_template_id": template.meta_template_id, "event": "PAUSED", "reason": "Low quality"},
    )
    template.refresh_from_db()

    rework(template, author, category="MARKETING")
    template_request_review(template=template, user=author)
    template_review(template=template, reviewer=reviewer, approve=True)
    with pytest.raises(WhatsAppApiError):
        template_submit(template=template, backend=backend)

    template.refresh_from_db()
    assert template.status == TemplateStatus.APPROVED_INTERNALLY  # ready to retry once fixed
    assert "category of an approved template cannot be changed" in template.last_error
    assert double.template(template.meta_template_id)["status"] == "PAUSED"

    template.category = "UTILITY"
    MessageTemplate.objects.filter(pk=template.pk).update(category="UTILITY")
    template_submit(template=template, backend=backend)
    assert template.status == TemplateStatus.PENDING and template.last_error == ""


def test_meta_refusing_the_edit_is_shown_on_the_template(double, backend, author, reviewer):
    template = rejected_at_meta(double, backend, author, reviewer)
    rework(template, author)
    template_request_review(template=template, user=author)
    template_review(template=template, reviewer=reviewer, approve=True)
    double.set_template(template.meta_template_id, status="IN_APPEAL")  # someone appealed meanwhile

    with pytest.raises(WhatsAppApiError):
        template_submit(template=template, backend=backend)

    template.refresh_from_db()
    assert "Only approved, rejected or paused templates can be edited" in template.last_error
    assert template.status == TemplateStatus.APPROVED_INTERNALLY


def test_a_late_webhook_does_not_overwrite_a_rework(double, backend, author, reviewer):
    template = rejected_at_meta(double, backend, author, reviewer)
    rework(template, author)

    template_apply_webhook(
        field="message_template_status_update",
        value={"message_template_id": template.meta_template_id, "event": "APPROVED", "reason": "NONE"},
    )

    template.refresh_from_db()
    assert (template.status, template.components) == (TemplateStatus.DRAFT, BETTER_COMPONENTS)
    assert not template.is_sendable  # the local content is not what Meta approved
    latest = template.status_changes.first()
    assert latest.is_notice and "Meta reports APPROVED" in latest.reason


def test_meta_repeating_itself_adds_no_history(double, backend, author, reviewer):
    template = rejected_at_meta(double, backend, author, reviewer)
    template_apply_webhook(  # news of another kind in between
        field="message_template_quality_update",
        value={"message_template_id": template.meta_template_id, "new_quality_score": "YELLOW"},
    )
    history = template.status_changes.count()

    template_sync(waba_id=WABA, backend=backend)
    template_sync(waba_id=WABA, backend=backend)
    template_apply_webhook(
        field="message_template_status_update",
        value={
            "message_template_id": template.meta_template_id,
            "event": "REJECTED",
            "reason": "INVALID_FORMAT",
        },
    )

    assert template.status_changes.count() == history
