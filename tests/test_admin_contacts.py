"""Contact CSV import and export in the Django admin, as superusers and as limited staff."""

import codecs
import csv
import io
import re

import pytest
from django.contrib.auth.models import Permission
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from messaging.models import Contact
from tests.factories import ContactFactory, StaffUserFactory, TagFactory, UserFactory

pytestmark = pytest.mark.django_db

CHANGELIST_URL = "admin:messaging_contact_changelist"
IMPORT_URL = "admin:messaging_contact_import"
EXPORT_URL = "admin:messaging_contact_export"


def staff_with(*codenames: str):
    user = StaffUserFactory()
    user.user_permissions.set(
        Permission.objects.filter(content_type__app_label="messaging", codename__in=codenames)
    )
    return user


@pytest.fixture
def admin_client(client):
    client.force_login(UserFactory(username="root", is_staff=True, is_superuser=True))
    return client


def upload(text: str | bytes, name: str = "contacts.csv") -> SimpleUploadedFile:
    data = text.encode() if isinstance(text, str) else text
    return SimpleUploadedFile(name, data, content_type="text/csv")


def post_import(client, text, **fields):
    data = {"file": upload(text), "default_region": "US", "update_existing": "on", **fields}
    return client.post(reverse(IMPORT_URL), data)


def csv_rows(response) -> list[list[str]]:
    body = b"".join(response.streaming_content)
    assert body.startswith(codecs.BOM_UTF8)  # so Excel shows "José" rather than mojibake
    return list(csv.reader(io.StringIO(body.decode("utf-8-sig"))))


def error_table(response) -> list[tuple[str, str, str]]:
    html = response.content.decode()
    table = re.search(r'<table id="import-errors">.*?</table>', html, re.DOTALL)
    assert table, "no table of failed rows on the page"
    cells = re.findall(r"<tr><td>(.*?)</td><td>(.*?)</td><td>(.*?)</td></tr>", table.group(0), re.DOTALL)
    return cells


# --- Changelist buttons -------------------------------------------------------------------------------


def test_changelist_offers_import_and_export_buttons(admin_client):
    response = admin_client.get(reverse(CHANGELIST_URL))

    assert response.status_code == 200
    assert f'href="{reverse(IMPORT_URL)}"' in response.text
    assert f'href="{reverse(EXPORT_URL)}"' in response.text
    assert "Export selected contacts as CSV" in response.text


def test_export_button_carries_the_current_search(admin_client):
    response = admin_client.get(reverse(CHANGELIST_URL), {"q": "ann"})

    assert f'href="{reverse(EXPORT_URL)}?q=ann"' in response.text


def test_view_only_staff_sees_export_but_not_import(client):
    client.force_login(staff_with("view_contact"))

    response = client.get(reverse(CHANGELIST_URL))

    assert response.status_code == 200
    assert "Export CSV" in response.text
    assert "Import CSV" not in response.text


# --- Import page ----------------------------------------------------------------------------------------


def test_import_page_renders_the_upload_form(admin_client):
    response = admin_client.get(reverse(IMPORT_URL))

    assert response.status_code == 200
    html = response.text
    assert 'enctype="multipart/form-data"' in html
    assert 'name="csrfmiddlewaretoken"' in html
    for field in ("file", "default_region", "update_existing", "dry_run"):
        assert f'name="{field}"' in html
    assert '<option value="US" selected>' in html
    assert "does not record their consent" in html


def test_posting_a_file_shows_counts_and_failed_rows(admin_client):
    ContactFactory(phone_number="+15550123459", profile_name="Old")
    text = (
        "phone_number,profile_name,timezone,tags\r\n"
        "+1-555-0123456,Ann,America/Chicago,vip\r\n"
        "(555) 012-3457,Bob,,\r\n"
        "call me,Carl,,\r\n"
        "+15550123458,Dana,Moon/Base,\r\n"
        "+15550123456,Ann again,,\r\n"
        "+15550123459,New,,\r\n"
    )

    response = post_import(admin_client, text)

    assert response.status_code == 200
    html = response.text
    assert re.search(r"Created</th><td>2<", html)
    assert re.search(r"Updated</th><td>1<", html)
    assert re.search(r"Failed</th><td>3<", html)
    rows = error_table(response)
    assert [(line, column) for line, column, _ in rows] == [
        ("4", "phone_number"),
        ("5", "timezone"),
        ("6", "phone_number"),
    ]
    assert "is not a valid phone number" in rows[0][2]
    assert "Moon/Base" in rows[1][2]
    assert "already on line 2" in rows[2][2]
    assert f'href="{reverse(CHANGELIST_URL)}"' in html
    assert Contact.objects.get(phone_number="+15550123456").tags.get().name == "vip"
    assert Contact.objects.get(phone_number="+15550123459").profile_name == "New"


def test_dry_run_from_the_admin_saves_nothing(admin_client):
    response = post_import(admin_client, "phone_number\n+15550123456\n", dry_run="on")

    assert "Dry run: nothing was saved" in response.text
    assert re.search(r"Created</th><td>1<", response.text)
    assert not Contact.objects.exists()


def test_file_without_phone_column_shows_the_file_error(admin_client):
    response = post_import(admin_client, "name\nAnn\n")

    assert response.status_code == 200
    assert "no phone_number column" in response.text
    assert "Nothing was imported." in response.text


def test_submitting_without_a_file_redisplays_the_form_with_an_error(admin_client):
    response = admin_client.post(reverse(IMPORT_URL), {"default_region": "US"})

    assert response.status_code == 200
    assert "This field is required." in response.text
    assert 'name="file"' in response.text


def test_oversized_upload_is_refused_by_the_form(admin_client, monkeypatch):
    monkeypatch.setattr("messaging.forms.MAX_FILE_BYTES", 10)

    response = post_import(admin_client, "phone_number\n+15550123456\n")

    assert "larger than" in response.text
    assert not Contact.objects.exists()


def test_import_requires_add_permission(client):
    client.force_login(staff_with("view_contact", "change_contact"))

    assert client.get(reverse(IMPORT_URL)).status_code == 403
    assert post_import(client, "phone_number\n+15550123456\n").status_code == 403
    assert not Contact.objects.exists()


def test_staff_who_may_add_but_not_change_cannot_update_through_import(client):
    client.force_login(staff_with("view_contact", "add_contact"))
    existing = ContactFactory(phone_number="+15550123456", profile_name="Ann")

    form_page = client.get(reverse(IMPORT_URL))
    response = post_import(client, "phone_number,profile_name\n+15550123456,Hijacked\n+15550123457,Bob\n")

    assert re.search(r'name="update_existing"[^>]*disabled', form_page.text)
    assert re.search(r"Skipped \(already exist\)</th><td>1<", response.text)
    existing.refresh_from_db()
    assert existing.profile_name == "Ann"
    assert Contact.objects.filter(phone_number="+15550123457").exists()


def test_import_is_csrf_protected():
    client = Client(enforce_csrf_checks=True)
    client.force_login(UserFactory(username="root", is_staff=True, is_superuser=True))

    response = post_import(client, "phone_number\n+15550123456\n")

    assert response.status_code == 403
    assert not Contact.objects.exists()


def test_anonymous_users_are_sent_to_the_login_page(client):
    response = client.get(reverse(IMPORT_URL))

    assert response.status_code == 302
    assert reverse("admin:login") in response["Location"]


# --- Export ---------------------------------------------------------------------------------------------


def test_export_button_downloads_the_filtered_changelist(admin_client):
    vip = TagFactory(name="vip")
    ContactFactory(phone_number="+15550123456", profile_name="Ann", tags=[vip])
    ContactFactory(phone_number="+15550123457", profile_name="Anna")
    ContactFactory(phone_number="+15550123458", profile_name="Bob", tags=[vip])

    response = admin_client.get(reverse(EXPORT_URL), {"q": "ann", "tags__id__exact": vip.pk})

    assert response.status_code == 200
    assert response.streaming
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert re.fullmatch(r'attachment; filename="contacts-\d{8}-\d{6}\.csv"', response["Content-Disposition"])
    rows = csv_rows(response)
    assert rows[0][0] == "phone_number"
    assert [row[0] for row in rows[1:]] == ["+15550123456"]


def test_export_without_filters_includes_every_page(admin_client):
    ContactFactory.create_batch(105)  # more than one changelist page (100)

    rows = csv_rows(admin_client.get(reverse(EXPORT_URL)))

    assert len(rows) == 1 + 105


def test_export_with_an_unknown_filter_goes_back_to_the_changelist(admin_client):
    response = admin_client.get(reverse(EXPORT_URL), {"no_such_field": "1"})

    assert response.status_code == 302
    assert response["Location"] == reverse(CHANGELIST_URL) + "?e=1"


def test_export_action_downloads_only_the_selected_contacts(admin_client):
    first, _, third = ContactFactory.create_batch(3)

    response = admin_client.post(
        reverse(CHANGELIST_URL),
        {"action": "export_selected_csv", "_selected_action": [first.pk, third.pk], "index": "0"},
    )

    assert response.status_code == 200
    assert response["Content-Disposition"].startswith('attachment; filename="contacts-')
    assert sorted(row[0] for row in csv_rows(response)[1:]) == sorted(
        [first.phone_number, third.phone_number]
    )


def test_view_only_staff_can_export(client):
    client.force_login(staff_with("view_contact"))
    contact = ContactFactory()

    rows = csv_rows(client.get(reverse(EXPORT_URL)))

    assert [row[0] for row in rows[1:]] == [contact.phone_number]


def test_export_requires_view_permission(client):
    client.force_login(staff_with("add_tag"))
    ContactFactory()

    assert client.get(reverse(EXPORT_URL)).status_code == 403


def test_exported_file_imports_back_through_the_admin(admin_client):
    ContactFactory(phone_number="+15550123456", profile_name="=cmd|' /C calc'!A0", tags=["vip"])
    body = b"".join(admin_client.get(reverse(EXPORT_URL)).streaming_content)
    assert "'=cmd" in body.decode("utf-8-sig")  # a spreadsheet shows it as text, never runs it
    Contact.objects.all().delete()

    response = admin_client.post(
        reverse(IMPORT_URL), {"file": upload(body), "default_region": "US", "update_existing": "on"}
    )

    assert re.search(r"Created</th><td>1<", response.text)
    contact = Contact.objects.get()
    assert contact.profile_name == "=cmd|' /C calc'!A0"
    assert [tag.name for tag in contact.tags.all()] == ["vip"]


@pytest.mark.django_db
def test_admin_search_finds_a_contact_by_the_number_as_people_type_it(client):
    client.force_login(UserFactory(username="boss", is_staff=True, is_superuser=True))
    ContactFactory(phone_number="+15550123456", profile_name="Ava Match")
    ContactFactory(phone_number="+15550199999", profile_name="Other Person")
    page = client.get("/admin/messaging/contact/", {"q": "(555) 012-3456"}).content.decode()
    assert "Ava Match" in page
    assert "Other Person" not in page


@pytest.mark.django_db
def test_admin_add_form_stores_e164_and_explains_bad_numbers(client):
    client.force_login(UserFactory(username="boss", is_staff=True, is_superuser=True))
    ok = client.post(
        "/admin/messaging/contact/add/", {"phone_number": "(555) 012-3456", "profile_name": "Typed"}
    )
    assert ok.status_code == 302
    assert Contact.objects.get(profile_name="Typed").phone_number == "+15550123456"
    bad = client.post(
        "/admin/messaging/contact/add/", {"phone_number": "not a number", "profile_name": "Bad"}
    )
    assert bad.status_code == 200
    assert "not a valid phone number" in bad.content.decode()
