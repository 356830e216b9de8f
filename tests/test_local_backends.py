"""Backend selection and the backends that never leave the process (memory, console)."""

from io import StringIO

import pytest

from messaging.whatsapp import (
    ErrorAction,
    OutgoingMessage,
    SenderRef,
    WhatsAppApiError,
    backend_create,
    get_backend,
)
from messaging.whatsapp.console import ConsoleBackend
from messaging.whatsapp.memory import MemoryBackend

SENDER = SenderRef(phone_number_id="100200300400500")
HELLO = OutgoingMessage(to="+15550123456", type="text", content={"body": "Hello", "preview_url": False})


def test_backend_is_chosen_by_alias_or_dotted_path(settings):
    assert isinstance(backend_create("memory"), MemoryBackend)
    assert isinstance(backend_create("messaging.whatsapp.console.ConsoleBackend"), ConsoleBackend)
    settings.WHATSAPP = {**settings.WHATSAPP, "BACKEND": "memory"}
    assert get_backend() is get_backend()  # one pooled instance per process


def test_unknown_message_types_are_refused_before_anything_is_sent():
    with pytest.raises(ValueError, match="Unknown WhatsApp message type"):
        OutgoingMessage(to="+15550123456", type="fax", content={})


def test_memory_backend_records_the_exact_meta_request():
    result = backend_create("memory").send(sender=SENDER, message=HELLO)
    assert result.provider_message_id.startswith("wamid.")
    assert MemoryBackend.outbox == [
        {
            "phone_number_id": "100200300400500",
            "payload": {
                "messaging_product": "whatsapp",
                "recipient_type": "individual",
                "to": "15550123456",
                "type": "text",
                "text": {"body": "Hello", "preview_url": False},
            },
        }
    ]


def test_memory_backend_plays_scripted_failures_then_recovers():
    MemoryBackend.script(WhatsAppApiError(message="Re-engagement message", code=131047, http_status=400))
    backend = backend_create("memory")
    with pytest.raises(WhatsAppApiError) as excinfo:
        backend.send(sender=SENDER, message=HELLO)
    assert excinfo.value.action is ErrorAction.NEEDS_TEMPLATE
    assert backend.send(sender=SENDER, message=HELLO).provider_message_id
    assert len(MemoryBackend.outbox) == 2


def test_memory_backend_pages_templates_like_meta():
    backend = backend_create("memory")
    for n in range(5):
        backend.create_template(
            waba_id="w", definition={"name": f"t{n}", "language": "en_US", "category": "UTILITY"}
        )
    assert [t["name"] for t in backend.iter_templates(waba_id="w", limit=2)] == ["t0", "t1", "t2", "t3", "t4"]


def test_console_backend_prints_the_request():
    stream = StringIO()
    result = backend_create("console", stream=stream).send(sender=SENDER, message=HELLO)
    assert result.provider_message_id.startswith("wamid.")
    assert '"body": "Hello"' in stream.getvalue()
    assert MemoryBackend.outbox == []
