"""The privacy request API: businesses file CCPA/CPRA requests they receive, and follow them.

    POST /api/v1/privacy-requests/              file a request (compliance.add_privacyrequest)
    GET  /api/v1/privacy-requests/?status=&kind=&due_before=   list, paginated (compliance.view_privacyrequest)
    GET  /api/v1/privacy-requests/{reference}/  one request with its history (compliance.view_privacyrequest)

A request filed here is one the person made through the caller's own site or app (manner "API"), so
it is handled like one from our public page: the reference and due date are the acknowledgement, a
code goes to the number on WhatsApp when identity must be verified, and `status_url` is the page
where the person enters that code, follows the request and downloads the answer. Give that link only
to the person.

`status_url` is a bearer credential (whoever holds it can verify the request and download the
person's data), so it is handed out once, to the caller that filed the request: in the 201 response
and its idempotent replay, never by the list or the detail, which anyone with view permission reads.
The 201 response is stored for 24 hours for idempotent replays (config/idempotency.py), so it carries
no personal data either (no number, name, email, details or corrections): the detail has those.

Refusals use the project's error shape (config/api.py): 400 with `code` set to the most specific
reason (`invalid_phone_number`, `invalid_kind`, `agent_proof_required`, `corrections_required`, ...;
`validation_error` when nothing more specific applies) and `errors` per field.
"""

from django.core.exceptions import NON_FIELD_ERRORS
from django.core.exceptions import ValidationError as DjangoValidationError
from django.urls import reverse
from drf_spectacular.extensions import OpenApiSerializerFieldExtension
from drf_spectacular.plumbing import ResolvedComponent
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound
from rest_framework.generics import GenericAPIView
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.permissions import BasePermission, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import ErrorDetail

from compliance.api.serializers import ApiErrorSerializer
from compliance.api.views import (
    FORBIDDEN,
    IDEMPOTENCY_KEY,
    UNAUTHENTICATED,
    CodedErrorsMixin,
    CodedValidationError,
)
from compliance.contacts import directory
from compliance.models import (
    DenialBasis,
    PrivacyOutcome,
    PrivacyRequest,
    PrivacyRequestChannel,
    PrivacyRequestEvent,
    PrivacyRequestKind,
    PrivacyRequestStatus,
    VerificationMethod,
)
from compliance.privacy import privacy_request_file
from compliance.privacy_views import privacy_status_path
from config.idempotency import idempotent
from config.validation import validation_errors

IDEMPOTENCY_SCOPE = "compliance:privacy-requests"
ADD = "compliance.add_privacyrequest"
VIEW = "compliance.view_privacyrequest"
#: Codes more specific than `validation_error`: the first one found becomes the response's `code`.
SPECIFIC_CODES = frozenset({"invalid_phone_number", "invalid_kind"})


# --- Fields ---------------------------------------------------------------------------------------


class NamedEnumField(serializers.ChoiceField):
    """A choice field documented as the named enum component `component_name` (a field called
    `status` or `kind` would otherwise collide with other apps' enums of that field name)."""

    def __init__(self, component_name: str, values, **kwargs):
        self.component_name = component_name
        super().__init__(choices=list(values), **kwargs)


class NamedEnumFieldExtension(OpenApiSerializerFieldExtension):
    target_class = NamedEnumField
    match_subclasses = True

    def map_serializer_field(self, auto_schema, direction):
        component = ResolvedComponent(
            name=self.target.component_name,
            type=ResolvedComponent.SCHEMA,
            object=self.target.component_name,
            schema={"type": "string", "enum": list(self.target.choices)},
        )
        auto_schema.registry.register_on_missing(component)
        return component.ref


class KindField(NamedEnumField):
    def __init__(self, **kwargs):
        super().__init__("PrivacyRequestKind", PrivacyRequestKind.values, **kwargs)

    def to_internal_value(self, data):
        if str(data) not in self.choices:
            raise serializers.ValidationError(
                f"Use one of {', '.join(PrivacyRequestKind.values)}.", code="invalid_kind"
            )
        return str(data)


def _optional_enum(values: list[str], **kwargs) -> serializers.CharField:
    """A read-only value from a fixed set, null until it applies (an open request has no outcome)."""

    @extend_schema_field({"type": "string", "enum": [*values, None], "nullable": True})
    class OptionalEnumField(serializers.CharField):
        def to_representation(self, value):
            return value or None

    return OptionalEnumField(read_only=True, allow_null=True, **kwargs)


# --- Serializers ----------------------------------------------------------------------------------


class PrivacyRequestCreateSerializer(serializers.Serializer):
    kind = KindField(
        help_text="know_categories, know_specific: what we hold (categories, or a copy of the pieces); "
        "delete; correct (needs `corrections`); opt_out_sale, limit_sensitive: done at once."
    )
    phone_number = serializers.CharField(
        max_length=40,
        help_text="The WhatsApp number the request is about, in any common format (numbers without a "
        "country code read as US).",
    )
    requester_name = serializers.CharField(required=False, allow_blank=True, max_length=200)
    requester_email = serializers.EmailField(
        required=False, allow_blank=True, help_text="Where notices about the request are emailed."
    )
    details = serializers.CharField(
        required=False, allow_blank=True, max_length=5000, help_text="The request in the person's words."
    )
    corrections = serializers.DictField(
        child=serializers.CharField(max_length=200, allow_blank=True),
        required=False,
        help_text='For `correct`: detail → corrected value, e.g. {"name": "Ava Jones"}; the details '
        "that can be corrected are name, locale and timezone. Multipart: `corrections.name=...`.",
    )
    agent_name = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=200,
        help_text="An authorized agent acting for the person; then `agent_proof` or `agent_proof_note` "
        "is required.",
    )
    agent_email = serializers.EmailField(required=False, allow_blank=True)
    agent_proof = serializers.FileField(
        required=False,
        help_text="The person's signed permission or power of attorney: PDF, PNG or JPEG, at most 10 MB "
        "(multipart/form-data only).",
    )
    agent_proof_note = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=2000,
        help_text="What the proof is and how it reaches us, when it is not uploaded.",
    )

    def validate_phone_number(self, value: str) -> str:
        try:
            directory().phone_number_normalize(value)
        except DjangoValidationError as exc:
            raise serializers.ValidationError(exc.messages[0], code="invalid_phone_number") from exc
        return value


class PrivacyRequestEventSerializer(serializers.ModelSerializer):
    action = NamedEnumField("PrivacyRequestAction", PrivacyRequestEvent.Action.values, read_only=True)
    username = serializers.CharField(
        read_only=True, help_text='The staff or API user, "requester" or "system".'
    )

    class Meta:
        model = PrivacyRequestEvent
        fields = ["action", "at", "username", "detail"]
        read_only_fields = fields


class PrivacyRequestSerializer(serializers.ModelSerializer):
    kind = NamedEnumField("PrivacyRequestKind", PrivacyRequestKind.values, read_only=True)
    channel = NamedEnumField(
        "PrivacyRequestChannel",
        PrivacyRequestChannel.values,
        read_only=True,
        help_text="The manner in which the request reached the business.",
    )
    status = NamedEnumField(
        "PrivacyRequestStatus",
        PrivacyRequestStatus.values,
        read_only=True,
        help_text="received → awaiting_verification → verified → closed (opt-out and limit requests "
        "close at once).",
    )
    phone_number = serializers.CharField(read_only=True, help_text="E.164; empty once the person was erased.")
    extended = serializers.BooleanField(source="is_extended", read_only=True)
    verification_method = _optional_enum(VerificationMethod.values)
    outcome = _optional_enum(PrivacyOutcome.values)
    denial_basis = _optional_enum(DenialBasis.values)

    class Meta:
        model = PrivacyRequest
        fields = [
            "reference",
            "kind",
            "channel",
            "status",
            "phone_number",
            "requester_name",
            "requester_email",
            "agent_name",
            "received_at",
            "acknowledge_due",
            "acknowledged_at",
            "respond_due",
            "original_respond_due",
            "extended",
            "extension_reason",
            "verification_method",
            "verified_at",
            "responded_at",
            "outcome",
            "response_summary",
            "denial_basis",
            "denial_explanation",
        ]
        read_only_fields = fields


class PrivacyRequestDetailSerializer(PrivacyRequestSerializer):
    events = PrivacyRequestEventSerializer(many=True, read_only=True, help_text="Every step, oldest first.")

    class Meta(PrivacyRequestSerializer.Meta):
        fields = [*PrivacyRequestSerializer.Meta.fields, "events"]
        read_only_fields = fields


class PrivacyRequestFiledSerializer(serializers.ModelSerializer):
    """The answer to filing: the acknowledgement (reference, clocks, status) and the person's status page,
    and nothing that identifies the person, since it is kept for idempotent replays."""

    kind = NamedEnumField("PrivacyRequestKind", PrivacyRequestKind.values, read_only=True)
    channel = NamedEnumField("PrivacyRequestChannel", PrivacyRequestChannel.values, read_only=True)
    status = NamedEnumField("PrivacyRequestStatus", PrivacyRequestStatus.values, read_only=True)
    extended = serializers.BooleanField(source="is_extended", read_only=True)
    verification_method = _optional_enum(VerificationMethod.values)
    outcome = _optional_enum(PrivacyOutcome.values)
    status_url = serializers.SerializerMethodField(
        help_text="The person's page for this request: enter the WhatsApp code, follow it, download the "
        "answer. Valid for 120 days. Whoever holds it can act as the person: give it only to them. Returned "
        "only here (and in a replay with the same Idempotency-Key), never by the list or the detail."
    )

    class Meta:
        model = PrivacyRequest
        fields = [
            "reference",
            "kind",
            "channel",
            "status",
            "received_at",
            "acknowledge_due",
            "acknowledged_at",
            "respond_due",
            "original_respond_due",
            "extended",
            "verification_method",
            "verified_at",
            "responded_at",
            "outcome",
            "status_url",
        ]
        read_only_fields = fields

    @extend_schema_field(OpenApiTypes.URI)
    def get_status_url(self, obj: PrivacyRequest) -> str:
        path = privacy_status_path(obj.reference)
        request = self.context.get("request")
        return request.build_absolute_uri(path) if request is not None else path


# --- Errors and permissions -----------------------------------------------------------------------


def _from_serializer_errors(errors: dict) -> CodedValidationError:
    for messages in errors.values():
        for message in messages if isinstance(messages, list) else [messages]:
            if getattr(message, "code", None) in SPECIFIC_CODES:
                return CodedValidationError(message.code, errors)
    return CodedValidationError("validation_error", errors)


def _from_service_error(exc: DjangoValidationError) -> CodedValidationError:
    """privacy_request_file's ValidationError as a 400 whose `code` is the first error's code."""
    errors: dict[str, list[ErrorDetail]] = {}
    for field, error in validation_errors(exc):
        name = "non_field_errors" if field in (None, NON_FIELD_ERRORS) else field
        message = error.message % error.params if error.params else error.message
        errors.setdefault(name, []).append(ErrorDetail(message, code=error.code or "invalid"))
    first = next((detail.code for details in errors.values() for detail in details), "validation_error")
    return CodedValidationError(first, errors)


class PrivacyRequestPermission(BasePermission):
    required = {"GET": VIEW, "HEAD": VIEW, "POST": ADD}

    def has_permission(self, request, view) -> bool:
        perm = self.required.get(request.method)
        if perm is None:
            return request.method == "OPTIONS"
        self.message = f"You need the {perm} permission."
        return bool(request.user and request.user.has_perm(perm))


ERROR = ApiErrorSerializer


# --- Views ----------------------------------------------------------------------------------------


class PrivacyRequestListCreateView(CodedErrorsMixin, GenericAPIView):
    permission_classes = [IsAuthenticated, PrivacyRequestPermission]
    serializer_class = PrivacyRequestSerializer
    parser_classes = [JSONParser, MultiPartParser, FormParser]

    def get_queryset(self):
        return PrivacyRequest.objects.order_by("respond_due", "received_at", "id")

    @extend_schema(
        operation_id="privacy_requests_list",
        summary="List privacy requests",
        description="Requests, the most urgent first (by respond-by date). Needs "
        "`compliance.view_privacyrequest`. The person's status page is never listed: it is returned only "
        "when the request is filed.",
        parameters=[
            OpenApiParameter("status", OpenApiTypes.STR, enum=PrivacyRequestStatus.values),
            OpenApiParameter("kind", OpenApiTypes.STR, enum=PrivacyRequestKind.values),
            OpenApiParameter(
                "due_before",
                OpenApiTypes.DATE,
                description="Only requests to be answered before this date (respond_due earlier than it).",
            ),
        ],
        responses={
            200: PrivacyRequestSerializer(many=True),
            400: OpenApiResponse(ERROR, description="`invalid_status`, `invalid_kind` or `invalid_date`."),
            401: UNAUTHENTICATED,
            403: FORBIDDEN,
        },
    )
    def get(self, request: Request) -> Response:
        requests = self.get_queryset()
        params = request.query_params
        for name, values in (("status", PrivacyRequestStatus.values), ("kind", PrivacyRequestKind.values)):
            if params.get(name):
                if params[name] not in values:
                    raise CodedValidationError(
                        f"invalid_{name}",
                        {name: [ErrorDetail(f"Use one of {', '.join(values)}.", code=f"invalid_{name}")]},
                    )
                requests = requests.filter(**{name: params[name]})
        if params.get("due_before"):
            due_before = serializers.DateField().run_validation
            try:
                requests = requests.filter(respond_due__lt=due_before(params["due_before"]))
            except serializers.ValidationError as exc:
                raise CodedValidationError(
                    "invalid_date",
                    {"due_before": [ErrorDetail("Use a date like 2025-07-31.", code="invalid_date")]},
                ) from exc
        page = self.paginate_queryset(requests)
        return self.get_paginated_response(
            PrivacyRequestSerializer(page, many=True, context={"request": request}).data
        )

    @extend_schema(
        operation_id="privacy_requests_create",
        summary="File a privacy request",
        description="Records a request the person made through your site or app and starts its legal "
        "clocks. Opt-out and limit requests are fulfilled at once; the others wait until the person "
        "proves the number is theirs with the code we send on WhatsApp (entered at `status_url`), or "
        "until staff verify them another way. Needs `compliance.add_privacyrequest`.\n\n"
        "The response is the acknowledgement and `status_url`, the person's own page: it is returned only "
        "here (and in a replay with the same `Idempotency-Key`), never by the list or the detail; whoever "
        "holds it can act as the person, so give it only to them. It holds no personal data: read the "
        "request's details with `privacy_requests_retrieve`.\n\n"
        "400 codes: `invalid_phone_number`, `invalid_kind`, `corrections_required` (a correction without "
        "a corrected value), `unknown_correction_field`, `agent_proof_required` (an agent without proof "
        "or a note), `agent_proof_type` (not a PDF, PNG or JPEG), `agent_proof_too_large`, "
        "`invalid_idempotency_key`, `validation_error` otherwise.",
        request={
            "application/json": PrivacyRequestCreateSerializer,
            "multipart/form-data": PrivacyRequestCreateSerializer,
        },
        parameters=[IDEMPOTENCY_KEY],
        responses={
            201: PrivacyRequestFiledSerializer,
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
            handler=lambda: self._file(request),
            status_code=status.HTTP_201_CREATED,
            headers={"Location": lambda body: reverse("privacy-request-detail", args=[body["reference"]])},
        )

    def _file(self, request: Request) -> dict:
        serializer = PrivacyRequestCreateSerializer(data=request.data)
        if not serializer.is_valid():
            raise _from_serializer_errors(serializer.errors)
        data = serializer.validated_data
        try:
            filed = privacy_request_file(
                kind=data["kind"],
                channel=PrivacyRequestChannel.API,
                phone_number=data["phone_number"],
                requester_name=data.get("requester_name", ""),
                requester_email=data.get("requester_email", ""),
                details=data.get("details", ""),
                corrections=data.get("corrections"),
                agent_name=data.get("agent_name", ""),
                agent_email=data.get("agent_email", ""),
                agent_proof=data.get("agent_proof"),
                agent_proof_note=data.get("agent_proof_note", ""),
                filed_by=request.user,
                status_link=lambda reference: request.build_absolute_uri(privacy_status_path(reference)),
            )
        except DjangoValidationError as exc:
            raise _from_service_error(exc) from exc
        filed.refresh_from_db()
        return dict(PrivacyRequestFiledSerializer(filed, context={"request": request}).data)


class PrivacyRequestDetailView(CodedErrorsMixin, GenericAPIView):
    permission_classes = [IsAuthenticated, PrivacyRequestPermission]
    serializer_class = PrivacyRequestDetailSerializer

    @extend_schema(
        operation_id="privacy_requests_retrieve",
        summary="A privacy request with its history",
        description="Needs `compliance.view_privacyrequest`. The person's status page is not included: it "
        "is returned only when the request is filed.",
        responses={
            200: PrivacyRequestDetailSerializer,
            401: UNAUTHENTICATED,
            403: FORBIDDEN,
            404: OpenApiResponse(ERROR, description="`not_found`: no request with this reference."),
        },
    )
    def get(self, request: Request, reference: str) -> Response:
        found = PrivacyRequest.objects.prefetch_related("events").filter(reference=reference.upper()).first()
        if found is None:
            raise NotFound(f"No privacy request {reference}.")
        return Response(PrivacyRequestDetailSerializer(found, context={"request": request}).data)
