"""Real Celery workers send real messages: `celery -A config worker` processes consume
`messaging.tasks.send_message` from Redis, read and write the pytest PostgreSQL test database, and call
the Graph API double (bench/graph_double.py) through the `cloud` backend, exactly as deployed.

What is proven, counting what the double received (each request carries the message id in
`biz_opaque_callback_data`):

- a queued message is sent exactly once;
- two workers on one queue, with every task delivered twice, still send each message once (the claim
  lets one delivery through; the other answers `not_claimed`);
- the same for batches (`send_messages`, one claim for many ids): overlapping batches, each delivered
  twice, across two workers, send every message once;
- a worker killed while its request is at Meta: acks_late redelivers the task, and the redelivered task
  must not send again. What is true at that moment: the request reached Meta (the double counted it and
  accepts it), the message is `sending`, the claim of the redelivery fails, and the message waits as
  `unconfirmed` (messages_unstick) for Meta's status webhook: one request, never two. The same holds
  for a worker killed in the middle of a batch.

The send tasks store no results (ignore_result): what each run answered is read where an operator
reads it, in the worker's log (`Task ...[id] succeeded in ...s: 'sent'`).

Isolation: a scratch Redis database (/15) and a queue, node names and cache-key prefix unique to the
run; the workers load `config.settings` (the test settings force eager Celery) with DATABASE_URL pointing
at the test database.
"""

import ast
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter
from datetime import timedelta
from pathlib import Path
from urllib.parse import quote, urlparse

import pytest
from celery import Celery
from django.conf import settings
from django.db import connection
from django.utils import timezone

from bench.graph_double import GraphApiDouble
from messaging.models import Message, MessageStatus, ProviderCall
from messaging.sending import messages_unstick
from tests.factories import ContactFactory, SenderFactory

pytestmark = [pytest.mark.worker, pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

TOKEN = "EAAGworker-sending-test"
SCRATCH_REDIS_DB = 15
STARTUP_TIMEOUT_SECONDS = 60
RESULT_TIMEOUT_SECONDS = 30
SEND_TASK = "messaging.tasks.send_message"
BATCH_TASK = "messaging.tasks.send_messages"


def scratch_redis_url() -> str:
    return urlparse(settings.REDIS_URL)._replace(path=f"/{SCRATCH_REDIS_DB}").geturl()


def test_database_url() -> str:
    """The pytest test database (test_<name>), for the worker processes."""
    db = connection.settings_dict
    user = quote(db.get("USER") or "", safe="")
    password = quote(db.get("PASSWORD") or "", safe="")
    credentials = f"{user}:{password}@" if password else (f"{user}@" if user else "")
    return f"postgres://{credentials}{db.get('HOST') or '127.0.0.1'}:{db.get('PORT') or 5432}/{quote(db['NAME'])}"


test_database_url.__test__ = False  # a helper, not a test


class Worker:
    def __init__(self, process: subprocess.Popen, log_path: Path, nodename: str):
        self.process, self.log_path, self.nodename = process, log_path, nodename

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no worker log)"

    def pool_children(self) -> list[int]:
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        return [int(pid) for pid in children.read_text().split()]

    def kill(self) -> None:
        """SIGKILL the worker and everything it spawned: no warm shutdown, no ack, no cleanup."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=15)


@pytest.fixture(scope="module")
def double():
    with GraphApiDouble(access_token=TOKEN) as graph:
        yield graph


@pytest.fixture(autouse=True)
def _fresh_double(double):
    double.reset()  # requests, accepted messages and injected faults of earlier tests


@pytest.fixture(scope="module")
def run_id() -> str:
    return uuid.uuid4().hex[:12]


@pytest.fixture(scope="module")
def client_app(run_id):
    """Sends tasks to the workers' queues and reads their results (the project's app is eager here)."""
    url = scratch_redis_url()
    app = Celery("worker-sending-client", broker=url, backend=url, set_as_current=False)
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        broker_connection_retry_on_startup=True,
    )
    yield app
    with app.connection_for_write() as conn:  # the run's queues and kombu's bindings for them
        client = conn.default_channel.client
        keys = list(client.scan_iter(match=f"*{run_id}*"))
        if keys:
            client.delete(*keys)
    app.close()


@pytest.fixture(scope="module")
def worker_factory(django_db_setup, tmp_path_factory, double, client_app, run_id):
    """start(count, queue=..., pool=..., concurrency=...) -> [Worker], each ready to consume `queue`.
    Every worker is SIGKILLed at the end of the module (their tasks are all done by then, so a warm
    shutdown would only cost seconds)."""
    started: list[Worker] = []
    logs = tmp_path_factory.mktemp("workers")
    base_env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DJANGO_DEBUG": "false",
        "DATABASE_URL": test_database_url(),
        "DATABASE_CONN_MAX_AGE": "0",  # nothing may hold the test database open at teardown
        "CELERY_BROKER_URL": scratch_redis_url(),
        "CELERY_RESULT_BACKEND": scratch_redis_url(),
        "REDIS_URL": settings.REDIS_URL,  # the limiter and the circuit breaker
        "CACHE_KEY_PREFIX": f"test-worker-{run_id}",
        "WHATSAPP_BACKEND": "cloud",
        "WHATSAPP_GRAPH_URL": double.base_url,
        "WHATSAPP_API_VERSION": "v23.0",
        "WHATSAPP_ACCESS_TOKEN": TOKEN,
        "PYTHONUNBUFFERED": "1",
    }

    def start(count: int, *, queue: str, pool: str = "threads", concurrency: int = 4) -> list[Worker]:
        env = {**base_env, "CELERY_TASK_DEFAULT_QUEUE": queue}  # retries the task re-enqueues stay here
        workers = []
        for _ in range(count):
            nodename = f"send-{run_id}-{len(started)}@{socket.gethostname()}"
            log_path = logs / f"worker-{len(started)}.log"
            with log_path.open("wb") as log_file:
                process = subprocess.Popen(
                    [
                        str(Path(sys.executable).parent / "celery"),
                        "-A",
                        "config",
                        "worker",
                        f"--pool={pool}",
                        f"--concurrency={concurrency}",
                        "--without-gossip",
                        "--without-mingle",
                        "--without-heartbeat",
                        "--loglevel=INFO",
                        f"--queues={queue}",
                        f"--hostname={nodename}",
                    ],
                    cwd=settings.BASE_DIR,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            worker = Worker(process, log_path, nodename)
            started.append(worker)
            workers.append(worker)
        for worker in workers:
            wait_until_ready(client_app, worker)
        return workers

    try:
        yield start
    finally:
        for worker in started:
            worker.kill()


@pytest.fixture
def show_worker_logs(worker_factory):
    """Workers a test starts; their logs are printed (shown when the test fails)."""
    mine: list[Worker] = []
    yield mine
    for n, worker in enumerate(mine):
        print(f"--- celery worker {n} ({worker.nodename}) log ---\n{worker.log()}")


@pytest.fixture(scope="module")
def shared_queue(run_id) -> str:
    return f"test-worker-sending-{run_id}"


@pytest.fixture(scope="module")
def two_workers(worker_factory, shared_queue) -> list[Worker]:
    """Two thread-pool workers consuming one queue, shared by the tests that do not kill workers."""
    return worker_factory(2, queue=shared_queue)


@pytest.fixture
def own_queue(run_id) -> str:
    return f"test-worker-sending-{run_id}-{uuid.uuid4().hex[:6]}"


def wait_until_ready(app: Celery, worker: Worker) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if worker.process.poll() is not None:
            pytest.fail(
                f"worker exited with {worker.process.returncode} before it was ready:\n{worker.log()}"
            )
        if app.control.ping(destination=[worker.nodename], timeout=0.5):
            return
    pytest.fail(f"worker {worker.nodename} not ready after {STARTUP_TIMEOUT_SECONDS}s:\n{worker.log()}")


def queued_messages(count: int) -> list[Message]:
    sender = SenderFactory()
    contact = ContactFactory(last_inbound_at=timezone.now())  # free-form text: the window is open
    return Message.objects.bulk_create(
        Message(
            contact=contact,
            sender=sender,
            kind="text",
            content={"body": f"Order {n} shipped", "preview_url": False},
            status=MessageStatus.QUEUED,
        )
        for n in range(count)
    )


def requests_per_message(double: GraphApiDouble) -> Counter:
    return Counter(
        r.json["biz_opaque_callback_data"]
        for r in double.requests
        if r.path.endswith("/messages") and isinstance(r.json, dict)
    )


def results(tasks, workers: list[Worker]) -> list[str]:
    """What each task returned, in order, as its worker logged it (the send tasks store no result)."""
    wanted = {task.id for task in tasks}
    deadline = time.monotonic() + RESULT_TIMEOUT_SECONDS
    while True:
        found = {}
        for worker in workers:
            for match in re.finditer(r"\[([0-9a-f-]{36})\] succeeded in [0-9.e-]+s: (.*)", worker.log()):
                if match.group(1) in wanted:
                    found[match.group(1)] = ast.literal_eval(match.group(2).strip())
        if len(found) == len(wanted):
            return [found[task.id] for task in tasks]
        if time.monotonic() > deadline:
            pytest.fail(f"{len(wanted) - len(found)} of {len(wanted)} tasks did not succeed in time")
        time.sleep(0.1)


def wait_for(predicate, timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)


def test_a_worker_sends_each_queued_message_exactly_once(
    two_workers, show_worker_logs, client_app, shared_queue, double
):
    show_worker_logs.extend(two_workers)
    messages = queued_messages(20)

    tasks = [client_app.send_task(SEND_TASK, args=[m.pk], queue=shared_queue) for m in messages]

    assert results(tasks, two_workers) == [MessageStatus.SENT] * len(messages)
    assert requests_per_message(double) == Counter({str(m.pk): 1 for m in messages})
    assert set(Message.objects.values_list("status", flat=True)) == {MessageStatus.SENT}
    wamids = {m["id"] for m in double.messages}
    assert set(Message.objects.values_list("provider_message_id", flat=True)) == wamids
    assert ProviderCall.objects.filter(http_status=200).count() == len(messages)


def test_two_workers_and_duplicate_deliveries_still_send_once(
    two_workers, show_worker_logs, client_app, shared_queue, double
):
    show_worker_logs.extend(two_workers)
    messages = queued_messages(30)

    # Every task delivered twice, back to back: the copies race each other across both workers.
    tasks = {
        m.pk: [client_app.send_task(SEND_TASK, args=[m.pk], queue=shared_queue) for _ in range(2)]
        for m in messages
    }

    for pk, copies in tasks.items():
        assert sorted(results(copies, two_workers)) == ["not_claimed", MessageStatus.SENT], pk
    assert requests_per_message(double) == Counter({str(m.pk): 1 for m in messages})
    assert set(Message.objects.values_list("status", flat=True)) == {MessageStatus.SENT}
    for worker in two_workers:  # both really consumed the queue
        assert f"Task {SEND_TASK}[" in worker.log() and "succeeded" in worker.log()


def test_overlapping_batches_delivered_twice_send_each_message_once(
    two_workers, show_worker_logs, client_app, shared_queue, double
):
    show_worker_logs.extend(two_workers)
    messages = queued_messages(60)
    ids = [m.pk for m in messages]
    # Every id is in two batches, and every batch is delivered twice: four claims race for each message.
    batches = [ids[0:30], ids[15:45], ids[30:60], ids[0:15] + ids[45:60]]

    tasks = [client_app.send_task(BATCH_TASK, args=[batch], queue=shared_queue) for batch in batches * 2]

    answers = results(tasks, two_workers)
    assert sum(answer.get(MessageStatus.SENT, 0) for answer in answers) == len(messages)
    assert sum(answer.get("not_claimed", 0) for answer in answers) == 3 * len(messages)
    assert requests_per_message(double) == Counter({str(pk): 1 for pk in ids})
    assert set(Message.objects.values_list("status", flat=True)) == {MessageStatus.SENT}
    assert set(Message.objects.values_list("provider_message_id", flat=True)) == {
        m["id"] for m in double.messages
    }
    assert ProviderCall.objects.filter(http_status=200).count() == len(messages)


def redeliver_unacked(app: Celery, task_id: str) -> None:
    """What the broker does for an unacknowledged task once its visibility timeout has passed
    (kombu's Redis QoS.restore_visible; 1 hour by default), for this task only and at once."""
    with app.connection_for_write() as conn:
        channel = conn.default_channel
        unacked = channel.client.hgetall(channel.unacked_key)
        tags = [tag for tag, payload in unacked.items() if task_id.encode() in payload]
        assert tags, "the killed worker's task must still be unacknowledged (acks_late)"
        for tag in tags:
            channel.qos.restore_by_tag(tag.decode())


def test_a_worker_killed_mid_send_never_causes_a_second_send(
    worker_factory, show_worker_logs, client_app, own_queue, double
):
    [message] = queued_messages(1)
    [first] = worker_factory(1, queue=own_queue, pool="solo")
    show_worker_logs.append(first)
    double.inject_delay(2.0, path_contains="/messages")  # Meta is slow: the request is in flight

    task = client_app.send_task(SEND_TASK, args=[message.pk], queue=own_queue)
    wait_for(lambda: requests_per_message(double)[str(message.pk)] == 1, what="the request to reach Meta")
    first.kill()

    message.refresh_from_db()
    assert (message.status, message.attempts) == (MessageStatus.SENDING, 1)

    # A new worker gets the same task again (acks_late: it was never acknowledged).
    show_worker_logs.extend(worker_factory(1, queue=own_queue, pool="solo"))
    redeliver_unacked(client_app, task.id)
    assert results([task], show_worker_logs) == ["not_claimed"]  # the claim fails: `sending` is not `queued`

    # The request the killed worker made did reach Meta, and Meta accepted it: one message, once.
    wait_for(lambda: len(double.messages) == 1, what="the double to accept the delayed request")
    assert requests_per_message(double) == Counter({str(message.pk): 1})
    message.refresh_from_db()
    assert (message.status, message.provider_message_id) == (MessageStatus.SENDING, None)
    assert messages_unstick(older_than=timedelta(0)) == 1
    message.refresh_from_db()
    assert message.status == MessageStatus.UNCONFIRMED  # for Meta's status webhook to settle
    assert MessageStatus.SENT not in message.status_events.values_list("status", flat=True)


def test_a_pool_process_killed_mid_send_is_redelivered_and_not_resent(
    worker_factory, show_worker_logs, client_app, own_queue, double
):
    """reject_on_worker_lost: the worker's main process sees its pool child die and puts the task back
    on the queue at once; a fresh child runs it again and the claim stops it."""
    [message] = queued_messages(1)
    [worker] = worker_factory(1, queue=own_queue, pool="prefork", concurrency=1)
    show_worker_logs.append(worker)
    double.inject_delay(2.0, path_contains="/messages")

    task = client_app.send_task(SEND_TASK, args=[message.pk], queue=own_queue)
    wait_for(lambda: requests_per_message(double)[str(message.pk)] == 1, what="the request to reach Meta")
    [child] = worker.pool_children()
    os.kill(child, signal.SIGKILL)

    assert results([task], [worker]) == ["not_claimed"]
    assert worker.process.poll() is None  # the worker itself lived on
    wait_for(lambda: len(double.messages) == 1, what="the double to accept the delayed request")
    assert requests_per_message(double) == Counter({str(message.pk): 1})
    message.refresh_from_db()
    assert message.status == MessageStatus.SENDING


def test_a_worker_killed_mid_batch_never_causes_a_second_send(
    worker_factory, show_worker_logs, client_app, own_queue, double
):
    messages = queued_messages(5)
    ids = [m.pk for m in messages]
    [first] = worker_factory(1, queue=own_queue, pool="solo")
    show_worker_logs.append(first)
    double.inject_delay(2.0, path_contains="/messages", times=len(ids))  # the whole batch is at Meta

    task = client_app.send_task(BATCH_TASK, args=[ids], queue=own_queue)
    wait_for(lambda: len(requests_per_message(double)) == len(ids), what="the batch's requests to reach Meta")
    first.kill()
    assert set(Message.objects.values_list("status", flat=True)) == {MessageStatus.SENDING}

    show_worker_logs.extend(worker_factory(1, queue=own_queue, pool="solo"))
    redeliver_unacked(client_app, task.id)
    assert results([task], show_worker_logs) == [{"not_claimed": len(ids)}]

    wait_for(lambda: len(double.messages) == len(ids), what="the double to accept the delayed requests")
    assert requests_per_message(double) == Counter({str(pk): 1 for pk in ids})
    assert messages_unstick(older_than=timedelta(0)) == len(ids)
    assert set(Message.objects.values_list("status", flat=True)) == {MessageStatus.UNCONFIRMED}


def spring_campaign(*, status: str):
    """A campaign of a utility template (no quiet hours: the tests may run at night in every US time
    zone) to 12 people, 10 of whom opted in."""
    from compliance.services import Evidence, consent_record, consent_text_create
    from messaging.models import Campaign
    from templates_app.models import MessageTemplate, TemplateStatus

    consent_text_create(version="v1", business_name="Acme", body="Acme offers. Reply STOP to stop.")
    sender = SenderFactory()
    template = MessageTemplate.objects.create(
        waba_id=sender.waba_id,
        name="spring_sale",
        language="en_US",
        category="UTILITY",
        status=TemplateStatus.APPROVED,
        components=[
            {"type": "BODY", "text": "Hi {{1}}, spring is here.", "example": {"body_text": [["Ann"]]}}
        ],
    )
    people = [ContactFactory() for _ in range(12)]
    for contact in people[:10]:
        consent_record(
            contact_id=contact.pk,
            phone_number=contact.phone_number,
            purpose="utility",
            action="opt_in",
            source="web_form",
            evidence=Evidence(ip_address="203.0.113.7", user_agent="test", page_url="https://shop.example/"),
            text_version="v1",
        )
    return Campaign.objects.create(
        name="Spring",
        sender=sender,
        template=template,
        template_parameters=[{"field": "profile_name"}],
        status=status,
    )


def test_a_campaign_runs_to_completion_on_real_workers_and_reaches_everyone_once(
    two_workers, show_worker_logs, client_app, shared_queue, double
):
    """Started in a worker, the campaign's dispatch steps chain themselves through the broker (not
    eagerly), hand batches to send tasks, and complete. Its start and steps delivered several times
    over, concurrently, change nothing: one request per recipient."""
    from messaging.models import Campaign, CampaignRecipient

    show_worker_logs.extend(two_workers)
    campaign = spring_campaign(status=Campaign.Status.APPROVED)

    for _ in range(2):
        client_app.send_task("messaging.tasks.start_campaign", args=[campaign.pk], queue=shared_queue)
    for _ in range(3):
        client_app.send_task("messaging.tasks.advance_campaign", args=[campaign.pk], queue=shared_queue)

    def completed() -> bool:
        campaign.refresh_from_db()
        return campaign.status == Campaign.Status.COMPLETED

    wait_for(completed, timeout=30, what="the campaign to complete")
    sent = Message.objects.filter(campaign=campaign)
    assert sent.count() == 10
    assert set(sent.values_list("status", flat=True)) == {MessageStatus.SENT}
    assert requests_per_message(double) == Counter({str(m.pk): 1 for m in sent})
    assert (
        CampaignRecipient.objects.filter(campaign=campaign, status="excluded", reason="no_consent").count()
        == 2
    )
    payload = next(r.json for r in double.requests if r.path.endswith("/messages"))
    assert payload["type"] == "template" and payload["template"]["name"] == "spring_sale"


def test_a_campaign_dry_run_is_worked_out_by_a_real_worker(
    two_workers, show_worker_logs, client_app, shared_queue
):
    """The dry run staff ask for in the admin reaches a worker through the broker, which keeps its
    counts. Delivered twice, two workers may both work it out: it ends done, with the same counts."""
    from messaging.models import Campaign, CampaignDryRunReport

    show_worker_logs.extend(two_workers)
    report = CampaignDryRunReport.objects.create(campaign=spring_campaign(status=Campaign.Status.DRAFT))

    for _ in range(2):
        client_app.send_task("messaging.tasks.campaign_dry_run_report", args=[report.pk], queue=shared_queue)

    def done() -> bool:
        report.refresh_from_db()
        return report.status == CampaignDryRunReport.Status.DONE

    wait_for(done, timeout=30, what="the dry run to be worked out")
    assert (report.summary["total"], report.summary["will_receive"]) == (12, 10)
    assert report.summary["excluded"] == {"no_consent": 2}
    assert Campaign.objects.get().status == Campaign.Status.DRAFT  # a dry run sends nothing
