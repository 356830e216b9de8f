"""Prints every request instead of sending it: for trying the app without Meta or the simulator."""

import json
import sys
import uuid
from typing import Any

from messaging.whatsapp.base import SenderRef
from messaging.whatsapp.memory import MemoryBackend


class ConsoleBackend(MemoryBackend):
    name = "console"

    def _post_message(self, sender: SenderRef, payload: dict[str, Any]) -> dict[str, Any]:
        stream = self.options.get("stream") or sys.stdout
        stream.write(f"--- WhatsApp message from {sender.phone_number_id} ---\n")
        stream.write(json.dumps(payload, indent=2, ensure_ascii=False) + "\n")
        stream.flush()
        return {
            "messaging_product": "whatsapp",
            "contacts": [{"input": payload["to"], "wa_id": payload["to"]}],
            "messages": [{"id": f"wamid.CONSOLE{uuid.uuid4().hex}"}],
        }
