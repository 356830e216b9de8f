"""A stand-in for Meta used by `make run`: it accepts sends, answers with `wamid.` ids and, like Meta,
later posts signed status webhooks (sent → delivered → read) to the app's own webhook endpoint. It can
also play a customer writing in (`simulate_reply`). Submitted and edited templates are approved a moment
later by a `message_template_status_update` webhook, as Meta's review would. The whole loop runs with no
Meta account."""

import base64
import json
import logging
import secrets
import threading
import time
from typing import Any

import requests

from messaging.whatsapp import webhook_payloads
from messaging.whatsapp.base import SenderRef
from messaging.whatsapp.memory import MemoryBackend
from messaging.whatsapp.signatures import SIGNATURE_HEADER, webhook_signature

logger = logging.getLogger(__name__)

STATUS_SEQUENCE = ("sent", "delivered", "read")


def new_wamid() -> str:
    return "wamid." + base64.b64encode(b"SIM" + secrets.token_bytes(24)).decode().rstrip("=")


class SimulatorBackend(MemoryBackend):
    name = "simulator"

    def __init__(
        self, *, webhook_url: str, app_secret: str, status_delay: float = 1.0, **options: Any
    ) -> None:
        super().__init__(**options)
        self.webhook_url = webhook_url
        self.app_secret = app_secret
        self.status_delay = status_delay
        self._timers: list[threading.Timer] = []
        self._http = requests.Session()

    def _post_message(self, sender: SenderRef, payload: dict[str, Any]) -> dict[str, Any]:
        wamid = new_wamid()
        recipient = payload["to"]
        for step, status in enumerate(STATUS_SEQUENCE, start=1):
            value = webhook_payloads.status_value(
                wamid=wamid,
                status=status,
                recipient_wa_id=recipient,
                callback_data=payload.get("biz_opaque_callback_data"),
            )
            self._schedule(self.status_delay * step, webhook_payloads.envelope(sender, value))
        return {
            "messaging_product": "whatsapp",
            "contacts": [{"input": recipient, "wa_id": recipient}],
            "messages": [{"id": wamid, "message_status": "accepted"}],
        }

    def _post_template(self, waba_id: str, definition: dict[str, Any]) -> dict[str, Any]:
        answer = super()._post_template(waba_id, definition)
        self._schedule_template_review(waba_id, answer["id"], definition)
        return answer

    def _post_template_edit(self, template_id: str, payload: dict[str, Any]) -> dict[str, Any]:
        answer = super()._post_template_edit(template_id, payload)
        for waba_id, templates in self.templates.items():
            stored = next((t for t in templates if t.get("id") == template_id), None)
            if stored is not None:
                self._schedule_template_review(waba_id, template_id, stored)
        return answer

    def _schedule_template_review(self, waba_id: str, template_id: str, template: dict[str, Any]) -> None:
        """Meta's verdict on a submitted template: always APPROVED here, after a few status delays."""
        body = {
            "object": "whatsapp_business_account",
            "entry": [
                {
                    "id": waba_id,
                    "time": int(time.time()),
                    "changes": [
                        {
                            "field": "message_template_status_update",
                            "value": {
                                "event": "APPROVED",
                                "message_template_id": int(template_id),
                                "message_template_name": template.get("name", ""),
                                "message_template_language": template.get("language", ""),
                                "reason": "NONE",
                            },
                        }
                    ],
                }
            ],
        }
        self._schedule(self.status_delay * 3, body)

    def simulate_reply(
        self,
        *,
        sender: SenderRef,
        from_wa_id: str,
        text: str,
        profile_name: str = "",
        context_wamid: str | None = None,
        delay: float = 0.0,
    ) -> str:
        """Post an inbound text message from a customer; returns its wamid."""
        wamid = new_wamid()
        value = webhook_payloads.inbound_text_value(
            wamid=wamid,
            from_wa_id=from_wa_id.lstrip("+"),
            text=text,
            profile_name=profile_name,
            context_wamid=context_wamid,
        )
        self._schedule(delay, webhook_payloads.envelope(sender, value))
        return wamid

    def wait_for_webhooks(self, timeout: float = 10.0) -> None:
        """Block until every scheduled webhook has been posted (tests, management commands)."""
        for timer in list(self._timers):
            timer.join(timeout)

    def _schedule(self, delay: float, body: dict[str, Any]) -> None:
        timer = threading.Timer(delay, self._post_webhook, args=(body,))
        timer.daemon = True
        self._timers = [t for t in self._timers if t.is_alive()] + [timer]
        timer.start()

    def _post_webhook(self, body: dict[str, Any]) -> None:
        raw = json.dumps(body, separators=(",", ":")).encode()
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: webhook_signature(raw, self.app_secret),
        }
        try:
            response = self._http.post(self.webhook_url, data=raw, headers=headers, timeout=10)
            if response.status_code >= 300:
                logger.warning(
                    "Simulator webhook to %s answered HTTP %s", self.webhook_url, response.status_code
                )
        except requests.RequestException as exc:
            logger.warning("Simulator could not post a webhook to %s: %s", self.webhook_url, exc)
