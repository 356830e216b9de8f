"""Reading Django's ValidationError, which holds either a dict of field → errors or a flat list."""

from django.core.exceptions import ValidationError


def validation_errors(exc: ValidationError) -> list[tuple[str | None, ValidationError]]:
    """Every single error in `exc`, with the field it is about (None: the input as a whole)."""
    if hasattr(exc, "error_dict"):
        return [(field, error) for field, errors in exc.error_dict.items() for error in errors]
    return [(None, error) for error in exc.error_list]


def validation_error_codes(exc: ValidationError) -> set[str]:
    return {error.code for _, error in validation_errors(exc) if error.code}
