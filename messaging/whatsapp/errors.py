"""Typed errors from WhatsApp providers, each carrying what the sending pipeline should do next.

Meta's Graph API answers errors as
`{"error": {"message", "type", "code", "error_subcode", "error_data": {"details"}, "fbtrace_id"}}`.
The code decides the action; the tables below are the single place that maps Meta's vocabulary to ours
(codes from Meta's "Cloud API error codes" reference). Unknown codes fall back on the HTTP status.
"""

import enum
from typing import Any


class ErrorAction(enum.StrEnum):
    RETRY = "retry"  # transient: try the same request again with backoff
    DEFER = "defer"  # the recipient or pair is rate limited: try much later
    NEEDS_TEMPLATE = "needs_template"  # outside the 24-hour window: only a template can reach them
    PERMANENT = "permanent"  # this message will never go through as it is
    AUTH = "auth"  # our credentials or account are broken: stop sending and alert staff


_ACTION_BY_CODE: dict[int, ErrorAction] = {
    # Authorization and account problems.
    0: ErrorAction.AUTH,  # AuthException
    3: ErrorAction.AUTH,  # API method capability
    10: ErrorAction.AUTH,  # permission denied
    190: ErrorAction.AUTH,  # access token expired or invalid
    131031: ErrorAction.AUTH,  # business account locked
    131042: ErrorAction.AUTH,  # business eligibility / payment issue
    131045: ErrorAction.AUTH,  # phone number not registered (certificate)
    133010: ErrorAction.AUTH,  # phone number not registered with the Cloud API
    # Transient: Meta or the network had a problem, or we were throttled as a whole.
    1: ErrorAction.RETRY,  # API unknown
    2: ErrorAction.RETRY,  # API service temporarily unavailable
    4: ErrorAction.RETRY,  # application request limit reached
    80007: ErrorAction.RETRY,  # WABA rate limit hit
    130429: ErrorAction.RETRY,  # Cloud API throughput reached
    131000: ErrorAction.RETRY,  # something went wrong
    131016: ErrorAction.RETRY,  # service unavailable
    133004: ErrorAction.RETRY,  # server temporarily unavailable
    131056: ErrorAction.RETRY,  # pair rate limit: back off for this recipient, then retry
    # Limited for a while (spam limits, a paused template): much later, not in a tight backoff loop.
    368: ErrorAction.DEFER,  # temporarily blocked for policy violations
    131048: ErrorAction.DEFER,  # spam rate limit hit
    131049: ErrorAction.DEFER,  # not delivered to maintain healthy ecosystem engagement
    132015: ErrorAction.DEFER,  # template paused for low quality: Meta un-pauses it after a while
    # The customer has not written in the last 24 hours.
    131047: ErrorAction.NEEDS_TEMPLATE,  # re-engagement message
    # Everything about the message or recipient itself.
    100: ErrorAction.PERMANENT,  # invalid parameter
    131008: ErrorAction.PERMANENT,  # required parameter missing
    131009: ErrorAction.PERMANENT,  # parameter value invalid
    131021: ErrorAction.PERMANENT,  # recipient cannot be the sender
    131026: ErrorAction.PERMANENT,  # message undeliverable
    131030: ErrorAction.PERMANENT,  # recipient not in the allowed list
    131050: ErrorAction.PERMANENT,  # user stopped marketing messages
    131051: ErrorAction.PERMANENT,  # unsupported message type
    131052: ErrorAction.PERMANENT,  # media download error
    131053: ErrorAction.PERMANENT,  # media upload error
    132000: ErrorAction.PERMANENT,  # template parameter count mismatch
    132001: ErrorAction.PERMANENT,  # template does not exist
    132005: ErrorAction.PERMANENT,  # template hydrated text too long
    132007: ErrorAction.PERMANENT,  # template format character policy violated
    132012: ErrorAction.PERMANENT,  # template parameter format mismatch
    132016: ErrorAction.PERMANENT,  # template is disabled
    135000: ErrorAction.PERMANENT,  # generic user error
}


def classify_error(code: int | None, http_status: int | None) -> ErrorAction:
    if code is not None and code in _ACTION_BY_CODE:
        return _ACTION_BY_CODE[code]
    if code is not None and 200 <= code <= 299:
        return ErrorAction.AUTH  # the 2xx family is Meta's "permission" range
    if http_status is not None and (http_status == 429 or http_status >= 500):
        return ErrorAction.RETRY
    if http_status in (401, 403):
        return ErrorAction.AUTH
    return ErrorAction.PERMANENT


class WhatsAppError(Exception):
    """Base class: anything that stopped a provider call. `action` tells the caller what to do."""

    action: ErrorAction = ErrorAction.PERMANENT

    @property
    def retryable(self) -> bool:
        return self.action in (ErrorAction.RETRY, ErrorAction.DEFER)


class WhatsAppApiError(WhatsAppError):
    """Meta answered with an error body."""

    def __init__(
        self,
        *,
        message: str,
        code: int | None,
        http_status: int | None = None,
        error_type: str = "",
        subcode: int | None = None,
        details: str = "",
        fbtrace_id: str = "",
        raw: dict[str, Any] | None = None,
    ):
        self.message = message
        self.code = code
        self.http_status = http_status
        self.error_type = error_type
        self.subcode = subcode
        self.details = details
        self.fbtrace_id = fbtrace_id
        self.raw = raw or {}
        self.action = classify_error(code, http_status)
        super().__init__(f"({code}) {message}" + (f": {details}" if details else ""))

    @classmethod
    def from_response(cls, http_status: int, body: Any) -> "WhatsAppApiError":
        error = body.get("error") if isinstance(body, dict) else None
        if not isinstance(error, dict):
            return cls(
                message=f"HTTP {http_status} without a Graph API error body",
                code=None,
                http_status=http_status,
                raw=body if isinstance(body, dict) else {"body": str(body)[:2000]},
            )
        error_data = error.get("error_data") if isinstance(error.get("error_data"), dict) else {}
        # The Business Management API explains itself in error_user_msg rather than error_data.
        details = error_data.get("details") or error.get("error_user_msg") or ""
        return cls(
            message=str(error.get("message", "")),
            code=_as_int(error.get("code")),
            http_status=http_status,
            error_type=str(error.get("type", "")),
            subcode=_as_int(error.get("error_subcode")),
            details=str(details),
            fbtrace_id=str(error.get("fbtrace_id", "")),
            raw=body,
        )


class WhatsAppTransportError(WhatsAppError):
    """The request did not complete. `may_have_been_sent` is True when Meta might have accepted it
    (the connection broke after the request went out), so a retry must first reconcile by status."""

    action = ErrorAction.RETRY

    def __init__(self, message: str, *, may_have_been_sent: bool):
        self.may_have_been_sent = may_have_been_sent
        super().__init__(message)


class WhatsAppConfigurationError(WhatsAppError):
    """The backend is missing a setting it needs (token, phone number id, ...)."""

    action = ErrorAction.AUTH


def _as_int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
