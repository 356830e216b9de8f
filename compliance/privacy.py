"""Privacy requests (CCPA/CPRA): filing, verifying, extending, fulfilling and denying.

    received ──(know/delete/correct)──▶ awaiting_verification ──code or manual check──▶ verified ──▶ closed
        └──(opt-out of sale/sharing, limit use)── fulfilled at once, no verification ──────────────────▶ closed
    any open request can be denied (closed, outcome "denied", with the basis)

The clocks are fixed at receipt by compliance.deadlines (stored with the rule's version) and never
pause: verification runs inside the 45 days. Every step is a PrivacyRequestEvent (who, when, what),
which is also what the regulations' record of requests is built from (compliance.privacy_records).

Services only: views, admin, API and tasks call these and show their ValidationErrors, whose codes
are machine-readable (`not_verified`, `wrong_code`, `too_late`, ...).
"""

import hashlib
import hmac
import logging
import secrets
from collections.abc import Callable
from datetime import date, datetime, timedelta
from functools import partial
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import UploadedFile
from django.core.mail import send_mail
from django.db import transaction
from django.utils import timezone

from compliance import deadlines
from compliance.audit import scrub_phone_numbers
from compliance.contacts import directory
from compliance.crypto import phone_keyed_hash
from compliance.models import (
    ConsentAction,
    ConsentSource,
    DenialBasis,
    PrivacyOutcome,
    PrivacyRequest,
    PrivacyRequestChannel,
    PrivacyRequestEvent,
    PrivacyRequestKind,
    PrivacyRequestStatus,
    Purpose,
    VerificationMethod,
)
from compliance.personal_data import Person, correctable_fields, holders
from compliance.services import Evidence, consent_record
from config.validation import validation_error_codes

logger = logging.getLogger(__name__)

Action = PrivacyRequestEvent.Action
KNOW_KINDS = frozenset({PrivacyRequestKind.KNOW_CATEGORIES, PrivacyRequestKind.KNOW_SPECIFIC})
MAX_CODE_ATTEMPTS = 5
MAX_CODES_SENT = 5
MAX_CODES_PER_NUMBER_PER_DAY = 3
CODE_RESEND_AFTER = timedelta(seconds=60)
AGENT_PROOF_MAX_BYTES = 10 * 1024 * 1024
#: Channels where the person is answered the moment they file: that answer is the acknowledgement.
SELF_SERVICE_CHANNELS = frozenset({PrivacyRequestChannel.WEB_FORM, PrivacyRequestChannel.API})
REFERENCE_ALPHABET = "ABCDEFGHJKMNPQRSTVWXYZ23456789"  # no 0/O, 1/I/L: read out over the phone


def needs_verification(kind: str) -> bool:
    return kind not in deadlines.NEEDS_NO_VERIFICATION_KINDS


def _error(field: str | None, message: str, code: str, **params: Any) -> ValidationError:
    error = ValidationError(message, code=code, params=params or None)
    return ValidationError({field: error}) if field else error


def _who(user) -> tuple[int | None, str]:
    if user is None:
        return None, "system"
    if isinstance(user, str):
        return None, user
    return user.pk, user.get_username()


def _log(request: PrivacyRequest, action: str, *, user=None, detail: str = "", at: datetime | None = None):
    user_id, username = _who(user)
    return PrivacyRequestEvent.objects.create(
        request=request,
        action=action,
        at=at or timezone.now(),
        user_id=user_id,
        username=username,
        detail=scrub_phone_numbers(detail),
    )


def _reference() -> str:
    while True:
        reference = "PR-" + "".join(secrets.choice(REFERENCE_ALPHABET) for _ in range(8))
        if not PrivacyRequest.objects.filter(reference=reference).exists():
            return reference


def _holidays() -> list[date]:
    return [date.fromisoformat(day) for day in settings.PRIVACY_EXTRA_HOLIDAYS]


def privacy_today() -> date:
    """Today in the business's time zone: the calendar the deadlines are counted in."""
    return timezone.now().astimezone(ZoneInfo(settings.PRIVACY_TIME_ZONE)).date()


def privacy_urgency(request: PrivacyRequest, *, today: date | None = None) -> deadlines.Urgency:
    return deadlines.urgency(
        due=request.respond_due,
        today=today or privacy_today(),
        done=request.is_closed,
        rule_version=request.rule_version,
    )


# --- Filing ---------------------------------------------------------------------------------------


def _clean_corrections(kind: str, corrections: dict | None) -> dict[str, str]:
    if kind != PrivacyRequestKind.CORRECT:
        return {}
    known = {f.name: f for f in correctable_fields()}
    cleaned, problems = {}, []
    for name, value in (corrections or {}).items():
        text = str(value or "").strip()
        if name not in known or not text:
            continue
        try:
            cleaned[name] = known[name].clean(text) if known[name].clean else text
        except ValidationError as exc:
            problems += [
                ValidationError(f"{known[name].label}: {message}", code=error.code)
                for error, message in zip(exc.error_list, exc.messages, strict=True)
            ]
    if problems:
        raise ValidationError({"corrections": problems})
    unknown = sorted(set(corrections or {}) - set(known))
    if unknown:
        raise _error(
            "corrections",
            "These details cannot be corrected here: %(fields)s.",
            "unknown_correction_field",
            fields=", ".join(unknown),
        )
    if not cleaned:
        raise _error(
            "corrections", "Say which detail is wrong and what it should be.", "corrections_required"
        )
    return cleaned


#: The first bytes of the proof documents we accept. What the browser declares proves nothing.
AGENT_PROOF_SIGNATURES = (
    (b"%PDF-", "application/pdf"),
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
)


def agent_proof_validate(agent_proof: UploadedFile) -> None:
    """Refuse a proof larger than 10 MB or not a PDF, PNG or JPEG by its own first bytes; set its
    content type to what it is. Forms call it to report the problem with their other errors; the
    error is the field's own (filing reports it under `agent_proof`)."""
    if agent_proof.size > AGENT_PROOF_MAX_BYTES:
        raise _error(None, "The proof document is larger than 10 MB.", "agent_proof_too_large")
    head = agent_proof.read(8)
    agent_proof.seek(0)
    sniffed = next((kind for signature, kind in AGENT_PROOF_SIGNATURES if head.startswith(signature)), None)
    if sniffed is None:
        raise _error(None, "Upload the proof as a PDF, PNG or JPEG file.", "agent_proof_type")
    agent_proof.content_type = sniffed


def _agent_proof_digest(agent_proof: UploadedFile | None) -> str:
    if agent_proof is None:
        return ""
    try:
        agent_proof_validate(agent_proof)
    except ValidationError as exc:
        raise ValidationError({"agent_proof": exc.error_list}) from exc
    digest = hashlib.sha256()
    for chunk in agent_proof.chunks():
        digest.update(chunk)
    agent_proof.seek(0)
    return digest.hexdigest()


def privacy_request_file(
    *,
    kind: str,
    channel: str,
    phone_number: str,
    requester_name: str = "",
    requester_email: str = "",
    details: str = "",
    corrections: dict | None = None,
    agent_name: str = "",
    agent_email: str = "",
    agent_proof: UploadedFile | None = None,
    agent_proof_note: str = "",
    filed_by=None,
    received_at: datetime | None = None,
    status_link: Callable[[str], str] | None = None,
) -> PrivacyRequest:
    """Record a new request and start its clocks. Opt-out and limit requests are fulfilled at once
    (they need no verification); others wait for verification, and a code is sent to the number on
    WhatsApp when the request comes from the person themselves (web page, API) and we know them.
    `status_link(reference)` gives the person's status page address, for the receipt email."""
    if kind not in PrivacyRequestKind.values:
        raise _error("kind", "Choose what you are asking for.", "invalid_kind")
    if channel not in PrivacyRequestChannel.values:
        raise _error("channel", "Unknown manner of request %(channel)s.", "invalid_channel", channel=channel)
    try:
        e164 = directory().phone_number_normalize(phone_number)
    except ValidationError as exc:
        raise ValidationError({"phone_number": exc.error_list}) from exc
    cleaned_corrections = _clean_corrections(kind, corrections)
    agent_name = agent_name.strip()
    if agent_name and agent_proof is None and not agent_proof_note.strip():
        raise _error(
            "agent_proof",
            "An authorized agent must provide the consumer's signed permission or a power of attorney.",
            "agent_proof_required",
        )
    proof_digest = _agent_proof_digest(agent_proof)
    received_at = received_at or timezone.now()
    clocks = deadlines.deadlines_compute(
        kind=kind, received_at=received_at, tz=settings.PRIVACY_TIME_ZONE, extra_holidays=_holidays()
    )
    contact = directory().contact_for_phone(phone_number=e164, create=False)
    stored_proof = None
    try:
        with transaction.atomic():
            request, stored_proof = _request_store(
                kind=kind,
                channel=channel,
                e164=e164,
                requester_name=requester_name,
                requester_email=requester_email,
                details=details,
                corrections=cleaned_corrections,
                contact_id=contact.id if contact else None,
                agent_name=agent_name,
                agent_email=agent_email,
                agent_proof=agent_proof,
                proof_digest=proof_digest,
                agent_proof_note=agent_proof_note,
                received_at=received_at,
                clocks=clocks,
                filed_by=filed_by,
            )
    except BaseException:
        if stored_proof:  # the row was not committed: neither may its uploaded file stay behind
            PrivacyRequest._meta.get_field("agent_proof").storage.delete(stored_proof)
        raise
    _after_filing(request, kind=kind, channel=channel, status_link=status_link)
    request.refresh_from_db()  # fulfilment or the code changed the row since it was saved here
    return request


def _request_store(
    *, kind, channel, e164, requester_name, requester_email, details, corrections, contact_id, agent_name,
    agent_email, agent_proof, proof_digest, agent_proof_note, received_at, clocks, filed_by,
) -> tuple[PrivacyRequest, str | None]:  # fmt: skip
    """The new row, its FILED (and, self-service, ACKNOWLEDGED) events, and the stored proof's name."""
    request = PrivacyRequest(
        reference=_reference(),
        kind=kind,
        channel=channel,
        status=PrivacyRequestStatus.RECEIVED
        if not needs_verification(kind)
        else PrivacyRequestStatus.AWAITING_VERIFICATION,
        phone_number=e164,
        phone_hash=phone_keyed_hash(e164),
        requester_name=requester_name.strip()[:200],
        requester_email=requester_email.strip(),
        details=details.strip(),
        corrections=corrections,
        contact_id=contact_id,
        agent_name=agent_name[:200],
        agent_email=agent_email.strip(),
        agent_proof_sha256=proof_digest,
        agent_proof_note=agent_proof_note.strip(),
        received_at=received_at,
        rule_version=clocks.rule_version,
        acknowledge_due=clocks.acknowledge_due,
        respond_due=clocks.respond_due,
        original_respond_due=clocks.respond_due,
        verification_method="" if needs_verification(kind) else VerificationMethod.NOT_REQUIRED,
        filed_by=filed_by if filed_by is not None and not isinstance(filed_by, str) else None,
    )
    request.full_clean(exclude=["agent_proof"])  # before the file is stored: no orphan on refusal
    if agent_proof is not None:
        request.agent_proof.save(f"{request.reference}-{agent_proof.name}"[-90:], agent_proof, save=False)
    try:
        request.save()
        filer = filed_by if filed_by is not None else "requester"
        _log(
            request,
            Action.FILED,
            user=filer,
            at=received_at,
            detail=f"{request.get_kind_display()} by {request.get_channel_display()}"
            + (f", through authorized agent {agent_name}" if agent_name else "")
            + f"; respond by {request.respond_due:%Y-%m-%d} (rule {request.rule_version})",
        )
        if channel in SELF_SERVICE_CHANNELS:
            # The person saw the reference and the due date the moment they filed.
            request.acknowledged_at = received_at
            request.save(update_fields=["acknowledged_at"])
            _log(request, Action.ACKNOWLEDGED, user=filer, at=received_at, detail="confirmed on filing")
    except BaseException:
        if request.agent_proof.name:  # the row will not be committed: its file must not stay behind
            request.agent_proof.storage.delete(request.agent_proof.name)
        raise
    return request, (request.agent_proof.name or None)


def _after_filing(request: PrivacyRequest, *, kind: str, channel: str, status_link) -> None:
    """What follows a committed filing: the receipt, then fulfilment (opt-out, limit) or a code."""
    _notify_by_email(
        request,
        subject=f"We received your privacy request {request.reference}",
        body=_receipt_text(request)
        + (
            f"\nFollow your request (and enter your code) at {status_link(request.reference)}"
            if status_link
            else ""
        ),
    )
    if not needs_verification(kind):
        privacy_request_fulfil(request=request, user=None)
    elif channel in SELF_SERVICE_CHANNELS and request.contact_id:
        try:
            privacy_verification_start(request=request)
        except ValidationError:
            logger.info("No verification code for %s", request.reference)


def _receipt_text(request: PrivacyRequest) -> str:
    return (
        f"We received your request ({request.get_kind_display().lower()}) on "
        f"{timezone.localtime(request.received_at, ZoneInfo(settings.PRIVACY_TIME_ZONE)):%B %d, %Y}. "
        f"Its reference is {request.reference}.\n"
        f"We will respond by {request.respond_due:%B %d, %Y}.\n"
        + (
            "Before we can act on it we must verify your identity: we send a one-time code to the "
            "WhatsApp number you gave. If you do not receive one, reply to this email.\n"
            if needs_verification(request.kind)
            else ""
        )
        + f"Questions: {settings.PRIVACY_CONTACT_EMAIL}"
    )


# --- Notices --------------------------------------------------------------------------------------


def _notify_by_email(request: PrivacyRequest, *, subject: str, body: str, user=None) -> list[str]:
    recipients = [address for address in (request.requester_email, request.agent_email) if address]
    if not recipients:
        return []
    try:
        send_mail(subject, body, None, recipients)
    except Exception as exc:
        # Not logger.exception: SMTP errors quote the recipients' addresses.
        logger.error("Could not email the notice for %s: %s", request.reference, type(exc).__name__)
        return []
    _log(request, Action.NOTICE_SENT, user=user, detail=f"{subject} (by email)")
    return ["email"]


def privacy_notice_send(*, request: PrivacyRequest, subject: str, body: str, user=None) -> list[str]:
    """Send a notice about the request by email (requester and agent) and, when we know the person,
    on WhatsApp. Returns the channels used (empty: staff must deliver it another way)."""
    channels = _notify_by_email(request, subject=subject, body=body, user=user)
    if request.contact_id and request.phone_number:
        queued = directory().person_notify(contact_id=request.contact_id, text=f"{subject}\n\n{body}")
        if queued:
            _log(request, Action.NOTICE_SENT, user=user, detail=f"{subject} (on WhatsApp)")
            channels.append("whatsapp")
    return channels


@transaction.atomic
def privacy_request_acknowledge(*, request: PrivacyRequest, user, note: str = "") -> PrivacyRequest:
    """Confirm receipt (due within 10 business days for know, delete and correct requests)."""
    request = PrivacyRequest.objects.select_for_update().get(pk=request.pk)
    if request.acknowledged_at is not None:
        raise _error(None, "This request was already acknowledged.", "already_acknowledged")
    channels = privacy_notice_send(
        request=request,
        subject=f"We received your privacy request {request.reference}",
        body=_receipt_text(request),
        user=user,
    )
    if not channels and not note.strip():
        raise _error(
            "note",
            "We have no email or WhatsApp conversation to send the confirmation to: say how you confirmed "
            "receipt (e.g. by phone, by letter).",
            "acknowledgement_note_required",
        )
    request.acknowledged_at = timezone.now()
    request.save(update_fields=["acknowledged_at"])
    _log(request, Action.ACKNOWLEDGED, user=user, detail=note.strip() or f"sent by {', '.join(channels)}")
    return request


# --- Verification ---------------------------------------------------------------------------------


def _code_digest(request: PrivacyRequest, code: str) -> str:
    key = hashlib.sha256(f"privacy-code:{settings.SECRET_KEY}".encode()).digest()
    return hmac.new(key, f"{request.reference}:{code}".encode(), hashlib.sha256).hexdigest()


def _require_awaiting_verification(request: PrivacyRequest) -> None:
    if request.status != PrivacyRequestStatus.AWAITING_VERIFICATION:
        raise _error(
            None,
            "This request is not waiting for verification (it is %(status)s).",
            "not_awaiting_verification",
            status=request.get_status_display(),
        )


def privacy_verification_start(*, request: PrivacyRequest, user=None) -> bool:
    """Send a one-time code to the request's WhatsApp number. Returns False when no message could be
    queued (we do not know the number, or the gate refused): verify manually then."""
    with transaction.atomic():
        request = PrivacyRequest.objects.select_for_update().get(pk=request.pk)
        _require_awaiting_verification(request)
        sent = request.events.filter(action=Action.CODE_SENT)
        last = sent.order_by("-at").values_list("at", flat=True).first()
        if last is not None and timezone.now() - last < CODE_RESEND_AFTER:
            raise _error(None, "A code was sent less than a minute ago. Please wait.", "code_recently_sent")
        if sent.count() >= MAX_CODES_SENT:
            raise _error(
                None,
                "Too many codes were sent for this request: we will verify you another way.",
                "too_many_codes",
            )
        # Per number too, across requests: filing request after request must not turn the page into a
        # way to send WhatsApp messages to someone else's phone.
        recent = PrivacyRequestEvent.objects.filter(
            request__phone_hash=request.phone_hash,
            action=Action.CODE_SENT,
            at__gte=timezone.now() - timedelta(days=1),
        ).count()
        if recent >= MAX_CODES_PER_NUMBER_PER_DAY:
            raise _error(
                None,
                "Too many codes were sent to this number today: we will verify you another way.",
                "too_many_codes",
            )
        contact = directory().contact_for_phone(phone_number=request.phone_number, create=False)
        if contact is None:
            return False
        code = f"{secrets.randbelow(10**6):06d}"
        minutes = settings.PRIVACY_CODE_TTL_MINUTES
        queued = directory().person_notify(
            contact_id=contact.id,
            text=f"Your verification code for privacy request {request.reference} is {code}. It expires in "
            f"{minutes} minutes. If you did not make this request, ignore this message.",
            template=settings.PRIVACY_VERIFICATION_TEMPLATE,
            parameters=[code],
        )
        if not queued:
            return False
        request.contact_id = contact.id
        request.code_hash = _code_digest(request, code)
        request.code_expires_at = timezone.now() + timedelta(minutes=minutes)
        request.code_attempts = 0
        request.save(update_fields=["contact_id", "code_hash", "code_expires_at", "code_attempts"])
        _log(request, Action.CODE_SENT, user=user or "requester", detail="one-time code sent on WhatsApp")
        return True


def privacy_verification_confirm(*, request: PrivacyRequest, code: str, user=None) -> PrivacyRequest:
    """Check a code the person typed. Five wrong tries or an expired code need a new code."""
    with transaction.atomic():
        request = PrivacyRequest.objects.select_for_update().get(pk=request.pk)
        _require_awaiting_verification(request)
        if (
            not request.code_hash
            or request.code_expires_at is None
            or request.code_expires_at < timezone.now()
        ):
            raise _error("code", "This code has expired. Ask for a new one.", "code_expired")
        if request.code_attempts >= MAX_CODE_ATTEMPTS:
            raise _error("code", "Too many wrong codes. Ask for a new one.", "too_many_attempts")
        request.code_attempts += 1
        correct = hmac.compare_digest(request.code_hash, _code_digest(request, (code or "").strip()))
        if not correct:
            request.save(update_fields=["code_attempts"])
            _log(
                request,
                Action.CODE_FAILED,
                user=user or "requester",
                detail=f"attempt {request.code_attempts}",
            )
        else:
            # verified_by stays empty: the person proved it with the code, whoever typed it in.
            _mark_verified(
                request,
                method=VerificationMethod.WHATSAPP_CODE,
                user=None,
                note="" if user is None else f"code read out to {user.get_username()}",
            )
    if not correct:
        raise _error(
            "code", "That code is not right. Check the WhatsApp message and try again.", "wrong_code"
        )
    return request


def _mark_verified(request: PrivacyRequest, *, method: str, user, note: str) -> None:
    request.status = PrivacyRequestStatus.VERIFIED
    request.verification_method = method
    request.verification_note = note
    request.verified_at = timezone.now()
    request.verified_by = user
    request.code_hash, request.code_expires_at = "", None
    request.save()
    _log(
        request,
        Action.VERIFIED,
        user=user or "requester",
        detail=VerificationMethod(method).label + (f": {note}" if note else ""),
    )


@transaction.atomic
def privacy_verify_manually(*, request: PrivacyRequest, user, note: str) -> PrivacyRequest:
    """A documented manual check (matching details we hold, a call back to the number, ...)."""
    request = PrivacyRequest.objects.select_for_update().get(pk=request.pk)
    _require_awaiting_verification(request)
    if not note.strip():
        raise _error("note", "Describe how you verified the person's identity.", "verification_note_required")
    _mark_verified(request, method=VerificationMethod.MANUAL, user=user, note=note.strip())
    return request


# --- Extension ------------------------------------------------------------------------------------


def privacy_request_extend(
    *,
    request: PrivacyRequest,
    user,
    reason: str,
    extra_days: int = 45,
    notice_note: str = "",
    today: date | None = None,
) -> PrivacyRequest:
    """Extend the response deadline once, by up to 45 days, with a reason, before the first deadline
    passes, and tell the person (the regulations require the notice within the first 45 days)."""
    with transaction.atomic():
        request = PrivacyRequest.objects.select_for_update().get(pk=request.pk)
        if request.is_closed:
            raise _error(None, "This request is closed.", "already_closed")
        try:
            new_due = deadlines.extension_check(
                kind=request.kind,
                respond_due=request.respond_due,
                already_extended=request.is_extended,
                reason=reason,
                extra_days=extra_days,
                today=today or privacy_today(),
                rule_version=request.rule_version,
            )
        except deadlines.ExtensionRefused as exc:
            field = {"reason_required": "reason", "too_long": "extra_days", "not_positive": "extra_days"}.get(
                exc.code
            )
            raise _error(field, str(exc), exc.code) from exc
        body = (
            f"We need more time to respond to your request {request.reference}: we will respond by "
            f"{new_due:%B %d, %Y} instead of {request.respond_due:%B %d, %Y}.\nWhy: {reason.strip()}\n"
            f"Questions: {settings.PRIVACY_CONTACT_EMAIL}"
        )
        channels = privacy_notice_send(
            request=request,
            subject=f"Your privacy request {request.reference} needs more time",
            body=body,
            user=user,
        )
        if not channels:
            if not notice_note.strip():
                raise _error(
                    "notice_note",
                    "We have no email or WhatsApp conversation for this person: say how you told them about "
                    "the extension (it must reach them before the first deadline).",
                    "notice_undeliverable",
                )
            _log(request, Action.NOTICE_SENT, user=user, detail=f"extension notice: {notice_note.strip()}")
        previous = request.respond_due
        request.respond_due = new_due
        request.extension_reason = reason.strip()
        request.extended_at = timezone.now()
        request.save(update_fields=["respond_due", "extension_reason", "extended_at"])
        _log(
            request,
            Action.EXTENDED,
            user=user,
            detail=f"{previous:%Y-%m-%d} → {new_due:%Y-%m-%d}: {reason.strip()}",
        )
    return request


# --- Fulfilment -----------------------------------------------------------------------------------


def _person(request: PrivacyRequest) -> Person:
    contact = directory().contact_for_phone(phone_number=request.phone_number, create=False)
    names = {request.requester_name.strip()} | ({contact.profile_name.strip()} if contact else set())
    return Person(
        phone_number=request.phone_number,
        contact_id=contact.id if contact else None,
        names=tuple(sorted(name for name in names if name)),
        contact_ids=tuple(directory().contact_ids_for_person(request.phone_number)),
    )


def privacy_package_build(*, request: PrivacyRequest) -> dict[str, Any]:
    """The right-to-know answer: categories always; the specific pieces too for `know_specific`."""
    person = _person(request)
    held = {holder.name: holder.personal_data_collect(person) for holder in holders()}
    categories = [
        {
            "category": c.category,
            "pieces": c.pieces,
            "source": c.source,
            "purpose": c.purpose,
            "count": c.count,
            "held_by": name,
        }
        for name, data in held.items()
        for c in data.categories
        if c.count
    ]
    package: dict[str, Any] = {
        "request": request.reference,
        "kind": request.kind,
        "generated_at": timezone.now().isoformat(timespec="seconds"),
        "phone_number": request.phone_number,
        "categories": categories,
        "sold_or_shared": "We do not sell or share personal information for cross-context advertising.",
    }
    if request.kind == PrivacyRequestKind.KNOW_SPECIFIC:
        package["pieces"] = {name: data.pieces for name, data in held.items()}
    return package


def privacy_package_digest(package: dict[str, Any]) -> str:
    import json

    canonical = json.dumps(package, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def privacy_package_summary(package: dict[str, Any]) -> str:
    """The package in plain words, for people rather than machines."""
    lines = [
        f"Your personal information — privacy request {package['request']}",
        f"Prepared {package['generated_at']} for {package['phone_number']}.",
        "",
    ]
    if not package["categories"]:
        lines.append("We hold no personal information about this number.")
    for category in package["categories"]:
        lines += [
            f"{category['category']} ({category['count']} record{'s' if category['count'] != 1 else ''})",
            f"  What: {category['pieces']}",
            f"  From: {category['source']}",
            f"  Why: {category['purpose']}",
        ]
    lines += ["", package["sold_or_shared"]]
    if "pieces" in package:
        lines += ["", "The specific pieces are in the attached JSON file (data.json)."]
    return "\n".join(lines) + "\n"


def privacy_package_delivered(*, request: PrivacyRequest, package: dict[str, Any], user, how: str) -> None:
    """Record that a package (identified by its digest) was handed out, and how."""
    _log(
        request,
        Action.PACKAGE_DELIVERED,
        user=user,
        detail=f"{how}; sha256 {privacy_package_digest(package)}",
    )


def _close(
    request: PrivacyRequest, *, user, outcome: str, summary: str, basis: str = "", explanation: str = ""
):
    request.status = PrivacyRequestStatus.CLOSED
    request.outcome = outcome
    request.response_summary = summary
    request.denial_basis = basis
    request.denial_explanation = explanation
    request.responded_at = timezone.now()
    request.handled_by = user if user is not None and not isinstance(user, str) else None
    # Only the response's fields: an erasure has just cleared the identity fields of this very row.
    request.save(
        update_fields=[
            "status", "outcome", "response_summary", "denial_basis", "denial_explanation", "responded_at",
            "handled_by", "contact_id",
        ]
    )  # fmt: skip
    _log(
        request, Action.CLOSED, user=user, detail=f"{PrivacyOutcome(outcome).label}: {summary or explanation}"
    )


def _require_open_and_verified(request: PrivacyRequest) -> None:
    if request.is_closed:
        raise _error(None, "This request is already closed.", "already_closed")
    if needs_verification(request.kind) and request.status != PrivacyRequestStatus.VERIFIED:
        raise _error(None, "Verify the person's identity before fulfilling this request.", "not_verified")


def privacy_request_fulfil(
    *,
    request: PrivacyRequest,
    user,
    outcome: str = PrivacyOutcome.COMPLIED,
    summary: str = "",
    in_background: bool | None = None,
) -> PrivacyRequest:
    """Do what the request asks, then close it with its outcome (complied, or complied in part with a
    summary of what was not done and why). Deletion erases the person in every app and issues a
    deletion certificate (compliance.erasure.person_erase).

    With a broker (or `in_background=True`) a deletion is only queued here and runs in a worker
    (compliance.tasks.erase_privacy_request): it scans whole tables for the person, which can take
    longer than a web request may. The request stays open, with `erasure_queued_at`, until it is done."""
    if outcome not in (PrivacyOutcome.COMPLIED, PrivacyOutcome.COMPLIED_IN_PART):
        raise _error(
            "outcome",
            "Fulfilment is complied with in whole or in part; use deny to refuse.",
            "invalid_outcome",
        )
    if outcome == PrivacyOutcome.COMPLIED_IN_PART and not summary.strip():
        raise _error("summary", "Say what was not done and why.", "summary_required")
    if in_background is None:
        in_background = not settings.CELERY_TASK_ALWAYS_EAGER
    if request.kind == PrivacyRequestKind.DELETE and in_background:
        return _erasure_queue(request=request, user=user, outcome=outcome, summary=summary)
    with transaction.atomic():
        if request.kind == PrivacyRequestKind.DELETE:
            # An erasure rewrites every request about the number: lock them all first, in one order,
            # so two deletions for one person queue instead of deadlocking (the second then finds
            # itself closed as superseded).
            list(
                PrivacyRequest.objects.select_for_update()
                .filter(phone_hash=request.phone_hash)
                .order_by("pk")
            )
        request = PrivacyRequest.objects.select_for_update().get(pk=request.pk)
        _require_open_and_verified(request)
        emails = [a for a in (request.requester_email, request.agent_email) if a]
        default_summary = _FULFILERS[request.kind](request, user)
        _close(request, user=user, outcome=outcome, summary=summary.strip() or default_summary)
    if emails and request.kind == PrivacyRequestKind.DELETE:
        # The request's own identity fields are gone now; the addresses were kept for this one notice.
        try:
            send_mail(
                f"Your privacy request {request.reference} is complete",
                f"{request.response_summary}\nQuestions: {settings.PRIVACY_CONTACT_EMAIL}",
                None,
                emails,
            )
            _log(request, Action.NOTICE_SENT, user=user, detail="completion notice (by email)")
        except Exception as exc:
            logger.error(
                "Could not email the completion notice for %s: %s", request.reference, type(exc).__name__
            )
    elif request.kind != PrivacyRequestKind.DELETE:
        _notify_by_email(
            request,
            subject=f"Your privacy request {request.reference} is complete",
            body=f"{request.response_summary}\nQuestions: {settings.PRIVACY_CONTACT_EMAIL}",
            user=user,
        )
    return request


#: A queued erasure not finished after this long is taken to be lost (its worker died): it may be queued again.
ERASURE_PRESUMED_LOST_AFTER = timedelta(hours=1)


def _erasure_queue(*, request: PrivacyRequest, user, outcome: str, summary: str) -> PrivacyRequest:
    from compliance.tasks import erase_privacy_request

    with transaction.atomic():
        request = PrivacyRequest.objects.select_for_update().get(pk=request.pk)
        _require_open_and_verified(request)
        if (
            request.erasure_queued_at
            and timezone.now() - request.erasure_queued_at < ERASURE_PRESUMED_LOST_AFTER
        ):
            raise _error(
                None,
                "The erasure is already running; its certificate appears when it is done.",
                "erasure_running",
            )
        request.erasure_queued_at = timezone.now()
        request.save(update_fields=["erasure_queued_at"])
        _log(request, Action.ERASURE_QUEUED, user=user)
        user_id = user.pk if user is not None and not isinstance(user, str) else None
        transaction.on_commit(
            partial(erase_privacy_request.delay, request.pk, user_id, outcome, summary.strip())
        )
    return request


def _fulfil_know(request: PrivacyRequest, user) -> str:
    package = privacy_package_build(request=request)
    privacy_package_delivered(request=request, package=package, user=user, how="prepared at fulfilment")
    return f"Data package prepared: {len(package['categories'])} categories of personal information" + (
        " with the specific pieces." if "pieces" in package else "."
    )


def _fulfil_delete(request: PrivacyRequest, user) -> str:
    from compliance.erasure import person_erase

    certificate = person_erase(request=request, user=user)
    erased = sum(count for counts in certificate.body["erased"].values() for count in counts.values())
    return f"Personal information erased ({erased} records); deletion certificate {certificate.digest[:16]}."


def _fulfil_correct(request: PrivacyRequest, user) -> str:
    person = _person(request)
    changed: list[str] = []
    for holder in holders():
        changed += holder.personal_data_correct(person, dict(request.corrections))
    _log(
        request,
        Action.CORRECTED,
        user=user,
        detail=f"corrected: {', '.join(changed)}" if changed else "nothing needed changing",
    )
    return f"Corrected: {', '.join(changed)}." if changed else "The details held were already correct."


def _fulfil_opt_out(request: PrivacyRequest, user) -> str:
    # A contact is created if we never had one, so the opt-out stands against a later import.
    try:
        contact = directory().contact_for_phone(phone_number=request.phone_number, create=True)
    except ValidationError as exc:
        if "suppressed" not in validation_error_codes(exc):
            raise
        # Told apart only here: the person's answer must not reveal that the number was erased before.
        _log(request, Action.OPTED_OUT, user=user, detail="already on the suppression list")
        return OPT_OUT_SUMMARY
    user_id = user.pk if user is not None and not isinstance(user, str) else None
    consent_record(
        contact_id=contact.id,
        phone_number=contact.phone_number,
        purpose=Purpose.MARKETING,
        action=ConsentAction.OPT_OUT,
        source=ConsentSource.PRIVACY_REQUEST,
        evidence=Evidence(reason=f"privacy request {request.reference}", staff_user_id=user_id),
    )
    request.contact_id = contact.id
    _log(request, Action.OPTED_OUT, user=user, detail="marketing opt-out recorded in the consent ledger")
    return OPT_OUT_SUMMARY


OPT_OUT_SUMMARY = (
    "Opted out of sale and sharing: you will receive no marketing messages, and we do not sell or share "
    "your personal information."
)


def _fulfil_limit(request: PrivacyRequest, user) -> str:
    _log(request, Action.OPTED_OUT, user=user, detail="limit on sensitive personal information recorded")
    return (
        "Recorded. We use sensitive personal information (the content of your messages) only to deliver "
        "the conversations you take part in, which the regulations allow without your consent."
    )


_FULFILERS = {
    PrivacyRequestKind.KNOW_CATEGORIES: _fulfil_know,
    PrivacyRequestKind.KNOW_SPECIFIC: _fulfil_know,
    PrivacyRequestKind.DELETE: _fulfil_delete,
    PrivacyRequestKind.CORRECT: _fulfil_correct,
    PrivacyRequestKind.OPT_OUT_SALE: _fulfil_opt_out,
    PrivacyRequestKind.LIMIT_SENSITIVE: _fulfil_limit,
}


def privacy_request_deny(*, request: PrivacyRequest, user, basis: str, explanation: str) -> PrivacyRequest:
    """Refuse the request, with the basis the records must show and an explanation for the person."""
    if basis not in DenialBasis.values:
        raise _error("basis", "Choose the basis for the denial.", "denial_basis_required")
    if not explanation.strip():
        raise _error("explanation", "Explain the denial to the person.", "explanation_required")
    with transaction.atomic():
        request = PrivacyRequest.objects.select_for_update().get(pk=request.pk)
        if request.is_closed:
            raise _error(None, "This request is already closed.", "already_closed")
        _close(
            request,
            user=user,
            outcome=PrivacyOutcome.DENIED,
            summary="",
            basis=basis,
            explanation=explanation.strip(),
        )
    _notify_by_email(
        request,
        subject=f"Your privacy request {request.reference}",
        body=f"We cannot fulfil your request: {explanation.strip()}\nQuestions: {settings.PRIVACY_CONTACT_EMAIL}",
        user=user,
    )
    return request


# --- Reminders ------------------------------------------------------------------------------------


def privacy_deadline_digest(*, today: date | None = None) -> dict[str, list[PrivacyRequest]]:
    """Open requests whose response is overdue or due soon, and acknowledgements still owed."""
    today = today or privacy_today()
    open_requests = list(
        PrivacyRequest.objects.exclude(status=PrivacyRequestStatus.CLOSED).order_by(
            "respond_due", "received_at"
        )
    )
    digest: dict[str, list[PrivacyRequest]] = {"overdue": [], "due_soon": [], "acknowledgement_owed": []}
    for request in open_requests:
        urgency = privacy_urgency(request, today=today)
        if urgency in (deadlines.Urgency.OVERDUE, deadlines.Urgency.DUE_SOON):
            digest[urgency.value].append(request)
        if request.acknowledged_at is None and request.acknowledge_due is not None:
            digest["acknowledgement_owed"].append(request)
    return digest


def privacy_deadline_reminders_send(*, today: date | None = None) -> int:
    """Email everyone who can fulfil privacy requests a digest of what is overdue or due soon.
    Returns the number of requests listed (0: nothing sent)."""
    from django.contrib.auth import get_user_model
    from django.db.models import Q

    digest = privacy_deadline_digest(today=today)
    listed = {request.pk for requests in digest.values() for request in requests}
    if not listed:
        return 0
    permission = Q(user_permissions__codename="fulfil_privacyrequest") | Q(
        groups__permissions__codename="fulfil_privacyrequest"
    )
    staff = get_user_model().objects.filter(is_active=True).filter(permission | Q(is_superuser=True))
    recipients = sorted({user.email for user in staff if user.email})
    if not recipients:
        logger.warning(
            "%d privacy requests need attention but no compliance officer has an email", len(listed)
        )
        return len(listed)
    titles = {
        "overdue": "Overdue: the response deadline has passed",
        "due_soon": "Due soon",
        "acknowledgement_owed": "Receipt not yet acknowledged",
    }
    lines = []
    for key, title in titles.items():
        if digest[key]:
            lines.append(f"{title}:")
            lines += [
                f"  {r.reference}  {r.get_kind_display()}  respond by {r.respond_due:%Y-%m-%d}"
                + (f", acknowledge by {r.acknowledge_due:%Y-%m-%d}" if key == "acknowledgement_owed" else "")
                for r in digest[key]
            ]
            lines.append("")
    send_mail(
        f"Privacy requests: {len(digest['overdue'])} overdue, {len(digest['due_soon'])} due soon",
        "\n".join(lines),
        None,
        recipients,
    )
    return len(listed)
