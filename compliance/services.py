"""Consent services: recording opt-ins, opt-outs and confirmations as ledger events with evidence,
and keeping the current-consent projection in step. Every write goes through `consent_record`."""

import hashlib
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import datetime

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from compliance import crypto
from compliance.ledger import ledger_append
from compliance.models import (
    ConsentAction,
    ConsentEvent,
    ConsentSource,
    ConsentState,
    ConsentStatus,
    ConsentSubject,
    ConsentText,
    Purpose,
)
from compliance.suppression import suppression_entry, suppression_refusal


@dataclass(frozen=True)
class Evidence:
    """What proves a consent change. Which fields are required depends on the source."""

    ip_address: str = ""
    user_agent: str = ""
    page_url: str = ""
    message_id: str = ""  # the inbound WhatsApp message (keyword, confirmation) or our message (error 131050)
    staff_user_id: int | None = None
    reason: str = ""


#: Evidence each source must carry, for every action.
REQUIRED_EVIDENCE: dict[str, tuple[str, ...]] = {
    ConsentSource.WEB_FORM: ("ip_address", "user_agent", "page_url"),
    ConsentSource.API: ("ip_address",),
    ConsentSource.WHATSAPP_KEYWORD: ("message_id",),
    ConsentSource.META_USER_PREFERENCES: ("message_id",),
    ConsentSource.META_ERROR_131050: ("message_id",),
    ConsentSource.STAFF: ("staff_user_id", "reason"),
    ConsentSource.IMPORT: ("reason",),
    ConsentSource.PRIVACY_REQUEST: ("reason",),  # the request's reference
}


def text_sha256(body: str) -> str:
    return hashlib.sha256(body.encode()).hexdigest()


# --- Consent texts --------------------------------------------------------------------------------


@transaction.atomic
def consent_text_create(
    *, version: str, business_name: str, body: str, make_current: bool = True, created_by=None
) -> ConsentText:
    """A new version of the consent wording. Existing versions never change: evidence points at them."""
    if ConsentText.objects.filter(version=version).exists():
        raise ValidationError(
            {
                "version": ValidationError(
                    "Version %(v)s already exists; wording never changes in place.",
                    code="duplicate_version",
                    params={"v": version},
                )
            }
        )
    if make_current:
        ConsentText.objects.filter(is_current=True).update(is_current=False)
    text = ConsentText(
        version=version,
        business_name=business_name,
        body=body,
        sha256=text_sha256(body),
        is_current=make_current,
        created_by=created_by,
    )
    text.full_clean()
    text.save()
    return text


def consent_text_current() -> ConsentText | None:
    return ConsentText.objects.filter(is_current=True).first()


def consent_text_for_body(*, body: str, business_name: str = "") -> ConsentText:
    """The version whose wording is exactly `body`, recorded as a new external version if unseen
    (partners' sites send the text they showed rather than one of our version names)."""
    digest = text_sha256(body)
    existing = ConsentText.objects.filter(sha256=digest).first()
    if existing:
        return existing
    return consent_text_create(
        version=f"external-{digest[:16]}",
        business_name=business_name or "external site",
        body=body,
        make_current=False,
    )


# --- Recording ------------------------------------------------------------------------------------


def _subject_for(contact_id: int) -> ConsentSubject:
    subject = ConsentSubject.objects.filter(contact_id=contact_id).first()
    if subject is None:
        subject = ConsentSubject.objects.create(contact_id=contact_id, wrapped_key=crypto.data_key_create())
    return subject


def next_status(current: str | None, event: ConsentEvent) -> str | None:
    """The projection's transition rule, shared by recording and rebuilding."""
    if event.action == ConsentAction.OPT_OUT:
        return ConsentStatus.REVOKED
    if event.action == ConsentAction.CONFIRM:
        return ConsentStatus.GRANTED if current in (ConsentStatus.PENDING, ConsentStatus.GRANTED) else current
    if event.awaiting_confirmation:
        return current if current == ConsentStatus.GRANTED else ConsentStatus.PENDING
    return ConsentStatus.GRANTED


def _validate(
    *,
    purpose: str,
    action: str,
    source: str,
    text: ConsentText | None,
    evidence: Evidence,
    current: str | None,
) -> None:
    errors: dict[str, ValidationError] = {}
    if purpose not in Purpose.values:
        errors["purpose"] = ValidationError(
            f"Unknown purpose; use one of {', '.join(Purpose.values)}.", code="invalid_purpose"
        )
    if action not in ConsentAction.values:
        errors["action"] = ValidationError(
            f"Unknown action; use one of {', '.join(ConsentAction.values)}.", code="invalid_action"
        )
    if source not in ConsentSource.values:
        errors["source"] = ValidationError(
            f"Unknown source; use one of {', '.join(ConsentSource.values)}.", code="invalid_source"
        )
    if action == ConsentAction.OPT_IN and text is None:
        errors["text_version"] = ValidationError(
            "An opt-in needs the consent text (or its version) the person saw.", code="consent_text_required"
        )
    missing = [name for name in REQUIRED_EVIDENCE.get(source, ()) if not getattr(evidence, name)]
    if missing:
        errors["evidence"] = ValidationError(
            "Consent via %(source)s needs evidence: %(missing)s.",
            code="evidence_required",
            params={"source": source, "missing": ", ".join(missing)},
        )
    if action == ConsentAction.CONFIRM and current != ConsentStatus.PENDING:
        errors["action"] = ValidationError(
            "There is no pending opt-in to confirm.", code="nothing_to_confirm"
        )
    if errors:
        raise ValidationError(errors)


@transaction.atomic
def consent_record(
    *,
    contact_id: int,
    phone_number: str,
    purpose: str,
    action: str,
    source: str,
    evidence: Evidence,
    name: str = "",
    text_version: str = "",
    awaiting_confirmation: bool = False,
    occurred_at: datetime | None = None,
) -> ConsentEvent:
    """Append one consent change to the ledger and update the contact's current consent.

    Refused with ValidationError when the purpose, action or source is unknown, an opt-in lacks its
    consent text, the source's evidence is missing, or a confirmation has nothing pending.
    """
    text = ConsentText.objects.filter(version=text_version).first() if text_version else None
    if text_version and text is None:
        raise ValidationError(
            {
                "text_version": ValidationError(
                    "Unknown consent text version %(v)s.",
                    code="unknown_consent_text",
                    params={"v": text_version},
                )
            }
        )
    if action == ConsentAction.OPT_IN:
        entry = suppression_entry(phone_number)
        if entry is not None:
            raise ValidationError({"phone_number": suppression_refusal(entry)})
    subject = _subject_for(contact_id)
    state = ConsentState.objects.select_for_update().filter(subject=subject, purpose=purpose).first()
    _validate(
        purpose=purpose,
        action=action,
        source=source,
        text=text,
        evidence=evidence,
        current=state.status if state else None,
    )

    now = timezone.now()
    private = {"phone_number": phone_number, "name": name, **asdict(evidence)}
    private.pop("staff_user_id")
    event = ConsentEvent(
        subject=subject,
        purpose=purpose,
        action=action,
        source=source,
        awaiting_confirmation=awaiting_confirmation and action == ConsentAction.OPT_IN,
        text_version=text.version if text else "",
        text_sha256=text.sha256 if text else "",
        evidence_ciphertext=crypto.evidence_encrypt(subject.wrapped_key, private),
        staff_user_id=evidence.staff_user_id,
        occurred_at=occurred_at or now,
        recorded_at=now,
    )
    ledger_append(event)
    status = next_status(state.status if state else None, event)
    ConsentState.objects.update_or_create(
        subject=subject,
        purpose=purpose,
        defaults={
            "contact_id": contact_id,
            "status": status,
            "last_event": event,
            "changed_at": event.occurred_at,
        },
    )
    return event


def consent_opt_out_everywhere(
    *,
    contact_id: int,
    phone_number: str,
    source: str,
    evidence: Evidence,
    occurred_at: datetime | None = None,
) -> list[ConsentEvent]:
    """STOP and its equivalents: one opt-out per purpose, recorded even where nothing was granted, so
    a later import or form cannot quietly bring the person back without a fresh opt-in."""
    with transaction.atomic():
        return [
            consent_record(
                contact_id=contact_id,
                phone_number=phone_number,
                purpose=purpose,
                action=ConsentAction.OPT_OUT,
                source=source,
                evidence=evidence,
                occurred_at=occurred_at,
            )
            for purpose in Purpose.values
        ]


def consent_confirm_pending(
    *, contact_id: int, phone_number: str, message_id: str, occurred_at: datetime | None = None
) -> list[ConsentEvent]:
    """The person answered the double opt-in request: every pending purpose becomes granted."""
    pending = ConsentState.objects.filter(contact_id=contact_id, status=ConsentStatus.PENDING).values_list(
        "purpose", flat=True
    )
    with transaction.atomic():
        return [
            consent_record(
                contact_id=contact_id,
                phone_number=phone_number,
                purpose=purpose,
                action=ConsentAction.CONFIRM,
                source=ConsentSource.WHATSAPP_KEYWORD,
                evidence=Evidence(message_id=message_id),
                occurred_at=occurred_at,
            )
            for purpose in list(pending)
        ]


# --- Reading --------------------------------------------------------------------------------------


def consent_status(*, contact_id: int, purpose: str) -> str | None:
    """granted / pending / revoked, or None when the person never said anything about `purpose`."""
    return (
        ConsentState.objects.filter(contact_id=contact_id, purpose=purpose)
        .values_list("status", flat=True)
        .first()
    )


def consent_current(*, contact_id: int) -> dict[str, dict]:
    """The person's current consent per purpose: purpose → {status, changed_at, last_event__source}."""
    rows = ConsentState.objects.filter(contact_id=contact_id).values(
        "purpose", "status", "changed_at", "last_event__source"
    )
    return {row["purpose"]: row for row in rows}


def consent_history(*, contact_id: int) -> list[ConsentEvent]:
    return list(ConsentEvent.objects.filter(subject__contact_id=contact_id).order_by("sequence"))


def consent_evidence(event: ConsentEvent) -> dict:
    """The decrypted evidence of an event; raises crypto.EvidenceUnavailable after erasure."""
    return crypto.evidence_decrypt(event.subject.wrapped_key, event.evidence_ciphertext)


@transaction.atomic
def consent_projection_rebuild(*, contact_ids: Iterable[int] | None = None) -> int:
    """Recompute ConsentState from the ledger (all people, or some). Returns the rows written."""
    subjects = ConsentSubject.objects.filter(contact_id__isnull=False)
    if contact_ids is not None:
        subjects = subjects.filter(contact_id__in=list(contact_ids))
    ConsentState.objects.filter(subject__in=subjects).delete()
    latest: dict[tuple, tuple[str | None, ConsentEvent]] = {}
    contact_of = dict(subjects.values_list("id", "contact_id"))
    for event in (
        ConsentEvent.objects.filter(subject__in=subjects).order_by("sequence").iterator(chunk_size=5000)
    ):
        key = (event.subject_id, event.purpose)
        current = latest.get(key, (None, None))[0]
        latest[key] = (next_status(current, event), event)
    ConsentState.objects.bulk_create(
        ConsentState(
            subject_id=subject_id,
            contact_id=contact_of[subject_id],
            purpose=purpose,
            status=status,
            last_event=event,
            changed_at=event.occurred_at,
        )
        for (subject_id, purpose), (status, event) in latest.items()
        if status is not None
    )
    return len(latest)
