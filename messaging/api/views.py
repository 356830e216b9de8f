from django.core.exceptions import ValidationError as DjangoValidationError
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import mixins, serializers, viewsets
from rest_framework.exceptions import ValidationError

from messaging import selectors, services
from messaging.api.serializers import ContactSerializer


def _as_api_validation_error(exc: DjangoValidationError) -> ValidationError:
    if hasattr(exc, "error_dict"):
        return ValidationError(
            {
                field: [
                    serializers.ErrorDetail(e.message % (e.params or {}), code=e.code or "invalid")
                    for e in errors
                ]
                for field, errors in exc.error_dict.items()
            }
        )
    return ValidationError([serializers.ErrorDetail(m, code="invalid") for m in exc.messages])


@extend_schema_view(
    list=extend_schema(
        parameters=[
            OpenApiParameter("phone_number", OpenApiTypes.STR, description="Any format; matched as E.164."),
            OpenApiParameter("tag", OpenApiTypes.STR, description="Only contacts with this tag."),
        ]
    )
)
class ContactViewSet(
    mixins.ListModelMixin,
    mixins.CreateModelMixin,
    mixins.RetrieveModelMixin,
    mixins.UpdateModelMixin,
    viewsets.GenericViewSet,
):
    """Contacts: list (filter by `phone_number`, `tag`), create, retrieve, update. Creating a contact
    never grants consent."""

    serializer_class = ContactSerializer

    def get_queryset(self):
        params = self.request.query_params
        try:
            return selectors.contact_list(phone_number=params.get("phone_number"), tag=params.get("tag"))
        except DjangoValidationError as exc:
            raise ValidationError({"phone_number": exc.messages}, code="invalid_phone_number") from exc

    def perform_create(self, serializer: ContactSerializer) -> None:
        try:
            serializer.instance = services.contact_create(**serializer.validated_data)
        except DjangoValidationError as exc:
            raise _as_api_validation_error(exc) from exc

    def handle_exception(self, exc):
        response = super().handle_exception(exc)
        # A number erased at its owner's request is refused as such: clients branch on `code`.
        codes = exc.get_codes() if isinstance(exc, ValidationError) else None
        if isinstance(codes, dict) and "suppressed" in codes.get("phone_number", ()):
            response.data["code"] = "suppressed"
        return response

    def perform_update(self, serializer: ContactSerializer) -> None:
        try:
            serializer.instance = services.contact_update(
                contact=serializer.instance, **serializer.validated_data
            )
        except DjangoValidationError as exc:
            raise _as_api_validation_error(exc) from exc
