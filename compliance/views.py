"""Public pages: the web opt-in form and what follows it.

`/opt-in/` shows the business's current consent text and records one ledger event per purpose the person
ticks, with the evidence a web-form opt-in needs (IP address, user agent, page URL) and the version of
the wording they saw. No current wording, no form: consent is never collected without its text.
"""

import logging
import math

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods

from compliance.contacts import directory
from compliance.forms import HONEYPOT_FIELD, OptInForm
from compliance.models import ConsentAction, ConsentEvent, ConsentSource, ConsentStatus, ConsentText
from compliance.services import Evidence, consent_record, consent_status, consent_text_current
from compliance.signals import double_opt_in_requested
from config.ratelimit import client_ip, ip_bucket, parse_rate, rate_limit_hit
from config.validation import validation_error_codes

logger = logging.getLogger(__name__)

PRIVACY_REQUEST_PATH = "/privacy/request/"


def _render_form(request, form: OptInForm, text: ConsentText, *, status: int = 200, stale: bool = False):
    return render(
        request,
        "compliance/opt_in.html",
        {
            "form": form,
            "text": text,
            "stale": stale,
            "honeypot_field": HONEYPOT_FIELD,
            "privacy_request_path": PRIVACY_REQUEST_PATH,
        },
        status=status,
    )


def _rate_limited(request, ip: str):
    limit, period = parse_rate(settings.CONSENT_FORM_RATE_LIMIT)
    result = rate_limit_hit(key=f"opt-in:{ip_bucket(ip)}", limit=limit, period_seconds=period)
    if result.allowed:
        return None
    logger.info("Opt-in form rate limit reached (%s per %ss)", limit, period)
    response = render(
        request,
        "compliance/rate_limited.html",
        {"minutes": max(1, math.ceil(result.retry_after / 60))},
        status=429,
    )
    response["Retry-After"] = str(result.retry_after)
    return response


@never_cache
@require_http_methods(["GET", "POST"])
def opt_in(request):
    text = consent_text_current()
    if text is None:
        return render(request, "compliance/opt_in_unavailable.html", status=503)
    if request.method == "GET":
        return _render_form(
            request, OptInForm(initial={"text_version": text.version}, current_version=text.version), text
        )

    ip = client_ip(request)
    limited = _rate_limited(request, ip)
    if limited is not None:
        return limited
    if request.POST.get(HONEYPOT_FIELD, "").strip():
        # A bot filled in the field people never see: it gets the usual answer, and nothing is recorded.
        return redirect("compliance:opt_in_thanks")

    form = OptInForm(request.POST, current_version=text.version)
    if not form.is_valid():
        if form.is_stale:
            # Consent must be given to the wording actually shown: show the new wording with the boxes
            # unticked, keeping what was typed.
            fresh = OptInForm(
                initial={
                    "phone_number": form["phone_number"].value(),
                    "name": form["name"].value(),
                    "text_version": text.version,
                },
                current_version=text.version,
            )
            return _render_form(request, fresh, text, status=409, stale=True)
        return _render_form(request, form, text, status=400)

    user_agent = request.META.get("HTTP_USER_AGENT", "").strip()
    if not user_agent or not ip:
        form.add_error(
            None,
            "We could not record your choice because your browser did not send the details we must keep "
            "as proof of consent. Please try again in another browser.",
        )
        return _render_form(request, form, text, status=400)

    data = form.cleaned_data
    evidence = Evidence(ip_address=ip, user_agent=user_agent, page_url=request.build_absolute_uri())
    double_opt_in = settings.CONSENT_DOUBLE_OPT_IN
    try:
        with transaction.atomic():
            contact = directory().contact_for_phone(
                phone_number=data["phone_number"], profile_name=data["name"], create=True
            )
            occurred_at = timezone.now()
            for purpose in data["purposes"]:
                consent_record(
                    contact_id=contact.id,
                    phone_number=contact.phone_number,
                    name=data["name"],
                    purpose=purpose,
                    action=ConsentAction.OPT_IN,
                    source=ConsentSource.WEB_FORM,
                    evidence=evidence,
                    text_version=text.version,
                    awaiting_confirmation=double_opt_in,
                    occurred_at=occurred_at,
                )
            # Purposes already granted stay granted; ask for a confirmation only if something waits.
            pending = [
                purpose
                for purpose in (data["purposes"] if double_opt_in else ())
                if consent_status(contact_id=contact.id, purpose=purpose) == ConsentStatus.PENDING
            ]
            if pending:
                # Messaging sends the double opt-in confirmation template on this signal, once the
                # opt-in is committed (messaging/keywords.py listens; compliance/signals.py defines it).
                contact_id = contact.id
                transaction.on_commit(
                    lambda: double_opt_in_requested.send(
                        sender=ConsentEvent, contact_id=contact_id, purposes=pending
                    )
                )
    except ValidationError as exc:
        logger.warning("Opt-in form submission refused: %s", "; ".join(exc.messages))
        if "suppressed" in validation_error_codes(exc):
            form.add_error(
                "phone_number",
                # Worded for anyone who types the number: it must not say why (an erasure request).
                f"We cannot sign up this number here. If it is yours, please write to "
                f"{settings.PRIVACY_CONTACT_EMAIL}.",
            )
            return _render_form(request, form, text, status=400)
        form.add_error(None, "We could not record your choice. Please check your details and try again.")
        return _render_form(request, form, text, status=400)
    return redirect("compliance:opt_in_thanks")


@never_cache
@require_GET
def opt_in_thanks(request):
    text = consent_text_current()
    return render(
        request,
        "compliance/opt_in_thanks.html",
        {
            "business_name": text.business_name if text else "",
            "double_opt_in": settings.CONSENT_DOUBLE_OPT_IN,
            "privacy_request_path": PRIVACY_REQUEST_PATH,
        },
    )
