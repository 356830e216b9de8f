"""The development backends (memory, console, simulator) handle templates the way Meta does, so the
submit → edit → review loop works with no Meta account."""

import io

import pytest

from messaging.whatsapp import WhatsAppApiError
from messaging.whatsapp.console import ConsoleBackend
from messaging.whatsapp.memory import MemoryBackend
from messaging.whatsapp.simulator import SimulatorBackend

WABA = "102290129340398"
DEFINITION = {
    "name": "order_shipped",
    "language": "en_US",
    "category": "UTILITY",
    "components": [{"type": "BODY", "text": "Your order ships today."}],
}
EDITED = [{"type": "BODY", "text": "Your order left our warehouse."}]


def test_memory_backend_edits_a_template_in_place_and_puts_it_back_in_review():
    backend = MemoryBackend()
    created = backend.create_template(waba_id=WABA, definition=DEFINITION)
    MemoryBackend.templates[WABA][0]["status"] = "REJECTED"

    assert backend.edit_template(template_id=created["id"], payload={"components": EDITED}) == {
        "success": True
    }

    (stored,) = list(backend.iter_templates(waba_id=WABA))
    assert (stored["id"], stored["status"], stored["components"]) == (created["id"], "PENDING", EDITED)


def test_memory_backend_refuses_to_edit_an_unknown_template():
    with pytest.raises(WhatsAppApiError) as excinfo:
        MemoryBackend().edit_template(template_id="404", payload={"components": EDITED})
    assert excinfo.value.code == 100 and "'404' does not exist" in str(excinfo.value)


def test_console_backend_prints_template_requests():
    stream = io.StringIO()
    backend = ConsoleBackend(stream=stream)

    created = backend.create_template(waba_id=WABA, definition=DEFINITION)
    backend.edit_template(template_id=created["id"], payload={"components": EDITED})

    printed = stream.getvalue()
    assert f"--- Template submitted for business account {WABA} ---" in printed
    assert f"--- Edit of template {created['id']} ---" in printed
    assert "Your order left our warehouse." in printed


def test_simulator_approves_submitted_and_edited_templates_by_webhook():
    backend = SimulatorBackend(webhook_url="http://127.0.0.1:9/webhook", app_secret="s", status_delay=0)
    posted = []
    backend._post_webhook = posted.append  # capture instead of posting to the app

    created = backend.create_template(waba_id=WABA, definition=DEFINITION)
    backend.edit_template(template_id=created["id"], payload={"components": EDITED})
    backend.wait_for_webhooks()

    assert len(posted) == 2
    for body in posted:
        (entry,) = body["entry"]
        (change,) = entry["changes"]
        assert (body["object"], entry["id"], change["field"]) == (
            "whatsapp_business_account",
            WABA,
            "message_template_status_update",
        )
        assert change["value"] == {
            "event": "APPROVED",
            "message_template_id": int(created["id"]),
            "message_template_name": "order_shipped",
            "message_template_language": "en_US",
            "reason": "NONE",
        }
