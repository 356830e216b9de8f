"""Template services: author → internal review by a second person → submit to Meta → follow Meta's
review through sync and webhooks. Provider calls go through the WhatsApp backend interface.

Reworking: staff may edit a template Meta rejected or paused. The edit turns it back into a local
draft that keeps its `meta_template_id` (a "rework"), so neither sync nor a late webhook overwrites
it; it goes through internal review again, and submitting it sends Meta an edit of the same template
(`POST /{message-template-id}`) instead of creating a new one. Its name, language and parameter format
are Meta's and stay fixed.

Meta's changes to a template we already had (status, quality, category) are recorded as notices:
staff get an email (templates_app.notifications) and the template list shows them."""

import logging
from typing import Any

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone

from messaging.whatsapp import WhatsAppApiError, WhatsAppBackend, get_backend
from templates_app.models import (
    EDITABLE_STATUSES,
    LOCAL_STATUSES,
    REWORKABLE_STATUSES,
    MessageTemplate,
    QualityRating,
    TemplateStatus,
    TemplateStatusChange,
)
from templates_app.notifications import template_notices_send
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
    template: MessageTemplate,
    new_status: str,
    *,
    source: str,
    reason: str = "",
    user=None,
    notices: list[int] | None = None,
) -> bool:
    """Record and apply a status change. With `notices`, the change is news for staff: its id is
    appended there for the email, and the template list shows it."""
    if template.status == new_status and (not reason or _last_reason(template, new_status) == reason):
        return False  # nothing new (Meta repeats itself: every sync, duplicate webhooks)
    change = TemplateStatusChange.objects.create(
        template=template,
        old_status=template.status,
        new_status=new_status,
        reason=reason,
        source=source,
        changed_by=user,
        is_notice=notices is not None,
    )
    if notices is not None:
        notices.append(change.pk)
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


def _last_reason(template: MessageTemplate, status: str) -> str | None:
    """Why the template last entered `status` (None when it never did, or is not saved yet)."""
    if template.pk is None:
        return None
    return (
        template.status_changes.filter(new_status=status, kind=TemplateStatusChange.Kind.STATUS)
        .values_list("reason", flat=True)
        .first()
    )


def _notice(template: MessageTemplate, reason: str, *, kind: str, source: str, notices: list[int]) -> None:
    """A change from Meta that leaves the status as it is (quality, category, a rework's news)."""
    change = TemplateStatusChange.objects.create(
        template=template,
        old_status=template.status,
        new_status=template.status,
        reason=reason,
        source=source,
        kind=kind,
        is_notice=True,
    )
    notices.append(change.pk)


def _send_notices_after_commit(notices: list[int]) -> None:
    if notices:
        ids = list(notices)
        transaction.on_commit(lambda: template_notices_send(ids))


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


#: What identifies a template at Meta: fixed once Meta holds it (an edit changes only the content).
IDENTITY_FIELDS = ("waba_id", "name", "language", "parameter_format")


@transaction.atomic
def template_save_edit(*, template: MessageTemplate, user=None) -> MessageTemplate:
    """Save staff's edit of a draft or of a template Meta rejected or paused, held to the same rules
    as `template_create`. Editing a rejected or paused template's content makes it a rework: a local
    draft again (history says so), so sync and webhooks leave the edit alone until it is resubmitted."""
    stored = MessageTemplate.objects.select_for_update().get(pk=template.pk)
    if stored.status not in EDITABLE_STATUSES:
        raise ValidationError(
            f"A template that is {stored.get_status_display()} cannot be edited.", code="invalid_state"
        )
    if stored.meta_template_id:
        changed = [f for f in IDENTITY_FIELDS if getattr(template, f) != getattr(stored, f)]
        if changed:
            raise ValidationError(
                f"Meta already holds this template: its {', '.join(f.replace('_', ' ') for f in changed)} "
                "cannot change. Create a new template instead.",
                code="identity_locked",
            )
    _raise_problems(template_problems(template))
    template.status = stored.status
    content_changed = (template.components, template.category) != (stored.components, stored.category)
    if stored.status in REWORKABLE_STATUSES and content_changed:
        _set_status(
            template,
            TemplateStatus.DRAFT,
            source=Source.STAFF,
            user=user,
            reason=f"Edited after Meta's {stored.get_status_display()}: submitting sends Meta an edit of "
            f"template {stored.meta_template_id}.",
        )
    template.save()
    return template


@transaction.atomic
def template_request_review(*, template: MessageTemplate, user) -> MessageTemplate:
    """The author asks a colleague to check the template before it goes to Meta."""
    if template.status not in EDITABLE_STATUSES:
        raise ValidationError(
            "Only drafts (or rejected or paused templates being reworked) can be sent for review.",
            code="invalid_state",
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


def template_edit_payload(template: MessageTemplate) -> dict[str, Any]:
    """The body of Meta's "Edit template", `POST /{message-template-id}`: the new content only (Meta
    keeps name and language; its spec names no other field)."""
    return {"category": template.category, "components": template.components}


def template_submit(
    *, template: MessageTemplate, user=None, backend: WhatsAppBackend | None = None
) -> MessageTemplate:
    """Send an internally approved template to Meta: a new template, or for a rework an edit of the
    one Meta holds. Either way Meta reviews it (PENDING). Meta's refusal is kept on the template."""
    if template.status != TemplateStatus.APPROVED_INTERNALLY:
        raise ValidationError(
            "Only templates approved by a reviewer can be submitted to Meta.", code="invalid_state"
        )
    _raise_problems(template_problems(template))
    backend = backend or get_backend()
    is_edit = bool(template.meta_template_id)
    try:
        if is_edit:
            answer = backend.edit_template(
                template_id=template.meta_template_id, payload=template_edit_payload(template)
            )
        else:
            answer = backend.create_template(
                waba_id=template.waba_id, definition=template_definition(template)
            )
    except WhatsAppApiError as exc:
        template.last_error = (
            f"{exc.message}"
            + (f" — {exc.details}" if exc.details else "")
            + (f" (code {exc.code}/{exc.subcode})" if exc.code else "")
        )
        template.save(update_fields=["last_error", "updated_at"])
        raise
    with transaction.atomic():
        template.meta_template_id = str(answer.get("id") or template.meta_template_id)
        template.submitted_at = timezone.now()
        template.last_error = ""
        template.rejected_reason = ""
        # Meta answers an edit with {"success": true} only: the edited template is back in review.
        _set_status(
            template,
            _meta_status(answer.get("status") or TemplateStatus.PENDING),
            source=Source.SUBMIT,
            user=user,
            reason=f"Sent Meta an edit of template {template.meta_template_id}." if is_edit else "",
        )
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
    status, category, quality and components of the rest. Local drafts are never deleted or
    overwritten: a draft of the same name and language is a conflict (someone is writing a new
    template), a rework of the Meta template itself is counted apart (it waits for resubmission).
    Meta's changes to templates we had become notices, mailed to staff in one digest at the end."""
    backend = backend or get_backend()
    counts = dict.fromkeys(COUNT_KEYS, 0)
    notices: list[int] = []
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
                remote_id = str(remote.get("id", ""))
                is_rework = bool(template.meta_template_id) and template.meta_template_id == remote_id
                counts["reworks" if is_rework else "conflicts"] += 1
                continue
            if created:
                template = MessageTemplate(
                    waba_id=waba_id,
                    name=remote.get("name", ""),
                    language=remote.get("language", ""),
                    status=TemplateStatus.UNKNOWN,
                )
            before = _synced_fields(template)
            old_quality, old_category = template.quality_rating, template.category
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
                notices=None if created else notices,
            )
            if not created:
                _note_quality_and_category(
                    template, old_quality, old_category, source=Source.SYNC, notices=notices
                )
            template.save()
            if created:
                counts["created"] += 1
            else:
                counts["updated" if before != _synced_fields(template) else "unchanged"] += 1
    if notices:
        template_notices_send(notices)
    return counts


#: What `template_sync` counts (tasks and the admin report them in this order).
COUNT_KEYS = ("created", "updated", "unchanged", "conflicts", "reworks")


def _note_quality_and_category(
    template: MessageTemplate, old_quality: str, old_category: str, *, source: str, notices: list[int]
) -> None:
    if template.quality_rating != old_quality:
        _notice(
            template,
            f"Quality rating changed from {_quality_label(old_quality)} to "
            f"{_quality_label(template.quality_rating)}.",
            kind=TemplateStatusChange.Kind.QUALITY,
            source=source,
            notices=notices,
        )
    if old_category and template.category != old_category:
        _notice(
            template,
            f"Meta changed the category from {old_category} to {template.category}.",
            kind=TemplateStatusChange.Kind.CATEGORY,
            source=source,
            notices=notices,
        )


def _quality_label(value: str) -> str:
    return QualityRating(value).label if value in QualityRating.values else value


@transaction.atomic
def template_apply_webhook(*, field: str, value: dict[str, Any]) -> MessageTemplate | None:
    """Apply Meta's `message_template_status_update`, `message_template_quality_update` or
    `template_category_update` webhook value. Unknown templates are ignored (a sync will bring them).
    Every change is a notice for staff (email after commit, and the template list). A template being
    reworked here keeps its local status: Meta's status is recorded as news, never applied over it."""
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
    notices: list[int] = []
    if field == "message_template_status_update":
        reason = str(value.get("reason") or "")
        reason = "" if reason == "NONE" else reason
        meta_status = _meta_status(value.get("event"))
        if meta_status == TemplateStatus.REJECTED:
            template.rejected_reason = reason
        template.meta_recommendation = str(
            (value.get("other_info") or {}).get("description", "") or template.meta_recommendation
        )
        if template.status in LOCAL_STATUSES:
            _notice(
                template,
                f"Meta reports {meta_status} for the version it holds"
                + (f" ({reason})" if reason else "")
                + "; the local rework is kept and will be sent as an edit.",
                kind=TemplateStatusChange.Kind.REMARK,
                source=Source.WEBHOOK,
                notices=notices,
            )
        else:
            _set_status(template, meta_status, source=Source.WEBHOOK, reason=reason, notices=notices)
    elif field == "message_template_quality_update":
        old_quality = template.quality_rating
        template.quality_rating = _quality(value.get("new_quality_score"))
        _note_quality_and_category(
            template, old_quality, template.category, source=Source.WEBHOOK, notices=notices
        )
    elif field == "template_category_update":
        new_category = str(value.get("new_category") or "").upper()
        if new_category:
            old_category = template.category
            template.category = new_category
            _note_quality_and_category(
                template, template.quality_rating, old_category, source=Source.WEBHOOK, notices=notices
            )
    template.save()
    _send_notices_after_commit(notices)
    return template
