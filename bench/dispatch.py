"""The whole sending pipeline under load: N queued messages, 2 real Celery worker processes, Redis (the
broker, the result backend, the per-sender limiter and the circuit breaker's state) and PostgreSQL,
sending to the Graph API double with 50 ms of latency. Beside it, in the same run and against the same
double, a bare client at the same concurrency (2 processes x 32 threads, one urllib3 pool each, the
HTTP client and settings the cloud backend sends with) posting the same bodies: the ceiling this machine and the double allow.

Phase 1 (throughput): the limit is set out of the way: BENCH_DISPATCH_SENDERS (2) business numbers at
BENCH_DISPATCH_LIMIT (1000/s, the most Meta allows one number) each, every task's batch from one of
them in turn. One number's window is 3 % longer than a second (the limiter's safety margin,
messaging/limiter.py), so one number at 1000/s tops out near 970 msg/s. msg/s
is measured from the first enqueue until the last message is `sent` in the database, best
of BENCH_DISPATCH_ROUNDS (2), alternating with the bare client. Phase 2 (limit): a short run at a low
limit (BENCH_DISPATCH_LOW_LIMIT; by default 50/s, or half of phase 1's rate when that is lower, so
that the limit binds) whose most sends in any one-second window, counted from the times requests
reached the double, must never exceed it. Both phases also report the p50/p99 of how long workers
waited for the double's answer.

Messages are created the fast way (bulk_create, already `queued`, free-form text to contacts who
wrote a moment ago, so the gate allows them) and enqueued as a bulk send is (messaging.tasks
.messages_enqueue): `send_messages` tasks of SEND_BATCH_SIZE ids, each claimed with one UPDATE ...
RETURNING and sent concurrently on the worker's send pool. BENCH_DISPATCH_ENQUEUE=single enqueues one
`send_message` task per id instead, as approval does (the workers then run THREADS task threads).

The workers run as recommended for production (config/celery.py):

    celery -A config worker --pool=threads --concurrency=4

with WHATSAPP_SEND_THREADS = BENCH_DISPATCH_THREADS requests in flight per process, the bare client's
concurrency.

Everything lives in a throwaway PostgreSQL database created beside DATABASE_URL's (default
postgres://postgres@127.0.0.1:5432/postgres) and dropped afterwards; the limiter and the circuit
breaker use REDIS_URL (default redis://127.0.0.1:6379/0) under a key prefix of the run's own, the
broker and results a database of their own on that server (BENCH_DISPATCH_REDIS_DB, 14), cleaned
afterwards. Skipped with a printed reason when PostgreSQL or Redis is unreachable. The double runs
in a process of its own at a higher priority (it stands in for Meta's servers, which do not share
this machine's CPUs). Knobs for experiments: BENCH_DISPATCH_WORKERS (2: worker processes, and bare client
processes), BENCH_DISPATCH_THREADS (32), BENCH_DISPATCH_ENQUEUE
(batch | single), BENCH_DISPATCH_TASK_THREADS (4: task threads per worker in batch mode),
BENCH_DISPATCH_POOL (threads | prefork).

    BENCH_DISPATCH_COUNT=6000 python -m bench.dispatch
"""

import contextlib
import gc
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import requests

from bench.common import database_url_named, postgres_and_redis, skipped_result

ROOT = Path(__file__).resolve().parent.parent
NAME = "dispatch"
UNIT = "msg/s"
TOKEN = "bench-dispatch-token"  # noqa: S105 - talks to the local double only
PHONE_NUMBER_ID = "106540352242933"
WORKERS = int(os.environ.get("BENCH_DISPATCH_WORKERS", "2"))  # worker processes / bare client processes
SENDERS = int(os.environ.get("BENCH_DISPATCH_SENDERS", "2"))
POOL = os.environ.get("BENCH_DISPATCH_POOL", "threads")  # or prefork (one process per concurrent task)
THREADS = int(os.environ.get("BENCH_DISPATCH_THREADS", "32"))  # requests in flight per worker / bare process
ENQUEUE = os.environ.get("BENCH_DISPATCH_ENQUEUE", "batch")  # or single (one send_message task per id)
TASK_THREADS = int(os.environ.get("BENCH_DISPATCH_TASK_THREADS", "4"))  # per worker, batch mode
#: Broker and result backend: a Redis database of the bench's own on the REDIS_URL server (results of
#: the run are deleted afterwards); the limiter and the circuit breaker use REDIS_URL itself.
BROKER_DB = int(os.environ.get("BENCH_DISPATCH_REDIS_DB", "14"))
#: The workers' send pool follows THREADS (settings.WHATSAPP_SEND_THREADS, set before the worker starts).
WORKER_LAUNCHER = (
    "import os, sys; from django.conf import settings; "
    "settings.WHATSAPP_SEND_THREADS = int(os.environ['BENCH_DISPATCH_THREADS']); "
    "from celery.__main__ import main; sys.argv[0] = 'celery'; sys.exit(main())"
)
ROUNDS = int(os.environ.get("BENCH_DISPATCH_ROUNDS", "2"))
TARGET_RATE = 1000
TARGET_RATIO = 0.9
STARTUP_TIMEOUT = 60


def _skipped(reason: str) -> dict[str, Any]:
    return skipped_result(
        name=NAME,
        unit=UNIT,
        baseline="bare urllib3 client, same concurrency",
        measured="full pipeline, 2 Celery workers",
        reason=reason,
    )


def run(*, count: int | None = None, latency_ms: float = 50.0) -> dict[str, Any]:
    import psycopg
    from psycopg import sql

    count = count or int(os.environ.get("BENCH_DISPATCH_COUNT", "6000"))
    services = postgres_and_redis()
    if isinstance(services, str):
        return _skipped(services)
    admin_url, redis_url = services
    database = f"bench_dispatch_{os.getpid()}"
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
    try:
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "DJANGO_DEBUG": "false",  # no query log in the workers
            "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
            "CONSENT_ENCRYPTION_KEY": "YmVuY2gtZGlzcGF0Y2gtb25seS1rZXktMzItYnl0ZXM=",
            "DATABASE_URL": database_url_named(admin_url, database),
            "REDIS_URL": redis_url,
        }
        result = subprocess.run(  # noqa: S603 - this same module, with arguments of our own
            [sys.executable, "-m", "bench.dispatch", "--child", str(count), str(latency_ms)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            text=True,
            timeout=3600,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"bench.dispatch child failed ({result.returncode})")
        figures = json.loads(result.stdout.strip().splitlines()[-1])
    finally:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database)))
    return _report(figures)


def _report(f: dict[str, Any]) -> dict[str, Any]:
    pipeline, bare = f["pipeline"]["rate"], f["bare"]["rate"]
    low = f["low_limit"]
    ratio = round(pipeline / bare, 3)
    threads = f["threads"]
    config = f" ({f['pool']} pool, {f['task_threads']} task threads; " + (
        "one send_message task per message)"
        if f["enqueue"] == "single"
        else f"send_messages tasks of {f['batch_size']} ids)"
    )
    return {
        "name": NAME,
        "description": (
            f"{f['count']} queued text messages through claim, gate, circuit, limiter, cloud backend and "
            f"record; {WORKERS} Celery workers x {threads} requests in flight{config}, PostgreSQL {f['server_version']}, "
            f"Redis; double latency {f['latency_ms']:g} ms; best of {ROUNDS}. Most requests in any one "
            f"second at the double: {f['pipeline']['max_per_second']} at {f['senders']} numbers x "
            f"{f['high_limit']}/s; "
            f"{low['max_per_second']} at limit {low['limit']}/s ("
            f"{low['count']} messages, {low['rate']} msg/s)"
        ),
        "unit": UNIT,
        "baseline": {
            "label": f"bare urllib3 client, {WORKERS} processes x {threads} threads",
            "value": bare,
            "seconds": f["bare"]["seconds"],
            "cpu_ms_per_message": f["bare"]["cpu_ms_per_message"],
        },
        "measured": {
            "label": f"full pipeline, {WORKERS} Celery workers x {threads} requests in flight",
            "value": pipeline,
            "seconds": f["pipeline"]["seconds"],
            "double_side_rate": f["pipeline"]["double_rate"],
            "max_per_second": f["pipeline"]["max_per_second"],
            "request_ms": f["pipeline"]["request_ms"],
            "cpu_ms_per_message": f["pipeline"]["cpu_ms_per_message"],
            "limit": f["high_limit"],
            "senders": f["senders"],
            "not_sent": f["pipeline"]["not_sent"],
            "errors": f["pipeline"]["errors"],
        },
        "ratio": ratio,
        "low_limit_phase": low,
        "rounds": f["rounds"],
        "targets": {
            "msg_per_second": TARGET_RATE,
            "ratio_to_bare_client": TARGET_RATIO,
            "never_above_limit": True,
            "met": pipeline >= TARGET_RATE
            and ratio >= TARGET_RATIO
            and f["pipeline"]["max_per_second"] <= f["high_limit"] * f["senders"]
            and low["max_per_second"] <= low["limit"],
        },
    }


def most_in_one_second(times: list[float]) -> int:
    """The most events inside any half-open one-second window [t, t + 1)."""
    times = sorted(times)
    most, start = 0, 0
    for end, t in enumerate(times):
        while t - times[start] >= 1.0:
            start += 1
        most = max(most, end - start + 1)
    return most


# --- Child process: everything below runs with the throwaway database configured -------------------


def _double_class():
    from bench.graph_double import GraphApiDouble, _Response

    class TimedDouble(GraphApiDouble):
        """The Graph API double, also noting when each send request arrived (before its latency);
        `GET /_bench/arrivals` answers them as a JSON list."""

        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.arrivals: list[float] = []

        def _handle(self, handler, body):
            if handler.path == "/_bench/arrivals":
                with self._lock:
                    return _Response(200, json.dumps(self.arrivals).encode())
            if handler.command == "POST" and handler.path.endswith("/messages"):
                arrived = time.time()
                with self._lock:
                    self.arrivals.append(arrived)
            return super()._handle(handler, body)

    return TimedDouble


DOUBLE_NICE = int(os.environ.get("BENCH_DISPATCH_DOUBLE_NICE", "-10"))


class _DoubleProcess:
    """The double in a process of its own, at a higher scheduling priority when allowed: it stands in
    for Meta's servers, which share neither this machine's two CPUs nor a Python GIL with the bench,
    so the arrival times it records are when requests arrived, not when a starved thread got to them."""

    def __init__(self, latency_ms: float):
        def raise_priority() -> None:
            with contextlib.suppress(OSError):  # without the privilege: normal priority
                os.nice(DOUBLE_NICE)

        self.process = subprocess.Popen(  # noqa: S603 - this same module
            [sys.executable, "-m", "bench.dispatch", "--double", str(latency_ms)],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            preexec_fn=raise_priority,
        )
        self.base_url = self.process.stdout.readline().strip()
        if not self.base_url.startswith("http://"):
            raise RuntimeError("the Graph API double did not start")
        self.session = requests.Session()

    @property
    def arrivals(self) -> list[float]:
        return self.session.get(f"{self.base_url}/_bench/arrivals", timeout=30).json()

    def stop(self) -> None:
        self.session.close()
        self.process.stdin.close()  # the double stops at end of input
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)


def _double_main(latency_ms: float) -> None:
    # The double keeps every request it received: with the cyclic garbage collector on, its pauses
    # grow with that heap and hold every handler thread at once, bunching the arrival times it
    # records. Meta's clock does not pause for our garbage; the double lives minutes, so: off.
    gc.disable()
    double = _double_class()(access_token=TOKEN, latency_seconds=latency_ms / 1000).start()
    print(double.base_url, flush=True)
    try:
        sys.stdin.read()  # until the bench closes our input
    finally:
        double.stop()


class _Workers:
    def __init__(self, *, queue: str, env: dict[str, str], logs: Path):
        self.queue, self.env, self.logs = queue, env, logs
        self.processes: list[subprocess.Popen] = []
        self.nodenames: list[str] = []

    def start(self, app) -> None:
        for n in range(WORKERS):
            nodename = f"bench-{self.queue}-{n}@{socket.gethostname()}"
            with (self.logs / f"worker-{n}.log").open("wb") as log:
                self.processes.append(
                    subprocess.Popen(  # noqa: S603 - our own worker command
                        [
                            sys.executable,
                            "-c",
                            WORKER_LAUNCHER,
                            "-A",
                            "config",
                            "worker",
                            f"--pool={POOL}",
                            f"--concurrency={THREADS if ENQUEUE == 'single' else TASK_THREADS}",
                            "--without-gossip",
                            "--without-mingle",
                            "--without-heartbeat",
                            f"--loglevel={os.environ.get('BENCH_DISPATCH_LOGLEVEL', 'WARNING')}",
                            f"--queues={self.queue}",
                            f"--hostname={nodename}",
                        ],
                        cwd=ROOT,
                        env=self.env,
                        stdin=subprocess.DEVNULL,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
                )
            self.nodenames.append(nodename)
        deadline = time.monotonic() + STARTUP_TIMEOUT
        waiting = set(self.nodenames)
        while waiting:
            if time.monotonic() > deadline or any(p.poll() is not None for p in self.processes):
                raise RuntimeError(f"workers not ready; logs in {self.logs}")
            for reply in app.control.ping(destination=list(waiting), timeout=0.5):
                waiting -= set(reply)

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)


def _seed(count: int, senders) -> list[int]:
    """`count` queued messages; with several senders, each run of SEND_BATCH_SIZE messages (one task)
    goes out from the next sender in turn, as two campaigns on two numbers would."""
    from django.utils import timezone

    from messaging.models import Contact, Message, MessageStatus
    from messaging.sending import SEND_BATCH_SIZE

    senders = senders if isinstance(senders, list) else [senders]

    now = timezone.now()
    base = Contact.objects.count()
    contacts = Contact.objects.bulk_create(
        Contact(phone_number=f"+1555{3000000 + base + n:07d}", last_inbound_at=now) for n in range(count)
    )
    messages = Message.objects.bulk_create(
        (
            Message(
                contact=contact,
                sender=senders[(n // SEND_BATCH_SIZE) % len(senders)],
                kind="text",
                content={"body": f"Your order {n} has shipped.", "preview_url": False},
                preview=f"Your order {n} has shipped.",
                status=MessageStatus.QUEUED,
            )
            for n, contact in enumerate(contacts)
        ),
        batch_size=1000,
    )
    return [m.pk for m in messages]


SETTLED = ("sent", "unconfirmed", "failed", "blocked")
_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _process_cpu(pid: int) -> float:
    """CPU seconds (user + system) a live process has used, from /proc; 0 when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICKS


def _server_pids(command: str) -> list[int]:
    """This machine's processes named `command` (PostgreSQL's backends, Redis), when /proc shows them."""
    pids = []
    for entry in Path("/proc").iterdir() if Path("/proc").is_dir() else []:
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if (entry / "comm").read_text().strip() == command:
                    pids.append(int(entry.name))
    return pids


class _CpuMeter:
    """CPU seconds each part of the run used between start() and stop(): the workers, the Graph API
    double, PostgreSQL (every backend on this machine) and Redis. Read from /proc, so zero where the
    services run elsewhere. Per message, it says where the machine's CPU went in each phase."""

    def __init__(self, *, workers: list[int], double: int) -> None:
        self.groups = {"workers": lambda: workers, "double": lambda: [double]}
        self.groups["postgresql"] = lambda: _server_pids("postgres")
        self.groups["redis"] = lambda: _server_pids("redis-server")

    def _read(self) -> dict[str, dict[int, float]]:
        return {name: {pid: _process_cpu(pid) for pid in pids()} for name, pids in self.groups.items()}

    def start(self) -> "_CpuMeter":
        self.started = self._read()
        return self

    def stop(self, messages: int, **more: float) -> dict[str, float]:
        """Milliseconds of CPU per message, by part (`more`: CPU seconds measured elsewhere)."""
        ended = self._read()
        used = {
            name: sum(cpu - self.started[name].get(pid, 0.0) for pid, cpu in pids.items())
            for name, pids in ended.items()
        }
        used.update(more)
        per_message = {name: round(1000 * seconds / max(1, messages), 3) for name, seconds in used.items()}
        per_message["total"] = round(sum(per_message.values()), 3)
        return per_message


def _dispatch(app, queue: str, ids: list[int], double, timeout: float, cpu: "_CpuMeter") -> dict[str, Any]:
    """Enqueue one task per message; time until every one of them is settled (sent, or stopped in
    a final or unconfirmed state, which the figures then report with Meta's or the network's error)."""
    from django.db.models import Count, Max

    from messaging.models import Message, MessageStatusEvent, ProviderCall
    from messaging.sending import SEND_BATCH_SIZE

    already = len(double.arrivals)
    low, high = min(ids), max(ids)  # bulk_create gives each batch consecutive ids
    cpu.start()
    started = time.time()
    with app.producer_or_acquire() as producer:
        if ENQUEUE == "single":
            for pk in ids:
                app.send_task("messaging.tasks.send_message", args=[pk], queue=queue, producer=producer)
        else:
            for start in range(0, len(ids), SEND_BATCH_SIZE):
                batch = ids[start : start + SEND_BATCH_SIZE]
                app.send_task("messaging.tasks.send_messages", args=[batch], queue=queue, producer=producer)
    enqueued = time.time()
    deadline = started + timeout
    messages = Message.objects.filter(pk__gte=low, pk__lte=high)
    assert messages.count() == len(ids)
    # Polled gently (a count over thousands of rows costs the database CPU the pipeline shares); the
    # finish is read from the timeline instead: when the last message's outcome was written.
    while messages.filter(status__in=SETTLED).count() < len(ids) and time.time() < deadline:
        time.sleep(0.25)
    cpu_ms = cpu.stop(len(ids))
    last_written = MessageStatusEvent.objects.filter(
        message_id__gte=low, message_id__lte=high, status__in=SETTLED
    ).aggregate(last=Max("recorded_at"))["last"]
    finished = last_written.timestamp() if last_written is not None else time.time()
    statuses = dict(messages.values_list("status").annotate(n=Count("id")))
    sent = statuses.get("sent", 0)
    problems = dict(
        messages.exclude(status="sent").values_list("error_title").annotate(n=Count("id")).order_by("-n")[:5]
    )
    arrivals = sorted(double.arrivals[already:])
    mine = {"message_id__gte": low, "message_id__lte": high}
    requeued = MessageStatusEvent.objects.filter(**mine, detail__startswith="rate limit").count()
    elapsed = sorted(ProviderCall.objects.filter(**mine).values_list("elapsed_ms", flat=True))
    return {
        "seconds": round(finished - started, 3),
        "rate_limit_requeues": requeued,
        "enqueue_seconds": round(enqueued - started, 3),
        "rate": round(sent / (finished - started), 1),
        "sent": sent,
        "not_sent": {status: n for status, n in statuses.items() if status != "sent"},
        "errors": problems,
        "requests": len(arrivals),
        "double_rate": round((len(arrivals) - 1) / (arrivals[-1] - arrivals[0]), 1)
        if len(arrivals) > 1
        else None,
        "max_per_second": most_in_one_second(arrivals),
        "cpu_ms_per_message": cpu_ms,
        # How long the worker waited for Meta's answer (50 ms of latency, the rest is this machine).
        "request_ms": {
            "p50": elapsed[len(elapsed) // 2] if elapsed else None,
            "p99": elapsed[int(len(elapsed) * 0.99)] if elapsed else None,
        },
    }


BARE_CHILD = """
import json, resource, sys, time
from concurrent.futures import ThreadPoolExecutor
import urllib3

url, token, threads, start_at = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
bodies = json.loads(sys.stdin.read())
# The HTTP client the cloud backend sends with (messaging.whatsapp.cloud), configured the same way.
pool = urllib3.PoolManager(
    num_pools=4,
    maxsize=threads,
    retries=False,
    timeout=urllib3.Timeout(connect=5.0, read=30.0),
    headers={"Authorization": f"Bearer {token}", "Accept": "application/json", "Content-Type": "application/json"},
)

def post(body):
    response = pool.request("POST", url, body=json.dumps(body).encode())
    assert response.status == 200, response.status
    return json.loads(response.data)["messages"][0]["id"]

time.sleep(max(0.0, start_at - time.time()))
with ThreadPoolExecutor(max_workers=threads) as pool_threads:
    ids = list(pool_threads.map(post, bodies))
usage = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"end": time.time(), "sent": len(ids), "cpu": usage.ru_utime + usage.ru_stime}))
"""


def _bare(double, bodies: list[dict], cpu: "_CpuMeter") -> dict[str, Any]:
    """The same bodies, posted by WORKERS processes of THREADS threads each, started together."""
    url = f"{double.base_url}/v23.0/{PHONE_NUMBER_ID}/messages"
    start_at = time.time() + 1.5  # after the children have imported requests
    cpu.start()
    children = []
    for n in range(WORKERS):
        child = subprocess.Popen(  # noqa: S603 - our own script
            [sys.executable, "-c", BARE_CHILD, url, TOKEN, str(THREADS), str(start_at)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        child.stdin.write(json.dumps(bodies[n::WORKERS]))
        child.stdin.close()
        children.append(child)
    ends, client_cpu = [], 0.0
    for child in children:
        out = child.stdout.read()
        if child.wait(timeout=600) != 0:
            raise RuntimeError("bare client failed")
        figures = json.loads(out.strip().splitlines()[-1])
        ends.append(figures["end"])
        client_cpu += figures["cpu"]
    seconds = max(ends) - start_at
    return {
        "seconds": round(seconds, 3),
        "rate": round(len(bodies) / seconds, 1),
        # The clients' CPU includes their start (imports, reading the bodies): a little more than sending.
        "cpu_ms_per_message": cpu.stop(len(bodies), workers=client_cpu),
    }


def _clean_broker(app, run_id: str, *, since: float) -> None:
    """Delete the run's queue and bindings, and the task results its workers stored (results live a
    day: those whose remaining time-to-live says they were written during this run)."""
    with app.connection_for_write() as conn:
        client = conn.default_channel.client
        keys = list(client.scan_iter(match=f"*{run_id}*"))
        expires = app.conf.result_expires.total_seconds()
        oldest_ttl = expires - (time.time() - since) - 5
        for key in client.scan_iter(match="celery-task-meta-*", count=1000):
            if client.ttl(key) >= oldest_ttl:
                keys.append(key)
        for start in range(0, len(keys), 1000):
            client.delete(*keys[start : start + 1000])


def _child_main(count: int, latency_ms: float) -> dict[str, Any]:
    import django

    django.setup()
    from celery import Celery
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection

    from messaging.models import Message, Sender
    from messaging.sending import SEND_BATCH_SIZE
    from messaging.whatsapp.base import OutgoingMessage
    from messaging.whatsapp.cloud import CloudBackend

    call_command("migrate", verbosity=0, interactive=False)
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_setting('server_version')")
        server_version = cursor.fetchone()[0]

    high_limit = int(os.environ.get("BENCH_DISPATCH_LIMIT", "1000"))
    senders = [
        Sender.objects.create(
            phone_number_id=str(int(PHONE_NUMBER_ID) + n),
            display_phone_number=f"+155501000{33 + n}",
            waba_id="102290129340333",
            label=f"bench {n + 1}",
            is_default=n == 0,
            messages_per_second=high_limit,
        )
        for n in range(SENDERS)
    ]
    sender = senders[0]
    rounds_ids = [_seed(count, senders) for _ in range(ROUNDS)]
    # The bare client posts what the pipeline posts: the same bodies, callback data included.
    bodies = [
        CloudBackend.build_message_payload(
            OutgoingMessage(
                to=m.contact.phone_number, type="text", content=m.content, callback_data=str(m.pk)
            )
        )
        for m in Message.objects.filter(pk__in=rounds_ids[0]).select_related("contact")
    ]
    connection.close()

    run_id = secrets.token_hex(4)
    queue = f"bench-dispatch-{run_id}"
    broker_url = urlparse(settings.REDIS_URL)._replace(path=f"/{BROKER_DB}").geturl()
    # Enqueues only (approval's send_message.delay() does the same): no result subscription.
    app = Celery("bench-dispatch-client", broker=broker_url, backend="", set_as_current=False)
    app.conf.update(task_serializer="json", accept_content=["json"], broker_connection_retry_on_startup=True)
    run_started = time.time()

    double = _DoubleProcess(latency_ms)
    logs = Path(os.environ.get("BENCH_DISPATCH_LOGS", "/tmp")) / f"bench-dispatch-{run_id}"  # noqa: S108
    logs.mkdir(parents=True, exist_ok=True)
    workers = _Workers(
        queue=queue,
        logs=logs,
        env={
            **os.environ,
            "CELERY_BROKER_URL": broker_url,
            "CELERY_RESULT_BACKEND": broker_url,
            "CELERY_TASK_DEFAULT_QUEUE": queue,
            "CACHE_KEY_PREFIX": f"bench-dispatch-{run_id}",
            "WHATSAPP_BACKEND": "cloud",
            "WHATSAPP_GRAPH_URL": double.base_url,
            "WHATSAPP_API_VERSION": "v23.0",
            "WHATSAPP_ACCESS_TOKEN": TOKEN,
            "BENCH_DISPATCH_THREADS": str(THREADS),
        },
    )
    rounds = []
    try:
        workers.start(app)
        cpu = _CpuMeter(workers=[p.pid for p in workers.processes], double=double.process.pid)
        # Warm-up: a few sends open the workers' database and HTTP connections.
        _dispatch(app, queue, _seed(WORKERS * THREADS, sender), double, timeout=60, cpu=cpu)
        for ids in rounds_ids:
            bare = _bare(double, bodies, cpu)
            pipeline = _dispatch(app, queue, ids, double, timeout=600, cpu=cpu)
            rounds.append({"bare": bare, "pipeline": pipeline})
            print(
                f"  round: bare {bare['rate']} msg/s, pipeline {pipeline['rate']} msg/s "
                f"(not sent: {pipeline['not_sent'] or 'none'} {pipeline['errors'] or ''}; "
                f"rate-limit requeues: {pipeline['rate_limit_requeues']}); CPU ms per message: "
                f"bare {bare['cpu_ms_per_message']}, pipeline {pipeline['cpu_ms_per_message']}",
                file=sys.stderr,
            )
        # The limit must bind to prove anything: 50/s, or half of what phase 1 reached if that is less.
        best_rate = max(r["pipeline"]["rate"] for r in rounds)
        low_limit = int(os.environ.get("BENCH_DISPATCH_LOW_LIMIT") or max(5, min(50, int(best_rate / 2))))
        low_count = int(os.environ.get("BENCH_DISPATCH_LOW_COUNT") or low_limit * 8)
        low_ids = _seed(low_count, sender)
        Sender.objects.filter(pk=sender.pk).update(messages_per_second=low_limit)
        low = _dispatch(app, queue, low_ids, double, timeout=600, cpu=cpu)
        connection.close()
    except BaseException:
        print(f"  bench.dispatch failed; worker logs kept in {logs}", file=sys.stderr)
        raise
    else:
        if not os.environ.get("BENCH_DISPATCH_KEEP_LOGS"):
            shutil.rmtree(logs, ignore_errors=True)
    finally:
        workers.stop()
        double.stop()
        _clean_broker(app, run_id, since=run_started)
        app.close()

    return {
        "count": count,
        "threads": THREADS,
        "pool": POOL,
        "enqueue": ENQUEUE,
        "batch_size": SEND_BATCH_SIZE,
        "task_threads": THREADS if ENQUEUE == "single" else TASK_THREADS,
        "latency_ms": latency_ms,
        "server_version": server_version,
        "high_limit": high_limit,
        "senders": SENDERS,
        "pipeline": max((r["pipeline"] for r in rounds), key=lambda r: r["rate"]),
        "bare": max((r["bare"] for r in rounds), key=lambda r: r["rate"]),
        "rounds": rounds,
        "low_limit": {
            "limit": low_limit,
            "count": low_count,
            "rate": low["rate"],
            "double_rate": low["double_rate"],
            "max_per_second": low["max_per_second"],
            "not_sent": low["not_sent"],
            "rate_limit_requeues": low["rate_limit_requeues"],
            "request_ms": low["request_ms"],
        },
    }


if __name__ == "__main__":
    if len(sys.argv) >= 2 and sys.argv[1] == "--double":
        _double_main(float(sys.argv[2]))
    elif len(sys.argv) >= 2 and sys.argv[1] == "--child":
        figures = _child_main(int(sys.argv[2]), float(sys.argv[3]))
        print(json.dumps(figures))
    else:
        print(json.dumps(run(), indent=2))
