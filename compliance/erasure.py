"""Provable erasure: one service that removes a person from every app and says what it did.

`person_erase` runs in one transaction:
  1. every registered PersonalDataHolder erases its part (messaging: the contact, messages, delivery
     log, webhook payloads; compliance: the consent ledger's key, see ConsentPersonalData);
  2. the identifying fields of every privacy request about the number are cleared (the records the
     regulations require stay: dates, nature, manner, response);
  3. Django's admin history forgets how staff saw the person (object names, change messages);
  4. a keyed hash of the number joins the suppression list, so it cannot come back silently;
  5. a DeletionCertificate records the counts, the times and the ledger head, with a digest of its
     canonical JSON.
The ledger's events are never touched: they stay as ciphertext under a destroyed key, and the hash
chain still verifies.
"""

import hashlib
import json
import re
from functools import partial
from typing import Any

from django.contrib.admin.models import LogEntry
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from compliance.crypto import EvidenceUnavailable, phone_keyed_hash
from compliance.models import (
    ConsentEvent,
    ConsentState,
    ConsentSubject,
    DeletionCertificate,
    LedgerHead,
    PrivacyOutcome,
    PrivacyRequest,
    PrivacyRequestEvent,
    PrivacyRequestKind,
    PrivacyRequestStatus,
)
from compliance.personal_data import CorrectableField, HeldCategory, HeldData, Person, holders, phone_formats
from compliance.suppression import suppression_add

ERASED = "[erased]"

#: What an erasure keeps, and why: printed on every certificate.
KEPT = [
    "The request record (date, nature, manner, response): 11 CCR §7101 asks for 24 months of these.",
    "Consent-ledger events, as ciphertext whose key was destroyed: the chain stays verifiable, "
    "the evidence can never be read again.",
    "A keyed hash (HMAC-SHA256) of the number on the suppression list, so it is never messaged or "
    "imported again.",
]


def certificate_digest(body: dict[str, Any]) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _number_pattern(person: Person) -> re.Pattern:
    """Any shape of the person's number, never as part of a longer number."""
    shapes = sorted(phone_formats(person.phone_number), key=len, reverse=True)
    return re.compile(r"(?<!\d)(?:" + "|".join(re.escape(shape) for shape in shapes) + r")(?!\d)")


def _scrubber(person: Person):
    """Replaces the person's number (any shape) and names in free text written about them."""
    numbers = _number_pattern(person)
    names = sorted((name for name in person.names if len(name) >= MIN_NAME_LENGTH), key=len, reverse=True)

    def scrub(text: str) -> str:
        text = numbers.sub(ERASED, text)
        for name in names:
            text = re.sub(re.escape(name), ERASED, text, flags=re.IGNORECASE)
        return text

    return scrub


def _request_identities_erase(person: Person, request: PrivacyRequest, now) -> int:
    """Clear what identifies the person on every request about them, and scrub the free text staff
    wrote about them there and in the requests' timelines; keep the records themselves (dates,
    nature, manner, outcome, basis of a denial)."""
    scrub = _scrubber(person)
    about = list(
        PrivacyRequest.objects.select_for_update()
        .filter(phone_hash=request.phone_hash, identity_erased_at__isnull=True)
        .order_by("pk")
    )
    for row in about:
        if row.agent_proof:
            # It names the consumer; its sha256 stays on the record. Removed from storage only once
            # the erasure has committed: a rollback must not leave the record pointing at nothing.
            transaction.on_commit(partial(row.agent_proof.storage.delete, row.agent_proof.name))
        row.phone_number = row.requester_name = row.requester_email = row.details = ""
        row.corrections = {}
        row.agent_proof = ""
        row.code_hash = ""
        for name in FREE_TEXT_FIELDS:
            setattr(row, name, scrub(getattr(row, name)))
        row.identity_erased_at = now
        row.save()
        for event in row.events.all():
            detail = scrub(event.detail)
            if detail != event.detail:
                PrivacyRequestEvent.objects.filter(pk=event.pk).erase_personal_data(detail=detail)
    return len(about)


#: Notes staff write on a request, which may quote the person: scrubbed, not cleared (they explain
#: the response the records must show).
FREE_TEXT_FIELDS = (
    "verification_note", "agent_proof_note", "extension_reason", "response_summary", "denial_explanation",
)  # fmt: skip
MIN_NAME_LENGTH = 3


def _open_requests_close(request: PrivacyRequest, *, user) -> int:
    """The person's other open requests cannot be answered any more: nothing is held about them.
    Closed as complied with in part, saying why, so none is left waiting for a deadline."""
    from compliance.privacy import Action, _close, _log

    others = (
        PrivacyRequest.objects.filter(phone_hash=request.phone_hash)
        .exclude(pk=request.pk)
        .exclude(status=PrivacyRequestStatus.CLOSED)
    )
    for other in others:
        _close(
            other,
            user=user,
            outcome=PrivacyOutcome.COMPLIED_IN_PART,
            # Worded for whoever filed it (perhaps not the person): it must not reveal an erasure.
            summary="No personal information is held about this number.",
        )
        _log(other, Action.CLOSED, user=user, detail=f"superseded by deletion request {request.reference}")
    return len(others)


def _admin_history_erase(person: Person) -> int:
    """Django's admin history entries that quote the person's number (any shape). Entries about the
    apps' own objects (a contact, a message) are redacted by those apps' holders."""
    pattern = _number_pattern(person)
    matches = Q()
    for shape in phone_formats(person.phone_number):
        matches |= Q(object_repr__contains=shape) | Q(change_message__contains=shape)
    ids = [
        entry.pk
        for entry in LogEntry.objects.filter(matches).only("object_repr", "change_message")
        if pattern.search(entry.object_repr) or pattern.search(entry.change_message)
    ]
    return LogEntry.objects.filter(pk__in=ids).update(object_repr=ERASED, change_message="")


def person_erase(*, request: PrivacyRequest, user=None) -> DeletionCertificate:
    """Erase the person a verified deletion request is about, everywhere; return the certificate."""
    from compliance.privacy import Action, _log, _person

    if request.kind != PrivacyRequestKind.DELETE:
        raise ValueError(f"{request.reference} is not a deletion request")
    started_at = timezone.now()
    with transaction.atomic():
        person = _person(request)
        erased: dict[str, dict[str, int]] = {}
        for holder in holders():
            erased[holder.name] = holder.personal_data_erase(person)
        erased["privacy requests"] = {
            "requests de-identified": _request_identities_erase(person, request, started_at),
            "other open requests closed": _open_requests_close(request, user=user),
        }
        erased["admin history"] = {"entries redacted": _admin_history_erase(person)}
        suppression_add(
            e164=person.phone_number,
            reason=f"erased at the person's request ({request.reference})",
            privacy_request=request,
        )
        head = LedgerHead.objects.filter(pk=1).first()
        finished_at = timezone.now()
        username = "system" if user is None else user.get_username()
        body = {
            "certificate": "deletion of personal information",
            "request": request.reference,
            "received_at": request.received_at.isoformat(),
            "verified_at": request.verified_at.isoformat() if request.verified_at else None,
            "verification_method": request.verification_method,
            "started_at": started_at.isoformat(),
            "finished_at": finished_at.isoformat(),
            "erased_by": username,
            "erased": erased,
            "kept": KEPT,
            "suppressed": True,
            "ledger_head": {"sequence": head.sequence, "hash": head.hash} if head else None,
        }
        certificate = DeletionCertificate.objects.create(
            request=request,
            started_at=started_at,
            finished_at=finished_at,
            body=body,
            digest=certificate_digest(body),
        )
        _log(request, Action.ERASED, user=user, detail=f"deletion certificate sha256 {certificate.digest}")
    return certificate


def certificate_verify(certificate: DeletionCertificate) -> bool:
    """Does the stored certificate still hash to its digest (it was not edited after issue)?"""
    return certificate_digest(certificate.body) == certificate.digest


# --- Compliance's own holder: the consent ledger -------------------------------------------------


class ConsentPersonalData:
    """The consent ledger's part of a person: their subject, its key, their current consent."""

    name = "consent"

    def correctable_fields(self) -> list[CorrectableField]:
        return []  # evidence is a record of what happened: never rewritten

    def personal_data_collect(self, person: Person) -> HeldData:
        from compliance.services import consent_evidence

        subjects = list(ConsentSubject.objects.filter(contact_id__in=person.all_contact_ids))
        if not subjects:
            return HeldData()
        events = []
        for event in (
            ConsentEvent.objects.filter(subject__in=subjects).select_related("subject").order_by("sequence")
        ):
            try:
                evidence = consent_evidence(event)
            except EvidenceUnavailable:
                evidence = None
            events.append(
                {
                    "sequence": event.sequence,
                    "purpose": event.purpose,
                    "action": event.action,
                    "source": event.source,
                    "occurred_at": event.occurred_at.isoformat(),
                    "consent_text_version": event.text_version,
                    "evidence": evidence,
                }
            )
        current = {
            state.purpose: {"status": state.status, "since": state.changed_at.isoformat()}
            for state in ConsentState.objects.filter(subject__in=subjects).order_by("changed_at")
        }
        return HeldData(
            categories=[
                HeldCategory(
                    category="Consent records",
                    pieces="each opt-in and opt-out with its evidence (IP address, browser, page, message id)",
                    source="you, through the opt-in form, WhatsApp keywords or our staff",
                    purpose="to prove we may message you, and to stop when you ask",
                    count=len(events),
                )
            ],
            pieces={"consent_history": events, "current_consent": current},
        )

    def personal_data_erase(self, person: Person) -> dict[str, int]:
        contact_ids = person.all_contact_ids
        if not contact_ids:
            return {"consent keys destroyed": 0, "consent states deleted": 0}
        subjects = ConsentSubject.objects.filter(contact_id__in=contact_ids)
        states, _ = ConsentState.objects.filter(subject__in=subjects).delete()
        destroyed = subjects.update(wrapped_key=None, contact_id=None, erased_at=timezone.now())
        return {"consent keys destroyed": destroyed, "consent states deleted": states}

    def personal_data_correct(self, person: Person, corrections: dict[str, str]) -> list[str]:
        return []


class PrivacyRequestsPersonalData:
    """The person's own privacy requests, for their data package. Erasure leaves them to
    `person_erase`, which de-identifies them but keeps the records the regulations require."""

    name = "privacy requests"

    def correctable_fields(self) -> list[CorrectableField]:
        return []

    def personal_data_collect(self, person: Person) -> HeldData:
        rows = PrivacyRequest.objects.filter(phone_hash=phone_keyed_hash(person.phone_number)).order_by(
            "received_at"
        )
        items = [
            {
                "reference": row.reference,
                "kind": row.kind,
                "manner": row.channel,
                "received_at": row.received_at.isoformat(),
                "respond_by": row.respond_due.isoformat(),
                "status": row.status,
                "outcome": row.outcome,
                "responded_at": row.responded_at.isoformat() if row.responded_at else None,
            }
            for row in rows
        ]
        return HeldData(
            categories=[
                HeldCategory(
                    category="Privacy requests",
                    pieces="the requests you made about your personal information, and our answers",
                    source="you, or an agent you authorized",
                    purpose="to answer them, and to keep the record of requests the regulations require",
                    count=len(items),
                )
            ],
            pieces={"privacy_requests": items},
        )

    def personal_data_erase(self, person: Person) -> dict[str, int]:
        return {}  # person_erase de-identifies the requests and keeps them

    def personal_data_correct(self, person: Person, corrections: dict[str, str]) -> list[str]:
        return []
