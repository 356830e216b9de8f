"""Normalize a stored WhatsApp webhook body into typed events.

Meta's envelope is `{"object": "whatsapp_business_account", "entry": [{"id": WABA, "changes": [{"field":
F, "value": {...}}]}]}`; one POST may batch many entries, changes, statuses and messages. Parsing is
pure (no database) and total: whatever the body holds, `webhook_normalize` returns a list of events and
never raises; a part it cannot read becomes a `ProviderNotice` of kind `unsupported` so it is stored
and shown to staff instead of crashing the batch or vanishing.

Meta's vocabulary is mapped by the dicts at the top; unknown values map to `unknown`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

#: Status values Meta sends for outbound messages; anything else is kept as "unknown".
STATUS_VALUES = {"sent", "delivered", "read", "played", "failed", "deleted", "warning"}

#: Inbound message types we understand; others are stored as "unsupported" with Meta's type kept.
INBOUND_TYPES = {
    "text",
    "image",
    "video",
    "audio",
    "document",
    "sticker",
    "location",
    "contacts",
    "interactive",
    "button",
    "reaction",
    "system",
    "order",
    "unsupported",
    "unknown",
}

TEMPLATE_FIELDS = {
    "message_template_status_update",
    "message_template_quality_update",
    "message_template_components_update",
    "template_category_update",
}

#: Account-level fields Meta sends; each becomes a ProviderNotice with this severity.
ACCOUNT_FIELDS = {
    "account_alerts": "warning",
    "account_update": "warning",
    "account_review_update": "info",
    "phone_number_quality_update": "warning",
    "phone_number_name_update": "info",
    "business_capability_update": "info",
    "security": "warning",
}


@dataclass(frozen=True)
class Metadata:
    """Which of our business numbers the change is about."""

    waba_id: str = ""
    phone_number_id: str = ""
    display_phone_number: str = ""


@dataclass(frozen=True)
class MetaError:
    code: str = ""
    title: str = ""
    message: str = ""
    details: str = ""

    @classmethod
    def parse(cls, raw: Any) -> MetaError:
        if not isinstance(raw, dict):
            return cls(title=str(raw)[:255])
        data = raw.get("error_data") if isinstance(raw.get("error_data"), dict) else {}
        return cls(
            code=_text(raw.get("code")),
            title=_text(raw.get("title"))[:255],
            message=_text(raw.get("message")),
            details=_text(data.get("details")),
        )


@dataclass(frozen=True)
class Profile:
    """The `contacts[]` entry Meta sends beside inbound messages and statuses."""

    wa_id: str = ""
    user_id: str = ""  # business-scoped user id (2026), present even when the number is hidden
    username: str = ""
    name: str = ""


@dataclass(frozen=True)
class StatusUpdate:
    """A status of one of our outbound messages."""

    meta: Metadata
    wamid: str
    status: str  # one of STATUS_VALUES or "unknown"
    timestamp: datetime | None
    recipient_id: str = ""
    recipient_user_id: str = ""
    callback_data: str = ""  # biz_opaque_callback_data: our message id
    pricing: dict = field(default_factory=dict)
    conversation: dict = field(default_factory=dict)
    errors: tuple[MetaError, ...] = ()
    raw: dict = field(default_factory=dict)


@dataclass(frozen=True)
class InboundMessage:
    """A message a customer sent us."""

    meta: Metadata
    wamid: str
    type: str  # one of INBOUND_TYPES; Meta's own type name is in raw["type"]
    timestamp: datetime | None
    from_wa_id: str = ""
    from_user_id: str = ""
    profile: Profile | None = None
    errors: tuple[MetaError, ...] = ()
    raw: dict = field(default_factory=dict)

    @property
    def context(self) -> dict:
        context = self.raw.get("context")
        return context if isinstance(context, dict) else {}

    @property
    def body(self) -> dict:
        """The object under the message's type key, e.g. {"body": "hi"} for text."""
        value = self.raw.get(self.raw.get("type", ""))
        return value if isinstance(value, dict) else {}


@dataclass(frozen=True)
class TemplateUpdate:
    """message_template_status_update / _quality_update / _components_update, template_category_update."""

    field: str
    value: dict


@dataclass(frozen=True)
class UserPreference:
    """A customer told Meta to stop (or resume) a kind of message, e.g. marketing."""

    meta: Metadata
    wa_id: str
    category: str  # e.g. marketing_messages
    value: str  # stop | resume | unknown
    timestamp: datetime | None
    user_id: str = ""
    detail: str = ""
    profile: Profile | None = None
    raw: dict = field(default_factory=dict)


@dataclass(frozen=True)
class ProviderNotice:
    """Something staff must see: value-level errors, account alerts, fields we do not handle."""

    kind: str  # Meta's field name, "error" for value-level errors, or "unsupported"
    severity: str  # info | warning | error
    meta: Metadata
    code: str = ""
    title: str = ""
    details: str = ""
    raw: dict = field(default_factory=dict)


WebhookItem = StatusUpdate | InboundMessage | TemplateUpdate | UserPreference | ProviderNotice


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def storable(value: Any) -> Any:
    """Meta's strings as PostgreSQL can hold them: no NUL characters, no lone surrogates (valid JSON
    escapes both; text and jsonb columns refuse them). Non-finite numbers become text for jsonb."""
    if isinstance(value, str):
        return value.replace("\x00", "").encode("utf-8", "replace").decode("utf-8")
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {storable(key): storable(item) for key, item in value.items()}
    if isinstance(value, list):
        return [storable(item) for item in value]
    return value


def parse_timestamp(value: Any) -> datetime | None:
    """Meta sends Unix seconds, as a string or a number. Anything else: None (the caller falls back to
    the time the webhook was received)."""
    try:
        seconds = int(str(value).strip())
        return datetime.fromtimestamp(seconds, tz=UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return None


def _metadata(waba_id: str, value: dict) -> Metadata:
    meta = value.get("metadata") if isinstance(value.get("metadata"), dict) else {}
    return Metadata(
        waba_id=waba_id,
        phone_number_id=_text(meta.get("phone_number_id")),
        display_phone_number=_text(meta.get("display_phone_number")),
    )


def _profiles(value: dict) -> dict[str, Profile]:
    """contacts[] keyed by wa_id and by user_id, so messages can find their sender's profile."""
    found: dict[str, Profile] = {}
    for raw in value.get("contacts") or []:
        if not isinstance(raw, dict):
            continue
        profile_raw = raw.get("profile") if isinstance(raw.get("profile"), dict) else {}
        profile = Profile(
            wa_id=_text(raw.get("wa_id")),
            user_id=_text(raw.get("user_id")),
            username=_text(profile_raw.get("username") or raw.get("username")),
            name=_text(profile_raw.get("name")),
        )
        for key in (profile.wa_id, profile.user_id):
            if key:
                found[key] = profile
    return found


def _errors(raw: Any) -> tuple[MetaError, ...]:
    return tuple(MetaError.parse(item) for item in raw) if isinstance(raw, list) else ()


def _unsupported(meta: Metadata, what: str, raw: Any) -> ProviderNotice:
    return ProviderNotice(
        kind="unsupported",
        severity="info",
        meta=meta,
        title=what[:255],
        raw=raw if isinstance(raw, dict) else {"value": raw},
    )


def _status(meta: Metadata, raw: Any) -> StatusUpdate | ProviderNotice:
    if not isinstance(raw, dict) or not raw.get("id"):
        return _unsupported(meta, "status without a message id", raw)
    status = _text(raw.get("status")).lower()
    return StatusUpdate(
        meta=meta,
        wamid=_text(raw["id"]),
        status=status if status in STATUS_VALUES else "unknown",
        timestamp=parse_timestamp(raw.get("timestamp")),
        recipient_id=_text(raw.get("recipient_id")),
        recipient_user_id=_text(raw.get("recipient_user_id")),
        callback_data=_text(raw.get("biz_opaque_callback_data")),
        pricing=raw["pricing"] if isinstance(raw.get("pricing"), dict) else {},
        conversation=raw["conversation"] if isinstance(raw.get("conversation"), dict) else {},
        errors=_errors(raw.get("errors")),
        raw=raw,
    )


def _message(meta: Metadata, raw: Any, profiles: dict[str, Profile]) -> InboundMessage | ProviderNotice:
    if not isinstance(raw, dict) or not raw.get("id"):
        return _unsupported(meta, "inbound message without an id", raw)
    from_wa_id = _text(raw.get("from"))
    from_user_id = _text(raw.get("from_user_id"))
    kind = _text(raw.get("type")).lower()
    return InboundMessage(
        meta=meta,
        wamid=_text(raw["id"]),
        type=kind if kind in INBOUND_TYPES else "unsupported",
        timestamp=parse_timestamp(raw.get("timestamp")),
        from_wa_id=from_wa_id,
        from_user_id=from_user_id,
        profile=profiles.get(from_wa_id) or profiles.get(from_user_id),
        errors=_errors(raw.get("errors")),
        raw=raw,
    )


def _messages_change(meta: Metadata, value: dict) -> list[WebhookItem]:
    items: list[WebhookItem] = []
    profiles = _profiles(value)
    for raw in value.get("statuses") or []:
        items.append(_status(meta, raw))
    for raw in value.get("messages") or []:
        items.append(_message(meta, raw, profiles))
    for error in _errors(value.get("errors")):
        items.append(
            ProviderNotice(
                kind="error",
                severity="error",
                meta=meta,
                code=error.code,
                title=error.title or error.message,
                details=error.details,
                raw={"errors": value.get("errors")},
            )
        )
    return items


def _user_preferences(meta: Metadata, value: dict) -> list[WebhookItem]:
    items: list[WebhookItem] = []
    profiles = _profiles(value)
    for raw in value.get("user_preferences") or []:
        if not isinstance(raw, dict) or not (raw.get("wa_id") or raw.get("user_id")):
            items.append(_unsupported(meta, "user preference without a wa_id", raw))
            continue
        wa_id, user_id = _text(raw.get("wa_id")), _text(raw.get("user_id"))
        choice = _text(raw.get("value")).lower()
        items.append(
            UserPreference(
                meta=meta,
                wa_id=wa_id,
                user_id=user_id,
                category=_text(raw.get("category")),
                value=choice if choice in {"stop", "resume"} else "unknown",
                timestamp=parse_timestamp(raw.get("timestamp")),
                detail=_text(raw.get("detail")),
                profile=profiles.get(wa_id) or profiles.get(user_id),
                raw=raw,
            )
        )
    return items


def _change(waba_id: str, change: Any) -> list[WebhookItem]:
    if not isinstance(change, dict) or not isinstance(change.get("value"), dict):
        return [_unsupported(Metadata(waba_id=waba_id), "change without a value object", change)]
    name, value = _text(change.get("field")), change["value"]
    meta = _metadata(waba_id, value)
    if name == "messages":
        return _messages_change(meta, value)
    if name in TEMPLATE_FIELDS:
        return [TemplateUpdate(field=name, value=value)]
    if name == "user_preferences":
        return _user_preferences(meta, value)
    if name in ACCOUNT_FIELDS:
        return [
            ProviderNotice(
                kind=name,
                severity=ACCOUNT_FIELDS[name],
                meta=meta,
                code=_text(value.get("event") or value.get("alert_type") or value.get("current_limit")),
                title=_text(
                    value.get("alert_description")
                    or value.get("event")
                    or value.get("decision")
                    or value.get("display_phone_number")
                )[:255],
                details=_text(value.get("alert_status") or value.get("reason") or value.get("ban_info")),
                raw=value,
            )
        ]
    return [_unsupported(meta, f"webhook field {name or '(none)'!r} is not handled", change)]


def webhook_normalize(body: Any) -> list[WebhookItem]:
    """Every status, message, template update, preference and notice in one webhook body, in order."""
    if not isinstance(body, dict) or not isinstance(body.get("entry"), list):
        return [_unsupported(Metadata(), "not a WhatsApp Business Account envelope", body)]
    items: list[WebhookItem] = []
    for entry in body["entry"]:
        if not isinstance(entry, dict) or not isinstance(entry.get("changes"), list):
            items.append(_unsupported(Metadata(), "entry without changes", entry))
            continue
        waba_id = _text(entry.get("id"))
        for change in entry["changes"]:
            items.extend(_change(waba_id, change))
    return items
