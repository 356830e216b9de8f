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
    assert second == {"created": 0, "updated": 0, "unchanged": 121, "conflicts": 0}


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
