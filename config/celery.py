"""The Celery application. Without CELERY_BROKER_URL tasks run eagerly in the calling process (the
embedded default); with a broker, any number of `make worker` processes on any machine consume them."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("config")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
