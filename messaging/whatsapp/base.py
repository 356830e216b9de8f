"""The provider interface. `WhatsAppBackend` owns the algorithms (build Meta's request → hand it to
the provider → parse the answer → raise typed errors; page through templates); each backend fills
the small `_post_message`, `_get_templates_page`, `_post_template` and `_post_template_edit` hooks.
"""

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from messaging.whatsapp.errors import WhatsAppApiError

#: Message types Meta's Cloud API accepts in `POST /{phone-number-id}/messages`.
MESSAGE_TYPES = frozenset(
    {
        "text",
        "image",
        "video",
        "audio",
        "document",
        "sticker",
        "location",
        "contacts",
        "template",
        "interactive",
        "reaction",
    }
)


@dataclass(frozen=True)
class SenderRef:
    """The business number a request goes out from (see messaging.models.Sender)."""

    phone_number_id: str
    display_phone_number: str = ""
    waba_id: str = ""


@dataclass(frozen=True)
class OutgoingMessage:
    """One message in provider-neutral form. `content` is the object Meta expects under the key
    named by `type` (e.g. `{"body": "Hi", "preview_url": False}` for text)."""

    to: str  # E.164, e.g. "+15550123456"
    type: str
    content: dict[str, Any]
    reply_to: str | None = None  # wamid of the message this one answers
    callback_data: str | None = None  # echoed back by Meta in status webhooks (biz_opaque_callback_data)

    def __post_init__(self) -> None:
        if self.type not in MESSAGE_TYPES:
            raise ValueError(f"Unknown WhatsApp message type {self.type!r}")


@dataclass(frozen=True)
class SendResult:
    provider_message_id: str  # Meta's wamid
    wa_id: str = ""  # the recipient's WhatsApp id as Meta resolved it
    message_status: str = ""  # "accepted", "held_for_quality_assessment", ...
    raw: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TemplatePage:
    templates: list[dict[str, Any]]
    after: str | None  # cursor of the next page, None on the last one


class WhatsAppBackend:
    """Base class of every provider backend. Subclasses implement the `_hooks`."""

    name = "base"

    def __init__(self, **options: Any) -> None:
        self.options = options

    # --- Messages ---------------------------------------------------------------------------------

    def message_endpoint(self, sender: SenderRef) -> str:
        """Where `send` posts, for the delivery log."""
        return f"{self.name}://{sender.phone_number_id}/messages"

    def send(self, *, sender: SenderRef, message: OutgoingMessage) -> SendResult:
        """Send one message; return Meta's id for it or raise a WhatsAppError subclass."""
        payload = self.build_message_payload(message)
        body = self._post_message(sender, payload)
        return self.parse_send_response(body)

    @staticmethod
    def build_message_payload(message: OutgoingMessage) -> dict[str, Any]:
        """The exact JSON body of Meta's `POST /{phone-number-id}/messages`."""
        payload: dict[str, Any] = {
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": message.to.lstrip("+"),
            "type": message.type,
            message.type: message.content,
        }
        if message.reply_to:
            payload["context"] = {"message_id": message.reply_to}
        if message.callback_data:
            payload["biz_opaque_callback_data"] = message.callback_data
        return payload

    @staticmethod
    def parse_send_response(body: Any) -> SendResult:
        """Meta answers `{"messaging_product", "contacts": [{"input", "wa_id"}], "messages": [{"id"}]}`."""
        try:
            message = body["messages"][0]
            provider_message_id = str(message["id"])
        except (KeyError, IndexError, TypeError):
            raise WhatsAppApiError(
                message="The send response carried no message id", code=None, raw={"body": body}
            ) from None
        contacts = body.get("contacts") or [{}]
        return SendResult(
            provider_message_id=provider_message_id,
            wa_id=str(contacts[0].get("wa_id", "")),
            message_status=str(message.get("message_status", "")),
            raw=body,
        )

    # --- Templates (Business Management API) ------------------------------------------------------

    def list_templates(self, *, waba_id: str, after: str | None = None, limit: int = 100) -> TemplatePage:
        body = self._get_templates_page(waba_id, after=after, limit=limit)
        cursors = (body.get("paging") or {}).get("cursors") or {}
        has_next = bool((body.get("paging") or {}).get("next"))
        return TemplatePage(
            templates=list(body.get("data") or []), after=cursors.get("after") if has_next else None
        )

    def iter_templates(self, *, waba_id: str, limit: int = 100) -> Iterator[dict[str, Any]]:
        """Every template of the business account, following Meta's paging cursors."""
        after: str | None = None
        while True:
            page = self.list_templates(waba_id=waba_id, after=after, limit=limit)
            yield from page.templates
            if not page.after or page.after == after:
                return
            after = page.after

    def create_template(self, *, waba_id: str, definition: dict[str, Any]) -> dict[str, Any]:
        """Submit a template for review; Meta answers `{"id", "status", "category"}`."""
        return self._post_template(waba_id, definition)

    def edit_template(self, *, template_id: str, payload: dict[str, Any]) -> dict[str, Any]:
        """Edit a template Meta holds (`POST /{message-template-id}` with `category` and `components`);
        Meta answers `{"success": true}` and reviews the new version. Name and language cannot change."""
        body = self._post_template_edit(template_id, payload)
        if body.get("success") is not True:
            raise WhatsAppApiError(
                message="Meta did not confirm the template edit", code=None, raw={"body": body}
            )
        return body

    # --- Hooks ------------------------------------------------------------------------------------

    def _post_message(self, sender: SenderRef, payload: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    def _get_templates_page(self, waba_id: str, *, after: str | None, limit: int) -> dict[str, Any]:
        raise NotImplementedError

    def _post_template(self, waba_id: str, definition: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    def _post_template_edit(self, template_id: str, payload: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    def close(self) -> None:
        """Release pooled connections (tests and worker shutdown)."""
