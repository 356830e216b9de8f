"""The messages API.

    POST /api/v1/messages/                  compose a message (messaging.add_message)
    GET  /api/v1/messages/                  list, filtered and paginated (messaging.view_message)
    GET  /api/v1/messages/{id}/             one message with its status history (messaging.view_message)
    POST /api/v1/messages/{id}/approve/     release a message written by someone else (messaging.approve_message)
    POST /api/v1/messages/{id}/reject/      refuse it, with a reason (messaging.approve_message)

Composing takes the JSON shapes businesses already send (`message_type` text, media, location, template,
buttons, list, reaction); everything except `to_number`, `from_number`, `message_type` and `reply_to`
goes to `messaging.outbound.message_compose` as the message's data, so the API, the admin and every
other caller share one set of limits and messages (`messaging.message_kinds`). The message waits for a
second person's approval unless its author holds `messaging.send_without_approval`; then it is queued
and handed to the sender as soon as the request's transaction commits.

Every refusal is the project's error shape `{code, detail, errors?}` (config/api.py):

    400 validation_error            malformed body or a broken limit; `errors` names the field
    400 invalid_phone_number        `to_number` is not a phone number
    400 sender_unknown              `from_number` is no active sender of ours (or none is configured)
    400 template_parameters_invalid the template's parameters do not fit it
    400 invalid_idempotency_key     the `Idempotency-Key` header is empty or longer than 255 characters
    403 permission_denied           the token's user lacks the permission, or approves their own message
    409 invalid_state               approve/reject a message that is not waiting for approval
    409 idempotency_conflict / idempotency_in_progress
    422 no_consent, opted_out, window_closed, suppressed, template_paused, frequency_cap,
        template_not_approved       the request is well formed, but policy forbids the message

Policy refusals answer 422, not 403: the caller is allowed to send messages; this message may not go to
this person now. 403 stays reserved for what the caller may do.
"""

import re
from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import Prefetch, Q
from django.urls import reverse
from drf_spectacular.extensions import OpenApiSerializerFieldExtension
from drf_spectacular.plumbing import ResolvedComponent
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    OpenApiResponse,
    PolymorphicProxySerializer,
    extend_schema,
    extend_schema_field,
    extend_schema_view,
)
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ParseError, PermissionDenied, ValidationError
from rest_framework.parsers import JSONParser
from rest_framework.permissions import BasePermission, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import ErrorDetail

from compliance.api.serializers import ApiErrorSerializer
from config.api import ApiError
from config.idempotency import idempotent
from messaging import message_kinds as kinds
from messaging.models import Message, MessageStatus, MessageStatusEvent
from messaging.outbound import MessageRefused, message_approve, message_compose, message_reject
from messaging.phone import phone_normalize

VIEW_MESSAGE = "messaging.view_message"
ADD_MESSAGE = "messaging.add_message"
APPROVE_MESSAGE = "messaging.approve_message"
IDEMPOTENCY_SCOPE = "messaging:messages"

MESSAGE_TYPES = ("text", "media", "location", "template", "buttons", "list", "reaction")
ENVELOPE_FIELDS = ("message_type", "to_number", "from_number", "reply_to")
#: MessageRefused codes that mean "your request is wrong" (400); every other code is a policy refusal.
BAD_REQUEST_REFUSALS = frozenset({"invalid_phone_number", "sender_unknown", "template_parameters_invalid"})
POLICY_REFUSALS = (
    "no_consent",
    "opted_out",
    "window_closed",
    "suppressed",
    "template_paused",
    "frequency_cap",
    "template_not_approved",
)
REJECTION_REASON_MAX = 2000


# --- Errors ---------------------------------------------------------------------------------------


class MessageApiError(ApiError):
    """A refusal with its own code and, when a field is to blame, `errors` naming it."""

    def __init__(self, code: str, detail: str, status_code: int, errors: dict | None = None):
        super().__init__(code, detail, status_code)
        self.errors = errors


def _refusal(exc: MessageRefused) -> MessageApiError:
    status_code = (
        status.HTTP_400_BAD_REQUEST
        if exc.code in BAD_REQUEST_REFUSALS
        else status.HTTP_422_UNPROCESSABLE_ENTITY
    )
    errors = {exc.field: [ErrorDetail(exc.detail, code=exc.code)]} if exc.field else None
    return MessageApiError(exc.code, exc.detail, status_code, errors)


def _message_text(error: DjangoValidationError) -> str:
    # Interpolate only with params: a message may quote the caller's input, "%" signs included.
    return str(error.message % error.params if error.params else error.message)


def _validation_error(exc: DjangoValidationError) -> ValidationError:
    """A Django ValidationError (message_kinds, the services) as the API's 400, field by field."""
    if hasattr(exc, "error_dict"):
        return ValidationError(
            {
                field: [ErrorDetail(_message_text(e), code=e.code or "invalid") for e in errors]
                for field, errors in exc.error_dict.items()
            }
        )
    return ValidationError(
        {
            "non_field_errors": [
                ErrorDetail(_message_text(e), code=e.code or "invalid") for e in exc.error_list
            ]
        }
    )


class SafeJSONParser(JSONParser):
    """JSON only (a message is nested data), and absurdly deep nesting is a 400, not a crash."""

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError("JSON parse error - the body is nested too deeply.") from None


# --- Request shapes (documentation: validation is message_kinds', so limits live in one place) -----


def _enum_field(values, field_class=serializers.ChoiceField, **kwargs) -> serializers.Field:
    """A choice field documented as an inline enum, so its name claims no shared schema component."""

    @extend_schema_field({"type": "string", "enum": list(values)})
    class InlineEnumField(field_class):
        pass

    if field_class is serializers.ChoiceField:
        kwargs["choices"] = list(values)
    return InlineEnumField(**kwargs)


class EnumComponentField(serializers.ChoiceField):
    """A choice field documented as a reference to the named enum component `component_name`: the
    choice set keeps one stable name however many responses use it (and never collides with another
    app's field of the same name)."""

    def __init__(self, component_name: str, values, **kwargs):
        self.component_name = component_name
        super().__init__(choices=list(values), **kwargs)


class EnumComponentFieldExtension(OpenApiSerializerFieldExtension):
    target_class = EnumComponentField

    def map_serializer_field(self, auto_schema, direction):
        field = self.target
        component = ResolvedComponent(
            name=field.component_name,
            type=ResolvedComponent.SCHEMA,
            object=field.component_name,
            schema={"type": "string", "enum": list(field.choices)},
        )
        auto_schema.registry.register_on_missing(component)
        return component.ref


@extend_schema_field(
    {
        "oneOf": [
            {"type": "string", "description": "A public https link, or an uploaded media id."},
            {
                "type": "object",
                "properties": {"id": {"type": "string"}, "link": {"type": "string", "format": "uri"}},
            },
        ]
    }
)
class MediaRefField(serializers.JSONField):
    pass


@extend_schema_field(
    {"oneOf": [{"type": "array", "items": {}}, {"type": "object", "additionalProperties": {}}]}
)
class TemplateParametersField(serializers.JSONField):
    pass


class MessageEnvelopeSerializer(serializers.Serializer):
    """Who the message goes to and from; the rest of the body is the message itself."""

    message_type = serializers.ChoiceField(choices=MESSAGE_TYPES)
    to_number = serializers.CharField(
        max_length=40,
        help_text="The recipient, in any common format (e.g. +1-555-0123456); numbers without a country "
        "code read as US. Unknown numbers become contacts (without any consent).",
    )
    from_number = serializers.CharField(
        max_length=40,
        required=False,
        allow_null=True,
        allow_blank=True,
        help_text="One of our active sender numbers; the default sender when omitted.",
    )
    reply_to = serializers.CharField(
        max_length=128,
        required=False,
        allow_null=True,
        allow_blank=True,
        help_text="The wamid of the customer's message this one answers (shown quoted).",
    )

    def validate_to_number(self, value: str) -> str:
        try:
            return phone_normalize(value)
        except DjangoValidationError as exc:
            raise serializers.ValidationError(
                _message_text(exc.error_list[0]), code="invalid_phone_number"
            ) from exc


class _RequestBase(serializers.Serializer):
    to_number = serializers.CharField(
        max_length=40, help_text=MessageEnvelopeSerializer._declared_fields["to_number"].help_text
    )
    from_number = serializers.CharField(
        required=False, help_text=MessageEnvelopeSerializer._declared_fields["from_number"].help_text
    )
    reply_to = serializers.CharField(
        max_length=128,
        required=False,
        help_text=MessageEnvelopeSerializer._declared_fields["reply_to"].help_text,
    )


class _InteractiveBase(_RequestBase):
    body = serializers.CharField(max_length=kinds.INTERACTIVE_BODY_MAX)
    header = serializers.CharField(
        max_length=kinds.INTERACTIVE_HEADER_MAX, required=False, help_text="A text header."
    )
    footer = serializers.CharField(max_length=kinds.INTERACTIVE_FOOTER_MAX, required=False)


class TextMessageRequestSerializer(_RequestBase):
    message_type = _enum_field(["text"])
    text = serializers.CharField(max_length=kinds.TEXT_MAX)
    preview_url = serializers.BooleanField(
        default=False, help_text="Show a preview of the first link in the text."
    )


class MediaMessageRequestSerializer(_RequestBase):
    message_type = _enum_field(["media"])
    media = MediaRefField(
        help_text="A public https link (its extension must suit the media type), an uploaded media id, "
        'or {"id": ...} / {"link": ...}.'
    )
    media_type = _enum_field(
        kinds.MEDIA_KINDS,
        required=False,
        help_text="Guessed from the link's extension when omitted (document if unknown); required "
        "with a media id.",
    )
    caption = serializers.CharField(
        max_length=kinds.CAPTION_MAX, required=False, help_text="Images, videos and documents only."
    )
    filename = serializers.CharField(
        max_length=240, required=False, help_text="Documents only; defaults to the link's file name."
    )


class LocationMessageRequestSerializer(_RequestBase):
    message_type = _enum_field(["location"])
    latitude = serializers.FloatField(min_value=-90, max_value=90)
    longitude = serializers.FloatField(min_value=-180, max_value=180)
    name = serializers.CharField(max_length=1000, required=False)
    address = serializers.CharField(max_length=1000, required=False)


class TemplateMessageRequestSerializer(_RequestBase):
    message_type = _enum_field(["template"])
    template_name = serializers.CharField(help_text="An APPROVED template of the sender's business account.")
    language = serializers.CharField(help_text="The template's language code, e.g. en_US.")
    parameters = TemplateParametersField(
        required=False,
        help_text="Body variables: a list for positional templates ({{1}}, {{2}}), a mapping for named "
        'ones. A value is text, a number, or a typed object ({"type": "currency", "fallback_value", '
        '"code", "amount_1000"} or {"type": "date_time", "fallback_value"}).',
    )
    header = serializers.JSONField(
        required=False,
        help_text="The header's variable (text headers), a media link or {id} (image, video, document "
        "headers), or {latitude, longitude, name, address} (location headers).",
    )
    buttons = serializers.ListField(
        child=serializers.CharField(),
        required=False,
        help_text="Per button, in order: a URL button's suffix, a quick reply's payload, a copy-code "
        "button's code (null to skip one).",
    )


class ReplyButtonSerializer(serializers.Serializer):
    id = serializers.CharField(
        max_length=kinds.REPLY_BUTTON_ID_MAX, required=False, help_text="Unique; default btn_<n>."
    )
    title = serializers.CharField(max_length=kinds.REPLY_BUTTON_TITLE_MAX)


class ButtonsMessageRequestSerializer(_InteractiveBase):
    message_type = _enum_field(["buttons"])
    buttons = ReplyButtonSerializer(many=True, help_text=f"1 to {kinds.REPLY_BUTTONS_MAX} reply buttons.")


class ListRowSerializer(serializers.Serializer):
    id = serializers.CharField(
        max_length=kinds.LIST_ROW_ID_MAX, required=False, help_text="Unique; default row_<n>."
    )
    title = serializers.CharField(max_length=kinds.LIST_ROW_TITLE_MAX)
    description = serializers.CharField(max_length=kinds.LIST_ROW_DESCRIPTION_MAX, required=False)


class ListSectionSerializer(serializers.Serializer):
    title = serializers.CharField(
        max_length=kinds.LIST_SECTION_TITLE_MAX,
        required=False,
        help_text="Required when there is more than one section.",
    )
    rows = ListRowSerializer(many=True)


class ListMessageRequestSerializer(_InteractiveBase):
    message_type = _enum_field(["list"])
    button = serializers.CharField(
        max_length=kinds.LIST_BUTTON_MAX, help_text="The text of the button that opens the list."
    )
    sections = ListSectionSerializer(
        many=True,
        help_text=f"1 to {kinds.LIST_SECTIONS_MAX} sections, at most {kinds.LIST_ROWS_MAX} rows in all.",
    )


class ReactionMessageRequestSerializer(_RequestBase):
    message_type = _enum_field(["reaction"])
    message_id = serializers.CharField(max_length=256, help_text="The wamid of the message reacted to.")
    emoji = serializers.CharField(
        max_length=10, required=False, allow_blank=True, help_text="Empty removes the reaction."
    )


MESSAGE_CREATE_REQUEST = PolymorphicProxySerializer(
    component_name="MessageCreate",
    serializers={
        "text": TextMessageRequestSerializer,
        "media": MediaMessageRequestSerializer,
        "location": LocationMessageRequestSerializer,
        "template": TemplateMessageRequestSerializer,
        "buttons": ButtonsMessageRequestSerializer,
        "list": ListMessageRequestSerializer,
        "reaction": ReactionMessageRequestSerializer,
    },
    resource_type_field_name="message_type",
)

#: Top-level template fields message_compose passes through unchecked, and the JSON types they take.
TEMPLATE_FIELD_TYPES: dict[str, tuple[tuple[type, ...], str]] = {
    "template_name": ((str,), "text"),
    "language": ((str,), "text"),
    "parameters": ((list, dict), "a list or an object"),
    "header": ((str, int, float, dict), "text, a number or an object"),
    "buttons": ((list,), "a list"),
}


def _check_template_types(data: dict[str, Any]) -> None:
    errors = {}
    for field, (types, described) in TEMPLATE_FIELD_TYPES.items():
        value = data.get(field)
        if value is not None and (not isinstance(value, types) or isinstance(value, bool)):
            errors[field] = [ErrorDetail(f"{field} must be {described}.", code="invalid")]
    if errors:
        raise ValidationError(errors)


class RejectSerializer(serializers.Serializer):
    reason = serializers.CharField(
        max_length=REJECTION_REASON_MAX,
        required=False,
        allow_blank=True,
        help_text="Why the message may not go out (required; the author sees it).",
    )


# --- Response shapes ------------------------------------------------------------------------------


def api_message_type(message: Message) -> str:
    """The `message_type` a message was (or would be) composed with."""
    if message.kind in kinds.MEDIA_KINDS:
        return "media"
    if message.kind == Message.Kind.INTERACTIVE:
        content_type = message.content.get("type") if isinstance(message.content, dict) else None
        return {"button": "buttons", "list": "list"}.get(content_type, "interactive")
    return message.kind


class StatusEventSerializer(serializers.ModelSerializer):
    status = EnumComponentField("MessageStatus", MessageStatus.values, read_only=True)
    at = serializers.DateTimeField(source="occurred_at", read_only=True)
    source = serializers.CharField(
        read_only=True, help_text="Who said so: compose, approval, worker, gate, webhook, ..."
    )

    class Meta:
        model = MessageStatusEvent
        fields = ["status", "at", "source", "detail"]
        read_only_fields = fields


class MessageSerializer(serializers.ModelSerializer):
    """A message as listed. Expects `contact`, `sender` and `template` loaded."""

    direction = EnumComponentField("MessageDirection", Message.Direction.values, read_only=True)
    status = EnumComponentField("MessageStatus", MessageStatus.values, read_only=True)
    message_type = serializers.SerializerMethodField(
        help_text="text, media, location, template, buttons, list, reaction (as composed), or the "
        "WhatsApp type of an inbound message."
    )
    kind = EnumComponentField(
        "MessageKind",
        Message.Kind.values,
        read_only=True,
        help_text="WhatsApp's message type (image, interactive, ...).",
    )
    to_number = serializers.SerializerMethodField(help_text="E.164.")
    from_number = serializers.SerializerMethodField(help_text="E.164.")
    contact_id = serializers.IntegerField(read_only=True)
    template_name = serializers.CharField(source="template.name", read_only=True, allow_null=True)
    template_language = serializers.CharField(source="template.language", read_only=True, allow_null=True)
    provider_message_id = serializers.CharField(
        read_only=True, allow_null=True, help_text="Meta's wamid; null until the message is sent."
    )

    class Meta:
        model = Message
        fields = [
            "id",
            "direction",
            "status",
            "message_type",
            "kind",
            "to_number",
            "from_number",
            "contact_id",
            "preview",
            "template_name",
            "template_language",
            "template_category",
            "reply_to",
            "provider_message_id",
            "error_code",
            "created_at",
            "sent_at",
            "delivered_at",
            "read_at",
            "failed_at",
        ]
        read_only_fields = fields

    def get_message_type(self, message: Message) -> str:
        return api_message_type(message)

    def get_to_number(self, message: Message) -> str:
        if message.direction == Message.Direction.INBOUND:
            return message.sender.display_phone_number
        return message.contact.phone_number

    def get_from_number(self, message: Message) -> str:
        if message.direction == Message.Direction.INBOUND:
            return message.contact.phone_number
        return message.sender.display_phone_number


class MessageDetailSerializer(MessageSerializer):
    """One message in full. Expects `approved_by`, `created_by` loaded and `status_events` prefetched."""

    content = serializers.JSONField(
        read_only=True,
        help_text="What goes to Meta under the key named by `kind` (inbound: Meta's message as received).",
    )
    status_history = StatusEventSerializer(source="status_events", many=True, read_only=True)
    created_by = serializers.CharField(
        source="created_by.get_username", read_only=True, allow_null=True, help_text="A username."
    )
    approved_by = serializers.CharField(
        source="approved_by.get_username",
        read_only=True,
        allow_null=True,
        help_text="Who released (or rejected) the message; its author when they may send without approval.",
    )

    class Meta(MessageSerializer.Meta):
        fields = [
            *MessageSerializer.Meta.fields,
            "content",
            "status_history",
            "error_title",
            "error_details",
            "attempts",
            "next_attempt_at",
            "created_by",
            "approved_by",
            "approved_at",
            "rejection_reason",
            "pricing_category",
            "pricing_type",
        ]
        read_only_fields = fields


# --- Filters --------------------------------------------------------------------------------------

#: "…T10:00:00 05:00": an unencoded "+" in a query string arrives as a space.
_UNENCODED_PLUS = re.compile(r"(\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?) (\d{2}(?::?\d{2})?)$")


class QueryDateTimeField(serializers.DateTimeField):
    def to_internal_value(self, value):
        if isinstance(value, str):
            value = _UNENCODED_PLUS.sub(r"\1+\2", value.strip())
        return super().to_internal_value(value)


class MessageFilterSerializer(serializers.Serializer):
    to_number = serializers.CharField(
        required=False,
        max_length=40,
        help_text="Only messages to this number, in any format (outbound: the contact; inbound: our sender).",
    )
    status = serializers.CharField(
        required=False,
        max_length=500,
        help_text=f"Only these statuses, comma-separated ({', '.join(MessageStatus.values)}).",
    )
    direction = _enum_field(Message.Direction.values, required=False)
    created_after = QueryDateTimeField(
        required=False, help_text="ISO 8601, e.g. 2025-05-04T10:00:00Z (inclusive); naive times are UTC."
    )
    created_before = QueryDateTimeField(required=False, help_text="ISO 8601 (exclusive).")

    def validate_to_number(self, value: str) -> str:
        try:
            return phone_normalize(value)
        except DjangoValidationError as exc:
            raise serializers.ValidationError(
                _message_text(exc.error_list[0]), code="invalid_phone_number"
            ) from exc

    def validate_status(self, value: str) -> list[str]:
        wanted = [part.strip() for part in value.split(",") if part.strip()]
        unknown = [part for part in wanted if part not in MessageStatus.values]
        if unknown:
            raise serializers.ValidationError(
                f"Unknown status {', '.join(unknown)}; use {', '.join(MessageStatus.values)}.",
                code="invalid_choice",
            )
        return wanted


# --- Permissions ----------------------------------------------------------------------------------


class MessagePermission(BasePermission):
    required = {
        "list": VIEW_MESSAGE,
        "retrieve": VIEW_MESSAGE,
        "create": ADD_MESSAGE,
        "approve": APPROVE_MESSAGE,
        "reject": APPROVE_MESSAGE,
    }

    def has_permission(self, request, view) -> bool:
        perm = self.required.get(getattr(view, "action", None) or "")
        if perm is None:
            return request.method == "OPTIONS"
        self.message = f"You need the {perm} permission."
        return bool(request.user and request.user.has_perm(perm))


# --- Schema pieces --------------------------------------------------------------------------------

ERROR = ApiErrorSerializer
UNAUTHENTICATED = OpenApiResponse(ERROR, description="`not_authenticated` or `invalid_token`.")
NOT_FOUND = OpenApiResponse(ERROR, description="`not_found`: no message with this id.")
IDEMPOTENCY_KEY = OpenApiParameter(
    "Idempotency-Key",
    OpenApiTypes.STR,
    OpenApiParameter.HEADER,
    description="Any unique string (at most 255 characters, e.g. a UUID). Repeating the request with the "
    "same key and the same body within 24 hours returns the original 202 response without creating a "
    "second message (marked `Idempotent-Replayed: true`); the same key with a different body is refused "
    "with 409 `idempotency_conflict`, and while the first request is still being processed with 409 "
    "`idempotency_in_progress`. Refused requests do not use up the key.",
)
TO = "+1-555-0123456"
CREATE_EXAMPLES = [
    OpenApiExample(
        "Text",
        value={"message_type": "text", "to_number": TO, "text": "Your order shipped.", "preview_url": False},
        request_only=True,
    ),
    OpenApiExample(
        "Media (document by link)",
        value={
            "message_type": "media",
            "to_number": TO,
            "media": "https://example.com/invoices/invoice-1042.pdf",
            "caption": "Your invoice",
            "filename": "invoice-1042.pdf",
        },
        request_only=True,
    ),
    OpenApiExample(
        "Media (image by uploaded id)",
        value={
            "message_type": "media",
            "to_number": TO,
            "media": {"id": "1037543291543636"},
            "media_type": "image",
        },
        request_only=True,
    ),
    OpenApiExample(
        "Location",
        value={
            "message_type": "location",
            "to_number": TO,
            "latitude": 40.7128,
            "longitude": -74.006,
            "name": "Acme Store",
            "address": "1 Main St, New York",
        },
        request_only=True,
    ),
    OpenApiExample(
        "Template",
        value={
            "message_type": "template",
            "to_number": TO,
            "template_name": "order_confirmation",
            "language": "en_US",
            "parameters": ["Ava", "#1042"],
            "buttons": ["1042"],
        },
        request_only=True,
    ),
    OpenApiExample(
        "Reply buttons",
        value={
            "message_type": "buttons",
            "to_number": TO,
            "header": "Delivery",
            "body": "When should we deliver?",
            "footer": "Acme",
            "buttons": [{"id": "today", "title": "Today"}, {"id": "tomorrow", "title": "Tomorrow"}],
            "reply_to": "wamid.HBgLMTU1NTAxMjM0NTYVAgASGBQzQTdBQ0E=",
        },
        request_only=True,
    ),
    OpenApiExample(
        "List",
        value={
            "message_type": "list",
            "to_number": TO,
            "body": "Pick a delivery slot",
            "button": "Slots",
            "sections": [
                {
                    "title": "Morning",
                    "rows": [{"id": "m9", "title": "9-10 am", "description": "Driver calls ahead"}],
                },
                {"title": "Afternoon", "rows": [{"id": "a2", "title": "2-3 pm"}]},
            ],
        },
        request_only=True,
    ),
    OpenApiExample(
        "Reaction",
        value={
            "message_type": "reaction",
            "to_number": TO,
            "message_id": "wamid.HBgLMTU1NTAxMjM0NTYVAgASGBQzQTdBQ0E=",
            "emoji": "👍",
        },
        request_only=True,
    ),
]


# --- Views ----------------------------------------------------------------------------------------


@extend_schema_view(
    list=extend_schema(
        operation_id="messages_list",
        summary="List messages",
        description="Newest first, paginated. Needs `messaging.view_message`.",
        parameters=[MessageFilterSerializer],
        responses={
            200: MessageSerializer(many=True),
            400: OpenApiResponse(ERROR, description="`validation_error`: a filter's value is invalid."),
            401: UNAUTHENTICATED,
            403: OpenApiResponse(ERROR, description="`permission_denied`: needs messaging.view_message."),
            404: OpenApiResponse(ERROR, description="`not_found`: no such page."),
        },
    ),
    retrieve=extend_schema(
        operation_id="messages_retrieve",
        summary="A message with its status history",
        description="Everything about one message: its content, every status it went through (when, "
        "and who or what said so), Meta's error if any, attempts, approval and pricing. Needs "
        "`messaging.view_message`.",
        responses={
            200: MessageDetailSerializer,
            401: UNAUTHENTICATED,
            403: OpenApiResponse(ERROR, description="`permission_denied`: needs messaging.view_message."),
            404: NOT_FOUND,
        },
    ),
)
class MessageViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    permission_classes = [IsAuthenticated, MessagePermission]
    parser_classes = [SafeJSONParser]
    queryset = Message.objects.none()  # for the schema; get_queryset answers requests

    def get_queryset(self):
        messages = Message.objects.select_related("contact", "sender", "template")
        if self.action == "list":
            return messages.order_by("-created_at", "-id")
        return messages.select_related("created_by", "approved_by").prefetch_related(
            Prefetch("status_events", queryset=MessageStatusEvent.objects.order_by("occurred_at", "id"))
        )

    def get_serializer_class(self):
        return MessageSerializer if self.action == "list" else MessageDetailSerializer

    def handle_exception(self, exc):
        response = super().handle_exception(exc)
        if isinstance(exc, MessageApiError) and exc.errors and isinstance(response.data, dict):
            response.data["errors"] = exc.errors
        return response

    def filter_queryset(self, queryset):
        if self.action != "list":  # get_object() filters too: query strings never hide a message
            return queryset
        params = {key: value for key, value in self.request.query_params.items() if value != ""}
        filters = MessageFilterSerializer(data=params)
        filters.is_valid(raise_exception=True)
        wanted = filters.validated_data
        if "to_number" in wanted:
            queryset = queryset.filter(
                Q(direction=Message.Direction.OUTBOUND, contact__phone_number=wanted["to_number"])
                | Q(direction=Message.Direction.INBOUND, sender__display_phone_number=wanted["to_number"])
            )
        if wanted.get("status"):
            queryset = queryset.filter(status__in=wanted["status"])
        if "direction" in wanted:
            queryset = queryset.filter(direction=wanted["direction"])
        if "created_after" in wanted:
            queryset = queryset.filter(created_at__gte=wanted["created_after"])
        if "created_before" in wanted:
            queryset = queryset.filter(created_at__lt=wanted["created_before"])
        return queryset

    def _detail(self, pk: int) -> dict:
        return dict(MessageDetailSerializer(self.get_queryset().get(pk=pk)).data)

    @extend_schema(
        operation_id="messages_create",
        summary="Send a message",
        description="Composes a message from one of the shapes below (`message_type`), checks it against "
        "WhatsApp's limits and the consent gate, and answers 202: the message waits for a second "
        "person's approval (`pending_approval`) unless the token's user holds "
        "`messaging.send_without_approval`, in which case it is `queued` and sent right after the "
        "request (poll `GET /api/v1/messages/{id}/` or watch status webhooks). Free-form messages "
        "reach only people who wrote in the last 24 hours; templates need the person's consent for "
        "the template's category. Needs `messaging.add_message`.\n\n"
        "400 codes: `validation_error` (a broken limit: `errors` names the field, `detail` the limit), "
        "`invalid_phone_number`, `sender_unknown`, `template_parameters_invalid`, "
        "`invalid_idempotency_key`, `parse_error`.\n\n"
        "422 codes (well-formed, but policy forbids this message now): `no_consent`, `opted_out`, "
        "`window_closed`, `suppressed`, `template_paused`, `frequency_cap`, `template_not_approved`.",
        request=MESSAGE_CREATE_REQUEST,
        parameters=[IDEMPOTENCY_KEY],
        examples=CREATE_EXAMPLES,
        responses={
            202: MessageDetailSerializer,
            400: OpenApiResponse(ERROR, description="Invalid input; see the codes above."),
            401: UNAUTHENTICATED,
            403: OpenApiResponse(ERROR, description="`permission_denied`: needs messaging.add_message."),
            409: OpenApiResponse(ERROR, description="`idempotency_conflict` or `idempotency_in_progress`."),
            415: OpenApiResponse(ERROR, description="`unsupported_media_type`: send application/json."),
            422: OpenApiResponse(ERROR, description="A policy refusal; see the codes above."),
        },
    )
    def create(self, request: Request) -> Response:
        return idempotent(
            request,
            scope=IDEMPOTENCY_SCOPE,
            handler=lambda: self._compose(request),
            status_code=status.HTTP_202_ACCEPTED,
            headers={"Location": lambda body: reverse("message-detail", kwargs={"pk": body["id"]})},
        )

    def _compose(self, request: Request) -> dict:
        body = request.data
        if not isinstance(body, dict):
            raise ValidationError({"non_field_errors": [ErrorDetail("Send a JSON object.", code="invalid")]})
        envelope = MessageEnvelopeSerializer(data=body)
        if not envelope.is_valid():
            to_number_codes = {e.code for e in envelope.errors.get("to_number", [])}
            if "invalid_phone_number" in to_number_codes:
                detail = f"to_number: {envelope.errors['to_number'][0]}"
                raise MessageApiError(
                    "invalid_phone_number", detail, status.HTTP_400_BAD_REQUEST, envelope.errors
                )
            raise ValidationError(envelope.errors)
        fields = envelope.validated_data
        data = {key: value for key, value in body.items() if key not in ENVELOPE_FIELDS}
        if fields["message_type"] == "template":
            _check_template_types(data)
        try:
            message = message_compose(
                to_number=fields["to_number"],
                message_type=fields["message_type"],
                data=data,
                created_by=request.user,
                from_number=fields.get("from_number") or None,
                reply_to=fields.get("reply_to") or "",
            )
        except DjangoValidationError as exc:
            raise _validation_error(exc) from exc
        except MessageRefused as exc:
            raise _refusal(exc) from exc
        # Reloaded: once committed, a queued message may already have been handed to Meta.
        return self._detail(message.pk)

    @extend_schema(
        operation_id="messages_approve",
        summary="Approve a message",
        description="Releases a `pending_approval` message for sending (it is `queued`, then sent). "
        "Needs `messaging.approve_message`; nobody approves their own message.",
        request=None,
        responses={
            200: MessageDetailSerializer,
            401: UNAUTHENTICATED,
            403: OpenApiResponse(
                ERROR,
                description="`permission_denied`: needs messaging.approve_message, or the message is "
                "the caller's own (ask a colleague).",
            ),
            404: NOT_FOUND,
            409: OpenApiResponse(ERROR, description="`invalid_state`: not waiting for approval."),
        },
    )
    @action(detail=True, methods=["post"])
    def approve(self, request: Request, pk=None) -> Response:
        message = self.get_object()
        try:
            message_approve(message=message, approver=request.user)
        except DjangoPermissionDenied as exc:
            raise PermissionDenied(str(exc)) from exc
        except DjangoValidationError as exc:
            raise self._state_error(exc) from exc
        return Response(self._detail(message.pk))

    @extend_schema(
        operation_id="messages_reject",
        summary="Reject a message",
        description="Refuses a `pending_approval` message for good, with the reason its author will "
        "see. Needs `messaging.approve_message`; nobody rejects their own message (cancel it instead).",
        request=RejectSerializer,
        responses={
            200: MessageDetailSerializer,
            400: OpenApiResponse(ERROR, description="`validation_error`: `reason` is missing or too long."),
            401: UNAUTHENTICATED,
            403: OpenApiResponse(
                ERROR,
                description="`permission_denied`: needs messaging.approve_message, or the message is "
                "the caller's own.",
            ),
            404: NOT_FOUND,
            409: OpenApiResponse(ERROR, description="`invalid_state`: not waiting for approval."),
        },
    )
    @action(detail=True, methods=["post"])
    def reject(self, request: Request, pk=None) -> Response:
        message = self.get_object()
        serializer = RejectSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            message_reject(
                message=message, approver=request.user, reason=serializer.validated_data.get("reason", "")
            )
        except DjangoPermissionDenied as exc:
            raise PermissionDenied(str(exc)) from exc
        except DjangoValidationError as exc:
            if exc.error_list[0].code == "reason_required":
                raise ValidationError(
                    {"reason": [ErrorDetail(_message_text(exc.error_list[0]), code="reason_required")]}
                ) from exc
            raise self._state_error(exc) from exc
        return Response(self._detail(message.pk))

    @staticmethod
    def _state_error(exc: DjangoValidationError) -> MessageApiError:
        error = exc.error_list[0]
        return MessageApiError(error.code or "invalid_state", _message_text(error), status.HTTP_409_CONFLICT)
