from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import serializers

from messaging.models import Contact
from messaging.phone import phone_normalize


class TagNamesField(serializers.ListField):
    """Tags as a list of names; unknown names are created (as slugs) when a contact is saved."""

    child = serializers.CharField(max_length=64)

    def to_representation(self, value) -> list[str]:
        return [tag.name for tag in value.all()]


class ContactSerializer(serializers.ModelSerializer):
    phone_number = serializers.CharField(
        max_length=40, help_text="Any common format; stored as E.164 (numbers without +1 read as US)."
    )
    tags = TagNamesField(required=False)

    class Meta:
        model = Contact
        fields = [
            "id",
            "phone_number",
            "wa_id",
            "user_id",
            "username",
            "profile_name",
            "locale",
            "timezone",
            "tags",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["id", "created_at", "updated_at"]

    def validate_phone_number(self, value: str) -> str:
        try:
            return phone_normalize(value)
        except DjangoValidationError as exc:
            raise serializers.ValidationError(exc.messages[0], code="invalid_phone_number") from exc
