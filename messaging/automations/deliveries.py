"""What a verified delivery is: its event id (the idempotency key), its event type, and the parts of it
that rules run on, per kind of integration. Pure functions over headers and the parsed payload.

Shopify    id: X-Shopify-Webhook-Id; type: X-Shopify-Topic (orders/create, orders/fulfilled, ...). Both are
           unsigned headers: the body is what services.event_store stores once per integration. Shopify
           has no "order delayed" topic: a delay is a fulfillment event (topic fulfillment_events/create)
           whose status is "delayed", which we call orders/delayed.
Zendesk    Event subscriptions (type "zen:event-type:ticket.status_changed" with the new status SOLVED)
           become ticket.solved; their `id` is the event id. Trigger webhooks (whose JSON body you write,
           with placeholders such as {{ticket.requester.phone}}) name the type in "event_type" and, when
           they have no "id", are identified by the hash of their body.
BambooHR   {"employees": [{"action": "Created", "fields": {...}, ...}, ...]}: each employee is one subject
           of type employee.<action> (employee.created for a new hire); rule paths are read inside the
           employee ("fields.firstName", "fields.mobilePhone"). Identified by the hash of the body.
Generic    id: the payload's "event_id"; type: the payload's "event_type". Only the body is signed, so
           X-Event-Id and X-Event-Type headers are ignored (signatures.py says why).
"""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from messaging.automations.signatures import SHOPIFY_TOPIC, SHOPIFY_WEBHOOK_ID

MAX_ID_LENGTH = 200
MAX_TYPE_LENGTH = 100


class DeliveryUnreadable(Exception):
    def __init__(self, code: str, detail: str):
        super().__init__(detail)
        self.code, self.detail = code, detail


@dataclass(frozen=True)
class Delivery:
    event_id: str
    event_type: str


@dataclass(frozen=True)
class Subject:
    """One thing a rule may act on: its event type and the data the rule's paths are read from."""

    event_type: str
    data: Any


def _text(value: Any) -> str:
    return str(value).strip() if isinstance(value, str | int) and not isinstance(value, bool) else ""


def _zendesk_type(payload: Mapping[str, Any]) -> str:
    declared = _text(payload.get("event_type"))
    if declared:
        return declared
    kind = _text(payload.get("type")).removeprefix("zen:event-type:")
    if kind == "ticket.status_changed":
        current = payload.get("event", {}).get("current") if isinstance(payload.get("event"), dict) else None
        if _text(current).upper() == "SOLVED":
            return "ticket.solved"
    return kind


def _bamboohr_subjects(payload: Mapping[str, Any]) -> list[Subject]:
    employees = payload.get("employees")
    if not isinstance(employees, list):
        return []
    return [
        Subject(f"employee.{_text(item.get('action')).lower() or 'unknown'}", item)
        for item in employees
        if isinstance(item, dict)
    ]


def delivery_read(kind: str, *, headers: Mapping[str, str], payload: Any, body_sha256: str) -> Delivery:
    """The event id and type, or DeliveryUnreadable (missing_event_id, missing_event_type, not_an_object)."""
    if not isinstance(payload, dict):
        raise DeliveryUnreadable("not_an_object", "The body must be a JSON object.")
    if kind == "shopify":
        event_id, event_type = _text(headers.get(SHOPIFY_WEBHOOK_ID)), _text(headers.get(SHOPIFY_TOPIC))
        if event_type == "fulfillment_events/create" and _text(payload.get("status")).lower() == "delayed":
            event_type = "orders/delayed"
        missing_id = f"{SHOPIFY_WEBHOOK_ID} is missing."
    elif kind == "zendesk":
        event_id, event_type = _text(payload.get("id")) or body_sha256, _zendesk_type(payload)
        missing_id = ""
    elif kind == "bamboohr":
        types = sorted({subject.event_type for subject in _bamboohr_subjects(payload)})
        event_id, event_type = body_sha256, ",".join(types)
        missing_id = ""
    else:
        event_id, event_type = _text(payload.get("event_id")), _text(payload.get("event_type"))
        missing_id = 'The signed JSON body has no "event_id" (X-Event-Id headers are not signed: ignored).'
    if not event_id:
        raise DeliveryUnreadable("missing_event_id", missing_id)
    if not event_type:
        raise DeliveryUnreadable(
            "missing_event_type",
            'The delivery does not say what happened (generic: put "event_type" in the body).',
        )
    if len(event_id) > MAX_ID_LENGTH or len(event_type) > MAX_TYPE_LENGTH:
        raise DeliveryUnreadable("event_id_too_long", "The event id or type is too long.")
    return Delivery(event_id=event_id, event_type=event_type)


def delivery_subjects(kind: str, *, event_type: str, payload: Any) -> list[Subject]:
    """What rules act on: the whole payload, or for BambooHR each employee in it."""
    if kind == "bamboohr":
        return _bamboohr_subjects(payload)
    return [Subject(event_type, payload)]
