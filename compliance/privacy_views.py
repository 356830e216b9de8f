"""Public privacy request pages: file a request, follow it, prove it's you, download the answer.

    /privacy/request/                        the form (any of the six kinds, for yourself or as an agent)
    /privacy/request/<token>/                the request's status page
    /privacy/request/<token>/verify/         POST the 6-digit code sent on WhatsApp
    /privacy/request/<token>/new-code/       POST: send a new code
    /privacy/request/<token>/package.json    a right-to-know answer, once fulfilled (30 days)
    /privacy/request/<token>/summary.txt     the same in plain words

`<token>` is the reference signed with a timestamp (never the bare reference, which a stranger could
guess): whoever filed the request holds it, and it expires after STATUS_LINK_MAX_AGE.

Once the person is erased (a deletion request of theirs was fulfilled), every request about them keeps
only its record (`identity_erased_at`, no number): its page says so and offers no code and no download.

Before the person has proven the number is theirs, no page may tell whether we know the number. The
service sends a code only to numbers we know, so for every other request this module keeps a stand-in
("cover") in the cache that answers resends and codes exactly as a real code would (same cool-down,
same limits, same errors), and the wording never says whether a code went out.
"""

import functools
import json
import logging
import math
import time
from dataclasses import asdict, dataclass
from datetime import timedelta
from zoneinfo import ZoneInfo

from django.conf import settings
from django.core import signing
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from compliance import privacy
from compliance.models import PrivacyOutcome, PrivacyRequest, PrivacyRequestChannel, PrivacyRequestStatus
from compliance.privacy_forms import (
    HONEYPOT_FIELD,
    KIND_LABELS,
    PrivacyRequestForm,
    VerificationCodeForm,
)
from config.ratelimit import client_ip, ip_bucket, parse_rate, rate_limit_hit
from config.validation import validation_errors

logger = logging.getLogger(__name__)

STATUS_LINK_NAMESPACE = "compliance.privacy-request.status"
#: Long enough for the longest request (45 days, extended by 45) plus its 30-day download window.
STATUS_LINK_MAX_AGE = timedelta(days=120)
PACKAGE_DOWNLOAD_DAYS = 30
COMPLIED = (PrivacyOutcome.COMPLIED, PrivacyOutcome.COMPLIED_IN_PART)

#: service error field → form field (corrections go to the first correction input).
_FORM_FIELDS = {
    "kind": "kind",
    "phone_number": "phone_number",
    "requester_name": "name",
    "requester_email": "email",
    "details": "details",
    "agent_name": "agent_name",
    "agent_email": "agent_email",
    "agent_proof": "agent_proof",
    "agent_proof_note": "agent_proof_note",
}


# --- Status links ---------------------------------------------------------------------------------


def privacy_status_token(reference: str) -> str:
    return signing.dumps(reference, salt=STATUS_LINK_NAMESPACE)


def privacy_status_path(reference: str) -> str:
    """The status page of a request, for whoever filed it (the API hands it to its caller too)."""
    return reverse("compliance:privacy_request_status", args=[privacy_status_token(reference)])


class _LinkProblem(Exception):
    def __init__(self, status: int):
        self.status = status


def _request_for(token: str) -> PrivacyRequest:
    try:
        reference = signing.loads(token, salt=STATUS_LINK_NAMESPACE, max_age=STATUS_LINK_MAX_AGE)
    except signing.SignatureExpired as exc:
        raise _LinkProblem(410) from exc
    except signing.BadSignature as exc:
        raise _LinkProblem(404) from exc
    request = (
        PrivacyRequest.objects.filter(reference=reference).first() if isinstance(reference, str) else None
    )
    if request is None:
        raise _LinkProblem(404)
    return request


def _link_problem(http_request, problem: _LinkProblem):
    return render(
        http_request,
        "compliance/privacy_link_invalid.html",
        {"expired": problem.status == 410, "contact_email": settings.PRIVACY_CONTACT_EMAIL},
        status=problem.status,
    )


def _with_request(view):
    """Resolve `token` to the request, or answer the friendly 404/410 page."""

    @functools.wraps(view)
    def wrapper(http_request, token: str):
        try:
            request = _request_for(token)
        except _LinkProblem as problem:
            return _link_problem(http_request, problem)
        return view(http_request, request, token)

    return wrapper


# --- The cover for requests without a real code -----------------------------------------------------


@dataclass
class _Cover:
    sent: int = 0
    last_sent: float = 0.0
    attempts: int = 0


def _cover_key(reference: str) -> str:
    return f"privacy-code-cover:{reference}"


def _cover_get(reference: str) -> _Cover:
    return _Cover(**(cache.get(_cover_key(reference)) or {}))


def _cover_save(reference: str, cover: _Cover) -> None:
    cache.set(_cover_key(reference), asdict(cover), timeout=int(STATUS_LINK_MAX_AGE.total_seconds()))


def _cover_send(reference: str) -> None:
    """Stand in for a code sent now (at filing, or on "send me a new code")."""
    cover = _cover_get(reference)
    _cover_save(reference, _Cover(sent=cover.sent + 1, last_sent=time.time(), attempts=0))


def _cover_resend_refusal(reference: str) -> ValidationError | None:
    """privacy_verification_start's refusals, for a request the service sent no code for."""
    cover = _cover_get(reference)
    if time.time() - cover.last_sent < privacy.CODE_RESEND_AFTER.total_seconds():
        return ValidationError(
            "A code was sent less than a minute ago. Please wait.", code="code_recently_sent"
        )
    if cover.sent >= privacy.MAX_CODES_SENT:
        return ValidationError(
            "Too many codes were sent for this request: we will verify you another way.",
            code="too_many_codes",
        )
    return None


def _cover_confirm(reference: str) -> ValidationError:
    """privacy_verification_confirm's answer to any code, for a request the service sent no code for."""
    cover = _cover_get(reference)
    if not cover.sent or time.time() > cover.last_sent + settings.PRIVACY_CODE_TTL_MINUTES * 60:
        return ValidationError("This code has expired. Ask for a new one.", code="code_expired")
    if cover.attempts >= privacy.MAX_CODE_ATTEMPTS:
        return ValidationError("Too many wrong codes. Ask for a new one.", code="too_many_attempts")
    cover.attempts += 1
    _cover_save(reference, cover)
    return ValidationError(
        "That code is not right. Check the WhatsApp message and try again.", code="wrong_code"
    )


# --- Errors ---------------------------------------------------------------------------------------


def _message(error: ValidationError) -> str:
    return error.message % error.params if error.params else error.message


def _add_service_errors(form: PrivacyRequestForm, exc: ValidationError) -> None:
    for field, error in validation_errors(exc):
        target = form.first_correction_field if field == "corrections" else _FORM_FIELDS.get(field)
        form.add_error(target, ValidationError(_message(error), code=error.code))


def _rate_limited(http_request):
    limit, period = parse_rate(settings.PRIVACY_FORM_RATE_LIMIT)
    result = rate_limit_hit(
        key=f"privacy-request:{ip_bucket(client_ip(http_request))}", limit=limit, period_seconds=period
    )
    if result.allowed:
        return None
    logger.info("Privacy request form rate limit reached (%s per %ss)", limit, period)
    response = render(
        http_request,
        "compliance/privacy_rate_limited.html",
        {
            "minutes": max(1, math.ceil(result.retry_after / 60)),
            "contact_email": settings.PRIVACY_CONTACT_EMAIL,
        },
        status=429,
    )
    response["Retry-After"] = str(result.retry_after)
    return response


# --- The form -------------------------------------------------------------------------------------


def _render_form(http_request, form: PrivacyRequestForm, *, status: int = 200):
    return render(
        http_request,
        "compliance/privacy_request.html",
        {"form": form, "honeypot_field": HONEYPOT_FIELD, "contact_email": settings.PRIVACY_CONTACT_EMAIL},
        status=status,
    )


@never_cache
@require_http_methods(["GET", "POST"])
def privacy_request(http_request):
    if http_request.method == "GET":
        return _render_form(http_request, PrivacyRequestForm())

    limited = _rate_limited(http_request)
    if limited is not None:
        return limited
    if http_request.POST.get(HONEYPOT_FIELD, "").strip():
        # A bot filled in the field people never see: nothing is recorded, and it learns nothing.
        return redirect("compliance:privacy_request")

    form = PrivacyRequestForm(http_request.POST, http_request.FILES)
    if not form.is_valid():
        return _render_form(http_request, form, status=400)
    data = form.cleaned_data
    try:
        request = privacy.privacy_request_file(
            kind=data["kind"],
            channel=PrivacyRequestChannel.WEB_FORM,
            phone_number=data["phone_number"],
            requester_name=data["name"],
            requester_email=data["email"],
            details=data["details"],
            corrections=form.corrections(),
            agent_name=data["agent_name"],
            agent_email=data["agent_email"],
            agent_proof=data["agent_proof"],
            agent_proof_note=data["agent_proof_note"],
            status_link=lambda reference: http_request.build_absolute_uri(privacy_status_path(reference)),
        )
    except ValidationError as exc:
        logger.info("Privacy request refused: %s", [e.code for _, e in validation_errors(exc)])
        _add_service_errors(form, exc)
        return _render_form(http_request, form, status=400)
    request.refresh_from_db(fields=["status", "code_hash"])  # the code was sent on another instance
    if request.status == PrivacyRequestStatus.AWAITING_VERIFICATION and not request.code_hash:
        _cover_send(request.reference)
    return redirect(privacy_status_path(request.reference) + "?filed=1")


# --- The status page ------------------------------------------------------------------------------

_STATUS_WORDS = {
    PrivacyRequestStatus.RECEIVED: "Received: we are working on it",
    PrivacyRequestStatus.AWAITING_VERIFICATION: "Waiting for you to confirm it's you",
    PrivacyRequestStatus.VERIFIED: "In progress: we have confirmed it's you and are working on it",
}
_OUTCOME_WORDS = {
    PrivacyOutcome.COMPLIED: "Done",
    PrivacyOutcome.COMPLIED_IN_PART: "Partly done",
    PrivacyOutcome.DENIED: "Closed: we could not do what you asked",
}


def _erased(request: PrivacyRequest) -> bool:
    """The person this request was about has been erased: nothing is held to verify or hand out."""
    return request.identity_erased_at is not None


def _download_until(request: PrivacyRequest):
    """Until when the right-to-know answer can be downloaded (None: it cannot, or not yet)."""
    if (
        _erased(request)
        or request.kind not in privacy.KNOW_KINDS
        or request.outcome not in COMPLIED
        or request.responded_at is None
    ):
        return None
    return request.responded_at + timedelta(days=PACKAGE_DOWNLOAD_DAYS)


def _render_status(
    http_request, request: PrivacyRequest, token: str, *, code_form=None, code_error=None, status=200
):
    zone = ZoneInfo(settings.PRIVACY_TIME_ZONE)
    until = _download_until(request)
    erased = _erased(request)
    if request.is_closed:
        status_words = _OUTCOME_WORDS.get(request.outcome, "Closed")
    elif erased:
        status_words = "Closed: the information it was about has been erased"
    else:
        status_words = _STATUS_WORDS[request.status]
    return render(
        http_request,
        "compliance/privacy_status.html",
        {
            "privacy_request": request,
            "token": token,
            "kind_label": KIND_LABELS.get(request.kind, request.get_kind_display()),
            "status_words": status_words,
            "received_on": timezone.localtime(request.received_at, zone).date(),
            "erased": erased,
            "awaiting_code": _awaiting_code(request),
            "code_form": code_form or VerificationCodeForm(),
            "code_error": code_error,
            "filed": http_request.GET.get("filed") == "1",
            "code_sent": http_request.GET.get("code") == "sent",
            "verified": http_request.GET.get("verified") == "1",
            "download_until": until,
            "can_download": until is not None and timezone.now() <= until,
            "code_ttl_minutes": settings.PRIVACY_CODE_TTL_MINUTES,
            "contact_email": settings.PRIVACY_CONTACT_EMAIL,
        },
        status=status,
    )


def _awaiting_code(request: PrivacyRequest) -> bool:
    # An erased request has no number left to send a code to or to check one against.
    return request.status == PrivacyRequestStatus.AWAITING_VERIFICATION and not _erased(request)


def _back_to_status(token: str, query: str = ""):
    return redirect(reverse("compliance:privacy_request_status", args=[token]) + query)


@never_cache
@require_GET
@_with_request
def privacy_request_status(http_request, request: PrivacyRequest, token: str):
    return _render_status(http_request, request, token)


@never_cache
@require_POST
@_with_request
def privacy_request_verify(http_request, request: PrivacyRequest, token: str):
    if not _awaiting_code(request):
        return _back_to_status(token)  # e.g. the form sent twice: the page says where things stand
    form = VerificationCodeForm(http_request.POST)
    if not form.is_valid():
        return _render_status(http_request, request, token, code_form=form, status=400)
    try:
        if request.status == PrivacyRequestStatus.AWAITING_VERIFICATION and not request.code_hash:
            raise _cover_confirm(request.reference)
        privacy.privacy_verification_confirm(request=request, code=form.cleaned_data["code"])
    except ValidationError as exc:
        for field, error in validation_errors(exc):
            form.add_error(
                "code" if field == "code" else None, ValidationError(_message(error), code=error.code)
            )
        request.refresh_from_db()
        return _render_status(http_request, request, token, code_form=form, status=400)
    return _back_to_status(token, "?verified=1")


@never_cache
@require_POST
@_with_request
def privacy_request_new_code(http_request, request: PrivacyRequest, token: str):
    if not _awaiting_code(request):
        return _back_to_status(token)
    try:
        sent = privacy.privacy_verification_start(request=request)
        if not sent:
            refusal = _cover_resend_refusal(request.reference)
            if refusal is not None:
                raise refusal
            _cover_send(request.reference)
    except ValidationError as exc:
        return _render_status(
            http_request,
            request,
            token,
            code_error={"code": exc.error_list[0].code, "message": _message(exc.error_list[0])},
            status=400,
        )
    return _back_to_status(token, "?code=sent")


# --- Downloads ------------------------------------------------------------------------------------


def _package_or_404(http_request, request: PrivacyRequest):
    """The package to hand out, or the friendly page saying why there is none: 404 while there is none
    yet, 410 once it is gone for good (the 30 days passed, or the person was erased since)."""
    until = _download_until(request)
    if until is None or timezone.now() > until:
        gone = until is not None or _erased(request)
        return None, render(
            http_request,
            "compliance/privacy_link_invalid.html",
            {
                "no_package": True,
                "expired": until is not None,
                "erased": _erased(request),
                "contact_email": settings.PRIVACY_CONTACT_EMAIL,
            },
            status=410 if gone else 404,
        )
    package = privacy.privacy_package_build(request=request)
    privacy.privacy_package_delivered(
        request=request, package=package, user="requester", how="downloaded by the requester"
    )
    return package, None


def _attachment(body: str, *, content_type: str, filename: str) -> HttpResponse:
    response = HttpResponse(body, content_type=content_type)
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


@never_cache
@require_GET
@_with_request
def privacy_request_package(http_request, request: PrivacyRequest, token: str):
    package, refusal = _package_or_404(http_request, request)
    if refusal is not None:
        return refusal
    return _attachment(
        json.dumps(package, indent=2, ensure_ascii=False, default=str),
        content_type="application/json; charset=utf-8",
        filename=f"{request.reference}-data.json",
    )


@never_cache
@require_GET
@_with_request
def privacy_request_summary(http_request, request: PrivacyRequest, token: str):
    package, refusal = _package_or_404(http_request, request)
    if refusal is not None:
        return refusal
    return _attachment(
        privacy.privacy_package_summary(package),
        content_type="text/plain; charset=utf-8",
        filename=f"{request.reference}-summary.txt",
    )
