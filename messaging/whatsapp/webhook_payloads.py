"""Builders of webhook bodies in Meta's documented shape (`whatsapp_business_account` envelope with
`entry[].changes[].value`). The simulator posts them; tests use them as fixtures' building blocks."""

import time
from typing import Any

from messaging.whatsapp.base import SenderRef


def envelope(sender: SenderRef, value: dict[str, Any], *, field: str = "messages") -> dict[str, Any]:
    return {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": sender.waba_id or "0",
                "changes": [
                    {
                        "field": field,
                        "value": {
                            "messaging_product": "whatsapp",
                            "metadata": {
                                "display_phone_number": sender.display_phone_number.lstrip("+"),
                                "phone_number_id": sender.phone_number_id,
                            },
                            **value,
                        },
                    }
                ],
            }
        ],
    }


def status_value(
    *,
    wamid: str,
    status: str,
    recipient_wa_id: str,
    timestamp: int | None = None,
    pricing_category: str = "utility",
    callback_data: str | None = None,
) -> dict[str, Any]:
    item: dict[str, Any] = {
        "id": wamid,
        "status": status,
        "timestamp": str(timestamp if timestamp is not None else int(time.time())),
        "recipient_id": recipient_wa_id,
    }
    if status in ("sent", "delivered", "read"):
        item["pricing"] = {
            "billable": True,
            "pricing_model": "PMP",
            "type": "regular",
            "category": pricing_category,
        }
    if callback_data:
        item["biz_opaque_callback_data"] = callback_data
    return {"statuses": [item]}


def inbound_text_value(
    *,
    wamid: str,
    from_wa_id: str,
    text: str,
    profile_name: str = "",
    timestamp: int | None = None,
    context_wamid: str | None = None,
) -> dict[str, Any]:
    message: dict[str, Any] = {
        "from": from_wa_id,
        "id": wamid,
        "timestamp": str(timestamp if timestamp is not None else int(time.time())),
        "type": "text",
        "text": {"body": text},
    }
    if context_wamid:
        message["context"] = {"from": "", "id": context_wamid}
    return {
        "contacts": [{"profile": {"name": profile_name}, "wa_id": from_wa_id}],
        "messages": [message],
    }
