"""The consent API.

    POST /api/v1/consents/                      record an opt-in or opt-out (compliance.add_consentevent)
    GET  /api/v1/consents/?phone_number=&purpose=   ledger events, paginated (compliance.view_consentevent)
    GET  /api/v1/contacts/{id}/consents/        one person's history with evidence (compliance.view_consentevent)

Refusals use the project's error shape (config/api.py). Invalid input answers 400 with `code` set to
the most specific reason found (`invalid_phone_number`, `consent_text_required`, `evidence_required`,
`unknown_consent_text`, ...; `validation_error` when nothing more specific applies) and `errors` per
field. Compliance never imports messaging: contacts are found through `compliance.contacts.directory()`.
"""

from urllib.parse import urlparse

from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import transaction
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.generics import GenericAPIView
from rest_framework.permissions import BasePermission, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import ErrorDetail

from compliance import crypto
from compliance.api.serializers import (
    ApiErrorSerializer,
    ConsentCreateSerializer,
    ConsentEventSerializer,
)
from compliance.audit import audit_record
from compliance.contacts import directory
from compliance.models import (
    AuditAction,
    ConsentAction,
    ConsentEvent,
    ConsentSource,
    ConsentState,
    ConsentStatus,
    Purpose,
)
from compliance.services import (
    Evidence,
    consent_evidence,
    consent_record,
    consent_status,
    consent_text_for_body,
    next_status,
)
from compliance.signals import double_opt_in_requested
from config import idempotency
from config.idempotency import idempotent
from config.validation import validation_error_codes

IDEMPOTENCY_SCOPE = "compliance:consents"

#: Codes more specific than `validation_error`: the first one found becomes the response's `code`.
SPECIFIC_CODES = frozenset(
    {
        "invalid_phone_number",
        "invalid_occurred_at",
        "invalid_purpose",
        "consent_text_required",
        "unknown_consent_text",
        "evidence_required",
        "opt_in_predates_opt_out",
        "suppressed",
    }
)


# --- Errors ---------------------------------------------------------------------------------------


class CodedValidationError(ValidationError):
    """A 400 whose top-level `code` is `api_code` instead of `validation_error`."""

    def __init__(self, api_code: str, errors: dict):
        super().__init__(errors)
        self.api_code = api_code


def _specific_code(errors: dict) -> str:
    for messages in errors.values():
        for message in messages if isinstance(messages, list) else [messages]:
            code = getattr(message, "code", None)
            if code in SPECIFIC_CODES:
                return code
    return "validation_error"


def _from_serializer_errors(errors: dict) -> CodedValidationError:
    return CodedValidationError(_specific_code(errors), errors)


#: The ledger's field names → the API's.
_LEDGER_FIELDS = {"text_version": "consent_text"}


def _from_ledger_error(exc: DjangoValidationError, *, source: str) -> CodedValidationError:
    """consent_record's ValidationError as a 400: `code` is the first validation code, and missing
    evidence is reported against each missing field."""
    errors: dict[str, list[ErrorDetail]] = {}
    first_code = ""
    items = exc.error_dict.items() if hasattr(exc, "error_dict") else [("non_field_errors", exc.error_list)]
    for field, field_errors in items:
        for error in field_errors:
            code = error.code or "invalid"
            first_code = first_code or code
            if code == "evidence_required":
                for name in str((error.params or {}).get("missing", "")).split(", "):
                    errors.setdefault(name or "evidence", []).append(
                        ErrorDetail(f"Required as evidence for source {source}.", code=code)
                    )
                continue
            name = (
                "consent_text_version" if code == "unknown_consent_text" else _LEDGER_FIELDS.get(field, field)
            )
            errors.setdefault(name, []).append(ErrorDetail(error.message % (error.params or {}), code=code))
    return CodedValidationError(first_code or "validation_error", errors)


class CodedErrorsMixin:
    def handle_exception(self, exc):
        response = super().handle_exception(exc)
        if isinstance(exc, CodedValidationError) and isinstance(response.data, dict):
            response.data["code"] = exc.api_code
        return response


# --- Permissions ----------------------------------------------------------------------------------


class ConsentPermission(BasePermission):
    """Reading the ledger needs compliance.view_consentevent; recording needs compliance.add_consentevent."""

    required = {
        "GET": "compliance.view_consentevent",
        "HEAD": "compliance.view_consentevent",
        "POST": "compliance.add_consentevent",
    }

    def has_permission(self, request, view) -> bool:
        perm = self.required.get(request.method)
        if perm is None:
            return request.method == "OPTIONS"
        self.message = f"You need the {perm} permission."
        return bool(request.user and request.user.has_perm(perm))


# --- Helpers --------------------------------------------------------------------------------------


def _with_status_after(events: list[ConsentEvent]) -> list[ConsentEvent]:
    """Set `status_after` on each event: the person's consent for that purpose right after it, replayed
    from their ledger (one query for all the people on the page)."""
    if not events:
        return events
    after: dict[int, str | None] = {}
    current: dict[tuple, str | None] = {}
    history = (
        ConsentEvent.objects.filter(
            subject_id__in={e.subject_id for e in events}, sequence__lte=max(e.sequence for e in events)
        )
        .order_by("sequence")
        .only("id", "subject_id", "purpose", "action", "awaiting_confirmation")
    )
    for event in history:
        key = (event.subject_id, event.purpose)
        current[key] = next_status(current.get(key), event)
        after[event.id] = current[key]
    for event in events:
        event.status_after = after.get(event.id)
    return events


def _with_evidence(events: list[ConsentEvent]) -> list[ConsentEvent]:
    for event in events:
        try:
            event.evidence_plain = {
                "phone_number": "",
                "name": "",
                "ip_address": "",
                "user_agent": "",
                "page_url": "",
                "message_id": "",
                "reason": "",
                **consent_evidence(event),
                "staff_user_id": event.staff_user_id,
            }
        except crypto.EvidenceUnavailable:
            event.evidence_plain = None
    return events


def _contact_or_400(phone_number: str):
    try:
        return directory().contact_for_phone(phone_number=phone_number, create=False)
    except DjangoValidationError as exc:
        raise CodedValidationError(
            "invalid_phone_number",
            {"phone_number": [ErrorDetail(exc.messages[0], code="invalid_phone_number")]},
        ) from exc


def idempotency_cache_key(user_id: int, key: str) -> str:
    """Keys are per user: two integrators choosing the same key never see each other's responses."""
    return idempotency.cache_key(IDEMPOTENCY_SCOPE, user_id, key)


_fingerprint = idempotency.fingerprint


# --- Schema pieces --------------------------------------------------------------------------------

ERROR = ApiErrorSerializer
UNAUTHENTICATED = OpenApiResponse(ERROR, description="`not_authenticated` or `invalid_token`.")
FORBIDDEN = OpenApiResponse(ERROR, description="`permission_denied`: the token's user lacks the permission.")
IDEMPOTENCY_KEY = OpenApiParameter(
    "Idempotency-Key",
    OpenApiTypes.STR,
    OpenApiParameter.HEADER,
    description="Any unique string (at most 255 characters, e.g. a UUID). Repeating a request with the "
    "same key and the same body within 24 hours returns the original 201 response without recording "
    "a second event (marked `Idempotent-Replayed: true`); the same key with a different body is "
    "refused with 409 `idempotency_conflict`, and while the first request is still being processed "
    "with 409 `idempotency_in_progress`. Failed requests do not use up the key.",
)


# --- Views ----------------------------------------------------------------------------------------


class ConsentListCreateView(CodedErrorsMixin, GenericAPIView):
    permission_classes = [IsAuthenticated, ConsentPermission]
    serializer_class = ConsentEventSerializer

    def get_queryset(self):
        return ConsentEvent.objects.select_related("subject").order_by("sequence")

    @extend_schema(
        operation_id="consents_list",
        summary="List consent ledger events",
        description="Ledger events, oldest first, with their decrypted evidence (null once the person "
        "was erased). Needs `compliance.view_consentevent`.",
        parameters=[
            OpenApiParameter("phone_number", OpenApiTypes.STR, description="Only this person (any format)."),
            OpenApiParameter(
                "purpose", OpenApiTypes.STR, enum=Purpose.values, description="Only this purpose."
            ),
        ],
        responses={
            200: ConsentEventSerializer(many=True),
            400: OpenApiResponse(ERROR, description="`invalid_phone_number` or `invalid_purpose`."),
            401: UNAUTHENTICATED,
            403: FORBIDDEN,
        },
    )
    def get(self, request: Request) -> Response:
        events = self.get_queryset()
        params = request.query_params
        if params.get("phone_number"):
            contact = _contact_or_400(params["phone_number"])
            events = events.filter(subject__contact_id=contact.id) if contact else events.none()
        if params.get("purpose"):
            if params["purpose"] not in Purpose.values:
                raise CodedValidationError(
                    "invalid_purpose",
                    {
                        "purpose": [
                            ErrorDetail(f"Use one of {', '.join(Purpose.values)}.", code="invalid_purpose")
                        ]
                    },
                )
            events = events.filter(purpose=params["purpose"])
        page = self.paginate_queryset(events)
        page = _with_evidence(_with_status_after(list(page)))
        audit_record(
            action=AuditAction.VIEW,
            object_type=ConsentEvent,
            object_id=page[0].subject.contact_id if params.get("phone_number") and page else "",
            summary=f"API: {len(page)} consent events with evidence"
            + (f" (purpose {params['purpose']})" if params.get("purpose") else ""),
            request=request,
        )
        return self.get_paginated_response(
            ConsentEventSerializer(page, many=True, context={"with_evidence": True}).data
        )

    @extend_schema(
        operation_id="consents_create",
        summary="Record an opt-in or opt-out",
        description="Appends one event to the consent ledger, with its evidence encrypted, and makes it "
        "effective immediately (an opt-out stops sending at once). The contact is created if the number "
        "is unknown. Needs `compliance.add_consentevent`.\n\n"
        "400 codes: `invalid_phone_number`, `invalid_occurred_at`, `consent_text_required` (an opt-in "
        "without `consent_text` or `consent_text_version`), `unknown_consent_text`, `evidence_required` "
        "(the source's evidence is missing: `errors` names each missing field), `opt_in_predates_opt_out` "
        "(a back-dated opt-in older than the person's latest opt-out), `suppressed` (the number was erased "
        "at its owner's request or is otherwise on the suppression list), `invalid_idempotency_key`, "
        "`validation_error` otherwise. The first specific code found is the response's `code`; `errors` "
        "lists every problem per field.",
        request=ConsentCreateSerializer,
        parameters=[IDEMPOTENCY_KEY],
        responses={
            201: ConsentEventSerializer,
            400: OpenApiResponse(ERROR, description="Invalid input; see the codes above."),
            401: UNAUTHENTICATED,
            403: FORBIDDEN,
            409: OpenApiResponse(ERROR, description="`idempotency_conflict` or `idempotency_in_progress`."),
        },
    )
    def post(self, request: Request) -> Response:
        return idempotent(
            request,
            scope=IDEMPOTENCY_SCOPE,
            handler=lambda: self._record(request),
            status_code=status.HTTP_201_CREATED,
        )

    def _record(self, request: Request) -> dict:
        serializer = ConsentCreateSerializer(data=request.data)
        if not serializer.is_valid():
            raise _from_serializer_errors(serializer.errors)
        data = serializer.validated_data
        purpose, action, source = data["purpose"], data["action"], data["source"]
        occurred_at = data.get("occurred_at")
        with transaction.atomic():
            try:
                contact = directory().contact_for_phone(
                    phone_number=data["phone_number"], profile_name=data.get("name", ""), create=True
                )
            except DjangoValidationError as exc:
                # A suppressed number (erased at its owner's request) is refused as such, not as "invalid".
                code = "suppressed" if "suppressed" in validation_error_codes(exc) else "invalid_phone_number"
                raise CodedValidationError(
                    code, {"phone_number": [ErrorDetail(m, code=code) for m in exc.messages]}
                ) from exc
            if action == ConsentAction.OPT_IN and occurred_at is not None:
                self._refuse_stale_opt_in(contact_id=contact.id, purpose=purpose, occurred_at=occurred_at)
            text_version = data.get("consent_text_version", "")
            if data.get("consent_text"):
                text_version = consent_text_for_body(
                    body=data["consent_text"], business_name=urlparse(data.get("page_url", "")).hostname or ""
                ).version
            try:
                event = consent_record(
                    contact_id=contact.id,
                    phone_number=contact.phone_number,
                    name=data.get("name", ""),
                    purpose=purpose,
                    action=action,
                    source=source,
                    evidence=Evidence(
                        ip_address=data.get("ip_address", ""),
                        user_agent=data.get("user_agent", ""),
                        page_url=data.get("page_url", ""),
                        reason=data.get("reason", ""),
                    ),
                    text_version=text_version,
                    # The operator's double opt-in applies to web forms wherever they are hosted.
                    awaiting_confirmation=settings.CONSENT_DOUBLE_OPT_IN and source == ConsentSource.WEB_FORM,
                    occurred_at=occurred_at,
                )
            except DjangoValidationError as exc:
                raise _from_ledger_error(exc, source=source) from exc
            event.status_after = consent_status(contact_id=contact.id, purpose=purpose)
            if event.awaiting_confirmation and event.status_after == ConsentStatus.PENDING:
                # As for the opt-in page: messaging sends the confirmation request once this commits.
                contact_id = contact.id
                transaction.on_commit(
                    lambda: double_opt_in_requested.send(
                        sender=ConsentEvent, contact_id=contact_id, purposes=[purpose]
                    )
                )
        return dict(ConsentEventSerializer(event).data)

    @staticmethod
    def _refuse_stale_opt_in(*, contact_id: int, purpose: str, occurred_at) -> None:
        """A back-dated opt-in must not undo a later opt-out (the projection follows ledger order, not
        `occurred_at`): the person's most recent word wins."""
        state = ConsentState.objects.filter(contact_id=contact_id, purpose=purpose).first()
        if state and state.status == ConsentStatus.REVOKED and occurred_at < state.changed_at:
            raise CodedValidationError(
                "opt_in_predates_opt_out",
                {
                    "occurred_at": [
                        ErrorDetail(
                            f"The person opted out of {purpose} messages after this opt-in "
                            f"({state.changed_at.isoformat()}); they must opt in again.",
                            code="opt_in_predates_opt_out",
                        )
                    ]
                },
            )


class ContactConsentHistoryView(CodedErrorsMixin, GenericAPIView):
    permission_classes = [IsAuthenticated, ConsentPermission]
    serializer_class = ConsentEventSerializer
    pagination_class = None

    @extend_schema(
        operation_id="contact_consents",
        summary="A person's consent history",
        description="Every consent event of the contact, oldest first, each with the status it led to "
        "and its decrypted evidence. Needs `compliance.view_consentevent`.",
        responses={
            200: ConsentEventSerializer(many=True),
            401: UNAUTHENTICATED,
            403: FORBIDDEN,
            404: OpenApiResponse(ERROR, description="`not_found`: no contact with this id."),
        },
    )
    def get(self, request: Request, contact_id: int) -> Response:
        if directory().contact_by_id(contact_id) is None:
            raise NotFound(f"No contact with id {contact_id}.")
        events = list(
            ConsentEvent.objects.select_related("subject")
            .filter(subject__contact_id=contact_id)
            .order_by("sequence")
        )
        events = _with_evidence(_with_status_after(events))
        audit_record(
            action=AuditAction.VIEW,
            object_type=ConsentEvent,
            object_id=contact_id,
            summary=f"API: consent history with evidence ({len(events)} events)",
            request=request,
        )
        return Response(ConsentEventSerializer(events, many=True, context={"with_evidence": True}).data)
