"""config.lookups.AnyOf: `field__any_of=[...]` finds exactly what `field__in=[...]` finds (one array
parameter on PostgreSQL, IN elsewhere)."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

import config.lookups  # noqa: F401 - registers any_of
from messaging.models import Contact
from tests.factories import ContactFactory

pytestmark = pytest.mark.django_db


def check_any_of_matches_in():
    contacts = [ContactFactory() for _ in range(5)]
    wanted = [contacts[0].pk, contacts[3].pk, 999_999]
    assert set(Contact.objects.filter(pk__any_of=wanted)) == set(Contact.objects.filter(pk__in=wanted))
    assert set(Contact.objects.filter(pk__any_of=wanted)) == {contacts[0], contacts[3]}
    numbers = {contacts[1].phone_number, "+15550000000"}
    assert list(Contact.objects.filter(phone_number__any_of=numbers)) == [contacts[1]]
    assert not Contact.objects.filter(pk__any_of=[]).exists()


def test_any_of_finds_what_in_finds():
    check_any_of_matches_in()


@pytest.mark.postgres
def test_on_postgresql_any_of_sends_one_array_parameter():
    check_any_of_matches_in()
    ids = list(range(1, 3001))
    with CaptureQueriesContext(connection) as queries:
        list(Contact.objects.filter(pk__any_of=ids))
    assert "= ANY(" in queries[0]["sql"] and queries[0]["sql"].count("%s") <= 1
