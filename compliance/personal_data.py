"""Where a person's data lives, and the one interface every app offers for privacy requests.

Each app that stores personal data registers a `PersonalDataHolder` when it starts (compliance
registers its own for the consent ledger and privacy requests; messaging registers one for contacts,
messages, webhook payloads and provider call logs). The privacy services only ever talk to holders:
a data package is the holders' sections put together, an erasure is every holder erasing its part, a
correction is every holder applying the fields it owns. Compliance therefore never imports another
app's models, and a new app that keeps personal data joins every request by registering a holder.
"""

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

import phonenumbers


@dataclass(frozen=True)
class Person:
    """Everything we know that identifies the subject of a request, to find them in every store."""

    phone_number: str  # E.164
    contact_id: int | None = None  # the contact with this number now
    names: tuple[str, ...] = ()  # names they are known by: profile name, the name given on the request
    # Every contact that is this person: the current one and older ones under the same WhatsApp id
    # (a number changed), so no holder keeps what it filed under an older contact.
    contact_ids: tuple[int, ...] = ()

    @property
    def all_contact_ids(self) -> set[int]:
        """`contact_id` and `contact_ids` together: every contact a holder must reach."""
        return {*self.contact_ids, *([self.contact_id] if self.contact_id is not None else [])}

    @property
    def wa_id(self) -> str:
        """How Meta writes the number in webhooks and API answers: digits, no "+"."""
        return self.phone_number.lstrip("+")


@dataclass(frozen=True)
class HeldCategory:
    """One category of personal information, as a "right to know (categories)" answer lists it."""

    category: str  # e.g. "Identifiers", "Commercial information", "Internet or electronic activity"
    pieces: str  # what exactly, in plain words: "phone number, WhatsApp profile name"
    source: str  # where it came from: "you, through WhatsApp", "the opt-in form"
    purpose: str  # why we hold it
    count: int = 0  # how many records of this category we hold about the person


@dataclass
class HeldData:
    """One holder's answer to "what do you hold about this person?"."""

    categories: list[HeldCategory] = field(default_factory=list)
    pieces: dict[str, Any] = field(default_factory=dict)  # JSON-ready: the specific pieces, by section


@dataclass(frozen=True)
class CorrectableField:
    name: str  # the key used in PrivacyRequest.corrections
    label: str  # what the public form shows
    # Normalizes a corrected value or raises ValidationError (with a code): checked when the request
    # is filed, so a value the holder would refuse never waits 45 days to be found unusable.
    clean: Callable[[str], str] | None = None


class PersonalDataHolder(Protocol):
    #: Short stable name shown in data packages and deletion certificates, e.g. "messaging".
    name: str

    def correctable_fields(self) -> list[CorrectableField]:
        """Fields a correction request may change in this holder."""

    def personal_data_collect(self, person: Person) -> HeldData:
        """Everything this holder keeps about `person`, for a right-to-know package."""

    def personal_data_erase(self, person: Person) -> dict[str, int]:
        """Delete or de-identify everything this holder keeps about `person`. Runs inside the erasure's
        transaction. Returns rows affected per store (e.g. {"contacts deleted": 1, ...}), which the
        deletion certificate lists. Must leave no trace of the number (in any of `phone_formats`), the
        names, or the texts of the person's messages in any text column the holder owns."""

    def personal_data_correct(self, person: Person, corrections: dict[str, str]) -> list[str]:
        """Apply the corrections for fields this holder owns (ignore the others); return the names of
        the fields actually changed."""


_holders: dict[str, PersonalDataHolder] = {}


def holder_register(holder: PersonalDataHolder) -> None:
    _holders[holder.name] = holder


def holders() -> list[PersonalDataHolder]:
    return list(_holders.values())


def correctable_fields() -> list[CorrectableField]:
    return [f for holder in holders() for f in holder.correctable_fields()]


def phone_formats(e164: str) -> set[str]:
    """The shapes a number is written in (E.164, wa_id digits, national and international formatting),
    for erasure to search free text and for tests to prove nothing is left."""
    parsed = phonenumbers.parse(e164, None)
    national = str(parsed.national_number)
    formats = {
        e164,
        e164.lstrip("+"),
        national,
        phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.NATIONAL),
        phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.INTERNATIONAL),
    }
    if parsed.country_code == 1 and len(national) == 10:
        area, exchange, line = national[:3], national[3:6], national[6:]
        formats |= {
            f"{area}-{exchange}-{line}",
            f"{area}.{exchange}.{line}",
            f"{area} {exchange} {line}",
            f"({area}) {exchange}-{line}",
            f"+1-{area}-{exchange}{line}",
            f"+1 {area} {exchange} {line}",
            f"1-{area}-{exchange}-{line}",
        }
    return formats


def text_mentions(text: str, needles: Iterable[str]) -> bool:
    return any(needle and needle in text for needle in needles)
