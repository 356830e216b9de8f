"""Template services: author → internal review by a second person → submit to Meta → follow Meta's
review through sync and webhooks. Provider calls go through the WhatsApp backend interface."""

import logging
from typing import Any

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone

from messaging.whatsapp import WhatsAppApiError, WhatsAppBackend, get_backend
from templates_app.models import (
    LOCAL_STATUSES,
    MessageTemplate,
    QualityRating,
    TemplateStatus,
    TemplateStatusChange,
)
from templates_app.validation import Problem, validate_template

logger = logging.getLogger(__name__)
Source = TemplateStatusChange.Source


def template_problems(template: MessageTemplate) -> list[Problem]:
    problems = validate_template(
        name=template.name,
        language=template.language,
        category=template.category,
        parameter_format=template.parameter_format,
        components=template.components,
    )
    duplicate = MessageTemplate.objects.filter(
        waba_id=template.waba_id, name=template.name, language=template.language
    ).exclude(pk=template.pk)
    if duplicate.exists():
        problems.append(
            Problem(
                "name_not_unique",
                f"This business account already has a template {template.name} in {template.language}.",
            )
        )
    return problems


def _raise_problems(problems: list[Problem]) -> None:
    if problems:
        raise ValidationError([ValidationError(str(p), code=p.rule) for p in problems])


def _set_status(
    template: MessageTemplate, new_status: str, *, source: str, reason: str = "", user=None
) -> bool:
    if template.status == new_status and not reason:
        return False
    TemplateStatusChange.objects.create(
        template=template,
        old_status=template.status,
        new_status=new_status,
        reason=reason,
        source=source,
        changed_by=user,
    )
    if new_status in (TemplateStatus.PAUSED, TemplateStatus.DISABLED, TemplateStatus.REJECTED):
        logger.warning(
            "Template %s [%s] is now %s: %s",
            template.name,
            template.language,
            new_status,
            reason or "no reason given",
        )
    template.status = new_status
    return True


@transaction.atomic
def template_create(
    *,
    waba_id: str,
    name: str,
    language: str,
    category: str,
    components: list[dict[str, Any]],
    parameter_format: str = "POSITIONAL",
    created_by=None,
) -> MessageTemplate:
    template = MessageTemplate(
        waba_id=waba_id,
        name=name,
        language=language,
        category=category,
        components=components,
        parameter_format=parameter_format,
        created_by=created_by,
    )
    _raise_problems(template_problems(template))
    template.save()
    return template


@transaction.atomic
def template_request_review(*, template: MessageTemplate, user) -> MessageTemplate:
    """The author asks a colleague to check the template before it goes to Meta."""
    if template.status not in (TemplateStatus.DRAFT, TemplateStatus.REJECTED):
        raise ValidationError(
            "Only drafts (or rejected templates being reworked) can be sent for review.", code="invalid_state"
        )
    _raise_problems(template_problems(template))
    _set_status(template, TemplateStatus.IN_INTERNAL_REVIEW, source=Source.STAFF, user=user)
    template.save()
    return template


@transaction.atomic
def template_review(
    *, template: MessageTemplate, reviewer, approve: bool, reason: str = ""
) -> MessageTemplate:
    """A second person approves (ready to submit) or sends it back with a reason. Nobody reviews
    their own template: enforced here, not only hidden in the admin."""
    if template.status != TemplateStatus.IN_INTERNAL_REVIEW:
        raise ValidationError("This template is not waiting for review.", code="invalid_state")
    if template.created_by_id is not None and template.created_by_id == reviewer.pk:
        raise PermissionDenied("You cannot review a template you wrote; ask a colleague.")
    if not approve and not reason.strip():
        raise ValidationError("Say why the template goes back to its author.", code="reason_required")
    template.reviewed_by = reviewer
    _set_status(
        template,
        TemplateStatus.APPROVED_INTERNALLY if approve else TemplateStatus.DRAFT,
        source=Source.STAFF,
        reason=reason,
        user=reviewer,
    )
    template.save()
    return template


def template_definition(template: MessageTemplate) -> dict[str, Any]:
    """The body of Meta's POST /{waba-id}/message_templates."""
    definition: dict[str, Any] = {
        "name": template.name,
        "language": template.language,
        "category": template.category,
        "components": template.components,
    }
    if template.parameter_format == "NAMED":
        definition["parameter_format"] = "NAMED"
    return definition


def template_submit(
    *, template: MessageTemplate, user=None, backend: WhatsAppBackend | None = None
) -> MessageTemplate:
    """Send an internally approved template to Meta. Meta's refusal is kept on the template."""
    if template.status != TemplateStatus.APPROVED_INTERNALLY:
        raise ValidationError(
            "Only templates approved by a reviewer can be submitted to Meta.", code="invalid_state"
        )
    _raise_problems(template_problems(template))
    backend = backend or get_backend()
    try:
        answer = backend.create_template(waba_id=template.waba_id, definition=template_definition(template))
    except WhatsAppApiError as exc:
        template.last_error = (
            f"{exc.message}"
            + (f" — {exc.details}" if exc.details else "")
            + (f" (code {exc.code}/{exc.subcode})" if exc.code else "")
        )
        template.save(update_fields=["last_error", "updated_at"])
        raise
    with transaction.atomic():
        template.meta_template_id = str(answer.get("id", ""))
        template.submitted_at = timezone.now()
        template.last_error = ""
        _set_status(template, _meta_status(answer.get("status")), source=Source.SUBMIT, user=user)
        if answer.get("category"):
            template.category = str(answer["category"]).upper()
        template.save()
    return template


def _meta_status(value: Any) -> str:
    status = str(value or "").upper()
    return (
        status if status in TemplateStatus.values and status not in LOCAL_STATUSES else TemplateStatus.UNKNOWN
    )


def _quality(value: Any) -> str:
    score = value.get("score") if isinstance(value, dict) else value
    score = str(score or "").upper()
    return score if score in QualityRating.values else QualityRating.UNKNOWN


def _synced_fields(template: MessageTemplate) -> tuple:
    return (
        template.status,
        template.category,
        template.quality_rating,
        template.components,
        template.meta_template_id,
        template.rejected_reason,
    )


def template_sync(*, waba_id: str, backend: WhatsAppBackend | None = None) -> dict[str, int]:
    """Mirror Meta's templates of one business account locally: create the ones we lack, update
    status, category, quality and components of the rest. Local drafts are never deleted."""
    backend = backend or get_backend()
    counts = {"created": 0, "updated": 0, "unchanged": 0, "conflicts": 0}
    now = timezone.now()
    for remote in backend.iter_templates(waba_id=waba_id):
        with transaction.atomic():
            template = (
                MessageTemplate.objects.select_for_update()
                .filter(waba_id=waba_id, name=remote.get("name"), language=remote.get("language"))
                .first()
            )
            created = template is None
            if not created and template.status in LOCAL_STATUSES:
                # Someone is writing (or reworking) this template here: never overwrite their draft.
                counts["conflicts"] += 1
                continue
            if created:
                template = MessageTemplate(
                    waba_id=waba_id,
                    name=remote.get("name", ""),
                    language=remote.get("language", ""),
                    status=TemplateStatus.UNKNOWN,
                )
            before = _synced_fields(template)
            template.meta_template_id = str(remote.get("id", template.meta_template_id))
            template.category = str(remote.get("category") or template.category or "UTILITY").upper()
            template.components = remote.get("components") or template.components
            template.parameter_format = str(
                remote.get("parameter_format") or template.parameter_format
            ).upper()
            if remote.get("quality_score"):
                template.quality_rating = _quality(remote["quality_score"])
            reason = str(remote.get("rejected_reason") or "")
            template.rejected_reason = "" if reason == "NONE" else reason
            template.synced_at = now
            if created:
                template.save()
            new_status = _meta_status(remote.get("status"))
            _set_status(
                template,
                new_status,
                source=Source.SYNC,
                reason=template.rejected_reason if new_status == TemplateStatus.REJECTED else "",
            )
            template.save()
            if created:
                counts["created"] += 1
            else:
                counts["updated" if before != _synced_fields(template) else "unchanged"] += 1
    return counts


@transaction.atomic
def template_apply_webhook(*, field: str, value: dict[str, Any]) -> MessageTemplate | None:
    """Apply Meta's `message_template_status_update`, `message_template_quality_update` or
    `template_category_update` webhook value. Unknown templates are ignored (a sync will bring them)."""
    template_id = str(value.get("message_template_id", ""))
    template = (
        MessageTemplate.objects.select_for_update().filter(meta_template_id=template_id).first()
        if template_id
        else None
    )
    if template is None:
        template = (
            MessageTemplate.objects.select_for_update()
            .filter(
                name=value.get("message_template_name", ""),
                language=value.get("message_template_language", ""),
            )
            .first()
        )
    if template is None:
        logger.info("Webhook %s for unknown template %s ignored", field, template_id)
        return None
    if field == "message_template_status_update":
        reason = str(value.get("reason") or "")
        reason = "" if reason == "NONE" else reason
        if value.get("event", "").upper() == "REJECTED":
            template.rejected_reason = reason
        template.meta_recommendation = str(
            (value.get("other_info") or {}).get("description", "") or template.meta_recommendation
        )
        _set_status(template, _meta_status(value.get("event")), source=Source.WEBHOOK, reason=reason)
    elif field == "message_template_quality_update":
        template.quality_rating = _quality(value.get("new_quality_score"))
    elif field == "template_category_update":
        new_category = str(value.get("new_category") or "").upper()
        if new_category:
            TemplateStatusChange.objects.create(
                template=template,
                old_status=template.status,
                new_status=template.status,
                reason=f"Meta changed the category from {template.category} to {new_category}.",
                source=Source.WEBHOOK,
            )
            template.category = new_category
    template.save()
    return template
