"""Celery tasks of the messaging app.

`worker_ping` is a diagnostic task: it does no work and touches neither the database nor the WhatsApp
API, it only reports which worker process executed it. The integration test in
tests/test_celery_worker.py sends it to a real worker to prove that the project's Celery app, its task
discovery and the broker/result backend fit together; operators can use it the same way to check that
a deployment's workers consume the queue:

    celery -A config call messaging.tasks.worker_ping   # prints a task id
    celery -A config result <task id>                   # {'pong': True, 'hostname': ..., 'pid': ...}
"""

import os
import socket

from celery import shared_task


@shared_task(name="messaging.tasks.worker_ping")
def worker_ping() -> dict:
    """Return proof of execution: which host and process ran this task."""
    return {"pong": True, "hostname": socket.gethostname(), "pid": os.getpid()}
