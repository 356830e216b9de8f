"""Staff users in role groups, logged in, and the admin messages they were shown: shared by the admin
tests."""

from django.contrib.auth.models import Group
from django.contrib.messages import get_messages
from django.test import Client

from tests.factories import StaffUserFactory


def user_in(*role_names: str, username: str):
    """A staff user in the named role groups (messaging.roles)."""
    user = StaffUserFactory(username=username)
    user.groups.add(*Group.objects.filter(name__in=role_names))
    return user


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def messages_of(response) -> list[str]:
    """The admin's flash messages set while answering `response`."""
    return [str(m) for m in get_messages(response.wsgi_request)]
