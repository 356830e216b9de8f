"""A local HTTP double of Meta's Graph API: the WhatsApp Cloud API send endpoint and the Business
Management API template endpoints, answering with the request and response shapes Meta documents.

    with GraphApiDouble(access_token="t") as double:
        backend = CloudBackend(graph_url=double.base_url, api_version="v23.0", access_token="t")
        backend.send(...)
        assert double.requests[0].json["to"] == "15550123456"

Routes (anything else answers 404 with Meta's "Unsupported get request" error):

- `POST /{version}/{phone_number_id}/messages` validates the body like Meta and answers with a
  `wamid.` id, or HTTP 400 with Meta's `(#100)` error and `error_data.details` naming what is wrong.
- `GET /{version}/{waba_id}/message_templates?limit=N&after=CURSOR` pages through the templates
  seeded with `add_template` (opaque cursors; `paging.next` is omitted on the last page).
- `POST /{version}/{waba_id}/message_templates` creates a PENDING template; a duplicate name and
  language answers Meta's code 100 / subcode 2388024.
- `POST /{version}/{message_template_id}` edits a template like Meta's "Edit template": only
  `category` and `components` change (name and language must stay as they are), the template goes back
  to PENDING and the answer is `{"success": true}`. Meta's rules: only APPROVED, REJECTED or PAUSED
  templates can be edited; an approved (or paused) template keeps its category and may be edited once
  per 24 hours and 10 times per 30 days; rejected templates any number of times. `clock` (a callable
  returning epoch seconds) lets tests move time on.

Every request needs `Authorization: Bearer <access_token>` (or `?access_token=`); otherwise HTTP 401
with Meta's code 190. Every request is recorded in `requests` (with the id of the TCP connection it
came on, so tests can see keep-alive reuse). `latency_seconds` delays every answer; `inject_fault`,
`inject_raw_response` and `inject_delay` script the next matching answers.

Run it on its own for benchmarks: `python -m bench.graph_double --port 8999 --token t`.
"""

import argparse
import base64
import contextlib
import itertools
import json
import re
import secrets
import socket
import string
import sys
import threading
import time
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

#: Message types Meta's Cloud API accepts (kept apart from messaging.whatsapp on purpose: the double
#: must not inherit a mistake from the code it tests).
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
TEMPLATE_CATEGORIES = frozenset({"MARKETING", "UTILITY", "AUTHENTICATION"})
TEMPLATE_NAME_RE = re.compile(r"^[a-z0-9_]{1,512}$")
TEXT_BODY_MAX = 4096
DEFAULT_PAGE_SIZE = 25  # Meta's default `limit` on edges
DUPLICATE_TEMPLATE_SUBCODE = 2388024

INVALID_OAUTH_MESSAGE = "Invalid OAuth access token - Cannot parse access token"
BAD_GATEWAY_HTML = (
    "<html><head><title>502 Bad Gateway</title></head>"
    "<body><center><h1>502 Bad Gateway</h1></center></body></html>"
)

_ROUTE_RE = re.compile(r"^/(?P<version>v\d+\.\d+)/(?P<node>[^/]+)/(?P<edge>[^/]+)/?$")
_NODE_RE = re.compile(r"^/(?P<version>v\d+\.\d+)/(?P<node>[^/]+)/?$")
#: The body properties of Meta's "Edit template" (operationId editTemplate in Meta's OpenAPI spec).
TEMPLATE_EDIT_FIELDS = frozenset({"category", "components", "language", "name"})
EDITABLE_TEMPLATE_STATUSES = frozenset({"APPROVED", "REJECTED", "PAUSED"})
#: Meta's limits on editing an approved template; rejected and paused ones are not limited.
APPROVED_EDITS_PER_DAY = 1
APPROVED_EDITS_PER_30_DAYS = 10
DAY_SECONDS = 24 * 60 * 60
_TRACE_ALPHABET = string.ascii_letters + string.digits + "_-"
_connection_ids = itertools.count(1)  # process-wide, so ids never repeat across doubles


def fbtrace_id() -> str:
    """An id shaped like Meta's `fbtrace_id` (e.g. "AbC1dEf2GhI")."""
    return "".join(secrets.choice(_TRACE_ALPHABET) for _ in range(11))


def meta_error(
    *,
    message: str,
    code: int,
    error_type: str = "OAuthException",
    subcode: int | None = None,
    details: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A Graph API error object (the value under `"error"`)."""
    error: dict[str, Any] = {"message": message, "type": error_type, "code": code}
    if subcode is not None:
        error["error_subcode"] = subcode
    if details is not None:
        error["error_data"] = {"messaging_product": "whatsapp", "details": details}
    error.update(extra)
    error["fbtrace_id"] = fbtrace_id()
    return error


class GraphError(Exception):
    """Raised inside the double to answer with a Meta error."""

    def __init__(self, status: int, error: dict[str, Any]):
        super().__init__(error.get("message", ""))
        self.status = status
        self.error = error


def _invalid(summary: str, details: str) -> GraphError:
    return GraphError(400, meta_error(message=f"(#100) {summary}", code=100, details=details))


def _required(parameter: str) -> GraphError:
    return _invalid(f"The parameter {parameter} is required.", f"The parameter {parameter} is required.")


def encode_cursor(index: int) -> str:
    return base64.urlsafe_b64encode(f"graph-double:{index}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        prefix, _, index = text.partition(":")
        if prefix != "graph-double":
            raise ValueError(cursor)
        return int(index)
    except ValueError:
        raise _invalid("Invalid cursor", f"The cursor {cursor!r} is not valid for this edge.") from None


@dataclass(frozen=True)
class RecordedRequest:
    """One request the double received. Header names are lower-cased."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    json: Any  # the parsed body when it was JSON, else None
    connection_id: int  # the same for every request that came on one TCP connection
    client_port: int

    def header(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(name.lower(), default)


@dataclass
class _Fault:
    status: int | None  # None: answer normally after `delay`
    body: bytes
    content_type: str
    times: int
    path_contains: str | None
    delay: float = 0.0
    disconnect: bool = False  # close the connection without answering

    def matches(self, path: str) -> bool:
        return self.path_contains is None or self.path_contains in path


@dataclass
class _Response:
    status: int
    body: bytes
    content_type: str = "application/json; charset=UTF-8"
    headers: dict[str, str] = field(default_factory=dict)


def _json_response(status: int, payload: Any, headers: dict[str, str] | None = None) -> _Response:
    return _Response(status, json.dumps(payload).encode(), headers=headers or {})


#: Request header limits, as http.client's.
_MAX_HEADER_LINE = 65536
_MAX_HEADERS = 100


class _Headers(dict):
    """A request's headers by lower-cased name (a repeated header keeps its last value)."""

    def get(self, name: str, default: Any = None) -> Any:
        return super().get(name.lower(), default)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like graph.facebook.com
    disable_nagle_algorithm = True
    server_version = "GraphApiDouble/1"
    timeout = 60  # an idle keep-alive connection is closed after this many seconds

    server: "_Server"

    def parse_request(self) -> bool:
        """BaseHTTPRequestHandler's, for the HTTP/1.0 and 1.1 requests API clients send, with the
        headers read as plain lines: the standard one hands them to the email package, which was a
        third of the double's CPU per request. The double stands in for Meta's servers, which take
        none of this machine's CPU from the code under test: the less it takes, the truer a
        benchmark."""
        self.command = None  # as the standard one: send_error reads these
        self.request_version = self.default_request_version
        self.close_connection = True
        self.requestline = str(self.raw_requestline, "iso-8859-1").rstrip("\r\n")
        words = self.requestline.split()
        if not words:
            return False
        if len(words) != 3 or not words[2].startswith("HTTP/"):
            self.send_error(HTTPStatus.BAD_REQUEST, f"Bad request syntax ({self.requestline!r})")
            return False
        self.command, path, version = words
        self.request_version = "HTTP/1.1"  # how the errors below are answered
        if version not in ("HTTP/1.0", "HTTP/1.1"):
            self.send_error(HTTPStatus.HTTP_VERSION_NOT_SUPPORTED, f"Invalid HTTP version ({version})")
            return False
        self.request_version = version
        self.path = "/" + path.lstrip("/") if path.startswith("//") else path
        headers = _Headers()
        for _ in range(_MAX_HEADERS + 1):
            line = self.rfile.readline(_MAX_HEADER_LINE + 1)
            if len(line) > _MAX_HEADER_LINE:
                self.send_error(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "Line too long")
                return False
            if line in (b"\r\n", b"\n", b""):
                break
            name, colon, value = line.decode("iso-8859-1").partition(":")
            if not colon or not name.strip():
                self.send_error(HTTPStatus.BAD_REQUEST, f"Bad header line ({line[:100]!r})")
                return False
            headers[name.strip().lower()] = value.strip()
        else:
            self.send_error(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "Too many headers")
            return False
        self.headers = headers
        connection = headers.get("connection", "").lower()
        self.close_connection = connection == "close" or (
            self.request_version == "HTTP/1.0" and connection != "keep-alive"
        )
        if headers.get("expect", "").lower() == "100-continue" and self.request_version == "HTTP/1.1":
            return self.handle_expect_100()
        return True

    _date: tuple[int, str] = (0, "")

    def date_time_string(self, timestamp: float | None = None) -> str:
        """The Date header, formatted once a second rather than for every answer."""
        if timestamp is not None:
            return super().date_time_string(timestamp)
        now = int(time.time())
        if _Handler._date[0] != now:
            _Handler._date = (now, super().date_time_string(now))
        return _Handler._date[1]

    def setup(self) -> None:
        super().setup()
        self.connection_id = self.server.double._connection_opened(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.double._connection_closed(self.connection)

    def version_string(self) -> str:
        return self.server_version

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: a benchmark sends thousands of requests."""

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _dispatch(self) -> None:
        body = self._read_body()
        response = self.server.double._handle(self, body)
        if response is None:  # an injected disconnect
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        try:
            self.send_response(response.status)
            self.send_header("Content-Type", response.content_type)
            self.send_header("Content-Length", str(len(response.body)))
            for name, value in response.headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(response.body)
        except OSError:
            self.close_connection = True  # the client gave up (read timeout) or went away


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024

    def __init__(self, address: tuple[str, int], double: "GraphApiDouble"):
        self.double = double
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients dropping connections is normal here; anything else still prints."""
        if isinstance(sys.exc_info()[1], OSError):
            return
        super().handle_error(request, client_address)


class GraphApiDouble:
    """Meta's Graph API on 127.0.0.1 and an ephemeral port. Use as a context manager or start()/stop()."""

    def __init__(self, *, access_token: str, port: int = 0, latency_seconds: float = 0.0):
        self.access_token = access_token
        self.latency_seconds = latency_seconds
        self._port = port
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._requests: list[RecordedRequest] = []
        self._faults: list[_Fault] = []
        self._templates: dict[str, list[dict[str, Any]]] = {}
        self._messages: list[dict[str, Any]] = []
        self._open_sockets: set[socket.socket] = set()
        self._connections_opened = 0
        self._wamid_counter = itertools.count(1)
        self._template_ids = itertools.count(1_185_000_000_000_001)
        self._template_edits: dict[str, list[float]] = {}  # template id → when approved versions were edited
        self.clock = time.time

    # --- Lifecycle --------------------------------------------------------------------------------

    def start(self) -> "GraphApiDouble":
        if self._server is not None:
            raise RuntimeError("GraphApiDouble is already running")
        self._stopping.clear()
        self._server = _Server(("127.0.0.1", self._port), self)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.01},
            daemon=True,
            name="graph-double",
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._stopping.set()  # wakes handlers sleeping on latency or an injected delay
        self._server.shutdown()
        self._server.server_close()
        with self._lock:
            sockets = list(self._open_sockets)
        for sock in sockets:  # idle keep-alive connections would otherwise linger
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None

    def __enter__(self) -> "GraphApiDouble":
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("GraphApiDouble is not running: call start() first")
        return self._server.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # --- Inspection -------------------------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received since the last reset(), oldest first (a snapshot)."""
        with self._lock:
            return list(self._requests)

    @property
    def messages(self) -> list[dict[str, Any]]:
        """Accepted sends: `{"id": wamid, "phone_number_id", "payload"}`."""
        with self._lock:
            return list(self._messages)

    @property
    def connections_opened(self) -> int:
        """TCP connections accepted since the last reset()."""
        with self._lock:
            return self._connections_opened

    def templates(self, waba_id: str) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(t) for t in self._templates.get(waba_id, [])]

    def reset(self) -> None:
        """Forget recorded requests, accepted messages, templates, pending faults and the connection
        count. The token, latency and open connections are kept."""
        with self._lock:
            self._requests.clear()
            self._messages.clear()
            self._templates.clear()
            self._template_edits.clear()
            self._faults.clear()
            self._connections_opened = 0

    # --- Scripting --------------------------------------------------------------------------------

    def add_template(self, waba_id: str, template: dict[str, Any]) -> dict[str, Any]:
        """Seed a template (status APPROVED and a numeric id unless given); returns the stored copy."""
        stored = dict(template)
        stored.setdefault("status", "APPROVED")
        with self._lock:
            stored.setdefault("id", str(next(self._template_ids)))
            self._templates.setdefault(waba_id, []).append(stored)
        return dict(stored)

    def set_template(self, template_id: str, **fields: Any) -> dict[str, Any]:
        """Play Meta's review: e.g. `set_template(id, status="REJECTED", rejected_reason="INVALID_FORMAT")`."""
        with self._lock:
            stored = self._template_by_id(template_id)
            if stored is None:
                raise KeyError(template_id)
            stored.update(fields)
            return dict(stored)

    def template(self, template_id: str) -> dict[str, Any] | None:
        with self._lock:
            stored = self._template_by_id(template_id)
            return dict(stored) if stored is not None else None

    def _template_by_id(self, template_id: str) -> dict[str, Any] | None:
        """Callers hold `_lock`."""
        for templates in self._templates.values():
            for stored in templates:
                if stored.get("id") == template_id:
                    return stored
        return None

    def inject_fault(
        self,
        *,
        status: int,
        error: dict[str, Any] | None = None,
        times: int = 1,
        path_contains: str | None = None,
        delay_seconds: float = 0.0,
    ) -> None:
        """The next `times` requests whose path contains `path_contains` answer HTTP `status` with
        `{"error": error}` (Meta's error object, sent as given) instead of being processed."""
        body = json.dumps({"error": error} if error is not None else {}).encode()
        self._add_fault(
            _Fault(status, body, "application/json; charset=UTF-8", times, path_contains, delay_seconds)
        )

    def inject_raw_response(
        self,
        *,
        status: int = 502,
        body: str | bytes = BAD_GATEWAY_HTML,
        content_type: str = "text/html; charset=utf-8",
        times: int = 1,
        path_contains: str | None = None,
    ) -> None:
        """Answer with a body that is not Graph API JSON (by default a load balancer's 502 page)."""
        raw = body.encode() if isinstance(body, str) else body
        self._add_fault(_Fault(status, raw, content_type, times, path_contains))

    def inject_delay(self, seconds: float, *, times: int = 1, path_contains: str | None = None) -> None:
        """Sleep `seconds` before processing the next matching requests normally: longer than the
        client's read timeout, the request is handled (a message is accepted) but the client gives up."""
        self._add_fault(_Fault(None, b"", "", times, path_contains, seconds))

    def inject_disconnect(self, *, times: int = 1, path_contains: str | None = None) -> None:
        """Read the next matching requests, then close the connection without answering (a proxy or
        load balancer dropping it): the client cannot know whether the request was acted on."""
        self._add_fault(_Fault(None, b"", "", times, path_contains, disconnect=True))

    def _add_fault(self, fault: _Fault) -> None:
        if fault.times < 1:
            raise ValueError("times must be at least 1")
        with self._lock:
            self._faults.append(fault)

    # --- Connections ------------------------------------------------------------------------------

    def _connection_opened(self, sock: socket.socket) -> int:
        with self._lock:
            self._connections_opened += 1
            self._open_sockets.add(sock)
            return next(_connection_ids)

    def _connection_closed(self, sock: socket.socket) -> None:
        with self._lock:
            self._open_sockets.discard(sock)

    # --- Request handling -------------------------------------------------------------------------

    def _handle(self, handler: _Handler, body: bytes) -> _Response | None:
        split = urlsplit(handler.path)
        query = {key: values[-1] for key, values in parse_qs(split.query, keep_blank_values=True).items()}
        headers = {name.lower(): value for name, value in handler.headers.items()}
        content_type = headers.get("content-type", "")
        parsed: Any = None
        if body and "json" in content_type:
            with contextlib.suppress(ValueError):
                parsed = json.loads(body)
        request = RecordedRequest(
            method=handler.command,
            path=split.path,
            query=query,
            headers=headers,
            body=body,
            json=parsed,
            connection_id=handler.connection_id,
            client_port=handler.client_address[1],
        )
        with self._lock:
            self._requests.append(request)
            fault = next((f for f in self._faults if f.matches(split.path)), None)
            if fault is not None:
                fault.times -= 1
                if fault.times <= 0:
                    self._faults.remove(fault)
        latency = self.latency_seconds
        if latency > 0:
            self._stopping.wait(latency)
        if fault is not None:
            if fault.delay > 0:
                self._stopping.wait(fault.delay)
            if fault.disconnect:
                return None
            if fault.status is not None:
                return _Response(
                    fault.status, fault.body, fault.content_type, {"x-fb-trace-id": fbtrace_id()}
                )
        try:
            return self._route(request)
        except GraphError as exc:
            extra = {"x-fb-trace-id": exc.error.get("fbtrace_id", "")}
            if exc.status == 401:
                extra["WWW-Authenticate"] = (
                    f'OAuth "Facebook Platform" "invalid_token" "{exc.error["message"]}"'
                )
            return _json_response(exc.status, {"error": exc.error}, extra)

    def _route(self, request: RecordedRequest) -> _Response:
        self._check_token(request)
        match = _ROUTE_RE.match(request.path)
        edge = match["edge"] if match else ""
        if match and edge == "messages" and request.method == "POST":
            return _json_response(200, self._send_message(match["node"], request))
        if match and edge == "message_templates" and request.method == "GET":
            return _json_response(200, self._list_templates(match["node"], request))
        if match and edge == "message_templates" and request.method == "POST":
            return _json_response(200, self._create_template(match["node"], request))
        node_match = _NODE_RE.match(request.path)
        if node_match and request.method == "POST":
            with self._lock:
                known = self._template_by_id(node_match["node"]) is not None
            if known:
                return _json_response(200, self._edit_template(node_match["node"], request))
        node = match["node"] if match else request.path.strip("/").split("/")[-1]
        raise GraphError(
            404,
            meta_error(
                message=(
                    f"Unsupported {request.method.lower()} request. Object with ID '{node}' does not exist, "
                    "cannot be loaded due to missing permissions, or does not support this operation. "
                    "Please read the Graph API documentation at https://developers.facebook.com/docs/graph-api"
                ),
                code=100,
                error_type="GraphMethodException",
                subcode=33,
            ),
        )

    def _check_token(self, request: RecordedRequest) -> None:
        authorization = request.header("authorization") or ""
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer":
            token = request.query.get("access_token", "")
        if not secrets.compare_digest(token.strip().encode(), self.access_token.encode()):
            raise GraphError(401, meta_error(message=INVALID_OAUTH_MESSAGE, code=190))

    @staticmethod
    def _json_body(request: RecordedRequest) -> dict[str, Any]:
        content_type = request.header("content-type") or ""
        if "application/json" not in content_type:
            raise _invalid(
                "Invalid parameter", f"Content-Type must be application/json, got {content_type or 'none'!r}."
            )
        if not isinstance(request.json, dict):
            raise _invalid("Invalid parameter", "The request body must be a JSON object.")
        return request.json

    # --- POST /{phone_number_id}/messages ---------------------------------------------------------

    def _send_message(self, phone_number_id: str, request: RecordedRequest) -> dict[str, Any]:
        payload = self._json_body(request)
        self._validate_message(payload)
        to = payload["to"]
        wa_id = "".join(ch for ch in to if ch.isdigit())
        serial = next(self._wamid_counter)
        wamid = "wamid." + base64.b64encode(
            f"HBgL{wa_id}:{serial}:".encode() + secrets.token_bytes(12)
        ).decode().rstrip("=")
        with self._lock:
            self._messages.append({"id": wamid, "phone_number_id": phone_number_id, "payload": payload})
        return {
            "messaging_product": "whatsapp",
            "contacts": [{"input": to, "wa_id": wa_id}],
            "messages": [{"id": wamid, "message_status": "accepted"}],
        }

    @staticmethod
    def _validate_message(payload: dict[str, Any]) -> None:
        product = payload.get("messaging_product")
        if product is None:
            raise _required("messaging_product")
        if product != "whatsapp":
            raise _invalid(
                f'Param messaging_product must be one of {{WHATSAPP}} - got "{product}".',
                f"messaging_product must be 'whatsapp', got {product!r}.",
            )
        recipient_type = payload.get("recipient_type", "individual")
        if recipient_type != "individual":
            raise _invalid(
                f'Param recipient_type must be one of {{INDIVIDUAL}} - got "{recipient_type}".',
                f"recipient_type must be 'individual', got {recipient_type!r}.",
            )
        to = payload.get("to")
        if to is None or to == "":
            raise _required("to")
        if not isinstance(to, str) or not any(ch.isdigit() for ch in to):
            raise _invalid(
                "Invalid parameter", f"The parameter to must be a phone number or wa_id, got {to!r}."
            )
        message_type = payload.get("type", "text")  # Meta's documented default
        if message_type not in MESSAGE_TYPES:
            raise _invalid(
                f'Param type must be one of {{{", ".join(sorted(t.upper() for t in MESSAGE_TYPES))}}} - got "{message_type}".',
                f"Unsupported message type {message_type!r}.",
            )
        content = payload.get(message_type)
        if content is None:
            raise _required(message_type)
        if not isinstance(content, dict):
            raise _invalid(
                f"Param {message_type} must be a JSON object.",
                f"The parameter {message_type} must be an object, got {type(content).__name__}.",
            )
        if message_type == "text":
            body = content.get("body")
            if not isinstance(body, str) or not body:
                raise _required("text['body']")
            if len(body) > TEXT_BODY_MAX:
                raise _invalid(
                    f"Param text['body'] must be at most {TEXT_BODY_MAX} characters long.",
                    f"text['body'] is {len(body)} characters long; the limit is {TEXT_BODY_MAX}.",
                )
            if "preview_url" in content and not isinstance(content["preview_url"], bool):
                raise _invalid(
                    "Param text['preview_url'] must be a boolean.", "preview_url must be true or false."
                )
        elif message_type == "location":
            for key, bound in (("latitude", 90), ("longitude", 180)):
                value = content.get(key)
                if value is None:
                    raise _required(f"location['{key}']")
                if isinstance(value, bool) or not isinstance(value, int | float):
                    raise _invalid(
                        f"Param location['{key}'] must be a number.",
                        f"location['{key}'] must be a number, got {value!r}.",
                    )
                if not -bound <= value <= bound:
                    raise _invalid(
                        f"Param location['{key}'] is out of range.",
                        f"location['{key}'] must be between -{bound} and {bound}, got {value!r}.",
                    )
        elif message_type == "template":
            if not isinstance(content.get("name"), str) or not content["name"]:
                raise _required("template['name']")
            language = content.get("language")
            if (
                not isinstance(language, dict)
                or not isinstance(language.get("code"), str)
                or not language["code"]
            ):
                raise _required("template['language']['code']")
        context = payload.get("context")
        if context is not None and (
            not isinstance(context, dict) or not isinstance(context.get("message_id"), str)
        ):
            raise _required("context['message_id']")
        callback = payload.get("biz_opaque_callback_data")
        if callback is not None and (not isinstance(callback, str) or len(callback) > 512):
            raise _invalid(
                "Param biz_opaque_callback_data must be a string of at most 512 characters.",
                "biz_opaque_callback_data must be a string of at most 512 characters.",
            )

    # --- /{waba_id}/message_templates -------------------------------------------------------------

    def _list_templates(self, waba_id: str, request: RecordedRequest) -> dict[str, Any]:
        try:
            limit = int(request.query.get("limit", DEFAULT_PAGE_SIZE))
        except ValueError:
            limit = 0
        if limit < 1:
            raise _invalid(
                "Invalid parameter", f"limit must be a positive integer, got {request.query['limit']!r}."
            )
        start = decode_cursor(request.query["after"]) + 1 if request.query.get("after") else 0
        with self._lock:
            items = [dict(t) for t in self._templates.get(waba_id, [])]
        page = items[start : start + limit]
        if not page:
            return {"data": []}
        end = start + len(page)  # index after the last item of this page
        paging: dict[str, Any] = {
            "cursors": {"before": encode_cursor(start), "after": encode_cursor(end - 1)}
        }
        if end < len(items):
            query = {**request.query, "limit": str(limit), "after": paging["cursors"]["after"]}
            query.pop("access_token", None)
            paging["next"] = f"{self.base_url}{request.path}?{urlencode(query)}"
        return {"data": page, "paging": paging}

    def _create_template(self, waba_id: str, request: RecordedRequest) -> dict[str, Any]:
        definition = self._json_body(request)
        name = definition.get("name")
        if not isinstance(name, str) or not TEMPLATE_NAME_RE.match(name):
            raise GraphError(
                400,
                meta_error(
                    message="Invalid parameter",
                    code=100,
                    is_transient=False,
                    error_user_title="Invalid template name",
                    error_user_msg=(
                        f"Template name {name!r} may only contain lowercase letters, numbers and "
                        "underscores (at most 512 characters)."
                    ),
                ),
            )
        language = definition.get("language")
        if not isinstance(language, str) or not language:
            raise _required("language")
        category = definition.get("category")
        if not isinstance(category, str) or category.upper() not in TEMPLATE_CATEGORIES:
            raise _invalid(
                f'Param category must be one of {{{", ".join(sorted(TEMPLATE_CATEGORIES))}}} - got "{category}".',
                f"Unsupported template category {category!r}.",
            )
        components = definition.get("components")
        if not isinstance(components, list) or not components:
            raise _required("components")
        with self._lock:
            existing = self._templates.setdefault(waba_id, [])
            if any(t.get("name") == name and t.get("language") == language for t in existing):
                raise GraphError(
                    400,
                    meta_error(
                        message="Invalid parameter",
                        code=100,
                        subcode=DUPLICATE_TEMPLATE_SUBCODE,
                        is_transient=False,
                        error_user_title="Content in this language already exists",
                        error_user_msg=(
                            f"There is already {language} content for this template. "
                            "Create a new template and try again."
                        ),
                    ),
                )
            template = {
                "name": name,
                "language": language,
                "category": category.upper(),
                "components": components,
                "status": "PENDING",
                "id": str(next(self._template_ids)),
            }
            existing.append(template)
        return {"id": template["id"], "status": "PENDING", "category": template["category"]}

    def _edit_template(self, template_id: str, request: RecordedRequest) -> dict[str, Any]:
        payload = self._json_body(request)
        unknown = sorted(set(payload) - TEMPLATE_EDIT_FIELDS)
        if unknown:
            raise _invalid(
                "Invalid parameter",
                f"Unexpected key(s) {', '.join(unknown)}; a template edit takes "
                f"{', '.join(sorted(TEMPLATE_EDIT_FIELDS))}.",
            )
        components = payload.get("components")
        if "components" in payload and (not isinstance(components, list) or not components):
            raise _required("components")
        category = payload.get("category")
        if category is not None and (
            not isinstance(category, str) or category.upper() not in TEMPLATE_CATEGORIES
        ):
            raise _invalid(
                f'Param category must be one of {{{", ".join(sorted(TEMPLATE_CATEGORIES))}}} - got "{category}".',
                f"Unsupported template category {category!r}.",
            )
        if components is None and category is None:
            raise _invalid("Invalid parameter", "A template edit needs components or a category.")
        now = self.clock()
        with self._lock:
            stored = self._template_by_id(template_id)
            if stored is None:  # reset() between routing and here
                raise _invalid("Invalid parameter", f"Unknown template {template_id}.")
            for key in ("name", "language"):
                if key in payload and payload[key] != stored.get(key):
                    raise _edit_refused(
                        "Template name or language cannot be edited",
                        f"The {key} of a template cannot be changed; create a new template instead.",
                    )
            status = str(stored.get("status", "")).upper()
            if status not in EDITABLE_TEMPLATE_STATUSES:
                raise _edit_refused(
                    "Template cannot be edited",
                    f"Only approved, rejected or paused templates can be edited; this one is {status}.",
                )
            was_approved = status in ("APPROVED", "PAUSED")
            if was_approved and category is not None and category.upper() != stored.get("category"):
                raise _edit_refused(
                    "Category cannot be edited",
                    "The category of an approved template cannot be changed.",
                )
            if status == "APPROVED":
                edits = [t for t in self._template_edits.get(template_id, []) if now - t < 30 * DAY_SECONDS]
                if sum(1 for t in edits if now - t < DAY_SECONDS) >= APPROVED_EDITS_PER_DAY:
                    raise _edit_refused(
                        "Edit limit reached",
                        f"An approved template can be edited {APPROVED_EDITS_PER_DAY} time per 24 hours; "
                        "try again later.",
                    )
                if len(edits) >= APPROVED_EDITS_PER_30_DAYS:
                    raise _edit_refused(
                        "Edit limit reached",
                        f"An approved template can be edited {APPROVED_EDITS_PER_30_DAYS} times per 30 days.",
                    )
                self._template_edits[template_id] = [*edits, now]
            if components is not None:
                stored["components"] = components
            if category is not None:
                stored["category"] = category.upper()
            stored["status"] = "PENDING"
            stored.pop("rejected_reason", None)
        return {"success": True}


def _edit_refused(title: str, message: str) -> GraphError:
    return GraphError(
        400,
        meta_error(
            message="Invalid parameter",
            code=100,
            is_transient=False,
            error_user_title=title,
            error_user_msg=message,
        ),
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve a local double of Meta's Graph API on 127.0.0.1.")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--token", default="test-access-token")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to every answer")
    args = parser.parse_args(argv)
    double = GraphApiDouble(access_token=args.token, port=args.port, latency_seconds=args.latency).start()
    print(f"Graph API double on {double.base_url} (token {args.token!r}); Ctrl-C stops it.", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        double.stop()


if __name__ == "__main__":
    main()
