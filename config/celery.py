"""The Celery application. Without CELERY_BROKER_URL tasks run eagerly in the calling process (the
embedded default); with a broker, any number of `make worker` processes on any machine consume them.

Recommended worker for sending (what `make worker` runs, and what bench/dispatch.py measures):

    celery -A config worker --pool=threads --concurrency=4

Sending waits on the network, not the CPU: a send task hands its batch's requests to the process's
send pool (messaging.sending.SEND_THREADS requests in flight), so a few task threads per process keep
it busy; add processes (one per CPU) rather than threads for more throughput.

Database connections: Celery's Django fixup would close every connection before and after each task
(a new PostgreSQL connection, and a cold server-side cache, per task). CELERY_DB_REUSE_MAX keeps them,
and before each task Django's own rule applies instead, as at the start of a web request: a connection
older than CONN_MAX_AGE, or one that fails its health check, is replaced.
"""

import os

from celery import Celery
from celery.signals import task_prerun

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("config")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@task_prerun.connect
def _database_connections_checked(sender=None, **kwargs) -> None:
    if sender is not None and getattr(sender.request, "is_eager", False):
        return  # eager tasks run inside the caller's request or transaction: leave its connection alone
    from django.db import close_old_connections

    close_old_connections()
