"""A real Celery worker executes a task sent through a real Redis broker.

The rest of the suite runs Celery eagerly (in the test process), which says nothing about whether a
deployed `celery -A config worker` can load the project, discover its tasks and talk to the broker and
the result backend. This test starts exactly that command as a subprocess and sends it
`messaging.tasks.worker_ping` from a separate client app.

Isolation: the worker uses a scratch Redis database (/15 on the REDIS_URL server) and a queue and node
name unique to this test run, so parallel runs (pytest-xdist workers, other CI runs on the same Redis)
never consume each other's tasks.

The worker loads `config.settings`, not `config.test_settings`: the test settings remove
CELERY_BROKER_URL from the environment on import (so the rest of the suite stays eager), which would
send a worker on them to Celery's default amqp://localhost broker. The worker inherits the safe
environment defaults that `config.test_settings` put into this process (memory WhatsApp backend,
test secret key) and is told its broker and result backend explicitly.
"""

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import urlparse

import pytest
from celery import Celery
from celery.result import allow_join_result
from django.conf import settings

pytestmark = pytest.mark.worker

SCRATCH_REDIS_DB = 15
STARTUP_TIMEOUT_SECONDS = 60
RESULT_TIMEOUT_SECONDS = 60
SHUTDOWN_TIMEOUT_SECONDS = 15


def scratch_redis_url(redis_url: str, db: int = SCRATCH_REDIS_DB) -> str:
    """The same Redis server as `redis_url`, another database: redis://h:p/0 -> redis://h:p/15."""
    return urlparse(redis_url)._replace(path=f"/{db}").geturl()


class WorkerProcess:
    def __init__(self, process: subprocess.Popen, log_path: Path, nodename: str, queue: str, broker: str):
        self.process = process
        self.log_path = log_path
        self.nodename = nodename
        self.queue = queue
        self.broker = broker

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no worker log)"

    def stop(self) -> None:
        if self.process.poll() is not None:
            return
        self.process.terminate()  # SIGTERM: Celery's warm shutdown
        try:
            self.process.wait(timeout=SHUTDOWN_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            # The worker runs in its own session (process group): kill it and anything it spawned.
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=SHUTDOWN_TIMEOUT_SECONDS)


@pytest.fixture
def client_app():
    """A Celery client on the scratch broker (the project's app is eager in tests, so it cannot send)."""
    url = scratch_redis_url(settings.REDIS_URL)
    app = Celery("worker-ping-client", broker=url, backend=url, set_as_current=False)
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        broker_connection_retry_on_startup=True,
    )
    yield app
    app.close()


@pytest.fixture
def celery_worker(tmp_path, client_app):
    run_id = uuid.uuid4().hex[:12]
    queue = f"test-worker-ping-{run_id}"
    nodename = f"test-{run_id}@%h"
    broker = scratch_redis_url(settings.REDIS_URL)
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "CELERY_BROKER_URL": broker,
        "CELERY_RESULT_BACKEND": broker,
        "WHATSAPP_BACKEND": "memory",  # a worker started by a test never calls Meta
        "PYTHONUNBUFFERED": "1",
    }
    env.setdefault("DJANGO_SECRET_KEY", secrets.token_urlsafe(50))
    log_path = tmp_path / "worker.log"
    command = [
        str(Path(sys.executable).parent / "celery"),
        "-A",
        "config",
        "worker",
        "--pool=solo",
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
        "--loglevel=INFO",
        f"--queues={queue}",
        f"--hostname={nodename}",
    ]
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            command,
            cwd=settings.BASE_DIR,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    worker = WorkerProcess(process, log_path, nodename.replace("%h", socket.gethostname()), queue, broker)
    try:
        yield worker
    finally:
        worker.stop()
        _delete_queue_keys(client_app, queue)
        # Captured output is shown only when the test fails (or with -rA): the worker's side of it.
        print(f"--- celery worker log ({' '.join(command)}) ---\n{worker.log()}")


def _delete_queue_keys(app: Celery, queue: str) -> None:
    """Leave no keys behind in the scratch database: the queue list and kombu's bindings for it."""
    with app.connection_for_write() as connection:
        client = connection.default_channel.client
        keys = list(client.scan_iter(match=f"*{queue}*"))
        if keys:
            client.delete(*keys)


def wait_until_ready(app: Celery, worker: WorkerProcess) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if worker.process.poll() is not None:
            pytest.fail(
                f"celery worker exited with {worker.process.returncode} before it was ready:\n{worker.log()}"
            )
        if app.control.ping(destination=[worker.nodename], timeout=0.5):
            return
    pytest.fail(
        f"celery worker {worker.nodename} not ready after {STARTUP_TIMEOUT_SECONDS}s:\n{worker.log()}"
    )


def test_real_worker_executes_worker_ping(celery_worker, client_app):
    wait_until_ready(client_app, celery_worker)

    result = client_app.send_task("messaging.tasks.worker_ping", queue=celery_worker.queue)
    try:
        # This process is a client, never a worker; Celery keeps a process-wide "inside a task" flag
        # that an earlier test's in-process task handling can leave set (seen once in CI), which
        # would refuse the wait below. allow_join_result is Celery's own way to say "not a task".
        with allow_join_result():
            payload = result.get(timeout=RESULT_TIMEOUT_SECONDS)
    except Exception as exc:
        pytest.fail(f"worker_ping did not come back ({type(exc).__name__}: {exc}):\n{celery_worker.log()}")
    finally:
        result.forget()

    assert payload["pong"] is True
    assert payload["hostname"]
    # Executed by the worker process (the solo pool runs tasks in the worker's main process) ...
    assert payload["pid"] == celery_worker.process.pid
    # ... and not eagerly in this one.
    assert payload["pid"] != os.getpid()
