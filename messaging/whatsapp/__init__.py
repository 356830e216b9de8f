"""WhatsApp provider backends behind one interface, chosen by `WHATSAPP_BACKEND` like EMAIL_BACKEND:
`cloud`, `simulator`, `console`, `memory`, or the dotted path of a WhatsAppBackend subclass."""

import threading
from typing import Any

from django.conf import settings
from django.utils.module_loading import import_string

from messaging.whatsapp.base import OutgoingMessage, SenderRef, SendResult, WhatsAppBackend
from messaging.whatsapp.errors import (
    ErrorAction,
    WhatsAppApiError,
    WhatsAppConfigurationError,
    WhatsAppError,
    WhatsAppTransportError,
)

__all__ = [
    "ErrorAction",
    "OutgoingMessage",
    "SendResult",
    "SenderRef",
    "WhatsAppApiError",
    "WhatsAppBackend",
    "WhatsAppConfigurationError",
    "WhatsAppError",
    "WhatsAppTransportError",
    "backend_create",
    "get_backend",
]

BACKEND_ALIASES = {
    "cloud": "messaging.whatsapp.cloud.CloudBackend",
    "simulator": "messaging.whatsapp.simulator.SimulatorBackend",
    "console": "messaging.whatsapp.console.ConsoleBackend",
    "memory": "messaging.whatsapp.memory.MemoryBackend",
}

_instances: dict[str, WhatsAppBackend] = {}
_instances_lock = threading.Lock()


def backend_create(name: str | None = None, **overrides: Any) -> WhatsAppBackend:
    """A new backend instance configured from settings.WHATSAPP (overrides win)."""
    config = settings.WHATSAPP
    name = name or config["BACKEND"]
    backend_class = import_string(BACKEND_ALIASES.get(name, name))
    options: dict[str, Any] = {
        "graph_url": config["GRAPH_URL"],
        "api_version": config["API_VERSION"],
        "access_token": config["ACCESS_TOKEN"],
        "connect_timeout": config["CONNECT_TIMEOUT"],
        "read_timeout": config["READ_TIMEOUT"],
        "webhook_url": config["SIMULATOR_WEBHOOK_URL"],
        "app_secret": config["APP_SECRET"],
        "status_delay": config["SIMULATOR_STATUS_DELAY"],
        # One pooled connection per send thread, or connections are thrown away under load.
        "pool_size": settings.WHATSAPP_SEND_THREADS,
        **overrides,
    }
    return backend_class(**options)


def get_backend() -> WhatsAppBackend:
    """The process-wide backend (one pooled HTTP session per process), created on first use."""
    name = settings.WHATSAPP["BACKEND"]
    with _instances_lock:
        if name not in _instances:
            _instances[name] = backend_create(name)
        return _instances[name]
