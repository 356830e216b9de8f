import os
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from django.contrib.auth import authenticate, get_user_model
from django.contrib.auth.models import Group
from django.core.management import call_command

from compliance.models import ConsentText
from messaging.models import Contact, Sender

ROOT = Path(__file__).resolve().parent.parent
STRONG_KEY = "Zr8q-" + "x7Kp2mVb9TnW4cLs6HdJ0aFg3YeQ1uRo5iPz8Nw_Ek" * 2
LEDGER_KEY = "cHJvZHVjdGlvbi1sZWRnZXIta2V5LTMyLWJ5dGVzLSE="


def _manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "WHATSAPP_", "CONSENT_"))}
    clean.update({"DJANGO_SETTINGS_MODULE": "config.settings", **env})
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=clean, capture_output=True, text=True, timeout=120
    )


def test_production_settings_pass_check_deploy_without_warnings():
    result = _manage(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        DJANGO_DEBUG="false",
        DJANGO_SECRET_KEY=STRONG_KEY,
        DJANGO_ALLOWED_HOSTS="wa.example.com",
        CONSENT_ENCRYPTION_KEY=LEDGER_KEY,
    )
    assert result.returncode == 0, result.stderr + result.stdout
    assert "no issues" in result.stdout


@pytest.mark.parametrize("key", ["", "short", "django-insecure-" + "a" * 60])
def test_production_refuses_to_start_without_a_real_secret_key(key):
    result = _manage(
        "check", DJANGO_DEBUG="false", DJANGO_SECRET_KEY=key, DJANGO_ALLOWED_HOSTS="wa.example.com"
    )
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY" in result.stderr


def test_production_refuses_to_start_without_a_ledger_encryption_key():
    result = _manage(
        "check", DJANGO_DEBUG="false", DJANGO_SECRET_KEY=STRONG_KEY, DJANGO_ALLOWED_HOSTS="x.example"
    )
    assert result.returncode != 0
    assert "CONSENT_ENCRYPTION_KEY" in result.stderr


def test_development_mode_starts_without_any_configuration():
    result = _manage("check", DJANGO_DEBUG="true")
    assert result.returncode == 0, result.stderr


@pytest.mark.django_db
def test_staff_role_groups_exist_with_least_privilege():
    names = set(Group.objects.values_list("name", flat=True))
    assert {"Composer", "Approver", "Auditor", "Compliance officer"} <= names
    auditor = Group.objects.get(name="Auditor")
    codenames = set(auditor.permissions.values_list("codename", flat=True))
    assert "view_contact" in codenames
    assert not any(c.startswith(("add_", "change_", "delete_")) for c in codenames)


@pytest.mark.django_db
def test_setup_demo_is_idempotent_and_prints_working_credentials():
    first, second = StringIO(), StringIO()
    call_command("setup_demo", stdout=first)
    contacts = Contact.objects.count()
    call_command("setup_demo", stdout=second)
    assert contacts >= 10
    assert Contact.objects.count() == contacts
    assert Sender.objects.filter(is_default=True).count() == 1
    assert ConsentText.objects.filter(is_current=True).count() == 1  # so /opt-in/ works at once

    password = next(
        line.split(":", 1)[1].strip() for line in second.getvalue().splitlines() if "Password:" in line
    )
    user = authenticate(username="admin", password=password)
    assert user is not None and user.is_superuser
    assert get_user_model().objects.filter(username="admin").count() == 1


@pytest.mark.django_db
def test_setup_demo_leaves_a_campaign_the_composer_can_submit():
    from messaging.campaigns import campaign_dry_run, campaign_submit
    from messaging.models import Campaign

    call_command("setup_demo", stdout=StringIO())
    call_command("setup_demo", stdout=StringIO())
    campaign = Campaign.objects.get()  # once, however often the demo is loaded
    assert campaign.created_by.username == "composer"
    dry_run = campaign_dry_run(campaign)
    newsletter = Contact.objects.filter(tags__name="newsletter").count()
    assert dry_run.total == dry_run.will_receive == newsletter > 0
    campaign_submit(campaign=campaign, user=campaign.created_by)
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.PENDING_APPROVAL


@pytest.mark.django_db
def test_healthz_reports_the_database(client):
    response = client.get("/healthz/")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["checks"]["database"]["status"] == "ok"


def test_no_process_loads_the_phone_geocoder_at_start():
    """libphonenumber's geocoder data is ~100 MB: only the admin forms offering a country list may load
    it, when they are shown, never every web and worker process at import (admin modules included)."""
    import subprocess
    import sys

    from django.conf import settings

    code = (
        "import django, sys; django.setup(); import config.urls; "
        "print('phonenumbers.geocoder' in sys.modules)"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings", "DJANGO_DEBUG": "true"}
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=env,
        cwd=settings.BASE_DIR,
        check=True,
    )
    assert result.stdout.strip().splitlines()[-1] == "False", result.stderr
