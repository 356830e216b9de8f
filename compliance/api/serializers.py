"""Request and response shapes of the consent API (also what the OpenAPI schema documents)."""

from datetime import timedelta

from django.core.exceptions import ValidationError as DjangoValidationError
from django.utils import timezone
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from compliance.contacts import directory
from compliance.models import ConsentAction, ConsentEvent, ConsentSource, ConsentStatus, Purpose

#: Sources an external site may claim; the others (WhatsApp keywords, Meta signals, staff) are ours.
API_SOURCES = [
    (ConsentSource.API.value, ConsentSource.API.label),
    (ConsentSource.WEB_FORM.value, ConsentSource.WEB_FORM.label),
    (ConsentSource.IMPORT.value, ConsentSource.IMPORT.label),
]
API_ACTIONS = [
    (ConsentAction.OPT_IN.value, ConsentAction.OPT_IN.label),
    (ConsentAction.OPT_OUT.value, ConsentAction.OPT_OUT.label),
]
#: How far ahead of our clock `occurred_at` may be (the caller's clock drifts), and how far back.
OCCURRED_AT_CLOCK_SKEW = timedelta(minutes=5)
OCCURRED_AT_MAX_AGE = timedelta(days=730)


def _inline_choice_field(choices: list[tuple[str, str]], **kwargs) -> serializers.ChoiceField:
    """A choice field documented as an inline enum: the event's `action` and `source` (which allow more
    values) already own those component names in the schema."""

    @extend_schema_field({"type": "string", "enum": [value for value, _ in choices]})
    class InlineChoiceField(serializers.ChoiceField):
        pass

    return InlineChoiceField(choices=choices, **kwargs)


class ConsentCreateSerializer(serializers.Serializer):
    phone_number = serializers.CharField(
        max_length=40,
        help_text="Any common format, e.g. +1 555 012 3456 or (555) 012-3456 (numbers without a country "
        "code read as US). The contact is created if unknown.",
    )
    purpose = serializers.ChoiceField(choices=Purpose.choices)
    action = _inline_choice_field(API_ACTIONS)
    source = _inline_choice_field(
        API_SOURCES,
        default=ConsentSource.API.value,
        help_text="`api` needs `ip_address`; `web_form` needs `ip_address`, `user_agent` and `page_url`; "
        "`import` needs `reason`.",
    )
    consent_text = serializers.CharField(
        required=False,
        max_length=10_000,
        trim_whitespace=False,
        help_text="The exact wording the person saw. Required for `opt_in` unless `consent_text_version` "
        "is given; unseen wording is stored as a new version.",
    )
    consent_text_version = serializers.CharField(
        required=False,
        max_length=64,
        help_text="One of our consent text versions, instead of `consent_text`.",
    )
    ip_address = serializers.IPAddressField(required=False, help_text="The person's IP address (v4 or v6).")
    user_agent = serializers.CharField(required=False, allow_blank=True, max_length=1000)
    page_url = serializers.URLField(
        required=False, max_length=2000, help_text="The page where consent was given."
    )
    reason = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=2000,
        help_text="Why, for `import` (e.g. where the list came from).",
    )
    name = serializers.CharField(
        required=False, allow_blank=True, max_length=256, help_text="The person's name, if known."
    )
    occurred_at = serializers.DateTimeField(
        required=False,
        help_text="When the person acted (default: now). Not in the future, at most two years ago.",
    )

    def validate_phone_number(self, value: str) -> str:
        try:
            directory().contact_for_phone(phone_number=value, create=False)
        except DjangoValidationError as exc:
            raise serializers.ValidationError(exc.messages[0], code="invalid_phone_number") from exc
        return value

    def validate_consent_text(self, value: str) -> str:
        if not value.strip():
            raise serializers.ValidationError("This field may not be blank.", code="blank")
        return value

    def validate_occurred_at(self, value):
        now = timezone.now()
        if value > now + OCCURRED_AT_CLOCK_SKEW:
            raise serializers.ValidationError("occurred_at is in the future.", code="invalid_occurred_at")
        if value < now - OCCURRED_AT_MAX_AGE:
            raise serializers.ValidationError(
                "occurred_at is more than two years ago.", code="invalid_occurred_at"
            )
        return value

    def validate(self, attrs):
        if attrs.get("consent_text") and attrs.get("consent_text_version"):
            raise serializers.ValidationError(
                {"consent_text_version": "Send consent_text or consent_text_version, not both."},
                code="invalid",
            )
        return attrs


class ConsentEvidenceSerializer(serializers.Serializer):
    """The decrypted identifying evidence of an event (null once the person was erased)."""

    phone_number = serializers.CharField()
    name = serializers.CharField()
    ip_address = serializers.CharField()
    user_agent = serializers.CharField()
    page_url = serializers.CharField()
    message_id = serializers.CharField()
    reason = serializers.CharField()
    staff_user_id = serializers.IntegerField(allow_null=True)


class ConsentEventSerializer(serializers.ModelSerializer):
    """One ledger event. Expects `status_after` set on the instance and `subject` loaded; with
    `context={"with_evidence": True}` also `evidence_plain` (then shown as `evidence`)."""

    contact_id = serializers.IntegerField(
        source="subject.contact_id",
        allow_null=True,
        read_only=True,
        help_text="null once the person was erased.",
    )
    status = serializers.ChoiceField(
        source="status_after",
        choices=ConsentStatus.choices,
        allow_null=True,
        read_only=True,
        help_text="The person's consent for this purpose right after this event (for a new event: "
        "their current consent).",
    )
    evidence = ConsentEvidenceSerializer(
        source="evidence_plain",
        allow_null=True,
        required=False,  # not read_only: the schema would then list it as always present
        help_text="The decrypted evidence, in the read endpoints only (which need "
        "compliance.view_consentevent); null once the person was erased.",
    )

    class Meta:
        model = ConsentEvent
        fields = [
            "id",
            "sequence",
            "contact_id",
            "purpose",
            "action",
            "source",
            "awaiting_confirmation",
            "text_version",
            "text_sha256",
            "occurred_at",
            "recorded_at",
            "hash",
            "prev_hash",
            "status",
            "evidence",
        ]
        read_only_fields = fields

    def to_representation(self, instance):
        data = super().to_representation(instance)
        if not self.context.get("with_evidence"):
            data.pop("evidence", None)
        return data


class ApiErrorSerializer(serializers.Serializer):
    """Every refusal: a machine-readable `code`, a human `detail`, and for invalid input `errors`
    (messages per field)."""

    code = serializers.CharField()
    detail = serializers.CharField()
    errors = serializers.DictField(child=serializers.ListField(child=serializers.CharField()), required=False)
