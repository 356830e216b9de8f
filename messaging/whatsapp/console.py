"""Prints every request instead of sending it: for trying the app without Meta or the simulator."""

import json
import sys
import uuid
from typing import Any

from messaging.whatsapp.base import SenderRef
from messaging.whatsapp.memory import MemoryBackend


class ConsoleBackend(MemoryBackend):
    name = "console"

    def _print(self, title: str, payload: dict[str, Any]) -> None:
        stream = self.options.get("stream") or sys.stdout
        stream.write(f"--- {title} ---\n")
        stream.write(json.dumps(payload, indent=2, ensure_ascii=False) + "\n")
        stream.flush()

    def _post_message(self, sender: SenderRef, payload: dict[str, Any]) -> dict[str, Any]:
        self._print(f"WhatsApp message from {sender.phone_number_id}", payload)
        return {
            "messaging_product": "whatsapp",
            "contacts": [{"input": payload["to"], "wa_id": payload["to"]}],
            "messages": [{"id": f"wamid.CONSOLE{uuid.uuid4().hex}"}],
        }

    # Templates are kept in memory (so sync finds them) and printed, like messages.

    def _post_template(self, waba_id: str, definition: dict[str, Any]) -> dict[str, Any]:
        self._print(f"Template submitted for business account {waba_id}", definition)
        return super()._post_template(waba_id, definition)

    def _post_template_edit(self, template_id: str, payload: dict[str, Any]) -> dict[str, Any]:
        self._print(f"Edit of template {template_id}", payload)
        return super()._post_template_edit(template_id, payload)
