"""Automations' services: integrations and their secrets, rules (validated against their template, and
activated by a second person), storing deliveries once, and turning an event into messages.

Every message an automation composes goes through `messaging.outbound.message_compose`, so the
compliance gate decides as for any other message: no consent, no message. A person we do not know
has no consent, so they get nothing (and nothing about them is created). Every rule an event matched
leaves an AutomationRun saying what happened.
"""

import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from compliance.crypto import master_key
from messaging.automations.deliveries import Delivery, delivery_subjects
from messaging.automations.models import AutomationEvent, AutomationRule, AutomationRun, Integration
from messaging.automations.personal_data import ERASED
from messaging.outbound import MessageRefused, message_compose
from messaging.phone import phone_normalize
from templates_app.models import ParameterFormat, TemplateStatus
from templates_app.rendering import template_slots

logger = logging.getLogger(__name__)

ACTIVATE_RULE = "automations.activate_automationrule"
MIN_SECRET_LENGTH = 16

Outcome = AutomationRun.Outcome

#: The gate's and the composer's codes, by the outcome a run records for them.
OUTCOME_BY_CODE = {
    "template_not_approved": Outcome.TEMPLATE_NOT_APPROVED,
    "template_paused": Outcome.TEMPLATE_NOT_APPROVED,
    "invalid_phone_number": Outcome.INVALID_PHONE_NUMBER,
    "template_parameters_invalid": Outcome.MAPPING_ERROR,
}


# --- Integrations --------------------------------------------------------------------------------


def _secret_check(secret: str) -> str:
    secret = (secret or "").strip()
    if len(secret) < MIN_SECRET_LENGTH:
        raise ValidationError(
            "The signing secret must have at least %(n)d characters.",
            code="secret_too_short",
            params={"n": MIN_SECRET_LENGTH},
        )
    return secret


def integration_create(*, kind: str, name: str, secret: str, created_by=None) -> Integration:
    integration = Integration(kind=kind, name=name, created_by=created_by)
    integration_secret_set(integration=integration, secret=secret, save=False)
    integration.full_clean()
    integration.save()
    return integration


def integration_secret_set(*, integration: Integration, secret: str, save: bool = True) -> None:
    """Store a new signing secret (encrypted; it is never shown back)."""
    integration.secret_encrypted = master_key().encrypt(_secret_check(secret).encode()).decode()
    if save:
        integration.save(update_fields=["secret_encrypted"])


def integration_secret(integration: Integration) -> str:
    return master_key().decrypt(integration.secret_encrypted.encode()).decode()


# --- Paths into payloads -------------------------------------------------------------------------


class MappingError(Exception):
    def __init__(self, path: str, detail: str):
        super().__init__(detail)
        self.path, self.detail = path, detail


def path_lookup(data: Any, path: str) -> Any:
    """The value at a dotted path: keys of objects, indexes of lists ("line_items.0.title").
    MappingError names the path and where it stopped when something is missing or empty."""
    value = data
    walked: list[str] = []
    for part in path.split("."):
        walked.append(part)
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            raise MappingError(path, f"The event has no “{'.'.join(walked)}” (rule path “{path}”).")
    if value is None or (isinstance(value, str) and not value.strip()):
        raise MappingError(path, f"The event's “{path}” is empty.")
    if isinstance(value, dict | list | bool):
        raise MappingError(path, f"The event's “{path}” is not a text or a number.")
    return value


def parameter_value(data: Any, entry: Any) -> str:
    if isinstance(entry, dict):
        return str(entry["text"])
    return str(path_lookup(data, entry))


# --- Rules ----------------------------------------------------------------------------------------


def _entry_problem(entry: Any) -> str:
    if isinstance(entry, str):
        return "" if entry.strip() and " " not in entry.strip() else f"“{entry}” is not a dotted path."
    if (
        isinstance(entry, dict)
        and set(entry) == {"text"}
        and isinstance(entry["text"], str)
        and entry["text"]
    ):
        return ""
    return f'{entry!r} is neither a dotted path nor {{"text": "..."}}.'


def template_variable_names(template) -> list[str]:
    """The body variables a rule must fill, in order. Raises ValidationError for a template whose header
    or buttons also need values (rules fill the body only)."""
    slots = template_slots(template)
    other = next((slot for slot in slots if slot.part != "body"), None)
    if other is not None:
        needs = "header needs a value" if other.part == "header" else "buttons need a value"
        raise ValidationError({"template": f"Rules fill body variables only; this template's {needs}."})
    return [slot.name for slot in slots]


def rule_validate(rule: AutomationRule) -> None:
    """One parameter per body variable of the template, each a path or a literal; a phone path."""
    errors: dict[str, list[str]] = {}
    parameters = rule.parameters if rule.parameters is not None else []
    if not isinstance(parameters, list):
        errors["parameters"] = ['Give a list, e.g. ["customer.first_name", "order.id"].']
    else:
        problems = [problem for entry in parameters if (problem := _entry_problem(entry))]
        if problems:
            errors["parameters"] = problems
        elif rule.template_id is not None:
            names = template_variable_names(rule.template)
            if len(parameters) != len(names):
                errors["parameters"] = [
                    f"The template {rule.template} has {len(names)} variable(s) in its body "
                    f"({', '.join('{{' + n + '}}' for n in names) or 'none'}); "
                    f"the rule gives {len(parameters)}."
                ]
    if _entry_problem((rule.phone_path or "").strip()):
        errors["phone_path"] = ['Give the dotted path to the phone number, e.g. "customer.phone".']
    if errors:
        raise ValidationError(errors)


@transaction.atomic
def rule_save(*, rule: AutomationRule, user) -> AutomationRule:
    """Create or change a rule. A changed rule stops until a second person activates it again: what
    they approved is what runs. Whoever saves it becomes its last editor, who cannot activate it."""
    rule.phone_path = rule.phone_path.strip()
    rule_validate(rule)
    if rule.pk is None:
        rule.created_by = user
    rule.last_changed_by = user
    rule.is_active, rule.activated_by, rule.activated_at = False, None, None
    rule.save()
    return rule


@transaction.atomic
def rule_activate(*, rule: AutomationRule, user) -> AutomationRule:
    """A second person with the permission turns the rule on. Nobody activates a rule they created or
    last changed (ValidationError own_rule); when neither person is known any more (their accounts were
    deleted), nobody can tell who the second person would be, so nobody does (author_unknown): a
    colleague saves it again, and a third person activates it."""
    rule = AutomationRule.objects.select_for_update().select_related("template").get(pk=rule.pk)
    if not user.has_perm(ACTIVATE_RULE):
        raise PermissionDenied("You are not allowed to activate automation rules.")
    writers = {rule.created_by_id, rule.last_changed_by_id} - {None}
    if not writers:
        raise ValidationError(
            "Nobody knows who wrote this rule (their account was deleted); save it again, then ask a "
            "colleague to activate it.",
            code="author_unknown",
        )
    if user.pk in writers:
        raise ValidationError(
            "You cannot activate a rule you wrote or changed; ask a colleague.", code="own_rule"
        )
    rule_validate(rule)
    if rule.template.status != TemplateStatus.APPROVED:
        raise ValidationError(
            f"The template {rule.template} is not approved by Meta.", code="template_not_approved"
        )
    rule.is_active, rule.activated_by, rule.activated_at = True, user, timezone.now()
    rule.save(update_fields=["is_active", "activated_by", "activated_at", "updated_at"])
    return rule


@transaction.atomic
def rule_deactivate(*, rule: AutomationRule, user) -> AutomationRule:
    """Anyone allowed to activate rules may stop one, their own included: stopping is always safe."""
    if not user.has_perm(ACTIVATE_RULE):
        raise PermissionDenied("You are not allowed to deactivate automation rules.")
    AutomationRule.objects.filter(pk=rule.pk).update(is_active=False, updated_at=timezone.now())
    rule.refresh_from_db()
    return rule


# --- Events ---------------------------------------------------------------------------------------


def _duplicate(event: AutomationEvent, detail: str) -> tuple[AutomationEvent, bool]:
    AutomationRun.objects.create(event=event, outcome=Outcome.DUPLICATE, code="duplicate", detail=detail)
    return event, False


@transaction.atomic
def event_store(
    *, integration: Integration, delivery: Delivery, raw_body: str, body_sha256: str
) -> tuple[AutomationEvent, bool]:
    """Store a delivery once per (integration, event id), and for Shopify once per body too.
    Returns (event, created); a redelivery returns the stored event and logs a duplicate run.

    Shopify signs the body only: its webhook id and topic are headers anyone who captured a delivery
    can rewrite, to have it stored (and sent) again, or run by another topic's rule. Its own retries
    resend the identical body, so a body this integration already received is a duplicate whatever
    it is called. (Two topics sending byte-identical bodies would also meet here: the first wins.)"""
    if integration.kind == Integration.Kind.SHOPIFY:
        # Two copies arriving at once: the integration's row lock makes the second see the first.
        list(Integration.objects.select_for_update().filter(pk=integration.pk).values_list("pk"))
        earlier = (
            AutomationEvent.objects.filter(integration=integration, body_sha256=body_sha256)
            .order_by("pk")
            .first()
        )
        if earlier is not None:
            same_name = (earlier.event_id, earlier.event_type) == (delivery.event_id, delivery.event_type)
            return _duplicate(
                earlier,
                "Delivered again"
                + ("" if same_name else f" as {delivery.event_type} {delivery.event_id} (same body)"),
            )
    try:
        with transaction.atomic():
            event = AutomationEvent.objects.create(
                integration=integration,
                event_id=delivery.event_id,
                event_type=delivery.event_type,
                raw_body=raw_body,
                body_sha256=body_sha256,
            )
        return event, True
    except IntegrityError:
        event = AutomationEvent.objects.get(integration=integration, event_id=delivery.event_id)
        return _duplicate(
            event, "Delivered again" + ("" if event.body_sha256 == body_sha256 else " with another body")
        )


@dataclass(frozen=True)
class RunResult:
    outcome: str
    code: str = ""
    detail: str = ""
    message: Any = None


def _run_rule(rule: AutomationRule, data: Any) -> RunResult:
    try:
        raw_phone = path_lookup(data, rule.phone_path)
    except MappingError as exc:
        return RunResult(Outcome.MAPPING_ERROR, "missing_path", exc.detail)
    try:
        phone = phone_normalize(str(raw_phone))
    except ValidationError as exc:
        return RunResult(Outcome.INVALID_PHONE_NUMBER, "invalid_phone_number", exc.messages[0])
    template = rule.template
    if template.status != TemplateStatus.APPROVED:
        return RunResult(
            Outcome.TEMPLATE_NOT_APPROVED,
            "template_not_approved",
            f"The template {template} is {template.get_status_display()}, not approved.",
        )
    try:
        values = [parameter_value(data, entry) for entry in rule.parameters]
    except MappingError as exc:
        return RunResult(Outcome.MAPPING_ERROR, "missing_path", exc.detail)
    if template.parameter_format == ParameterFormat.NAMED:
        body: Any = dict(zip(template_variable_names(template), values, strict=True))
    else:
        body = values
    try:
        message = message_compose(
            to_number=phone,
            message_type="template",
            data={"template_name": template.name, "language": template.language, "parameters": body},
            from_number=rule.sender.display_phone_number if rule.sender_id else None,
            released_by_rule=f"#{rule.pk} “{rule.name}”",
        )
    except MessageRefused as exc:
        return RunResult(OUTCOME_BY_CODE.get(exc.code, Outcome.REFUSED), exc.code, exc.detail)
    except ValidationError as exc:
        return RunResult(Outcome.MAPPING_ERROR, "invalid_content", "; ".join(exc.messages))
    return RunResult(Outcome.QUEUED, "", f"Message #{message.pk} queued.", message)


def event_process(*, event_pk: int) -> list[AutomationRun]:
    """Run every active rule of the event's integration matching each of its subjects, once per event
    (a second call, e.g. a retried task, does nothing)."""
    with transaction.atomic():
        event = (
            AutomationEvent.objects.select_for_update()
            .select_related("integration")
            .filter(pk=event_pk)
            .first()
        )
        if event is None or event.processed_at is not None:
            return []
        try:
            payload = json.loads(event.raw_body)
        except ValueError:
            return [_close_unreadable(event)]
        subjects = delivery_subjects(event.integration.kind, event_type=event.event_type, payload=payload)
        rules = list(
            AutomationRule.objects.filter(integration=event.integration, is_active=True)
            .select_related("template", "sender")
            .order_by("pk")
        )
        runs = []
        for subject in subjects:
            for rule in (r for r in rules if r.event_type == subject.event_type):
                try:
                    with transaction.atomic():
                        result = _run_rule(rule, subject.data)
                except Exception as exc:  # one broken rule must not lose the others' runs
                    logger.exception("Automation rule %s failed on event %s", rule.pk, event.pk)
                    result = RunResult(Outcome.ERROR, "error", type(exc).__name__)
                runs.append(
                    AutomationRun.objects.create(
                        event=event,
                        rule=rule,
                        outcome=result.outcome,
                        code=result.code,
                        detail=result.detail,
                        message=result.message,
                    )
                )
        event.processed_at = timezone.now()
        event.save(update_fields=["processed_at"])
        return runs


def _close_unreadable(event: AutomationEvent) -> AutomationRun:
    # Erased (personal_data) before any worker got to it: nothing left to act on, and retrying on every
    # sweep would never change that. Closed with a run saying why nothing was sent.
    if event.raw_body == ERASED:
        outcome, code, detail = Outcome.PAYLOAD_ERASED, "payload_erased", "Erased before processing."
    else:
        outcome, code, detail = Outcome.ERROR, "unreadable_payload", "The stored body is not JSON."
    run = AutomationRun.objects.create(event=event, outcome=outcome, code=code, detail=detail)
    event.processed_at = timezone.now()
    event.save(update_fields=["processed_at"])
    return run


#: An event still unprocessed this long after it arrived has lost its task (a broker hiccup, a worker
#: killed before it started); the periodic sweeper processes it.
RECOVER_AFTER = timedelta(minutes=2)


def events_recover(*, now: datetime | None = None, limit: int = 500) -> int:
    """Queue processing again for stored events nobody processed (dispatch_due_messages calls this):
    an acknowledged delivery is never lost. Processing stays once per event (event_process)."""
    from messaging.automations.tasks import process_event

    now = now or timezone.now()
    stale = AutomationEvent.objects.filter(processed_at__isnull=True, received_at__lt=now - RECOVER_AFTER)
    ids = list(stale.order_by("received_at").values_list("pk", flat=True)[:limit])
    for pk in ids:
        process_event.delay(pk)
    return len(ids)
