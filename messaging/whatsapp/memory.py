"""An in-memory backend for tests: every send lands in `outbox`; responses and failures can be
scripted in advance with `script(...)`."""

import itertools
import threading
from typing import Any

from messaging.whatsapp.base import SenderRef, WhatsAppBackend
from messaging.whatsapp.errors import WhatsAppApiError, WhatsAppError

_counter = itertools.count(1)


class MemoryBackend(WhatsAppBackend):
    name = "memory"
    # Shared by every instance in the process so a test can inspect what the code under test sent.
    outbox: list[dict[str, Any]] = []
    templates: dict[str, list[dict[str, Any]]] = {}
    _scripted: list[dict[str, Any] | WhatsAppError] = []
    _lock = threading.Lock()

    @classmethod
    def reset(cls) -> None:
        with cls._lock:
            cls.outbox.clear()
            cls.templates.clear()
            cls._scripted.clear()

    @classmethod
    def script(cls, *outcomes: dict[str, Any] | WhatsAppError) -> None:
        """Queue what the next sends return: a response body (dict) or an error to raise."""
        with cls._lock:
            cls._scripted.extend(outcomes)

    def _post_message(self, sender: SenderRef, payload: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            self.outbox.append({"phone_number_id": sender.phone_number_id, "payload": payload})
            outcome = self._scripted.pop(0) if self._scripted else None
        if isinstance(outcome, WhatsAppError):
            raise outcome
        if outcome is not None:
            return outcome
        return {
            "messaging_product": "whatsapp",
            "contacts": [{"input": payload["to"], "wa_id": payload["to"]}],
            "messages": [{"id": f"wamid.MEMORY{next(_counter):012d}", "message_status": "accepted"}],
        }

    def _get_templates_page(self, waba_id: str, *, after: str | None, limit: int) -> dict[str, Any]:
        items = self.templates.get(waba_id, [])
        start = int(after) if after else 0
        page = items[start : start + limit]
        paging: dict[str, Any] = {"cursors": {"before": str(start), "after": str(start + len(page))}}
        if start + len(page) < len(items):
            paging["next"] = f"memory://{waba_id}/message_templates?after={start + len(page)}"
        return {"data": page, "paging": paging}

    def _post_template(self, waba_id: str, definition: dict[str, Any]) -> dict[str, Any]:
        template = {**definition, "id": str(next(_counter)), "status": "PENDING"}
        with self._lock:
            self.templates.setdefault(waba_id, []).append(template)
        return {"id": template["id"], "status": "PENDING", "category": definition.get("category", "")}

    def _post_template_edit(self, template_id: str, payload: dict[str, Any]) -> dict[str, Any]:
        """Like Meta: the stored template takes the new content and goes back to review."""
        with self._lock:
            for templates in self.templates.values():
                for template in templates:
                    if template.get("id") == template_id:
                        template.update({k: v for k, v in payload.items() if k in ("category", "components")})
                        template["status"] = "PENDING"
                        return {"success": True}
        raise WhatsAppApiError(
            message=f"Unsupported post request. Object with ID '{template_id}' does not exist",
            code=100,
            http_status=400,
        )
