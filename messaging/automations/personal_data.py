"""Automations' personal data, for privacy requests (compliance.personal_data.PersonalDataHolder).

Outside systems send us their customers' and employees' details: an AutomationEvent's raw body holds
the person's phone number, name, address, order; its runs' details may quote the number. We find a
person's events by their number, in every shape it is written (compliance.personal_data.phone_formats),
as a whole number only ("+15550123456" is not in "155501234567").

Erasure redacts those events' bodies and their runs' details to "[erased]" and keeps the rows: the
event id still stops a redelivery from being processed again, and the runs still show what happened.
"""

import json
import re
from functools import lru_cache

from django.db.models import Q

from compliance.personal_data import CorrectableField, HeldCategory, HeldData, Person, phone_formats
from messaging.automations.models import AutomationEvent, AutomationRun

ERASED = "[erased]"


@lru_cache(maxsize=64)
def _whole_number(form: str) -> re.Pattern:
    return re.compile(r"(?<!\d)" + re.escape(form) + r"(?!\d)")


def _mentions(text: str, forms: set[str]) -> bool:
    return any(_whole_number(form).search(text) for form in forms)


def _person_events(person: Person) -> list[AutomationEvent]:
    forms = phone_formats(person.phone_number)
    query = Q()
    for form in forms:
        query |= Q(raw_body__contains=form)
    candidates = (
        AutomationEvent.objects.filter(query).select_related("integration").order_by("received_at", "id")
    )
    return [event for event in candidates if _mentions(event.raw_body, forms)]


def _runs_of(person: Person, events: list[AutomationEvent]):
    return AutomationRun.objects.filter(
        Q(event__in=events) | Q(message__contact_id__in=person.all_contact_ids)
    ).order_by("created_at", "id")


class AutomationsPersonalData:
    name = "automations"

    def correctable_fields(self) -> list[CorrectableField]:
        return []  # the outside system is the source: corrections belong there

    def personal_data_collect(self, person: Person) -> HeldData:
        events = _person_events(person)
        if not events:
            return HeldData()
        runs = list(_runs_of(person, events).select_related("rule"))
        pieces = []
        for event in events:
            try:
                body = json.loads(event.raw_body)
            except ValueError:
                body = event.raw_body
            pieces.append(
                {
                    "from": event.integration.get_kind_display(),
                    "event_type": event.event_type,
                    "received_at": event.received_at.isoformat(),
                    "data": body,
                    "runs": [
                        {"outcome": run.outcome, "code": run.code, "detail": run.detail}
                        for run in runs
                        if run.event_id == event.pk
                    ],
                }
            )
        return HeldData(
            categories=[
                HeldCategory(
                    category="Identifiers and commercial information",
                    pieces="phone number, name and the order, ticket or employment details an outside "
                    "system sent us to notify you",
                    source="the business's own systems (e.g. its shop, help desk or HR tool)",
                    purpose="sending you the WhatsApp notifications those events call for",
                    count=len(events),
                )
            ],
            pieces={"automation events": pieces},
        )

    def personal_data_erase(self, person: Person) -> dict[str, int]:
        events = _person_events(person)
        runs = _runs_of(person, events).exclude(detail=ERASED).exclude(detail="")
        runs_redacted = runs.update(detail=ERASED)
        events_redacted = AutomationEvent.objects.filter(pk__in=[e.pk for e in events]).update(
            raw_body=ERASED
        )
        return {"automation events redacted": events_redacted, "automation runs redacted": runs_redacted}

    def personal_data_correct(self, person: Person, corrections: dict[str, str]) -> list[str]:
        return []
