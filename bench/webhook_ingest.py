"""Webhook ingest: signed status deliveries POSTed to `/webhooks/whatsapp/` of the app under gunicorn
on PostgreSQL, beside a bare endpoint (bench/bare_ingest.py: verify the HMAC, INSERT the raw body
with psycopg into the same table) served by the same gunicorn command, in the same run, at the same
concurrency. Figures: events/s and the p50/p99 latency the sender (Meta) sees.

The app runs the way production does: DEBUG off, a strong secret key, PostgreSQL with persistent
connections (CONN_MAX_AGE 60, the default), REDIS_URL set and CELERY_BROKER_URL on Redis, so a
request verifies, stores and wakes its process's drain scheduler, which makes sure a
`drain_webhook_events` task is queued (a Redis SET NX at most every 20 ms per process; the first one
also publishes the task). No Celery worker runs, so processing never competes
for the CPU and every event stays waiting (the queue is deleted afterwards); with workers draining,
each drain run adds one more publish, shared by every delivery that drain processes.
Requests carry `X-Forwarded-Proto: https` as they do behind the TLS-terminating proxy, so the HTTPS
redirect stays on and is satisfied. Every body is a distinct status webhook in Meta's shape
(messaging.whatsapp.webhook_payloads) with a wamid of its own: identical bodies would be
deduplicated by their sha256 and measure no insert. The bodies are signed beforehand and replayed
by wrk (a C load generator; the Lua script cycles through them), because on a two-core machine the
load generator shares the CPUs with the server and must cost as little per request as possible.
The run fails if wrk had to reuse a body or if fewer rows were stored than 2xx answers counted.

Latency is wrk's: from writing a request to reading its answer, per connection, closed loop
(a slow answer delays that connection's next request, so p99 under an overload is understated
rather than exploded). Also reported: the CPU the gunicorn processes and this database's PostgreSQL
backends spent per event, which is steadier than events/s when other work shares the machine, and
the load average before the run.

Worker model (BENCH_WEBHOOK_WORKER_CLASS, default gthread; BENCH_WEBHOOK_WORKERS 3,
BENCH_WEBHOOK_THREADS 4): the app's best events/s of a sweep on this two-core box (gthread 2x8:
1,600-2,000; 2x4: 2,090-2,150; 3x4: 2,090-2,240 events/s, after the drain check moved off the request
path); threads overlap one request's database round trip with another's Python, a third process
keeps a core busy while another waits for the GIL, and keep-alive spares the reconnect that sync
workers force on every request. Sync workers gave a tighter p99 at a lower rate. Other knobs: BENCH_WEBHOOK_CONNECTIONS
(16 concurrent senders), BENCH_WEBHOOK_SECONDS (10 measured, after BENCH_WEBHOOK_WARMUP 3),
BENCH_WEBHOOK_ROUNDS (1; alternating bare and app, best of), BENCH_WEBHOOK_MAX_RATE (6000: bodies are
generated for this many events/s), BENCH_WEBHOOK_REDIS_DB (13: broker database on REDIS_URL's server).

Needs PostgreSQL (DATABASE_URL's server, default postgres://postgres@127.0.0.1:5432/postgres; a
throwaway database is created and dropped), Redis (REDIS_URL, default redis://127.0.0.1:6379/0) and
`wrk` on PATH (Debian: apt-get install wrk); skipped with a printed reason otherwise.

    BENCH_WEBHOOK_SECONDS=20 python -m bench.webhook_ingest
"""

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import database_url_named, postgres_and_redis, skipped_result

ROOT = Path(__file__).resolve().parent.parent
NAME = "webhook_ingest"
UNIT = "events/s"
PATH = "/webhooks/whatsapp/"
WORKER_CLASS = os.environ.get("BENCH_WEBHOOK_WORKER_CLASS", "gthread")
WORKERS = int(os.environ.get("BENCH_WEBHOOK_WORKERS", "3"))
THREADS = int(os.environ.get("BENCH_WEBHOOK_THREADS", "4"))
CONNECTIONS = int(os.environ.get("BENCH_WEBHOOK_CONNECTIONS", "16"))
SECONDS = float(os.environ.get("BENCH_WEBHOOK_SECONDS", "10"))
WARMUP_SECONDS = float(os.environ.get("BENCH_WEBHOOK_WARMUP", "3"))
ROUNDS = int(os.environ.get("BENCH_WEBHOOK_ROUNDS", "1"))
MAX_RATE = int(os.environ.get("BENCH_WEBHOOK_MAX_RATE", "6000"))
BROKER_DB = int(os.environ.get("BENCH_WEBHOOK_REDIS_DB", "13"))
WRK_THREADS = 1  # one core-cheap event loop drives every connection; the server gets the rest
TARGET_RATE = 1500
TARGET_P99_MS = 100
TARGET_RATIO = 0.5
STARTUP_TIMEOUT = 30
PHONE_NUMBER_ID = "106540352242944"
APP_SECRET = "bench-webhook-app-secret"  # noqa: S105 - signs local requests only
CONSENT_KEY = "YmVuY2gtd2ViaG9vay1vbmx5LWtleS0zMi1ieXRlcyE="  # base64 of 32 bench-only bytes

# wrk's script: each connection thread keeps every request pre-formatted and hands them out in turn;
# `done` prints the figures as one JSON line. Bodies come from a file, one "signature<TAB>body" a line.
WRK_SCRIPT = r"""
local formatted, count, next_index, reused = {}, 0, 0, 0

function init(args)
  local headers = {["Content-Type"] = "application/json", ["X-Forwarded-Proto"] = "https",
                   ["User-Agent"] = "facebookexternalua"}
  for line in io.lines(args[1]) do
    local tab = line:find("\t", 1, true)
    headers["X-Hub-Signature-256"] = line:sub(1, tab - 1)
    count = count + 1
    formatted[count] = wrk.format("POST", nil, headers, line:sub(tab + 1))
  end
end

function request()
  next_index = next_index + 1
  if next_index > count then next_index, reused = 1, reused + 1 end
  return formatted[next_index]
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests": %d, "duration_us": %d, "non_2xx": %d, "connect_errors": %d, ' ..
    '"read_errors": %d, "write_errors": %d, "timeouts": %d, "p50_us": %d, "p90_us": %d, ' ..
    '"p99_us": %d, "p999_us": %d, "max_us": %d, "mean_us": %.1f}\n',
    summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency:percentile(99.9),
    latency.max, latency.mean))
end
"""


def _skipped(reason: str) -> dict[str, Any]:
    return skipped_result(
        name=NAME,
        unit=UNIT,
        baseline="bare psycopg endpoint, same gunicorn",
        measured="app endpoint",
        reason=reason,
    )


def _services() -> tuple[str, str, str] | str:
    """(admin PostgreSQL URL, broker URL, wrk path), or why the benchmark cannot run."""
    wrk = shutil.which("wrk")
    if not wrk:
        return "wrk not found on PATH (Debian: apt-get install wrk)"
    services = postgres_and_redis(redis_db=BROKER_DB)
    if isinstance(services, str):
        return services
    return (*services, wrk)


def _write_bodies(path: Path, *, run_id: str, start: int, count: int) -> None:
    """`count` distinct signed status webhooks, one "signature<TAB>body" a line."""
    from messaging.whatsapp import webhook_payloads
    from messaging.whatsapp.base import SenderRef
    from messaging.whatsapp.signatures import webhook_signature

    sender = SenderRef(
        phone_number_id=PHONE_NUMBER_ID, display_phone_number="+15550100044", waba_id="102290129340344"
    )
    now = int(time.time())
    statuses = ("sent", "delivered", "read")
    with path.open("w") as out:
        for n in range(start, start + count):
            value = webhook_payloads.status_value(
                # Meta's wamids are base64 of an opaque id; the shape and length are what matter here.
                wamid=f"wamid.HBgLMTU1NTAxMDAwNDQVAgARGBI{run_id}{n:010d}AA==",
                status=statuses[n % 3],
                recipient_wa_id=f"1555{3000000 + n % 1_000_000:07d}",
                timestamp=now,
                callback_data=str(n),
            )
            body = json.dumps(webhook_payloads.envelope(sender, value), separators=(",", ":")).encode()
            out.write(f"{webhook_signature(body, APP_SECRET)}\t{body.decode()}\n")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time the processes have used so far (threads included)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / ticks


def _children(pid: int) -> list[int]:
    found = []
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            found += [int(c) for c in (task / "children").read_text().split()]
    return found


class _Gunicorn:
    """One gunicorn serving `app` (a WSGI path) on a free local port, the benchmark's worker model."""

    def __init__(self, app: str, env: dict[str, str], log: Path):
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}{PATH}"
        self.log = log
        command = [sys.executable, "-m", "gunicorn", app, f"--bind=127.0.0.1:{self.port}"]
        command += [f"--workers={WORKERS}", f"--worker-class={WORKER_CLASS}", "--backlog=2048"]
        if WORKER_CLASS == "gthread":
            command.append(f"--threads={THREADS}")
        command += ["--log-level=warning", f"--error-logfile={log}"]
        self.process = subprocess.Popen(  # noqa: S603 - our own server command
            command, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, start_new_session=True
        )
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while len(self.workers) < WORKERS or not self._answers():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"gunicorn {app} did not start; log: {log.read_text()[-2000:]}")
            time.sleep(0.2)

    @property
    def workers(self) -> list[int]:
        return _children(self.process.pid)

    def _answers(self) -> bool:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
            s.sendall(b"GET /healthz/ HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            return s.recv(12).startswith(b"HTTP/1.")
        return False

    def cpu_seconds(self) -> float:
        return _cpu_seconds([self.process.pid, *self.workers])

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)


def _wrk(wrk: str, url: str, script: Path, bodies: Path, seconds: float) -> dict[str, Any]:
    load = [f"-t{WRK_THREADS}", f"-c{CONNECTIONS}", f"-d{seconds:g}s", "--timeout=10s"]
    result = subprocess.run(  # noqa: S603 - wrk with our own arguments
        [wrk, *load, "-s", str(script), url, "--", str(bodies)],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        check=False,
    )
    lines = [line for line in result.stdout.splitlines() if line.startswith("BENCH_JSON ")]
    if result.returncode != 0 or not lines:
        raise RuntimeError(f"wrk failed ({result.returncode}): {result.stderr or result.stdout}")
    return json.loads(lines[-1].removeprefix("BENCH_JSON "))


class _Database:
    """The throwaway database: row counts and the CPU its PostgreSQL backends used."""

    def __init__(self, url: str, name: str):
        import psycopg

        self.name = name
        self.connection = psycopg.connect(url, autocommit=True)

    def rows(self) -> int:
        return self.connection.execute("SELECT count(*) FROM messaging_webhookevent").fetchone()[0]

    def backend_cpu_seconds(self) -> float:
        pids = self.connection.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()", (self.name,)
        ).fetchall()
        return _cpu_seconds([pid for (pid,) in pids])

    def close(self) -> None:
        self.connection.close()


def _measure(
    label: str, server: _Gunicorn, database: _Database, wrk: str, script: Path, bodies: Path, warmup: Path
) -> dict[str, Any]:
    _wrk(wrk, server.url, script, warmup, WARMUP_SECONDS)
    rows_before = database.rows()
    app_cpu, db_cpu = server.cpu_seconds(), database.backend_cpu_seconds()
    figures = _wrk(wrk, server.url, script, bodies, SECONDS)
    app_cpu, db_cpu = server.cpu_seconds() - app_cpu, database.backend_cpu_seconds() - db_cpu
    stored = database.rows() - rows_before
    answered = figures["requests"] - figures["non_2xx"]
    available = sum(1 for _ in bodies.open())
    if figures["requests"] > available:
        raise RuntimeError(
            f"{label}: wrk reused bodies ({figures['requests']} > {available}); raise MAX_RATE"
        )
    if stored < answered:
        raise RuntimeError(f"{label}: {answered} answered 2xx but only {stored} rows stored")
    errors = {k: figures[k] for k in ("non_2xx", "connect_errors", "read_errors", "write_errors", "timeouts")}
    seconds = figures["duration_us"] / 1e6
    return {
        "rate": round(answered / seconds, 1),
        "p50_ms": round(figures["p50_us"] / 1000, 2),
        "p90_ms": round(figures["p90_us"] / 1000, 2),
        "p99_ms": round(figures["p99_us"] / 1000, 2),
        "p999_ms": round(figures["p999_us"] / 1000, 2),
        "max_ms": round(figures["max_us"] / 1000, 2),
        "seconds": round(seconds, 2),
        "requests": figures["requests"],
        "errors": {k: v for k, v in errors.items() if v},
        # CPU per event: the app's Python (gunicorn processes) and this database's PostgreSQL backends.
        "server_cpu_ms_per_event": round(1000 * app_cpu / max(answered, 1), 3),
        "postgres_cpu_ms_per_event": round(1000 * db_cpu / max(answered, 1), 3),
    }


def run() -> dict[str, Any]:
    import psycopg
    from psycopg import sql

    services = _services()
    if isinstance(services, str):
        return _skipped(services)
    admin_url, broker_url, wrk = services
    run_id = secrets.token_hex(4)
    database = f"bench_webhook_{run_id}"
    queue = f"bench-webhook-{run_id}"
    database_url = database_url_named(admin_url, database)
    load_before = os.getloadavg()
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
        server_version = admin.execute("SELECT current_setting('server_version')").fetchone()[0]
    scratch = Path(tempfile.mkdtemp(prefix=f"bench-webhook-{run_id}-"))
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DJANGO_DEBUG": "false",
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
        "CONSENT_ENCRYPTION_KEY": CONSENT_KEY,
        "DATABASE_URL": database_url,
        "REDIS_URL": broker_url,
        "CELERY_BROKER_URL": broker_url,
        "CELERY_RESULT_BACKEND": broker_url,
        "CELERY_TASK_DEFAULT_QUEUE": queue,
        "CACHE_KEY_PREFIX": queue,
        "WHATSAPP_APP_SECRET": APP_SECRET,
        "WHATSAPP_VERIFY_TOKEN": "bench-verify-token",
        "BARE_INGEST_DATABASE_URL": database_url,
        "BARE_INGEST_APP_SECRET": APP_SECRET,
    }
    env.pop("DJANGO_SECURE_SSL_REDIRECT", None)  # production's default (on) stays on
    rounds: list[dict[str, Any]] = []
    try:
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "--noinput", "-v0"], cwd=ROOT, env=env, check=True
        )
        script = scratch / "ingest.lua"
        script.write_text(WRK_SCRIPT)
        per_run = int(MAX_RATE * SECONDS * 1.2) + 1000
        per_warmup = int(MAX_RATE * WARMUP_SECONDS * 1.2) + 1000
        next_body = 0
        db = _Database(database_url, database)
        try:
            for _ in range(ROUNDS):
                results = {}
                for label, app in (
                    ("bare", "bench.bare_ingest:application"),
                    ("app", "config.wsgi:application"),
                ):
                    warmup, bodies = scratch / f"{label}-warmup.tsv", scratch / f"{label}.tsv"
                    _write_bodies(warmup, run_id=run_id, start=next_body, count=per_warmup)
                    _write_bodies(bodies, run_id=run_id, start=next_body + per_warmup, count=per_run)
                    next_body += per_warmup + per_run
                    server = _Gunicorn(app, env, scratch / f"{label}.log")
                    try:
                        results[label] = _measure(label, server, db, wrk, script, bodies, warmup)
                    finally:
                        server.stop()
                    print(f"  {label}: {json.dumps(results[label])}", file=sys.stderr)
                rounds.append(results)
        finally:
            db.close()
        queued = _queue_length(broker_url, queue)
    finally:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database)))
        _clean_broker(broker_url, queue)
        shutil.rmtree(scratch, ignore_errors=True)
    return _report(rounds, queued=queued, server_version=server_version, load_before=load_before)


def _queue_length(broker_url: str, queue: str) -> int:
    import redis

    return redis.Redis.from_url(broker_url).llen(queue)


def _clean_broker(broker_url: str, queue: str) -> None:
    """Delete the run's queue, its bindings and anything else named after it."""
    import redis

    client = redis.Redis.from_url(broker_url)
    keys = list(client.scan_iter(match=f"*{queue}*"))
    if keys:
        client.delete(*keys)


def _report(
    rounds: list[dict[str, Any]], *, queued: int, server_version: str, load_before: tuple[float, ...]
) -> dict[str, Any]:
    app = max((r["app"] for r in rounds), key=lambda r: r["rate"])
    bare = max((r["bare"] for r in rounds), key=lambda r: r["rate"])
    ratio = round(app["rate"] / bare["rate"], 3)
    model = f"gunicorn {WORKERS} {WORKER_CLASS} workers" + (
        f" x {THREADS} threads" if WORKER_CLASS == "gthread" else ""
    )
    return {
        "name": NAME,
        "description": (
            f"signed status webhooks, {CONNECTIONS} connections (wrk), {model}, PostgreSQL {server_version}, "
            f"enqueue to Redis (no worker); {SECONDS:g} s after {WARMUP_SECONDS:g} s warm-up"
            + (f", best of {len(rounds)}" if len(rounds) > 1 else "")
            + f". p50/p99 ms: app {app['p50_ms']}/{app['p99_ms']}, bare {bare['p50_ms']}/{bare['p99_ms']}; "
            f"CPU ms/event app {app['server_cpu_ms_per_event']} + PostgreSQL "
            f"{app['postgres_cpu_ms_per_event']}, bare {bare['server_cpu_ms_per_event']} + "
            f"{bare['postgres_cpu_ms_per_event']}; load average before {load_before[0]:.2f}"
        ),
        "unit": UNIT,
        "baseline": {"label": f"bare psycopg endpoint, {model}", "value": bare["rate"], **bare},
        "measured": {"label": f"app endpoint, {model}", "value": app["rate"], **app},
        "ratio": ratio,
        "rounds": rounds,
        "tasks_queued": queued,
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "targets": {
            "events_per_second": TARGET_RATE,
            "p99_ms": TARGET_P99_MS,
            "ratio_to_bare": TARGET_RATIO,
            "met": app["rate"] >= TARGET_RATE and app["p99_ms"] < TARGET_P99_MS and ratio >= TARGET_RATIO,
        },
    }


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
