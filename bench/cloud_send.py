"""Provider layer throughput: the `cloud` backend sending text messages to the Graph API double,
beside a bare `requests` client posting the same bodies to the same double in the same run.

The ratio shows what our backend layer (payload building, pooled session, response parsing, error
typing) costs over the raw HTTP exchange; the double's latency stands in for Meta's."""

import os
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import requests
from requests.adapters import HTTPAdapter

from bench.graph_double import GraphApiDouble
from messaging.whatsapp.base import OutgoingMessage, SenderRef
from messaging.whatsapp.cloud import CloudBackend

TOKEN = "bench-token"  # noqa: S105 - talks to the local double only
PHONE_NUMBER_ID = "106540352242922"
THREADS = 32
ROUNDS = 2


def _messages(count: int) -> list[OutgoingMessage]:
    return [
        OutgoingMessage(to=f"+1555{2000000 + n:07d}", type="text", content={"body": f"Order {n} shipped"})
        for n in range(count)
    ]


def _timed(func, items) -> float:
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=THREADS) as pool:
        for _ in pool.map(func, items):
            pass
    return time.perf_counter() - started


def run(*, count: int | None = None, latency_ms: float = 50.0) -> dict[str, Any]:
    count = count or int(os.environ.get("BENCH_SEND_COUNT", "2000"))
    messages = _messages(count)
    sender = SenderRef(phone_number_id=PHONE_NUMBER_ID)
    with GraphApiDouble(access_token=TOKEN, latency_seconds=latency_ms / 1000) as double:
        url = f"{double.base_url}/v23.0/{PHONE_NUMBER_ID}/messages"

        bare = requests.Session()
        bare.mount("http://", HTTPAdapter(pool_maxsize=THREADS))
        bare.headers["Authorization"] = f"Bearer {TOKEN}"
        bodies = [CloudBackend.build_message_payload(m) for m in messages]
        backend = CloudBackend(
            graph_url=double.base_url, api_version="v23.0", access_token=TOKEN, pool_size=THREADS
        )
        # Alternate the two, best of ROUNDS each, so warm-up and a busy neighbour hit both alike.
        baseline_seconds = backend_seconds = float("inf")
        for _ in range(ROUNDS):
            baseline_seconds = min(
                baseline_seconds, _timed(lambda body: bare.post(url, json=body, timeout=30).json(), bodies)
            )
            backend_seconds = min(
                backend_seconds, _timed(lambda m: backend.send(sender=sender, message=m), messages)
            )
        backend.close()
        bare.close()
        assert len(double.messages) == 2 * ROUNDS * count, "every send must have reached the double"

    baseline_rate = count / baseline_seconds
    backend_rate = count / backend_seconds
    return {
        "name": "cloud_send",
        "description": f"{count} text sends, {THREADS} threads, double latency {latency_ms:g} ms",
        "unit": "msg/s",
        "baseline": {"label": "bare requests client", "value": round(baseline_rate, 1)},
        "measured": {"label": "cloud backend", "value": round(backend_rate, 1)},
        "ratio": round(backend_rate / baseline_rate, 3),
    }
