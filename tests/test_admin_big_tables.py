"""Admin changelists that stay fast on big tables (issue #8): exact phone lookups, the locale filter's
cached choices, and no full COUNT(*) of a big unfiltered table."""

import pytest
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from messaging import admin_paging
from messaging.admin_paging import EstimatedCountPaginator
from messaging.models import Contact
from tests.factories import ContactFactory, TagFactory
from tests.staff import logged_in

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client():
    user = get_user_model().objects.create_superuser("root", "root@example.com", "a-long-password-123")
    return logged_in(user)


def test_searching_a_whole_phone_number_finds_that_contact_alone(admin_client):
    ava = ContactFactory(phone_number="+15550123456", profile_name="Ava")
    ContactFactory(phone_number="+15550999999", profile_name="Ben", username="5550123456")  # quotes it
    by_wa_id = ContactFactory(phone_number="+15550777777", wa_id="15550123456", profile_name="Ava old number")

    page = admin_client.get("/admin/messaging/contact/", {"q": "(555) 012-3456"})

    assert set(page.context["cl"].result_list) == {ava, by_wa_id}
    partial = admin_client.get("/admin/messaging/contact/", {"q": "Ava"})  # not a number: text search
    assert set(partial.context["cl"].result_list) == {ava, by_wa_id}


def test_the_locale_filter_lists_the_locales_contacts_have(admin_client):
    cache.clear()
    ContactFactory(locale="es_MX")
    ContactFactory(locale="en_US")
    page = admin_client.get("/admin/messaging/contact/")
    locale_filter = next(f for f in page.context["cl"].filter_specs if f.field_path == "locale")
    assert set(locale_filter.lookup_choices) == {"es_MX", "en_US"}


def test_small_tables_and_filtered_lists_count_exactly():
    ContactFactory.create_batch(3)
    assert EstimatedCountPaginator(Contact.objects.order_by("pk"), 100).count == 3
    assert EstimatedCountPaginator(Contact.objects.filter(locale="xx").order_by("pk"), 100).count == 0


@pytest.mark.postgres
def test_a_big_unfiltered_table_is_counted_from_postgresqls_estimate(monkeypatch):
    ContactFactory.create_batch(5)
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {Contact._meta.db_table}")
    monkeypatch.setattr(admin_paging, "EXACT_COUNT_BELOW", 1)  # as if it were a million rows

    with CaptureQueriesContext(connection) as queries:
        count = EstimatedCountPaginator(Contact.objects.order_by("pk"), 100).count
    assert count == 5  # ANALYZE of a small table estimates it exactly
    assert not any("COUNT(" in q["sql"].upper() for q in queries.captured_queries)
    # A filtered list is still counted, exactly.
    assert EstimatedCountPaginator(Contact.objects.filter(pk__lt=0).order_by("pk"), 100).count == 0


@pytest.mark.postgres
def test_the_admins_contact_search_can_use_the_trigram_indexes():
    from django.contrib import admin as django_admin
    from django.test import RequestFactory

    ContactFactory(profile_name="Hana Rossi")
    model_admin = django_admin.site._registry[Contact]
    request = RequestFactory().get("/admin/messaging/contact/", {"q": "Hana"})
    queryset, _ = model_admin.get_search_results(request, Contact.objects.all(), "Hana")
    sql, params = queryset.order_by().values("pk").query.sql_with_params()  # as the admin counts
    with connection.cursor() as cursor:
        # A tiny table would be read whole anyway: leave the planner only index bitmaps, which it can
        # build from an index only if the index matches the search's own expressions.
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("SET LOCAL enable_indexscan = off")
        cursor.execute(f"EXPLAIN {sql}", params)
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "contact_profile_name_trgm" in plan, plan
    assert list(queryset) == [Contact.objects.get(profile_name="Hana Rossi")]


@pytest.mark.django_db
def test_the_row_checkbox_written_directly_is_the_one_django_renders():
    from django.contrib import admin as django_admin
    from django.test.html import parse_html

    from messaging.models import Contact
    from tests.factories import ContactFactory

    contact = ContactFactory(profile_name='Ann "<b>" & Co')
    model_admin = django_admin.site._registry[Contact]
    ours = model_admin.action_checkbox(contact)
    djangos = django_admin.ModelAdmin.action_checkbox(model_admin, contact)
    assert parse_html(ours) == parse_html(djangos)


def test_a_filtered_list_counts_up_to_its_cap_and_says_so(admin_client, monkeypatch):
    monkeypatch.setattr(admin_paging, "COUNT_AT_MOST", 3)
    for n in range(5):
        ContactFactory(profile_name=f"Ava {n}")
    ContactFactory(profile_name="Ben")

    many = admin_client.get("/admin/messaging/contact/", {"q": "Ava"})
    few = admin_client.get("/admin/messaging/contact/", {"q": "Ben"})

    assert many.context["cl"].result_count == 3
    assert "3+ contacts" in many.content.decode()
    assert len(many.context["cl"].result_list) == 5  # the page shows every row that is on it
    assert "1 contact" in few.content.decode() and "+ contact" not in few.content.decode()
    counted = EstimatedCountPaginator(
        Contact.objects.filter(profile_name__startswith="Ava").order_by("pk"), 2
    )
    assert (str(counted.count), counted.num_pages) == ("3+", 2)


@pytest.mark.parametrize("not_a_tag", ["²", "99999999999999999999999", "-1", "0"])
def test_the_tag_filter_sends_an_id_no_tag_has_back_with_an_error_not_a_500(admin_client, not_a_tag):
    ContactFactory(tags=[TagFactory(name="vip")])

    for url in ("/admin/messaging/contact/", reverse("admin:messaging_contact_export")):
        response = admin_client.get(url, {"tags__id__exact": not_a_tag})

        assert response.status_code == 302
        assert response["Location"].endswith("?e=1")


def test_the_tag_filter_lists_each_tagged_contact_once(admin_client):
    vip, late = TagFactory(name="vip"), TagFactory(name="late payer")
    both = ContactFactory(profile_name="Ann", tags=[vip, late])
    only_vip = ContactFactory(profile_name="Bob", tags=[vip])
    ContactFactory(profile_name="Cy", tags=[late])

    page = admin_client.get("/admin/messaging/contact/", {"tags__id__exact": vip.pk})

    assert list(page.context["cl"].result_list) == [only_vip, both]  # newest first
    tag_filter = next(f for f in page.context["cl"].filter_specs if f.title == "tags")
    assert [choice["display"] for choice in tag_filter.choices(page.context["cl"])] == [
        "All",
        "late payer",
        "vip",
    ]
    assert "DISTINCT" not in str(page.context["cl"].queryset.query)
    assert admin_client.get("/admin/messaging/contact/", {"tags__id__exact": "vip"})["Location"].endswith(
        "?e=1"
    )
