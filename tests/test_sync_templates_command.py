"""`manage.py sync_templates` and the periodic `templates_app.tasks.sync_templates` task against the
Graph API double: counts, paging, several business accounts, Meta's errors, and the lock that keeps two
syncs from running at once."""

import io
import threading
import time

import pytest
from django.conf import settings
from django.core.cache import cache
from django.core.management import CommandError, call_command

from bench.graph_double import meta_error
from messaging import whatsapp
from templates_app.models import MessageTemplate, TemplateStatus
from templates_app.services import template_create
from templates_app.tasks import LOCK_KEY, sync_lock, sync_templates

pytestmark = pytest.mark.django_db

WABA = settings.WHATSAPP["BUSINESS_ACCOUNT_ID"]
OTHER_WABA = "102290129340398"
BODY = [{"type": "BODY", "text": "Your code is ready."}]


@pytest.fixture(autouse=True)
def _no_sync_lock():
    cache.delete(LOCK_KEY)
    yield
    cache.delete(LOCK_KEY)


def seed(double, waba_id, count, **fields):
    for n in range(count):
        double.add_template(
            waba_id,
            {
                "name": f"promo_{n:03d}",
                "language": "en_US",
                "category": "MARKETING",
                "components": BODY,
                **fields,
            },
        )


def run(*args) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("sync_templates", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_the_command_syncs_the_configured_account_page_by_page(cloud):
    seed(cloud, WABA, 105, quality_score={"score": "GREEN"})

    out, _ = run()

    assert out == f"{WABA}: 105 created, 0 updated, 0 unchanged, 0 conflicts\n"
    pages = [r for r in cloud.requests if r.method == "GET"]
    assert len(pages) == 2 and "after" in pages[1].query
    assert MessageTemplate.objects.filter(waba_id=WABA, status=TemplateStatus.APPROVED).count() == 105
    assert MessageTemplate.objects.get(name="promo_042").quality_rating == "GREEN"

    cloud.reset()
    seed(cloud, WABA, 105, status="PAUSED")
    out, _ = run()
    assert out == f"{WABA}: 0 created, 105 updated, 0 unchanged, 0 conflicts\n"
    assert run()[0] == f"{WABA}: 0 created, 0 updated, 105 unchanged, 0 conflicts\n"


def test_waba_id_may_be_repeated_and_replaces_the_configured_account(cloud):
    seed(cloud, OTHER_WABA, 2)
    seed(cloud, "555", 1)
    seed(cloud, WABA, 3)

    out, _ = run("--waba-id", OTHER_WABA, "--waba-id", "555")

    assert out.splitlines() == [
        f"{OTHER_WABA}: 2 created, 0 updated, 0 unchanged, 0 conflicts",
        "555: 1 created, 0 updated, 0 unchanged, 0 conflicts",
        "total: 3 created, 0 updated, 0 unchanged, 0 conflicts",
    ]
    assert not MessageTemplate.objects.filter(waba_id=WABA).exists()


def test_local_drafts_of_the_same_name_are_reported_as_conflicts(cloud):
    seed(cloud, WABA, 1)
    template_create(waba_id=WABA, name="promo_000", language="en_US", category="MARKETING", components=BODY)

    out, err = run()

    assert out == f"{WABA}: 0 created, 0 updated, 0 unchanged, 1 conflicts\n"
    assert "1 local draft(s) share a name and language" in err
    assert MessageTemplate.objects.get(name="promo_000").status == TemplateStatus.DRAFT


def test_metas_error_becomes_a_command_error_with_metas_message(cloud):
    cloud.inject_fault(
        status=400,
        error=meta_error(
            message="(#100) Tried accessing nonexisting field (message_templates) on node type (Page)",
            code=100,
        ),
    )

    with pytest.raises(CommandError) as excinfo:
        run()

    assert f"Meta refused the sync of {WABA}" in str(excinfo.value)
    assert "Tried accessing nonexisting field (message_templates)" in str(excinfo.value)
    assert cache.get(LOCK_KEY) is None  # released for the next run


def test_an_invalid_token_is_reported_too(settings, cloud):
    settings.WHATSAPP = {**settings.WHATSAPP, "ACCESS_TOKEN": "expired"}
    whatsapp._instances.clear()

    with pytest.raises(CommandError, match="Invalid OAuth access token"):
        run()


def test_the_other_accounts_are_synced_when_one_fails(cloud):
    seed(cloud, OTHER_WABA, 1)
    cloud.inject_fault(
        status=400, error=meta_error(message="(#200) Permissions error", code=200), path_contains="/555/"
    )

    with pytest.raises(CommandError, match=r"555: \(200\) \(#200\) Permissions error"):
        run("--waba-id", "555", "--waba-id", OTHER_WABA)

    assert MessageTemplate.objects.filter(waba_id=OTHER_WABA).count() == 1


def test_without_an_account_id_the_command_says_what_to_set(settings):
    settings.WHATSAPP = {**settings.WHATSAPP, "BUSINESS_ACCOUNT_ID": ""}

    with pytest.raises(CommandError, match="WHATSAPP_BUSINESS_ACCOUNT_ID"):
        run()


def test_the_command_refuses_while_another_sync_runs(cloud):
    with sync_lock() as acquired:
        assert acquired
        with pytest.raises(CommandError, match="Another template sync is running"):
            run()
    assert cloud.requests == []


# --- The periodic task ------------------------------------------------------------------------------


def test_the_task_is_scheduled_every_15_minutes():
    from config.celery import app

    entry = settings.CELERY_BEAT_SCHEDULE["templates-sync"]
    assert entry["task"] == "templates_app.tasks.sync_templates" == sync_templates.name
    assert entry["schedule"] == 15 * 60
    assert sync_templates.name in app.tasks


def test_the_task_returns_the_counts(cloud):
    seed(cloud, WABA, 3)

    assert sync_templates.delay().get() == {
        "created": 3,
        "updated": 0,
        "unchanged": 0,
        "conflicts": 0,
        "reworks": 0,
    }
    assert cache.get(LOCK_KEY) is None


def test_an_overlapping_run_is_skipped(cloud):
    seed(cloud, WABA, 3)
    cloud.inject_delay(0.5, path_contains="/message_templates")  # the first run waits on Meta
    second: dict[str, object] = {}

    def overlap():
        deadline = time.monotonic() + 5
        while not cloud.requests and time.monotonic() < deadline:  # the first run is at Meta
            time.sleep(0.01)
        # (.apply().result: Celery forbids .get() while another task runs eagerly in the process)
        second["result"] = sync_templates.apply().result  # returns before touching the database
        second["requests"] = len(cloud.requests)

    thread = threading.Thread(target=overlap)
    thread.start()
    first = sync_templates.delay().get()
    thread.join(timeout=5)

    assert second == {"result": "skipped", "requests": 1}
    assert first == {"created": 3, "updated": 0, "unchanged": 0, "conflicts": 0, "reworks": 0}
    assert sync_templates.delay().get()["unchanged"] == 3  # the lock is free again


def test_the_task_raises_metas_error_and_frees_the_lock(cloud):
    cloud.inject_fault(status=500, error=meta_error(message="(#131000) Something went wrong", code=131000))

    with pytest.raises(whatsapp.WhatsAppApiError, match="Something went wrong"):
        sync_templates.delay().get()

    assert cache.get(LOCK_KEY) is None


def test_a_local_rework_is_reported_apart_from_conflicts(cloud):
    stored = cloud.add_template(
        WABA,
        {
            "name": "order_shipped",
            "language": "en_US",
            "category": "UTILITY",
            "status": "REJECTED",
            "components": [],
        },
    )
    MessageTemplate.objects.create(
        waba_id=WABA,
        name="order_shipped",
        language="en_US",
        category="UTILITY",
        meta_template_id=stored["id"],
        status=TemplateStatus.DRAFT,
    )

    out, err = run()

    assert out == (
        f"{WABA}: 0 created, 0 updated, 0 unchanged, 0 conflicts, "
        "1 kept as local rework (waiting to be resubmitted)\n"
    )
    assert err == ""
